"""Latent DAG abstraction (rdopt.infer.graph): validation, topological order, windows, evaluation."""

from __future__ import annotations

import pytest
import torch

from rdopt.infer.graph import Context, LatentGraph, Node, NodeValues, Term, Window, constant_relaxation
from rdopt.relax.rounding import hard, identity

DT = torch.float64


def _const(v: float):
    return lambda ctx, *parents: torch.full((2, 3), v, dtype=DT) + sum((p for p in parents), torch.zeros((2, 3), dtype=DT))


def _sq(*names):
    return Term("t_" + "_".join(names), names, lambda ctx, *vals: sum(v.pow(2).sum(1) for v in vals))


def test_topological_order_is_stable_in_declaration_order():
    # declared out of order: c needs a and b; b needs a; d is independent and declared first
    g = LatentGraph(
        nodes=[Node("d", (), _const(0)), Node("c", ("a", "b"), _const(0)), Node("b", ("a",), _const(0)),
               Node("a", (), _const(0))],
        terms=[_sq("c")],
    )
    assert g.order == ("d", "a", "b", "c")
    assert [n.name for n in g.nodes] == list(g.order)
    assert g.index("c") == 3
    assert g.children("a") == ("b", "c")  # in topological order
    assert g.descendants("a") == ("b", "c")
    assert g.descendants("d") == ()
    assert g.parents("c") == ("a", "b")


def test_cycle_is_rejected_and_named():
    with pytest.raises(ValueError, match="cycle") as e:
        LatentGraph(
            nodes=[Node("a", (), _const(0)), Node("b", ("a", "d"), _const(0)), Node("c", ("b",), _const(0)),
                   Node("d", ("c",), _const(0))],
            terms=[_sq("a")],
        )
    msg = str(e.value)
    for n in ("b", "c", "d"):
        assert n in msg
    assert "a," not in msg.split("through:")[1]  # a is not on the cycle


def test_self_loop_unknown_parent_duplicates_and_unknown_term_input():
    with pytest.raises(ValueError, match="own parent"):
        Node("a", ("a",), _const(0))
    with pytest.raises(ValueError, match="unknown parent.*zz"):
        LatentGraph(nodes=[Node("a", ("zz",), _const(0))], terms=[_sq("a")])
    with pytest.raises(ValueError, match="duplicate node names: a"):
        LatentGraph(nodes=[Node("a", (), _const(0)), Node("a", (), _const(0))], terms=[_sq("a")])
    with pytest.raises(ValueError, match="reads unknown node"):
        LatentGraph(nodes=[Node("a", (), _const(0))], terms=[_sq("b")])
    with pytest.raises(ValueError, match="duplicate term names"):
        LatentGraph(nodes=[Node("a", (), _const(0))], terms=[_sq("a"), _sq("a")])
    with pytest.raises(ValueError, match="at least one node"):
        LatentGraph(nodes=[], terms=[_sq("a")])
    with pytest.raises(ValueError, match="at least one objective term"):
        LatentGraph(nodes=[Node("a", (), _const(0))], terms=[])
    with pytest.raises(ValueError, match="reads no node"):
        Term("t", (), lambda ctx: torch.zeros(1))


def _chain(n: int) -> LatentGraph:
    names = [f"n{i}" for i in range(n)]
    nodes = [Node(names[0], (), _const(1.0))] + [Node(names[i], (names[i - 1],), _const(1.0)) for i in range(1, n)]
    terms = [Term(f"L{i}", (names[i],) if i == 0 else (names[i - 1], names[i]),
                  (lambda ctx, a: a.sum(1)) if i == 0 else (lambda ctx, a, b: (a * b).sum(1))) for i in range(n)]
    return LatentGraph(nodes, terms)


def test_term_positions_and_windows():
    g = _chain(5)
    assert g.term_positions == (0, 1, 2, 3, 4)
    w = g.window(1, 2)
    assert w == Window(start=1, stop=4, nodes=("n1", "n2", "n3"), terms=("L1", "L2", "L3"))
    assert g.window("n3", 5) == Window(3, 5, ("n3", "n4"), ("L3", "L4"))  # clipped at the end
    assert g.window(2, 0).terms == ("L2",)
    assert g.window(0, None).stop == 5
    assert g.term_indices(g.window(1, 2)) == (1, 2, 3)
    with pytest.raises(ValueError, match=">= 0"):
        g.window(0, -1)
    with pytest.raises(IndexError):
        g.window(7, 1)


def test_term_position_is_latest_input_not_declaration():
    # the hyperprior ordering y -> z: a term reading (z, y) sits at z, the later node
    g = LatentGraph(
        nodes=[Node("y", (), _const(1.0)), Node("z", ("y",), _const(2.0))],
        terms=[Term("rate_y", ("z", "y"), lambda ctx, z, y: (y - z).sum(1)), Term("d", ("y",), lambda ctx, y: y.sum(1))],
    )
    assert g.term_positions == (1, 0)
    assert g.window(0, 0).terms == ("d",)


def test_amortize_complete_and_objective_are_differentiable():
    g = LatentGraph(
        nodes=[Node("a", (), lambda ctx: ctx.x * 2.0), Node("b", ("a",), lambda ctx, a: a.pow(2) + ctx.x)],
        terms=[Term("la", ("a",), lambda ctx, a: a.sum(1)), Term("lb", ("a", "b"), lambda ctx, a, b: (a * b).sum(1))],
    )
    x = torch.tensor([[1.0, 2.0], [0.5, -1.0]], dtype=DT)
    vals = g.amortize(x)
    assert isinstance(vals, NodeValues)
    assert torch.equal(vals["a"], 2 * x) and torch.equal(vals["b"], 4 * x * x + x)
    assert vals.names == ("a", "b") and len(vals) == 2
    with pytest.raises(KeyError):
        vals["q"]
    a = vals["a"].clone().requires_grad_(True)
    ctx = g.context(x, identity())
    full = g.complete(ctx, [a])
    obj = g.objective(ctx, full)
    # L = Σ a + Σ a·(a² + x): dL/da = 1 + 3a² + x  (path through b's initializer included)
    (grad,) = torch.autograd.grad(obj.sum(), a)
    assert torch.allclose(grad, 1 + 3 * a.detach() ** 2 + x)
    assert obj.shape == (2,)
    names = [n for n, _ in g.term_values(ctx, full)]
    assert names == ["la", "lb"]


def test_term_must_return_one_value_per_item():
    g = LatentGraph(nodes=[Node("a", (), _const(1.0))], terms=[Term("bad", ("a",), lambda ctx, a: a.sum())])
    with pytest.raises(ValueError, match=r"shape \(B,\)"):
        g.objective(g.context(None), g.amortize(None).tensors)


def test_context_relaxations_per_node():
    g = _chain(3)
    r = identity()
    ctx = g.context(None, [hard(), r, hard()])
    assert ctx.relax("n1") is r
    assert ctx.relax("n0") is not r
    with pytest.raises(KeyError):
        ctx.relax("zz")
    with pytest.raises(ValueError):
        Context(x=None, names=("a",), relaxations=())
    # None -> hard rounding everywhere: the true objective rounds
    v = torch.tensor([[0.4, 1.6]], dtype=DT)
    assert torch.equal(g.context(None).relax("n2")(v, torch.zeros_like(v)), torch.tensor([[0.0, 2.0]], dtype=DT))
    sched = constant_relaxation(r)
    assert sched(0) is r and sched(123) is r
