"""A differentiable MS-SSIM (Wang, Simoncelli & Bovik 2003) for optimization objectives, with fewer scales
for small images and an optional per-pixel weight map.

With five scales, no weights and ``data_range=1`` it computes what ``pytorch_msssim.ms_ssim`` does (the
same 11-tap Gaussian window with σ = 1.5, valid convolutions, K1 = 0.01, K2 = 0.03, the five exponents
0.0448 … 0.1333, 2×2 average pooling with zero padding of odd sizes, the mean over channels);
``tests/unit/test_msssim.py`` checks the values against it and the gradient against finite differences.

Differences, all for optimization:

* ``scales``: the pyramid needs a smaller side > 10·2^(scales−1) pixels (161 for five scales).
  :func:`max_scales` gives the most scales an image allows; with fewer than five the first exponents are
  renormalized to sum to one (the five, as published, sum to 1.0001 and are used as they are). Below 11 pixels there is no SSIM window at all: an error.
* The contrast-structure and SSIM means are clamped to ≥ :data:`FLOOR` before the powers (pytorch-msssim
  uses ReLU): the gradient of ``c^w`` stays finite for a nearly destroyed image.
* ``weight``: a non-negative per-pixel map (``B×1×H×W`` or broadcastable). Every scale's means become
  weighted means: the map is average-pooled down the pyramid like the image and filtered with the same
  Gaussian window, so each SSIM window counts with the weight of the pixels it covers. A constant map
  gives the unweighted value.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

WIN_SIZE = 11
WIN_SIGMA = 1.5
K1, K2 = 0.01, 0.03
WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
FLOOR = 1e-6


def max_scales(height: int, width: int) -> int:
    """The most scales (≤ 5) whose pyramid fits an image of this size (0: not even one SSIM window)."""
    side = min(height, width)
    if side < WIN_SIZE:
        return 0
    n = 1
    while n < len(WEIGHTS) and side > (WIN_SIZE - 1) * 2 ** n:
        n += 1
    return n


def min_side(scales: int = len(WEIGHTS)) -> int:
    """The smallest side a pyramid of ``scales`` scales fits: 11 pixels for one (an SSIM window), 21 for
    two, 161 for the five of MS-SSIM."""
    return (WIN_SIZE - 1) * 2 ** (scales - 1) + 1


def _window(dtype, device) -> Tensor:
    """The Gaussian window, computed in float32 as pytorch-msssim does (then cast), so values agree."""
    coords = torch.arange(WIN_SIZE, dtype=torch.float32) - WIN_SIZE // 2
    g = torch.exp(-(coords**2) / (2 * WIN_SIGMA**2))
    return (g / g.sum()).to(dtype=dtype, device=device)


def _filter(x: Tensor, g: Tensor) -> Tensor:
    """Separable valid Gaussian filter per channel."""
    c = x.shape[1]
    x = F.conv2d(x, g.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(x, g.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def _mean(m: Tensor, w: Tensor | None) -> Tensor:
    """Per item and channel: mean of a map, or its weighted mean under ``w`` (``B×1×h×w``)."""
    if w is None:
        return m.flatten(2).mean(-1)
    return (m * w).flatten(2).sum(-1) / w.flatten(2).sum(-1).clamp_min(1e-12)


def _pool(x: Tensor) -> Tensor:
    return F.avg_pool2d(x, kernel_size=2, padding=[s % 2 for s in x.shape[2:]])


def ms_ssim(x: Tensor, y: Tensor, *, data_range: float = 1.0, scales: int | None = None,
            weight: Tensor | None = None) -> Tensor:
    """MS-SSIM per item (``(B,)``) of images ``x``, ``y`` (``B×C×H×W``), differentiable in both.

    ``scales``: default the most the size allows (5 from 161 pixels per side); more than it allows is an
    error. ``weight``: optional non-negative per-pixel weight map broadcastable to ``B×1×H×W``."""
    if x.shape != y.shape or x.dim() != 4:
        raise ValueError(f"ms_ssim needs two B×C×H×W images of one shape, got {tuple(x.shape)} and {tuple(y.shape)}")
    h, w = x.shape[-2:]
    fit = max_scales(h, w)
    if scales is None:
        scales = fit
    if fit == 0:
        raise ValueError(f"MS-SSIM needs at least {WIN_SIZE} pixels per side, the image is {w}×{h}")
    if not 1 <= scales <= fit:
        raise ValueError(f"MS-SSIM with {scales} scales needs a smaller side > {(WIN_SIZE - 1) * 2 ** (scales - 1)} "
                         f"pixels, the image is {w}×{h} (at most {fit} scales)")
    exps = torch.tensor(WEIGHTS[:scales], dtype=x.dtype, device=x.device)
    if scales < len(WEIGHTS):
        exps = exps / exps.sum()  # the five sum to 1.0001 and are used as published
    g = _window(x.dtype, x.device)
    c1, c2 = (K1 * data_range) ** 2, (K2 * data_range) ** 2
    wm = None
    if weight is not None:
        wm = weight.to(dtype=x.dtype, device=x.device)
        wm = wm.expand(x.shape[0], 1, h, w) if wm.dim() == 4 else torch.broadcast_to(wm, (x.shape[0], 1, h, w))
    factors = []
    for i in range(scales):
        mu1, mu2 = _filter(x, g), _filter(y, g)
        s11 = _filter(x * x, g) - mu1 * mu1
        s22 = _filter(y * y, g) - mu2 * mu2
        s12 = _filter(x * y, g) - mu1 * mu2
        cs_map = (2 * s12 + c2) / (s11 + s22 + c2)
        wf = _filter(wm, g) if wm is not None else None
        if i == scales - 1:
            ssim_map = (2 * mu1 * mu2 + c1) / (mu1 * mu1 + mu2 * mu2 + c1) * cs_map
            factors.append(_mean(ssim_map, wf).clamp_min(FLOOR))
        else:
            factors.append(_mean(cs_map, wf).clamp_min(FLOOR))
            x, y = _pool(x), _pool(y)
            if wm is not None:
                wm = _pool(wm)
    stacked = torch.stack(factors)  # scales × B × C
    value = torch.prod(stacked ** exps.view(-1, 1, 1), dim=0)
    return value.mean(1)


__all__ = ["FLOOR", "WEIGHTS", "max_scales", "min_side", "ms_ssim"]
