"""Video encode / decode: clip → ``.rdov`` GoP by GoP → frames, with honest per-frame measurements.

:func:`encode_video` reads the clip lazily (one GoP of frames at a time), pads each GoP to the model's
multiple of 64 (edge replication, as images are padded), asks ``allocate`` for the GoP's hard latents,
entropy codes them, appends the GoP chunk to the output and measures it. Every quality number comes from
*decoding the strings it wrote* with the decoder's own code path (:func:`decode_gop`): the PSNR of each
frame is that of the 8-bit frame ``rdopt decode`` writes; the bytes are those of the file. The rate the
entropy model estimates for the hard latents is reported beside it, labelled ``estimated``.

The bit-allocation hook::

    allocate(gop_codec: GopCodec, x: Tensor, height: int, width: int) -> Latents

``gop_codec`` is the GoP of ``T`` frames as a :class:`rdopt.core.types.LatentCodec` (latents ``y_0, z_0,
w_1, z_w_1, y_1, z_y_1, …``); ``x`` is the padded GoP, ``1×T×3×H×W`` in [0, 1] (``H``, ``W`` multiples of
64); ``height``, ``width`` the visible size (pixels outside it are padding and should not count in a
distortion). It returns the GoP's latents in ``gop_codec.latents`` order, *on the coder's grid* (what
``gop_codec.quantize`` returns; they are entropy coded as given). The default, :func:`amortized`, is
``gop_codec.quantize(gop_codec.amortize(x))``.

Interruption (Ctrl-C): the GoPs finished so far are kept — the output is a valid file holding them (its
header counts only the finished frames) and :class:`EncodeInterrupted` (a ``KeyboardInterrupt``) carries
their statistics. If no GoP was finished, nothing is written. Any other error leaves no output file.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from typing import Callable, Iterable, Iterator

import numpy as np
import torch
from torch import Tensor

from ..codecs.registry import ModelUnavailable, codec_for_model_id, load_any
from ..codecs.video.gop import GopCodec, VideoCodec
from ..coding.container import (DEFAULT_MAX_PIXELS, MIN_DECODE_BYTES_PER_PIXEL, BitstreamError, Frame, Stream,
                               check_pixels)
from ..coding.rdov import (GopChunk, VideoBitstreamReader, VideoFileWriter, VideoHeader)
from ..core.types import CodedLatents, Latents
from ..data.images import to_batch
from ..relax.rounding import hard

Allocate = Callable[[GopCodec, Tensor, int, int], Latents]
"""``allocate(gop_codec, x, height, width) -> Latents``: the hard latents of one GoP (module docstring)."""

PAD_MULTIPLE = 64
"""The smallest padding multiple of any video codec (a lower bound for sizes computed before a codec is loaded)."""


def amortized(gop_codec: GopCodec, x: Tensor, height: int, width: int) -> Latents:
    """The default allocation: one amortized (FAVI) pass over the GoP, quantized."""
    with torch.no_grad():
        return gop_codec.quantize(gop_codec.amortize(x))


# ---------------------------------------------------------------------------------------- statistics
@dataclass(frozen=True)
class FrameStats:
    """One frame. ``bytes``/``bits``/``bpp`` are real (the frame's streams in the file); the
    ``*_estimated`` fields come from the entropy model's likelihoods of the hard latents."""

    index: int
    gop: int
    type: str
    bytes: int
    bits: int
    bpp: float
    stream_bytes: dict[str, int]
    bits_estimated: float
    bpp_estimated: float
    bits_estimated_per_latent: dict[str, float]
    psnr: float  # on the decoded 8-bit frame vs the source frame (visible pixels)
    mse: float  # 8-bit scale


@dataclass(frozen=True)
class GopStats:
    index: int
    first_frame: int
    frames: int
    chunk_bytes: int  # real: the whole GoP chunk (streams, frame headers, length, CRC)
    payload_bytes: int  # real: the entropy-coded streams only
    bpp: float  # real, chunk bytes over the GoP's visible pixels
    bits_estimated: float
    bpp_estimated: float
    psnr: float  # of the GoP's mean MSE (8-bit)
    seconds: float


@dataclass(frozen=True)
class VideoEncodeStats:
    """What ``rdopt encode`` reports for a video (``--json`` prints :meth:`to_dict`)."""

    model: str
    quality: int
    lmbda: float  # the λ the codec was trained for (CompressAI's unit: bpp + λ·255²·MSE on [0, 1] RGB)
    method: str
    width: int
    height: int
    frames: int
    gop: int
    fps: str
    matrix: str
    full_range: bool
    file_bytes: int  # real
    header_bytes: int
    bpp: float  # real: 8·file size / (frames · visible pixels)
    bpp_payload: float  # real: the entropy-coded streams only
    bits_estimated: float
    bpp_estimated: float
    psnr: float  # mean of the frames' PSNR
    psnr_mean_mse: float  # PSNR of the clip's mean MSE
    encode_seconds: float
    interrupted: bool
    gops: tuple[GopStats, ...] = ()
    frame_stats: tuple[FrameStats, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["gops"] = [asdict(g) for g in self.gops]
        d["frame_stats"] = [asdict(f) for f in self.frame_stats]
        return d


class EncodeInterrupted(KeyboardInterrupt):
    """Ctrl-C during :func:`encode_video` after at least one GoP: the file of the finished GoPs was
    written; ``stats`` describes it."""

    def __init__(self, stats: VideoEncodeStats):
        super().__init__(f"interrupted after {stats.frames} frames")
        self.stats = stats


def _psnr_of(mse: float) -> float:
    return math.inf if mse == 0 else 10.0 * math.log10(255.0**2 / mse)


# ---------------------------------------------------------------------------------------- the model
def model_id(codec: VideoCodec) -> str:
    return codec.model_id


def weight_hash(codec: VideoCodec) -> bytes:
    """The 8 bytes of the codec's weight hash a ``.rdov`` header stores."""
    return codec.weight_hash()[:8]


def codec_for_header(header: VideoHeader, checkpoint=None, device=None, codec_spec: str | None = None) -> VideoCodec:
    """Load the codec a header names, through the registry (:func:`rdopt.codecs.registry.codec_for_model_id`):
    ``checkpoint`` for a ``-custom`` model id, ``codec_spec`` (``FILE.py:FACTORY``) for a codec not registered."""
    codec = codec_for_model_id(header.model_id, checkpoint=checkpoint, codec_spec=codec_spec, device=device)
    if not isinstance(codec, VideoCodec):
        raise BitstreamError(f"bitstream names {header.model_id}, which is an image codec, not a video codec")
    return codec


def load_video_codec(spec: str = "rdopt-video", quality: int | None = None, lmbda: float | None = None, checkpoint=None,
                     device=None) -> VideoCodec:
    """A video codec by registered name (``rdopt-video2``, ``ssf2020``, an installed plug-in) or by
    ``FILE.py:FACTORY`` (:func:`rdopt.codecs.registry.load_any`); an image codec is refused."""
    codec = load_any(spec, quality=quality, lmbda=lmbda, checkpoint=checkpoint, device=device)
    if not isinstance(codec, VideoCodec):
        raise ModelUnavailable(f"{spec} is an image codec ({type(codec).__name__}); videos need a video codec "
                               "(an I-frame and a P-frame codec joined in rdopt.codecs.video.gop.VideoCodec)")
    return codec


def check_codec(header: VideoHeader, codec: VideoCodec) -> None:
    if header.weight_hash != weight_hash(codec):
        raise BitstreamError(f"bitstream was written by {header.model_id} with other weights than the loaded "
                             f"{model_id(codec)}")


def min_decode_bytes(header: VideoHeader) -> int:
    """A lower bound of the memory one GoP of this header needs to decode (frames and latents)."""
    ph, pw = -(-header.height // PAD_MULTIPLE) * PAD_MULTIPLE, -(-header.width // PAD_MULTIPLE) * PAD_MULTIPLE
    return MIN_DECODE_BYTES_PER_PIXEL * ph * pw * min(header.gop, header.frames)


# ---------------------------------------------------------------------------------------- one GoP
def gop_frames(gop_codec: GopCodec, coded: CodedLatents) -> list[Frame]:
    """The frame chunks of a coded GoP: frame 0 ``I``, the others ``P``; one named stream per latent."""
    kinds = {s.name: s.kind for s in gop_codec.latents}
    return [Frame("I" if t == 0 else "P", tuple(Stream(n, kinds[n], coded.streams[n][0]) for n in gop_codec.names_of(t)))
            for t in range(gop_codec.frames)]


@torch.no_grad()
def decode_gop(gop_codec: GopCodec, frames: tuple[Frame, ...] | list[Frame], height: int, width: int,
               min_bits: dict[str, float] | None = None) -> tuple[list[np.ndarray], dict[str, float]]:
    """Decode one GoP's frame chunks: (8-bit RGB frames cropped to ``height``×``width``, estimated bits per
    latent of the decoded hard latents). The structure (frame types, stream names and kinds) and the
    decoded latent shapes are checked against the model; decoding errors are :class:`BitstreamError`.
    Streams too short for the latent shapes the size implies are refused before entropy decoding
    (``min_bits``: :meth:`VideoCodec.min_bits_per_symbol` of the codec; computed if not given). The encoder measures
    what it wrote with this same function."""
    if len(frames) != gop_codec.frames:
        raise BitstreamError(f"corrupt bitstream: a GoP of {gop_codec.frames} frames has {len(frames)}")
    kinds = {s.name: s.kind for s in gop_codec.latents}
    streams: dict[str, list[bytes]] = {}
    for t, fr in enumerate(frames):
        want_type = "I" if t == 0 else "P"
        if fr.type != want_type:
            raise BitstreamError(f"corrupt bitstream: frame {t} of a GoP is {fr.type}, expected {want_type}")
        names = gop_codec.names_of(t)
        got = tuple(s.name for s in fr.streams)
        if got != names:
            raise BitstreamError(f"corrupt bitstream: frame {t} of a GoP has streams {', '.join(got)}, "
                                 f"{gop_codec.model_id} codes {', '.join(names)}")
        for s in fr.streams:
            if s.kind != kinds[s.name]:
                raise BitstreamError(f"corrupt bitstream: stream {s.name!r} is of kind {s.kind}, expected {kinds[s.name]}")
            streams[s.name] = [s.data]
    pad = gop_codec.pad_multiple
    ph, pw = -(-height // pad) * pad, -(-width // pad) * pad
    shapes = gop_codec.latent_shapes(ph, pw)
    min_bits = min_bits if min_bits is not None else gop_codec.video.min_bits_per_symbol()
    for n in kinds:
        need = int((int(np.prod(shapes[n])) * min_bits[gop_codec.base_of(n)] - 32) // 8)
        if len(streams[n][0]) < need:
            raise BitstreamError(f"corrupt bitstream: stream {n!r} has {len(streams[n][0])} bytes, a {width}×{height} "
                                 f"frame needs at least {need} (the header's size does not match the data)")
    coded = CodedLatents(streams={n: streams[n] for n in kinds}, shapes=shapes)
    try:
        latents = gop_codec.decompress(coded)
    except (RuntimeError, ValueError, IndexError) as e:
        raise BitstreamError(f"corrupt bitstream: entropy decoding failed ({(str(e).splitlines() or [''])[0]})") from None
    if tuple(latents.names) != tuple(kinds):
        raise BitstreamError("corrupt bitstream: the decoded GoP does not have the model's latents")
    for n in latents.names:
        if tuple(latents[n].shape) != (1,) + tuple(shapes[n]):
            raise BitstreamError(f"corrupt bitstream: latent {n} decodes to {tuple(latents[n].shape[1:])}, a "
                                 f"{width}×{height} frame needs {tuple(shapes[n])}")
    ev = gop_codec.evaluate(latents, {n: hard() for n in latents.names})
    x_hat = ev.x_hat
    if not bool(torch.isfinite(x_hat).all()):
        raise BitstreamError("corrupt bitstream: decoded latents give a non-finite frame")
    out = (x_hat[0, :, :, :height, :width].clamp(0, 1).mul(255.0).round().to(torch.uint8)
           .permute(0, 2, 3, 1).cpu().numpy())
    return [np.ascontiguousarray(f) for f in out], {n: float(v[0]) for n, v in ev.rates.items()}


class _GopCodecs:
    """The GoP codecs of one video codec, by GoP length (the last GoP may be shorter)."""

    def __init__(self, codec: VideoCodec):
        self.codec = codec
        self._by: dict[int, GopCodec] = {}
        self._min_bits: dict[str, float] | None = None

    @property
    def min_bits(self) -> dict[str, float]:
        if self._min_bits is None:
            self._min_bits = self.codec.min_bits_per_symbol()
        return self._min_bits

    def __call__(self, frames: int) -> GopCodec:
        if frames not in self._by:
            self._by[frames] = self.codec.gop(frames)
        return self._by[frames]


# ---------------------------------------------------------------------------------------- encoding
def _source_frames(source, start: int, frames: int | None, size, matrix: str):
    """(frame iterator, fps, matrix, full_range, planned frame count or None, closer)."""
    from ..data.video import VideoReader, open_video

    if isinstance(source, (str, bytes)) or hasattr(source, "__fspath__"):
        reader = open_video(source, size=size, matrix=matrix)
    elif isinstance(source, VideoReader):
        reader = source  # the caller's: not closed here
    else:
        it = iter(source)
        for _ in range(start):
            if next(it, None) is None:
                raise ValueError(f"start {start} is past the end of the frames")
        gen = it if frames is None else (f for _, f in zip(range(frames), it))
        return gen, Fraction(25), "none", False, frames, lambda: None
    info = reader.info
    rgb_source = info.kind == "png" or (info.kind == "container" and info.source_format.startswith(("rgb", "bgr", "gbr")))
    total = frames if frames is not None else (None if info.num_frames is None else max(info.num_frames - start, 0))
    close = (lambda: None) if reader is source else reader.close
    try:
        gen = reader.frames(start, frames)
    except BaseException:
        close()
        raise
    return (gen, info.fps or Fraction(25), "none" if rgb_source else info.matrix,
            False if rgb_source else info.full_range, total, close)


def encode_video(codec: VideoCodec, source, out, gop: int = 10, frames: int | None = None, start: int = 0,
                 allocate: Allocate | None = None, progress: bool = False, *, size=None, matrix: str = "709",
                 method: str = "amortized", steps: int = 0, solver: str = "joint",
                 on_frame: Callable[[int, np.ndarray], None] | None = None) -> VideoEncodeStats:
    """Encode a clip to a ``.rdov`` file ``out`` (``-``: standard output) GoP by GoP.

    ``source``: a video path (any input of :func:`rdopt.data.video.open_video`; ``size``/``matrix`` for raw
    YUV), an open :class:`rdopt.data.video.VideoReader`, or an iterable of uint8 RGB frames (H×W×3).
    ``frames``/``start``: how many frames, from which (default: all, from 0). ``allocate``: the GoP
    bit-allocation hook (module docstring; default :func:`amortized`). ``method``/``steps``/``solver`` are
    recorded in the header (informational). ``on_frame(index, rgb)`` receives each decoded frame as the
    decoder will output it."""
    if not 1 <= gop <= 255:
        raise ValueError(f"the GoP size must be 1-255, got {gop}")
    allocate = allocate or amortized
    codecs = _GopCodecs(codec)
    first = codecs(1)
    param = next(codec.pframe.parameters())
    device, dtype = param.device, param.dtype
    it, fps, matrix_used, full_range, total, close = _source_frames(source, start, frames, size, matrix)
    writer = None
    frame_stats: list[FrameStats] = []
    gop_stats: list[GopStats] = []
    height = width = None
    t0 = time.perf_counter()
    bar = None
    try:
        from tqdm import tqdm

        bar = tqdm(total=total, unit="frame", disable=not progress, file=sys.stderr, desc="encode")
        pending: list[np.ndarray] = []

        def flush() -> None:
            nonlocal pending
            g0 = time.perf_counter()
            gop_codec = codecs(len(pending))
            x = to_batch(pending, codec.pad_multiple, device, dtype)[None]
            latents = allocate(gop_codec, x, height, width)
            if tuple(latents.names) != tuple(s.name for s in gop_codec.latents):
                raise ValueError(f"allocate returned latents {latents.names}, the GoP has "
                                 f"{tuple(s.name for s in gop_codec.latents)}")
            with torch.no_grad():
                coded = gop_codec.compress(latents.detach())
            chunk_frames = gop_frames(gop_codec, coded)
            decoded, rates = decode_gop(gop_codec, chunk_frames, height, width, codecs.min_bits)
            first_frame = writer.frames
            npix = height * width
            sq, fstats = [], []
            for t, (fr, rgb, src) in enumerate(zip(chunk_frames, decoded, pending)):
                mse = float(np.mean((rgb.astype(np.float64) - src.astype(np.float64)) ** 2))
                sq.append(mse)
                nbytes = sum(len(s.data) for s in fr.streams)
                per = {n: rates[n] for n in gop_codec.names_of(t)}
                bits_est = float(sum(per.values()))
                fstats.append(FrameStats(
                    index=first_frame + t, gop=len(gop_stats), type=fr.type, bytes=nbytes, bits=8 * nbytes,
                    bpp=8.0 * nbytes / npix, stream_bytes={s.name: len(s.data) for s in fr.streams},
                    bits_estimated=bits_est, bpp_estimated=bits_est / npix, bits_estimated_per_latent=per,
                    psnr=_psnr_of(mse), mse=mse))
            est = float(sum(rates.values()))
            chunk_bytes = writer.write_gop(chunk_frames)  # the GoP is in the output from here on
            frame_stats.extend(fstats)
            gop_stats.append(GopStats(
                index=len(gop_stats), first_frame=first_frame, frames=len(pending), chunk_bytes=chunk_bytes,
                payload_bytes=sum(len(s.data) for fr in chunk_frames for s in fr.streams),
                bpp=8.0 * chunk_bytes / (npix * len(pending)), bits_estimated=est,
                bpp_estimated=est / (npix * len(pending)), psnr=_psnr_of(float(np.mean(sq))),
                seconds=time.perf_counter() - g0))
            if on_frame is not None:
                for t, rgb in enumerate(decoded):
                    on_frame(first_frame + t, rgb)
            bar.update(len(pending))
            pending = []

        for rgb in it:
            rgb = np.asarray(rgb)
            if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
                raise ValueError(f"frames must be uint8 H×W×3 RGB, got {rgb.dtype} {rgb.shape}")
            if writer is None:
                height, width = int(rgb.shape[0]), int(rgb.shape[1])
                header = VideoHeader(model_id=first.model_id, weight_hash=first.weight_hash()[:8], height=height,
                                     width=width, frames=1, gop=gop, fps=fps, matrix=matrix_used, full_range=full_range,
                                     method=method, steps=steps, solver=solver)
                writer = VideoFileWriter(out, header)
            elif rgb.shape[:2] != (height, width):
                raise ValueError(f"frame {writer.frames + len(pending)} is {rgb.shape[1]}x{rgb.shape[0]}, "
                                 f"the first is {width}x{height}")
            pending.append(rgb)
            if len(pending) == gop:
                flush()
        if pending:
            flush()
        if writer is None:
            raise ValueError("no frames to encode")
        file_bytes = writer.close()
        return _clip_stats(codec, first, writer, file_bytes, gop, fps, matrix_used, full_range, method, height, width,
                           frame_stats, gop_stats, time.perf_counter() - t0, interrupted=False)
    except KeyboardInterrupt:
        if writer is not None and writer.frames > 0:
            file_bytes = writer.close()
            stats = _clip_stats(codec, first, writer, file_bytes, gop, fps, matrix_used, full_range, method, height,
                                width, frame_stats, gop_stats, time.perf_counter() - t0, interrupted=True)
            raise EncodeInterrupted(stats) from None
        if writer is not None:
            writer.abort()
        raise
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    finally:
        if bar is not None:
            bar.close()
        close()


def _clip_stats(codec, first, writer, file_bytes, gop, fps, matrix, full_range, method, height, width, frame_stats,
                gop_stats, seconds, interrupted) -> VideoEncodeStats:
    n = writer.frames
    frame_stats = frame_stats[:n]
    npix = height * width * n
    est = float(sum(f.bits_estimated for f in frame_stats))
    payload = sum(f.bytes for f in frame_stats)
    return VideoEncodeStats(
        model=first.model_id, quality=first.quality, lmbda=float(codec.lmbda), method=method, width=width,
        height=height, frames=n, gop=gop, fps=str(fps), matrix=matrix, full_range=full_range, file_bytes=file_bytes,
        header_bytes=file_bytes - writer.payload_bytes, bpp=8.0 * file_bytes / npix, bpp_payload=8.0 * payload / npix,
        bits_estimated=est, bpp_estimated=est / npix,
        psnr=float(np.mean([f.psnr for f in frame_stats])),
        psnr_mean_mse=_psnr_of(float(np.mean([f.mse for f in frame_stats]))),
        encode_seconds=seconds, interrupted=interrupted, gops=tuple(gop_stats), frame_stats=tuple(frame_stats))


# ---------------------------------------------------------------------------------------- decoding
class DecodedVideo:
    """A ``.rdov`` stream being decoded: ``header`` and ``codec`` are ready; :meth:`gops` yields each GoP's
    decoded 8-bit RGB frames (one GoP in memory at a time), iterating yields frames."""

    def __init__(self, reader: VideoBitstreamReader, codec: VideoCodec):
        self.reader, self.header, self.codec = reader, reader.header, codec
        self._codecs = _GopCodecs(codec)

    def gops(self) -> Iterator[list[np.ndarray]]:
        h = self.header
        try:
            for chunk in self.reader.gops():
                yield decode_gop(self._codecs(len(chunk.frames)), chunk.frames, h.height, h.width, self._codecs.min_bits)[0]
        finally:
            self.reader.close()

    def chunks(self) -> Iterator[tuple[GopChunk, list[np.ndarray]]]:
        h = self.header
        try:
            for chunk in self.reader.gops():
                yield chunk, decode_gop(self._codecs(len(chunk.frames)), chunk.frames, h.height, h.width,
                                        self._codecs.min_bits)[0]
        finally:
            self.reader.close()

    def __iter__(self) -> Iterator[np.ndarray]:
        for frames in self.gops():
            yield from frames

    def close(self) -> None:
        self.reader.close()


def decode_video(source, codec: VideoCodec | None = None, checkpoint=None, device=None,
                 codec_spec: str | None = None, *, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> DecodedVideo:
    """Open a ``.rdov`` stream (bytes, a path, a binary file object, or an open reader) for decoding: reads and checks the
    header, loads the model it names unless ``codec`` is given (``checkpoint``: a P-frame checkpoint for
    custom models), checks the weight hash. Decoding happens GoP by GoP while iterating."""
    reader = source if isinstance(source, VideoBitstreamReader) else VideoBitstreamReader(source)
    try:
        check_pixels(reader.header.width, reader.header.height, max_pixels, "frame")  # before any model or frame
        if codec is None:
            codec = codec_for_header(reader.header, checkpoint, device, codec_spec)
        check_codec(reader.header, codec)
    except BaseException:
        reader.close()
        raise
    return DecodedVideo(reader, codec)


def decode_video_frames(source, codec: VideoCodec | None = None, checkpoint=None, device=None, *,
                        max_pixels: int | None = DEFAULT_MAX_PIXELS) -> list[np.ndarray]:
    """All frames of a ``.rdov`` stream (convenience for small clips)."""
    return list(decode_video(source, codec, checkpoint, device, max_pixels=max_pixels))


__all__ = ["Allocate", "amortized", "FrameStats", "GopStats", "VideoEncodeStats", "EncodeInterrupted", "encode_video",
           "decode_video", "decode_video_frames", "DecodedVideo", "decode_gop", "gop_frames", "codec_for_header",
           "check_codec", "min_decode_bytes", "model_id", "weight_hash", "load_video_codec"]
