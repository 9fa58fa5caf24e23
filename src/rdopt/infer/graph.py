"""Latent DAGs: the structure semi-amortized inference (SAVI) on non-factorized latents works on.

Paper 001 (§4.2, Alg. 2–4, App. A.4) considers variational parameters ``a_1 … a_N`` whose posterior
factorizes along a directed acyclic graph ``G``: an edge ``a_i → a_j`` means that ``ã_j`` is conditioned
on ``ã_i``, so the amortized (FAVI) initializer of ``a_j`` is a function of ``x`` and of its parents,
``a_j⁰ = f_j(x, P(a_j))``. The objective is a sum of terms ``L = Σ_j L_j`` (Eq. 6: one R-D term per
frame in a video; Eq. 26 restricts the sum to a window).

A :class:`LatentGraph` holds

* :class:`Node` s — a name, the names of its parents, and its amortized initializer
  ``init(ctx, *parent_values) -> Tensor`` (parents in the order they are declared);
* :class:`Term` s — a name, the names of the nodes it reads, and ``fn(ctx, *values) -> Tensor`` with one
  value per batch item (shape ``(B,)``). The objective is the sum of all terms and is *minimised*
  (rdopt's convention: a cost ``R + λD``; the paper maximises its negative, the ELBO);
* the topological order (stable: among nodes that are ready, the one declared first comes first) and
  each term's *position*: the latest of its inputs in that order. A window of node ``i`` with ``C``
  following nodes (Eq. 26) keeps the terms whose position lies in ``i … i+C``;
* optionally, the *frame* of every node (a video: the latents of frame ``t`` — motion, residual and
  their hyper-latents). Then a window counts frames, not nodes (Eq. 26 sums the frame costs
  ``L_i … L_{i+C}``), and the sequential solvers optimize the latents of one frame together as one
  stage (:meth:`LatentGraph.stages`), as App. A.5 optimizes frame by frame. Without frames every node
  is its own frame and its own stage.

Relaxation of rounding is not part of the graph: every initializer and term receives a
:class:`Context` that carries the evidence ``x`` and one relaxation per node (hard rounding for the true
objective and for frozen nodes, e.g. SGA for nodes under optimization). A term applies
``ctx.relax(name)(value, offset)`` itself, because only it knows the rounding offset (for a mean-scale
hyperprior the offset of ``y`` is the prior mean predicted from ``z``).

Node values carry a leading batch dimension (independent problems solved side by side, e.g. several
crops); every term returns one value per batch item.

Example (a two-node chain)::

    g = LatentGraph(
        nodes=[Node("a", (), lambda ctx: ctx.x * 2),
               Node("b", ("a",), lambda ctx, a: a + ctx.x)],
        terms=[Term("la", ("a",), lambda ctx, a: (a - 1).pow(2).sum(1)),
               Term("lb", ("a", "b"), lambda ctx, a, b: (b - a).pow(2).sum(1))],
    )
    g.order                 # ('a', 'b')
    g.window(0, 0)          # Window(start=0, stop=1, nodes=('a',), terms=('la',))
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import torch
from torch import Tensor

from ..core.types import Latents, Relaxation, RelaxationSchedule
from ..relax.rounding import hard

Initializer = Callable[..., Tensor]
"""``init(ctx, *parent_values) -> Tensor``: amortized inference of one node (FAVI)."""

TermFn = Callable[..., Tensor]
"""``fn(ctx, *input_values) -> Tensor`` of shape ``(B,)``: one additive part of the objective."""



def constant_relaxation(relax: Relaxation) -> RelaxationSchedule:
    """A relaxation schedule that returns the same relaxation at every step."""

    def schedule(step: int) -> Relaxation:
        return relax

    return schedule


@dataclass(frozen=True)
class Node:
    """One latent (variational parameter) of the DAG.

    Attributes:
        name: unique name.
        parents: names of the nodes its posterior is conditioned on (edges ``parent → name``).
        init: amortized initializer ``init(ctx, *parent_values) -> Tensor`` (values in the order of
            ``parents``). It must be differentiable in the parent values: the sequential and exact
            solvers back-propagate through it (paper §3.1, Alg. 2 line 19, Alg. 4 line 4).
        frame: the frame the node belongs to (``None``: no frames; then give it for no node).
    """

    name: str
    parents: tuple[str, ...]
    init: Initializer
    frame: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"node names must be non-empty strings, got {self.name!r}")
        object.__setattr__(self, "parents", tuple(self.parents))
        if len(set(self.parents)) != len(self.parents):
            raise ValueError(f"node {self.name!r} lists a parent twice: {self.parents}")
        if self.name in self.parents:
            raise ValueError(f"node {self.name!r} is its own parent (a cycle of length 1)")
        if not callable(self.init):
            raise TypeError(f"node {self.name!r}: init must be callable")
        if self.frame is not None and (not isinstance(self.frame, int) or self.frame < 0):
            raise ValueError(f"node {self.name!r}: frame must be a non-negative integer, got {self.frame!r}")


@dataclass(frozen=True)
class Term:
    """One additive term ``L_j`` of the objective (a cost to minimise).

    Attributes:
        name: unique name (for reporting).
        inputs: names of the nodes it reads; values are passed to ``fn`` in this order.
        fn: ``fn(ctx, *values) -> Tensor`` of shape ``(B,)``.
    """

    name: str
    inputs: tuple[str, ...]
    fn: TermFn

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"term names must be non-empty strings, got {self.name!r}")
        object.__setattr__(self, "inputs", tuple(self.inputs))
        if not self.inputs:
            raise ValueError(f"term {self.name!r} reads no node")
        if len(set(self.inputs)) != len(self.inputs):
            raise ValueError(f"term {self.name!r} lists an input twice: {self.inputs}")
        if not callable(self.fn):
            raise TypeError(f"term {self.name!r}: fn must be callable")


@dataclass(frozen=True)
class Context:
    """What an initializer or a term sees besides node values.

    Attributes:
        x: the evidence (an image tensor, a tuple of frames, anything the user's functions expect).
        names: node names in topological order.
        relaxations: one relaxation of rounding per node, in the same order.
        step: the optimization step this evaluation belongs to (informational).
        memo: scratch space that lives as long as the context (one evaluation: a step's initializers
            and terms). A codec may keep work there that several of them share, e.g. the decoded
            frames of a GoP (:class:`rdopt.codecs.video.gop.GopCodec`); keys must identify the values used.
    """

    x: Any
    names: tuple[str, ...]
    relaxations: tuple[Relaxation, ...]
    step: int = 0
    _index: dict[str, int] = field(default_factory=dict, repr=False, compare=False)
    memo: dict = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        if len(self.names) != len(self.relaxations):
            raise ValueError(f"{len(self.names)} nodes but {len(self.relaxations)} relaxations")
        self._index.update({n: i for i, n in enumerate(self.names)})

    def relaxation_map(self, names: Sequence[str] | None = None) -> dict[str, Relaxation]:
        """``name -> relaxation`` for the given nodes (all by default): what a codec's ``evaluate`` takes."""
        return {n: self.relax(n) for n in (self.names if names is None else names)}

    def relax(self, name: str) -> Relaxation:
        """The relaxation of rounding to apply to node ``name`` in this evaluation."""
        try:
            return self.relaxations[self._index[name]]
        except KeyError:
            raise KeyError(f"unknown node {name!r}; nodes: {', '.join(self.names)}") from None


NodeValues = Latents
"""Values of all nodes in topological order (the one named-latents type, :class:`rdopt.core.types.Latents`)."""


@dataclass(frozen=True)
class Window:
    """Node ``start`` and the ``C`` nodes (with frames: the nodes of the ``C`` frames) after it in
    topological order (Eq. 26).

    Attributes:
        start, stop: the half-open range of topological indices ``[start, stop)``.
        nodes: their names.
        terms: names of the terms whose position (latest input) lies in the window.
    """

    start: int
    stop: int
    nodes: tuple[str, ...]
    terms: tuple[str, ...]


class LatentGraph:
    """A DAG of latent nodes with amortized initializers and an additive objective.

    Raises ``ValueError`` on duplicate names, unknown parents or term inputs, cycles (the nodes on the
    cycle are named), or an empty graph / objective.
    """

    def __init__(self, nodes: Sequence[Node], terms: Sequence[Term]):
        nodes = tuple(nodes)
        terms = tuple(terms)
        if not nodes:
            raise ValueError("a latent graph needs at least one node")
        if not terms:
            raise ValueError("a latent graph needs at least one objective term")
        names = [n.name for n in nodes]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"duplicate node names: {', '.join(dup)}")
        known = set(names)
        for n in nodes:
            unknown = [p for p in n.parents if p not in known]
            if unknown:
                raise ValueError(f"node {n.name!r} has unknown parent(s): {', '.join(unknown)}")
        tnames = [t.name for t in terms]
        tdup = sorted({n for n in tnames if tnames.count(n) > 1})
        if tdup:
            raise ValueError(f"duplicate term names: {', '.join(tdup)}")
        for t in terms:
            unknown = [p for p in t.inputs if p not in known]
            if unknown:
                raise ValueError(f"term {t.name!r} reads unknown node(s): {', '.join(unknown)}")

        order = _topological_order(nodes)
        by_name = {n.name: n for n in nodes}
        self.nodes: tuple[Node, ...] = tuple(by_name[n] for n in order)
        self.order: tuple[str, ...] = tuple(order)
        self._index = {n: i for i, n in enumerate(self.order)}
        self.terms: tuple[Term, ...] = terms
        self.term_positions: tuple[int, ...] = tuple(max(self._index[i] for i in t.inputs) for t in terms)
        self._parent_idx: tuple[tuple[int, ...], ...] = tuple(
            tuple(self._index[p] for p in n.parents) for n in self.nodes
        )
        self._term_idx: tuple[tuple[int, ...], ...] = tuple(tuple(self._index[i] for i in t.inputs) for t in terms)
        children: list[list[int]] = [[] for _ in self.nodes]
        for j, ps in enumerate(self._parent_idx):
            for p in ps:
                children[p].append(j)
        self._children = tuple(tuple(c) for c in children)
        given = [n.frame is not None for n in self.nodes]
        if any(given) and not all(given):
            missing = [n.name for n in self.nodes if n.frame is None]
            raise ValueError(f"give a frame for every node or for none; no frame: {', '.join(missing)}")
        self.frames: tuple[int, ...] | None = tuple(n.frame for n in self.nodes) if all(given) else None
        if self.frames is not None and any(a > b for a, b in zip(self.frames, self.frames[1:])):
            raise ValueError("frames must not decrease along the topological order (a node depends on a later frame)")

    # ------------------------------------------------------------------ structure
    def __len__(self) -> int:
        return len(self.nodes)

    def index(self, name: str) -> int:
        """Topological index of a node."""
        try:
            return self._index[name]
        except KeyError:
            raise KeyError(f"unknown node {name!r}; nodes: {', '.join(self.order)}") from None

    def parents(self, name: str) -> tuple[str, ...]:
        return self.nodes[self.index(name)].parents

    def children(self, name: str) -> tuple[str, ...]:
        return tuple(self.order[j] for j in self._children[self.index(name)])

    def descendants(self, name: str) -> tuple[str, ...]:
        """All nodes reachable from ``name``, in topological order."""
        seen: set[int] = set()
        stack = list(self._children[self.index(name)])
        while stack:
            j = stack.pop()
            if j not in seen:
                seen.add(j)
                stack.extend(self._children[j])
        return tuple(self.order[j] for j in sorted(seen))

    def stages(self) -> tuple[tuple[int, int], ...]:
        """Half-open index ranges ``[start, stop)`` of the nodes the sequential solvers optimize
        together: one per frame if the graph has frames (App. A.5: frame by frame), else one per node."""
        if self.frames is None:
            return tuple((j, j + 1) for j in range(len(self.nodes)))
        out, start = [], 0
        for j in range(1, len(self.nodes) + 1):
            if j == len(self.nodes) or self.frames[j] != self.frames[start]:
                out.append((start, j))
                start = j
        return tuple(out)

    def window(self, i: int | str, following: int | None) -> Window:
        """Node ``i`` and the ``following`` (``C`` in Eq. 26) nodes after it; ``None``: all the rest.
        With frames, ``C`` counts frames: the window ends with the last node of frame ``frame(i) + C``."""
        start = self.index(i) if isinstance(i, str) else int(i)
        if not 0 <= start < len(self.nodes):
            raise IndexError(f"node index {start} out of range for {len(self.nodes)} nodes")
        if following is None:
            stop = len(self.nodes)
        else:
            if following < 0:
                raise ValueError(f"window size C must be >= 0, got {following}")
            if self.frames is None:
                stop = min(start + following + 1, len(self.nodes))
            else:
                last = self.frames[start] + following
                stop = start
                while stop < len(self.nodes) and self.frames[stop] <= last:
                    stop += 1
        terms = tuple(t.name for t, pos in zip(self.terms, self.term_positions) if start <= pos < stop)
        return Window(start=start, stop=stop, nodes=self.order[start:stop], terms=terms)

    # ------------------------------------------------------------------ evaluation
    def context(
        self, x: Any, relaxations: Sequence[Relaxation] | Relaxation | None = None, step: int = 0
    ) -> Context:
        """A context; ``relaxations`` is one per node (topological order), one for all, or ``None``
        (hard rounding everywhere: the true objective)."""
        if relaxations is None:
            rel: tuple[Relaxation, ...] = (hard(),) * len(self.nodes)
        elif callable(relaxations):
            rel = (relaxations,) * len(self.nodes)
        else:
            rel = tuple(relaxations)
        return Context(x=x, names=self.order, relaxations=rel, step=step)

    def init_node(self, ctx: Context, j: int, values: Sequence[Tensor]) -> Tensor:
        """Amortized initializer of node ``j`` given the values of (at least) nodes ``0 … j−1``."""
        node = self.nodes[j]
        return node.init(ctx, *(values[p] for p in self._parent_idx[j]))

    def complete(self, ctx: Context, values: Sequence[Tensor], stop: int | None = None) -> list[Tensor]:
        """Fill in nodes ``len(values) … stop−1`` by their amortized initializers (in order, each from
        the values before it). Differentiable in the given values."""
        out = list(values)
        stop = len(self.nodes) if stop is None else stop
        for j in range(len(out), stop):
            out.append(self.init_node(ctx, j, out))
        return out

    def amortize(self, x: Any, relaxations: Sequence[Relaxation] | Relaxation | None = None) -> Latents:
        """FAVI: every node from its initializer, in topological order (Alg. 3 line 2)."""
        ctx = self.context(x, relaxations)
        with torch.no_grad():
            vals = self.complete(ctx, [])
        return Latents.of(self.order, (v.detach() for v in vals))

    def term_indices(self, window: Window | None = None) -> tuple[int, ...]:
        """Indices (into ``terms``) of the terms of a window (all terms for ``None``)."""
        if window is None:
            return tuple(range(len(self.terms)))
        return tuple(k for k, pos in enumerate(self.term_positions) if window.start <= pos < window.stop)

    def objective(self, ctx: Context, values: Sequence[Tensor], terms: Sequence[int] | None = None) -> Tensor:
        """``Σ_j L_j`` over the given terms (all by default), one value per batch item."""
        idx = range(len(self.terms)) if terms is None else terms
        total: Tensor | None = None
        for k in idx:
            v = self._term_value(ctx, k, values)
            total = v if total is None else total + v
        if total is None:
            raise ValueError("objective over an empty set of terms")
        return total

    def term_values(self, ctx: Context, values: Sequence[Tensor] | Latents) -> tuple[tuple[str, Tensor], ...]:
        """Every term's value (for reports), as ``(name, (B,) tensor)`` pairs."""
        vals = values.tensors if isinstance(values, Latents) else values
        return tuple((t.name, self._term_value(ctx, k, vals)) for k, t in enumerate(self.terms))

    def _term_value(self, ctx: Context, k: int, values: Sequence[Tensor]) -> Tensor:
        t = self.terms[k]
        v = t.fn(ctx, *(values[i] for i in self._term_idx[k]))
        if not isinstance(v, Tensor) or v.dim() != 1:
            shape = tuple(v.shape) if isinstance(v, Tensor) else type(v).__name__
            raise ValueError(f"term {t.name!r} must return one value per batch item (shape (B,)), got {shape}")
        return v


def _topological_order(nodes: Sequence[Node]) -> list[str]:
    """Kahn's algorithm, stable in declaration order; names the nodes on a cycle if there is one."""
    pos = {n.name: k for k, n in enumerate(nodes)}
    indeg = {n.name: len(n.parents) for n in nodes}
    children: dict[str, list[str]] = {n.name: [] for n in nodes}
    for n in nodes:
        for p in n.parents:
            children[p].append(n.name)
    ready = [(pos[n], n) for n, d in indeg.items() if d == 0]
    heapq.heapify(ready)
    order: list[str] = []
    while ready:
        _, n = heapq.heappop(ready)
        order.append(n)
        for c in children[n]:
            indeg[c] -= 1
            if indeg[c] == 0:
                heapq.heappush(ready, (pos[c], c))
    if len(order) != len(nodes):
        raise ValueError(f"the latent graph has a cycle through: {', '.join(_find_cycle(nodes, set(order)))}")
    return order


def _find_cycle(nodes: Sequence[Node], acyclic: set[str]) -> list[str]:
    """One cycle among the nodes that Kahn's algorithm could not order (for the error message)."""
    parents = {n.name: [p for p in n.parents if p not in acyclic] for n in nodes if n.name not in acyclic}
    start = next(iter(parents))
    path: list[str] = []
    seen: dict[str, int] = {}
    cur = start
    while cur not in seen:  # every remaining node has a remaining parent: walk backwards until a repeat
        seen[cur] = len(path)
        path.append(cur)
        cur = parents[cur][0]
    cycle = path[seen[cur]:]
    cycle.reverse()  # parent → child direction
    return cycle + [cycle[0]]


__all__ = [
    "Context",
    "Initializer",
    "LatentGraph",
    "Node",
    "NodeValues",
    "RelaxationSchedule",
    "Term",
    "TermFn",
    "Window",
    "constant_relaxation",
]
