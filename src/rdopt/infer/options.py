"""One vocabulary of solver settings for every optimization rdopt runs: image SAVI (SGA and its
ablations), GoP bit allocation and the bits-back BBVI of the decoder.

:class:`SolverOptions` holds what a user chooses — the relaxation (``method``), the search (``solver``),
the step budgets of every stage, the learning rate, the temperature schedule, the window, the seed — and
each solver reads the fields that concern it:

=================  =============================================================================
image SAVI         ``method`` (relaxation or ``amortized``), ``solver`` (joint, sequential,
                   windowed, exact), ``steps``, ``lr`` / ``ste_lr``, schedule fields, ``window``
GoP allocation     ``solver`` (amortized, bao = joint, sequential, windowed, exact, oeu,
                   oeu-sequential, lambda-domain), ``method`` (the relaxation of the SAVI stages),
                   ``steps`` (I-frame latents), ``steps_p`` (each P-frame latent), ``steps_bao``,
                   ``exact_steps`` / ``exact_lr``, ``oeu_steps`` / ``oeu_lr``, ``latents``,
                   ``tau0`` / ``hold`` / ``tau_end`` (fitted to each stage's budget), ``window``
bits-back BBVI     ``bbvi_steps``, ``bbvi_lr`` (the decoder repeats them: they are in the file)
=================  =============================================================================

Two settings have a per-task default, left ``None`` until a solver resolves it (:meth:`resolved`): the
learning rate (images 5e-3, paper 003 S3; GoPs 1e-3, paper 001 §5) and the window ``C`` of ``windowed``
(images 1, GoPs 2, paper 001 App. A.7).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

from ..relax.registry import RELAXATIONS
from ..relax.schedules import Schedule, constant, cosine_factor, exp_decay_after, fitted_to_budget

#: the image solvers (the DAG solvers of :mod:`rdopt.infer.dag` on an image's graph)
IMAGE_SOLVERS = ("joint", "sequential", "windowed", "exact")
#: the GoP allocation methods (:mod:`rdopt.infer.allocation`); ``joint`` is accepted as ``bao``
GOP_SOLVERS = ("amortized", "bao", "sequential", "windowed", "exact", "oeu", "oeu-sequential", "lambda-domain")
#: which P-frame latents a GoP allocation optimizes (paper 001 Table 3)
LATENT_CHOICES = {"y": ("residual",), "w": ("motion",), "yw": ("motion", "residual")}
#: per-task defaults of the settings left ``None``
TASK_DEFAULTS = {"image": {"lr": 5e-3, "window": 1}, "gop": {"lr": 1e-3, "window": 2}}
#: option fields that do not change a result (not recorded, not compared when resuming)
NOT_RECORDED = ("method", "progress", "trace_every")
MAX_STEPS = 1_000_000


@dataclass(frozen=True)
class SolverOptions:
    """Settings of one optimization (see the module docstring for who reads what).

    ``schedule="budget"`` (default) fits the temperature schedule to the step budget: hold τ0 for a
    fraction ``hold`` of the steps, then decay exponentially to ``tau_end`` at the last step (with 2000
    steps close to paper 003's). ``schedule="paper"`` is paper 003 S3's ``τ(t) = min(τ0, τ0·exp(−c(t − t0)))``
    with c = ``decay``, t0 = ``t0`` whatever the budget. ``lr_decay="cosine"`` lowers the learning rate to
    10 % along a half cosine. ``ste_lr`` is the straight-through ablation's rate (paper 003 S3: 1e-4; it
    diverges at SGA's). A GoP's stages always use the budget schedule, fitted to each stage."""

    method: str = "sga"
    solver: str = "joint"
    steps: int = 2000
    steps_p: int = 400
    steps_bao: int | None = None  # GoP BAO's joint steps (default: steps)
    lr: float | None = None
    ste_lr: float = 1e-4
    schedule: str = "budget"  # "budget" | "paper"
    tau0: float = 0.5
    decay: float = 1e-3
    t0: int = 700
    hold: float = 0.35  # budget schedule: fraction of the steps at tau0
    tau_end: float = 0.05  # budget schedule: temperature at the last step
    lr_decay: str = "none"  # "none" | "cosine"
    window: int | None = None
    latents: str = "yw"
    exact_steps: int = 2
    exact_lr: float = 0.01
    oeu_steps: int = 100
    oeu_lr: float = 1e-4
    bbvi_steps: int = 300
    bbvi_lr: float = 3e-3
    eval_every: int = 10
    trace_every: int = 0
    seed: int = 0
    progress: bool = False  # a library call is quiet; the command line turns the bar on

    def __post_init__(self):
        if self.method not in RELAXATIONS:
            raise ValueError(f"unknown method {self.method!r}; choose from {', '.join(RELAXATIONS)}")
        if self.solver not in IMAGE_SOLVERS + GOP_SOLVERS:
            raise ValueError(f"unknown solver {self.solver!r}; images: {', '.join(IMAGE_SOLVERS)}; "
                             f"GoPs: {', '.join(GOP_SOLVERS)}")
        for name in ("steps", "steps_p", "exact_steps", "oeu_steps", "bbvi_steps"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= MAX_STEPS:
                raise ValueError(f"{name} must be an integer in 0…{MAX_STEPS}, got {v!r}")
        if self.steps_bao is not None and not 0 <= self.steps_bao <= MAX_STEPS:
            raise ValueError(f"steps_bao must be in 0…{MAX_STEPS}, got {self.steps_bao}")
        for name in ("lr", "ste_lr", "exact_lr", "oeu_lr"):
            v = getattr(self, name)
            if v is not None and not v > 0:
                raise ValueError(f"{name} must be > 0, got {v}")
        if not 0 < self.bbvi_lr < 1:
            raise ValueError(f"BBVI learning rate must be in (0, 1), got {self.bbvi_lr}")
        if self.schedule not in ("paper", "budget"):
            raise ValueError(f"unknown schedule {self.schedule!r} (paper, budget)")
        if self.lr_decay not in ("none", "cosine"):
            raise ValueError(f"unknown lr decay {self.lr_decay!r} (none, cosine)")
        if not self.tau0 > 0 or self.decay < 0 or self.t0 < 0:
            raise ValueError("temperature schedule needs tau0 > 0, decay >= 0, t0 >= 0")
        if not 0 <= self.hold < 1 or not 0 < self.tau_end <= self.tau0:
            raise ValueError("budget schedule needs 0 <= hold < 1 and 0 < tau_end <= tau0")
        if self.window is not None and self.window < 0:
            raise ValueError(f"window must be >= 0, got {self.window}")
        if self.latents not in LATENT_CHOICES:
            raise ValueError(f"latents is one of {', '.join(LATENT_CHOICES)}, got {self.latents!r}")

    # -- per-task defaults -------------------------------------------------------------------------
    def resolved(self, task: str) -> SolverOptions:
        """These options with ``lr`` and ``window`` filled in from ``task``'s defaults (``image`` or ``gop``)
        where they are ``None``."""
        d = TASK_DEFAULTS[task]
        return replace(self, **{k: v for k, v in d.items() if getattr(self, k) is None})

    @property
    def optimizes(self) -> bool:
        """False for the amortized encode (no search)."""
        return self.method != "amortized" and self.solver != "amortized"

    def image(self) -> SolverOptions:
        """The options resolved for image SAVI; a GoP-only solver is refused."""
        if self.solver not in IMAGE_SOLVERS:
            raise ValueError(f"solver {self.solver!r} is a GoP allocation method; images take "
                             f"{', '.join(IMAGE_SOLVERS)}")
        return self.resolved("image")

    def gop(self) -> SolverOptions:
        """The options resolved for GoP allocation (``joint`` read as ``bao``, ``method="amortized"`` as the
        amortized allocation)."""
        solver = "bao" if self.solver == "joint" else self.solver
        if self.method == "amortized":
            solver = "amortized"
        return replace(self.resolved("gop"), solver=solver)

    # -- image SAVI schedules ------------------------------------------------------------------------
    def temperature(self) -> Schedule:
        if self.schedule == "budget":
            return fitted_to_budget(max(self.steps, 1), tau0=self.tau0, tau_end=self.tau_end, hold=self.hold)
        return exp_decay_after(self.tau0, self.decay, self.t0)

    @property
    def method_lr(self) -> float:
        """The learning rate this method runs at (``ste_lr`` for STE, else ``lr``; images' default if unset)."""
        if self.method == "ste":
            return self.ste_lr
        return TASK_DEFAULTS["image"]["lr"] if self.lr is None else self.lr

    def learning_rate(self) -> Schedule:
        lr = self.method_lr
        if self.lr_decay == "cosine":
            factor = cosine_factor(self.steps)
            return lambda t: lr * factor(t)
        return constant(lr)

    @property
    def bao_steps(self) -> int:
        return self.steps if self.steps_bao is None else self.steps_bao

    def recorded(self) -> dict:
        """The settings of an image optimization that change its result, as recorded in results files and
        compared on resume: the image-resolved fields but the method (recorded per entry), the display-only
        ones and the GoP / bits-back ones."""
        d = asdict(self.resolved("image"))
        for k in NOT_RECORDED + GOP_ONLY + BBVI_ONLY:
            d.pop(k)
        return d


#: the settings each GoP allocation method reads (every method also reads seed, eval_every, progress)
_ANNEALED_STAGES = ("method", "latents", "steps", "steps_p", "lr", "tau0", "hold", "tau_end")
GOP_READS = {
    "amortized": (),
    "bao": _ANNEALED_STAGES + ("steps_bao",),
    "sequential": _ANNEALED_STAGES,
    "windowed": _ANNEALED_STAGES + ("window",),
    "lambda-domain": _ANNEALED_STAGES,
    "exact": ("exact_steps", "exact_lr"),
    "oeu": ("oeu_steps", "oeu_lr"),
    "oeu-sequential": ("oeu_steps", "oeu_lr"),
}


def ignored_by(solver: str, fields) -> list[str]:
    """The settings among ``fields`` that the GoP allocation method ``solver`` does not read."""
    reads = GOP_READS["bao" if solver == "joint" else solver]
    return [f for f in fields if f not in reads]


#: fields only a GoP allocation reads; fields only bits-back reads
GOP_ONLY = ("steps_p", "steps_bao", "latents", "exact_steps", "exact_lr", "oeu_steps", "oeu_lr")
BBVI_ONLY = ("bbvi_steps", "bbvi_lr")

__all__ = ["BBVI_ONLY", "GOP_ONLY", "GOP_READS", "ignored_by", "GOP_SOLVERS", "IMAGE_SOLVERS", "LATENT_CHOICES", "NOT_RECORDED", "SolverOptions",
           "TASK_DEFAULTS"]
