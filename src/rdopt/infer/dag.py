"""SAVI on a DAG of latents: the joint (BAO), sequential, windowed and exact solvers of paper 001.

All solvers work on a :class:`rdopt.infer.graph.LatentGraph` and *minimise* its objective (a cost
``R + λD``; the paper maximises the ELBO, its negative, by gradient ascent — every formula below is
the descent form of the paper's ascent form). Let ``a_1 … a_N`` be the nodes in topological order and
``f_j`` their amortized initializers.

* :func:`joint` — BAO (Alg. 3, Eq. 8–9): FAVI once, then all nodes updated together with the partial
  derivatives ``∂L/∂a_i`` at the same step. The objective's own cross-node paths are included (the
  partial derivative of ``L`` w.r.t. ``a_i`` contains every term that reads ``a_i``), the paths
  through the initializers are not (§3.1), and children are never re-initialized (§3.2).
* :func:`sequential` — approximate SAVI (Alg. 4, Eq. 15): node by node in topological order; while
  ``a_i`` is optimized, ``a_{>i}`` are recomputed from their initializers inside the objective, so the
  gradient ``dL(a_{<i}, a_i, a_{>i}⁰(a_{≤i}))/da_i`` includes the paths through them (§3.1). After its
  ``K`` steps ``a_i`` is frozen; frozen nodes are evaluated with hard rounding from then on.
* :func:`windowed` — Eq. 26 (App. A.7): as :func:`sequential`, with the objective restricted to the
  terms whose latest input is one of ``a_i … a_{i+C}``; nodes after the window are not computed.
* :func:`exact` — exact SAVI on the DAG (Alg. 1/2, Eq. 12–14, Thm. 1–2): ``a_i`` is updated with the
  gradient of ``J_i(a_{≤i}) = L(a_{≤i}, a_{>i}^K)`` where ``a_{>i}`` are re-initialized by FAVI from
  ``a_{≤i}`` and optimized, recursively, for ``K`` steps each; the gradient is obtained by the adjoint
  recursion (back-propagation through gradient descent, Eq. 16–21) with Hessian-vector products.
  Cost ``Θ(K^N)`` objective evaluations: practical only for a handful of nodes and steps.

Every per-node optimization in ``joint``/``sequential``/``windowed`` (and the outermost level of
``exact``) runs in the one loop :func:`rdopt.infer.loop.optimize` (best-so-far per batch item under the
true, hard-rounded objective). Relaxations of rounding enter through a schedule ``step -> Relaxation``
(:data:`rdopt.infer.graph.RelaxationSchedule`, default: identity, i.e. ignore rounding while optimizing).

Objective-evaluation counts (:class:`EvaluationCounts`) count the solver's own work: every evaluation
of the (possibly windowed) objective, relaxed or true; the report values ``initial_objective`` and
``objective`` of a result are evaluated outside the counts.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Callable, Literal, Mapping, Sequence

import torch
from torch import Tensor

from ..core.types import Latents, Relaxation, RelaxationSchedule
from ..relax.rounding import hard, identity
from ..relax.schedules import Schedule
from .graph import Context, LatentGraph, Window, constant_relaxation
from .loop import LoopResult, optimize

HVPMode = Literal["autograd", "finite_difference"]

Relaxing = RelaxationSchedule | Mapping[str, RelaxationSchedule]
"""One relaxation schedule for every node, or one per node name (nodes not named: identity)."""


# ---------------------------------------------------------------------------------------------- results
@dataclass(frozen=True)
class EvaluationCounts:
    """Work done by a solver.

    Attributes:
        objective: evaluations of the objective (full or windowed), relaxed and true.
        terms: evaluations of individual objective terms (a windowed evaluation reads fewer).
        initializers: calls of amortized initializers.
        hvp: Hessian-vector products (exact solver; finite-difference ones included).
    """

    objective: int = 0
    terms: int = 0
    initializers: int = 0
    hvp: int = 0

    def __add__(self, other: "EvaluationCounts") -> "EvaluationCounts":
        return EvaluationCounts(
            self.objective + other.objective,
            self.terms + other.terms,
            self.initializers + other.initializers,
            self.hvp + other.hvp,
        )

    def __sub__(self, other: "EvaluationCounts") -> "EvaluationCounts":
        return EvaluationCounts(
            self.objective - other.objective,
            self.terms - other.terms,
            self.initializers - other.initializers,
            self.hvp - other.hvp,
        )


@dataclass(frozen=True)
class StageResult:
    """One call of the optimization loop: a node of ``sequential``/``windowed``, all nodes of
    ``joint``, the outermost node of ``exact``.

    Attributes:
        nodes: the nodes whose parameters this stage optimized.
        objective_before, objective_after: the stage's true objective (per batch item) at its start and
            at the best point found (for ``windowed`` the windowed objective).
        steps: steps run.
        counts: the work of this stage.
        seconds: wall time of this stage.
        diverged: per batch item, a non-finite value occurred (see the loop).
    """

    nodes: tuple[str, ...]
    objective_before: Tensor
    objective_after: Tensor
    steps: int
    counts: EvaluationCounts
    seconds: float
    diverged: Tensor
    loop: LoopResult | None = None  # the loop's own record (trace, best steps)


@dataclass(frozen=True)
class DagResult:
    """Result of a DAG solver.

    Attributes:
        solver: ``"amortized"``, ``"joint"``, ``"sequential"``, ``"windowed"`` or ``"exact"``.
        values: final node values (continuous; the true objective hard-rounds them).
        objective: true objective (hard rounding of every node, all terms) at ``values``, per item.
        initial_objective: true objective at the amortized (FAVI) initialization, per item.
        counts: objective / term / initializer / HVP evaluations of the solver.
        seconds: wall time.
        stages: one record per loop call.
        interrupted: Ctrl-C stopped the solver (values are the best found so far).
        fell_back: per item, the solver's own end point was non-finite or worse than the amortized
            start and the amortized values were returned instead (``exact`` only; ``None`` otherwise).
    """

    solver: str
    values: Latents
    objective: Tensor
    initial_objective: Tensor
    counts: EvaluationCounts
    seconds: float
    stages: tuple[StageResult, ...]
    interrupted: bool = False
    fell_back: Tensor | None = None


@dataclass(frozen=True)
class ExactGradient:
    """``dJ_i/da_m`` for the prefix ``a_0 … a_i`` (Thm. 1/2).

    Attributes:
        value: ``J_i(a_{≤i}) = L(a_{≤i}, a_{>i}^K(a_{≤i}))`` under the relaxation, per batch item.
        grads: total derivatives of ``Σ_b J_i`` w.r.t. each prefix node (same shapes as the prefix).
        suffix: the optimized later nodes ``a_{>i}^K`` (by name).
        counts: work done.
    """

    value: Tensor
    grads: tuple[Tensor, ...]
    suffix: Latents
    counts: EvaluationCounts


# ---------------------------------------------------------------------------------------------- problem
class _Problem:
    """A graph bound to its evidence, counting evaluations."""

    def __init__(self, graph: LatentGraph, x: Any, relaxation: "Relaxing | None"):
        self.graph = graph
        self.x = x
        self.n = len(graph)
        default = constant_relaxation(identity())
        if relaxation is None:
            relaxation = default
        if callable(relaxation):
            self.schedules: tuple[RelaxationSchedule, ...] = (relaxation,) * self.n
        else:
            unknown = sorted(set(relaxation) - set(graph.order))
            if unknown:
                raise ValueError(f"relaxation schedules for unknown node(s): {', '.join(unknown)}")
            self.schedules = tuple(relaxation.get(name, default) for name in graph.order)
        self._hard = hard()
        self.objective_calls = 0
        self.term_calls = 0
        self.init_calls = 0
        self.hvp_calls = 0

    def counts(self) -> EvaluationCounts:
        return EvaluationCounts(self.objective_calls, self.term_calls, self.init_calls, self.hvp_calls)

    def hard_context(self) -> Context:
        return self.graph.context(self.x, None)

    def staged_context(self, frozen: int, step: int) -> Context:
        """Nodes before ``frozen`` hard (decided), the others relaxed with the schedule at ``step``."""
        made: dict[int, Relaxation] = {}  # one relaxation per distinct schedule and step
        rel = [self._hard] * frozen
        for j in range(frozen, self.n):
            sched = self.schedules[j]
            if id(sched) not in made:
                made[id(sched)] = sched(step)
            rel.append(made[id(sched)])
        return self.graph.context(self.x, rel, step)

    def nested_context(self, node_steps: Sequence[int]) -> Context:
        """Exact solver: node ``m`` relaxed with the schedule at its own current step ``k_m``."""
        made: dict[tuple[int, int], Relaxation] = {}
        rel = []
        for m in range(self.n):
            sched, k = self.schedules[m], (node_steps[m] if m < len(node_steps) else 0)
            if (id(sched), k) not in made:
                made[(id(sched), k)] = sched(k)
            rel.append(made[(id(sched), k)])
        return self.graph.context(self.x, rel, node_steps[-1] if node_steps else 0)

    def objective(self, ctx: Context, values: Sequence[Tensor], terms: Sequence[int] | None = None) -> Tensor:
        self.objective_calls += 1
        self.term_calls += len(self.graph.terms) if terms is None else len(terms)
        return self.graph.objective(ctx, values, terms)

    def init(self, ctx: Context, j: int, values: Sequence[Tensor]) -> Tensor:
        self.init_calls += 1
        return self.graph.init_node(ctx, j, values)

    def complete(self, ctx: Context, values: Sequence[Tensor], stop: int | None = None) -> list[Tensor]:
        out = list(values)
        stop = self.n if stop is None else stop
        for j in range(len(out), stop):
            out.append(self.init(ctx, j, out))
        return out


def _report_objective(graph: LatentGraph, x: Any, values: Sequence[Tensor]) -> Tensor:
    with torch.no_grad():
        return graph.objective(graph.context(x, None), values).detach()


def _lr_at(lr: float | Schedule) -> Schedule:
    return lr if callable(lr) else (lambda _t, _v=float(lr): _v)


def _check_steps(steps: int) -> None:
    if not isinstance(steps, int) or steps < 0:
        raise ValueError(f"steps must be a non-negative integer, got {steps!r}")


def amortized(graph: LatentGraph, x: Any) -> DagResult:
    """The FAVI baseline: every node from its initializer (hard-rounded parents), no optimization."""
    t0 = time.perf_counter()
    values = graph.amortize(x)
    obj = _report_objective(graph, x, values.tensors)
    return DagResult("amortized", values, obj, obj, EvaluationCounts(), time.perf_counter() - t0, ())


# ---------------------------------------------------------------------------------------------- joint
def joint(
    graph: LatentGraph,
    x: Any,
    steps: int,
    lr: float | Schedule,
    *,
    relaxation: Relaxing | None = None,
    optimizer: str = "adam",
    eval_every: int = 10,
    progress: bool = False,
    init: Latents | None = None,
    trace_every: int = 0,
    trace_extra=None,
    desc: str = "joint (BAO)",
    nodes: Sequence[str] | None = None,
    control=None,
    partial: dict | None = None,
    on_snapshot: Callable[[int, dict], None] | None = None,
    snapshot_seconds: float = 60.0,
) -> DagResult:
    """BAO on a DAG (Alg. 3; Eq. 8–9 in descent form): ``a_i^{k+1} = a_i^k − α ∂L(a_1^k … a_N^k)/∂a_i^k``
    for all ``i`` at once, from one FAVI initialization (initializers see hard-rounded parents, as the
    real encoder does). Adam by default (the paper's optimizer, §6.1). ``Θ(K)`` objective evaluations,
    each of all ``N`` nodes (Θ(KN) node-evaluations).

    ``init``: start from these values instead of FAVI; ``trace_every``/``trace_extra``: the loop's
    learning-curve record (see :func:`rdopt.infer.loop.optimize`).

    ``nodes``: optimize only these (e.g. the residual latents of a GoP, paper 001 Table 3); the others
    stay at their start values, hard-rounded in every evaluation.

    ``control``: the loop's hook (:func:`rdopt.infer.loop.optimize`), called with the full node values.
    ``on_snapshot``/``partial``: the loop's state saved every ``snapshot_seconds`` and resumed, as in
    :func:`sequential` (one stage, index 0)."""
    _check_steps(steps)
    t0 = time.perf_counter()
    prob = _Problem(graph, x, relaxation)
    hard_ctx = prob.hard_context()
    if init is not None:
        start = [init[n].detach() for n in graph.order]
    else:
        with torch.no_grad():
            start = [v.detach() for v in prob.complete(hard_ctx, [])]
    chosen = tuple(range(len(graph))) if nodes is None else tuple(sorted({graph.index(n) for n in nodes}))
    if not chosen:
        raise ValueError("joint: no node to optimize")

    def full(params: Sequence[Tensor]) -> list[Tensor]:
        if len(chosen) == len(graph):
            return list(params)
        vals = list(start)
        for j, p in zip(chosen, params):
            vals[j] = p
        return vals

    def relaxed(params: Sequence[Tensor], step: int) -> Tensor:
        ctx = prob.staged_context(0, step)
        if len(chosen) != len(graph):
            rel = tuple(r if j in chosen else prob._hard for j, r in enumerate(ctx.relaxations))
            ctx = graph.context(x, rel, step)
        return prob.objective(ctx, full(params))

    def true(params: Sequence[Tensor]) -> Tensor:
        return prob.objective(hard_ctx, full(params))

    hook = None if control is None else (lambda step, params: control(step, Latents.of(graph.order, full(params))))
    res = optimize([start[j] for j in chosen], relaxed, true, steps, lr, optimizer=optimizer, eval_every=eval_every,
                   trace_every=trace_every, trace_extra=trace_extra, progress=progress, desc=desc, control=hook,
                   snapshot=None if on_snapshot is None else (lambda state: on_snapshot(0, state)),
                   snapshot_seconds=snapshot_seconds, resume=None if partial is None else partial["loop"])
    counts = prob.counts()
    stage = StageResult(tuple(graph.order[j] for j in chosen), res.initial_loss, res.best_loss, res.steps_run, counts,
                        res.seconds, res.diverged, res)
    values = Latents.of(graph.order, full(res.params))
    return DagResult(
        "joint", values, _report_objective(graph, x, values.tensors), _report_objective(graph, x, start),
        counts, time.perf_counter() - t0, (stage,), res.interrupted,
    )


# ---------------------------------------------------------------------------------------------- sequential
def sequential(
    graph: LatentGraph,
    x: Any,
    steps: int | Sequence[int],
    lr: float | Schedule,
    *,
    relaxation: Relaxing | None = None,
    optimizer: str = "adam",
    eval_every: int = 10,
    window: int | None = None,
    progress: bool = False,
    stages: Sequence[tuple[int, int]] | None = None,
    resume: Sequence[Tensor] = (),
    on_stage: Callable[[list[Tensor], StageResult], None] | None = None,
    partial: dict | None = None,
    on_snapshot: Callable[[int, dict], None] | None = None,
    snapshot_seconds: float = 60.0,
) -> DagResult:
    """Approximate SAVI on a DAG (Alg. 4): for ``i = 1 … N`` in topological order, ``K`` steps on
    ``a_i`` alone with the gradient of Eq. 15,
    ``dL(a_{<i}^K, a_i^k, a_{>i}⁰(a_{≤i}))/da_i^k`` — the later nodes are recomputed by their amortized
    initializers from the current ``a_i`` inside the objective, so their paths are differentiated
    through (§3.1, Alg. 4 line 4). Frozen nodes ``a_{<i}`` are evaluated with hard rounding; ``a_i`` and
    the nodes after it with the relaxation schedule (indexed by the stage's step).

    The loop keeps, per batch item, the best ``a_i`` under the true objective of the stage: hard
    rounding everywhere, later nodes at their amortized initialization from the hard-rounded parents.

    ``steps`` is one budget ``K`` for every node or one per node in topological order (the paper uses
    K = 2000 for the I-frame and 400 for P-frames, App. A.5). ``window=C`` gives :func:`windowed`
    (Eq. 26). ``Θ(KN)`` objective evaluations.

    ``stages``: the half-open node ranges optimized together, in order, covering every node (default
    :meth:`LatentGraph.stages`: one per frame, or one per node). A video codec's latents go best as
    ``y_0 | w_1 | y_1 | …`` with each hyper-latent beside its latent (paper 001, App. A.5); a stage with a
    budget of 0 keeps its FAVI values (re-inferred from the frozen stages before it).

    ``resume``: the final values of the first stages of an earlier run (a whole number of stages, in node
    order); those stages are not run again and have no record in the result. ``on_stage(frozen, record)`` is
    called after every stage that ran to its budget, with the values of all finished stages: a caller saves
    them to resume an interrupted run there (Alg. 4 freezes a stage once it is done, so nothing else of it is
    needed). Within a stage, ``on_snapshot(stage, state)`` receives the loop's state every ``snapshot_seconds``
    (:func:`rdopt.infer.loop.optimize`; ``stage`` is the index in the plan); ``partial={"stage": k, "loop": state}``
    goes on from there in stage ``k``, the first stage after ``resume`` — a budget of hours per stage (the paper's
    K = 2000 on a whole GoP) survives a process that ends mid-stage.
    """
    plan = tuple(graph.stages() if stages is None else (tuple(map(int, s)) for s in stages))
    if [a for a, _ in plan] != [0] + [b for _, b in plan[:-1]] or plan[-1][1] != len(graph) or any(a >= b for a, b in plan):
        raise ValueError(f"stages must be consecutive non-empty ranges covering all {len(graph)} nodes, got {plan}")
    budgets = [steps] * len(plan) if isinstance(steps, int) else list(steps)
    if len(budgets) != len(plan):
        what = "frame" if graph.frames is not None else "node"
        raise ValueError(f"steps: need one budget per {what} ({len(plan)}), got {len(budgets)}")
    for k in budgets:
        _check_steps(k)
    if window is not None and window < 0:
        raise ValueError(f"window size C must be >= 0, got {window}")
    t0 = time.perf_counter()
    prob = _Problem(graph, x, relaxation)
    hard_ctx = prob.hard_context()
    name = "sequential" if window is None else "windowed"
    ends = [0] + [b for _, b in plan]
    if len(resume) not in ends:
        raise ValueError(f"resume: need the values of whole stages (a node count in {ends}), got {len(resume)}")
    frozen: list[Tensor] = [v.detach() for v in resume]
    if partial is not None and int(partial["stage"]) != ends.index(len(resume)):
        raise ValueError(f"partial: a state of stage {partial['stage']}, but the first stage to run is "
                         f"{ends.index(len(resume))}")
    stages: list[StageResult] = []
    interrupted = False
    initial = _report_objective(graph, x, graph.amortize(x).tensors)
    for k, ((i, i_stop), budget) in enumerate(zip(plan, budgets)):
        if i_stop <= len(resume):
            continue
        before = prob.counts()
        win: Window | None = graph.window(i, window) if window is not None else None
        terms = graph.term_indices(win) if win is not None else None
        stop = max(win.stop, i_stop) if win is not None else prob.n
        with torch.no_grad():  # FAVI start of the stage's nodes, each from the ones before it
            a0 = [v.detach() for v in prob.complete(hard_ctx, frozen, i_stop)[i:]]
        fixed = list(frozen)

        def relaxed(params: Sequence[Tensor], step: int, _i: int = i, _fixed=fixed, _stop=stop, _terms=terms) -> Tensor:
            ctx = prob.staged_context(_i, step)
            vals = prob.complete(ctx, _fixed + list(params), _stop)
            return prob.objective(ctx, vals, _terms)

        def true(params: Sequence[Tensor], _fixed=fixed, _stop=stop, _terms=terms) -> Tensor:
            vals = prob.complete(hard_ctx, _fixed + list(params), _stop)
            return prob.objective(hard_ctx, vals, _terms)

        nodes = graph.order[i:i_stop]
        res = optimize(a0, relaxed, true, budget, lr, optimizer=optimizer, eval_every=eval_every,
                       progress=progress, desc=f"{name} {','.join(nodes)}",
                       snapshot=None if on_snapshot is None else (lambda state, _k=k: on_snapshot(_k, state)),
                       snapshot_seconds=snapshot_seconds,
                       resume=partial["loop"] if partial is not None and k == partial["stage"] else None)
        frozen.extend(res.params)
        stages.append(StageResult(nodes, res.initial_loss, res.best_loss, res.steps_run,
                                  prob.counts() - before, res.seconds, res.diverged))
        if on_stage is not None and not res.interrupted:
            on_stage(list(frozen), stages[-1])
        if res.interrupted:
            interrupted = True
            with torch.no_grad():
                frozen = [v.detach() for v in prob.complete(hard_ctx, frozen)]
            break
    values = Latents.of(graph.order, frozen)
    return DagResult(name, values, _report_objective(graph, x, values.tensors), initial, prob.counts(),
                     time.perf_counter() - t0, tuple(stages), interrupted)


def windowed(
    graph: LatentGraph,
    x: Any,
    steps: int | Sequence[int],
    lr: float | Schedule,
    window: int,
    *,
    relaxation: Relaxing | None = None,
    optimizer: str = "adam",
    eval_every: int = 10,
    progress: bool = False,
    stages: Sequence[tuple[int, int]] | None = None,
) -> DagResult:
    """Windowed approximate SAVI (Eq. 26, App. A.7): :func:`sequential` where node ``i``'s objective is
    ``Σ_{j=i}^{i+C} L_j`` — the terms whose latest input (in topological order) is one of
    ``a_i … a_{i+C}`` — and the nodes after ``a_{i+C}`` are neither initialized nor evaluated. Terms
    whose inputs all precede ``a_i`` are constant for stage ``i`` and dropped as well. The stage's true
    objective (best-so-far selection) is windowed too; the result's ``objective`` is the full one."""
    if window is None:
        raise ValueError("windowed needs a window size C (use sequential for the full objective)")
    return sequential(graph, x, steps, lr, relaxation=relaxation, optimizer=optimizer, eval_every=eval_every,
                      window=window, progress=progress, stages=stages)


# ---------------------------------------------------------------------------------------------- exact
@dataclass
class _LevelOut:
    inputs: list[Tensor]  # the aliases of this call's inputs (what ``grads`` are w.r.t.)
    value: Tensor  # (B,)
    grads: list[Tensor] | None  # d(Σ_b J_i)/d input_m, m = 0..i
    suffix: list[Tensor]  # a_{>i}^K


def _alias(t: Tensor, create_graph: bool) -> Tensor:
    """A fresh graph node equal to ``t``. With ``create_graph`` it stays connected to ``t`` (so results
    remain differentiable w.r.t. whatever ``t`` depends on) but nothing else depends on it, so
    ``autograd.grad(…, alias)`` is the *partial* derivative w.r.t. this argument; otherwise a leaf."""
    if create_graph and t.requires_grad:
        return t.view_as(t)
    return t.detach().requires_grad_(True)


def _zeros_for_none(grads: Sequence[Tensor | None], like: Sequence[Tensor]) -> list[Tensor]:
    return [torch.zeros_like(r) if g is None else g for g, r in zip(grads, like)]


class _Recursion:
    """Alg. 2 in topological nesting: ``G_i(a_{≤i}) → (J_i, dJ_i/da_{≤i}, a_{>i}^K)``.

    Derivation (descent form, our update rule). Fix the prefix ``p = a_{≤i}`` and let ``a = a_{i+1}``:
    ``a⁰ = f(p)``, ``a^{k+1} = a^k − α_k g(p, a^k)`` with ``g = ∂J_{i+1}/∂a`` (the *total* derivative of
    the next level, itself given by this recursion; for the last node ``J_N = L``), and
    ``J_i(p) = J_{i+1}(p, a^K)``. Reverse-mode through the unrolled descent (Eq. 16–19):

        ā^K = ∂J_{i+1}/∂a (p, a^K),          p̄ = ∂J_{i+1}/∂p (p, a^K)
        for k = K−1 … 0:
            p̄  ← p̄ − α_k (∂g/∂p)(p, a^k)ᵀ ā^{k+1}            (Eq. 18: ∂a^{k+1}/∂p = −α ∂²J/∂p∂a)
            ā^k = ā^{k+1} − α_k (∂g/∂a)(p, a^k)ᵀ ā^{k+1}     (Eq. 17: ∂a^{k+1}/∂a^k = I − α ∂²J/∂a²)
        p̄ ← p̄ + (∂f/∂p)ᵀ ā⁰                                 (Alg. 1 line 16, Alg. 2 line 19)
        return p̄ = dJ_i/dp

    For gradient *ascent* (the paper's form) both ``−α`` become ``+α``; for descent they must be
    ``−α`` — with ``+α`` the recursion differentiates a different (ascent) trajectory than the one run.
    The Hessian-vector products ``(∂g/∂(p, a))ᵀ v`` are computed by autograd double-backward through
    the stored graph of ``g`` (``hvp="autograd"``; for ``i+1 < N`` this differentiates the next level's
    own adjoint recursion, i.e. third and higher derivatives for deeper chains) or by finite
    differences of gradients as in Eq. 20, taken central,
    ``(∇J_{i+1}(p, a^k + r v) − ∇J_{i+1}(p, a^k − r v)) / 2r`` (``"finite_difference"``, first-order
    only; uses the symmetry of the Hessian of ``J_{i+1}``). Eq. 20's one-sided difference has the same
    limit; the central one is used because differences nest (the differenced gradient is itself a
    finite-difference result one level down) and a one-sided one then amplifies round-off to O(1)
    (observed: 2e-3 absolute error on a 3-node toy in float64). Step ``r = fd_step·(1 + |a^k|)/|v|``
    with ``fd_step = ε^{1/4}`` of the dtype by default.

    Note on Alg. 2: the paper iterates over the children ``C(a_i)``; Eq. 14 defines the update with all
    later nodes ``a_{>i}^K`` re-initialized and optimized. We implement Eq. 14 (nesting in topological
    order), which coincides with Alg. 2 on chains and also covers later nodes that are not children but
    whose optimization depends on ``a_i`` through the objective. Its second-order terms are those of
    ``J_{i+1}`` (including the inner optimizations), not of ``L`` alone as Alg. 2 lines 17–18 suggest:
    only then is Thm. 2 exact for depth ≥ 3 (tested against full unrolling).
    """

    def __init__(self, prob: _Problem, steps: int, lr: float | Schedule, hvp: HVPMode, fd_step: float | None):
        if hvp not in ("autograd", "finite_difference"):
            raise ValueError(f"unknown hvp mode {hvp!r} (autograd, finite_difference)")
        self.prob = prob
        self.K = steps
        self.lr_at = _lr_at(lr)
        self.hvp = hvp
        self.fd_step = fd_step

    @torch.enable_grad()
    def grad(self, inputs: Sequence[Tensor], node_steps: tuple[int, ...], create_graph: bool,
             need_grad: bool = True) -> _LevelOut:
        """``G_i`` for the prefix ``inputs = a_0 … a_i``; ``create_graph``: keep the result
        differentiable w.r.t. the inputs (needed when the level above takes HVPs of it);
        ``need_grad=False``: forward only (the optimized suffix), no adjoint."""
        prob = self.prob
        n = prob.n
        i = len(inputs) - 1
        q = [_alias(t, create_graph) for t in inputs]
        if i == n - 1:  # leaf: J_N = L
            if not need_grad:
                return _LevelOut(q, q[0].new_empty(0), None, [])
            value = prob.objective(prob.nested_context(node_steps), q)
            grads = torch.autograd.grad(value.sum(), q, create_graph=create_graph, allow_unused=True)
            return _LevelOut(q, value if create_graph else value.detach(), _zeros_for_none(grads, q), [])

        j = i + 1
        inner_graph = need_grad and self.hvp == "autograd"
        a0 = prob.init(prob.nested_context(node_steps + (0,)), j, q)
        a = a0 if create_graph else a0.detach()
        forward: list[tuple[_LevelOut, Tensor]] = []
        for k in range(self.K):
            out = self.grad(q + [a], node_steps + (k,), create_graph=inner_graph)
            forward.append((out, a))
            step = a - self.lr_at(k) * out.grads[j]
            a = step if create_graph else step.detach()
        last = self.grad(q + [a], node_steps + (self.K,), create_graph=create_graph, need_grad=need_grad)
        suffix = [a if create_graph else a.detach()] + last.suffix
        if not need_grad:
            return _LevelOut(q, q[0].new_empty(0), None, suffix)

        p_bar = list(last.grads[:j])
        a_bar = last.grads[j]
        for k in reversed(range(self.K)):
            out, a_k = forward[k]
            h = self._hvp(out, q, a_k, a_bar, node_steps + (k,), create_graph)
            lr_k = self.lr_at(k)
            p_bar = [pb - lr_k * hm for pb, hm in zip(p_bar, h[:j])]
            a_bar = a_bar - lr_k * h[j]
        if a0.requires_grad:  # a node without parents (or ignoring them) has no path through f
            through_init = torch.autograd.grad(a0, q, grad_outputs=a_bar, create_graph=create_graph,
                                               allow_unused=True)
            p_bar = [pb + t for pb, t in zip(p_bar, _zeros_for_none(through_init, q))]
        return _LevelOut(q, last.value, p_bar, suffix)

    def _hvp(self, out: _LevelOut, q: list[Tensor], a_k: Tensor, v: Tensor, node_steps: tuple[int, ...],
             create_graph: bool) -> list[Tensor]:
        """``(∂g/∂(p, a))ᵀ v`` at ``(p, a^k)`` with ``g = ∂J_{i+1}/∂a``; one block per input."""
        self.prob.hvp_calls += 1
        j = len(q)
        if self.hvp == "autograd":
            if not out.grads[j].requires_grad:  # the gradient does not depend on the point: H = 0
                return [torch.zeros_like(t) for t in out.inputs]
            h = torch.autograd.grad(out.grads[j], out.inputs, grad_outputs=v, create_graph=create_graph,
                                    allow_unused=True)
            return _zeros_for_none(h, out.inputs)
        # Eq. 20 along (0, …, 0, v), as a central difference (∇J(p, a + r v) − ∇J(p, a − r v)) / 2r: the
        # one-sided form of Eq. 20 loses too much to round-off once differences are nested (the gradient
        # being differenced is itself computed with finite differences at the next level).
        v_norm = float(v.detach().norm())
        if v_norm == 0.0 or not math.isfinite(v_norm):
            return [torch.zeros_like(t) for t in out.inputs]
        eps = self.fd_step if self.fd_step is not None else torch.finfo(v.dtype).eps ** 0.25
        r = eps * (1.0 + float(a_k.detach().norm())) / v_norm
        base = [t.detach() for t in q]
        plus = self.grad(base + [(a_k + r * v).detach()], node_steps, create_graph=False)
        minus = self.grad(base + [(a_k - r * v).detach()], node_steps, create_graph=False)
        return [(gp - gm) / (2.0 * r) for gp, gm in zip(plus.grads, minus.grads)]


def exact_evaluation_count(nodes: int, steps: int, hvp: HVPMode = "autograd", true_evaluations: int = 0) -> int:
    """Objective evaluations of :func:`exact` (``true_evaluations`` evaluations of the top-level true
    objective; :func:`exact` uses ``1 + ⌈K / eval_every⌉``). Grows as ``Θ(K^N)``:

    ``full(N) = 1``, ``full(i) = (K+1)·full(i+1)`` (autograd HVP) or ``(3K+1)·full(i+1)`` (central
    finite difference: two extra gradients per step), ``fwd(N) = 0``, ``fwd(i) = K·full(i+1) + fwd(i+1)``;
    total ``K·full(1) + true_evaluations·(fwd(1) + 1)``."""
    if nodes < 1 or steps < 0:
        raise ValueError(f"need nodes >= 1 and steps >= 0, got {nodes}, {steps}")
    per = steps + 1 if hvp == "autograd" else 3 * steps + 1
    full = [0] * (nodes + 1)
    fwd = [0] * (nodes + 1)
    full[nodes - 1], fwd[nodes - 1] = 1, 0
    for i in range(nodes - 2, -1, -1):
        full[i] = per * full[i + 1]
        fwd[i] = steps * full[i + 1] + fwd[i + 1]
    return steps * full[0] + true_evaluations * (fwd[0] + 1)


def _true_evaluations(steps: int, eval_every: int) -> int:
    """How many times :func:`rdopt.infer.loop.optimize` evaluates the true objective."""
    return 1 + sum(1 for s in range(1, steps + 1) if s % eval_every == 0 or s == steps)


def exact_gradient(
    graph: LatentGraph,
    x: Any,
    prefix: Sequence[Tensor],
    steps: int,
    lr: float | Schedule,
    *,
    relaxation: Relaxing | None = None,
    hvp: HVPMode = "autograd",
    fd_step: float | None = None,
) -> ExactGradient:
    """Thm. 1/2: ``dJ_i/da_m`` (``m ≤ i``) for the prefix ``a_0 … a_i`` (values of the first ``i+1``
    nodes in topological order), where ``J_i = L(a_{≤i}, a_{>i}^K)`` and the later nodes are
    re-initialized by FAVI and optimized by ``K`` steps of plain gradient descent each, recursively
    (Eq. 14). See :class:`_Recursion` for the recursion and :func:`exact` for costs."""
    _check_steps(steps)
    if not 1 <= len(prefix) <= len(graph):
        raise ValueError(f"prefix must hold 1..{len(graph)} node values, got {len(prefix)}")
    prob = _Problem(graph, x, relaxation)
    rec = _Recursion(prob, steps, lr, hvp, fd_step)
    out = rec.grad([t.detach() for t in prefix], tuple([steps] * len(prefix)), create_graph=False)
    assert out.grads is not None
    names = graph.order[len(prefix):]
    return ExactGradient(out.value.detach(), tuple(g.detach() for g in out.grads),
                         Latents.of(names, (s.detach() for s in out.suffix)), prob.counts())


def exact(
    graph: LatentGraph,
    x: Any,
    steps: int,
    lr: float | Schedule,
    *,
    relaxation: Relaxing | None = None,
    hvp: HVPMode = "autograd",
    fd_step: float | None = None,
    eval_every: int | None = None,
    max_evaluations: int = 200_000,
    progress: bool = False,
) -> DagResult:
    """Exact SAVI on a DAG (Alg. 1/2, Eq. 12–14, Thm. 1–2), by recursive back-propagation through
    gradient descent.

    Every node is optimized by ``K = steps`` steps of **plain gradient descent** with step size ``lr``
    (a constant or a schedule over the node's own step index): the inner optimizations must be
    differentiated, so we differentiate exactly the optimizer we run — the paper's Alg. 1 is also
    written with plain gradient steps (Adam, which the paper uses for its practical solver, would need
    its moment estimates differentiated too). The outermost node runs in the shared loop with
    ``optimizer="sgd"`` (identical updates, plus best-so-far selection per batch item under the true
    objective ``L_hard(a_1, a_{>1}^K(a_1))``); inner levels are pure descent (no selection, no
    divergence handling — they are what is being differentiated). As for the other solvers the result
    is never worse than the amortized (FAVI) initialization: an item whose final true objective is
    non-finite or worse (e.g. a nested descent diverged: step too large for plain descent) keeps the
    FAVI values; ``stages[0].diverged`` flags items where a non-finite value occurred.

    Cost: ``Θ(K^N)`` objective evaluations (exactly :func:`exact_evaluation_count`) and, with
    ``hvp="autograd"``, memory for the whole unrolled tree and derivatives of order up to ``N``. It is
    practical only for a handful of nodes and steps (N ≤ 3–4, K ≤ a few tens); settings whose predicted
    evaluation count exceeds ``max_evaluations`` are refused with ``ValueError`` — use
    :func:`sequential` or :func:`windowed` (``Θ(KN)``) instead.

    ``hvp="finite_difference"`` (Eq. 20) needs only first derivatives but a deterministic relaxation
    (the gradients of a difference must see the same rounding noise) and costs ``(3K+1)`` instead
    of ``(K+1)`` next-level gradients per level (central differences, see :class:`_Recursion`).
    ``eval_every`` defaults to ``steps`` (true objective at the start and the end only: each true
    evaluation runs the nested inner solve once).
    """
    _check_steps(steps)
    eval_every = max(steps, 1) if eval_every is None else eval_every
    if eval_every <= 0:
        raise ValueError(f"eval_every must be > 0, got {eval_every}")
    n = len(graph)
    predicted = exact_evaluation_count(n, steps, hvp, _true_evaluations(steps, eval_every))
    if predicted > max_evaluations:
        raise ValueError(
            f"exact SAVI on {n} nodes with K={steps} needs {predicted:,} objective evaluations "
            f"(Θ(K^N)), above max_evaluations={max_evaluations:,}; use sequential/windowed (Θ(KN)) or "
            f"reduce N or K"
        )
    t0 = time.perf_counter()
    prob = _Problem(graph, x, relaxation)
    rec = _Recursion(prob, steps, lr, hvp, fd_step)
    hard_ctx = prob.hard_context()
    with torch.no_grad():
        a0 = prob.init(hard_ctx, 0, []).detach()
    seen: list[tuple[Tensor, list[Tensor]]] = []  # (a_1, a_{>1}^K(a_1)) of every true evaluation

    def relaxed(params: Sequence[Tensor], step: int) -> Tensor:
        out = rec.grad([params[0]], (step,), create_graph=False)
        assert out.grads is not None
        p = params[0]
        # value J_1(a_1), gradient dJ_1/da_1 from the recursion (Thm. 2)
        return out.value.detach() + ((p - p.detach()) * out.grads[0]).flatten(1).sum(1)

    def true(params: Sequence[Tensor]) -> Tensor:
        out = rec.grad([params[0]], (steps,), create_graph=False, need_grad=False)  # enables grad itself
        vals = [params[0].detach()] + [s.detach() for s in out.suffix]
        seen.append((params[0].detach().clone(), vals[1:]))
        return prob.objective(hard_ctx, vals)

    res = optimize([a0], relaxed, true, steps, lr, optimizer="sgd", eval_every=eval_every, progress=progress,
                   desc="exact SAVI")
    best = res.params[0]
    # the descendants that go with each item's best a_1 (found by one of the true evaluations)
    rows: list[list[Tensor]] = []
    for b in range(best.shape[0]):
        match = next((s for a, s in reversed(seen) if torch.equal(a[b], best[b])), None)
        if match is None:  # cannot happen unless the loop returns parameters it never evaluated
            raise RuntimeError("exact: best parameters were never evaluated")
        rows.append([t[b : b + 1] for t in match])
    suffix = [torch.cat([r[m] for r in rows]) for m in range(n - 1)]
    values_t = [best, *suffix]
    favi = graph.amortize(x)
    initial = _report_objective(graph, x, favi.tensors)
    final = _report_objective(graph, x, values_t)
    # The loop's best-so-far starts from a_1⁰ with *optimized* descendants, never from the FAVI point
    # itself, and the inner levels are plain descent without safeguards (too large a step diverges).
    # Like joint/sequential (whose loops start at FAVI), the result is never worse than FAVI: items that
    # end non-finite or worse keep the amortized values; non-finite ones are flagged as diverged.
    worse = ~(final <= initial)
    if bool(worse.any()):
        values_t = [torch.where(worse.reshape(-1, *([1] * (v.dim() - 1))), f, v)
                    for v, f in zip(values_t, favi.tensors)]
        final = torch.where(worse, initial, final)
    values = Latents.of(graph.order, values_t)
    stage = StageResult((graph.order[0],), res.initial_loss, res.best_loss, res.steps_run, prob.counts(),
                        res.seconds, res.diverged | ~torch.isfinite(res.best_loss), res)
    return DagResult("exact", values, final, initial, prob.counts(), time.perf_counter() - t0, (stage,),
                     res.interrupted, fell_back=worse)


__all__ = [
    "DagResult",
    "EvaluationCounts",
    "ExactGradient",
    "HVPMode",
    "StageResult",
    "amortized",
    "exact",
    "exact_evaluation_count",
    "exact_gradient",
    "joint",
    "sequential",
    "windowed",
]
