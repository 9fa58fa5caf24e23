"""Bounded-memory decoding: the synthesis transform run tile by tile, and the decode memory check.

``g_s`` (four stride-2 transposed convolutions, 5×5, with IGDN) makes each output pixel depend on the
latents within about 3 positions of it, so a latent tile with a halo of :data:`HALO` latents gives the
same pixels as the whole image. Images up to one tile are synthesized in one pass exactly as before; larger
ones tile by tile into the 8-bit output, so the synthesis's activations (≈ 100 bytes per pixel for the
embedded models) are bounded by the tile instead of the image.
"""

from __future__ import annotations

import numpy as np
import torch

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


def decode_bytes_needed(header: Header, latent_channels: int) -> int:
    per_pixel = 64 * latent_channels / STRIDE**2 + 24
    return int(per_pixel * padded_pixels(header)) + TILE_SYNTHESIS_BYTES


def check_decode_memory(header: Header, coded: CodedLatents, model) -> None:
    """Before allocating: the decode of this image fits the memory budget (the payload's plausibility is
    checked by :func:`rdopt.api.image.check_payload`)."""
    m = coded.shapes["y"][0]
    check_memory(decode_bytes_needed(header, m), f"decoding a {header.width}×{header.height} image")


@torch.no_grad()
def synthesize_uint8(model, y_hat: torch.Tensor, height: int, width: int) -> np.ndarray:
    """``g_s(ŷ)`` cropped to height×width as 8-bit RGB (H×W×3), tile by tile for large images."""
    _, _, yh, yw = y_hat.shape
    if yh <= TILE and yw <= TILE:
        x_hat = model.synthesize(y_hat)[..., :height, :width]
        _check_finite(x_hat)
        return _to_uint8(x_hat)
    out = np.empty((height, width, 3), dtype=np.uint8)
    for r0 in range(0, yh, TILE):
        for c0 in range(0, yw, TILE):
            r1, c1 = min(r0 + TILE, yh), min(c0 + TILE, yw)
            a0, b0 = max(r0 - HALO, 0), max(c0 - HALO, 0)
            a1, b1 = min(r1 + HALO, yh), min(c1 + HALO, yw)
            x = model.synthesize(y_hat[..., a0:a1, b0:b1])
            top, left = (r0 - a0) * STRIDE, (c0 - b0) * STRIDE
            py0, px0 = r0 * STRIDE, c0 * STRIDE
            py1, px1 = min(r1 * STRIDE, height), min(c1 * STRIDE, width)
            if py0 >= py1 or px0 >= px1:
                continue
            part = x[..., top : top + py1 - py0, left : left + px1 - px0]
            _check_finite(part)
            out[py0:py1, px0:px1] = _to_uint8(part)
    return out


def _check_finite(x: torch.Tensor) -> None:
    if not bool(torch.isfinite(x).all()):
        raise BitstreamError("corrupt bitstream: decoded latents give a non-finite image")


def _to_uint8(x: torch.Tensor) -> np.ndarray:
    return x[0].clamp(0, 1).mul(255.0).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
