"""Single-sample ELBO training objective (Ballé et al. 2017; CompressAI's example):
``L = bpp + λ·255²·MSE`` with additive uniform noise in place of rounding, evaluated through the
codec protocol (amortized inference, then decoder-side evaluation with the noise relaxation on every
latent)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..rd import Lambda, RDCost, rd_cost
from ..relax.rounding import uniform_noise
from ..types import LatentCodec, relax_all


def scale_floor_penalty(scales: Tensor, floor: float, num_pixels: int, margin: float = 1.1) -> Tensor:
    """Per image, ``Σ relu(margin·floor − σ) / num_pixels`` over the predicted scales σ of p(y | z).

    The Gaussian conditional bounds every scale below at ``floor`` (its lower bound passes a gradient
    only upwards where the likelihood asks for it), so a hyper-synthesis can drift to large negative
    scale predictions wherever the training data never tests them. On an unseen input such a channel
    costs tens of bits per latent value off the mean (issue #5). The penalty keeps predictions above the
    floor; it is zero for every scale ≥ margin·floor, where the likelihood alone decides."""
    return torch.relu(margin * floor - scales).flatten(1).sum(1) / num_pixels


def elbo_loss(model: LatentCodec, x: Tensor, lmbda: Lambda, generator: torch.Generator | None = None,
              scale_floor_weight: float = 0.0) -> RDCost:
    """Per-image R-D cost of one noisy sample (the negative ELBO up to constants); with
    ``scale_floor_weight`` > 0 the loss also carries :func:`scale_floor_penalty` summed over every latent
    whose evaluation reports prior scales (bpp and MSE do not)."""
    latents = model.amortize(x)
    noise = uniform_noise(generator)
    ev = model.evaluate(latents, relax_all(noise, latents.names))
    cost = rd_cost(ev, x, lmbda)
    if scale_floor_weight:
        if not ev.scales:
            raise ValueError("scale_floor_weight needs a model whose evaluation reports its prior scales")
        n = x.shape[-2] * x.shape[-1]
        penalty = sum(scale_floor_penalty(s, model.scale_floor, n) for s in ev.scales.values())
        cost = RDCost(bpp=cost.bpp, mse=cost.mse, loss=cost.loss + scale_floor_weight * penalty)
    return cost


@dataclass(frozen=True)
class ELBO:
    """The single-sample ELBO as a training objective object: ``objective(model, x, generator)`` returns
    the per-item :class:`rdopt.rd.RDCost` whose ``loss`` the training loop minimises (see
    :func:`rdopt.training.train`). Multi-sample, video-GoP and bits-back objectives plug in the same way.

    Attributes:
        lmbda: the R-D trade-off the model is trained for.
        scale_floor_weight: weight of :func:`scale_floor_penalty` (0: off).
        direct_y: infer z from the encoder's continuous y (Ballé et al. 2018, the default); ``False``
            infers it from the noisy sample ỹ — the plain 2-level VAE of MS-NIC Table 2, which trains much
            worse (:class:`rdopt.losses.multisample.IWAE` with one sample; the noise of y is drawn first).
    """

    lmbda: Lambda
    scale_floor_weight: float = 0.0
    direct_y: bool = True

    def __call__(self, model: LatentCodec, x: Tensor, generator: torch.Generator | None = None) -> RDCost:
        if not self.direct_y:
            from .multisample import IWAE

            c = IWAE(self.lmbda, samples=1, scale_floor_weight=self.scale_floor_weight)(model, x, generator)
            return RDCost(bpp=c.bpp, mse=c.mse, loss=c.loss)
        return elbo_loss(model, x, self.lmbda, generator, scale_floor_weight=self.scale_floor_weight)


__all__ = ["ELBO", "elbo_loss", "scale_floor_penalty"]
