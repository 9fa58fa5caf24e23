"""Single-sample ELBO training objective (Ballé et al. 2017; CompressAI's example):
``L = bpp + λ·255²·MSE`` with additive uniform noise in place of rounding, evaluated through the
model protocol (amortized inference, then decoder-side evaluation with the noise relaxation)."""

from __future__ import annotations

import torch
from torch import Tensor

from ..relax.rounding import uniform_noise
from ..types import LatentModel, RDCost, rd_cost


def elbo_loss(model: LatentModel, x: Tensor, lmbda: float, generator: torch.Generator | None = None) -> RDCost:
    """Per-image R-D cost of one noisy sample (the negative ELBO up to constants)."""
    latents = model.amortize(x)
    noise = uniform_noise(generator)
    ev = model.evaluate(latents, noise, noise)
    return rd_cost(ev, x, lmbda)
