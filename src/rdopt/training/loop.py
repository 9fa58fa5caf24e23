"""The one training loop of rdopt (see the package docstring)."""

from __future__ import annotations

import json
import math
import os
import signal
import threading
import time
from dataclasses import asdict
from pathlib import Path
from typing import Protocol

import torch
from tqdm import tqdm

from .config import TrainConfig


class TrainTask(Protocol):
    """What the loop trains: ``module`` (its parameters are optimized, its state is checkpointed;
    parameters named ``*.quantiles`` are CompressAI's auxiliary ones), a reproducible batch source,
    the loss of one batch (a dict with a scalar ``loss`` and detached scalars to log; keys starting
    with ``mse`` are logged as PSNR too) and the export of the shipped weights."""

    module: torch.nn.Module
    description: str

    def sampler(self, seed: int): ...  # an object with ``batch(n) -> Tensor``

    def loss(self, batch: torch.Tensor, generator: torch.Generator, step: int) -> dict[str, torch.Tensor]: ...

    def aux_loss(self) -> torch.Tensor: ...

    def export(self, path: str) -> None: ...


def make_task(cfg: TrainConfig, device: torch.device, objective=None) -> TrainTask:
    """The task ``cfg`` describes: :class:`~rdopt.training.video.VideoTask` with ``cfg.video``, else
    :class:`~rdopt.training.image.ImageTask` (with ``objective`` if given)."""
    if cfg.video:
        from .video import VideoTask

        if objective is not None:
            raise ValueError("a video task builds its GoP objective from the config; pass a task instead")
        return VideoTask(cfg, device)
    from .image import ImageTask

    return ImageTask(cfg, device, objective)


def _lr_at(cfg: TrainConfig, step: int) -> float:
    start = int(0.8 * cfg.steps)
    if step < start:
        return cfg.lr
    p = (step - start) / max(cfg.steps - start, 1)
    return cfg.lr * (cfg.lr_final_fraction + (1 - cfg.lr_final_fraction) * 0.5 * (1 + math.cos(math.pi * p)))


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


def _atomic_save(obj, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _log_record(acc: dict[str, float], n: int) -> dict[str, float]:
    rec = {}
    for k, v in acc.items():
        rec[k] = v / n
        if k.startswith("mse"):
            rec["psnr" + k[3:]] = -10 * math.log10(max(v / n, 1e-12))
    return rec


def train(cfg: TrainConfig, device: str | torch.device | None = None, objective=None,
          task: TrainTask | None = None) -> dict:
    """Run (or resume) a training job; returns its summary.

    ``task`` defaults to :func:`make_task` of ``cfg`` (``objective`` customizes the image task)."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    out = Path(cfg.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    log_path = out.with_suffix(".log.jsonl")
    if task is None:
        task = make_task(cfg, device, objective)
    module = task.module
    main_params = [p for n, p in module.named_parameters() if p.requires_grad and not n.endswith(".quantiles")]
    aux_params = [p for n, p in module.named_parameters() if p.requires_grad and n.endswith(".quantiles")]
    opt = torch.optim.Adam(main_params, lr=cfg.lr)
    aux_opt = torch.optim.Adam(aux_params, lr=1e-3) if aux_params else None  # none: e.g. the bits-back prior
    step = 0
    gen = torch.Generator(device=device).manual_seed(cfg.seed)
    sampler_seed = cfg.seed

    if out.is_file():  # resume
        state = torch.load(out, map_location=device, weights_only=True)
        module.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        if aux_opt is not None and state.get("aux_opt") is not None:
            aux_opt.load_state_dict(state["aux_opt"])
        step = int(state["step"])
        gen.set_state(state["gen"].cpu() if device.type == "cpu" else state["gen"])
        sampler_seed = cfg.seed + step  # a fresh, reproducible batch stream after resuming
    sampler = task.sampler(sampler_seed)

    def checkpoint() -> None:
        _atomic_save(
            {"model": module.state_dict(), "opt": opt.state_dict(),
             "aux_opt": aux_opt.state_dict() if aux_opt is not None else None,
             "step": step, "gen": gen.get_state(), "config": json.dumps(asdict(cfg))},
            out,
        )

    acc: dict[str, float] = {}
    n_acc = 0
    t_start = time.time()
    # SIGTERM (a scheduler, `kill`) and SIGINT both end the run through the checkpointing path;
    # background jobs of a non-interactive shell ignore SIGINT, so SIGTERM matters.
    previous = signal.signal(signal.SIGTERM, _raise_interrupt) if threading.current_thread() is threading.main_thread() else None
    bar = tqdm(total=cfg.steps, initial=step, desc=task.description, unit="step", dynamic_ncols=True)
    try:
        with open(log_path, "a") as log:
            while step < cfg.steps:
                for g in opt.param_groups:
                    g["lr"] = _lr_at(cfg, step)
                batch = sampler.batch(cfg.batch).to(device)
                terms = task.loss(batch, gen, step)
                loss = terms["loss"]
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(main_params, 1.0)
                opt.step()
                aux = task.aux_loss()
                if aux is not None and aux_opt is not None:
                    aux_opt.zero_grad(set_to_none=True)
                    aux.backward()
                    aux_opt.step()
                step += 1
                bar.update(1)
                for k, v in terms.items():
                    acc[k] = acc.get(k, 0.0) + float(v.item())
                n_acc += 1
                if step % cfg.log_every == 0 or step == cfg.steps:
                    rec = {"step": step, **_log_record(acc, n_acc), "aux": aux.item() if aux is not None else 0.0,
                           "lr": opt.param_groups[0]["lr"], "elapsed_s": round(time.time() - t_start, 1)}
                    log.write(json.dumps(rec) + "\n")
                    log.flush()
                    bar.set_postfix({k: f"{rec[k]:.3f}" for k in ("loss", "bpp", "psnr") if k in rec})
                    acc, n_acc = {}, 0
                if step % cfg.checkpoint_every == 0:
                    checkpoint()
    except KeyboardInterrupt:
        checkpoint()
        bar.close()
        raise
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    bar.close()
    checkpoint()
    summary = {"config": asdict(cfg), "steps": step, "seconds_this_run": round(time.time() - t_start, 1)}
    if cfg.export:
        task.export(cfg.export)
        summary["export"] = cfg.export
    return summary
