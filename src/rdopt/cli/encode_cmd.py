"""``rdopt encode IN -o OUT.rdo``: write a real bitstream and report what decoding it gives.

Rate control and weighting: ``--target-size`` / ``--target-bpp`` (rate control, :mod:`rdopt.ratecontrol.image`), ``--roi MASK``
with ``--roi-weight`` (a per-pixel distortion weight, :mod:`rdopt.data.masks`), ``--distortion`` (MSE,
MS-SSIM or a mix), and several inputs with ``-o DIR`` (a batch: one ``DIR/NAME.rdo`` per input, a progress
bar over the files, finished files kept on Ctrl-C).
"""

from __future__ import annotations

import json
import signal
import sys
import threading

from .common import (add_model_args, add_optimization_args, add_threads_arg, given_optimization_args,
                     load_model_from_args, optimization_options)
from .main import EXIT_INTERRUPTED, UserError, device_of, positive_float

DEFAULT_ROI_WEIGHT = 4.0



def add_parser(sub) -> None:
    from .video_cmd import add_encode_args

    p = sub.add_parser("encode", help="encode an image to a .rdo bitstream, or a video to a .rdov bitstream")
    p.add_argument("inputs", nargs="+", metavar="input",
                   help="image file (PNG, JPEG, … anything Pillow reads; see the README's input "
                        "section), or - for standard input; or a video (MP4, MKV, WebM, MOV, AVI, Y4M, "
                        "raw .yuv, a folder of numbered PNG frames); several images: a batch into -o DIR")
    p.add_argument("-o", "--output", required=True,
                   help="output .rdo file (.rdov for a video: the video form) (written atomically; never the "
                        "input), or - for standard output (the report then goes to standard error); with several "
                        "inputs (or one and DIR/ with a trailing slash): the existing directory that receives "
                        "NAME.rdo per input")
    add_model_args(p, lmbda=True)
    add_optimization_args(p, method_default=None,
                          default_text="amortized; sga with --target-size/--target-bpp/--roi/--distortion")
    r = p.add_argument_group("rate control, region of interest, distortion (images; an optimizing method)")
    r.add_argument("--target-size", default=None, metavar="SIZE",
                   help="largest file size: bytes, or with a unit (20kB = 20000 bytes, 20KiB = 20480, 1.5MB, 1GB); "
                        "the quality and λ are searched for the best file at most this size (within 1 %% of it "
                        "when the models can)")
    r.add_argument("--target-bpp", type=positive_float, default=None, metavar="BPP",
                   help="largest file size in bits per pixel of the image (as --target-size)")
    r.add_argument("--roi", action="append", default=None, metavar="MASK",
                   help="region-of-interest mask: a grayscale image, white = important, grey levels allowed; "
                        "resized to the image if its aspect ratio matches; once for every input or once per input")
    r.add_argument("--roi-weight", type=positive_float, default=None, metavar="W",
                   help="distortion weight of white mask pixels relative to black ones (1); grey: in between "
                        "(default 4)")
    r.add_argument("--distortion", default=None, metavar="D",
                   help="distortion the optimization minimises: mse, ms-ssim, or mix:A (share A of MS-SSIM, "
                        "1-A of MSE); the decoder is unchanged (default mse)")
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
    if s.distortion != "mse" or s.weighted:
        lines.append(f"objective   distortion {s.distortion}" + (", weighted by the ROI mask" if s.weighted else ""))
    rc = s.rate_control
    if rc:
        err = 100 * rc["size_error"]
        lines.append(f"target      {rc['target_bytes']} bytes: {'hit' if rc['hit'] else 'missed'} ({err:+.2f} %), "
                     f"{rc['runs']} SAVI run(s), {rc['steps_total']} steps, "
                     f"{rc['seconds']:.2f} s")
    lines += [f"note        {m}" for m in s.messages]
    lines += [f"WARNING     {m}" for m in s.warnings]
    return "\n".join(lines)


def _image_extras(args) -> list[str]:
    """The rate-control, ROI and distortion options given on the command line."""
    names = ("target_size", "target_bpp", "roi", "roi_weight", "distortion")
    return ["--" + n.replace("_", "-") for n in names if getattr(args, n, None) is not None]


def check_arguments(args) -> None:
    extras = _image_extras(args)
    if args.method is None:
        args.method = "sga" if extras else ("sequential" if getattr(args, "target_kbps", None) is not None else "amortized")
    if args.method == "amortized" and extras:
        raise UserError(f"{', '.join(extras)}: needs an optimizing --method (sga, …); the amortized encoder has "
                        "one fixed objective")
    if args.target_size is not None and args.target_bpp is not None:
        raise UserError("give --target-size or --target-bpp, not both")
    if (args.target_size is not None or args.target_bpp is not None) and args.lmbda is not None:
        raise UserError("--lmbda and a target size exclude each other: the target chooses λ")
    if args.roi_weight is not None and args.roi is None:
        raise UserError("--roi-weight needs --roi MASK")
    if args.method == "amortized":
        given = given_optimization_args(args)
        if given:
            raise UserError(f"{', '.join(given)} only applies to an optimization method; "
                            "add --method sga (or another optimizing method)")
        if args.lmbda is not None:
            raise UserError("--lmbda needs an optimization --method (amortized codes with the model's own λ)")


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
    from pathlib import Path

    from . import video_cmd

    check_arguments(args)
    inputs = [str(i) for i in args.inputs]
    # a batch: several inputs, or one with an output named as a directory (a trailing slash); one input with
    # an existing directory as output stays an error (the output names a file)
    batch = len(inputs) > 1 or (str(args.output).endswith(("/", "\\")) and Path(str(args.output)).is_dir())
    args.input = inputs[0]
    if not batch:
        check_output_name(args.output, inputs, video_cmd.is_video_encode(args))
    bb_given = [n for n in ("side_info", "bbvi_steps", "bbvi_lr", "side_info_seed") if getattr(args, n, None) is not None]
    if args.method == "sga-bb":
        if batch:
            raise UserError("--method sga-bb encodes one image at a time")
        if video_cmd.is_video_encode(args):
            raise UserError("--method sga-bb codes images")
        return encode_bits_back(args)
    if bb_given:
        raise UserError(f"{', '.join('--' + n.replace('_', '-') for n in bb_given)} apply to --method sga-bb")
    if video_cmd.is_video_encode(args) or any(video_cmd.is_video_encode(_with_input(args, i)) for i in inputs[1:]):
        if batch:
            raise UserError("several inputs (or an output directory) are for images; encode one video at a time")
        extras = _image_extras(args)
        if extras:
            raise UserError(f"{', '.join(extras)} apply to images (videos take --target-kbps)")
        return video_cmd.encode(args)
    video_cmd.check_image_args(args)
    return encode_images_cli(args, inputs, batch)


def check_output_name(output: str, inputs: list[str], video: bool) -> None:
    """Refuse an output named like an image or video file (``-o out.png``): encode writes a bitstream. An
    output that is the input is reported as such first."""
    from pathlib import Path

    from PIL import Image

    from ..data.safeio import check_output, is_stdio
    from .video_cmd import VIDEO_SUFFIXES

    p = Path(str(output))
    suffix = p.suffix.lower()
    if is_stdio(output) or (suffix not in VIDEO_SUFFIXES and suffix not in Image.registered_extensions()):
        return
    check_output(output, inputs)
    kind = "a video" if suffix in VIDEO_SUFFIXES else "an image"
    form = ".rdov" if video else ".rdo"
    raise UserError(f"-o {output} names {kind} file, but encode writes an rdopt bitstream: name it "
                    f"{p.with_suffix(form).name}")


def _with_input(args, path):
    import argparse

    ns = argparse.Namespace(**vars(args))
    ns.input = path
    return ns


class _Job:
    """One image of an encode: its input, output and ROI mask."""

    def __init__(self, src: str, out: str, mask: str | None):
        self.src, self.out, self.mask = src, out, mask


def _jobs(args, inputs: list[str], batch: bool) -> list[_Job]:
    from pathlib import Path

    from ..data.safeio import check_output, is_stdio

    masks = args.roi or []
    if len(masks) not in (0, 1, len(inputs)):
        raise UserError(f"give --roi once (for every input) or once per input ({len(inputs)}), got {len(masks)}")
    mask_of = (lambda i: masks[0]) if len(masks) == 1 else ((lambda i: masks[i]) if masks else (lambda i: None))
    if not batch:
        check_output(args.output, [inputs[0]])  # before any work: never the input, writable, name fits
        return [_Job(inputs[0], args.output, mask_of(0))]
    out_dir = Path(str(args.output))
    if is_stdio(args.output) or not out_dir.is_dir():
        raise UserError(f"with several inputs -o names a directory that exists, got {args.output}")
    if "-" in inputs:
        raise UserError("standard input (-) cannot be part of a batch")
    jobs, seen = [], {}
    for i, src in enumerate(inputs):
        name = Path(src).stem + ".rdo"
        if name in seen:
            raise UserError(f"inputs {seen[name]} and {src} would both be written to {out_dir / name}")
        seen[name] = src
        out = str(out_dir / name)
        check_output(out, inputs)
        jobs.append(_Job(src, out, mask_of(i)))
    return jobs


def _distortion(args):
    from ..core.rd import MSE, Distortion

    if args.distortion is None:
        return MSE
    try:
        return Distortion.parse(args.distortion)
    except ValueError as e:
        raise UserError(str(e)) from None


def _target_bytes(args, image) -> int | None:
    from ..ratecontrol.image import SizeError, bytes_for_bpp, parse_size

    try:
        if args.target_size is not None:
            return parse_size(args.target_size)
        if args.target_bpp is not None:
            return bytes_for_bpp(args.target_bpp, image.width, image.height)
    except SizeError as e:
        raise UserError(str(e)) from None
    return None


def _prepare(args, job: _Job, options, distortion):
    """Load a job's image and mask and check them against the options: (image, weight map or None, notes)."""
    from ..api.image import check_distortion, encode_memory_check
    from ..data.images import load_image
    from ..data.masks import load_mask, roi_weight_map

    targeted = args.target_size is not None or args.target_bpp is not None
    tiled = ((options.method == "amortized" or options.steps == 0) and job.mask is None and distortion.is_mse
             and not targeted)
    image = load_image(job.src, check_size=encode_memory_check(options.method, args.model, tiled))
    notes = list(image.notes)
    try:
        check_distortion(distortion, image.height, image.width)  # its notes are in the report
    except ValueError as e:
        raise UserError(f"{job.src}: {e}") from None
    weight = None
    if job.mask is not None:
        mask, mask_notes = load_mask(job.mask, image.width, image.height)
        notes += mask_notes
        w = args.roi_weight if args.roi_weight is not None else DEFAULT_ROI_WEIGHT
        weight = roi_weight_map(mask, w)
    _target_bytes(args, image)  # checked before any work
    return image, weight, notes


class _Models:
    """The model(s) of an encode: one (``--quality``, ``--checkpoint``, ``--lmbda``, or no target), or every
    quality of the family for a target size, loaded once each."""

    def __init__(self, args, device: str):
        from ..codecs.registry import get

        from .common import image_model, resolve_quality

        self.args, self.device, self.cache = args, device, {}
        targeted = args.target_size is not None or args.target_bpp is not None
        if targeted and args.quality is None and args.checkpoint is None:
            self.qualities = sorted(get(image_model(args)).qualities)  # a target size searches every quality
        else:
            self.qualities = [resolve_quality(args)]

    def __call__(self, quality: int):
        from ..codecs.image.loading import load_model

        if quality not in self.cache:
            if len(self.qualities) == 1:
                self.cache[quality] = load_model_from_args(self.args, self.device)
            else:
                self.cache[quality] = load_model(self.args.model, quality, device=self.device)
        return self.cache[quality]


def encode_images_cli(args, inputs: list[str], batch: bool) -> int:
    import torch
    from tqdm import tqdm

    from ..api.image import encode_image
    from ..data.safeio import atomic_write, is_stdio
    from ..infer.image import METHODS
    from ..ratecontrol.image import encode_to_size

    if args.method not in METHODS:
        raise UserError(f"--method {args.method} is a GoP bit-allocation method for videos; images take "
                        f"{', '.join(METHODS)}")
    quiet = args.quiet or args.json
    options = optimization_options(args, progress=not quiet and not batch)
    targeted = args.target_size is not None or args.target_bpp is not None
    if targeted and args.keep_interrupted:
        raise UserError("--keep-interrupted does not apply to a target size: an interrupted search writes nothing")
    distortion = _distortion(args)
    jobs = _jobs(args, inputs, batch)
    if batch:  # every input and mask is checked before the first file is encoded
        for job in jobs:
            _prepare(args, job, options, distortion)
    models = _Models(args, device_of(args))
    report = sys.stderr if is_stdio(args.output) else sys.stdout
    results, interrupted = [], False
    bar = tqdm(total=len(jobs), desc="files", unit="file", disable=quiet or not batch, dynamic_ncols=True)
    try:
        with _InterruptFlag() as interrupt:
            for job in jobs:
                image, weight, notes = _prepare(args, job, options, distortion)
                wt = None if weight is None else torch.from_numpy(weight)
                try:
                    if targeted:
                        rc = encode_to_size(image, _target_bytes(args, image), options, models, models.qualities,
                                            distortion=distortion, weight=wt)
                        enc = rc.encoded
                    else:
                        enc = encode_image(models(models.qualities[0]), image, options, lmbda=args.lmbda,
                                           distortion=distortion, weight=wt)
                except KeyboardInterrupt:
                    interrupt.seen = True
                    break
                if image.alpha_dropped:
                    notes.append(ALPHA_NOTE)
                for note in notes:
                    print(f"rdopt: note: {job.src}: {note}" if batch else f"rdopt: note: {note}", file=sys.stderr)
                if interrupt.seen and not args.keep_interrupted:
                    break
                atomic_write(job.out, enc.data)
                results.append((job, json_messages(enc.stats, notes) if args.json else enc.stats))
                if not args.json:
                    if batch:
                        tqdm.write(f"{job.src} -> {job.out}", file=report)
                    tqdm.write(format_stats(enc.stats) + ("\n" if batch else ""), file=report)
                bar.update(1)
                if interrupt.seen:
                    break
            interrupted = interrupt.seen
    finally:
        bar.close()
    if args.json and (batch or results):
        docs = [dict(s.to_dict(), input=j.src, output=j.out) for j, s in results]
        print(json.dumps(docs if batch else docs[0], indent=2), file=report)
    if interrupted:
        if batch:
            print(f"rdopt: interrupted; kept the {len(results)} finished file(s) of {len(jobs)}", file=sys.stderr)
        elif results:
            print(f"rdopt: interrupted; wrote the best point found so far to {args.output}", file=sys.stderr)
        else:
            print("rdopt: interrupted; no file written" + ("" if targeted else
                  " (--keep-interrupted writes the best point found so far)"), file=sys.stderr)
        return EXIT_INTERRUPTED
    return 0


ALPHA_NOTE = "the alpha channel was dropped (rdopt codes colour only)"


def json_messages(stats, notes: list[str]):
    """The stats ``--json`` prints: the notes on the input (EXIF orientation, alpha, ICC profile, ROI mask;
    printed on stderr too) before the encode's own messages, and why ``ms_ssim`` is null when it is."""
    from dataclasses import replace

    from ..metrics.quality import MS_SSIM_MIN_SIDE

    extra = []
    if getattr(stats, "ms_ssim", 0.0) is None:
        extra.append(f"ms_ssim is null: MS-SSIM (5 scales of an 11×11 window) needs at least {MS_SSIM_MIN_SIDE} "
                     f"pixels per side, the image is {stats.width}×{stats.height}")
    return replace(stats, messages=(*notes, *stats.messages, *extra))


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
    """``--method sga-bb``: Algorithm 1 of paper 003 (rdopt.api.bitsback)."""
    from ..api.bitsback import encode_image_bb
    from ..api.image import encode_memory_check
    from ..codecs.image.bitsback import load_bitsback
    from ..codecs.image.loading import EMBEDDED
    from ..data.images import load_image
    from ..data.safeio import atomic_write, check_output, is_stdio, read_input_bytes
    from dataclasses import replace

    from . import video_cmd

    video_cmd.check_image_args(args)
    if args.model not in (None, EMBEDDED):
        raise UserError("--method sga-bb uses the bits-back variant of rdopt-msh (rdopt-msh-bb) or a --checkpoint")
    import argparse

    sga_args = argparse.Namespace(**{**vars(args), "method": "sga"})  # line 2 optimizes ŷ by SGA
    options = optimization_options(sga_args, progress=not (args.quiet or args.json))
    bbvi = {k: v for k, v in (("bbvi_steps", args.bbvi_steps), ("bbvi_lr", args.bbvi_lr)) if v is not None}
    try:
        options = replace(options, **bbvi)
    except ValueError as e:
        raise UserError(str(e)) from None
    check_output(args.output, [args.input] + ([args.side_info] if args.side_info else []))
    side_info = read_input_bytes(args.side_info, what="side information") if args.side_info else None
    image = load_image(args.input, check_size=encode_memory_check(options.method, args.model))
    from .common import resolve_quality

    model = load_bitsback(resolve_quality(args), checkpoint=args.checkpoint, lmbda=args.lmbda, device=device_of(args))
    report = sys.stderr if is_stdio(args.output) else sys.stdout
    enc = encode_image_bb(model, image, options, lmbda=args.lmbda, side_info=side_info,
                          source_seed=args.side_info_seed or 0)
    notes = [*image.notes, *([ALPHA_NOTE] if image.alpha_dropped else [])]
    for note in notes:
        print(f"rdopt: note: {note}", file=sys.stderr)
    atomic_write(args.output, enc.data)
    print(json.dumps(json_messages(enc.stats, notes).to_dict(), indent=2) if args.json else format_bb_stats(enc.stats),
          file=report)
    return 0
