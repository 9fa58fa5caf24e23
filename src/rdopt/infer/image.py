"""Hybrid amortized-iterative inference for images (Yang, Bamler & Mandt 2020, §3.1–3.2).

Initialize (y, z) from the amortized encoder, then optimize them as free variational parameters with a
relaxation of rounding (SGA or an ablation), evaluating the *true* hard-rounded R-D cost along the
way and keeping the best. Each step runs only the decoder-side modules (``h_s``, ``g_s``, entropy
models). Several images of the same size optimize as one batch (one item per image).

Methods (paper Table 1):

==========  ===============================================================================
amortized   no optimization: the encoder's output, rounded
sga         [M1] Stochastic Gumbel Annealing, ψ = atanh, τ annealed (Eq. 4–5, S3)
noise       [A3] additive uniform noise (Campos et al. 2019)
ste         [A2] straight-through rounding (known to diverge; the loop falls back)
map         [A1] no rounding during optimization, round at the end
danneal     [A4] deterministic annealing: expectation of SGA's rounding inside the loss
==========  ===============================================================================
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import Tensor

from ..relax import rounding
from ..relax.schedules import Schedule, constant, cosine_factor, exp_decay_after, fitted_to_budget
from ..types import Latents, LatentModel, Relaxation
from .loop import LoopResult, optimize

METHODS = ("amortized", "sga", "noise", "ste", "map", "danneal")
ANNEALED = ("sga", "danneal")


@dataclass(frozen=True)
class SaviOptions:
    """Settings of one image optimization. Defaults are the paper's (S3): Adam, lr 5e-3, 2000 steps,
    τ(t) = min(τ0, τ0·exp(−c(t − t0))) with τ0 = 0.5, c = 1e-3, t0 = 700.

    ``schedule="budget"`` rescales the temperature schedule to the step budget (hold τ0 for a fraction
    ``hold`` of the steps, then decay exponentially to ``tau_end`` at the last step) and ``lr_decay="cosine"`` lowers the learning rate
    to 10 % along a half cosine — for short budgets (see ``benchmarks/``)."""

    method: str = "sga"
    steps: int = 2000
    lr: float = 5e-3
    schedule: str = "paper"  # "paper" | "budget"
    tau0: float = 0.5
    decay: float = 1e-3
    t0: int = 700
    hold: float = 0.35  # budget schedule: fraction of the steps at tau0
    tau_end: float = 0.05  # budget schedule: temperature at the last step
    lr_decay: str = "none"  # "none" | "cosine"
    eval_every: int = 10
    trace_every: int = 0
    seed: int = 0
    progress: bool = True

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"unknown method {self.method!r}; choose from {', '.join(METHODS)}")
        if self.steps < 0 or self.steps > 1_000_000:
            raise ValueError(f"steps must be in 0…1000000, got {self.steps}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.schedule not in ("paper", "budget"):
            raise ValueError(f"unknown schedule {self.schedule!r} (paper, budget)")
        if self.lr_decay not in ("none", "cosine"):
            raise ValueError(f"unknown lr decay {self.lr_decay!r} (none, cosine)")
        if not self.tau0 > 0 or self.decay < 0 or self.t0 < 0:
            raise ValueError("temperature schedule needs tau0 > 0, decay >= 0, t0 >= 0")
        if not 0 <= self.hold < 1 or not 0 < self.tau_end <= self.tau0:
            raise ValueError("budget schedule needs 0 <= hold < 1 and 0 < tau_end <= tau0")

    def temperature(self) -> Schedule:
        if self.schedule == "budget":
            return fitted_to_budget(max(self.steps, 1), tau0=self.tau0, tau_end=self.tau_end, hold=self.hold)
        return exp_decay_after(self.tau0, self.decay, self.t0)

    def learning_rate(self) -> Schedule:
        if self.lr_decay == "cosine":
            factor = cosine_factor(self.steps)
            return lambda t: self.lr * factor(t)
        return constant(self.lr)


@dataclass
class SaviResult:
    latents: Latents  # best continuous latents; quantize with the model to get what is coded
    initial_loss: Tensor  # (B,) true R-D cost of the amortized start
    final_loss: Tensor  # (B,) true R-D cost of ``latents``
    loop: LoopResult | None
    messages: list[str] = field(default_factory=list)


def relaxation_at(method: str, temperature: Schedule, generator: torch.Generator | None) -> Callable[[int], Relaxation]:
    """``step -> relaxation`` for a method name."""
    if method == "sga":
        return lambda t: rounding.sga(temperature(t), generator)
    if method == "danneal":
        return lambda t: rounding.deterministic_annealing(temperature(t))
    if method == "noise":
        relax = rounding.uniform_noise(generator)
        return lambda t: relax
    if method == "ste":
        relax = rounding.straight_through()
        return lambda t: relax
    if method == "map":
        relax = rounding.identity()
        return lambda t: relax
    if method == "amortized":
        relax = rounding.hard()
        return lambda t: relax
    raise ValueError(f"unknown method {method!r}")


def rd_objective(
    model: LatentModel, latents: Latents, x: Tensor, relax: Relaxation, height: int, width: int
) -> tuple[Tensor, Tensor, Tensor]:
    """Per-image (loss, bpp, mse) of the (padded) target ``x`` whose visible part is height×width:
    rate over all coded latents divided by the visible pixel count, distortion on the visible part."""
    ev = model.evaluate(latents, relax, relax)
    n = height * width
    bpp = ev.bits / n
    mse = (ev.x_hat[..., :height, :width] - x[..., :height, :width]).pow(2).flatten(1).mean(1)
    return bpp + model.lmbda * 255.0**2 * mse, bpp, mse


def savi(
    model: LatentModel,
    x: Tensor,
    options: SaviOptions,
    height: int | None = None,
    width: int | None = None,
    init: Latents | None = None,
) -> SaviResult:
    """Optimize the latents of a batch of (padded) images ``x`` (B×3×H×W in [0, 1]).

    ``height``/``width`` give the visible size (default: all of ``x``). The result's ``final_loss`` is
    never above ``initial_loss``: the loop keeps the best true cost seen and restarts diverged items.
    """
    height = x.shape[-2] if height is None else height
    width = x.shape[-1] if width is None else width
    with torch.no_grad():
        start = (init if init is not None else model.amortize(x)).detach()
    hard = rounding.hard()

    def true(params) -> Tensor:
        return rd_objective(model, Latents(params[0], params[1]), x, hard, height, width)[0]

    if options.method == "amortized" or options.steps == 0:
        with torch.no_grad():
            loss = true([start.y, start.z])
        return SaviResult(start, loss, loss, None)

    generator = torch.Generator(device=x.device).manual_seed(options.seed)
    temperature = options.temperature()
    relax_at = relaxation_at(options.method, temperature, generator)

    def relaxed(params, step: int) -> Tensor:
        return rd_objective(model, Latents(params[0], params[1]), x, relax_at(step), height, width)[0]

    extra = (lambda t: {"tau": temperature(t)}) if options.method in ANNEALED else None
    result = optimize(
        [start.y, start.z], relaxed, true, options.steps, options.learning_rate(),
        eval_every=options.eval_every, trace_every=options.trace_every, trace_extra=extra,
        progress=options.progress, desc=options.method,
    )
    messages = []
    if bool(result.diverged.any()):
        messages.append(
            f"{options.method}: non-finite objective for {int(result.diverged.sum())} image(s); "
            "kept the best point found before (the amortized start if nothing was better)"
        )
    if result.interrupted:
        messages.append(f"{options.method}: interrupted after {result.steps_run} steps; using the best so far")
    return SaviResult(Latents(*result.params), result.initial_loss, result.best_loss, result, messages)
