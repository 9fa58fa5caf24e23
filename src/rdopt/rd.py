"""Rate–distortion in one place: ``cost = R/pixels + λ·255²·D`` (CompressAI's convention, MSE on [0, 1]).

λ is always given by the caller — the model keeps only the λ it was trained for, as a default:

* a number (one trade-off for everything),
* a per-item tensor of shape ``(B,)`` (e.g. λ per GoP for bit allocation, per call for rate control),
* a per-pixel map broadcastable to the (visible) image, e.g. ``B×1×H×W`` or ``H×W`` (region of
  interest): the distortion term becomes ``255²·mean(λ ⊙ (x̂ − x)²)``.

For a number or a per-item tensor the cost is computed exactly as ``bpp + λ·255²·MSE``; a map with a
constant value gives the same cost up to rounding.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .types import Evaluation

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


def rd_cost(ev: Evaluation, x: Tensor, lmbda: Lambda, num_pixels: int | None = None,
            visible: tuple[int, int] | None = None) -> RDCost:
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
    mse, dist = distortion_term(x_hat, x, lmbda)
    return RDCost(bpp=bpp, mse=mse, loss=bpp + dist)


__all__ = ["Lambda", "RDCost", "distortion_term", "rd_cost"]
