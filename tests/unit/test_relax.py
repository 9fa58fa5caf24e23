"""Relaxations of rounding: limits, gradients (float64), and the offset convention."""

import math

import pytest
import torch

from rdopt.relax import rounding as R
from rdopt.relax.schedules import cosine_factor, exp_decay_after, fitted_to_budget


pytestmark = pytest.mark.usefixtures("float64")


def grid(n=2001):
    # values across several integer cells, avoiding exact ties at .5 (round-half-even ambiguity)
    x = torch.linspace(-3.3, 3.3, n, dtype=torch.float64)
    return x[(x - x.floor() - 0.5).abs() > 1e-3]


@pytest.fixture
def offset():
    return torch.tensor(0.37, dtype=torch.float64)


def test_hard_round_is_relative_to_offset(offset):
    x = grid()
    y = R.hard()(x, offset)
    torch.testing.assert_close(y - offset, torch.round(y - offset))
    assert ((y - x).abs() <= 0.5 + 1e-12).all()


@pytest.mark.parametrize("make", [lambda g: R.sga(1e-4, g), lambda g: R.deterministic_annealing(1e-4)])
def test_annealed_relaxations_tend_to_hard_rounding(make, offset):
    x = grid()
    g = torch.Generator().manual_seed(0)
    y = make(g)(x, offset)
    # away from the half-way point the tempered distribution is all but deterministic
    far = (x - offset - torch.floor(x - offset) - 0.5).abs() > 0.02
    torch.testing.assert_close(y[far], R.hard_round(x, offset)[far], rtol=0, atol=1e-9)


def test_sga_limit_holds_over_the_whole_schedule_end():
    """At the end of the paper's 2000-step schedule (τ≈0.14) most samples are already hard; at τ→0 all."""
    sched = exp_decay_after(0.5, 1e-3, 700)
    x = grid()
    g = torch.Generator().manual_seed(1)
    errs = []
    for tau in (sched(1999), 1e-2, 1e-3, 1e-5):
        y = R.sga(tau, g)(x, torch.tensor(0.0))
        errs.append((y - torch.round(x)).abs().mean().item())
    assert errs == sorted(errs, reverse=True) and errs[-1] < 1e-6


def test_sga_samples_follow_eq4_probabilities():
    """The frequency of rounding up matches q_τ(up|x) ∝ exp(−atanh(⌈x⌉−x)/τ) (at small Gumbel temp)."""
    tau = 0.5
    x = torch.full((200000,), 0.3)
    g = torch.Generator().manual_seed(2)
    y = R.sga(tau, g, gumbel_tau=1e-4)(x, torch.tensor(0.0))
    p_up = (y > 0.5).double().mean().item()
    a_down, a_up = -math.atanh(0.3) / tau, -math.atanh(0.7) / tau
    expected = math.exp(a_up) / (math.exp(a_up) + math.exp(a_down))
    assert p_up == pytest.approx(expected, abs=0.005)
    assert R.probability_round_up(torch.tensor([0.3]), 0.0, tau).item() == pytest.approx(expected, rel=1e-9)


def test_sga_value_stays_between_floor_and_ceil(offset):
    x = grid()
    g = torch.Generator().manual_seed(3)
    for tau in (0.5, 0.1, 0.01):
        y = R.sga(tau, g)(x, offset)
        v = x - offset
        assert ((y - offset) >= v.floor() - 1e-12).all() and ((y - offset) <= v.floor() + 1 + 1e-12).all()


@pytest.mark.parametrize("name", ["sga", "danneal", "noise", "ste", "map"])
def test_values_and_gradients_are_finite_over_the_schedule(name, offset):
    sched = exp_decay_after(0.5, 1e-3, 700)
    g = torch.Generator().manual_seed(4)
    # include exact integers (+offset): ψ = atanh hits its pole there without the guard
    x0 = torch.cat([grid(), torch.arange(-3, 4, dtype=torch.float64) + offset])
    for t in (0, 700, 1500, 2000, 5000, 20000):
        tau = sched(t)
        relax = {"sga": lambda: R.sga(tau, g), "danneal": lambda: R.deterministic_annealing(tau),
                 "noise": lambda: R.uniform_noise(g), "ste": R.straight_through, "map": R.identity}[name]()
        x = x0.clone().requires_grad_(True)
        y = relax(x, offset)
        (y**2).sum().backward()
        assert torch.isfinite(y).all() and torch.isfinite(x.grad).all(), (name, t)


def test_danneal_gradient_matches_finite_differences(offset):
    relax = R.deterministic_annealing(0.3)
    x = torch.tensor([0.1, 0.49, 0.73, 1.9, -2.2], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda v: relax(v, offset), (x,), eps=1e-7, atol=1e-6)


def test_sga_gradient_matches_finite_differences_for_fixed_noise(offset):
    """With the Gumbel noise held fixed (same seed), SGA is a smooth function of x."""
    x = torch.tensor([0.1, 0.49, 0.73, 1.9, -2.2], dtype=torch.float64, requires_grad=True)

    def f(v):
        return R.sga(0.4, torch.Generator().manual_seed(7))(v, offset)

    assert torch.autograd.gradcheck(f, (x,), eps=1e-7, atol=1e-6)


def test_ste_and_noise_and_map():
    x = torch.tensor([0.2, 0.7, -1.6], requires_grad=True)
    off = torch.tensor(0.0)
    y = R.straight_through()(x, off)
    torch.testing.assert_close(y.detach(), torch.round(x.detach()))
    y.sum().backward()
    torch.testing.assert_close(x.grad, torch.ones(3))
    n = R.uniform_noise(torch.Generator().manual_seed(0))(torch.zeros(100000), off)
    assert n.abs().max() <= 0.5 and abs(n.mean().item()) < 0.01 and n.var().item() == pytest.approx(1 / 12, rel=0.02)
    assert torch.equal(R.identity()(x, off), x)


def test_bad_temperatures_are_refused():
    with pytest.raises(ValueError):
        R.sga(0.0)
    with pytest.raises(ValueError):
        R.deterministic_annealing(-1.0)


def test_schedules():
    s = exp_decay_after(0.5, 1e-3, 700)
    assert s(0) == s(700) == 0.5 and s(1700) == pytest.approx(0.5 * math.exp(-1))
    b = fitted_to_budget(500)
    assert b(0) == 0.5 and b(499) == pytest.approx(0.05, rel=0.02)
    h = fitted_to_budget(1000, tau0=0.5, tau_end=0.1, hold=0.2)
    assert h(200) == 0.5 and h(201) < 0.5 and h(1000) == pytest.approx(0.1)
    c = cosine_factor(100)
    assert c(0) == 1.0 and c(100) == pytest.approx(0.1) and c(50) == pytest.approx(0.55)


def test_mixed_rounds_straight_through_and_measures_the_rate_at_noisy_values():
    x = torch.tensor([0.2, 1.7, -2.4, 3.5001], dtype=torch.float64, requires_grad=True)
    offset = torch.tensor([0.0, 0.3, -0.1, 0.0], dtype=torch.float64)
    relax = R.mixed(torch.Generator().manual_seed(0))
    y = relax(x, offset)
    assert torch.allclose(y, R.hard_round(x, offset), atol=1e-12)
    (g,) = torch.autograd.grad(y.sum(), x)
    assert torch.equal(g, torch.ones_like(x))  # straight through
    u = R.rate_value(relax, x, offset, y) - x
    assert (u.abs() < 0.5).all() and not torch.equal(u, torch.zeros_like(u))
    want = torch.rand(4, generator=torch.Generator().manual_seed(0), dtype=torch.float64) - 0.5
    assert torch.allclose(u, want)  # the same generator's uniform draw
    plain = R.uniform_noise(torch.Generator().manual_seed(0))
    assert R.rate_value(plain, x, offset, y) is y  # a relaxation without a rate value: the relaxed value itself
