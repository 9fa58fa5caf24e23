"""Classical codecs through Pillow (JPEG, WebP, AVIF): the reference curves of the R-D tables."""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np

from ..metrics.quality import bpp, ms_ssim, psnr

CODECS = {"jpeg": "JPEG", "webp": "WEBP", "avif": "AVIF"}
DEFAULT_QUALITIES = {
    "jpeg": (5, 10, 20, 30, 50, 70, 85, 95),
    "webp": (5, 10, 20, 30, 50, 70, 85, 95),
    "avif": (10, 25, 40, 55, 70, 85),
}


@dataclass(frozen=True)
class BaselinePoint:
    codec: str
    quality: int
    bytes: int
    bpp: float
    psnr: float
    ms_ssim: float | None


def available(codec: str) -> bool:
    from PIL import features

    return codec == "jpeg" or bool(features.check(codec))


def encode_classic(rgb: np.ndarray, codec: str, quality: int) -> BaselinePoint:
    """Encode and decode with Pillow at one quality; measure on the decoded 8-bit RGB image."""
    from PIL import Image

    fmt = CODECS[codec]
    buf = io.BytesIO()
    kwargs = {"quality": int(quality)}
    if codec == "jpeg":
        kwargs.update(subsampling="4:2:0", optimize=True)
    if codec == "webp":
        kwargs.update(method=6)
    Image.fromarray(rgb).save(buf, format=fmt, **kwargs)
    data = buf.getvalue()
    with Image.open(io.BytesIO(data)) as im:
        dec = np.asarray(im.convert("RGB"))
    h, w = rgb.shape[:2]
    return BaselinePoint(codec, quality, len(data), bpp(len(data), h, w), psnr(dec, rgb), ms_ssim(dec, rgb))


def curve(rgb: np.ndarray, codec: str, qualities=None) -> list[BaselinePoint]:
    return [encode_classic(rgb, codec, q) for q in (qualities or DEFAULT_QUALITIES[codec])]


def bd_against(classic: dict[str, dict], bpp: list[float], psnr: list[float]) -> dict[str, tuple[float, float] | str]:
    """BD-rate (%) and BD-PSNR (dB), piecewise cubic, of one R-D curve against each classical curve
    (``classic[codec] = {"bpp": …, "psnr-rgb": …}``); a codec whose rate range does not overlap gets the
    reason instead."""
    from ..metrics.bd import bd_psnr, bd_rate

    out: dict[str, tuple[float, float] | str] = {}
    for codec, c in classic.items():
        try:
            out[codec] = (bd_rate(c["bpp"], c["psnr-rgb"], bpp, psnr), bd_psnr(c["bpp"], c["psnr-rgb"], bpp, psnr))
        except ValueError as e:
            out[codec] = str(e)
    return out
