"""Region-of-interest masks: a grayscale image, white = important, grey levels allowed,
turned into a per-pixel distortion weight ``w = 1 + (W − 1)·m`` (``m`` = mask value / 255, ``W`` the
ROI weight): 1 where the mask is black, ``W`` where it is white, linear in between.

Accepted files: anything Pillow reads whose pixels are grey — a grayscale image (``L``, ``1``, ``I;16``,
``I``: 16-bit and 32-bit integer masks are scaled by their maximum of 65535 / their data range), or an
RGB / palette image whose three channels are equal (how many editors save a grey image), with an alpha
channel only if it is fully opaque. The EXIF orientation is applied, as for the image.

Size: a mask of the image's size is used as is. A mask of another size with the same aspect ratio
(within 1 %, or 1 pixel) is resized to the image with Pillow's bilinear filter (box filter when
shrinking by more than 2×, which averages the pixels each output pixel covers), so a hard mask gets
grey edges, which are allowed. Another aspect ratio is refused: a mask drawn for another crop would
mark the wrong places.

This module imports no torch.
"""

from __future__ import annotations

import numpy as np

from .images import ImageError

MAX_WEIGHT = 1e4


class MaskError(ImageError):
    """A mask that cannot be used (reported in one line)."""


def load_mask(path, width: int, height: int) -> tuple[np.ndarray, list[str]]:
    """The mask at ``path`` for a ``width``×``height`` image: float32 ``height×width`` in [0, 1], and notes
    (resizing). Raises :class:`MaskError` with a one-line reason for a missing file, a non-image, a
    colour or transparent mask, another aspect ratio, or a mask with nothing marked."""
    from pathlib import Path

    from PIL import Image, ImageOps, UnidentifiedImageError

    name = str(path)
    p = Path(path)
    if not p.exists():
        raise MaskError(f"ROI mask: no such file: {name}")
    if p.is_dir():
        raise MaskError(f"ROI mask is a directory, not an image: {name}")
    try:
        with Image.open(p) as im:
            if im.width * im.height > 16384 * 16384:
                raise MaskError(f"ROI mask too large: {im.width}×{im.height}")
            im.load()
            im = ImageOps.exif_transpose(im)
            m = _grey(im, name)
    except UnidentifiedImageError:
        raise MaskError(f"ROI mask is not an image (or a format Pillow cannot read): {name}") from None
    except MaskError:
        raise
    except (OSError, SyntaxError, ValueError) as e:
        raise MaskError(f"cannot decode ROI mask {name}: {str(e).splitlines()[0] if str(e) else 'corrupt'}") from None
    notes = []
    mh, mw = m.shape
    if (mh, mw) != (height, width):
        ratio_m, ratio_i = mw / mh, width / height
        same = abs(ratio_m / ratio_i - 1) <= 0.01 or (abs(round(mw * height / mh) - width) <= 1
                                                     and abs(round(mh * width / mw) - height) <= 1)
        if not same:
            raise MaskError(f"ROI mask is {mw}×{mh} but the image is {width}×{height}: the aspect ratios differ "
                            "(draw the mask on the image itself, or scale it to the image)")
        shrink = mw / width > 2 or mh / height > 2
        resample = Image.Resampling.BOX if shrink else Image.Resampling.BILINEAR
        m = np.asarray(Image.fromarray(m.astype(np.float32), mode="F").resize((width, height), resample), np.float32)
        m = np.clip(m, 0.0, 1.0)
        notes.append(f"ROI mask resized from {mw}×{mh} to the image's {width}×{height} "
                     f"({'box' if shrink else 'bilinear'} filter)")
    if not m.any():
        raise MaskError(f"ROI mask marks nothing (all black): {name}; white marks the important region")
    return m.astype(np.float32), notes


def _grey(im, name: str) -> np.ndarray:
    """Pixels of a grey image in [0, 1] (float64), or a MaskError."""
    mode = im.mode
    if mode == "1":
        return np.asarray(im, dtype=np.float64)
    if mode == "L":
        return np.asarray(im, dtype=np.float64) / 255.0
    if mode.startswith("I;16"):
        return np.asarray(im, dtype=np.float64) / 65535.0
    if mode == "I":
        a = np.asarray(im, dtype=np.float64)
        top = 65535.0 if a.max() > 255 else 255.0
        return np.clip(a / top, 0.0, 1.0)
    if mode == "F":
        raise MaskError(f"ROI mask has floating-point pixels: {name}; save it as an 8-bit grayscale image")
    if mode in ("LA", "PA", "RGBA", "RGBa", "La") or (mode == "P" and "transparency" in im.info):
        rgba = np.asarray(im.convert("RGBA"))
        if (rgba[..., 3] != 255).any():
            raise MaskError(f"ROI mask has transparent pixels: {name}; use a grayscale image (white = important)")
        rgb = rgba[..., :3]
    else:
        rgb = np.asarray(im.convert("RGB"))
    if not ((rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all()):
        raise MaskError(f"ROI mask is a colour image: {name}; use a grayscale image (white = important, "
                        "grey levels allowed)")
    return rgb[..., 0].astype(np.float64) / 255.0


def roi_weight_map(mask: np.ndarray, weight: float) -> np.ndarray:
    """The per-pixel distortion weight ``1 + (W − 1)·m`` of a mask in [0, 1] (float32)."""
    if not (0 < weight <= MAX_WEIGHT) or not np.isfinite(weight):
        raise MaskError(f"the ROI weight must be a number in (0, {MAX_WEIGHT:g}], got {weight}")
    m = mask.astype(np.float32)
    return (np.float32(1.0) + np.float32(weight - 1.0) * m).astype(np.float32)


__all__ = ["MaskError", "load_mask", "roi_weight_map"]
