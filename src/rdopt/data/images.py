"""Reading and writing images, and fitting them to a model (padding / cropping).

How inputs are handled (documented in the README):

* RGB is coded as it is. Palette, CMYK, YCbCr and other modes are converted to RGB by Pillow.
* Grayscale (``L``, ``1``, 16-bit ``I;16``/``I``) is replicated to three channels for the RGB model;
  the bitstream records it and ``decode`` writes a grayscale image again (the mean of the three
  reconstructed channels). 16-bit samples are scaled to 8 bits (``round(v / 257)``) first: the models
  are 8-bit codecs and PSNR is measured on 8-bit output.
* Alpha (``RGBA``, ``LA``, palette transparency) is dropped: the colour channels are coded, the
  bitstream records that an alpha channel was discarded, and ``decode`` writes an opaque image.
* Any size from 1×1 to 16384×16384 is accepted: the image is padded on the right and bottom by edge
  replication to the model's multiple (64) and cropped back on decode. Pillow's decompression-bomb
  limit is raised to exactly that range (no warnings); what a size costs in memory is checked by the
  caller before the pixels are decoded (``check_size``).
* EXIF orientation is applied (as ``PIL.ImageOps.exif_transpose``); an embedded ICC profile is not
  applied or kept (the pixel values are coded as they are; a note says so); of an animated or
  multi-frame file only the first frame is coded (a note says so).
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

MAX_SIDE = 16384
OUTPUT_FORMATS = {".png": "PNG", ".bmp": "BMP", ".tif": "TIFF", ".tiff": "TIFF", ".ppm": "PPM", ".webp": "WEBP"}


class ImageError(ValueError):
    """An input image that cannot be read or used."""


@dataclass(frozen=True)
class LoadedImage:
    rgb: np.ndarray  # uint8, H×W×3
    grayscale: bool  # the source had one channel: decode writes grayscale
    alpha_dropped: bool  # the source had an alpha channel that is not coded
    source_mode: str
    notes: tuple[str, ...] = ()  # what the user should know about how the input was read

    @property
    def height(self) -> int:
        return int(self.rgb.shape[0])

    @property
    def width(self) -> int:
        return int(self.rgb.shape[1])


def _from_pil(im) -> LoadedImage:
    mode = im.mode
    alpha = mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in im.info)
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        a = np.asarray(im, dtype=np.int64)
        if mode == "I" and a.max(initial=0) <= 255 and a.min(initial=0) >= 0:
            g = a.astype(np.uint8)  # an 8-bit image stored in 32-bit mode
        else:
            g = np.clip(np.rint(a / 257.0), 0, 255).astype(np.uint8)
        return LoadedImage(np.repeat(g[..., None], 3, axis=2), True, False, mode)
    if mode == "F":
        raise ImageError("floating-point images are not supported (convert to 8- or 16-bit first)")
    if mode in ("L", "1", "LA", "La"):
        g = np.asarray(im.convert("L"))
        return LoadedImage(np.repeat(g[..., None], 3, axis=2), True, alpha, mode)
    if mode != "RGB":
        if mode == "P" and alpha:
            im = im.convert("RGBA")
        im = im.convert("RGB")
    return LoadedImage(np.ascontiguousarray(np.asarray(im, dtype=np.uint8)), False, alpha, mode)


def _open_source(path):
    """(what to give ``Image.open``, a display name); ``-`` reads standard input."""
    import sys

    if str(path) == "-":
        if sys.stdin.isatty():
            raise ImageError("standard input is a terminal: pipe an image into '-' or give a file name")
        data = sys.stdin.buffer.read()
        if not data:
            raise ImageError("empty file: standard input")
        return io.BytesIO(data), "standard input"
    p = Path(path)
    if not p.exists():
        raise ImageError(f"no such file: {p}")
    if p.is_dir():
        raise ImageError(f"is a directory, not an image: {p}")
    from .safeio import special_file, special_input_message

    kind = special_file(p)
    if kind is not None:  # a FIFO may block, a device may never end; its size of 0 is not "empty"
        raise ImageError(special_input_message(p, kind))
    if p.stat().st_size == 0:
        raise ImageError(f"empty file: {p}")
    return p, str(p)


def _notes_for(im) -> list[str]:
    notes = []
    if getattr(im, "n_frames", 1) > 1:
        notes.append(f"the input has {im.n_frames} frames; only the first is coded")
    icc = im.info.get("icc_profile")
    if icc:
        name = ""
        try:
            from PIL import ImageCms

            name = ImageCms.getProfileDescription(ImageCms.ImageCmsProfile(io.BytesIO(icc))).strip()
        except Exception:  # noqa: BLE001 - the description is informational only
            name = ""
        label = f" ({name})" if name else ""
        notes.append(f"the input's ICC colour profile{label} is not applied or kept: pixel values are coded as they "
                     "are and the decoded image is untagged (viewers assume sRGB)")
    return notes


def load_image(path, check_size=None) -> LoadedImage:
    """Read any image Pillow can decode (``-``: standard input); raise :class:`ImageError` with a
    one-line reason otherwise. ``check_size(width, height)`` runs after the header is read and before
    the pixels are decoded (to refuse what would not fit in memory)."""
    import warnings

    from PIL import Image, ImageOps, UnidentifiedImageError

    src, name = _open_source(path)
    limit = Image.MAX_IMAGE_PIXELS
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            # Sizes are checked here against MAX_SIDE; Pillow's own limit would refuse (or warn about)
            # part of the documented range.
            Image.MAX_IMAGE_PIXELS = None
            with Image.open(src) as im:
                if im.width < 1 or im.height < 1:
                    raise ImageError(f"image has no pixels: {name}")
                if im.width > MAX_SIDE or im.height > MAX_SIDE:
                    raise ImageError(f"image too large: {im.width}×{im.height} (at most {MAX_SIDE} per side)")
                if check_size is not None:
                    check_size(im.width, im.height)
                notes = _notes_for(im)
                im.load()
                try:
                    orientation = int(im.getexif().get(0x0112, 1))
                except Exception:  # noqa: BLE001 - unreadable EXIF: code the pixels as stored
                    orientation = 1
                if orientation in range(2, 9):
                    im = ImageOps.exif_transpose(im)
                    notes.append(f"EXIF orientation {orientation} applied: coded as {im.width}×{im.height}")
                loaded = _from_pil(im)
    except UnidentifiedImageError:
        raise ImageError(f"not an image (or a format Pillow cannot read): {name}") from None
    except ImageError:
        raise
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise ImageError(f"cannot decode image {name}: {str(e).splitlines()[0] if str(e) else 'truncated or corrupt'}") from None
    finally:
        Image.MAX_IMAGE_PIXELS = limit
    if notes:
        from dataclasses import replace

        loaded = replace(loaded, notes=tuple(notes))
    return loaded


def to_tensor(rgb: np.ndarray, device: str | torch.device | None = None, dtype=torch.float32) -> torch.Tensor:
    """uint8 H×W×3 → float tensor 1×3×H×W in [0, 1]."""
    t = torch.from_numpy(np.array(rgb, dtype=np.uint8, copy=True)).permute(2, 0, 1).unsqueeze(0)
    return t.to(device=device, dtype=dtype).div_(255.0)


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """float tensor 1×3×H×W (any range) → uint8 H×W×3, clamped and rounded as 8-bit output is."""
    return x[0].detach().clamp(0, 1).mul(255.0).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()


def padded_size(height: int, width: int, multiple: int) -> tuple[int, int]:
    return (-(-height // multiple) * multiple, -(-width // multiple) * multiple)


def pad(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Pad right/bottom by edge replication to a multiple of ``multiple``."""
    h, w = x.shape[-2:]
    ph, pw = padded_size(h, w, multiple)
    if (ph, pw) == (h, w):
        return x
    return F.pad(x, (0, pw - w, 0, ph - h), mode="replicate")


def to_batch(rgbs: list[np.ndarray], multiple: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """uint8 H×W×3 images of one size → one padded batch B×3×H'×W' in [0, 1]."""
    return torch.cat([pad(to_tensor(a, device, dtype), multiple) for a in rgbs])


def crop(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    return x[..., :height, :width]


def output_pixels(rgb: np.ndarray, grayscale: bool) -> np.ndarray:
    """What ``decode`` writes: RGB, or one channel (mean of the three, rounded) for grayscale sources."""
    if not grayscale:
        return rgb
    return np.clip(np.rint(rgb.astype(np.float32).mean(axis=2)), 0, 255).astype(np.uint8)


def check_output_path(path: str | os.PathLike, inputs=()) -> str:
    """The Pillow format for an output path (``-``: PNG on standard output); raise a one-line error if
    the extension is not supported or the path cannot be written (see :func:`rdopt.data.safeio.check_output`)."""
    from .safeio import check_output, is_stdio

    if is_stdio(path):
        return "PNG"
    check_output(path, inputs)
    ext = Path(path).suffix.lower()
    if ext not in OUTPUT_FORMATS:
        shown = f"unsupported output extension {ext!r}" if ext else f"output file name {Path(path).name!r} has no extension"
        raise ImageError(f"{shown}: the format is chosen by it; use one of {', '.join(sorted(OUTPUT_FORMATS))}")
    return OUTPUT_FORMATS[ext]


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write a file so that it either appears complete or not at all (mode from the umask; a symbolic
    link is written through). See :func:`rdopt.data.safeio.atomic_write`."""
    from .safeio import atomic_write

    atomic_write(path, data)


def save_image(path: str | os.PathLike, pixels: np.ndarray) -> None:
    """Save uint8 pixels (H×W or H×W×3) atomically (``-``: PNG on standard output); lossless formats
    only (the reconstruction is the result, re-compressing it would change it)."""
    from PIL import Image

    fmt = check_output_path(path)
    buf = io.BytesIO()
    params = {"lossless": True} if fmt == "WEBP" else {}
    Image.fromarray(pixels).save(buf, format=fmt, **params)
    atomic_write_bytes(path, buf.getvalue())
