"""Arguments shared by several subcommands."""

from __future__ import annotations

from .main import UserError, nonneg_float, positive_float, positive_int


def add_model_args(p, default_quality: int | None = 3) -> None:
    from ..models.registry import EMBEDDED, MODEL_NAMES

    p.add_argument("--model", default=EMBEDDED, choices=MODEL_NAMES, help=f"model family (default {EMBEDDED})")
    p.add_argument("--quality", type=int, default=default_quality, choices=range(1, 9), metavar="{1..8}",
                   help="rate point; same λ as CompressAI's quality (embedded models: 2-6)")
    p.add_argument("--checkpoint", help="weights file for --model (CompressAI checkpoint or state dict)")


def add_optimization_args(p) -> None:
    from ..infer.image import METHODS, SaviOptions as D

    p.add_argument("--method", default="amortized", choices=METHODS, help="how latents are found (default amortized)")
    p.add_argument("--steps", type=positive_int, default=D.steps, help=f"optimization steps (default {D.steps})")
    p.add_argument("--lr", type=positive_float, default=D.lr, help=f"Adam learning rate (default {D.lr:g})")
    p.add_argument("--ste-lr", type=positive_float, default=D.ste_lr,
                   help=f"learning rate of the straight-through ablation (paper: {D.ste_lr:g}; --lr is for the others)")
    p.add_argument("--schedule", choices=("budget", "paper"), default=D.schedule,
                   help=f"temperature schedule: fitted to --steps (hold, tau-end) or the paper's fixed one "
                        f"(tau0, decay, t0) (default {D.schedule})")
    p.add_argument("--tau0", type=positive_float, default=D.tau0)
    p.add_argument("--decay", type=nonneg_float, default=D.decay, help="paper schedule: temperature decay rate c")
    p.add_argument("--t0", type=int, default=D.t0, help="paper schedule: steps at tau0 before the decay")
    p.add_argument("--hold", type=nonneg_float, default=D.hold,
                   help=f"budget schedule: fraction of the steps held at tau0 (default {D.hold})")
    p.add_argument("--tau-end", type=positive_float, default=D.tau_end,
                   help=f"budget schedule: temperature at the last step (default {D.tau_end})")
    p.add_argument("--lr-decay", choices=("none", "cosine"), default=D.lr_decay)
    p.add_argument("--seed", type=int, default=D.seed)


def optimization_options(args, progress: bool = True):
    from ..infer.image import SaviOptions

    if args.t0 < 0:
        raise UserError(f"--t0 must be >= 0, got {args.t0}")
    try:
        return SaviOptions(
            method=args.method, steps=args.steps if args.method != "amortized" else 0, lr=args.lr, ste_lr=args.ste_lr,
            schedule=args.schedule, tau0=args.tau0, decay=args.decay, t0=args.t0, hold=args.hold,
            tau_end=args.tau_end, lr_decay=args.lr_decay, seed=args.seed, progress=progress,
        )
    except ValueError as e:
        raise UserError(str(e)) from None


def int_list(text: str) -> list[int]:
    try:
        return [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise UserError(f"not a comma-separated list of integers: {text!r}") from None


def load_model_from_args(args, device: str):
    from ..models.registry import load_model

    return load_model(args.model, args.quality, checkpoint=args.checkpoint, device=device)


__all__ = ["add_model_args", "add_optimization_args", "int_list", "optimization_options", "load_model_from_args",
           "positive_int"]
