"""Every codec is a latent graph: the builder from a :class:`rdopt.core.types.LatentCodec` to its
:class:`rdopt.infer.graph.LatentGraph`, so image SAVI and GoP allocation run the same solvers.

The graph is the codec's *inference* factorization (paper 001 §4.2): one node per named latent, its
parents those the codec's amortized inference reads (an image hyperprior: ``y → z``, since the encoder
computes ``z = h_a(y)``; the prior's dependence ``p(y | z)`` lives inside the objective, which every
solver sees whole). The objective has one R-D term per frame, ``L_f = R_f / pixels + λ·255²·D_f``
(:mod:`rdopt.core.rd`), reading the latents of frames ``0 … f`` (what the decoder needs to reconstruct
frame ``f``); for an image it is the one term ``rd``.

The evidence of the graph is a :class:`Target`: the (padded) input, its visible size and λ — given per
call (a number, one per item, or a per-pixel map), never read from the model.

Only the protocol is used here: this module imports no CompressAI.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from torch import Tensor

from ..core.rd import MSE, Distortion, Lambda, weighted_distortion_term
from ..core.types import LatentCodec, Latents, frames_of
from .graph import Context, LatentGraph, Node, Term

Unit = Literal["bpp", "bits"]


@dataclass(frozen=True)
class Target:
    """What a codec graph is solved for.

    Attributes:
        x: the input (padded to the codec's multiple): ``B×3×H×W`` for an image, ``B×T×3×H×W`` for a
            video.
        lmbda: the R-D trade-off (see :mod:`rdopt.core.rd`).
        height, width: the visible (original) size; default the whole of ``x``. The rate is divided by
            ``height·width`` and the distortion measured on that part.
        frame_scales: for a video, one factor per frame multiplying ``lmbda`` in that frame's term
            (a per-frame allocation such as the λ-domain rule); ``None``: the same λ for every frame.
        distortion: what the distortion term measures (:class:`rdopt.core.rd.Distortion`: MSE, MS-SSIM or a
            mix); the decoder is the same whatever it is.
        weight: per-pixel distortion weight over the visible image (``H×W`` or ``B×1×H×W``; a region of
            interest), or ``None`` (every pixel weighs 1).
    """

    x: Tensor
    lmbda: Lambda
    height: int | None = None
    width: int | None = None
    frame_scales: tuple[float, ...] | None = None
    distortion: Distortion = MSE
    weight: Tensor | None = None

    def lmbda_of(self, frame: int) -> Lambda:
        """λ of a frame's term."""
        if self.frame_scales is None:
            return self.lmbda
        return self.lmbda * self.frame_scales[frame]

    @property
    def visible(self) -> tuple[int, int]:
        return (self.x.shape[-2] if self.height is None else self.height,
                self.x.shape[-1] if self.width is None else self.width)

    @property
    def num_pixels(self) -> int:
        h, w = self.visible
        return h * w

    @property
    def device(self):
        return self.x.device


def _memo(codec: LatentCodec, ctx: Context) -> dict:
    """Keyword arguments passing the context's memo to codecs that share work through it."""
    return {"memo": ctx.memo} if getattr(codec, "supports_memo", False) else {}


def _initializer(codec: LatentCodec, name: str, parents: tuple[str, ...]):
    def init(ctx: Context, *values: Tensor) -> Tensor:
        return codec.infer(name, ctx.x.x, Latents.of(parents, values), ctx.relaxation_map(), **_memo(codec, ctx))

    return init


def _frame_term(codec: LatentCodec, frame: int, single: bool, inputs: tuple[str, ...], own: tuple[str, ...],
                unit: Unit):
    def rd(ctx: Context, *values: Tensor) -> Tensor:
        target: Target = ctx.x
        ev = codec.evaluate(Latents.of(inputs, values), ctx.relaxation_map(inputs), **_memo(codec, ctx))
        x_hat, x = (ev.x_hat, target.x) if single else (ev.x_hat[:, frame], target.x[:, frame])
        h, w = target.visible
        n = h * w
        bpp = ev.bits_of(own) / n
        _, dist = weighted_distortion_term(x_hat[..., :h, :w], x[..., :h, :w], target.lmbda_of(frame),
                                           target.distortion, target.weight)
        loss = bpp + dist
        return loss * n if unit == "bits" else loss

    return rd


def codec_graph(codec: LatentCodec, *, frames: bool = True, unit: Unit = "bpp") -> LatentGraph:
    """The latent graph of ``codec`` (evidence: a :class:`Target`).

    Args:
        frames: give the nodes the frames of their latents, so windows count frames and the sequential
            solvers optimize one frame's latents together (App. A.5). ``False``: node-level stages and
            windows (paper 001's per-node formulation).
        unit: ``"bpp"`` — the cost per pixel (``bpp + λ·255²·MSE``, CompressAI's convention, what image
            SAVI minimises) — or ``"bits"``, the same times the pixel count (gradients per latent element
            of order one: what plain gradient descent, and so the exact solver, needs).
    """
    if unit not in ("bpp", "bits"):
        raise ValueError(f"unknown unit {unit!r} (bpp, bits)")
    specs = tuple(codec.latents)
    groups = frames_of(specs)
    single = len(groups) == 1
    nodes = [Node(s.name, s.parents, _initializer(codec, s.name, s.parents), frame=s.frame if frames else None)
             for s in specs]
    terms = []
    seen: list[str] = []
    for f, own in enumerate(groups):
        seen += own
        inputs = tuple(n for n in (s.name for s in specs) if n in seen)
        terms.append(Term("rd" if single else f"frame{f}", inputs, _frame_term(codec, f, single, inputs, own, unit)))
    return LatentGraph(nodes, terms)


__all__ = ["Target", "Unit", "codec_graph"]
