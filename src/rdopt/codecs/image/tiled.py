"""Bounded-memory coding of large images: the analysis and synthesis transforms run tile by tile, the rate
estimate without synthesis, and the decode memory check.

``g_s`` (four stride-2 transposed convolutions, 5×5, with IGDN) makes each output pixel depend on the
latents within about 3 positions of it, so a latent tile with a halo of :data:`HALO` latents gives the
same pixels as the whole image; other synthesis transforms (residual blocks, attention) reach further, so the halo
is measured on each model (:func:`synthesis_halo`). Images up to one tile are synthesized in one pass exactly as before; larger
ones tile by tile into the 8-bit output, so the synthesis's activations (≈ 100 bytes per pixel for the
embedded models) are bounded by the tile instead of the image.

``g_a`` (four stride-2 convolutions, 5×5, padding 2, with GDN, which mixes channels only) makes latent ``i``
depend on pixels ``16i − 30 … 16i + 30`` (a receptive field of 61 pixels): a pixel tile that starts on a
multiple of 16 and reaches :data:`ANALYSIS_HALO` latents (32 pixels) beyond the latents it produces on
every side gives the same ``y`` as the whole image, up to floating-point summation order
(:func:`analyze_tiled`; the reach is computed from the layers, not assumed).
"""

from __future__ import annotations

import math
import sys
from typing import Callable

import numpy as np
import torch
from torch import Tensor, nn

from ...coding.container import BitstreamError, Header, padded_pixels
from ...core.types import CodedLatents
from ...data.safeio import check_memory

TILE = 64  # latents per tile side (1024 pixels)
HALO = 4  # latents of context on each side of a tile
STRIDE = 16  # pixels per latent of y
# Memory a tiled decode keeps per padded pixel besides the tile, per latent channel of y at 1/16² of the
# pixels: ŷ, its scales, means and indexes (16 bytes) and CompressAI's Python lists of indexes and
# values while entropy decoding (≈ 48 bytes); per pixel: the 8-bit output, a grayscale copy and the
# PNG encoder's buffer; and one tile's synthesis (a one-pass 1024×1024 decode peaks ≈ 125 MB above
# start-up; twice that). Measured: a 2048×2048 decode (M=192) peaks 293 MB above start-up; this gives
# 553 MB (benchmarks/startup/README.md).
TILE_SYNTHESIS_BYTES = 200 * (TILE + 2 * HALO) ** 2 * STRIDE**2

ANALYSIS_TILE = 32  # latents per analysis tile side (512 pixels)
# Latents of context on each side of an analysis tile. g_a's four 5×5 stride-2 convolutions (padding 2) reach
# 2 + 2·2 + 4·2 + 8·2 = 30 pixels on either side of the first of a latent's 16 pixels (latent i reads pixels
# 16i − 30 … 16i + 30, a receptive field of 61): the first latent of a tile needs the 30 pixels before its
# own, i.e. 2 latents (32 pixels), and the last one 15 pixels beyond its own 16, i.e. 1 latent; 2 on every
# side covers both.
# analyze_tiled computes the reach from the layers and tiles only when this halo covers it.
ANALYSIS_HALO = 2
# Memory of one analysis tile per pixel of the tile with its halo: the float input (12 bytes) and g_a's
# activations, the largest N channels at half resolution (N/4 floats per pixel), about four of them alive
# at once (a convolution's input and output, GDN's square and its normalization).
ANALYSIS_TILE_PIXELS = ((ANALYSIS_TILE + 2 * ANALYSIS_HALO) * STRIDE) ** 2


def analysis_tile_bytes(filters: int) -> int:
    """Bytes one analysis tile's activations take for a ``g_a`` with ``filters`` channels (N)."""
    return int(ANALYSIS_TILE_PIXELS * (12 + 4 * 4 * filters / 4))


def encode_tiled_bytes_needed(height: int, width: int, latent_channels: int, filters: int) -> int:
    """Memory the tiled amortized encode of a height×width image takes besides start-up
    (:func:`rdopt.api.image.encode_tiled`): the decode of its file (:func:`decode_bytes_needed`: ŷ and its
    entropy parameters, CompressAI's Python lists, one synthesis tile, the 8-bit output; the encoder's own
    latents and lists are as large and freed before it), per pixel the 8-bit input, the PNG encoder's copy
    of it and MS-SSIM's float32 pyramid (12 bytes), one analysis tile and MS-SSIM's bands (about 25 maps).
    Measured with the embedded q3 models (M=192, N=64) on 4000×3000: the encode process peaks at 1.2 GB with
    rdopt-msh (≈ 0.7 GB above its start-up with the model loaded), 1.6 GB with rdopt-scc (its entropy parameters
    over the whole latent); this gives 1.48 GB (benchmarks/codec/big_image.md, big_image_scc.md)."""
    from ...metrics.quality import BAND_VALUES

    pixels = (-(-height // 64) * 64) * (-(-width // 64) * 64)
    per_pixel = 64 * latent_channels / STRIDE**2 + 24 + 12
    return int(per_pixel * pixels) + TILE_SYNTHESIS_BYTES + analysis_tile_bytes(filters) + 25 * 8 * BAND_VALUES


def decode_bytes_needed(header: Header, latent_channels: int) -> int:
    per_pixel = 64 * latent_channels / STRIDE**2 + 24
    return int(per_pixel * padded_pixels(header)) + TILE_SYNTHESIS_BYTES


def check_decode_memory(header: Header, coded: CodedLatents, model) -> None:
    """Before allocating: the decode of this image fits the memory budget (the payload's plausibility is
    checked by :func:`rdopt.api.image.check_payload`)."""
    m = coded.shapes["y"][0]
    check_memory(decode_bytes_needed(header, m), f"decoding a {header.width}×{header.height} image")


def fits_one_tile(height: int, width: int) -> bool:
    """Whether an image of this size (padded to 64) is synthesized in one pass (its ``y`` fits one tile)."""
    return math.ceil(height / 64) * 64 <= TILE * STRIDE and math.ceil(width / 64) * 64 <= TILE * STRIDE


def tile_bar(total: int, desc: str, progress: bool):
    """A progress bar over tiles on standard error (nothing unless ``progress``)."""
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="tile", disable=not progress or total <= 1, file=sys.stderr,
                dynamic_ncols=True, leave=False)


def _ranges(n: int, tile: int) -> list[tuple[int, int]]:
    return [(a, min(a + tile, n)) for a in range(0, n, tile)]


PROBE = 12  # latents on each side of the probed position (reaches up to 11 are measured; beyond: no tiling)


@torch.no_grad()
def synthesis_halo(model) -> int | None:
    """The latents of context a synthesis tile needs on each side for ``g_s`` to give the same pixels as the whole
    image: the reach of one latent position in pixels, measured on the model (a change of every channel at the
    centre of a ``(2·PROBE + 1)²`` grid of random latents, twice), in latents, at least :data:`HALO`. ``None`` when
    the change reaches the edge of the probe (the model is then synthesized in one pass). Cached on the model."""
    cached = getattr(model, "_synthesis_halo", False)
    if cached is not False:
        return cached
    m = model.latent_shapes(64, 64)["y"][0]
    param = next(model.parameters())
    gen = torch.Generator().manual_seed(0)
    side = 2 * PROBE + 1
    reach = 0
    for _ in range(2):
        y = (torch.randn((1, m, side, side), generator=gen) * 2).to(param.device, param.dtype)
        moved = y.clone()
        moved[..., PROBE, PROBE] += (torch.randn(m, generator=gen) * 4 + 8).to(param.device, param.dtype)
        changed = (model.synthesize(moved) - model.synthesize(y)).abs().amax(dim=(0, 1)) > 0
        rows = torch.nonzero(changed.any(1)).flatten()
        cols = torch.nonzero(changed.any(0)).flatten()
        if rows.numel() == 0:
            continue
        lo, hi = PROBE * STRIDE, (PROBE + 1) * STRIDE - 1  # the probed latent's own pixels
        if min(rows.min(), cols.min()) == 0 or max(rows.max(), cols.max()) == side * STRIDE - 1:
            model._synthesis_halo = None
            return None
        reach = max(reach, int(lo - min(rows.min(), cols.min())), int(max(rows.max(), cols.max()) - hi))
    halo = max(HALO, math.ceil(reach / STRIDE))
    model._synthesis_halo = halo
    return halo


@torch.no_grad()
def synthesize_uint8(model, y_hat: torch.Tensor, height: int, width: int, *, progress: bool = False,
                     on_tile: Callable[[int, int, Tensor], None] | None = None) -> np.ndarray:
    """``g_s(ŷ)`` cropped to height×width as 8-bit RGB (H×W×3), tile by tile for large images.

    ``on_tile(top, left, x)``: called with each part of the picture (the whole of it for an image of one
    tile) as ``g_s`` gives it — float, before clamping and rounding — and its place in the image, for
    measurements that need no whole-image copy. ``progress``: a bar over the tiles on standard error."""
    _, _, yh, yw = y_hat.shape
    halo = synthesis_halo(model) if yh > TILE or yw > TILE else None
    if (yh <= TILE and yw <= TILE) or halo is None:
        x_hat = model.synthesize(y_hat)[..., :height, :width]
        _check_finite(x_hat)
        if on_tile is not None:
            on_tile(0, 0, x_hat)
        return _to_uint8(x_hat)
    out = np.empty((height, width, 3), dtype=np.uint8)
    tiles = [(r, c) for r in _ranges(yh, TILE) for c in _ranges(yw, TILE)]
    with tile_bar(len(tiles), "decode", progress) as bar:
        for (r0, r1), (c0, c1) in tiles:
            bar.update(1)
            py0, px0 = r0 * STRIDE, c0 * STRIDE
            py1, px1 = min(r1 * STRIDE, height), min(c1 * STRIDE, width)
            if py0 >= py1 or px0 >= px1:
                continue
            a0, b0 = max(r0 - halo, 0), max(c0 - halo, 0)
            a1, b1 = min(r1 + halo, yh), min(c1 + halo, yw)
            x = model.synthesize(y_hat[..., a0:a1, b0:b1])
            top, left = (r0 - a0) * STRIDE, (c0 - b0) * STRIDE
            part = x[..., top : top + py1 - py0, left : left + px1 - px0]
            _check_finite(part)
            if on_tile is not None:
                on_tile(py0, px0, part)
            out[py0:py1, px0:px1] = _to_uint8(part)
    return out


# layers that act on each position alone (mixing channels at most): no spatial reach
_POINTWISE = (nn.Identity, nn.ReLU, nn.LeakyReLU, nn.PReLU, nn.GELU, nn.Sigmoid, nn.Tanh)


def analysis_reach(g_a: nn.Module) -> tuple[int, int, int] | None:
    """``(stride, before, after)`` of a ``g_a`` made of 2-D convolutions and pointwise layers (GDN,
    activations): output latent ``i`` depends on the input pixels ``stride·i − before … stride·i + after``.
    ``None`` for any other layer (the reach is then unknown and the analysis is not tiled)."""
    from compressai.layers import GDN

    layers = list(g_a.children()) if isinstance(g_a, nn.Sequential) else [g_a]
    stride, before, after = 1, 0, 0
    for layer in reversed(layers):  # from the output back to the pixels
        if isinstance(layer, (GDN, *_POINTWISE)):
            continue
        if not isinstance(layer, nn.Conv2d) or isinstance(layer.padding, str):
            return None
        k, s, p, d = layer.kernel_size, layer.stride, layer.padding, layer.dilation
        if len({k[0], k[1]}) != 1 or len({s[0], s[1]}) != 1 or len({p[0], p[1]}) != 1 or len({d[0], d[1]}) != 1:
            return None
        if layer.padding_mode != "zeros":
            return None
        # output j of this layer reads its input s·j − p … s·j − p + d·(k − 1)
        before = s[0] * before + p[0]
        after = s[0] * after - p[0] + d[0] * (k[0] - 1)
        stride *= s[0]
    return stride, before, after


def analysis_halo(g_a: nn.Module) -> int | None:
    """The latents of context an analysis tile needs on each side (at most :data:`ANALYSIS_HALO`), or
    ``None`` if ``g_a`` cannot be tiled exactly with that halo."""
    reach = analysis_reach(g_a)
    if reach is None:
        return None
    stride, before, after = reach
    if stride != STRIDE:
        return None
    # a tile whose first pixel is on a multiple of the stride lines every layer's positions up with the
    # whole image's; it must hold the `before` pixels ahead of its first latent and the `after` pixels past
    # the first pixel of its last one
    need = max(math.ceil(before / stride), math.ceil(max(after - stride + 1, 0) / stride))
    return need if need <= ANALYSIS_HALO else None


class PaddedPixels:
    """An 8-bit H×W×3 image read as the padded float input ``to_batch`` makes of it (``1×3×H'×W'`` in
    [0, 1], padded right and bottom to a multiple by edge replication), one crop at a time: the same values
    without a whole-image float copy."""

    def __init__(self, rgb: np.ndarray, multiple: int, device=None, dtype=torch.float32):
        self.rgb, self.device, self.dtype = rgb, device, dtype
        h, w = rgb.shape[:2]
        self.shape = (1, 3, -(-h // multiple) * multiple, -(-w // multiple) * multiple)

    def crop(self, top: int, bottom: int, left: int, right: int) -> Tensor:
        h, w = self.rgb.shape[:2]
        rows = np.minimum(np.arange(top, bottom), h - 1)
        cols = np.minimum(np.arange(left, right), w - 1)
        part = self.rgb[rows[:, None], cols[None, :]]  # edge replication beyond the image
        t = torch.from_numpy(part).permute(2, 0, 1).unsqueeze(0)
        return t.to(device=self.device, dtype=self.dtype).div_(255.0)  # as data.images.to_tensor


@torch.no_grad()
def analyze_tiled(model, x: Tensor | PaddedPixels, *, tile: int = ANALYSIS_TILE, progress: bool = False) -> Tensor:
    """``y = g_a(x)`` computed tile by tile: ``tile`` latents per side, each from the pixels of its latents
    and a halo of :func:`analysis_halo` latents around them, stitched into ``y``. Equal to
    ``model.analysis(x)`` up to floating-point summation order, for any input size (odd ones included).

    ``x``: a ``B×3×H×W`` tensor or a :class:`PaddedPixels` image. An input of one tile, or a ``g_a`` whose
    reach the halo does not cover, is analysed in one pass. ``progress``: a bar over the tiles on standard
    error."""
    height, width = x.shape[-2:]
    crop = x.crop if isinstance(x, PaddedPixels) else (lambda t, b, l, r: x[..., t:b, l:r])
    halo = analysis_halo(model.net.g_a)
    yh, yw = -(-height // STRIDE), -(-width // STRIDE)
    if halo is None or (yh <= tile and yw <= tile):
        return model.analysis(crop(0, height, 0, width))
    y = None
    tiles = [(r, c) for r in _ranges(yh, tile) for c in _ranges(yw, tile)]
    with tile_bar(len(tiles), "analysis", progress) as bar:
        for (r0, r1), (c0, c1) in tiles:
            a0, b0 = max(r0 - halo, 0), max(c0 - halo, 0)
            a1, b1 = min(r1 + halo, yh), min(c1 + halo, yw)
            part = model.analysis(crop(a0 * STRIDE, min(a1 * STRIDE, height), b0 * STRIDE, min(b1 * STRIDE, width)))
            if y is None:
                y = part.new_empty((part.shape[0], part.shape[1], yh, yw))
            y[..., r0:r1, c0:c1] = part[..., r0 - a0 : r1 - a0, c0 - b0 : c1 - b0]
            del part
            bar.update(1)
    return y


def _check_finite(x: torch.Tensor) -> None:
    if not bool(torch.isfinite(x).all()):
        raise BitstreamError("corrupt bitstream: decoded latents give a non-finite image")


def _to_uint8(x: torch.Tensor) -> np.ndarray:
    return x[0].clamp(0, 1).mul(255.0).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
