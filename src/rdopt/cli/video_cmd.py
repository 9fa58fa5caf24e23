"""The video forms of ``rdopt encode / decode / info`` (``.rdov`` bitstreams, GoP by GoP).

``rdopt encode CLIP -o OUT.rdov`` is chosen by a video input (by suffix, or a folder of PNG frames),
``--video``, or the output suffix ``.rdov``; ``rdopt decode`` and ``rdopt info`` recognise a video
bitstream by its magic (``RDOV``).
"""

from __future__ import annotations

import itertools
import json
import os
import sys
from pathlib import Path

from .common import VIDEO_METHODS, pixel_limit
from ..codecs.registry import DEFAULT_VIDEO_CODEC, video_codec_for
from .main import EXIT_INTERRUPTED, UserError, device_of

VIDEO_SUFFIXES = {".mp4", ".mkv", ".webm", ".mov", ".avi", ".m4v", ".y4m", ".yuv"}
DEFAULT_GOP = 10
VIDEO_OPTIONS = ("codec", "gop", "frames", "start", "size", "matrix", "latents", "steps_i", "steps_p", "window",
                 "exact_steps", "exact_lr", "oeu_steps", "oeu_lr", "target_kbps", "fps", "no_skip")


def add_encode_args(p) -> None:
    from .main import positive_int

    v = p.add_argument_group("video (a video input, --video, or an output named *.rdov: a GoP bitstream)")
    v.add_argument("--video", action="store_true",
                   help="treat the input as a video (default: by its suffix "
                        f"{' '.join(sorted(VIDEO_SUFFIXES))}, a folder of PNG frames, or an output named *.rdov)")
    v.add_argument("--codec", default=None, metavar="NAME|FILE.py:FACTORY",
                   help=f"video codec: a registered name (rdopt-video, rdopt-video2, ssf2020, an installed plug-in) or "
                        f"a local file's factory returning a VideoCodec (default: the family of --checkpoint, else "
                        f"{DEFAULT_VIDEO_CODEC}); --quality / "
                        "--checkpoint select its weights")
    v.add_argument("--gop", type=positive_int, default=None,
                   help=f"frames per GoP: an I-frame then P-frames (1-255, default {DEFAULT_GOP})")
    v.add_argument("--frames", type=positive_int, default=None, help="frames to encode (default: all)")
    v.add_argument("--start", type=int, default=None, help="first frame to encode (default 0)")
    v.add_argument("--size", default=None, help="frame size WxH of a raw .yuv input (default: from the file name)")
    v.add_argument("--matrix", choices=("709", "601"), default=None,
                   help="Y'CbCr matrix of YUV inputs (Y4M, raw .yuv, YUV video streams) (default 709)")
    v.add_argument("--no-skip", action="store_true", default=None,
                   help="code every P-frame whole: no skip mode (by default the encoder lets a P-frame or its 16×16 "
                        "blocks take the motion-compensated prediction where that costs less: rate + λ·distortion)")
    a = p.add_argument_group("GoP bit allocation (video --method bao | sequential | windowed | exact | oeu | "
                             "oeu-sequential | lambda-domain; --lr, --seed, --tau0, --hold, --tau-end apply too)")
    a.add_argument("--latents", choices=("y", "w", "yw"), default=None,
                   help="P-frame latents to optimize: residual y, motion w, or both (default yw)")
    a.add_argument("--steps-i", type=int, default=None, help="SAVI steps of the I-frame latents (default 2000)")
    a.add_argument("--steps-p", type=int, default=None,
                   help="SAVI steps per P-frame latent, w and y each (default 400); bao runs --steps-i joint steps")
    a.add_argument("--window", type=int, default=None, help="windowed: C following frames in the objective (default 2)")
    a.add_argument("--exact-steps", type=int, default=None,
                   help="exact: gradient steps per level of the nested descent (default 2)")
    a.add_argument("--exact-lr", type=float, default=None, help="exact: step size of that descent (default 0.01)")
    a.add_argument("--oeu-steps", type=int, default=None, help="oeu: encoder-update steps per GoP (per frame for "
                   "oeu-sequential) (default 100)")
    a.add_argument("--oeu-lr", type=float, default=None, help="oeu: Adam learning rate of the encoders (default 1e-4)")
    a.add_argument("--target-kbps", type=float, default=None, metavar="KBPS",
                   help="target bitrate: λ0 of each GoP is searched so that the GoP's chunk has KBPS·1000/8·frames/fps "
                        "bytes (rdopt.ratecontrol.video; default method sequential; without --quality and --checkpoint "
                        "the quality is chosen on the first GoP)")
    a.add_argument("--fps", type=float, default=None,
                   help="frame rate the target bitrate refers to (default: the clip's)")


def is_video_encode(args) -> bool:
    if args.video or Path(str(args.output)).suffix.lower() == ".rdov":
        return True
    src = str(args.input)
    if src == "-":
        return False
    p = Path(src)
    return p.suffix.lower() in VIDEO_SUFFIXES or _is_png_frame_folder(p)


def _is_png_frame_folder(p: Path) -> bool:
    """A folder holding numbered PNG frames (any other folder is left to the image path's error)."""
    import re

    if not p.is_dir():
        return False
    try:
        return any(re.fullmatch(r".*\d+\.png", e.name, re.IGNORECASE) for e in os.scandir(p))
    except OSError:
        return False


def check_image_args(args) -> None:
    given = ["--" + n.replace("_", "-") for n in VIDEO_OPTIONS if getattr(args, n, None) is not None]
    if given:
        raise UserError(f"{', '.join(given)} apply to video inputs (add --video, or name the output *.rdov)")


def is_video_bitstream(path: str) -> bool:
    """Whether a bitstream to read is the video form (by its magic; a ``.rdov`` name that is not an image
    bitstream is read as video, so that its errors speak of video)."""
    if path == "-":
        peek = getattr(sys.stdin.buffer, "peek", None)
        if peek is None or sys.stdin.isatty():
            return False
        return peek(4)[:4] == b"RDOV"
    p = Path(path)
    if not p.is_file():
        return False
    with open(p, "rb") as f:
        magic = f.read(4)
    return magic == b"RDOV" or (p.suffix.lower() == ".rdov" and magic != b"RDO1")


def _source(path: str):
    return sys.stdin.buffer if path == "-" else path


# ---------------------------------------------------------------------------------------------- encode
def format_stats(s) -> str:
    skipped = (f"skip        {s.skipped_frames} P-frames skipped whole, {s.skipped_blocks} blocks of 16×16 skipped"
               if s.skip_mode else "skip        off (--no-skip)")
    lines = [
        f"model       {s.model} (λ={s.lmbda:g}), method {s.method}",
        f"video       {s.width}×{s.height}, {s.frames} frames, GoP {s.gop}, {s.fps} fps"
        + (", grayscale (PSNR of the gray levels written)" if s.grayscale else ""),
        f"file        {s.file_bytes} bytes = {s.bpp:.4f} bpp (real; payload {s.bpp_payload:.4f} bpp)",
        f"estimated   {s.bpp_estimated:.4f} bpp (from the entropy model's likelihoods)",
        f"PSNR        {s.psnr:.3f} dB (mean of the frames; {s.psnr_mean_mse:.3f} dB of the mean MSE)",
        skipped,
        f"time        {s.encode_seconds:.2f} s",
        "",
        f"{'frame':>6} {'GoP':>4} {'type':>4} {'bytes':>8} {'bpp':>8} {'est. bpp':>9} {'PSNR':>8}  skip",
    ]
    for f in s.frame_stats:
        skip = {"frame": "frame", "blocks": f"{f.skip_blocks} blocks"}.get(f.skip, "-")
        lines.append(f"{f.index:6d} {f.gop:4d} {f.type:>4} {f.bytes:8d} {f.bpp:8.4f} {f.bpp_estimated:9.4f} {f.psnr:8.3f}"
                     f"  {skip}")
    lines += ["", f"{'GoP':>4} {'frames':>6} {'bytes':>8} {'bpp':>8} {'est. bpp':>9} {'PSNR':>8}"]
    for g in s.gops:
        lines.append(f"{g.index:4d} {g.frames:6d} {g.chunk_bytes:8d} {g.bpp:8.4f} {g.bpp_estimated:9.4f} {g.psnr:8.3f}")
    return "\n".join(lines)


def encode(args) -> int:
    from ..data.safeio import check_output, is_stdio
    from ..data.video import open_video

    if args.method not in VIDEO_METHODS:
        raise UserError(f"--method {args.method} is an image method; videos take {', '.join(VIDEO_METHODS)}")
    if args.steps is not None or getattr(args, "ste_lr", None) is not None:
        raise UserError("videos take --steps-i/--steps-p (not --steps, --ste-lr)")
    options = allocation_options(args)
    if args.model is not None:
        raise UserError(f"--model {args.model} codes images; choose a video codec with --codec")
    method = options.gop().solver
    if args.lmbda is not None and method == "amortized":
        raise UserError("--lmbda needs a bit-allocation --method (sequential, bao, …): the amortized encoder's "
                        "output does not depend on λ")
    if args.lmbda is not None and args.target_kbps is not None:
        raise UserError("--lmbda and --target-kbps exclude each other (rate control searches λ0)")
    codec_name = args.codec or video_codec_for(args.checkpoint)
    if getattr(args, "keep_interrupted", False):
        raise UserError("--keep-interrupted is for images: a video encode always keeps its finished GoPs on Ctrl-C")
    if str(args.input) == "-":
        raise UserError("video input from standard input is not supported: give a file or a folder of PNG frames")
    skip = not args.no_skip
    quality = args.quality
    qualities = _registered_qualities(codec_name)
    if args.checkpoint is None and quality is not None and qualities and quality not in qualities:
        raise UserError(f"{codec_name} has --quality {min(qualities)}-{max(qualities)}, got {quality}")
    gop = args.gop if args.gop is not None else DEFAULT_GOP
    if gop > 255:
        raise UserError(f"--gop is at most 255, got {gop}")
    if method == "exact":
        from ..infer.allocation import EXACT_MAX_FRAMES

        if gop > EXACT_MAX_FRAMES:
            raise UserError(f"--method exact is Θ(K^N): refused for a GoP of {gop} frames (at most "
                            f"{EXACT_MAX_FRAMES}, --gop {EXACT_MAX_FRAMES}); use sequential or windowed")
    start = args.start if args.start is not None else 0
    if start < 0:
        raise UserError(f"--start must be >= 0, got {start}")
    check_output(args.output, [args.input])
    reader = open_video(args.input, size=args.size, matrix=args.matrix or "709")
    try:
        from ..api.video import EncodeInterrupted, check_encode_memory, encode_video, load_video_codec

        check_encode_memory(reader.info.width, reader.info.height, gop if args.frames is None else min(gop, args.frames))

        rate, quality = _rate_control(args, options, reader, codec_name, quality, start, gop, skip)
        codec = load_video_codec(codec_name, quality=quality, checkpoint=args.checkpoint, device=device_of(args))
        report = sys.stderr if is_stdio(args.output) else sys.stdout
        allocator = None
        try:
            if rate is not None:
                from ..ratecontrol.video import VideoRateController

                allocator = VideoRateController(options, rate, skip=skip)
            stats = encode_video(codec, reader, args.output, gop=gop, frames=args.frames, start=start,
                                 progress=not (args.quiet or args.json), allocate=allocator, options=options,
                                 lmbda=args.lmbda, skip=skip)
        except EncodeInterrupted as e:
            _print_stats(e.stats, args.json, report, _rate_summary(allocator, e.stats))
            n = len(e.stats.gops)
            print(f"rdopt: interrupted; wrote the {e.stats.frames} finished frames ({n} GoP{'s' if n > 1 else ''}) "
                  f"to {args.output}", file=sys.stderr)
            return EXIT_INTERRUPTED
    finally:
        reader.close()
    _print_stats(stats, args.json, report, _rate_summary(allocator, stats))
    return 0


def _registered_qualities(name: str) -> dict:
    """The qualities the registry lists for a codec name (empty for a file spec or a plug-in not loaded)."""
    from ..codecs.registry import CodecEntry, entries, is_file_spec

    if is_file_spec(name):
        return {}
    entry = entries().get(name)
    if entry is None:
        raise UserError(f"--codec {name}: unknown codec; known: {', '.join(sorted(entries()))} (or FILE.py:FACTORY)")
    if isinstance(entry, CodecEntry) and entry.kind != "video":
        raise UserError(f"--codec {name} is an image codec; a video needs a video codec (e.g. {DEFAULT_VIDEO_CODEC})")
    return dict(entry.qualities) if isinstance(entry, CodecEntry) else {}


def _rate_control(args, options, reader, codec_name: str, quality: int | None, start: int, gop: int, skip: bool = True):
    """(VideoRateOptions or None, the quality to code with): checks ``--target-kbps``/``--fps`` and, without
    ``--quality`` (and ``--checkpoint``), picks the quality for the first GoP."""
    if args.target_kbps is None:
        if args.fps is not None:
            raise UserError("--fps only applies with --target-kbps (the file keeps the clip's frame rate)")
        return None, quality
    if options.gop().solver == "amortized":
        raise UserError("--target-kbps needs an optimizing --method (sequential, windowed, bao, …): the amortized "
                        "encoder's output does not depend on λ")
    fps = args.fps if args.fps is not None else float(reader.info.fps or 25)
    from ..ratecontrol.video import VideoRateOptions, choose_quality

    try:
        rate = VideoRateOptions(kbps=args.target_kbps, fps=fps)
    except ValueError as e:
        raise UserError(str(e)) from None
    qualities = sorted(_registered_qualities(codec_name))
    if args.quality is None and args.checkpoint is None and qualities:
        from ..api.video import load_video_codec
        from ..data.video import open_video

        probe = open_video(args.input, size=args.size, matrix=args.matrix or "709")
        try:
            n = gop if args.frames is None else min(gop, args.frames)
            first = list(itertools.islice(probe.frames(start), n))  # at most n: a clip may be shorter
        finally:
            probe.close()
        if not first:
            raise UserError(f"no frames to encode from frame {start}")
        device = device_of(args)
        quality, sizes = choose_quality(first, rate.kbps, rate.fps, qualities,
                                        load=lambda q: load_video_codec(codec_name, quality=q, device=device), skip=skip)
        if not args.quiet and not args.json:
            budget = rate.gop_bytes(len(first))
            print(f"rate control: first GoP budget {budget:.0f} bytes; amortized sizes "
                  + ", ".join(f"q{q} {b}" for q, b in sizes.items()) + f" -> quality {quality}", file=sys.stderr)
    return rate, quality


def _rate_summary(allocator, stats):
    from ..ratecontrol.video import VideoRateController

    if not isinstance(allocator, VideoRateController):
        return None
    return allocator.summary(stats.file_bytes, gops=len(stats.gops))


def allocation_options(args):
    """The GoP allocation's ``SolverOptions`` from the command line (``--method`` is the allocation method)."""
    from ..infer.options import SolverOptions

    from ..infer.options import GOP_READS, ignored_by

    flags = {"latents": "latents", "steps_i": "steps", "steps_p": "steps_p", "window": "window",
             "exact_steps": "exact_steps", "exact_lr": "exact_lr", "oeu_steps": "oeu_steps", "oeu_lr": "oeu_lr",
             "lr": "lr", "seed": "seed", "tau0": "tau0", "hold": "hold", "tau_end": "tau_end"}
    given = {field: getattr(args, flag) for flag, field in flags.items() if getattr(args, flag, None) is not None}
    flag_of = {field: "--" + flag.replace("_", "-") for flag, field in flags.items()}
    if args.method == "amortized" and given:
        names = ", ".join(flag_of[k] for k in given)
        raise UserError(f"{names} only applies to a bit-allocation method; add --method sequential (or another)")
    unused = ignored_by(args.method, [k for k in given if k != "seed"])
    if unused:
        reads = ", ".join(flag_of[k] for k in flag_of if k in GOP_READS[args.method]) or "none"
        raise UserError(f"--method {args.method} does not use {', '.join(flag_of[k] for k in unused)} "
                        f"(it reads {reads})")
    for bad in ("schedule", "decay", "t0", "lr_decay"):
        if getattr(args, bad, None) is not None:
            raise UserError(f"--{bad.replace('_', '-')} is an image option; videos fit the temperature to each "
                            "stage's budget (--tau0, --hold, --tau-end)")
    try:
        return SolverOptions(solver=args.method, progress=not (args.quiet or args.json), **given)
    except ValueError as e:
        raise UserError(str(e)) from None


def _print_stats(stats, as_json: bool, report, rate: dict | None = None) -> None:
    if as_json:
        d = stats.to_dict()
        if rate is not None:
            d["rate_control"] = rate
        print(json.dumps(d, indent=2), file=report)
        return
    text = format_stats(stats)
    if rate is not None:
        text += "\n" + format_rate(rate)
    print(text, file=report)


def format_rate(rate: dict) -> str:
    lines = [f"rate        target {rate['target_kbps']:g} kbit/s at {rate['fps']:g} fps: {rate['kbps']:.2f} kbit/s "
             f"(file, {rate['error_percent']:+.2f} %); per GoP |error| mean {rate['gop_error_mean_abs_percent']:.2f} %, "
             f"max {rate['gop_error_max_abs_percent']:.2f} %; {rate['runs']} allocation runs",
             " gop  nominal B  +carry B  chunk B  error %   λ0      runs   (error: chunk vs nominal)"]
    for g in rate["gops"]:
        lines.append(f"{g['index']:4d} {g['nominal_bytes']:10.0f} {g['target_bytes']:9.0f} {g['bytes']:8d} "
                     f"{g['error_percent']:+8.2f} {g['lmbda']:8.5f} {len(g['runs']):5d}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- decode
def decode(args) -> int:
    from ..coding.rdov import VideoBitstreamReader
    from ..data.safeio import check_memory, check_output
    from ..data.video import VideoWriter, output_kind

    if str(args.output) == "-":
        raise UserError("a video cannot be written to standard output: give a folder (PNG frames), .y4m or .mp4")
    kind = output_kind(args.output)
    if kind != "png":
        check_output(args.output, [args.input])
    reader = VideoBitstreamReader(_source(args.input))
    h = reader.header
    try:
        from ..api.video import decode_video, min_decode_bytes

        check_memory(min_decode_bytes(h), f"decoding a GoP of {min(h.gop, h.frames)} frames of {h.width}×{h.height}")
        dv = decode_video(reader, checkpoint=args.checkpoint, device=device_of(args),
                          codec_spec=getattr(args, "codec", None), max_pixels=pixel_limit(args))
        matrix = h.matrix if h.matrix != "none" else "709"
        # a grayscale clip is written as gray levels (PNG mode L, neutral chroma in Y4M/YUV/MP4/MKV)
        with VideoWriter(args.output, fps=h.fps, matrix=matrix, full_range=h.full_range, grayscale=h.grayscale) as w:
            for frame in dv.output_frames():
                w.write(frame)
            count = w.count
    finally:
        reader.close()
    print(f"decoded {count} frames {h.width}×{h.height} ({'grayscale' if h.grayscale else 'RGB'}, GoP {h.gop}, "
          f"{h.fps} fps) with {h.model_id} -> {args.output}")
    return 0


# ---------------------------------------------------------------------------------------------- info
def info(args) -> int:
    from ..coding.describe import describe_rdov, frame_table

    doc = describe_rdov(_source(args.input))
    if args.json:
        print(json.dumps(doc, indent=2))
        return 0
    for k, v in doc.items():
        if k not in ("gops", "frame_table"):
            print(f"{k:15s} {v}")
    print()
    print("\n".join(frame_table(doc)))
    return 0
