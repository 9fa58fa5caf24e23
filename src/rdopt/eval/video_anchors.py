"""Classical video anchors: x264, x265 and SVT-AV1 through PyAV, measured the way rdopt measures its
neural video codec.

Protocol (what every anchor point is):

* **Input**: uint8 RGB frames (as :mod:`rdopt.data.video` reads them). They are converted to 8-bit
  4:2:0 Y'CbCr with rdopt's one colour conversion (:func:`rdopt.data.video.rgb_to_planes`: BT.709
  limited range by default, centre-sited 2×2-mean chroma) and given to the encoder as ``yuv420p``; odd
  sizes are padded by one edge-replicated row/column (cropped back after decoding).
* **Low delay, fixed GoP**: no B-frames and no frame reordering (x264/x265 ``bframes=0``, SVT-AV1
  ``pred-struct=1``, i.e. low delay), a closed GoP with an intra (IDR / key) frame every ``gop`` frames
  and nowhere else (``keyint = min-keyint = gop``, scene-cut detection off). Encoder look-ahead (x264
  mb-tree, SVT-AV1 TPL) stays on: it delays output but never reorders frames.
* **Rate control**: one constant-quality value per point — ``rc="crf"`` (default; x264/x265 CRF,
  SVT-AV1 CRF) or ``rc="qp"`` (constant QP; for SVT-AV1 its ``qp`` option); or ``rc="abr"`` with the value a
  bitrate in kbit/s (x264 / x265 one-pass average bitrate, ``--bitrate``, no VBV: the comparison for
  ``rdopt encode --target-kbps``).
* **Single thread** everywhere (x264 ``threads=1``, x265 ``pools=none:frame-threads=1``, SVT-AV1
  ``lp=1``; decoders ``thread_count=1``), so timings are comparable with rdopt's single-thread runs.
* **Bits** are real: the sum of the encoder's packet payload sizes (the elementary stream — H.264/HEVC
  Annex-B NAL units with their parameter sets, AV1 OBUs with the sequence header), without container
  overhead, and without bytes a decoder does not need: x264's encoder-information SEI (user data
  unregistered; x265 is told ``info=0`` not to write it) and AV1's 2-byte temporal-delimiter OBUs (which
  MP4/Matroska muxers drop). The excluded bytes are reported (``excluded_bytes``). bpp =
  8·bytes / (frames·W·H) over the unpadded pixels.
* **Quality**: the packets are decoded back (FFmpeg ``h264``/``hevc``, ``libdav1d``), converted to RGB
  with the same conversion, rounded to uint8, and compared with the input RGB frames: PSNR on RGB
  (:func:`rdopt.metrics.quality.psnr`, over the three channels) per frame; a clip's ``psnr`` is the mean
  of its frames' PSNRs (the DVC convention); ``psnr_mse`` (from the mean MSE) and ``psnr_y`` (luma
  against the encoder's input luma, the codec community's measure) are reported as well.
  The RGB PSNR includes the loss of 4:2:0 chroma subsampling — the neural codec codes full-resolution
  RGB, so this is what a viewer of either output sees.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass
from fractions import Fraction
from typing import Sequence

import numpy as np

from ..data.video import planes_to_rgb, rgb_to_planes
from ..metrics.quality import psnr as _psnr

# codec name → (PyAV encoder, PyAV decoder)
ENCODERS = {"x264": ("libx264", "h264"), "x265": ("libx265", "hevc"), "svtav1": ("libsvtav1", "libdav1d")}
DEFAULT_PRESETS = {"x264": "medium", "x265": "medium", "svtav1": "8"}
DEFAULT_VALUES = {
    "crf": {"x264": (20, 24, 28, 32, 36, 40), "x265": (20, 24, 28, 32, 36, 40), "svtav1": (27, 35, 43, 51, 59, 63)},
    "qp": {"x264": (24, 28, 32, 36, 40, 44), "x265": (24, 28, 32, 36, 40, 44), "svtav1": (27, 35, 43, 51, 59, 63)},
}
_COLORSPACE = {"709": 1, "601": 6}  # AVColorSpace: BT709, SMPTE170M (metadata only)


class AnchorError(RuntimeError):
    """An anchor that cannot run (encoder missing from this FFmpeg build, bad settings, encoder failure)."""


@dataclass(frozen=True)
class AnchorFrame:
    index: int  # display (= coding) order
    pict_type: str  # "I" or "P" as reported by the decoder ("B" would mean reordering)
    keyframe: bool  # the encoder's packet is a key frame (IDR / AV1 key frame)
    bytes: int  # payload bytes of this frame's packet(s), exclusions removed
    bpp: float
    psnr: float  # RGB, uint8, dB
    psnr_y: float  # luma against the encoder's input luma, dB


@dataclass(frozen=True)
class AnchorResult:
    codec: str  # "x264", "x265", "svtav1"
    encoder: str  # FFmpeg encoder name
    rc: str  # "crf", "qp" or "abr" (value: kbit/s)
    value: int
    preset: str
    gop: int
    width: int
    height: int
    num_frames: int
    bytes: int  # total payload bytes (see the module notes)
    excluded_bytes: int  # encoder-info SEI / AV1 temporal delimiters not counted
    bpp: float
    psnr: float  # mean of the frames' RGB PSNR
    psnr_mse: float  # RGB PSNR of the clip's mean MSE
    psnr_y: float  # mean luma PSNR
    reordered: bool  # packets left the encoder out of display order (never, for a low-delay anchor)
    encode_seconds: float
    decode_seconds: float
    frames: tuple[AnchorFrame, ...]

    def to_dict(self) -> dict:
        d = asdict(self)
        d["frames"] = [asdict(f) for f in self.frames]
        return d


def available_anchors() -> dict[str, bool]:
    """Which anchor encoders (and their decoders) this PyAV / FFmpeg build has."""
    import av

    return {c: (enc in av.codecs_available and dec in av.codecs_available) for c, (enc, dec) in ENCODERS.items()}


def check_anchor(codec: str) -> None:
    """Raise :class:`AnchorError` with a one-line reason if ``codec`` cannot run here."""
    import av

    if codec not in ENCODERS:
        raise AnchorError(f"unknown anchor {codec!r} (one of {', '.join(ENCODERS)})")
    missing = [n for n in ENCODERS[codec] if n not in av.codecs_available]
    if missing:
        raise AnchorError(
            f"{codec}: {' and '.join(missing)} not in this FFmpeg build (PyAV {av.__version__}, FFmpeg "
            f"{getattr(av, 'ffmpeg_version_info', '?')}); install a PyAV wheel built with it or skip {codec}"
        )


def _options(codec: str, rc: str, value: int, gop: int, preset: str) -> dict[str, str]:
    opts = {"preset": preset}
    if rc != "abr":  # an average bitrate is the context's bit_rate (encode_anchor), not an option
        opts[rc] = str(int(value))
    if codec == "x264":
        opts["x264-params"] = (f"keyint={gop}:min-keyint={gop}:scenecut=0:bframes=0:open-gop=0:threads=1:"
                               "lookahead-threads=1:sync-lookahead=0")
    elif codec == "x265":
        opts["x265-params"] = (f"keyint={gop}:min-keyint={gop}:scenecut=0:bframes=0:open-gop=0:frame-threads=1:"
                               "pools=none:info=0:log-level=error")
    else:  # SVT-AV1: pred-struct 1 = low delay; irefresh-type 2 = key frames (closed GoP); lp 1 = one thread
        opts["svtav1-params"] = f"pred-struct=1:keyint={gop}:irefresh-type=2:scd=0:lp=1"
    return opts


def _nal_units(data: bytes):
    """(start, end) of each Annex-B NAL unit including its start code."""
    starts = []
    i = data.find(b"\x00\x00\x01")
    while i >= 0:
        s = i - 1 if i > 0 and data[i - 1] == 0 else i
        starts.append((s, i + 3))
        i = data.find(b"\x00\x00\x01", i + 3)
    for k, (s, h) in enumerate(starts):
        yield s, h, (starts[k + 1][0] if k + 1 < len(starts) else len(data))


def _excluded(codec: str, data: bytes) -> int:
    """Bytes of a packet that a decoder does not need (see the module notes)."""
    if codec == "svtav1":
        return 2 if data[:2] == b"\x12\x00" else 0  # temporal delimiter OBU, no payload
    out = 0
    for s, h, e in _nal_units(data):
        if h >= len(data):
            continue
        if codec == "x264":
            is_sei, p = (data[h] & 0x1F) == 6, h + 1
        else:
            is_sei, p = ((data[h] >> 1) & 0x3F) == 39, h + 2
        if not is_sei:
            continue
        ptype = 0
        while p < e and data[p] == 0xFF:
            ptype += 255
            p += 1
        if p < e and ptype + data[p] == 5:  # user data unregistered (encoder settings text)
            out += e - s
    return out


def _yuv_frame(planes, pts: int, time_base: Fraction):
    import av

    y, u, v = planes
    h, w = y.shape
    arr = np.concatenate([y.ravel(), u.ravel(), v.ravel()]).reshape(h * 3 // 2, w)
    frame = av.VideoFrame.from_ndarray(arr, format="yuv420p")
    frame.pts = pts
    frame.time_base = time_base
    return frame


def _pict_type(value) -> str:
    from av.video.frame import PictureType

    try:
        return PictureType(int(value)).name
    except ValueError:
        return str(value)


def _frame_planes(frame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    out = []
    for p in frame.planes[:3]:
        a = np.frombuffer(p, dtype=np.uint8).reshape(-1, p.line_size)
        out.append(a[: p.height, : p.width])
    return out[0], out[1], out[2]


def encode_anchor(frames: Sequence[np.ndarray] | np.ndarray, codec: str, value: int, *, rc: str = "crf", gop: int = 10,
                  preset: str | int | None = None, matrix: str = "709", fps=25) -> AnchorResult:
    """Encode uint8 RGB frames (N×H×W×3) with one classical codec at one CRF/QP; decode and measure.

    ``fps`` is given to the encoder (x264/x265 CRF rate control depends on it: pass the clip's rate);
    ``preset`` defaults to :data:`DEFAULT_PRESETS`. Raises :class:`AnchorError` if the encoder is missing
    or fails."""
    import av

    check_anchor(codec)
    if rc not in ("crf", "qp", "abr"):
        raise AnchorError(f"rate control {rc!r}: use 'crf', 'qp' or 'abr' (value = kbit/s)")
    if rc == "abr" and codec == "svtav1":
        raise AnchorError("rate control 'abr' (a target bitrate) is offered for x264 and x265 here")
    if rc == "abr" and not float(value) > 0:
        raise AnchorError(f"a target bitrate must be a positive number of kbit/s, got {value}")
    if int(gop) < 1:
        raise AnchorError(f"GoP size must be ≥ 1 (got {gop})")
    frames = list(frames)
    if not frames:
        raise AnchorError("no frames to encode")
    h, w = frames[0].shape[:2]
    for i, f in enumerate(frames):
        if f.dtype != np.uint8 or f.shape != (h, w, 3):
            raise AnchorError(f"frame {i}: expected uint8 {h}×{w}×3 RGB, got {f.dtype} {f.shape}")
    preset = str(DEFAULT_PRESETS[codec] if preset is None else preset)
    enc_name, dec_name = ENCODERS[codec]
    h2, w2 = h + h % 2, w + w % 2
    fps = Fraction(fps).limit_denominator(1_000_000)
    tb = 1 / fps
    if codec == "svtav1":
        os.environ.setdefault("SVT_LOG", "1")  # SVT-AV1 prints its configuration on stderr otherwise

    ctx = av.CodecContext.create(enc_name, "w")
    ctx.width, ctx.height, ctx.pix_fmt = w2, h2, "yuv420p"
    ctx.time_base, ctx.framerate = tb, fps
    ctx.gop_size, ctx.max_b_frames, ctx.thread_count = int(gop), 0, 1
    ctx.color_range, ctx.colorspace = 1, _COLORSPACE.get(str(matrix), 2)
    ctx.options = _options(codec, rc, value, int(gop), preset)
    if rc == "abr":  # average bitrate (x264 --bitrate / x265 --bitrate): one pass, no VBV
        ctx.bit_rate = round(float(value) * 1000)

    inputs = []
    packets = []
    t0 = time.perf_counter()
    try:
        for i, rgb in enumerate(frames):
            if (h2, w2) != (h, w):
                rgb = np.pad(rgb, ((0, h2 - h), (0, w2 - w), (0, 0)), mode="edge")
            planes = rgb_to_planes(rgb, "420", matrix)
            inputs.append(planes[0][:h, :w])
            packets.extend(ctx.encode(_yuv_frame(planes, i, tb)))
        packets.extend(ctx.encode(None))
    except av.FFmpegError as e:
        raise AnchorError(f"{codec} ({enc_name}) failed at {rc} {value}: {(str(e).splitlines() or ['?'])[0]}") from None
    t_enc = time.perf_counter() - t0

    per_frame = [0] * len(frames)
    keyframes = [False] * len(frames)
    excluded = 0
    pts_order = []
    for pkt in packets:
        data = bytes(pkt)
        ex = _excluded(codec, data)
        excluded += ex
        k = int(pkt.pts)
        if not 0 <= k < len(frames):
            raise AnchorError(f"{codec}: packet with unexpected pts {k}")
        per_frame[k] += len(data) - ex
        keyframes[k] = keyframes[k] or bool(pkt.is_keyframe)
        pts_order.append(k)
    reordered = any(b <= a for a, b in zip(pts_order, pts_order[1:]))

    dec = av.CodecContext.create(dec_name, "r")
    dec.thread_count = 1
    t0 = time.perf_counter()
    decoded = []
    try:
        for pkt in packets:
            decoded.extend(dec.decode(pkt))
        decoded.extend(dec.decode(None))
    except av.FFmpegError as e:
        raise AnchorError(f"{codec}: decoding failed: {(str(e).splitlines() or ['?'])[0]}") from None
    if len(decoded) != len(frames):
        raise AnchorError(f"{codec}: {len(decoded)} frames decoded from {len(frames)} encoded")
    results = []
    mses = []
    for fr in decoded:
        k = int(fr.pts)
        y, u, v = _frame_planes(fr if fr.format.name == "yuv420p" else fr.reformat(format="yuv420p"))
        rgb = planes_to_rgb(y, u, v, matrix)[:h, :w]
        diff = rgb.astype(np.float64) - frames[k]
        mses.append(float(np.mean(diff**2)))
        b = per_frame[k]
        results.append(AnchorFrame(k, _pict_type(fr.pict_type), keyframes[k], b, 8.0 * b / (h * w), _psnr(rgb, frames[k]), _psnr(y[:h, :w], inputs[k])))
    t_dec = time.perf_counter() - t0
    results.sort(key=lambda f: f.index)
    if [f.index for f in results] != list(range(len(frames))):
        raise AnchorError(f"{codec}: decoded frames do not cover 0..{len(frames) - 1}")
    total = sum(per_frame)
    mse = float(np.mean(mses))
    return AnchorResult(
        codec=codec, encoder=enc_name, rc=rc, value=float(value) if rc == "abr" else int(value), preset=preset, gop=int(gop), width=w, height=h,
        num_frames=len(frames), bytes=total, excluded_bytes=excluded, bpp=8.0 * total / (len(frames) * h * w),
        psnr=float(np.mean([f.psnr for f in results])), psnr_mse=math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse),
        psnr_y=float(np.mean([f.psnr_y for f in results])), reordered=reordered,
        encode_seconds=t_enc, decode_seconds=t_dec, frames=tuple(results),
    )


def anchor_sweep(frames, codec: str, values: Sequence[int] | None = None, *, rc: str = "crf", **kw) -> list[AnchorResult]:
    """One :class:`AnchorResult` per CRF/QP value (default: :data:`DEFAULT_VALUES`), best quality first."""
    frames = list(frames)
    if values is None and rc not in DEFAULT_VALUES:
        raise AnchorError(f"rate control {rc!r} has no default values: give the bitrates (kbit/s)")
    vals = DEFAULT_VALUES[rc][codec] if values is None else values
    return [encode_anchor(frames, codec, v, rc=rc, **kw) for v in vals]


def rd_points(results: Sequence[AnchorResult]) -> tuple[list[float], list[float]]:
    """(bpp, psnr) of a sweep, for plots and BD-rate."""
    return [r.bpp for r in results], [r.psnr for r in results]


def bd_rate_vs(anchor: Sequence[AnchorResult], bpp: Sequence[float], psnr: Sequence[float], method: str = "pchip") -> float:
    """BD-rate (%) of a test R-D curve (bpp, mean RGB PSNR) against an anchor sweep (negative = fewer
    bits than the anchor at equal PSNR), with :func:`rdopt.metrics.bd.bd_rate`."""
    from ..metrics.bd import bd_rate

    ab, ap = rd_points(anchor)
    return bd_rate(ab, ap, list(bpp), list(psnr), method=method)
