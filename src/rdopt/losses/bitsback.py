"""The bits-back NELBO as a training objective (paper 003 §3.3): compared with the single-sample ELBO
(:mod:`rdopt.losses.elbo`) the hyper-latent is a Gaussian sample ``z = μz + σz·ε`` from q(z | y) (variable
width), its prior the flexible density without convolution with the unit box, and the objective carries an
extra term that subtracts the entropy of q — the expected number of bits the decoder gets back::

    L = [ −log2 P(ỹ | z) − log2 p(z) − H[q(z | y)] ] / pixels + λ·255²·MSE(g_s(ỹ), x),   ỹ = y + U(−½, ½)

``H[q] = Σ ½·log2(2πe·σz²)`` (analytic). The rate is the *net* rate: file size minus recovered side
information."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..codecs.entropy import gaussian_entropy_bits
from ..core.rd import Lambda, RDCost, distortion_term
from ..relax.rounding import uniform_noise


def bits_back_elbo(model, x: Tensor, lmbda: Lambda, generator: torch.Generator | None = None,
                   entropy_weight: float = 1.0) -> RDCost:
    """Per-image single-sample bits-back NELBO (``entropy_weight`` = 1; 0 drops the bits-back term, for
    comparisons). ``model``: a bits-back codec (``amortize``, ``posterior``, ``y_bits``, ``z_prior_bits``,
    ``synthesize``)."""
    y = model.amortize(x)["y"]
    mu, logvar = model.posterior(y)
    y_tilde = uniform_noise(generator)(y, torch.zeros_like(y))
    eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
    z = mu + torch.exp(0.5 * logvar) * eps
    entropy = gaussian_entropy_bits(logvar).flatten(1).sum(1)
    bits = model.y_bits(y_tilde, z) + model.z_prior_bits(z) - entropy_weight * entropy
    n = x.shape[-2] * x.shape[-1]
    mse, dist = distortion_term(model.synthesize(y_tilde), x, lmbda)
    bpp = bits / n
    return RDCost(bpp=bpp, mse=mse, loss=bpp + dist)


@dataclass(frozen=True)
class BitsBackELBO:
    """The bits-back NELBO as an objective object for :func:`rdopt.training.train`
    (``objective(model, x, generator) -> RDCost``; ``bpp`` is the net rate)."""

    lmbda: Lambda
    entropy_weight: float = 1.0

    def __call__(self, model, x: Tensor, generator: torch.Generator | None = None) -> RDCost:
        return bits_back_elbo(model, x, self.lmbda, generator, self.entropy_weight)


__all__ = ["BitsBackELBO", "bits_back_elbo"]
