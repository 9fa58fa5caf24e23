"""``rdopt train``: train or fine-tune a mean-scale hyperprior with the single-sample ELBO."""

from __future__ import annotations

import json

from .main import UserError, device_of, positive_float, positive_int


def add_parser(sub) -> None:
    from ..training import TrainConfig as D

    p = sub.add_parser("train", help="train or fine-tune a hyperprior model (single-sample ELBO)")
    p.add_argument("--out", required=True, help="training-state checkpoint (resumed if it exists)")
    p.add_argument("--lmbda", type=positive_float, help="R-D trade-off λ (default: CompressAI's for --quality)")
    p.add_argument("--quality", type=int, choices=range(1, 9), metavar="{1..8}", help="use CompressAI's λ of this quality")
    p.add_argument("--steps", type=positive_int, required=True, help="training steps (total, counting resumed ones)")
    p.add_argument("--batch", type=positive_int, default=8, help="crops per step")
    p.add_argument("--crop", type=positive_int, default=128, help="crop side in pixels")
    p.add_argument("--lr", type=positive_float, default=3e-4, help="Adam learning rate")
    p.add_argument("--channels", type=positive_int, nargs=2, metavar=("N", "M"),
                   help="model size (default 64 96, or that of --init); with --init, a larger size widens the "
                        "initial model without changing its reconstruction (mean-scale hyperprior only)")
    p.add_argument("--architecture", default="rdopt-msh", choices=("rdopt-msh", "mbt2018-mean", "bmshj2018-hyperprior"),
                   help="model family to train")
    p.add_argument("--init", help="weights to start from (fine-tuning)")
    p.add_argument("--data", help="folder of training images (default: the embedded recipe)")
    p.add_argument("--export", help="write shipped weights here at the end (float16, fine scale table)")
    p.add_argument("--scales", type=positive_float, nargs="+", default=D.scales, metavar="S",
                   help=f"downscaling factors in (0, 1] that crops are drawn at (default {' '.join(map(str, D.scales))})")
    p.add_argument("--extra-data", metavar="DIR",
                   help="embedded recipe only: a folder of photos added as a third source "
                        "(benchmarks/train/fetch_photos.py fetches the natural photos of Debian's wallpaper packages)")
    p.add_argument("--source-weights", type=float, nargs="+", metavar="W",
                   help="embedded recipe only: share of crops from bigbuckbunny, the scikit-image photos "
                        "[and --extra-data] (default: uniform over images)")
    p.add_argument("--color-augment", type=float, default=D.color_augment, metavar="P",
                   help="probability that a crop gets a random colour transform: exposure, white balance, gamma, "
                        "hue, saturation, clipped to [0, 1] (default 0)")
    p.add_argument("--scale-floor-weight", type=float, default=D.scale_floor_weight, metavar="B",
                   help="weight of the penalty on predicted scales below the entropy model's floor (default 0)")
    p.add_argument("--seed", type=int, default=0, help="seed of the crops and the initialization")
    p.add_argument("--threads", type=positive_int,
                   help="CPU threads PyTorch uses (default: PyTorch's choice, usually the number of cores)")
    p.set_defaults(run=run)


def run(args) -> int:
    from ..models.registry import COMPRESSAI_LAMBDAS
    from ..models.widen import WidenError
    from ..training import TrainConfig, train

    if args.lmbda is None and args.quality is None:
        raise UserError("give --lmbda or --quality")
    if any(s > 1 for s in args.scales):
        raise UserError(f"--scales must lie in (0, 1], got {' '.join(map(str, args.scales))}")
    if args.source_weights is not None:
        if args.data:
            raise UserError("--source-weights applies to the embedded recipe, not to --data")
        if min(args.source_weights) < 0 or sum(args.source_weights) <= 0:
            raise UserError("--source-weights must be non-negative and not all zero")
        if len(args.source_weights) != 2 + bool(args.extra_data):
            raise UserError(f"--source-weights needs {2 + bool(args.extra_data)} values (bigbuckbunny, photos"
                            f"{', --extra-data' if args.extra_data else ''})")
    if args.extra_data and args.data:
        raise UserError("--extra-data adds to the embedded recipe; it cannot be combined with --data")
    if not 0 <= args.color_augment <= 1:
        raise UserError(f"--color-augment is a probability in [0, 1], got {args.color_augment}")
    if args.scale_floor_weight < 0:
        raise UserError(f"--scale-floor-weight must be non-negative, got {args.scale_floor_weight}")
    lmbda = args.lmbda if args.lmbda is not None else COMPRESSAI_LAMBDAS[args.quality]
    cfg = TrainConfig(
        out=args.out, lmbda=lmbda, steps=args.steps, architecture=args.architecture,
        channels=tuple(args.channels) if args.channels else None, batch=args.batch, crop=args.crop, lr=args.lr, init=args.init,
        data=args.data, export=args.export, seed=args.seed, threads=args.threads,
        scales=tuple(args.scales), source_weights=tuple(args.source_weights) if args.source_weights else None,
        extra_data=args.extra_data, color_augment=args.color_augment, scale_floor_weight=args.scale_floor_weight,
    )
    try:
        summary = train(cfg, device=device_of(args))
    except WidenError as e:
        raise UserError(f"--channels: {e}") from None
    print(json.dumps(summary, indent=2))
    return 0
