"""DAG solvers (rdopt.infer.dag), float64.

* Thm. 1/2: the exact solver's adjoint recursion equals autograd through the fully unrolled nested
  K-step inner optimizations (written independently below), for a 2-level DAG and two 3-node DAGs with
  non-quadratic objectives; the finite-difference HVP option agrees and converges like a central
  difference; the ascent-form sign applied to descent does not agree.
* §3 made concrete: exact / sequential / joint at the same per-node budget on a small random DAG whose
  children's initializers depend on their parents (numbers printed with ``-s``; asserted: all improve on
  FAVI).
* The limit: on a convex objective with enough steps, exact and joint reach the joint optimum; sequential
  (Alg. 4) does too when the initializers are best responses, and in general stops short of it.
* Complexity: objective-evaluation counts are Θ(K^N) for exact, Θ(KN) for sequential/joint.
"""

from __future__ import annotations

import math

import pytest
import torch

from rdopt.infer.dag import (
    DagResult,
    amortized,
    exact,
    exact_evaluation_count,
    exact_gradient,
    joint,
    sequential,
    windowed,
)
from rdopt.infer.graph import LatentGraph, Node, Term, constant_relaxation
from rdopt.relax.rounding import hard, identity

DT = torch.float64


@pytest.fixture(autouse=True)
def _float64():
    old = torch.get_default_dtype()
    torch.set_default_dtype(DT)
    yield
    torch.set_default_dtype(old)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _softplus(t):
    return torch.nn.functional.softplus(t)


# ------------------------------------------------------------------------------------------ toy DAGs
def two_level(seed: int = 0, B: int = 2, d: int = 3) -> tuple[LatentGraph, torch.Tensor]:
    """a → b, non-quadratic terms, b's initializer depends on a."""
    g = _gen(seed)
    W = torch.randn(d, d, generator=g, dtype=DT) * 0.6
    x = torch.randn(B, d, generator=g, dtype=DT)
    graph = LatentGraph(
        nodes=[Node("a", (), lambda c: 0.5 * c.x), Node("b", ("a",), lambda c, a: torch.tanh(a @ W) + 0.2 * c.x)],
        terms=[
            Term("la", ("a",), lambda c, a: (torch.log(torch.cosh(a - c.x)) + 0.1 * a**4).sum(1)),
            Term("lb", ("a", "b"), lambda c, a, b: ((b - torch.sin(a)) ** 2 + 0.3 * _softplus(b) * a**2).sum(1)),
        ],
    )
    return graph, x


def three_node_dag(seed: int = 1, B: int = 2, d: int = 3) -> tuple[LatentGraph, torch.Tensor]:
    """a → b, a → c, b → c (c has two parents), non-quadratic terms."""
    g = _gen(seed)
    W = torch.randn(d, d, generator=g, dtype=DT) * 0.5
    x = torch.randn(B, d, generator=g, dtype=DT)
    graph = LatentGraph(
        nodes=[
            Node("a", (), lambda c: 0.5 * c.x),
            Node("b", ("a",), lambda c, a: torch.tanh(a @ W) + 0.1 * c.x),
            Node("c", ("a", "b"), lambda c, a, b: torch.sin(a) + 0.3 * b),
        ],
        terms=[
            Term("la", ("a",), lambda c, a: (torch.log(torch.cosh(a - c.x)) + 0.1 * a**4).sum(1)),
            Term("lb", ("a", "b"), lambda c, a, b: ((b - torch.sin(a)) ** 2 + 0.2 * _softplus(b)).sum(1)),
            Term("lc", ("b", "c"), lambda c, b, cc: ((cc - 0.5 * b) ** 2 * (1 + 0.1 * cc**2)).sum(1)),
        ],
    )
    return graph, x


def three_node_fork(seed: int = 2, B: int = 2, d: int = 2) -> tuple[LatentGraph, torch.Tensor]:
    """a → b, a → c: c is *not* a child of b, but a term couples b and c, so the optimization of c
    (nested inside b's) depends on b — Eq. 14's ``a_{>i}^K`` covers it, Alg. 2's children loop would not."""
    g = _gen(seed)
    x = torch.randn(B, d, generator=g, dtype=DT)
    graph = LatentGraph(
        nodes=[
            Node("a", (), lambda c: c.x.clone()),
            Node("b", ("a",), lambda c, a: torch.tanh(a) - 0.3),
            Node("c", ("a",), lambda c, a: a.pow(2) * 0.5),
        ],
        terms=[
            Term("la", ("a",), lambda c, a: ((a - c.x) ** 2 + 0.05 * a**4).sum(1)),
            Term("lb", ("a", "b"), lambda c, a, b: (torch.log(torch.cosh(b - a)) + 0.5 * b**2).sum(1)),
            Term("lbc", ("b", "c"), lambda c, b, cc: ((cc - torch.sin(b)) ** 2 + 0.1 * cc**4).sum(1)),
        ],
    )
    return graph, x


def unrolled_objective(graph: LatentGraph, x, prefix: list[torch.Tensor], K: int, lr: float) -> torch.Tensor:
    """J_i(a_{≤i}) by brute force: every later node re-initialized by FAVI and optimized by K plain
    gradient-descent steps, recursively, with the whole computation kept in the autograd graph."""
    n = len(graph)
    ctx = graph.context(x, identity())
    if len(prefix) == n:
        return graph.objective(ctx, prefix)
    a = graph.init_node(ctx, len(prefix), prefix)
    for _ in range(K):
        J = unrolled_objective(graph, x, prefix + [a], K, lr)
        (g,) = torch.autograd.grad(J.sum(), a, create_graph=True)
        a = a - lr * g
    return unrolled_objective(graph, x, prefix + [a], K, lr)


def unrolled_gradient(graph, x, prefix, K, lr):
    leaves = [t.detach().clone().requires_grad_(True) for t in prefix]
    J = unrolled_objective(graph, x, leaves, K, lr)
    return J.detach(), torch.autograd.grad(J.sum(), leaves)


def _max_rel_err(got, ref) -> float:
    return max(float((g - r).abs().max()) / max(float(r.abs().max()), 1e-300) for g, r in zip(got, ref))


# ------------------------------------------------------------------------------------------ Thm. 1 / 2
@pytest.mark.parametrize(
    "make, prefix_len, K, lr",
    [(two_level, 1, 5, 0.2), (three_node_dag, 1, 3, 0.2), (three_node_dag, 2, 4, 0.2), (three_node_fork, 1, 3, 0.3)],
    ids=["2-level", "3-node-depth2", "3-node-depth1", "3-node-fork"],
)
def test_exact_gradient_equals_autograd_through_unrolled_optimization(make, prefix_len, K, lr):
    graph, x = make()
    prefix = list(graph.amortize(x).tensors[:prefix_len])
    ref_value, ref_grads = unrolled_gradient(graph, x, prefix, K, lr)
    out = exact_gradient(graph, x, prefix, K, lr, hvp="autograd")
    assert len(out.grads) == prefix_len
    assert torch.allclose(out.value, ref_value, rtol=1e-12, atol=1e-13)
    assert _max_rel_err(out.grads, ref_grads) < 1e-10
    # the recursion is not the BAO partial derivative: the paths through the inner solves matter here
    ctx = graph.context(x, identity())
    leaves = [t.detach().clone().requires_grad_(True) for t in prefix]
    full = leaves + list(out.suffix.tensors)  # descendants held fixed at a_{>i}^K
    partial = torch.autograd.grad(graph.objective(ctx, full).sum(), leaves)
    assert _max_rel_err(partial, ref_grads) > 1e-3


@pytest.mark.parametrize("make, prefix_len, K", [(two_level, 1, 5), (three_node_dag, 1, 3), (three_node_fork, 1, 3)])
def test_finite_difference_hvp_matches_autograd_hvp(make, prefix_len, K):
    graph, x = make()
    prefix = list(graph.amortize(x).tensors[:prefix_len])
    auto = exact_gradient(graph, x, prefix, K, 0.2, hvp="autograd")
    fd = exact_gradient(graph, x, prefix, K, 0.2, hvp="finite_difference")
    assert _max_rel_err(fd.grads, auto.grads) < 1e-7
    assert fd.counts.objective > auto.counts.objective  # FD pays with gradient evaluations


def test_finite_difference_hvp_converges_as_a_central_difference():
    graph, x = two_level()
    prefix = [graph.amortize(x)["a"]]
    auto = exact_gradient(graph, x, prefix, 4, 0.2, hvp="autograd").grads
    err_big = _max_rel_err(exact_gradient(graph, x, prefix, 4, 0.2, hvp="finite_difference", fd_step=1e-1).grads, auto)
    err_small = _max_rel_err(exact_gradient(graph, x, prefix, 4, 0.2, hvp="finite_difference", fd_step=1e-2).grads, auto)
    assert err_big > 1e-6  # a real finite difference, not autograd in disguise
    assert 30.0 < err_big / err_small < 300.0  # O(r²): 10× smaller step → ≈100× smaller error


def _hand_adjoint_2level(graph, x, a_value, K, lr, sign):
    """Alg. 1's grad-2-level for a *descent* trajectory, with the adjoint update's sign as a parameter:
    ``sign = -1`` is the descent-consistent recursion, ``sign = +1`` the ascent form of the paper."""
    ctx = graph.context(x, identity())
    a = a_value.detach().clone().requires_grad_(True)
    b0 = graph.init_node(ctx, 1, [a])
    b = b0.detach()
    stored = []
    for _ in range(K):
        a_k, b_k = a.detach().requires_grad_(True), b.detach().requires_grad_(True)
        (g_b,) = torch.autograd.grad(graph.objective(ctx, [a_k, b_k]).sum(), b_k, create_graph=True)
        stored.append((a_k, b_k, g_b))
        b = (b - lr * g_b).detach()
    a_K, b_K = a.detach().requires_grad_(True), b.requires_grad_(True)
    a_bar, b_bar = torch.autograd.grad(graph.objective(ctx, [a_K, b_K]).sum(), (a_K, b_K))
    for a_k, b_k, g_b in reversed(stored):
        h_a, h_b = torch.autograd.grad(g_b, (a_k, b_k), grad_outputs=b_bar)
        a_bar = a_bar + sign * lr * h_a
        b_bar = b_bar + sign * lr * h_b
    (through_init,) = torch.autograd.grad(b0, a, grad_outputs=b_bar)
    return a_bar + through_init


def test_adjoint_sign_for_descent():
    graph, x = two_level()
    a = graph.amortize(x)["a"]
    K, lr = 5, 0.2
    _, (ref,) = unrolled_gradient(graph, x, [a], K, lr)
    lib = exact_gradient(graph, x, [a], K, lr).grads[0]
    descent = _hand_adjoint_2level(graph, x, a, K, lr, sign=-1.0)
    ascent_form = _hand_adjoint_2level(graph, x, a, K, lr, sign=+1.0)
    assert _max_rel_err([descent], [ref]) < 1e-10
    assert _max_rel_err([lib], [ref]) < 1e-10
    assert _max_rel_err([ascent_form], [ref]) > 1e-2  # the "+α" update on a descent run is wrong
    with torch.no_grad():  # the recursion enables autograd itself
        assert torch.equal(exact_gradient(graph, x, [a], K, lr).grads[0], lib)


def test_exact_result_is_consistent_with_its_recursion():
    graph, x = three_node_dag(B=2)
    K, lr = 3, 0.2
    res = exact(graph, x, K, lr)
    assert isinstance(res, DagResult) and res.solver == "exact"
    # the descendants reported are the nested inner solves at the chosen a_1
    again = exact_gradient(graph, x, [res.values["a"]], K, lr)
    for name, t in again.suffix.items():
        assert torch.allclose(res.values[name], t, rtol=0, atol=1e-12)
    hard_obj = graph.objective(graph.context(x, None), res.values.tensors)
    assert torch.allclose(res.objective, hard_obj)
    # batch items are independent problems: solving them one by one gives the same values
    for b in range(2):
        one = exact(graph, x[b : b + 1], K, lr)
        for name, t in one.values.items():
            assert torch.allclose(res.values[name][b : b + 1], t, rtol=0, atol=1e-12)


# ------------------------------------------------------------------------------------------ solver semantics
def _relay() -> tuple[LatentGraph, torch.Tensor]:
    """The objective reads only b, whose initializer is b = 2a + x: ∂L/∂a = 0 but dL/da ≠ 0."""
    x = torch.tensor([[0.3, -1.0]], dtype=DT)
    t = torch.tensor([[2.0, 1.0]], dtype=DT)
    graph = LatentGraph(
        nodes=[Node("a", (), lambda c: torch.zeros_like(c.x)), Node("b", ("a",), lambda c, a: 2 * a + c.x)],
        terms=[Term("lb", ("b",), lambda c, b: ((b - t) ** 2).sum(1))],
    )
    return graph, x


def test_sequential_differentiates_through_initializers_joint_does_not():
    graph, x = _relay()
    a0 = graph.amortize(x)["a"]
    j = joint(graph, x, 20, 0.1, optimizer="sgd")
    s = sequential(graph, x, 20, 0.1, optimizer="sgd")
    assert torch.equal(j.values["a"], a0)  # BAO: ∂L/∂a = 0, a never moves (§3.1)
    assert float((s.values["a"] - a0).abs().max()) > 0.1  # Alg. 4: the path through b's initializer
    assert float(s.stages[0].objective_after.max()) < 0.5 * float(s.stages[0].objective_before.max())


def test_sequential_freezes_nodes_with_hard_rounding_and_relaxes_the_rest():
    seen = []

    def tagged(tag):
        def relax(v, offset):
            return v

        relax.tag = tag
        return relax

    def schedule(step):
        return tagged(f"s{step}")

    def term(c, a, b):
        seen.append((c.step, getattr(c.relax("a"), "tag", "hard"), getattr(c.relax("b"), "tag", "hard")))
        return ((a - 1) ** 2 + (b - a) ** 2).sum(1)

    graph = LatentGraph(
        nodes=[Node("a", (), lambda c: torch.zeros(1, 2)), Node("b", ("a",), lambda c, a: a + 0.5)],
        terms=[Term("l", ("a", "b"), term)],
    )
    sequential(graph, None, 3, 0.1, relaxation=schedule, optimizer="sgd", eval_every=100)
    relaxed = [s for s in seen if s[1] != "hard" or s[2] != "hard"]
    # stage a: both relaxed with the stage's step; stage b: a frozen (hard), b relaxed
    assert relaxed[:3] == [(0, "s0", "s0"), (1, "s1", "s1"), (2, "s2", "s2")]
    assert relaxed[3:] == [(0, "hard", "s0"), (1, "hard", "s1"), (2, "hard", "s2")]
    # true objectives (start + end of each stage) are hard everywhere, as are the two report
    # evaluations of the result (objective at FAVI and at the final values)
    assert sum(1 for s in seen if s[1] == "hard" and s[2] == "hard") == 2 * 2 + 2


def _chain_graph(n: int, d: int = 2, seed: int = 3, B: int = 1) -> tuple[LatentGraph, torch.Tensor]:
    g = _gen(seed)
    x = torch.randn(B, n, d, generator=g, dtype=DT)
    W = torch.randn(n, d, d, generator=g, dtype=DT) * 0.5
    names = [f"a{i}" for i in range(n)]
    nodes = [Node(names[0], (), lambda c: 0.5 * c.x[:, 0])]
    terms = [Term("L0", (names[0],), lambda c, a: (torch.log(torch.cosh(a - c.x[:, 0])) + 0.1 * a**4).sum(1))]
    for i in range(1, n):
        nodes.append(Node(names[i], (names[i - 1],), lambda c, p, _i=i: torch.tanh(p @ W[_i]) + 0.3 * c.x[:, _i]))
        terms.append(Term(f"L{i}", (names[i - 1], names[i]),
                          lambda c, p, a, _i=i: ((a - torch.sin(p) - c.x[:, _i]) ** 2 + 0.1 * a**4).sum(1)))
    return LatentGraph(nodes, terms), x


def _n_true(K: int, eval_every: int) -> int:
    return 1 + sum(1 for s in range(1, K + 1) if s % eval_every == 0 or s == K)


def test_windowed_restricts_the_objective_and_equals_sequential_for_a_full_window():
    graph, x = _chain_graph(4)
    K, lr, ev = 6, 0.05, 3
    seq = sequential(graph, x, K, lr, eval_every=ev)
    full = windowed(graph, x, K, lr, window=3, eval_every=ev)
    for name, t in seq.values.items():
        assert torch.allclose(full.values[name], t, rtol=0, atol=1e-12)  # dropped terms are constants
    w0 = windowed(graph, x, K, lr, window=0, eval_every=ev)
    w1 = windowed(graph, x, K, lr, window=1, eval_every=ev)
    per_stage = K + _n_true(K, ev)
    assert seq.counts.terms == 4 * 4 * per_stage
    assert w0.counts.terms == 4 * 1 * per_stage  # one term per node in a chain with C = 0
    assert w1.counts.terms == (2 + 2 + 2 + 1) * per_stage
    assert w0.counts.initializers < seq.counts.initializers  # later nodes are not even initialized
    assert not torch.allclose(w0.values["a0"], seq.values["a0"])  # the window changes the problem
    assert all(r.objective.shape == (1,) for r in (w0, w1))
    with pytest.raises(ValueError):
        windowed(graph, x, K, lr, window=-1)


def test_sequential_accepts_a_budget_per_node():
    graph, x = _chain_graph(3)
    r = sequential(graph, x, [4, 0, 2], 0.05, eval_every=100)
    assert [st.steps for st in r.stages] == [4, 0, 2]
    assert r.counts.objective == (4 + 2) + (0 + 1) + (2 + 2)
    assert torch.equal(r.values["a1"], graph.init_node(graph.context(x, None), 1, [r.values["a0"]]))
    with pytest.raises(ValueError, match="one budget per node"):
        sequential(graph, x, [4, 2], 0.05)


# ------------------------------------------------------------------------------------------ §3 comparison
def _report(title: str, results: list[DagResult]) -> None:
    print(f"\n{title}")
    for r in results:
        print(f"  {r.solver:10s} objective {r.objective.mean().item():.6f} (FAVI {r.initial_objective.mean().item():.6f})"
              f"  evaluations {r.counts.objective:6d}  {r.seconds:.2f}s")


def test_section3_comparison_same_budget_per_node():
    """Same K and step size per node, plain gradient descent for all (only the algorithm differs).
    Reports; asserts only that every solver improves on the amortized initialization."""
    graph, x = _chain_graph(3, d=3, seed=11, B=4)
    K, lr = 5, 0.1
    base = amortized(graph, x)
    results = [
        exact(graph, x, K, lr),
        sequential(graph, x, K, lr, optimizer="sgd", eval_every=K),
        joint(graph, x, K, lr, optimizer="sgd", eval_every=K),
    ]
    _report(f"§3 toy: 3-node chain, K={K}, lr={lr}, 4 problems", results)
    for r in results:
        assert torch.equal(r.initial_objective, base.objective)
        assert bool((r.objective < base.objective - 1e-3 * base.objective.abs()).all()), r.solver


# ------------------------------------------------------------------------------------------ the limit
def _convex_problem(best_response: bool, seed: int = 5, d: int = 2, curvature: float = 0.1):
    """L(v) = ½ vᵀQv − hᵀv + c·Σ log cosh(v), v = (a, b, c) ∈ R^{3d}, Q with eigenvalues in [1, 1.5]
    (conditioning chosen so that 'enough steps' is few steps of fixed-size descent).

    Initializers: generic (tanh of parents) or, with ``best_response`` (requires c = 0), the exact
    minimizers over the later nodes given the earlier ones — an amortized encoder without amortization
    gap."""
    g = _gen(seed)
    n = 3 * d
    U, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=DT))
    Q = U @ torch.diag(torch.linspace(1.0, 1.5, n, dtype=DT)) @ U.T
    h = torch.randn(n, generator=g, dtype=DT)
    sa, sb, sc = slice(0, d), slice(d, 2 * d), slice(2 * d, 3 * d)
    sbc = slice(d, 3 * d)

    def total(a, b, c):
        v = torch.cat([a, b, c], 1)
        return 0.5 * ((v @ Q) * v).sum(1) - v @ h + curvature * torch.log(torch.cosh(v)).sum(1)

    if best_response:
        assert curvature == 0.0

        def init_b(ctx, a):  # b-part of argmin_{b,c} L(a, b, c)
            rhs = h[sbc] - a @ Q[sa, sbc]
            return torch.linalg.solve(Q[sbc, sbc], rhs.T).T[:, :d]

        def init_c(ctx, a, b):  # argmin_c L(a, b, c)
            rhs = h[sc] - a @ Q[sa, sc] - b @ Q[sb, sc]
            return torch.linalg.solve(Q[sc, sc], rhs.T).T
    else:
        M = torch.randn(d, d, generator=g, dtype=DT)

        def init_b(ctx, a):
            return torch.tanh(a @ M)

        def init_c(ctx, a, b):
            return torch.tanh(b) - 0.5 * a

    graph = LatentGraph(
        nodes=[Node("a", (), lambda ctx: torch.zeros(1, d)), Node("b", ("a",), init_b), Node("c", ("a", "b"), init_c)],
        terms=[Term("L", ("a", "b", "c"), lambda ctx, a, b, c: total(a, b, c))],
    )
    # the joint optimum by Newton's method (convex, smooth)
    v = torch.zeros(1, n, dtype=DT)
    for _ in range(30):
        vv = v.detach().requires_grad_(True)
        f = total(vv[:, sa], vv[:, sb], vv[:, sc]).sum()
        grad = torch.autograd.grad(f, vv)[0][0]
        H = torch.autograd.functional.hessian(lambda w: total(w[None, sa], w[None, sb], w[None, sc]).sum(), vv[0].detach())
        v = v - torch.linalg.solve(H, grad)[None]
    opt = total(v[:, sa], v[:, sb], v[:, sc])
    return graph, v, opt


def _values_vector(r: DagResult) -> torch.Tensor:
    return torch.cat(list(r.values.tensors), 1)


def test_limit_convex_enough_steps_exact_and_joint_reach_the_joint_optimum():
    graph, v_opt, f_opt = _convex_problem(best_response=False)
    lr = 0.8  # contraction ≤ max|1 − 0.8·λ| ≈ 0.28 per step on this problem
    ex = exact(graph, None, 12, lr)
    jo = joint(graph, None, 60, lr, optimizer="sgd", eval_every=60)
    sq = sequential(graph, None, 60, lr, optimizer="sgd", eval_every=60)
    _report(f"limit (convex, generic initializers): optimum {f_opt.item():.8f}", [ex, jo, sq])
    for r in (ex, jo):
        assert torch.allclose(_values_vector(r), v_opt, atol=1e-5), r.solver
        assert abs(r.objective.item() - f_opt.item()) < 1e-8, r.solver
    # Alg. 4 optimizes a_i assuming later nodes stay at their amortized initialization (Eq. 15):
    # with generic initializers it stops short of the joint optimum even with many steps.
    assert sq.objective.item() > f_opt.item() + 1e-4


def test_limit_sequential_reaches_the_optimum_when_initializers_are_best_responses():
    graph, v_opt, f_opt = _convex_problem(best_response=True, curvature=0.0)
    lr = 0.8
    sq = sequential(graph, None, 40, lr, optimizer="sgd", eval_every=40)
    ex = exact(graph, None, 10, lr)
    _report(f"limit (quadratic, best-response initializers): optimum {f_opt.item():.8f}", [sq, ex])
    for r in (sq, ex):
        assert torch.allclose(_values_vector(r), v_opt, atol=1e-6), r.solver


# ------------------------------------------------------------------------------------------ complexity
def test_evaluation_counts_exact_is_K_to_the_N_sequential_and_joint_are_KN():
    ks = {1: (2, 4, 8), 2: (4, 8, 16), 3: (2, 4, 8)}
    counts: dict[tuple[str, int, int], int] = {}
    for n in (1, 2, 3):
        graph, x = _chain_graph(n, d=1, seed=7)
        for K in ks[n]:
            ex = exact(graph, x, K, 0.05)
            sq = sequential(graph, x, K, 0.05, optimizer="sgd", eval_every=K)
            jo = joint(graph, x, K, 0.05, optimizer="sgd", eval_every=K)
            assert ex.counts.objective == exact_evaluation_count(n, K, "autograd", _n_true(K, K))
            assert sq.counts.objective == n * (K + 2)  # K relaxed + 2 true evaluations per node
            assert jo.counts.objective == K + 2
            counts[("exact", n, K)] = ex.counts.objective
            counts[("sequential", n, K)] = sq.counts.objective
    print("\nobjective evaluations (K: exact, sequential):")
    for n in (1, 2, 3):
        print(f"  N = {n}:", ", ".join(f"K={K}: {counts[('exact', n, K)]}, {counts[('sequential', n, K)]}" for K in ks[n]))

    def slope(solver, n, k1, k2):
        return math.log(counts[(solver, n, k2)] / counts[(solver, n, k1)]) / math.log(k2 / k1)

    for n in (1, 2, 3):
        for K in ks[n]:
            # Θ(K^N): bounded above and below by multiples of K^N while K varies fourfold
            assert 1.0 <= counts[("exact", n, K)] / K**n <= 5.0
            # Θ(KN)
            assert 1.0 <= counts[("sequential", n, K)] / (K * n) <= 2.0
    # log-log slopes in K at the larger K: ≈ N for exact (lower-order terms pull it down a little), < 1
    # for sequential
    assert slope("exact", 2, 8, 16) > 1.6
    assert slope("exact", 3, 4, 8) > 2.3
    assert slope("sequential", 3, 4, 8) < 1.0
    # adding a node multiplies exact's work by ≈ K, sequential's by (N+1)/N
    assert counts[("exact", 3, 8)] / counts[("exact", 2, 8)] > 8
    assert counts[("sequential", 3, 8)] / counts[("sequential", 2, 8)] == pytest.approx(1.5)
    # finite-difference HVPs: (3K+1) next-level gradients per level
    graph, x = _chain_graph(2, d=1, seed=7)
    fd = exact(graph, x, 3, 0.05, hvp="finite_difference")
    assert fd.counts.objective == exact_evaluation_count(2, 3, "finite_difference", 2) == 3 * 10 + 2 * 4


def test_exact_refuses_absurd_settings_before_doing_any_work():
    graph, x = _chain_graph(6, d=1)
    calls = []
    wrapped = LatentGraph(
        graph.nodes,
        [Term(t.name, t.inputs, (lambda f: lambda c, *v: (calls.append(1), f(c, *v))[1])(t.fn)) for t in graph.terms],
    )
    with pytest.raises(ValueError, match=r"Θ\(K\^N\).*sequential"):
        exact(wrapped, x, 40, 0.05)
    assert calls == []
    with pytest.raises(ValueError, match="max_evaluations"):
        exact(wrapped, x, 3, 0.05, max_evaluations=100)


def test_solvers_accept_relaxation_schedules_and_round_for_the_true_objective():
    # one node, objective (round(a) - 2.6)²: hard rounding makes the true objective piecewise constant
    graph = LatentGraph(
        nodes=[Node("a", (), lambda c: torch.zeros(1, 1))],
        terms=[Term("l", ("a",), lambda c, a: ((c.relax("a")(a, torch.zeros_like(a)) - 2.6) ** 2).sum(1))],
    )
    # with hard rounding as the relaxation there is no gradient: nothing moves
    stuck = joint(graph, None, 20, 0.3, relaxation=constant_relaxation(hard()), optimizer="sgd")
    assert stuck.values["a"].item() == 0.0
    # identity relaxation (the default): a moves to ≈ 2.6, the true objective sees round(a) = 3
    moved = joint(graph, None, 50, 0.3, optimizer="sgd")
    assert moved.objective.item() == pytest.approx((3 - 2.6) ** 2)
    for r in (sequential(graph, None, 50, 0.3, optimizer="sgd"), exact(graph, None, 50, 0.3)):
        assert r.objective.item() == pytest.approx((3 - 2.6) ** 2), r.solver


def test_exact_falls_back_to_amortized_values_when_a_nested_descent_diverges():
    graph = LatentGraph(
        nodes=[Node("a", (), lambda c: torch.ones(2, 1)), Node("b", ("a",), lambda c, a: a + 1.0)],
        terms=[Term("l", ("a", "b"), lambda c, a, b: ((a - 3.0) ** 2 + b**4).sum(1))],
    )
    ok = exact(graph, None, 3, 0.05)
    assert not bool(ok.stages[0].diverged.any())
    assert bool((ok.objective < ok.initial_objective).all())
    bad = exact(graph, None, 3, 10.0)  # b ← b − 40 b³ explodes
    assert bool(bad.stages[0].diverged.all())
    assert torch.equal(bad.objective, bad.initial_objective)
    for name, t in graph.amortize(None).items():
        assert torch.equal(bad.values[name], t)
    # the fall-back is reported per item (and only where it happened)
    assert bad.fell_back is not None and bool(bad.fell_back.all())
    assert ok.fell_back is not None and not bool(ok.fell_back.any())
    assert joint(graph, None, 3, 0.05).fell_back is None


# ------------------------------------------------------------------------------------------ schedules
def _annealed_two_level(seed: int = 3, B: int = 2, d: int = 3):
    """Like two_level, but every term reads its nodes through the context's relaxation (deterministic
    annealing around 0.25), so per-node, step-dependent relaxation schedules change the objective."""
    g = _gen(seed)
    W = torch.randn(d, d, generator=g, dtype=DT) * 0.6
    x = torch.randn(B, d, generator=g, dtype=DT)

    def r(c, name, v):
        return c.relax(name)(v, torch.full_like(v, 0.25))

    graph = LatentGraph(
        nodes=[Node("a", (), lambda c: 0.5 * c.x), Node("b", ("a",), lambda c, a: torch.tanh(a @ W) + 0.2 * c.x)],
        terms=[
            Term("la", ("a",), lambda c, a: (torch.log(torch.cosh(r(c, "a", a) - c.x)) + 0.1 * r(c, "a", a) ** 4).sum(1)),
            Term("lb", ("a", "b"), lambda c, a, b: ((r(c, "b", b) - torch.sin(r(c, "a", a))) ** 2
                                                   + 0.3 * _softplus(r(c, "b", b))).sum(1)),
        ],
    )
    return graph, x


def _unrolled_scheduled(graph, x, prefix, node_steps, K, lr_at, schedules):
    """J_i by brute force with a relaxation schedule per node (node m at its own step k_m, nodes not yet
    reached at step 0) and a learning-rate schedule over each node's own step index."""
    n = len(graph)

    def ctx(steps):
        return graph.context(x, [schedules[graph.order[m]](steps[m] if m < len(steps) else 0) for m in range(n)])

    if len(prefix) == n:
        return graph.objective(ctx(node_steps), prefix)
    a = graph.init_node(ctx(node_steps + (0,)), len(prefix), prefix)
    for k in range(K):
        J = _unrolled_scheduled(graph, x, prefix + [a], node_steps + (k,), K, lr_at, schedules)
        (g,) = torch.autograd.grad(J.sum(), a, create_graph=True)
        a = a - lr_at(k) * g
    return _unrolled_scheduled(graph, x, prefix + [a], node_steps + (K,), K, lr_at, schedules)


def test_exact_gradient_matches_unrolling_with_per_node_relaxation_and_lr_schedules():
    from rdopt.relax.rounding import deterministic_annealing

    graph, x = _annealed_two_level()
    K = 4
    schedules = {"a": lambda t: deterministic_annealing(0.8 * 0.7**t), "b": lambda t: deterministic_annealing(0.3 + 0.1 * t)}

    def lr_at(k):
        return 0.15 * 0.8**k

    a = graph.amortize(x)["a"]
    leaf = a.detach().clone().requires_grad_(True)
    J = _unrolled_scheduled(graph, x, [leaf], (K,), K, lr_at, schedules)
    (ref,) = torch.autograd.grad(J.sum(), leaf)
    got = exact_gradient(graph, x, [a], K, lr_at, relaxation=schedules)
    assert torch.allclose(got.value, J.detach(), rtol=1e-12, atol=1e-12)
    assert _max_rel_err(got.grads, [ref]) < 1e-9
    # the schedules matter: one schedule for both nodes gives another gradient
    other = exact_gradient(graph, x, [a], K, lr_at, relaxation=schedules["a"])
    assert _max_rel_err(other.grads, [ref]) > 1e-3
    with pytest.raises(ValueError, match="unknown node"):
        exact_gradient(graph, x, [a], K, lr_at, relaxation={"q": schedules["a"]})
