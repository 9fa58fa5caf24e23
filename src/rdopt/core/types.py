"""Typed containers and the protocol every rdopt algorithm is written against.

The central idea: an algorithm ("optimize the latents of a fixed model") reaches the model only through
:class:`LatentCodec`, whose latents are *named* (an image hyperprior has ``y`` and ``z``; a P-frame adds
motion and residual latents with their hyper-latents):

* amortized inference       ``infer(name, x, parents, relax) -> Tensor`` (one latent from its parents),
                            ``amortize(x) -> Latents`` (all of them, in inference order)
* decoder-side evaluation   ``evaluate(latents, relax) -> Evaluation`` (one relaxation per latent;
                            synthesis and entropy models only)
* coding                    ``compress(hard) -> CodedLatents`` (one named stream per latent),
                            ``decompress(coded) -> Latents``
* identity                  ``family``, ``quality``, ``model_id``, ``weight_hash()``, ``latent_shapes()``

so SGA, its ablations, the DAG solvers and the training objectives never see CompressAI directly. A
codec's latents and their inference parents form a :class:`rdopt.infer.graph.LatentGraph`
(:func:`rdopt.infer.codec_graph.codec_graph`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Mapping, Protocol, runtime_checkable

import torch
from torch import Tensor


class Latents(Mapping[str, Tensor]):
    """An ordered, read-only map ``name -> tensor``: the latents of a model, the nodes of a graph.

    Every tensor's leading dimension is the batch (one item per image, GoP, …); the batch helpers
    (:meth:`select`, :meth:`cat`, :meth:`detach`, :meth:`to`) act on every latent at once. Values are
    continuous (variational parameters) unless produced by a codec's ``quantize``/``decompress``.
    """

    __slots__ = ("_names", "_tensors")

    def __init__(self, items: Mapping[str, Tensor] | Iterable[tuple[str, Tensor]] = ()):
        pairs = list(items.items()) if isinstance(items, Mapping) else list(items)
        names = tuple(n for n, _ in pairs)
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate latent names: {names}")
        for n, t in pairs:
            if not isinstance(n, str) or not n:
                raise ValueError(f"latent names must be non-empty strings, got {n!r}")
            if not isinstance(t, Tensor):
                raise TypeError(f"latent {n!r} is not a tensor ({type(t).__name__})")
        self._names = names
        self._tensors = tuple(t for _, t in pairs)

    @classmethod
    def of(cls, names: Iterable[str], tensors: Iterable[Tensor]) -> "Latents":
        names, tensors = tuple(names), tuple(tensors)
        if len(names) != len(tensors):
            raise ValueError(f"{len(names)} names but {len(tensors)} tensors")
        return cls(zip(names, tensors))

    # ---------------------------------------------------------------- mapping
    def __getitem__(self, name: str) -> Tensor:
        try:
            return self._tensors[self._names.index(name)]
        except ValueError:
            raise KeyError(f"unknown latent {name!r}; latents: {', '.join(self._names)}") from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)

    def __repr__(self) -> str:
        inner = ", ".join(f"{n}: {tuple(t.shape)}" for n, t in zip(self._names, self._tensors))
        return f"Latents({inner})"

    @property
    def names(self) -> tuple[str, ...]:
        return self._names

    @property
    def tensors(self) -> tuple[Tensor, ...]:
        return self._tensors

    # ---------------------------------------------------------------- batch helpers
    @property
    def batch_size(self) -> int:
        if not self._tensors:
            raise ValueError("no latents")
        return int(self._tensors[0].shape[0])

    def map(self, fn: Callable[[Tensor], Tensor]) -> "Latents":
        return Latents.of(self._names, (fn(t) for t in self._tensors))

    def detach(self) -> "Latents":
        return self.map(Tensor.detach)

    def clone(self) -> "Latents":
        return self.map(lambda t: t.detach().clone())

    def to(self, *args, **kwargs) -> "Latents":
        return self.map(lambda t: t.to(*args, **kwargs))

    def select(self, index: int | slice | Tensor) -> "Latents":
        """The latents of some items of the batch (an ``int`` keeps the batch dimension)."""
        if isinstance(index, int):
            index = slice(index, index + 1)
        return self.map(lambda t: t[index])

    def subset(self, names: Iterable[str]) -> "Latents":
        """The named latents only, in the given order."""
        return Latents((n, self[n]) for n in names)

    def merged(self, other: Mapping[str, Tensor]) -> "Latents":
        """These latents with ``other``'s added (or replacing those of the same name, in place)."""
        out = dict(zip(self._names, self._tensors))
        out.update(other)
        return Latents(out)

    @staticmethod
    def cat(items: "Iterable[Latents]") -> "Latents":
        items = list(items)
        if not items:
            raise ValueError("nothing to concatenate")
        names = items[0].names
        if any(i.names != names for i in items):
            raise ValueError("latents to concatenate must have the same names in the same order")
        return Latents.of(names, (torch.cat([i[n] for i in items]) for n in names))


@dataclass(frozen=True)
class LatentSpec:
    """One latent of a codec.

    Attributes:
        name: unique name (the stream name in a container).
        kind: what it is, from :data:`rdopt.coding.codes.LATENT_KINDS` (``"latent"``, ``"hyper"``,
            ``"motion"``, ``"residual"`` …).
        parents: names of the latents its amortized inference reads (edges of the inference DAG;
            the prior's dependencies live inside ``evaluate``).
        frame: index of the frame it belongs to (0 for an image).
    """

    name: str
    kind: str = "latent"
    parents: tuple[str, ...] = ()
    frame: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "parents", tuple(self.parents))
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"latent names must be non-empty strings, got {self.name!r}")
        if self.frame < 0:
            raise ValueError(f"latent {self.name!r}: frame must be >= 0")


@dataclass(frozen=True)
class Evaluation:
    """Decoder-side evaluation of a set of latents (per item of the batch).

    Attributes:
        x_hat: the synthesis output (not clamped), shaped like the evidence of the evaluated frames.
        rates: estimated information content (−log2 of the entropy model's probability), one ``(B,)``
            tensor per latent.
        latents: the (relaxed or hard) values that were fed to the synthesis / entropy models.
        scales: per latent with a Gaussian prior, its predicted scales before the entropy model's floor.
        frames: how many frames ``x_hat`` holds (1 for an image).
    """

    x_hat: Tensor
    rates: Mapping[str, Tensor]
    latents: Latents
    scales: Mapping[str, Tensor] = field(default_factory=dict)
    frames: int = 1

    @property
    def bits(self) -> Tensor:
        """Total estimated bits per item."""
        total: Tensor | None = None
        for v in self.rates.values():
            total = v if total is None else total + v
        if total is None:
            raise ValueError("an evaluation without latents")
        return total

    def bits_of(self, names: Iterable[str]) -> Tensor:
        total: Tensor | None = None
        for n in names:
            total = self.rates[n] if total is None else total + self.rates[n]
        if total is None:
            raise ValueError("no latent named")
        return total


@dataclass(frozen=True)
class SampleGrid:
    """Decoder-side terms of ``K`` samples of ỹ paired with every one of ``L`` samples of z̃ (a
    codec's optional ``evaluate_grid``; :mod:`rdopt.losses.multisample` falls back to ``evaluate`` on
    the ``K·L`` pairs without it).

    Attributes:
        x_hat: ``K×B×…`` synthesis output per sample of ỹ.
        bits_y: ``K×L×B`` bits of ỹ_i under p(ỹ | z̃_j).
        bits_z: ``L×B`` bits of z̃_j under p(z̃).
        scales: ``L×B×…`` the predicted scales of p(y | z̃_j) (``None`` if the prior has none).
    """

    x_hat: Tensor
    bits_y: Tensor
    bits_z: Tensor
    scales: Tensor | None = None


@dataclass(frozen=True)
class CodedLatents:
    """Entropy-coded latents of a batch: ``streams[name][b]`` is the string of latent ``name`` for item
    ``b``; ``shapes[name]`` its shape without the batch dimension (``(C, H, W)``)."""

    streams: Mapping[str, list[bytes]]
    shapes: Mapping[str, tuple[int, ...]]

    def num_bytes(self, index: int = 0) -> int:
        return sum(len(s[index]) for s in self.streams.values())

    def item(self, index: int) -> dict[str, bytes]:
        return {n: s[index] for n, s in self.streams.items()}


@runtime_checkable
class Relaxation(Protocol):
    """A relaxation of rounding: ``relax(x, offset) -> x̃``.

    ``offset`` is the point the entropy coder quantizes around (``round(x − offset) + offset``):
    the prior mean for a mean-scale model, the channel median for an entropy bottleneck, 0 otherwise.
    A relaxation is a plain callable built by a factory in :mod:`rdopt.relax` for one step.
    """

    def __call__(self, x: Tensor, offset: Tensor) -> Tensor: ...


RelaxationSchedule = Callable[[int], Relaxation]
"""``step -> Relaxation``: the relaxation of rounding used at an optimization step."""

Relaxations = Mapping[str, Relaxation]
"""One relaxation per latent name."""


@runtime_checkable
class LatentCodec(Protocol):
    """What rdopt's algorithms need from a trained codec (image, video, a user's own).

    ``x`` is the evidence: ``B×3×H×W`` for an image, ``B×T×3×H×W`` for a video of ``T`` frames.
    ``relax`` maps latent names to relaxations of rounding (:func:`rdopt.relax.rounding.hard` gives the
    true discrete values the coder writes). :mod:`rdopt.infer.contract` tests every adapter against this.
    """

    family: str  # e.g. "rdopt-msh"
    quality: int  # quality index, 0 if unknown
    model_id: str  # what bitstreams name (e.g. "rdopt-msh-q3")
    lmbda: float  # the λ the model was trained for: a default only, every algorithm takes λ per call
    pad_multiple: int  # inputs are padded to a multiple of this

    @property
    def latents(self) -> tuple[LatentSpec, ...]: ...  # in inference (topological) order

    def weight_hash(self) -> bytes: ...

    def latent_shapes(self, height: int, width: int) -> dict[str, tuple[int, ...]]: ...

    def infer(self, name: str, x: Any, parents: Latents, relax: Relaxations) -> Tensor: ...

    def amortize(self, x: Any) -> Latents: ...

    def evaluate(self, latents: Latents, relax: Relaxations) -> Evaluation: ...

    def quantize(self, latents: Latents) -> Latents: ...

    def compress(self, latents: Latents) -> CodedLatents: ...

    def decompress(self, coded: CodedLatents) -> Latents: ...

    def reconstruct(self, latents: Latents) -> Tensor: ...


def relax_all(relax: Relaxation, names: Iterable[str]) -> dict[str, Relaxation]:
    """The same relaxation for every named latent."""
    return {n: relax for n in names}


def bits_from_likelihoods(likelihoods: Tensor) -> Tensor:
    """Sum of −log2 likelihoods per batch element."""
    return -torch.log(likelihoods).flatten(1).sum(1) / math.log(2.0)


def frames_of(specs: Iterable[LatentSpec]) -> tuple[tuple[str, ...], ...]:
    """Latent names grouped by frame (frames in increasing order, latents in the given order)."""
    by: dict[int, list[str]] = {}
    for s in specs:
        by.setdefault(s.frame, []).append(s.name)
    return tuple(tuple(by[f]) for f in sorted(by))


__all__ = [
    "CodedLatents",
    "Evaluation",
    "LatentCodec",
    "LatentSpec",
    "Latents",
    "Relaxation",
    "RelaxationSchedule",
    "Relaxations",
    "SampleGrid",
    "bits_from_likelihoods",
    "frames_of",
    "relax_all",
]
