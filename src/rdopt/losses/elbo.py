"""Single-sample ELBO training objective (Ballé et al. 2017; CompressAI's example):
``L = bpp + λ·255²·MSE`` with additive uniform noise in place of rounding, evaluated through the
model protocol (amortized inference, then decoder-side evaluation with the noise relaxation)."""

from __future__ import annotations

import torch
from torch import Tensor

from ..relax.rounding import uniform_noise
from ..types import LatentModel, RDCost, rd_cost


def scale_floor_penalty(scales: Tensor, floor: float, num_pixels: int, margin: float = 1.1) -> Tensor:
    """Per image, ``Σ relu(margin·floor − σ) / num_pixels`` over the predicted scales σ of p(y | z).

    The Gaussian conditional bounds every scale below at ``floor`` (its lower bound passes a gradient
    only upwards where the likelihood asks for it), so a hyper-synthesis can drift to large negative
    scale predictions wherever the training data never tests them. On an unseen input such a channel
    costs tens of bits per latent value off the mean (issue #5). The penalty keeps predictions above the
    floor; it is zero for every scale ≥ margin·floor, where the likelihood alone decides."""
    return torch.relu(margin * floor - scales).flatten(1).sum(1) / num_pixels


def elbo_loss(model: LatentModel, x: Tensor, lmbda: float, generator: torch.Generator | None = None,
              scale_floor_weight: float = 0.0) -> RDCost:
    """Per-image R-D cost of one noisy sample (the negative ELBO up to constants); with
    ``scale_floor_weight`` > 0 the loss also carries :func:`scale_floor_penalty` (bpp and MSE do not)."""
    latents = model.amortize(x)
    noise = uniform_noise(generator)
    ev = model.evaluate(latents, noise, noise)
    cost = rd_cost(ev, x, lmbda)
    if scale_floor_weight:
        if ev.scales is None:
            raise ValueError("scale_floor_weight needs a model whose evaluation reports its prior scales")
        penalty = scale_floor_penalty(ev.scales, model.scale_floor, x.shape[-2] * x.shape[-1])
        cost = RDCost(bpp=cost.bpp, mse=cost.mse, loss=cost.loss + scale_floor_weight * penalty)
    return cost
