"""The optimization loop: best-so-far, divergence, interruption, batching, counts."""

import pytest
import torch

from rdopt.infer.loop import optimize


pytestmark = pytest.mark.usefixtures("float64")


def quad(target):
    def f(params, step=None):
        return ((params[0] - target) ** 2).flatten(1).sum(1)

    return f


def test_converges_and_counts_evaluations():
    target = torch.tensor([[1.0, -2.0], [0.5, 3.0]])
    f = quad(target)
    r = optimize([torch.zeros(2, 2)], f, lambda p: f(p), steps=400, lr=0.05, eval_every=10, progress=False)
    torch.testing.assert_close(r.params[0], target, atol=1e-3, rtol=0)
    assert r.evaluations == 1 + 400 + 40  # start + relaxed steps + true evaluations
    assert (r.best_loss <= r.initial_loss).all() and r.steps_run == 400


def test_never_worse_than_the_start_when_the_relaxation_misleads():
    """A relaxed objective whose gradient points away from the true optimum (as STE can): the loop
    returns the start unchanged and says no step was better."""
    start = torch.zeros(3, 4)
    true = quad(torch.zeros(3, 4))
    r = optimize([start], quad(torch.full((3, 4), 5.0)), lambda p: true(p), 50, 0.1, eval_every=1, progress=False)
    assert torch.equal(r.params[0], start) and (r.best_step == 0).all()
    assert torch.equal(r.best_loss, r.initial_loss)


def test_best_so_far_is_kept_per_item():
    # item 0 improves then worsens (overshoot); item 1 only improves
    def true(p):
        return (p[0] - torch.tensor([[1.0], [10.0]])).abs().flatten(1).sum(1)

    def relaxed(p, step):
        return -(p[0] * torch.tensor([[1.0], [1.0]])).flatten(1).sum(1)  # pushes both up forever

    r = optimize([torch.zeros(2, 1)], relaxed, true, 30, lr=0.1, optimizer="sgd", eval_every=1, progress=False)
    assert r.params[0][0, 0].item() == pytest.approx(1.0)  # best point of item 0 kept
    assert r.params[0][1, 0].item() == pytest.approx(3.0)  # item 1 kept improving


def test_non_finite_values_restore_the_item_and_are_reported():
    target = torch.ones(2, 3)

    def relaxed(p, step):
        v = quad(target)(p)
        if step == 5:
            v = v.clone()
            v[1] = float("nan")
        return v

    r = optimize([torch.zeros(2, 3)], relaxed, lambda p: quad(target)(p), 50, 0.05, eval_every=5, progress=False)
    assert r.diverged.tolist() == [False, True]
    assert torch.isfinite(r.params[0]).all() and (r.best_loss < r.initial_loss).all()


def test_ctrl_c_returns_the_best_so_far():
    target = torch.ones(1, 2)

    def relaxed(p, step):
        if step == 20:
            raise KeyboardInterrupt
        return quad(target)(p)

    r = optimize([torch.zeros(1, 2)], relaxed, lambda p: quad(target)(p), 100, 0.05, eval_every=5, progress=False)
    assert r.interrupted and r.steps_run == 20
    assert (r.best_loss < r.initial_loss).all()


def test_batch_equals_single():
    target = torch.tensor([[1.0, 2.0], [-1.0, 0.5], [3.0, -3.0]])
    f = lambda p, s=None: (torch.cosh(p[0] - target[: p[0].shape[0]]) - 1).sum(1)  # noqa: E731
    both = optimize([torch.zeros(3, 2)], f, lambda p: f(p), 60, 0.05, progress=False)

    def single(i):
        g = lambda p, s=None: (torch.cosh(p[0] - target[i : i + 1]) - 1).sum(1)  # noqa: E731
        return optimize([torch.zeros(1, 2)], g, lambda p: g(p), 60, 0.05, progress=False)

    for i in range(3):
        torch.testing.assert_close(both.params[0][i : i + 1], single(i).params[0], rtol=1e-12, atol=1e-12)


def test_trace_and_schedule():
    f = quad(torch.ones(1, 1))
    lrs = []
    r = optimize([torch.zeros(1, 1)], f, lambda p: f(p), 10, lambda t: lrs.append(t) or 0.1,
                 trace_every=5, trace_extra=lambda t: {"tau": 1.0 / (t + 1)}, progress=False)
    assert [t["step"] for t in r.trace] == [5, 10] and "tau" in r.trace[0]
    assert all(len(t["true"]) == 1 for t in r.trace)
    with pytest.raises(ValueError):
        optimize([torch.zeros(1, 1)], f, f, 1, 0.1, optimizer="lbfgs")


def test_trace_records_both_objectives_at_the_same_point():
    """relaxed = true − 0.5 everywhere: the recorded gap must be exactly 0.5 at every traced point (taking
    the true objective after the update instead, as the loop once did, gives another value)."""
    target = torch.tensor([[3.0, -1.0]], dtype=torch.float64)

    def true(params):
        return (params[0] - target).pow(2).sum(1)

    def relaxed(params, step):
        return true(params) - 0.5

    r = optimize([torch.zeros(1, 2, dtype=torch.float64)], relaxed, true, 12, 0.1, trace_every=4, progress=False)
    assert [t["step"] for t in r.trace] == [4, 8, 12]
    for t in r.trace:
        assert t["gap"] == pytest.approx([0.5], abs=1e-12)
        assert t["true"][0] - t["relaxed"][0] == pytest.approx(0.5, abs=1e-12)


def test_optimizer_is_a_value_name_class_or_factory_give_the_same_steps():
    import torch

    from rdopt.infer.loop import optimize

    x0 = [torch.tensor([[1.0, -2.0]], dtype=torch.float64)]

    def relaxed(p, step):
        return (p[0] - 0.3).pow(2).sum(1)

    def true(p):
        return (p[0] - 0.3).pow(2).sum(1)

    by_name = optimize(x0, relaxed, true, 5, 0.1, optimizer="sgd", progress=False)
    by_class = optimize(x0, relaxed, true, 5, 0.1, optimizer=torch.optim.SGD, progress=False)
    by_factory = optimize(x0, relaxed, true, 5, 0.1, optimizer=lambda ps, lr: torch.optim.SGD(ps, lr=lr), progress=False)
    assert torch.equal(by_name.params[0], by_class.params[0]) and torch.equal(by_name.params[0], by_factory.params[0])
    adam = optimize(x0, relaxed, true, 5, 0.1, progress=False)
    assert not torch.equal(adam.params[0], by_name.params[0])
    import pytest

    with pytest.raises(ValueError, match="unknown optimizer 'rmsprop'"):
        optimize(x0, relaxed, true, 1, 0.1, optimizer="rmsprop", progress=False)
