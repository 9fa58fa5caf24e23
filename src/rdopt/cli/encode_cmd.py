"""``rdopt encode IN -o OUT.rdo``: write a real bitstream and report what decoding it gives."""

from __future__ import annotations

import json
import signal
import sys
import threading

from .common import (add_model_args, add_optimization_args, add_threads_arg, given_optimization_args,
                     load_model_from_args, optimization_options)
from .main import EXIT_INTERRUPTED, UserError, device_of, positive_float

# Memory per pixel of the padded image: twice the peak measured with the embedded models (N=64) on a
# CPU (benchmarks/startup/README.md: ≈ 0.35 KB amortized, ≈ 0.7 KB with SGA); three times that for
# the CompressAI zoo models, whose transforms are up to three times wider (N=192).
ENCODE_BYTES_PER_PIXEL = {"amortized": 700, "optimized": 1400}
ZOO_FACTOR = 3


def add_parser(sub) -> None:
    from .video_cmd import add_encode_args

    p = sub.add_parser("encode", help="encode an image to a .rdo bitstream, or a video to a .rdov bitstream")
    p.add_argument("input", help="image file (PNG, JPEG, … anything Pillow reads; see the README's input "
                                 "section), or - for standard input; or a video (MP4, MKV, WebM, MOV, AVI, Y4M, "
                                 "raw .yuv, a folder of numbered PNG frames)")
    p.add_argument("-o", "--output", required=True,
                   help="output .rdo file (.rdov for a video: the video form) (written atomically; never the "
                        "input), or - for standard output (the report then goes to standard error)")
    add_model_args(p, lmbda=True)
    add_optimization_args(p)
    add_threads_arg(p)
    p.add_argument("--keep-interrupted", action="store_true",
                   help="on Ctrl-C during an optimization, still write the best point found so far (the exit "
                        "status is 130 either way)")
    p.add_argument("--json", action="store_true", help="print the measurements as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_encode_args(p)
    b = p.add_argument_group("lossy bits-back (--method sga-bb; model rdopt-msh-bb, or --checkpoint)")
    b.add_argument("--side-info", metavar="FILE",
                   help="side information to hide in the bitstream (any bytes; `rdopt decode --side-info-out` gives "
                        "it back). Default: a seeded pseudo-random source as long as the hyper-latents can carry "
                        "(only the net rate is then meaningful)")
    b.add_argument("--bbvi-steps", type=int, default=None,
                   help="steps of reproducible_bbvi, run by encoder and decoder alike (default 300)")
    b.add_argument("--bbvi-lr", type=positive_float, default=None, help="its Adam learning rate (default 0.003)")
    b.add_argument("--side-info-seed", type=int, default=None, help="seed of the default source (default 0)")
    p.set_defaults(run=run)


def format_stats(s) -> str:
    ms = f"{s.ms_ssim:.4f}" if s.ms_ssim is not None else "n/a (image < 161 px)"
    lines = [
        f"model       {s.model} (λ={s.lmbda}), method {s.method}" + (f", {s.steps} steps" if s.steps else ""),
        f"image       {s.width}×{s.height}",
        f"file        {s.file_bytes} bytes = {s.bpp:.4f} bpp (real; payload {s.bpp_payload:.4f} bpp)",
        f"estimated   {s.bpp_estimated:.4f} bpp (from the entropy model's likelihoods)",
        f"PSNR        {s.psnr:.3f} dB   MS-SSIM {ms}",
        f"R-D cost    {s.rd_cost:.4f} (real)   {s.rd_cost_estimated:.4f} estimated, amortized start "
        f"{s.rd_cost_amortized_estimated:.4f}",
        f"time        encode {s.encode_seconds:.2f} s (optimize {s.optimize_seconds:.2f} s), decode {s.decode_seconds:.2f} s",
    ]
    lines += [f"note        {m}" for m in s.messages]
    lines += [f"WARNING     {m}" for m in s.warnings]
    return "\n".join(lines)


def check_arguments(args) -> None:
    if args.method == "amortized":
        given = given_optimization_args(args)
        if given:
            raise UserError(f"{', '.join(given)} only applies to an optimization method; "
                            "add --method sga (or another optimizing method)")
        if args.lmbda is not None:
            raise UserError("--lmbda needs an optimization --method (amortized codes with the model's own λ)")


def encode_memory_check(method: str, model: str):
    """``check_size(width, height)`` for :func:`load_image`: refuses, before the pixels are decoded, an
    image whose encoding would not fit the memory budget."""
    from ..data.safeio import check_memory
    from ..models.registry import EMBEDDED

    per_pixel = ENCODE_BYTES_PER_PIXEL["amortized" if method == "amortized" else "optimized"]
    per_pixel *= 1 if model == EMBEDDED else ZOO_FACTOR

    def check(width: int, height: int) -> None:
        ph, pw = -(-height // 64) * 64, -(-width // 64) * 64
        check_memory(per_pixel * ph * pw, f"encoding a {width}×{height} image ({method})")

    return check


class _InterruptFlag:
    """SIGINT handler that records the interruption and raises KeyboardInterrupt as Python's does."""

    def __init__(self):
        self.seen = False
        self.previous = None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum, frame):
        self.seen = True
        raise KeyboardInterrupt

    def __exit__(self, *exc):
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)
        return False


def run(args) -> int:
    from ..api import encode_image
    from ..data.images import load_image
    from ..data.safeio import atomic_write, check_output, is_stdio

    from ..infer.image import METHODS

    from . import video_cmd

    check_arguments(args)
    bb_given = [n for n in ("side_info", "bbvi_steps", "bbvi_lr", "side_info_seed") if getattr(args, n, None) is not None]
    if args.method == "sga-bb":
        if video_cmd.is_video_encode(args):
            raise UserError("--method sga-bb codes images")
        return encode_bits_back(args)
    if bb_given:
        raise UserError(f"{', '.join('--' + n.replace('_', '-') for n in bb_given)} apply to --method sga-bb")
    if video_cmd.is_video_encode(args):
        return video_cmd.encode(args)
    video_cmd.check_image_args(args)
    if args.method not in METHODS:
        raise UserError(f"--method {args.method} is a GoP bit-allocation method for videos; images take "
                        f"{', '.join(METHODS)}")
    options = optimization_options(args, progress=not (args.quiet or args.json))
    check_output(args.output, [args.input])  # before any work: never the input, writable, name fits
    image = load_image(args.input, check_size=encode_memory_check(options.method, args.model))
    model = load_model_from_args(args, device_of(args))
    report = sys.stderr if is_stdio(args.output) else sys.stdout
    with _InterruptFlag() as interrupt:
        data, stats, *_ = encode_image(model, image, options, lmbda=args.lmbda)
    for note in image.notes:
        print(f"rdopt: note: {note}", file=sys.stderr)
    if image.alpha_dropped:
        print("rdopt: note: the alpha channel was dropped (rdopt codes colour only)", file=sys.stderr)
    if interrupt.seen and not args.keep_interrupted:
        print("rdopt: interrupted; no file written (--keep-interrupted writes the best point found so far)",
              file=sys.stderr)
        return EXIT_INTERRUPTED
    atomic_write(args.output, data)
    print(json.dumps(stats.to_dict(), indent=2) if args.json else format_stats(stats), file=report)
    if interrupt.seen:
        print(f"rdopt: interrupted; wrote the best point found so far to {args.output}", file=sys.stderr)
        return EXIT_INTERRUPTED
    return 0


def format_bb_stats(s) -> str:
    lines = [
        f"model       {s.model} (λ={s.lmbda}), method {s.method}, {s.steps} joint steps, "
        f"reproducible_bbvi {s.bbvi_steps} steps",
        f"image       {s.width}×{s.height}",
        f"file        {s.file_bytes} bytes = {s.file_bits} bits = {s.bpp:.4f} bpp (streams: y {s.y_bits}, z {s.z_bits} bits)",
        f"recovered   {s.side_info_bits} bits of side information ({s.side_info_source}); ẑ took {s.z_taken_bits} bits"
        + (f", {s.padding_bits} of them padding (side information shorter than ẑ takes)" if s.padding_bits else ""),
        f"net         {s.net_bits} bits = {s.net_bpp:.4f} bpp (file bits − recovered bits)",
        f"PSNR        {s.psnr:.3f} dB",
        f"R-D cost    {s.rd_cost_net:.4f} (net bpp + λ·255²·MSE); objective {s.objective_start:.4f} → {s.objective_final:.4f}",
        f"time        encode {s.encode_seconds:.2f} s (optimize {s.optimize_seconds:.2f} s, reproducible_bbvi "
        f"{s.bbvi_seconds:.2f} s), decode {s.decode_seconds:.2f} s",
    ]
    lines += [f"note        {m}" for m in s.messages]
    return "\n".join(lines)


def encode_bits_back(args) -> int:
    """``--method sga-bb``: Algorithm 1 of paper 003 (rdopt.bitsback)."""
    from ..bitsback import encode_image_bb
    from ..data.images import load_image
    from ..data.safeio import atomic_write, check_output, is_stdio, read_input_bytes
    from ..infer.bitsback import BBVIOptions
    from ..models.bitsback import load_bitsback
    from ..models.registry import EMBEDDED
    from . import video_cmd

    video_cmd.check_image_args(args)
    if args.model != EMBEDDED:
        raise UserError("--method sga-bb uses the bits-back variant of rdopt-msh (rdopt-msh-bb) or a --checkpoint")
    import argparse

    sga_args = argparse.Namespace(**{**vars(args), "method": "sga"})  # line 2 optimizes ŷ by SGA
    options = optimization_options(sga_args, progress=not (args.quiet or args.json))
    try:
        bbvi = BBVIOptions(steps=args.bbvi_steps if args.bbvi_steps is not None else BBVIOptions.steps,
                           lr=args.bbvi_lr if args.bbvi_lr is not None else BBVIOptions.lr)
    except ValueError as e:
        raise UserError(str(e)) from None
    check_output(args.output, [args.input] + ([args.side_info] if args.side_info else []))
    side_info = read_input_bytes(args.side_info, what="side information") if args.side_info else None
    image = load_image(args.input, check_size=encode_memory_check(options.method, args.model))
    from .common import resolve_quality

    model = load_bitsback(resolve_quality(args), checkpoint=args.checkpoint, lmbda=args.lmbda, device=device_of(args))
    report = sys.stderr if is_stdio(args.output) else sys.stdout
    enc = encode_image_bb(model, image, options, bbvi, lmbda=args.lmbda, side_info=side_info,
                          source_seed=args.side_info_seed or 0)
    atomic_write(args.output, enc.data)
    print(json.dumps(enc.stats.to_dict(), indent=2) if args.json else format_bb_stats(enc.stats), file=report)
    return 0
