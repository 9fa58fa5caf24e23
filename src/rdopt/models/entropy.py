"""Likelihoods of CompressAI's entropy models, in one place.

CompressAI computes likelihoods only inside ``forward`` (which also quantizes, tied to the ``training``
flag); rdopt needs them at values it relaxed itself, so it calls the models' private ``_likelihood``.
These two wrappers are the only places that do, so motion and residual hyperpriors reuse them and a
CompressAI upgrade is checked in one spot (``tests/unit/test_adapter.py`` compares with ``forward``).
"""

from __future__ import annotations

from torch import Tensor


def bottleneck_likelihood(eb, z_tilde: Tensor) -> Tensor:
    """Likelihood of ``z̃`` (B×C×…) under an ``EntropyBottleneck`` (its factorized density), bounded
    below as CompressAI bounds it."""
    # The factorized density works channel-first on flattened values: (C, 1, B·H·W).
    c = z_tilde.shape[1]
    values = z_tilde.transpose(0, 1).reshape(c, 1, -1)
    lik, _, _ = eb._likelihood(values)
    if eb.use_likelihood_bound:
        lik = eb.likelihood_lower_bound(lik)
    return lik.reshape(c, z_tilde.shape[0], *z_tilde.shape[2:]).transpose(0, 1)


def gaussian_likelihood(gc, y_tilde: Tensor, scales: Tensor, means: Tensor | None) -> Tensor:
    """Likelihood of ``ỹ`` under a ``GaussianConditional`` with the given scales (and means)."""
    lik = gc._likelihood(y_tilde, scales, means)
    if gc.use_likelihood_bound:
        lik = gc.likelihood_lower_bound(lik)
    return lik


__all__ = ["bottleneck_likelihood", "gaussian_likelihood"]
