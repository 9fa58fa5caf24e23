"""``rdopt eval images …``: the evaluation driver (resumable, shardable with torchrun)."""

from __future__ import annotations

from pathlib import Path

from .common import add_model_args, add_optimization_args, int_list, optimization_options
from .main import UserError, device_of, positive_int


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
    add_model_args(q)
    add_optimization_args(q)
    q.set_defaults(run=run)


def run(args) -> int:
    from ..evaluation import collect_images, parse_crop, run_eval
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
    out = Path(args.out)
    if not out.resolve().parent.is_dir():
        raise UserError(f"output directory does not exist: {out.resolve().parent}")
    try:
        doc = run_eval(images, qualities, methods, out, options, args.model, args.checkpoint, device_of(args),
                       batch=args.batch, trace=args.trace, bitstreams=Path(args.bitstreams) if args.bitstreams else None,
                       progress=not args.quiet, redo_stale=args.redo_stale)
    except ValueError as e:
        raise UserError(str(e)) from None
    if doc:
        print(f"{len(doc['entries'])} entries in {out}")
    return 0
