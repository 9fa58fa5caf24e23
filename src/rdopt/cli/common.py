"""Arguments shared by several subcommands."""

from __future__ import annotations

from .main import UserError, nonneg_float, positive_float, positive_int, thread_count

DEFAULT_QUALITY = 3
# GoP bit-allocation methods (rdopt.infer.allocation.METHODS; written out so that parsing imports no torch)
VIDEO_METHODS = ("amortized", "bao", "sequential", "windowed", "exact", "oeu", "oeu-sequential", "lambda-domain")


def pixel_limit(args) -> int:
    """``--max-pixels``, or the default decoded-size limit."""
    from ..coding.container import DEFAULT_MAX_PIXELS

    return args.max_pixels if getattr(args, "max_pixels", None) is not None else DEFAULT_MAX_PIXELS


def add_model_args(p, default_quality: int | None = DEFAULT_QUALITY, lmbda: bool = False) -> None:
    from ..codecs.names import DEFAULT_IMAGE_MODEL, MODEL_NAMES

    p.add_argument("--model", default=None, choices=MODEL_NAMES,
                   help=f"image model family (default {DEFAULT_IMAGE_MODEL}; a --checkpoint without --model, or for "
                        "rdopt-msh / rdopt-scc, is read as the architecture it holds)")
    p.add_argument("--quality", type=int, default=None, choices=range(1, 9), metavar="{1..8}",
                   help="rate point; same λ as CompressAI's quality (embedded models: 2-6) "
                        f"(default {default_quality}" + (", or the quality nearest to --lmbda" if lmbda else "")
                        + "; a video codec: its own default, 2 for rdopt-video2)")
    p.set_defaults(default_quality=default_quality)
    p.add_argument("--checkpoint", help="weights file for --model (CompressAI checkpoint or state dict; "
                                        "loaded safely: tensors only)")
    if lmbda:
        p.add_argument("--lmbda", type=positive_float, default=None,
                       help="R-D trade-off λ the optimization minimises (bpp + λ·255²·MSE), any value; the model "
                            "of the nearest quality codes it (and decodes it); needs an optimization --method "
                            "(default: the λ of --quality)")


def add_threads_arg(p) -> None:
    p.add_argument("--threads", type=thread_count, default=None,
                   help="CPU threads PyTorch uses, at most the CPUs available (default: PyTorch's choice, usually "
                        "the number of cores)")


# Optimization options: parsed with default None so that giving one to the amortized method can be
# reported; these are the values used when they are not given.
# (The same values as rdopt.infer.image.SolverOptions, which tests/unit/test_cli_defaults.py checks; written out
# here so that parsing never imports torch.)
OPTIMIZATION_DEFAULTS = {"steps": 2000, "lr": 5e-3, "ste_lr": 1e-4, "schedule": "budget", "tau0": 0.5,
                         "decay": 1e-3, "t0": 700, "lr_decay": "none", "seed": 0}
BUDGET_DEFAULTS = {"hold": 0.35, "tau_end": 0.05}  # SolverOptions.hold, .tau_end (given to SolverOptions only if set)
# rdopt.infer.image.METHODS (= rdopt.relax.registry.RELAXATIONS), written out for the same reason (also checked)
IMAGE_METHODS = ("amortized", "sga", "noise", "ste", "map", "danneal")


def add_optimization_args(p, method_default: str | None = "amortized", default_text: str = "amortized") -> None:
    d = OPTIMIZATION_DEFAULTS
    choices = tuple(dict.fromkeys(IMAGE_METHODS + VIDEO_METHODS + ("sga-bb",)))
    p.add_argument("--method", default=method_default, choices=choices, metavar="METHOD",
                   help="how latents are found: amortized = one encoder pass; the others optimize them. Images: "
                        f"{', '.join(m for m in IMAGE_METHODS if m != 'amortized')}, sga-bb (SGA + lossy bits-back: hides "
                        "--side-info in the file, rdopt-msh-bb model); videos (GoP bit allocation): "
                        f"{', '.join(m for m in VIDEO_METHODS if m != 'amortized')} (default {default_text})")
    p.add_argument("--steps", type=positive_int, default=None, help=f"optimization steps (default {d['steps']})")
    p.add_argument("--lr", type=positive_float, default=None,
                   help=f"Adam learning rate of every method but ste (default {d['lr']})")
    p.add_argument("--ste-lr", type=positive_float, default=None,
                   help=f"learning rate of the straight-through ablation (paper: {d['ste_lr']}; --lr is for the "
                        f"others) (default {d['ste_lr']})")
    p.add_argument("--schedule", choices=("budget", "paper"), default=None,
                   help="temperature schedule: fitted to --steps (--hold, --tau-end) or the paper's fixed one "
                        f"(--tau0, --decay, --t0) (default {d['schedule']})")
    p.add_argument("--tau0", type=positive_float, default=None,
                   help=f"initial temperature of the annealed methods (default {d['tau0']})")
    p.add_argument("--decay", type=nonneg_float, default=None, help=f"temperature decay rate c (default {d['decay']})")
    p.add_argument("--t0", type=int, default=None, help=f"steps at tau0 before the decay (default {d['t0']})")
    p.add_argument("--hold", type=nonneg_float, default=None,
                   help=f"budget schedule: fraction of the steps held at tau0 (default {BUDGET_DEFAULTS['hold']})")
    p.add_argument("--tau-end", type=positive_float, default=None,
                   help=f"budget schedule: temperature at the last step (default {BUDGET_DEFAULTS['tau_end']})")
    p.add_argument("--lr-decay", choices=("none", "cosine"), default=None,
                   help=f"learning-rate decay: none, or a half cosine down to 10 %% (default {d['lr_decay']})")
    p.add_argument("--seed", type=int, default=None,
                   help=f"seed of the stochastic relaxations (sga, noise) (default {d['seed']})")


def given_optimization_args(args) -> list[str]:
    """The optimization options given on the command line (as ``--name``)."""
    names = [*OPTIMIZATION_DEFAULTS, *BUDGET_DEFAULTS]
    return ["--" + n.replace("_", "-") for n in names if getattr(args, n, None) is not None]


def optimization_options(args, progress: bool = True):
    from ..infer.options import SolverOptions

    v = {k: (getattr(args, k) if getattr(args, k, None) is not None else d) for k, d in OPTIMIZATION_DEFAULTS.items()}
    extra = {k: getattr(args, k) for k in BUDGET_DEFAULTS if getattr(args, k, None) is not None}
    if v["t0"] < 0:
        raise UserError(f"--t0 must be >= 0, got {v['t0']}")
    try:
        return SolverOptions(
            method=args.method, steps=v["steps"] if args.method != "amortized" else 0, lr=v["lr"], ste_lr=v["ste_lr"],
            schedule=v["schedule"], tau0=v["tau0"], decay=v["decay"], t0=v["t0"], lr_decay=v["lr_decay"],
            seed=v["seed"], progress=progress, **extra,
        )
    except ValueError as e:
        raise UserError(str(e)) from None


def int_list(text: str) -> list[int]:
    try:
        return [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise UserError(f"not a comma-separated list of integers: {text!r}") from None


def resolve_quality(args) -> int:
    """``--quality``, or the quality whose λ is nearest to ``--lmbda`` (:func:`rdopt.codecs.registry.choose_quality`),
    or the command's default."""
    from ..codecs.registry import choose_quality

    lmbda = getattr(args, "lmbda", None)
    if args.quality is None and lmbda is None:
        return args.default_quality
    return choose_quality(image_model(args), args.quality, lmbda, args.checkpoint)


def image_model(args) -> str:
    """``--model``, or the default image model."""
    from ..codecs.names import DEFAULT_IMAGE_MODEL

    return args.model or DEFAULT_IMAGE_MODEL


def load_model_from_args(args, device: str):
    from ..codecs.image.loading import load_model

    return load_model(args.model, resolve_quality(args), checkpoint=args.checkpoint, device=device,
                      lmbda=getattr(args, "lmbda", None))


__all__ = ["BUDGET_DEFAULTS", "IMAGE_METHODS", "OPTIMIZATION_DEFAULTS", "VIDEO_METHODS", "pixel_limit", "add_model_args",
           "add_optimization_args", "add_threads_arg", "int_list", "optimization_options", "load_model_from_args",
           "positive_int", "resolve_quality", "given_optimization_args", "image_model"]
