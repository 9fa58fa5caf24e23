"""Rate–distortion in one place: ``cost = R/pixels + λ·255²·D`` (CompressAI's convention, MSE on [0, 1]).

λ is always given by the caller — the model keeps only the λ it was trained for, as a default:

* a number (one trade-off for everything),
* a per-item tensor of shape ``(B,)`` (e.g. λ per GoP for bit allocation, per call for rate control),
* a per-pixel map broadcastable to the (visible) image, e.g. ``B×1×H×W`` or ``H×W`` (region of
  interest): the distortion term becomes ``255²·mean(λ ⊙ (x̂ − x)²)``.

For a number or a per-item tensor the cost is computed exactly as ``bpp + λ·255²·MSE``; a map with a
constant value gives the same cost up to rounding.

The distortion itself can be changed with :class:`Distortion` and a per-pixel *weight* map
(:func:`weighted_distortion_term`): ``D = (1 − a)·255²·mean(w ⊙ (x̂ − x)²) + a·K·mean(w)·(1 − MS-SSIM_w)``
with ``a`` the MS-SSIM share (``mse``: 0, ``ms-ssim``: 1, ``mix:A``: A), ``MS-SSIM_w`` the MS-SSIM whose
means are weighted by ``w`` (:mod:`rdopt.metrics.msssim`) and ``K`` = :data:`MS_SSIM_LAMBDA_FACTOR`, so
one λ means about the same trade-off for both. A weight map of ones computes bit for bit what no map
computes (the products by 1 are exact and the reductions run over the same shapes).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .types import Evaluation

#: K: λ of CompressAI's MS-SSIM-trained models over λ of its MSE-trained ones at the same quality
#: (compressai.zoo: 2.40 … 220.0 vs 0.0018 … 0.18, geometric mean of the eight ratios 1222 … 1333):
#: ``λ·K·(1 − MS-SSIM)`` and ``λ·255²·MSE`` weigh a quality's distortion about equally.
MS_SSIM_LAMBDA_FACTOR = 1275.0

Lambda = float | Tensor
PEAK2 = 255.0**2


@dataclass(frozen=True)
class RDCost:
    """Rate-distortion cost per item: ``loss = bpp + λ·255²·MSE`` (CompressAI's convention).

    ``mse`` is the unweighted mean squared error; with a per-pixel λ map ``loss`` uses the weighted one."""

    bpp: Tensor
    mse: Tensor
    loss: Tensor


def _per_item(lmbda: Tensor, batch: int) -> bool:
    return lmbda.dim() == 0 or (lmbda.dim() == 1 and lmbda.shape[0] == batch)


def distortion_term(x_hat: Tensor, x: Tensor, lmbda: Lambda) -> tuple[Tensor, Tensor]:
    """``(MSE, λ·255²·MSE_λ)`` per item of ``x_hat`` against ``x`` (same shape, leading batch)."""
    err = (x_hat - x).pow(2)
    mse = err.flatten(1).mean(1)
    if not isinstance(lmbda, Tensor):
        return mse, float(lmbda) * PEAK2 * mse
    lm = lmbda.to(device=err.device, dtype=err.dtype)
    if _per_item(lm, err.shape[0]):
        return mse, lm * PEAK2 * mse
    try:
        torch.broadcast_shapes(lm.shape, err.shape)
    except RuntimeError:
        raise ValueError(f"λ of shape {tuple(lm.shape)} is neither a number, one value per item ({err.shape[0]}) "
                         f"nor a map broadcastable to the image {tuple(err.shape)}") from None
    return mse, PEAK2 * (lm * err).flatten(1).mean(1)


@dataclass(frozen=True)
class Distortion:
    """The distortion SAVI minimises: MSE, MS-SSIM, or a weighted mix (``ms_ssim`` = the MS-SSIM share).

    ``scales``: MS-SSIM scales (``None``: the most the image allows, 5 from 161 pixels per side)."""

    ms_ssim: float = 0.0
    scales: int | None = None

    def __post_init__(self):
        if not 0.0 <= self.ms_ssim <= 1.0:
            raise ValueError(f"the MS-SSIM share of a mix must be in 0…1, got {self.ms_ssim}")
        if self.scales is not None and not 1 <= self.scales <= 5:
            raise ValueError(f"MS-SSIM scales must be 1…5, got {self.scales}")

    @property
    def name(self) -> str:
        if self.ms_ssim == 0.0:
            return "mse"
        if self.ms_ssim == 1.0:
            return "ms-ssim"
        return f"mix:{self.ms_ssim:g}"

    @property
    def is_mse(self) -> bool:
        return self.ms_ssim == 0.0

    @classmethod
    def parse(cls, text: str) -> "Distortion":
        """``mse``, ``ms-ssim`` or ``mix:A`` (A in 0…1: the MS-SSIM share)."""
        t = text.strip().lower()
        if t == "mse":
            return cls(0.0)
        if t in ("ms-ssim", "msssim"):
            return cls(1.0)
        if t.startswith("mix:"):
            try:
                a = float(t[4:])
            except ValueError:
                a = float("nan")
            if not 0.0 <= a <= 1.0:
                raise ValueError(f"bad distortion {text!r}: mix:A needs a number A in 0…1 (the MS-SSIM share)")
            return cls(a)
        raise ValueError(f"unknown distortion {text!r} (mse, ms-ssim, mix:A with A in 0…1)")


MSE = Distortion()


def _weight_map(weight: Tensor, err: Tensor) -> Tensor:
    wt = weight.to(device=err.device, dtype=err.dtype)
    if wt.dim() == 2:
        wt = wt[None, None]
    try:
        torch.broadcast_shapes(wt.shape, err.shape)
    except RuntimeError:
        raise ValueError(f"weight map of shape {tuple(wt.shape)} is not broadcastable to the image "
                         f"{tuple(err.shape)}") from None
    if wt.dim() != 4 or wt.shape[1] != 1:
        raise ValueError(f"a weight map is H×W or B×1×H×W, got {tuple(wt.shape)}")
    return wt


def weighted_distortion_term(x_hat: Tensor, x: Tensor, lmbda: Lambda, distortion: Distortion = MSE,
                             weight: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """``(MSE, λ·D)`` per item, ``D`` the chosen distortion under the per-pixel ``weight`` (see the module
    docstring). Without a weight map and for MSE this is :func:`distortion_term`."""
    if weight is None and distortion.is_mse:
        return distortion_term(x_hat, x, lmbda)
    err = (x_hat - x).pow(2)
    mse = err.flatten(1).mean(1)
    wt = None if weight is None else _weight_map(weight, err)
    if isinstance(lmbda, Tensor):
        lm = lmbda.to(device=err.device, dtype=err.dtype)
        if not _per_item(lm, err.shape[0]):
            raise ValueError("a per-pixel λ map and a distortion weight map or MS-SSIM cannot be combined: "
                             "give λ as a number (or one per item) and the map as the weight")
    else:
        lm = float(lmbda)
    a = distortion.ms_ssim
    dist = None
    if a < 1.0:
        wmse = mse if wt is None else (wt * err).flatten(1).mean(1)
        # the same operations in the same order as distortion_term (bit-identical for a map of ones)
        dist = lm * PEAK2 * wmse if a == 0.0 else lm * PEAK2 * ((1.0 - a) * wmse)
    if a > 0.0:
        from ..metrics.msssim import ms_ssim

        wfull = None if wt is None else wt.expand(err.shape[0], 1, *err.shape[-2:])
        score = ms_ssim(x_hat, x, scales=distortion.scales, weight=wfull)
        term = MS_SSIM_LAMBDA_FACTOR * (1.0 - score)
        if wfull is not None:
            term = term * wfull.flatten(1).mean(1)
        term = lm * (term if a == 1.0 else a * term)
        dist = term if dist is None else dist + term
    return mse, dist


def rd_cost(ev: Evaluation, x: Tensor, lmbda: Lambda, num_pixels: int | None = None,
            visible: tuple[int, int] | None = None, distortion: Distortion = MSE,
            weight: Tensor | None = None) -> RDCost:
    """R-D cost per item of an evaluation against the target ``x`` in [0, 1].

    ``visible = (height, width)``: the distortion is measured on the top-left visible part of a padded
    target (and λ maps refer to that part); ``num_pixels``: what the rate is divided by (default: the
    visible pixel count — the original image size when ``x`` is padded)."""
    x_hat = ev.x_hat
    if visible is not None:
        h, w = visible
        x_hat, x = x_hat[..., :h, :w], x[..., :h, :w]
    if num_pixels is None:
        num_pixels = x.shape[-2] * x.shape[-1]
    bpp = ev.bits / num_pixels
    mse, dist = weighted_distortion_term(x_hat, x, lmbda, distortion, weight)
    return RDCost(bpp=bpp, mse=mse, loss=bpp + dist)


__all__ = ["Distortion", "Lambda", "MSE", "MS_SSIM_LAMBDA_FACTOR", "RDCost", "distortion_term", "rd_cost",
           "weighted_distortion_term"]
