"""Video encode / decode: clip → ``.rdov`` GoP by GoP → frames, with honest per-frame measurements.

:func:`encode_video` reads the clip lazily (one GoP of frames at a time), pads each GoP to the model's
``pad_multiple`` (edge replication, as images are padded; 16 for ``rdopt-video2``, 64 or more for the others), asks ``allocate`` for the GoP's hard latents,
entropy codes them, appends the GoP chunk to the output and measures it. Every quality number comes from
*decoding the strings it wrote* with the decoder's own code path (:func:`decode_gop`): the PSNR of each
frame is that of the 8-bit frame ``rdopt decode`` writes; the bytes are those of the file. The rate the
entropy model estimates for the hard latents is reported beside it, labelled ``estimated``.

The bit-allocation hook::

    allocate(gop_codec: GopCodec, x: Tensor, height: int, width: int) -> Latents

``gop_codec`` is the GoP of ``T`` frames as a :class:`rdopt.core.types.LatentCodec` (latents ``y_0, z_0,
w_1, z_w_1, y_1, z_y_1, …``); ``x`` is the padded GoP, ``1×T×3×H×W`` in [0, 1] (``H``, ``W`` multiples of
the codec's ``pad_multiple``); ``height``, ``width`` the visible size (pixels outside it are padding and should not count in a
distortion). It returns the GoP's latents in ``gop_codec.latents`` order, *on the coder's grid* (what
``gop_codec.quantize`` returns; they are entropy coded as given). The default, :func:`amortized`, is
``gop_codec.quantize(gop_codec.amortize(x))``. A hook that chooses λ0 per GoP (a rate controller) names the λ0 of
the latents it returned in its attribute ``gop_lmbda``: skip decisions use it.

Skip mode (``skip=True``, the default; :mod:`rdopt.codecs.video.skip`): after the hook, the encoder decides frame
by frame, on the references the decoder will have, whether a P-frame or its 16×16 blocks take the
motion-compensated prediction; a P-frame that skips carries a ``skip_t`` stream (:mod:`rdopt.coding.skip`).
Every file without such streams decodes as before. The statistics say what was skipped (``FrameStats.skip``).

Grayscale clips (every frame R = G = B, :func:`rdopt.data.video.is_gray_frame`; known once every frame was
read): the header records it, decoding writes the gray levels (:func:`rdopt.data.video.gray_frame` of the
decoded RGB frame, :meth:`DecodedVideo.output_frames`), and each frame's PSNR/MSE is that of the gray frame
written against the source's gray levels, as for grayscale images.

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
from typing import Callable, Iterator

import numpy as np
import torch
from torch import Tensor

from ..codecs.registry import ModelUnavailable, codec_for_model_id, load_any, video_codec_for
from ..codecs.video.gop import GopCodec, VideoCodec
from ..codecs.video.skip import choose_skips, reconstruct
from ..coding.container import (DEFAULT_MAX_PIXELS, MIN_DECODE_BYTES_PER_PIXEL, BitstreamError, Frame, Stream,
                               check_pixels)
from ..coding.rdov import (FrameLayout, GopChunk, VideoBitstreamReader, VideoFileWriter, VideoHeader)
from ..coding.skip import KIND as SKIP_KIND
from ..coding.skip import FrameSkip, block_grid, pack_skip, stream_name, unpack_skip
from ..core.types import CodedLatents, Latents
from ..data.images import padded_size, to_batch
from ..data.safeio import check_memory
from ..data.video import gray_frame, is_gray_frame
from ..infer.allocation import make_allocator
from ..infer.options import SolverOptions
from ..relax.rounding import hard

Allocate = Callable[[GopCodec, Tensor, int, int], Latents]
"""``allocate(gop_codec, x, height, width) -> Latents``: the hard latents of one GoP (module docstring)."""

PAD_MULTIPLE = 16
"""The smallest padding multiple of any video codec (a lower bound for sizes computed before a codec is loaded: the
latents' stride, what a tightly padded file is coded at)."""


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
    psnr: float  # on the decoded 8-bit frame as written vs the source frame (visible pixels; grayscale: gray levels)
    mse: float  # 8-bit scale
    skip: str | None = None  # "frame": the prediction is the frame; "blocks": skip_blocks blocks take it; None
    skip_blocks: int = 0  # 16×16 blocks of the padded frame that take the prediction (all of them for "frame")


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
    grayscale: bool = False  # every frame was gray: decode writes grayscale video, the PSNRs are of gray levels
    skip_mode: bool = True  # skip decisions were made (encode_video's skip); what was skipped is in frame_stats
    skipped_frames: int = 0  # P-frames skipped whole
    skipped_blocks: int = 0  # blocks skipped in the P-frames that skip blocks
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


def load_video_codec(spec: str | None = None, quality: int | None = None, lmbda: float | None = None, checkpoint=None,
                     device=None) -> VideoCodec:
    """A video codec by registered name (``rdopt-video2``, ``ssf2020``, an installed plug-in) or by
    ``FILE.py:FACTORY`` (:func:`rdopt.codecs.registry.load_any`); an image codec is refused. Without ``spec``: the
    embedded family of ``checkpoint``, else ``rdopt-video2`` (:func:`rdopt.codecs.registry.video_codec_for`)."""
    spec = spec or video_codec_for(checkpoint)
    codec = load_any(spec, quality=quality, lmbda=lmbda, checkpoint=checkpoint, device=device)
    if not isinstance(codec, VideoCodec):
        raise ModelUnavailable(f"{spec} is an image codec ({type(codec).__name__}); videos need a video codec "
                               "(an I-frame and a P-frame codec joined in rdopt.codecs.video.gop.VideoCodec)")
    return codec


def check_codec(header: VideoHeader, codec: VideoCodec) -> None:
    if header.weight_hash != weight_hash(codec):
        raise BitstreamError(f"bitstream was written by {header.model_id} with other weights than the loaded "
                             f"{model_id(codec)} (weight hash {header.weight_hash.hex()}; decode it with --checkpoint "
                             "of the weights it was written with)")


def min_decode_bytes(header: VideoHeader) -> int:
    """A lower bound of the memory one GoP of this header needs to decode (frames and latents)."""
    ph, pw = padded_size(header.height, header.width, PAD_MULTIPLE)
    return MIN_DECODE_BYTES_PER_PIXEL * ph * pw * min(header.gop, header.frames)


# ---------------------------------------------------------------------------------------- one GoP
def gop_frames(gop_codec: GopCodec, coded: CodedLatents, skips=None) -> list[Frame]:
    """The frame chunks of a coded GoP: frame 0 ``I``, the others ``P``; one named stream per latent. ``skips``
    (one :class:`rdopt.coding.skip.FrameSkip` or ``None`` per frame): a skipping P-frame gets its ``skip_t``
    stream last, and one skipped whole has no residual streams."""
    kinds = {s.name: s.kind for s in gop_codec.latents}
    out = []
    for t in range(gop_codec.frames):
        skip = skips[t] if skips is not None else None
        names = gop_codec.names_of(t)
        if skip is not None and skip.mode == "frame":
            names = tuple(n for n in names if kinds[n] not in ("residual", "residual-hyper"))
        streams = [Stream(n, kinds[n], coded.streams[n][0]) for n in names]
        if skip is not None:
            if t == 0:
                raise ValueError("the I-frame of a GoP cannot be skipped")
            streams.append(Stream(stream_name(t), SKIP_KIND, pack_skip(skip)))
        out.append(Frame("I" if t == 0 else "P", tuple(streams)))
    return out


def frame_layout(codec: VideoCodec) -> FrameLayout | None:
    """The stream layout of this codec's frame chunks (:func:`gop_frames`), which the ``.rdov`` header states once
    so that each frame chunk holds only its stream mask and lengths: each frame's latents as the GoP codec names
    them (an I-frame ``y_0, z_0``; a P-frame ``t`` the P-frame codec's four latents), a P-frame's then ``skip_t``.
    ``None`` (named chunks) for names the compact form cannot hold."""
    gop = codec.gop(2)

    def entries(t: int) -> tuple[tuple[str, str], ...]:  # (kind, name without the suffix _t)
        return tuple((s.kind, s.name[: -len(f"_{t}")]) for s in gop.latents if s.frame == t)

    try:
        return FrameLayout((("I", entries(0)), ("P", entries(1) + ((SKIP_KIND, stream_name(1)[: -len("_1")]),))))
    except ValueError:
        return None


def read_skips(gop_codec: GopCodec, frames, height: int, width: int, pad: int | None = None) -> list[FrameSkip | None]:
    """Each frame's skip from its ``skip_t`` stream (``None``: no skip stream), checked: only P-frames skip, the
    stream is the frame's last, named ``skip_t``, of kind ``skip``, and its payload fits the padded frame of the
    visible ``height × width`` padded to ``pad`` (default the codec's ``pad_multiple``;
    :func:`rdopt.coding.skip.unpack_skip`). :class:`BitstreamError` otherwise."""
    rows, cols = block_grid(*padded_size(height, width, pad or gop_codec.pad_multiple))
    out: list[FrameSkip | None] = []
    for t, fr in enumerate(frames):
        marked = [s for s in fr.streams if s.kind == SKIP_KIND or s.name == stream_name(t)]
        if not marked:
            out.append(None)
            continue
        if t == 0 or fr.type != "P":
            raise BitstreamError(f"corrupt bitstream: frame {t} of a GoP is an {fr.type}-frame with a skip stream "
                                 f"({marked[0].name!r}); only P-frames skip")
        last = fr.streams[-1]
        if len(marked) != 1 or last.name != stream_name(t) or last.kind != SKIP_KIND:
            raise BitstreamError(f"corrupt bitstream: frame {t} of a GoP has skip streams "
                                 f"{', '.join(f'{s.name} ({s.kind})' for s in marked)}; a P-frame may end with one, "
                                 f"{stream_name(t)!r} of kind {SKIP_KIND}")
        out.append(unpack_skip(last.data, rows, cols, where=f"frame {t} of a GoP: "))
    return out


@torch.no_grad()
def decode_gop(gop_codec: GopCodec, frames: tuple[Frame, ...] | list[Frame], height: int, width: int,
               min_bits: dict[str, float] | None = None, pad: int | None = None) -> tuple[list[np.ndarray], dict[str, float]]:
    """Decode one GoP's frame chunks: (8-bit RGB frames cropped to ``height``×``width``, estimated bits per
    latent of the decoded hard latents and the bits of each skip stream's payload). The structure (frame types,
    stream names and kinds, skip streams: :func:`read_skips`) and the decoded latent shapes are checked against
    the model; decoding errors are :class:`BitstreamError`. Skipped frames and blocks are applied frame by frame
    (:func:`rdopt.codecs.video.skip.reconstruct`): each is the next frame's reference.
    Streams too short for the latent shapes the size implies are refused before entropy decoding
    (``min_bits``: :meth:`VideoCodec.min_bits_per_symbol` of the codec; computed if not given). ``pad``: the multiple
    the frames were padded to (default the codec's ``pad_multiple``; a ``.rdov`` file's header says which,
    :meth:`VideoCodec.padding_of`). The encoder measures what it wrote with this same function."""
    if len(frames) != gop_codec.frames:
        raise BitstreamError(f"corrupt bitstream: a GoP of {gop_codec.frames} frames has {len(frames)}")
    kinds = {s.name: s.kind for s in gop_codec.latents}
    streams: dict[str, list[bytes]] = {}
    for t, fr in enumerate(frames):
        want_type = "I" if t == 0 else "P"
        if fr.type != want_type:
            raise BitstreamError(f"corrupt bitstream: frame {t} of a GoP is {fr.type}, expected {want_type}")
    pad = pad or gop_codec.pad_multiple
    shapes = gop_codec.latent_shapes(*padded_size(height, width, pad))
    min_bits = min_bits if min_bits is not None else gop_codec.video.min_bits_per_symbol()
    for s in (s for fr in frames for s in fr.streams if s.name in kinds):  # a size the data cannot hold, first
        need = int((int(np.prod(shapes[s.name])) * min_bits[gop_codec.base_of(s.name)] - 32) // 8)
        if len(s.data) < need:
            raise BitstreamError(f"corrupt bitstream: stream {s.name!r} has {len(s.data)} bytes, a {width}×{height} "
                                 f"frame needs at least {need} (the header's size does not match the data)")
    skips = read_skips(gop_codec, frames, height, width, pad)
    skip_bits: dict[str, float] = {}
    for t, (fr, skip) in enumerate(zip(frames, skips)):
        names = gop_codec.names_of(t)
        latent_streams = fr.streams
        if skip is not None:
            latent_streams = fr.streams[:-1]
            skip_bits[fr.streams[-1].name] = 8.0 * len(fr.streams[-1].data)
            if skip.mode == "frame":
                names = tuple(n for n in names if kinds[n] not in ("residual", "residual-hyper"))
        got = tuple(s.name for s in latent_streams)
        if got != names:
            what = {None: "", "frame": " (skipped whole: no residual streams)", "blocks": " (and its skip stream)"}
            raise BitstreamError(f"corrupt bitstream: frame {t} of a GoP has streams {', '.join(got) or 'none'}, "
                                 f"{gop_codec.model_id} codes {', '.join(names)}{what[skip and skip.mode]}")
        for s in latent_streams:
            if s.kind != kinds[s.name]:
                raise BitstreamError(f"corrupt bitstream: stream {s.name!r} is of kind {s.kind}, expected {kinds[s.name]}")
            streams[s.name] = [s.data]
    present = tuple(n for n in kinds if n in streams)
    coded = CodedLatents(streams={n: streams[n] for n in present}, shapes=shapes)
    try:
        latents = gop_codec.decompress(coded)
    except (RuntimeError, ValueError, IndexError) as e:
        raise BitstreamError(f"corrupt bitstream: entropy decoding failed ({(str(e).splitlines() or [''])[0]})") from None
    if tuple(latents.names) != present:
        raise BitstreamError("corrupt bitstream: the decoded GoP does not have the model's latents")
    for n in latents.names:
        if tuple(latents[n].shape) != (1,) + tuple(shapes[n]):
            raise BitstreamError(f"corrupt bitstream: latent {n} decodes to {tuple(latents[n].shape[1:])}, a "
                                 f"{width}×{height} frame needs {tuple(shapes[n])}")
    if any(s is not None for s in skips):
        x_hat, rates = reconstruct(gop_codec, latents, skips)
    else:  # no skip stream: the GoP decodes exactly as it did before skip mode existed
        ev = gop_codec.evaluate(latents, {n: hard() for n in latents.names})
        x_hat, rates = ev.x_hat, ev.rates
    if not bool(torch.isfinite(x_hat).all()):
        raise BitstreamError("corrupt bitstream: decoded latents give a non-finite frame")
    out = (x_hat[0, :, :, :height, :width].clamp(0, 1).mul(255.0).round().to(torch.uint8)
           .permute(0, 2, 3, 1).cpu().numpy())
    return [np.ascontiguousarray(f) for f in out], {**{n: float(v[0]) for n, v in rates.items()}, **skip_bits}


def code_gop(gop_codec: GopCodec, x: Tensor, latents: Latents, height: int, width: int, *, lmbda: float,
             skip: bool = True) -> tuple[list[Frame], tuple[FrameSkip | None, ...]]:
    """One GoP's frame chunks as the encoder writes them, and each frame's skip: the skip decisions on the hard
    latents (``skip``; at λ ``lmbda``, CompressAI's unit; :func:`rdopt.codecs.video.skip.choose_skips`), then
    entropy coding. ``x``: the padded GoP ``1×T×3×H×W`` the latents were chosen for."""
    skips: tuple[FrameSkip | None, ...] = (None,) * gop_codec.frames
    latents = latents.detach()
    if skip and gop_codec.frames > 1:
        choice = choose_skips(gop_codec, x, latents, height, width, lmbda)
        latents, skips = choice.latents, choice.skips
    with torch.no_grad():
        coded = gop_codec.compress(latents)
    return gop_frames(gop_codec, coded, skips), skips


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


# Memory per padded pixel and frame of a GoP while encoding (amortized; the frames, the latents and the
# encoder's activations of one frame at a time, with a safety factor of two).
ENCODE_BYTES_PER_PIXEL_FRAME = 1000


def check_encode_memory(width: int, height: int, frames: int) -> None:
    """Before reading frames: a GoP of ``frames`` frames of ``width×height`` fits the memory budget
    (:func:`rdopt.data.safeio.check_memory`; padded to 128, the largest multiple of a codec)."""
    ph, pw = padded_size(height, width, 128)
    check_memory(ENCODE_BYTES_PER_PIXEL_FRAME * ph * pw * frames,
                 f"encoding a GoP of {frames} frames of {width}×{height}")


def header_record(options: SolverOptions | None) -> tuple[str, int, str]:
    """What a ``.rdov`` header records of a GoP allocation: (method, steps per P-frame latent, DAG solver).
    ``None``: the amortized encode."""
    o = (options or SolverOptions(method="amortized")).gop()
    if o.solver == "amortized":
        return "amortized", 0, "joint"
    solver = {"sequential": "sequential", "windowed": "windowed", "lambda-domain": "windowed", "exact": "exact"}
    steps = {"exact": o.exact_steps, "oeu": o.oeu_steps, "oeu-sequential": o.oeu_steps}.get(o.solver, o.steps_p)
    return o.solver, steps, solver.get(o.solver, "joint")


def encode_video(codec: VideoCodec, source, out, gop: int = 10, frames: int | None = None, start: int = 0,
                 allocate: Allocate | None = None, progress: bool = False, *, size=None, matrix: str = "709",
                 options: SolverOptions | None = None, lmbda: float | None = None,
                 on_frame: Callable[[int, np.ndarray], None] | None = None, skip: bool = True) -> VideoEncodeStats:
    """Encode a clip to a ``.rdov`` file ``out`` (``-``: standard output) GoP by GoP.

    ``source``: a video path (any input of :func:`rdopt.data.video.open_video`; ``size``/``matrix`` for raw
    YUV), an open :class:`rdopt.data.video.VideoReader`, or an iterable of uint8 RGB frames (H×W×3).
    ``frames``/``start``: how many frames, from which (default: all, from 0). ``options``: the GoP bit
    allocation (:class:`rdopt.infer.options.SolverOptions`, its ``solver`` the allocation method; default
    amortized) at λ0 = ``lmbda`` (CompressAI's unit; default the codec's). ``allocate``: a GoP
    bit-allocation hook instead of the one ``options`` makes (module docstring; e.g. a rate controller);
    the header records ``options``' method and budget (informational). ``on_frame(index, rgb)`` receives
    each decoded RGB frame as :class:`DecodedVideo` yields it (of a grayscale clip, decoding writes its
    :func:`rdopt.data.video.gray_frame`). ``skip``: skip mode (module docstring; ``False``: every P-frame is
    coded whole, as before skip mode existed); an ``allocate`` hook with a ``skip`` attribute (a rate
    controller measuring its runs) must agree with it.

    The clip is grayscale when every frame encoded is gray (:func:`rdopt.data.video.is_gray_frame`): the
    header's flag is then set and the statistics are of gray levels (module docstring)."""
    if not 1 <= gop <= 255:
        raise ValueError(f"the GoP size must be 1-255, got {gop}")
    method, steps, solver = header_record(options)
    if allocate is not None and getattr(allocate, "skip", skip) != skip:
        raise ValueError(f"the allocate hook measures GoPs with skip={allocate.skip}, the encode has skip={skip}")
    if allocate is None:
        allocate = make_allocator(options, lmbda) if options is not None and options.gop().solver != "amortized" \
            else amortized
    codecs = _GopCodecs(codec)
    first = codecs(1)
    param = next(codec.pframe.parameters())
    device, dtype = param.device, param.dtype
    it, fps, matrix_used, full_range, total, close = _source_frames(source, start, frames, size, matrix)
    writer = None
    frame_stats: list[FrameStats] = []
    gop_stats: list[GopStats] = []
    gray_mse: list[float | None] = []  # per frame written: the gray-level MSE of a gray source frame, else None
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
            lm = getattr(allocate, "gop_lmbda", None) or (lmbda if lmbda is not None else codec.lmbda)
            chunk_frames, skips = code_gop(gop_codec, x, latents, height, width, lmbda=float(lm), skip=skip)
            decoded, rates = decode_gop(gop_codec, chunk_frames, height, width, codecs.min_bits)
            grid = block_grid(x.shape[-2], x.shape[-1])
            first_frame = writer.frames
            npix = height * width
            sq, fstats, gsq = [], [], []
            for t, (fr, rgb, src, fskip) in enumerate(zip(chunk_frames, decoded, pending, skips)):
                mse = float(np.mean((rgb.astype(np.float64) - src.astype(np.float64)) ** 2))
                sq.append(mse)
                gsq.append(_gray_mse(rgb, src) if is_gray_frame(src) else None)
                nbytes = sum(len(s.data) for s in fr.streams)
                per = {s.name: rates[s.name] for s in fr.streams}
                bits_est = float(sum(per.values()))
                fstats.append(FrameStats(
                    index=first_frame + t, gop=len(gop_stats), type=fr.type, bytes=nbytes, bits=8 * nbytes,
                    bpp=8.0 * nbytes / npix, stream_bytes={s.name: len(s.data) for s in fr.streams},
                    bits_estimated=bits_est, bpp_estimated=bits_est / npix, bits_estimated_per_latent=per,
                    psnr=_psnr_of(mse), mse=mse, skip=fskip.mode if fskip is not None else None,
                    skip_blocks=fskip.count(*grid) if fskip is not None else 0))
            est = float(sum(rates.values()))
            chunk_bytes = writer.write_gop(chunk_frames)  # the GoP is in the output from here on
            frame_stats.extend(fstats)
            gray_mse.extend(gsq)
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
                                     method=method, steps=steps, solver=solver,
                                     tight_padding=codec.tight_padding(height, width), layout=frame_layout(codec))
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
        grayscale = _all_gray(gray_mse, writer.frames)
        file_bytes = writer.close(grayscale=grayscale)
        return _clip_stats(codec, first, writer, file_bytes, gop, fps, matrix_used, full_range, method, height, width,
                           frame_stats, gop_stats, time.perf_counter() - t0, interrupted=False,
                           gray_mse=gray_mse if grayscale else None, skip=skip)
    except KeyboardInterrupt:
        if writer is not None and writer.frames > 0:
            grayscale = _all_gray(gray_mse, writer.frames)
            file_bytes = writer.close(grayscale=grayscale)
            stats = _clip_stats(codec, first, writer, file_bytes, gop, fps, matrix_used, full_range, method, height,
                                width, frame_stats, gop_stats, time.perf_counter() - t0, interrupted=True,
                                gray_mse=gray_mse if grayscale else None, skip=skip)
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


def _gray_mse(decoded: np.ndarray, source: np.ndarray) -> float:
    """MSE (8-bit scale) of the gray frame decoding writes against a gray source frame's gray levels."""
    return float(np.mean((gray_frame(decoded).astype(np.float64) - source[..., 0].astype(np.float64)) ** 2))


def _all_gray(gray_mse: list[float | None], frames: int) -> bool:
    """Whether the ``frames`` frames written were all gray (the clip is grayscale)."""
    return 0 < frames <= len(gray_mse) and all(m is not None for m in gray_mse[:frames])


def _clip_stats(codec, first, writer, file_bytes, gop, fps, matrix, full_range, method, height, width, frame_stats,
                gop_stats, seconds, interrupted, gray_mse=None, skip=True) -> VideoEncodeStats:
    """The clip's statistics; ``gray_mse`` (a grayscale clip): the frames' gray-level MSEs, which replace
    the RGB ones in every PSNR (those of the frames decoding writes)."""
    from dataclasses import replace

    n = writer.frames
    frame_stats = frame_stats[:n]
    if gray_mse is not None:
        frame_stats = [replace(f, mse=m, psnr=_psnr_of(m)) for f, m in zip(frame_stats, gray_mse[:n])]
        gop_stats = [replace(g, psnr=_psnr_of(float(np.mean(gray_mse[g.first_frame:g.first_frame + g.frames]))))
                     for g in gop_stats]
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
        encode_seconds=seconds, interrupted=interrupted, grayscale=gray_mse is not None, skip_mode=bool(skip),
        skipped_frames=sum(f.skip == "frame" for f in frame_stats),
        skipped_blocks=sum(f.skip_blocks for f in frame_stats if f.skip == "blocks"), gops=tuple(gop_stats),
        frame_stats=tuple(frame_stats))


# ---------------------------------------------------------------------------------------- decoding
class DecodedVideo:
    """A ``.rdov`` stream being decoded: ``header`` and ``codec`` are ready; :meth:`gops` yields each GoP's
    decoded 8-bit RGB frames (one GoP in memory at a time), iterating yields frames; :meth:`output_frames`
    yields the frames as decoding writes them (of a grayscale clip, H×W gray levels)."""

    def __init__(self, reader: VideoBitstreamReader, codec: VideoCodec):
        self.reader, self.header, self.codec = reader, reader.header, codec
        self._codecs = _GopCodecs(codec)
        h = self.header
        if h.tight_padding and not codec.tight_padding(h.height, h.width):  # one file per content: the bit is canonical
            raise BitstreamError(f"corrupt bitstream: the tight-padding flag is set, but {codec.model_id} codes "
                                 f"{h.width}×{h.height} frames at one padding either way")
        self.pad = codec.padding_of(h.tight_padding)  # the multiple the frames were padded to
        if h.layout is not None and h.layout != frame_layout(codec):  # one file per content: the layout is the codec's
            raise BitstreamError(f"corrupt bitstream: the header's stream layout is not that of {codec.model_id}")

    @property
    def grayscale(self) -> bool:
        """The clip was grayscale (the header's flag): decoding writes gray levels."""
        return self.header.grayscale

    def output_frames(self) -> Iterator[np.ndarray]:
        """The frames to write: the decoded RGB frames, or of a grayscale clip their gray levels (H×W uint8,
        :func:`rdopt.data.video.gray_frame`; what the encoder's PSNR was measured on)."""
        for rgb in self:
            yield gray_frame(rgb) if self.grayscale else rgb

    def gops(self) -> Iterator[list[np.ndarray]]:
        h = self.header
        try:
            for chunk in self.reader.gops():
                yield decode_gop(self._codecs(len(chunk.frames)), chunk.frames, h.height, h.width, self._codecs.min_bits,
                                 self.pad)[0]
        finally:
            self.reader.close()

    def chunks(self) -> Iterator[tuple[GopChunk, list[np.ndarray]]]:
        h = self.header
        try:
            for chunk in self.reader.gops():
                yield chunk, decode_gop(self._codecs(len(chunk.frames)), chunk.frames, h.height, h.width,
                                        self._codecs.min_bits, self.pad)[0]
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


__all__ = ["Allocate", "amortized", "FrameStats", "GopStats", "VideoEncodeStats", "EncodeInterrupted", "encode_video", "header_record", "check_encode_memory",
           "decode_video", "decode_video_frames", "DecodedVideo", "decode_gop", "gop_frames", "read_skips", "code_gop",
           "codec_for_header",
           "check_codec", "min_decode_bytes", "model_id", "weight_hash", "load_video_codec"]
