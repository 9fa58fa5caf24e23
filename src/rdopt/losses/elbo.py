"""Single-sample ELBO training objective (Ballé et al. 2017; CompressAI's example):
``L = bpp + λ·255²·MSE`` with additive uniform noise in place of rounding, evaluated through the
codec protocol (amortized inference, then decoder-side evaluation with the noise relaxation on every
latent). The objective object that wraps it, :class:`rdopt.losses.multisample.ELBO`, lives with the
multi-sample objectives it shares its options with."""

from __future__ import annotations

import torch
from torch import Tensor

from ..core.rd import Lambda, RDCost, rd_cost
from ..core.types import LatentCodec, relax_all
from ..relax.rounding import mixed, uniform_noise


def scale_floor_penalty(scales: Tensor, floor: float, num_pixels: int, margin: float = 1.1) -> Tensor:
    """Per image, ``Σ relu(margin·floor − σ) / num_pixels`` over the predicted scales σ of p(y | z).

    The Gaussian conditional bounds every scale below at ``floor`` (its lower bound passes a gradient
    only upwards where the likelihood asks for it), so a hyper-synthesis can drift to large negative
    scale predictions wherever the training data never tests them. On an unseen input such a channel
    costs tens of bits per latent value off the mean. The penalty keeps predictions above the
    floor; it is zero for every scale ≥ margin·floor, where the likelihood alone decides."""
    return torch.relu(margin * floor - scales).flatten(1).sum(1) / num_pixels


QUANTIZATIONS = ("noise", "mixed")


def elbo_loss(model: LatentCodec, x: Tensor, lmbda: Lambda, generator: torch.Generator | None = None,
              scale_floor_weight: float = 0.0, quantization: str = "noise") -> RDCost:
    """Per-image R-D cost of one noisy sample (the negative ELBO up to constants); with
    ``scale_floor_weight`` > 0 the loss also carries :func:`scale_floor_penalty` summed over every latent
    whose evaluation reports prior scales (bpp and MSE do not). ``quantization``: ``noise`` (uniform noise in place
    of rounding everywhere) or ``mixed`` (:func:`rdopt.relax.rounding.mixed`: the decoder's values rounded straight
    through, the rate of noisy ones)."""
    if quantization not in QUANTIZATIONS:
        raise ValueError(f"unknown quantization {quantization!r}; one of {', '.join(QUANTIZATIONS)}")
    latents = model.amortize(x)
    relax = uniform_noise(generator) if quantization == "noise" else mixed(generator)
    ev = model.evaluate(latents, relax_all(relax, latents.names))
    cost = rd_cost(ev, x, lmbda)
    if scale_floor_weight:
        if not ev.scales:
            raise ValueError("scale_floor_weight needs a model whose evaluation reports its prior scales")
        n = x.shape[-2] * x.shape[-1]
        penalty = sum(scale_floor_penalty(s, model.scale_floor, n) for s in ev.scales.values())
        cost = RDCost(bpp=cost.bpp, mse=cost.mse, loss=cost.loss + scale_floor_weight * penalty)
    return cost


__all__ = ["QUANTIZATIONS", "elbo_loss", "scale_floor_penalty"]
