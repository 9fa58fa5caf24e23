"""What one P-frame codec provides: the protocol every GoP codec of rdopt is built from.

Paper 001 §2.1 (Eq. 1–2, Fig. 1): a P-frame ``t`` of a low-delay GoP is coded in two stages, each a latent
with its own hyper-latent:

* **motion** — ``(v_m, h_m)`` inferred from ``x_t`` and the decoded reference ``x̂_{t−1}``; decoded
  from the reference into a *prediction state* (the motion-compensated prediction, and whatever the
  second stage needs of the first: the decoded flow, the relaxed motion latent …);
* **residual** — ``(v_r, h_r)`` inferred from ``x_t`` and that state; decoded into ``x̂_t``.

A codec names its four latents (``names``: motion, motion-hyper, residual, residual-hyper — e.g.
``w, z_w, y, z_y`` or SSF's ``m, mz, r, rz``); a GoP codec suffixes them with the frame index
(``w_3``). Decoder-side evaluation takes one relaxation per latent (keyed by those base names), is
differentiable in every latent and in the reference, and never runs an analysis transform; with hard
rounding it computes exactly what the decoder computes from the strings.

:class:`rdopt.codecs.video.gop.VideoCodec` joins an I-frame image codec (an
:class:`rdopt.core.types.LatentCodec` with latents ``y, z``) and a P-frame codec into the GoP codecs the
solvers, the ``.rdov`` container and the CLI use; nothing else of rdopt needs to know the P-frame codec.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor, nn

from ...core.types import Relaxation


@dataclass(frozen=True)
class MotionEvaluation:
    """Decoder side of the first stage: relaxed latent and hyper-latent, their estimated bits (one value
    per batch item), the prediction, and the codec's own decoded state (``state``: e.g. the flow)."""

    latent: Tensor
    hyper: Tensor
    bits: Tensor
    hyper_bits: Tensor
    prediction: Tensor
    state: Mapping[str, Tensor] | None = None


@dataclass(frozen=True)
class ResidualEvaluation:
    """Decoder side of the second stage: relaxed latent and hyper-latent, their estimated bits, and the
    reconstruction ``x_hat`` of the frame (not clamped)."""

    latent: Tensor
    hyper: Tensor
    bits: Tensor
    hyper_bits: Tensor
    x_hat: Tensor


@runtime_checkable
class PFrameCodec(Protocol):
    """One P-frame codec (module docstring). Latent dicts are keyed by the base names in ``names``."""

    names: tuple[str, str, str, str]
    pad_multiple: int

    def infer_motion(self, x: Tensor, ref: Tensor) -> tuple[Tensor, Tensor]:
        """Amortized ``(v_m, h_m)`` from the frame and the decoded reference."""

    def evaluate_motion(self, v: Tensor, h: Tensor, ref: Tensor, relax: Mapping[str, Relaxation]) -> MotionEvaluation:
        """The first stage decoded from the relaxed motion latents and the reference."""

    def infer_residual(self, x: Tensor, motion: MotionEvaluation) -> tuple[Tensor, Tensor]:
        """Amortized ``(v_r, h_r)`` from the frame and the decoded first stage."""

    def evaluate_residual(self, v: Tensor, h: Tensor, relax: Mapping[str, Relaxation],
                          motion: MotionEvaluation) -> ResidualEvaluation:
        """The frame decoded from the relaxed residual latents and the decoded first stage."""

    def hyper_analysis(self, name: str, v: Tensor) -> Tensor:
        """The amortized hyper-latent ``name`` (``names[1]`` or ``names[3]``) of its latent ``v``."""

    def quantize(self, latents: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """The values the coder writes (the latents of one frame, continuous → on the coder's grid)."""

    def compress(self, latents: Mapping[str, Tensor]) -> dict[str, list[bytes]]:
        """One rANS string list per latent (one string per batch item)."""

    def decompress(self, strings: Mapping[str, list[bytes]], shapes: Mapping[str, tuple[int, ...]],
                   dtype: torch.dtype) -> dict[str, Tensor]:
        """The hard latents of one frame from their strings and shapes ``(C, H, W)``. Given the strings of the
        motion pair alone (a frame skipped whole has no residual streams), the motion latents alone; a codec
        that cannot is never offered whole-frame skips (:meth:`rdopt.codecs.video.gop.VideoCodec.frame_skip_ok`)."""

    def latent_shapes(self, height: int, width: int) -> dict[str, tuple[int, ...]]:
        """Shapes ``(C, H, W)`` of the four latents for a padded frame."""

    def min_bits_per_symbol(self) -> dict[str, float]:
        """Fewest bits per symbol each latent's coder spends (the decoder refuses shorter streams)."""

    def encoder_modules(self) -> list[nn.Module]:
        """The encoder-side modules (what online encoder updating may adapt; the decoder never runs them)."""

    # Optional: ``residual_position_bits(v, h) -> Tensor``, the estimated bits of the hard residual latent ``v``
    # at each position (``B×H×W``, summed over channels) given its hard hyper-latent ``h``. Skip mode's
    # per-block decision reads it; without it the encoder measures each block's bits through
    # :meth:`evaluate_residual` (exact, but one synthesis per block).
    # Optional: ``residual_at_mode(v, h, positions) -> Tensor``, the hard residual latent with the positions of a
    # boolean mask at their mode (symbol 0) — needed where the residual latent is coded pass by pass (a context
    # model: a position's mean depends on those decoded before it); without it skip mode sets the positions to the
    # offset the codec's relaxation is called with (once, over the whole latent).


RESERVED_NAMES = ("skip",)
"""Base names a P-frame codec may not use: ``skip_t`` is the name of frame ``t``'s skip stream."""


def pframe_problems(codec: Any) -> list[str]:
    """What a would-be P-frame codec lacks of the protocol (empty: nothing)."""
    out = []
    names = getattr(codec, "names", None)
    if not (isinstance(names, tuple) and len(names) == 4 and all(isinstance(n, str) and n for n in names)
            and len(set(names)) == 4):
        out.append("`names` must be a tuple of four distinct latent names (motion, motion-hyper, residual, "
                   "residual-hyper)")
    elif any("_" in n and n.rsplit("_", 1)[1].isdigit() for n in names):
        out.append(f"latent names {names} must not end in _<digits> (the GoP appends the frame index)")
    elif any(n in RESERVED_NAMES for n in names):
        out.append(f"latent names {names} must not be {', '.join(RESERVED_NAMES)} (skip_<t> names a skip stream)")
    if not isinstance(getattr(codec, "pad_multiple", None), int) or codec.pad_multiple < 1:
        out.append("`pad_multiple` must be a positive int")
    for m in ("infer_motion", "evaluate_motion", "infer_residual", "evaluate_residual", "hyper_analysis", "quantize", "compress",
              "decompress", "latent_shapes", "min_bits_per_symbol", "encoder_modules"):
        if not callable(getattr(codec, m, None)):
            out.append(f"method `{m}` is missing")
    if not isinstance(codec, nn.Module):
        out.append("it must be a torch.nn.Module (its weights are hashed into every bitstream)")
    return out





@dataclass(frozen=True)
class FrameEvaluation:
    """One P-frame decoded under relaxations: ``x_hat`` (not clamped) and both stages."""

    x_hat: Tensor
    motion: MotionEvaluation
    residual: ResidualEvaluation

    @property
    def bits(self) -> Tensor:
        """Estimated bits of the frame (one value per batch item)."""
        return self.motion.bits + self.motion.hyper_bits + self.residual.bits + self.residual.hyper_bits

    @property
    def prediction(self) -> Tensor:
        return self.motion.prediction


def relax_by_name(codec: PFrameCodec, relax: Relaxation | Mapping[str, Relaxation]) -> Mapping[str, Relaxation]:
    """One relaxation for each of the codec's latents (a mapping is checked to name them all)."""
    if isinstance(relax, Mapping):
        missing = [n for n in codec.names if n not in relax]
        if missing:
            raise KeyError(f"no relaxation given for latent(s) {', '.join(missing)} (have {', '.join(relax)})")
        return relax
    return {n: relax for n in codec.names}


def evaluate_frame(codec: PFrameCodec, latents: Mapping[str, Tensor], ref: Tensor,
                   relax: Relaxation | Mapping[str, Relaxation]) -> FrameEvaluation:
    """Decoder-side evaluation of one P-frame (both stages) from its four latents and the reference."""
    m, mh, r, rh = codec.names
    relax = relax_by_name(codec, relax)
    motion = codec.evaluate_motion(latents[m], latents[mh], ref, relax)
    residual = codec.evaluate_residual(latents[r], latents[rh], relax, motion)
    return FrameEvaluation(residual.x_hat, motion, residual)


def amortize_frame(codec: PFrameCodec, x: Tensor, ref: Tensor,
                   relax: Relaxation | Mapping[str, Relaxation] | None = None) -> dict[str, Tensor]:
    """Amortized inference of one P-frame's latents; the residual encoder sees the first stage decoded from the
    motion latents under ``relax`` (hard rounding by default: what the decoder computes)."""
    from ...relax.rounding import hard

    m, mh, r, rh = codec.names
    relax = relax_by_name(codec, hard() if relax is None else relax)
    v_m, h_m = codec.infer_motion(x, ref)
    v_r, h_r = codec.infer_residual(x, codec.evaluate_motion(v_m, h_m, ref, relax))
    return {m: v_m, mh: h_m, r: v_r, rh: h_r}


__all__ = ["MotionEvaluation", "ResidualEvaluation", "FrameEvaluation", "PFrameCodec", "RESERVED_NAMES", "pframe_problems",
           "relax_by_name", "evaluate_frame", "amortize_frame"]
