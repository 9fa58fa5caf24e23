"""The GoP-unrolled training objective of the video codec (paper 001 Eq. 3, 5–6).

For a clip ``x_0 … x_{T−1}`` (frame 0 coded as an I-frame, the others as P-frames) the objective is the
sum of the per-frame costs (rdopt minimises; the paper maximises the negative, the ELBO)::

    L = Σ_t  R_t / (H·W)  +  λ·255² · MSE(x̂_t, x_t)      (λ in CompressAI's unit, MSE on [0, 1] RGB)

with rounding relaxed (additive uniform noise by default) and amortized latents: every P-frame's latents
are inferred from ``x_t`` and the reference ``x̂_{t−1}`` — the codec's *own* relaxed reconstruction of
the previous frame, so errors propagate through the GoP as they will at coding time. ``T = 2`` is the
pair training of the first stage; ``T ≥ 4`` unrolls over ≥ 3 P-frames. Gradients flow through the
references (set ``detach_reference`` to cut them, e.g. to measure what unrolling buys).

The I-frame codec is usually frozen (the embedded image model): its frame is then coded with hard
rounding (the reference the decoder will really see) and its term is a constant in the total.

The objective is an object handed to the training loop (as pyro hands ``Trace_ELBO`` to ``SVI``); it
never steps an optimizer.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from collections.abc import Mapping

from ..codecs.video.gop import VideoCodec
from ..core.types import Relaxation, relax_all
from ..relax.rounding import hard, uniform_noise


@dataclass(frozen=True)
class VideoRD:
    """Per clip and frame (``B×T``): estimated ``bits``, ``bpp``, ``mse`` and ``cost = bpp + λ·255²·mse``;
    ``prediction_mse`` (``B×(T−1)``) of the motion-compensated predictions; ``total`` (``B``) the sum of
    the frame costs; ``loss`` the scalar to minimise (batch mean of ``total`` plus the optional
    prediction warm-up term)."""

    bits: Tensor
    bpp: Tensor
    mse: Tensor
    cost: Tensor
    prediction_mse: Tensor
    total: Tensor
    loss: Tensor


class GopObjective:
    """``L = Σ_t bpp_t + λ·255²·MSE_t`` over a clip, unrolled through the codec's own reconstructions.

    Args:
        codec: the :class:`VideoCodec` (I-frame model + P-frame codec).
        relaxation: relaxation of the P-frame latents (one for all, or one per latent name); additive
            uniform noise by default (drawn from ``generator``).
        iframe_relaxation: relaxation of the I-frame latents; hard rounding by default (frozen I-frame).
        train_iframe: if False the I-frame is evaluated without a graph (its parameters get no gradient
            and its latents are constants).
        detach_reference: cut the gradient through every reference.
        prediction_weight: weight ``β`` of a warm-up term ``β·λ·255²·MSE(x_pred, x_t)`` per P-frame (DVC trains
            its motion part first on the warp loss); 0 for the pure R-D objective.
        generator: random generator of the default noise relaxation.
    """

    def __init__(self, codec: VideoCodec, *, relaxation: Relaxation | Mapping[str, Relaxation] | None = None,
                 iframe_relaxation: Relaxation | None = None, train_iframe: bool = False,
                 detach_reference: bool = False, prediction_weight: float = 0.0,
                 generator: torch.Generator | None = None):
        self.codec = codec
        self.relaxation = uniform_noise(generator) if relaxation is None else relaxation
        self.iframe_relaxation = hard() if iframe_relaxation is None else iframe_relaxation
        self.train_iframe = train_iframe
        self.detach_reference = detach_reference
        self.prediction_weight = float(prediction_weight)

    def __call__(self, clip: Tensor, lmbda: float | Tensor) -> VideoRD:
        """The objective of a batch of clips ``B×T×3×H×W`` in [0, 1] (H, W multiples of 64) at ``λ``
        (a number or a per-clip tensor of shape ``B``)."""
        if clip.dim() != 5 or clip.shape[1] < 1:
            raise ValueError(f"clip must be B×T×3×H×W, got {tuple(clip.shape)}")
        iframe, pframe = self.codec.iframe, self.codec.pframe
        npix = clip.shape[-2] * clip.shape[-1]
        x0 = clip[:, 0]
        ri = self.iframe_relaxation
        with torch.set_grad_enabled(self.train_iframe and torch.is_grad_enabled()):
            lat0 = iframe.amortize(x0)
            ev0 = iframe.evaluate(lat0, relax_all(ri, lat0.names))
        relax = (self.relaxation if isinstance(self.relaxation, Mapping)
                 else {n: self.relaxation for n in pframe.names})
        bits, mses, pmses = [ev0.bits], [(ev0.x_hat - x0).pow(2).flatten(1).mean(1)], []
        ref = ev0.x_hat
        for t in range(1, clip.shape[1]):
            x = clip[:, t]
            if self.detach_reference:
                ref = ref.detach()
            # Amortized inference and decoder-side evaluation share the motion decoding: the residual
            # encoder sees the prediction decoded from the relaxed motion latents.
            v, h = pframe.infer_motion(x, ref)
            motion = pframe.evaluate_motion(v, h, ref, relax)
            v, h = pframe.infer_residual(x, motion)
            residual = pframe.evaluate_residual(v, h, relax, motion)
            x_hat = residual.x_hat
            bits.append(motion.bits + motion.hyper_bits + residual.bits + residual.hyper_bits)
            mses.append((x_hat - x).pow(2).flatten(1).mean(1))
            pmses.append((motion.prediction - x).pow(2).flatten(1).mean(1))
            ref = x_hat
        bits_t = torch.stack(bits, 1)
        bpp = bits_t / npix
        mse = torch.stack(mses, 1)
        lm = torch.as_tensor(lmbda, dtype=mse.dtype, device=mse.device) * 255.0**2
        lm = lm.reshape(-1, 1) if lm.dim() else lm
        cost = bpp + lm * mse
        pmse = torch.stack(pmses, 1) if pmses else mse.new_zeros(mse.shape[0], 0)
        total = cost.sum(1)
        loss = total.mean()
        if self.prediction_weight and pmses:
            loss = loss + self.prediction_weight * (lm * pmse).sum(1).mean()
        return VideoRD(bits=bits_t, bpp=bpp, mse=mse, cost=cost, prediction_mse=pmse, total=total, loss=loss)


__all__ = ["VideoRD", "GopObjective"]
