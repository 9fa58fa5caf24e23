"""The one optimization loop of rdopt.

``optimize`` minimises a relaxed objective over a list of parameter tensors whose leading dimension is
the batch (one item per image, frame or graph node), with Adam (or SGD), a learning-rate schedule, and
a *true* objective evaluated every ``eval_every`` steps. It keeps, per batch item, the best parameters
seen under the true objective — so the result is never worse than the start — and survives
divergence (non-finite values restore the item's best parameters and are reported) and Ctrl-C
(returns the best so far, flagged as interrupted).

The caller supplies the objectives as closures; the loop knows nothing about models or relaxations.
Both objectives return one value per batch item. Items must be independent (the sum of their losses
is differentiated), which holds for latents of different images under a fixed model in eval mode.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch
from torch import Tensor
from tqdm import tqdm

from ..relax.schedules import Schedule

RelaxedObjective = Callable[[Sequence[Tensor], int], Tensor]
TrueObjective = Callable[[Sequence[Tensor]], Tensor]


@dataclass
class LoopResult:
    params: list[Tensor]  # best parameters per item under the true objective (detached)
    best_loss: Tensor  # (B,) true objective at ``params``
    initial_loss: Tensor  # (B,) true objective at the start
    best_step: Tensor  # (B,) step at which ``params`` were found (0 = the start)
    steps_run: int
    interrupted: bool
    diverged: Tensor  # (B,) bool: a non-finite value occurred for the item
    evaluations: int  # objective evaluations (relaxed + true)
    seconds: float
    # per traced step: step, true and relaxed objective at the same point (the parameters the step starts
    # from), gap = true − relaxed (paper 003 Fig. 3's discretization gap), lr (+ extras)
    trace: list[dict] = field(default_factory=list)


def loop_state(step: int, params, opt: torch.optim.Optimizer, best_params, best: Tensor, best_step: Tensor,
               initial: Tensor, diverged: Tensor, evaluations: int, trace: list[dict], seconds: float) -> dict:
    """The state of :func:`optimize` after ``step`` steps, on the CPU: what ``optimize(..., resume=state)`` goes
    on from (the parameters, the optimizer's moments, the best-so-far points and losses, the counts)."""
    def cpu(t: Tensor) -> Tensor:
        return t.detach().cpu().clone()

    return {"step": int(step), "params": [cpu(p) for p in params], "optimizer": _optimizer_state(opt.state_dict(), cpu),
            "best_params": [cpu(p) for p in best_params], "best": cpu(best), "best_step": cpu(best_step),
            "initial": cpu(initial), "diverged": cpu(diverged), "evaluations": int(evaluations),
            "trace": [dict(t) for t in trace], "seconds": float(seconds)}


def _optimizer_state(state: dict, copy: Callable[[Tensor], Tensor]) -> dict:
    """An optimizer's ``state_dict`` with ``copy`` applied to its tensors (Adam keeps the tensors it is loaded with
    and updates them in place, so neither a snapshot nor a resume may share them)."""
    return {"state": {k: {n: copy(v) if isinstance(v, Tensor) else v for n, v in st.items()}
                      for k, st in state["state"].items()},
            "param_groups": state["param_groups"]}


def _masked_copy_(dst: Tensor, src: Tensor, mask: Tensor) -> None:
    m = mask.reshape(-1, *([1] * (dst.dim() - 1)))
    dst.copy_(torch.where(m, src, dst))


OptimizerFactory = Callable[[list[Tensor], float], torch.optim.Optimizer]
"""``factory(params, lr) -> torch.optim.Optimizer``: an optimizer passed as a value."""

OPTIMIZERS: dict[str, OptimizerFactory] = {
    "adam": lambda params, lr: torch.optim.Adam(params, lr=lr),
    "sgd": lambda params, lr: torch.optim.SGD(params, lr=lr),
}


def make_optimizer(optimizer: "str | OptimizerFactory", params: list[Tensor], lr: float) -> torch.optim.Optimizer:
    """The optimizer of ``params``: a factory (any ``torch.optim`` class or a callable ``(params, lr)``), or
    one of the names in :data:`OPTIMIZERS` (the paper's Adam, plain ``sgd`` for the exact solver)."""
    if callable(optimizer):
        return optimizer(params, lr=lr) if isinstance(optimizer, type) else optimizer(params, lr)
    try:
        return OPTIMIZERS[optimizer](params, lr)
    except KeyError:
        raise ValueError(f"unknown optimizer {optimizer!r} ({', '.join(OPTIMIZERS)}, or a factory)") from None


def optimize(
    params0: Sequence[Tensor],
    relaxed: RelaxedObjective,
    true: TrueObjective,
    steps: int,
    lr: float | Schedule,
    *,
    optimizer: "str | OptimizerFactory" = "adam",
    eval_every: int = 10,
    trace_every: int = 0,
    trace_extra: Callable[[int], dict] | None = None,
    progress: bool = False,
    desc: str = "optimize",
    control: Callable[[int, list[Tensor]], bool] | None = None,
    snapshot: Callable[[dict], None] | None = None,
    snapshot_seconds: float = 0.0,
    resume: dict | None = None,
) -> LoopResult:
    """Minimise ``relaxed(params, step).sum()`` for ``steps`` steps; keep the best under ``true``.

    Args:
        params0: initial values (not modified); leading dimension = batch items.
        relaxed: differentiable objective, one value per item; may be stochastic in ``step``.
        true: the objective that counts (e.g. hard-rounded R-D cost), one value per item, no gradient.
        lr: a constant or a schedule ``step -> learning rate``.
        eval_every: evaluate ``true`` every this many steps (and after the last step).
        trace_every: record relaxed and true objectives every this many steps (0: no trace), both at
            the point the step starts from (one extra true evaluation per traced step, which does not
            take part in the best-so-far selection); traced steps also evaluate ``true`` after the step.
        control: called after every evaluation of ``true`` as ``control(step, best_params)``; it may change
            the objectives (e.g. λ, read by both closures) and then returns True: the best-so-far values
            are re-evaluated under the changed ``true`` (the best parameters stay, Adam's state and the
            schedules go on). Rate control uses it (:mod:`rdopt.ratecontrol.image`).
        snapshot: called as ``snapshot(state)`` after an evaluation of ``true`` (before the last step) once
            ``snapshot_seconds`` have passed since the start or the last snapshot: ``state`` is everything the loop
            needs to go on from there (:func:`loop_state`; tensors on the CPU). ``resume=state`` starts the loop
            from such a state instead of ``params0``: with the same objectives (and any noise generator they
            draw from restored to its state at the snapshot) the loop ends exactly as if it had not stopped. Not
            with ``control`` (whatever the hook changed is not part of the state).
    """
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    if eval_every <= 0:
        raise ValueError(f"eval_every must be > 0, got {eval_every}")
    if resume is not None and control is not None:
        raise ValueError("resume: a loop with a control hook cannot resume (the hook's own state is not saved)")
    lr_at = lr if callable(lr) else (lambda _t, _v=float(lr): _v)
    params = [p.detach().clone().requires_grad_(True) for p in params0]
    opt = make_optimizer(optimizer, params, lr_at(0))

    t_start = time.perf_counter()
    evaluations = 0
    first = 1
    if resume is None:
        with torch.no_grad():
            initial = true(params).detach()
        evaluations += 1
        batch = initial.shape[0]
        best = torch.where(torch.isfinite(initial), initial, torch.full_like(initial, math.inf))
        best_params = [p.detach().clone() for p in params]
        best_step = torch.zeros(batch, dtype=torch.long, device=initial.device)
        diverged = ~torch.isfinite(initial)
        trace: list[dict] = []
    else:
        first, evaluations, trace = int(resume["step"]) + 1, int(resume["evaluations"]), list(resume["trace"])
        if len(resume["params"]) != len(params) or any(a.shape != p.shape for a, p in zip(resume["params"], params)):
            raise ValueError("resume: the saved loop state is of other parameters")
        with torch.no_grad():
            for p, v in zip(params, resume["params"]):
                p.copy_(v)
        opt.load_state_dict(_optimizer_state(resume["optimizer"], Tensor.clone))
        like = params[0]
        best_params = [v.to(device=p.device, dtype=p.dtype).clone() for v, p in zip(resume["best_params"], params)]
        initial, best = (resume[k].to(like.device).clone() for k in ("initial", "best"))
        best_step, diverged = (resume[k].to(like.device).clone() for k in ("best_step", "diverged"))
        t_start -= float(resume["seconds"])
    interrupted = False
    step = first - 1
    last_snapshot = time.perf_counter()

    def evaluate_true(step_no: int) -> Tensor:
        nonlocal evaluations
        with torch.no_grad():
            cur = true(params).detach()
        evaluations += 1
        finite = torch.isfinite(cur)
        diverged.logical_or_(~finite)
        better = finite & (cur < best)
        if bool(better.any()):
            for bp, p in zip(best_params, params):
                _masked_copy_(bp, p.detach(), better)
            best.copy_(torch.where(better, cur, best))
            best_step.copy_(torch.where(better, torch.full_like(best_step, step_no), best_step))
        if bool((~finite).any()):  # restart diverged items from their best point
            with torch.no_grad():
                for bp, p in zip(best_params, params):
                    _masked_copy_(p, bp, ~finite)
        return cur

    bar = tqdm(total=steps, initial=first - 1, desc=desc, unit="step", disable=not progress, dynamic_ncols=True,
               leave=False)
    try:
        for step in range(first, steps + 1):
            for g in opt.param_groups:
                g["lr"] = lr_at(step - 1)
            loss_vec = relaxed(params, step - 1)
            evaluations += 1
            traced = trace_every > 0 and (step % trace_every == 0 or step == steps)
            if traced:
                with torch.no_grad():
                    true_here = true(params).detach()
                evaluations += 1
            finite = torch.isfinite(loss_vec.detach())
            if not bool(finite.all()):
                diverged.logical_or_(~finite)
            opt.zero_grad(set_to_none=True)
            loss = torch.where(finite, loss_vec, torch.zeros_like(loss_vec)).sum()
            loss.backward()
            for p in params:
                if p.grad is not None:
                    torch.nan_to_num_(p.grad, nan=0.0, posinf=0.0, neginf=0.0)
            opt.step()
            if not bool(finite.all()):
                with torch.no_grad():
                    for bp, p in zip(best_params, params):
                        _masked_copy_(p, bp, ~finite)
            if step % eval_every == 0 or step == steps or traced:
                evaluate_true(step)
                if control is not None and control(step, best_params):
                    with torch.no_grad():
                        rebased = true(best_params).detach()
                    evaluations += 1
                    best.copy_(torch.where(torch.isfinite(rebased), rebased, torch.full_like(rebased, math.inf)))
                if traced:
                    relaxed_here = loss_vec.detach()
                    rec = {"step": step, "true": true_here.tolist(), "relaxed": relaxed_here.tolist(),
                           "gap": (true_here - relaxed_here).tolist(), "lr": lr_at(step - 1)}
                    if trace_extra is not None:
                        rec.update(trace_extra(step - 1))
                    trace.append(rec)
                bar.set_postfix(best=f"{best.mean().item():.4f}")
                if snapshot is not None and step < steps and time.perf_counter() - last_snapshot >= snapshot_seconds:
                    snapshot(loop_state(step, params, opt, best_params, best, best_step, initial, diverged, evaluations,
                                        trace, time.perf_counter() - t_start))
                    last_snapshot = time.perf_counter()
            bar.update(1)
    except KeyboardInterrupt:
        interrupted = True
        step = max(step - 1, 0)
    finally:
        bar.close()
    return LoopResult(
        params=best_params,
        best_loss=best,
        initial_loss=initial,
        best_step=best_step,
        steps_run=step,
        interrupted=interrupted,
        diverged=diverged,
        evaluations=evaluations,
        seconds=time.perf_counter() - t_start,
        trace=trace,
    )
