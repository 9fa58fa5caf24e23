"""Hybrid amortized-iterative inference (Yang, Bamler & Mandt 2020, §3.1–3.2) on a codec's latent graph.

Initialize the latents from the amortized encoder, then optimize them as free variational parameters
with a relaxation of rounding (SGA or an ablation), evaluating the *true* hard-rounded R-D cost along the
way and keeping the best. Each step runs only the decoder-side modules (synthesis, entropy models).
Several images of the same size optimize as one batch (one item per image).

Image SAVI is the generic solver on the codec's graph (:func:`rdopt.infer.codec_graph.codec_graph`): with
the default ``solver="joint"`` all latents are updated together (BAO, paper 001 Alg. 3) — for a
two-level hyperprior exactly the paper-003 procedure; ``"sequential"``, ``"windowed"`` and ``"exact"``
run the other solvers of :mod:`rdopt.infer.dag` on the same graph (a GoP, a user's codec).

Methods (the relaxation, paper Table 1; :mod:`rdopt.relax.registry`):

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
from typing import Any

import torch
from torch import Tensor

from ..core.types import Latents
from ..relax.registry import ANNEALED, RELAXATIONS, relaxation_schedule
from .dag import DagResult, exact, joint, sequential
from .graph import LatentGraph
from .loop import LoopResult
from .options import IMAGE_SOLVERS, NOT_RECORDED, SolverOptions

METHODS = RELAXATIONS
SOLVERS = IMAGE_SOLVERS


@dataclass
class SaviResult:
    latents: Latents  # best continuous latents; quantize with the model to get what is coded
    initial_loss: Tensor  # (B,) true R-D cost of the amortized start
    final_loss: Tensor  # (B,) true R-D cost of ``latents``
    loop: LoopResult | None  # the (outermost) loop's record: trace, steps run, seconds
    messages: list[str] = field(default_factory=list)
    dag: DagResult | None = None  # the solver's full result (stages, counts, fall-backs)


def _true_objective(graph: LatentGraph, target: Any, values: Latents) -> Tensor:
    with torch.no_grad():
        return graph.objective(graph.context(target, None), [values[n] for n in graph.order]).detach()


def savi(graph: LatentGraph, target: Any, options: SolverOptions, init: Latents | None = None,
         control=None) -> SaviResult:
    """Optimize the latents of ``graph`` for the evidence ``target`` (a :class:`rdopt.infer.codec_graph.Target`
    for a codec graph). ``init``: start values (default: the amortized ones; ``joint`` only).

    The result's ``final_loss`` is never above ``initial_loss``: the loop keeps the best true cost seen and
    restarts diverged items (``exact`` falls back to the amortized start, and says so in ``messages``).

    ``control(step, best_latents) -> bool`` (``joint`` only): called after every true evaluation; it may
    change the target's λ in place and return True (the loop then re-evaluates its best point), which is
    how rate control steers λ within one run (:mod:`rdopt.ratecontrol.image`). With a control the final and
    initial losses are those of the last objective."""
    options = options.image()
    start = init if init is not None else graph.amortize(target)
    if not options.optimizes or options.steps == 0:
        loss = _true_objective(graph, target, start)
        return SaviResult(start.detach(), loss, loss, None)
    device = getattr(target, "device", None)
    generator = torch.Generator(device=device) if device is not None else torch.Generator()
    generator.manual_seed(options.seed)
    temperature = options.temperature()
    relax = relaxation_schedule(options.method, temperature, generator)
    lr = options.learning_rate()
    extra = (lambda t: {"tau": temperature(t)}) if options.method in ANNEALED else None
    common = dict(relaxation=relax, eval_every=options.eval_every, progress=options.progress)
    if options.solver == "joint":
        res = joint(graph, target, options.steps, lr, init=init, trace_every=options.trace_every, trace_extra=extra,
                    desc=options.method, control=control, **common)
    elif control is not None:
        raise ValueError(f"control is supported by the joint solver only, not {options.solver!r}")
    elif init is not None:
        raise ValueError(f"init is supported by the joint solver only, not {options.solver!r}")
    elif options.solver in ("sequential", "windowed"):
        res = sequential(graph, target, options.steps, lr, window=options.window if options.solver == "windowed" else None,
                         **common)
    else:
        res = exact(graph, target, options.steps, lr, relaxation=relax, progress=options.progress)
    loop = res.stages[0].loop if res.stages else None
    messages = []
    diverged = torch.zeros_like(res.objective, dtype=torch.bool)
    for st in res.stages:
        diverged |= st.diverged
    if bool(diverged.any()):
        messages.append(
            f"{options.method}: non-finite objective for {int(diverged.sum())} item(s); "
            "kept the best point found before (the amortized start if nothing was better)"
        )
    if res.fell_back is not None and bool(res.fell_back.any()):
        messages.append(f"{options.method}/{options.solver}: ended worse than the amortized start for "
                        f"{int(res.fell_back.sum())} item(s); returned the amortized latents")
    if res.interrupted:
        steps = sum(st.steps for st in res.stages)
        messages.append(f"{options.method}: interrupted after {steps} steps; using the best so far")
    return SaviResult(res.values, res.initial_objective, res.objective, loop, messages, res)


__all__ = ["METHODS", "NOT_RECORDED", "SOLVERS", "SolverOptions", "SaviResult", "savi"]
