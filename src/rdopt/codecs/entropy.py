"""Likelihoods of CompressAI's entropy models, in one place.

CompressAI computes likelihoods only inside ``forward`` (which also quantizes, tied to the ``training``
flag); rdopt needs them at values it relaxed itself, so it calls the models' private ``_likelihood``.
These wrappers are the only places that do (and :func:`fewest_bits` reads the coders' private tables), so motion and residual hyperpriors reuse them and a
CompressAI upgrade is checked in one spot (``tests/unit/test_adapter.py`` compares with ``forward``).

Also :func:`crop_to`, which fits a hyper-synthesis output to its latent (frames padded to 16, not 64), and
:func:`gaussian_entropy_bits`, the analytic entropy of a Gaussian in bits, which the bits-back model
(:mod:`rdopt.codecs.image.bitsback`) and its training objective (:mod:`rdopt.losses.bitsback`) share.
"""

from __future__ import annotations

from contextlib import contextmanager
from functools import partial

import torch
from torch import Tensor


MAX_SYMBOL = 1 << 26
"""Largest symbol magnitude rdopt hands CompressAI's rANS coder: its escape coding of out-of-range values loops
forever from about 2²⁷ on (its bit-count loop shifts a 32-bit value by 32), and a non-finite value becomes INT_MIN."""


def check_symbols(symbols: Tensor) -> None:
    """Refuse symbols (``round(value − mean)``) that CompressAI's coder cannot code: not finite, or of magnitude
    :data:`MAX_SYMBOL` or more (``ValueError``, where the coder would hang)."""
    if not bool(torch.isfinite(symbols).all()) or (symbols.numel() and float(symbols.abs().max()) >= MAX_SYMBOL):
        raise ValueError(f"a latent value is not finite or too far from its mean to code (|symbol| ≥ {MAX_SYMBOL})")


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


def scale_indexes(gc, scales: Tensor) -> Tensor:
    """A ``GaussianConditional``'s scale-table index of every predicted scale: the same integers as its
    ``build_indexes`` (the number of table entries but the last below the bounded scale), by binary search instead of
    one pass over the tensor per table entry (256 passes with rdopt's fine tables)."""
    bounded = gc.lower_bound_scale(scales)
    table = gc.scale_table[:-1].to(bounded.dtype).contiguous()
    return torch.searchsorted(table, bounded.contiguous(), right=False).int()


@contextmanager
def fast_indexes(coders):
    """Within the block, the given ``GaussianConditional``s' ``build_indexes`` is :func:`scale_indexes` (same values),
    so CompressAI's own coding routines run with it."""
    patched = []
    try:
        for gc in dict.fromkeys(coders):
            gc.build_indexes = partial(scale_indexes, gc)
            patched.append(gc)
        yield
    finally:
        for gc in patched:
            del gc.build_indexes


def gaussian_entropy_bits(logvar: Tensor) -> Tensor:
    """Per element, the differential entropy of N(μ, σ²) in bits: ``½·log2(2πe·σ²)``."""
    import math

    return 0.5 * (math.log(2.0 * math.pi * math.e) + logvar) / math.log(2.0)


def fewest_bits(coder) -> float:
    """Fewest bits an entropy coder's quantized tables spend on one symbol (its most probable one; 0 for a
    coder without tables): bounds from below the size of an honest string."""
    import math

    cdf, lengths = coder._quantized_cdf, coder._cdf_length
    if cdf.numel() == 0:
        return 0.0
    best = 1
    for row, n in zip(cdf.tolist(), lengths.tolist()):
        best = max(best, max(b - a for a, b in zip(row[: n - 1], row[1:n])))
    return -math.log2(min(best, 1 << 16) / float(1 << 16))


def crop_to(t: Tensor, size: tuple[int, int] | torch.Size | None) -> Tensor:
    """``t`` cropped to its top-left ``size`` (``None``: unchanged).

    The hyper-synthesis of a latent of ``h×w`` positions decodes ``4⌈h/4⌉×4⌈w/4⌉`` prior parameters (two
    stride-2 stages each way); cropping them to ``h×w`` is what lets a frame be padded to a multiple of the
    latent's stride (16 pixels) instead of 64, as DCVC's hyperpriors do. With ``h, w`` multiples of 4 the crop is
    the identity, so files of 64-padded frames decode as before."""
    if size is None:
        return t
    h, w = int(size[0]), int(size[1])
    if t.shape[-2] < h or t.shape[-1] < w:
        raise ValueError(f"prior parameters of {tuple(t.shape[-2:])} positions cannot cover a latent of {(h, w)}")
    return t if t.shape[-2:] == (h, w) else t[..., :h, :w]


__all__ = ["bottleneck_likelihood", "crop_to", "fast_indexes", "fewest_bits", "gaussian_entropy_bits", "gaussian_likelihood",
           "scale_indexes"]
