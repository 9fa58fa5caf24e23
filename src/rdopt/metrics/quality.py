"""Image quality and rate metrics. PSNR and MS-SSIM are measured on 8-bit pixels (what a user sees)."""

from __future__ import annotations

import math

import numpy as np
import torch

# pytorch-msssim needs the smaller side > (win_size − 1)·2⁴ = 160 for its 5 scales.
MS_SSIM_MIN_SIDE = 161


def psnr(a: np.ndarray, b: np.ndarray, peak: float = 255.0) -> float:
    """PSNR in dB between two uint8 images of the same shape (inf if identical)."""
    if a.shape != b.shape:
        raise ValueError(f"shape mismatch {a.shape} vs {b.shape}")
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10.0 * math.log10(peak**2 / mse)


def ms_ssim(a: np.ndarray, b: np.ndarray) -> float | None:
    """MS-SSIM (pytorch-msssim, data range 255) between uint8 H×W×3 images; ``None`` if the image is
    too small for the 5-scale pyramid."""
    from pytorch_msssim import ms_ssim as _ms_ssim

    if min(a.shape[0], a.shape[1]) < MS_SSIM_MIN_SIDE:
        return None
    ta = torch.from_numpy(np.array(a, dtype=np.uint8)).permute(2, 0, 1)[None].double()
    tb = torch.from_numpy(np.array(b, dtype=np.uint8)).permute(2, 0, 1)[None].double()
    return float(_ms_ssim(ta, tb, data_range=255.0, size_average=True))


def bpp(num_bytes: int, height: int, width: int) -> float:
    return 8.0 * num_bytes / (height * width)


def lossless_png_bytes(pixels: np.ndarray, compress_level: int = 1) -> int:
    """Size in bytes of the image as a lossless PNG (Pillow, zlib level ``compress_level``).

    Level 1 is fast and gives a *larger* file than PNG's best effort, so "a coded file bigger than
    this" is a conservative sign that a model does not fit an image (:func:`rate_sanity`)."""
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(pixels)).save(buf, format="PNG", compress_level=compress_level)
    return len(buf.getvalue())


def rate_sanity(pixels: np.ndarray, file_bytes: int, amortized_bits: float | None = None) -> tuple[int, list[str]]:
    """Compare a coded image with its lossless PNG size (the guard against a model that does not fit
    an input). Returns (PNG bytes, warnings); a warning is raised when the file, or the amortized
    encoder's estimated rate, exceeds what the lossless PNG needs."""
    png = lossless_png_bytes(pixels)
    warnings = []
    if file_bytes > png:
        warnings.append(f"the coded file ({file_bytes} bytes) is larger than a lossless PNG of the input ({png} bytes): "
                        f"the model does not fit this image")
    if amortized_bits is not None and amortized_bits / 8 > png:
        warnings.append(f"the model's amortized encoding needs an estimated {amortized_bits / 8:.0f} bytes, more than a "
                        f"lossless PNG of the input ({png} bytes): the model does not fit this image")
    return png, warnings
