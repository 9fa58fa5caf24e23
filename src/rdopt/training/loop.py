"""The one training loop of rdopt (see the package docstring)."""

from __future__ import annotations

import json
import math
import os
import signal
import threading
import time
from dataclasses import asdict, dataclass
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
    if cfg.video and cfg.architecture == "rdopt-video2":
        from .video2 import make_stage

        if objective is not None:
            raise ValueError("a video task builds its objective from the config; pass a task instead")
        return make_stage(cfg, device)
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


class _TaskStep(torch.nn.Module):
    """The task's loss as the forward of a module holding the task's network, so that
    :class:`torch.nn.parallel.DistributedDataParallel` sees the step (its gradient hooks fire in the
    backward pass that follows its forward)."""

    def __init__(self, task: "TrainTask"):
        super().__init__()
        self.net = task.module
        self._task = [task]  # not a submodule

    def forward(self, batch: torch.Tensor, generator: torch.Generator, step: int) -> dict[str, torch.Tensor]:
        return self._task[0].loss(batch, generator, step)


@dataclass
class Distributed:
    """This process's place in a ``torchrun`` job (``WORLD_SIZE`` > 1): its rank, the world size and
    its share of the global batch (``batch // world``, the first ``batch % world`` ranks one more)."""

    rank: int
    world: int
    local_rank: int
    batch: int

    @property
    def main(self) -> bool:
        return self.rank == 0


def distributed_from_env(global_batch: int) -> Distributed:
    """The job's layout from torchrun's environment (one process: rank 0 of 1)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", str(rank)))
    if world > 1 and global_batch < world:
        raise ValueError(f"a global batch of {global_batch} cannot be split across {world} processes")
    return Distributed(rank=rank, world=world, local_rank=local,
                       batch=global_batch // world + (1 if rank < global_batch % world else 0))


RANK_SEED_STRIDE = 1_000_003  # rank r draws crops and noise from seed + r·stride (rank 0: the one-process seeds)


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


def _atomic_save(obj, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _load_state(path: Path, device) -> dict:
    """A training state written by :func:`train` (or :func:`slim_state`); a file that is not one (truncated,
    another kind of file) is a ``ValueError`` naming it."""
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except Exception:  # PyTorch's message would suggest weights_only=False: never for a file of unknown origin
        state = None
    if not isinstance(state, dict) or not {"model", "step", "gen"} <= state.keys():
        raise ValueError(f"{path} is not a training state of rdopt train (truncated, or another kind of file): "
                         "give another --out")
    return state


def _log_record(acc: dict[str, float], n: int) -> dict[str, float]:
    rec = {}
    for k, v in acc.items():
        rec[k] = v / n
        if k.startswith("mse"):
            rec["psnr" + k[3:]] = -10 * math.log10(max(v / n, 1e-12))
    return rec


def slim_state(src: str | os.PathLike, dst: str | os.PathLike) -> int:
    """Write the carry-over form of a training state: the model's floating-point tensors in float16, the step,
    the generator and the config (scalar buffers stay float32), without the optimizer's moments (Adam's second moments underflow in float16;
    :func:`train` resumes a slim state with fresh moments). Returns the step."""
    state = torch.load(src, map_location="cpu", weights_only=True)
    # weights and larger tables to float16; scalar constants (bounds such as 1e-9, GDN pedestals) stay exact
    model = {k: (v.half() if v.dtype == torch.float32 and v.numel() >= 16 else v) for k, v in state["model"].items()}
    _atomic_save({"model": model, "opt": None, "aux_opt": None, "step": int(state["step"]), "gen": state["gen"],
                  "config": state["config"]}, Path(dst))
    return int(state["step"])


def freeze_parameters(module: torch.nn.Module, paths: tuple[str, ...]) -> int:
    """Turn off the gradient of every parameter under one of ``paths`` (dotted module paths matched as whole
    segments anywhere in the parameter's name); returns how many tensors were frozen. A path that matches no
    parameter is an error (a typo would silently train everything)."""
    frozen = 0
    for path in paths:
        hits = [p for n, p in module.named_parameters() if f".{path}." in f".{n}."]
        if not hits:
            raise ValueError(f"--freeze {path}: no parameter of the model is under this name")
        for p in hits:
            frozen += p.requires_grad
            p.requires_grad_(False)
    return frozen


def train(cfg: TrainConfig, device: str | torch.device | None = None, objective=None,
          task: TrainTask | None = None, optimizer=torch.optim.Adam, lr_schedule=None) -> dict:
    """Run (or resume) a training job; returns its summary.

    Under ``torchrun`` (``WORLD_SIZE`` > 1) every process runs this with the same ``cfg``: the network
    is wrapped in :class:`~torch.nn.parallel.DistributedDataParallel` (gloo on CPU, nccl on GPU, device
    ``cuda:LOCAL_RANK``), the global batch ``cfg.batch`` is split across the ranks and its gradient is
    the global mean's, rank ``r`` draws crops and noise from ``cfg.seed + r·RANK_SEED_STRIDE`` (rank 0
    from the one-process seeds), only rank 0 writes the log, the checkpoint and the export, and every
    rank resumes from that checkpoint.

    ``task`` defaults to :func:`make_task` of ``cfg`` (``objective`` customizes the image task).
    ``optimizer``: the optimizer of the model's parameters as a value — a ``torch.optim`` class or a
    factory ``(params, lr=…) -> Optimizer`` (Adam by default; CompressAI's auxiliary quantiles always use
    Adam at 1e-3). ``lr_schedule(cfg, step) -> lr``: default constant ``cfg.lr`` with a cosine drop to
    ``cfg.lr·lr_final_fraction`` over the last 20 % of the steps."""
    lr_at = lr_schedule or _lr_at
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    layout = distributed_from_env(cfg.batch)
    dist = None
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(device)
    if layout.world > 1:
        import torch.distributed as dist

        if device.type == "cuda" and device.index is None:
            device = torch.device("cuda", layout.local_rank)
        if device.type == "cuda":
            torch.cuda.set_device(device)
        if not dist.is_initialized():
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    main = layout.main
    out = Path(cfg.out)
    if main:  # an unusable --out or --export is an error now, not after the training
        from ..data.safeio import check_output

        out.parent.mkdir(parents=True, exist_ok=True)
        check_output(out, what="--out")
        if cfg.export:
            check_output(cfg.export, what="--export")
    log_path = out.with_suffix(".log.jsonl")
    if task is None:
        task = make_task(cfg, device, objective)
    module = task.module
    freeze_parameters(module, cfg.freeze)
    main_params = [p for n, p in module.named_parameters() if p.requires_grad and not n.endswith(".quantiles")]
    aux_params = [p for n, p in module.named_parameters() if p.requires_grad and n.endswith(".quantiles")]
    opt = optimizer(main_params, lr=cfg.lr)
    aux_opt = torch.optim.Adam(aux_params, lr=1e-3) if aux_params else None  # none: e.g. the bits-back prior
    step = 0
    rank_seed = cfg.seed + layout.rank * RANK_SEED_STRIDE
    gen = torch.Generator(device=device).manual_seed(rank_seed)
    sampler_seed = rank_seed

    if out.is_file():  # resume (every rank reads the one checkpoint rank 0 wrote)
        state = _load_state(out, device)
        try:
            module.load_state_dict(state["model"])
        except RuntimeError:  # missing, unexpected or differently shaped tensors
            raise ValueError(f"{out} is the training state of another model (other architecture, size or task): "
                             "give another --out") from None
        saved_freeze = tuple(json.loads(state.get("config", "{}")).get("freeze", ()))
        if saved_freeze != tuple(cfg.freeze):
            raise ValueError(f"{out} was trained with --freeze {' '.join(saved_freeze) or '(nothing)'}; resume it with the "
                             f"same modules frozen (got {' '.join(cfg.freeze) or 'nothing'})")
        saved_quantization = json.loads(state.get("config", "{}")).get("quantization", "noise")
        if saved_quantization != cfg.quantization:
            raise ValueError(f"{out} was trained with --quantization {saved_quantization}; resume it with the same "
                             f"(got {cfg.quantization}), or start another --out from its export with --init")
        if state.get("opt") is not None:  # a slim state (weights only) restarts the optimizer's moments
            opt.load_state_dict(state["opt"])
        if aux_opt is not None and state.get("aux_opt") is not None:
            aux_opt.load_state_dict(state["aux_opt"])
        step = int(state["step"])
        if layout.world == 1:
            gen.set_state(state["gen"].cpu() if device.type == "cpu" else state["gen"])
        else:  # rank 0's generator state is not the other ranks': a fresh, reproducible stream per rank
            gen.manual_seed(rank_seed + step)
        sampler_seed = rank_seed + step  # a fresh, reproducible batch stream after resuming
    if dist is not None:  # every rank must have resumed from the same checkpoint (shared storage)
        steps = torch.tensor([step, -step], dtype=torch.int64, device=device)
        dist.all_reduce(steps, op=dist.ReduceOp.MAX)
        if int(steps[0]) != -int(steps[1]):
            raise ValueError(f"the ranks resumed from different steps ({-int(steps[1])}…{int(steps[0])}): "
                             f"--out {cfg.out} must be on storage every node reads")
    sampler = task.sampler(sampler_seed)
    stepper = _TaskStep(task)
    # the auxiliary quantiles do not enter the loss; every rank computes the same auxiliary loss from the
    # same weights, so they stay equal without a reduction
    step_fn = stepper
    if layout.world > 1:
        from torch.nn.parallel import DistributedDataParallel

        import inspect

        # buffers (entropy-coder tables) do not change in training: no sync per forward (the keyword was
        # renamed in recent PyTorch; both keep the sync at construction)
        sync = ({"forward_sync_buffers": False} if "forward_sync_buffers" in inspect.signature(DistributedDataParallel).parameters
                else {"broadcast_buffers": False})
        step_fn = DistributedDataParallel(stepper, device_ids=[device.index] if device.type == "cuda" else None,
                                          find_unused_parameters=True, **sync)
    # DDP averages the ranks' gradients: scaling each rank's mean loss by its share of the global batch
    # times the world size makes the result the gradient of the global batch's mean loss
    loss_scale = layout.batch * layout.world / cfg.batch

    def checkpoint() -> None:
        if not main:  # rank 0 writes the one checkpoint
            return
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
    bar = tqdm(total=cfg.steps, initial=step, desc=task.description, unit="step", dynamic_ncols=True, disable=not main)
    try:
        with open(log_path, "a") if main else open(os.devnull, "w") as log:
            while step < cfg.steps:
                for g in opt.param_groups:
                    g["lr"] = lr_at(cfg, step)
                batch = sampler.batch(layout.batch).to(device)
                terms = step_fn(batch, gen, step)
                loss = terms["loss"]
                opt.zero_grad(set_to_none=True)
                (loss * loss_scale if loss_scale != 1 else loss).backward()
                torch.nn.utils.clip_grad_norm_(main_params, 1.0)
                opt.step()
                aux = task.aux_loss()
                if aux is not None and aux_opt is not None:
                    aux_opt.zero_grad(set_to_none=True)
                    aux.backward()
                    aux_opt.step()
                step += 1
                bar.update(1)
                values = {k: float(v.item()) for k, v in terms.items()}
                if dist is not None:  # the logged terms are global-batch means
                    keys = sorted(values)
                    t = torch.tensor([values[k] * layout.batch / cfg.batch for k in keys], dtype=torch.float64,
                                     device=device)
                    dist.all_reduce(t)
                    values = dict(zip(keys, t.tolist()))
                for k, v in values.items():
                    acc[k] = acc.get(k, 0.0) + v
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
    if layout.world > 1:
        summary["world_size"] = layout.world
    if cfg.measure_snr:
        if main:
            summary["snr"] = _measure_snr(cfg, task, module, device, step, log_path)
        if dist is not None:
            dist.barrier()
    if cfg.export and main:
        task.export(cfg.export)
        summary["export"] = cfg.export
    if dist is not None:
        dist.barrier()  # every rank returns after rank 0 has written the checkpoint and the export
    return summary


def _measure_snr(cfg: TrainConfig, task, module, device, step: int, log_path: Path) -> dict:
    """Gradient SNR per parameter group (:mod:`rdopt.training.snr`) of the task's SNR objectives over
    ``cfg.measure_snr`` mini-batches of a separate crop stream; appended to the log."""
    from .snr import gradient_snr

    if not hasattr(task, "snr_objectives"):
        raise ValueError("--measure-snr needs an image task (a hyperprior with y and z)")
    sampler = task.sampler(cfg.seed + 7 * RANK_SEED_STRIDE + step)
    batches = [sampler.batch(cfg.batch).to(device) for _ in range(cfg.measure_snr)]
    snr = gradient_snr(task.model, module, task.model.parameter_groups(), task.snr_objectives(), batches,
                       seed=cfg.seed + step)
    with open(log_path, "a") as log:
        log.write(json.dumps({"step": step, "snr": snr, "snr_batches": cfg.measure_snr}) + "\n")
    return snr
