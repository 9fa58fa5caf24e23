"""Image quality and rate metrics. PSNR and MS-SSIM are measured on 8-bit pixels (what a user sees)."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

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


def squared_error_sum(a: np.ndarray, b: np.ndarray, rows: int = 256) -> int:
    """Sum of the squared differences of two 8-bit images of one shape, exactly (integers), a band of
    ``rows`` rows at a time. Divided by the number of values it is the float64 mean :func:`psnr` takes
    (every partial sum of that mean is an integer below 2⁵³, so it is exact too)."""
    if a.shape != b.shape:
        raise ValueError(f"shape mismatch {a.shape} vs {b.shape}")
    total = 0
    for r in range(0, a.shape[0], rows):
        d = a[r : r + rows].astype(np.int32) - b[r : r + rows].astype(np.int32)
        total += int(np.square(d).sum(dtype=np.int64))
    return total


# Values per map of one band of ms_ssim_banded (4 MB in float64); about 25 such maps are alive at once.
BAND_VALUES = 1 << 19


def ms_ssim_banded(a: np.ndarray, b: np.ndarray, band_values: int = BAND_VALUES) -> float | None:
    """What :func:`ms_ssim` gives (pytorch-msssim's MS-SSIM of uint8 H×W×3 images, data range 255, in
    float64), computed a band of rows at a time, so that its memory does not grow with the image beyond
    the pyramid's smaller scales (¼ of the pixels, stored exactly in float32).

    The same definition, not an approximation: at each scale the SSIM and contrast-structure maps of the
    valid 11×11 Gaussian windows are summed band by band (each band reads the 10 rows below it) and divided
    by their count; the next scale is the 2×2 average pooling (zero padding of odd sizes) computed band by
    band. Only the order of floating-point summation differs (≈ 1e-15). ``None`` if the image is too small
    for the 5-scale pyramid."""
    if a.shape != b.shape:
        raise ValueError(f"shape mismatch {a.shape} vs {b.shape}")
    if min(a.shape[0], a.shape[1]) < MS_SSIM_MIN_SIDE:
        return None
    f64 = torch.float64
    coords = torch.arange(_WIN, dtype=torch.float32) - _WIN // 2  # the window, in float32 as pytorch-msssim
    g = torch.exp(-(coords**2) / (2 * 1.5**2))
    g = (g / g.sum()).to(f64)
    c1, c2 = (0.01 * 255.0) ** 2, (0.03 * 255.0) ** 2

    def from_uint8(img):
        return lambda r0, r1: torch.from_numpy(np.array(img[r0:r1])).permute(2, 0, 1)[None].to(f64)

    def from_tensor(t):
        return lambda r0, r1: t[..., r0:r1, :].to(f64)

    x_rows, y_rows = from_uint8(a), from_uint8(b)
    height, width = a.shape[:2]
    factors = []
    for scale in range(len(_WEIGHTS)):
        last = scale == len(_WEIGHTS) - 1
        rows = max(16, band_values // (3 * width))
        total = torch.zeros(3, dtype=f64)
        out_rows = height - _WIN + 1
        for r0 in range(0, out_rows, rows):
            r1 = min(r0 + rows, out_rows)
            x, y = x_rows(r0, r1 + _WIN - 1), y_rows(r0, r1 + _WIN - 1)
            cs, ssim = _ssim_maps(x, y, g, c1, c2, last)
            total += (ssim if last else cs).sum(dim=(0, 2, 3))
        factors.append(torch.relu(total / (out_rows * (width - _WIN + 1))))
        if not last:
            px, py = _pool_banded(x_rows, height, width, rows), _pool_banded(y_rows, height, width, rows)
            x_rows, y_rows = from_tensor(px), from_tensor(py)
            height, width = px.shape[-2:]
    weights = torch.tensor(_WEIGHTS, dtype=f64)
    value = torch.prod(torch.stack(factors) ** weights.view(-1, 1), dim=0)
    return float(value.mean())


_WIN = 11
_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


def _gauss_valid(x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """The valid separable Gaussian filter of pytorch-msssim (rows, then columns), as 11 shifted products."""
    n = g.numel()
    h, w = x.shape[-2] - n + 1, x.shape[-1]
    t = x[..., 0:h, :] * g[0]
    for k in range(1, n):
        t.add_(x[..., k : k + h, :] * g[k])
    w = w - n + 1
    out = t[..., 0:w] * g[0]
    for k in range(1, n):
        out.add_(t[..., k : k + w] * g[k])
    return out


def _ssim_maps(x, y, g, c1, c2, with_ssim: bool):
    """pytorch-msssim's contrast-structure map (and SSIM map) of one band."""
    mu1, mu2 = _gauss_valid(x, g), _gauss_valid(y, g)
    mu1_sq, mu2_sq, mu1_mu2 = mu1.pow(2), mu2.pow(2), mu1 * mu2
    sigma1_sq = _gauss_valid(x * x, g) - mu1_sq
    sigma2_sq = _gauss_valid(y * y, g) - mu2_sq
    sigma12 = _gauss_valid(x * y, g) - mu1_mu2
    cs = (2 * sigma12 + c2) / (sigma1_sq + sigma2_sq + c2)
    ssim = ((2 * mu1_mu2 + c1) / (mu1_sq + mu2_sq + c1)) * cs if with_ssim else None
    return cs, ssim


def _pool_banded(rows_of, height: int, width: int, rows: int) -> torch.Tensor:
    """``avg_pool2d(x, 2, padding=[H % 2, W % 2])`` (zeros counted) of the image ``rows_of`` reads, band by
    band, stored in float32: its values are sums of four 8-bit values over 4ˢ, exact in float32."""
    ph, pw = height % 2, width % 2
    out_h = (height + 2 * ph - 2) // 2 + 1
    out = torch.empty((1, 3, out_h, (width + 2 * pw - 2) // 2 + 1), dtype=torch.float32)
    step = max(1, rows // 2)
    for o0 in range(0, out_h, step):
        o1 = min(o0 + step, out_h)
        # output row i averages input rows 2i − ph and 2i − ph + 1: row −1 is the zero padding above an odd
        # height (the padding below it is never read: the stride skips it)
        i0, i1 = 2 * o0 - ph, 2 * o1 - ph
        band = rows_of(max(i0, 0), i1)
        if i0 < 0:
            band = torch.cat([band.new_zeros((*band.shape[:2], 1, band.shape[-1])), band], dim=2)
        out[..., o0:o1, :] = F.avg_pool2d(band, kernel_size=2, padding=[0, pw]).to(torch.float32)
    return out


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
