"""``rdopt train``: train (or fine-tune) a hyperprior model with the single-sample ELBO.

Checkpoints the whole training state atomically every ``checkpoint_every`` steps and on Ctrl-C, and
resumes from it; a JSON-lines log records the running loss, bpp and PSNR. At the end the weights are
exported in the shipped form (float16 parameters, fine scale table; see
:func:`rdopt.models.registry.save_embedded`).
"""

from __future__ import annotations

import json
import math
import os
import signal
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from .losses.elbo import ELBO
from .models.adapter import HyperpriorAdapter
from .models.registry import (EMBEDDED_CHANNELS, build_network, channels_from_state, network_from_state, read_state_dict,
                              save_embedded)
from .models.widen import widen_network


DEFAULT_SCALES = (1.0, 0.5)  # crops at full size and at 2× downscaling


@dataclass
class TrainConfig:
    out: str  # training-state checkpoint (resumed if it exists)
    lmbda: float
    steps: int
    architecture: str = "rdopt-msh"
    # (N, M); None = the embedded models' size, or the size of ``init``. With ``init``, a larger size
    # widens the initial model without changing its function (rdopt.models.widen).
    channels: tuple[int, int] | None = None
    batch: int = 8
    crop: int = 128
    lr: float = 3e-4
    lr_final_fraction: float = 0.1  # learning rate drops to lr·fraction over the last 20 % of steps
    init: str | None = None  # weights to start from (fine-tuning)
    data: str | None = None  # folder of images; None = the embedded recipe (bigbuckbunny + skimage)
    export: str | None = None  # where to write the shipped weights at the end
    checkpoint_every: int = 250
    log_every: int = 25
    seed: int = 0
    threads: int | None = None
    scales: tuple[float, ...] = DEFAULT_SCALES  # downscaling factors a crop is drawn at
    # share of crops per source of the embedded recipe (bigbuckbunny, scikit-image photos[, extra_data]);
    # None = uniform over images. Ignored with ``data``.
    source_weights: tuple[float, ...] | None = None
    # a folder of photos added to the embedded recipe as a third source (e.g. benchmarks/train/fetch_photos.py)
    extra_data: str | None = None
    color_augment: float = 0.0  # probability that a crop gets a random colour transform (ColorJitter)
    # weight of the penalty on hyper-synthesis scales below the entropy model's floor (see losses.elbo)
    scale_floor_weight: float = 0.0


class ColorJitter:
    """Random colour transforms of a crop in [0, 1]: exposure (global gain), per-channel gains (white
    balance), gamma, hue rotation and saturation, then clipping to [0, 1] — so saturated, channel-clipped,
    near-monochrome, dark and bright colours that a few natural photos rarely show appear in training.

    Every factor is drawn log-uniformly (the hue angle uniformly) from the given ranges."""

    _LUMA = torch.tensor([0.299, 0.587, 0.114])

    def __init__(self, exposure=(0.35, 2.0), channel_gain=(0.6, 1.6), gamma=(0.6, 1.7), saturation=(0.2, 3.0)):
        self.exposure, self.channel_gain, self.gamma, self.saturation = exposure, channel_gain, gamma, saturation

    @staticmethod
    def _log_uniform(rng: np.random.Generator, lo_hi, size=None):
        lo, hi = lo_hi
        return np.exp(rng.uniform(math.log(lo), math.log(hi), size))

    def __call__(self, c: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        c = c.clamp(0, 1) ** float(self._log_uniform(rng, self.gamma))
        luma = self._LUMA.to(c).view(3, 1, 1)
        y = (c * luma).sum(0, keepdim=True)
        chroma = c - y
        if rng.random() < 0.5:  # rotate the chroma about the grey axis (a hue shift)
            theta = rng.uniform(0, 2 * math.pi)
            axis = torch.ones(3, dtype=c.dtype) / math.sqrt(3.0)
            k = torch.tensor([[0.0, -axis[2], axis[1]], [axis[2], 0.0, -axis[0]], [-axis[1], axis[0], 0.0]], dtype=c.dtype)
            rot = torch.eye(3, dtype=c.dtype) + math.sin(theta) * k + (1 - math.cos(theta)) * (k @ k)
            chroma = torch.einsum("ij,jhw->ihw", rot.to(c), chroma)
        c = y + float(self._log_uniform(rng, self.saturation)) * chroma
        gains = self._log_uniform(rng, self.channel_gain, 3) * self._log_uniform(rng, self.exposure)
        c = c * torch.from_numpy(gains).to(c).view(3, 1, 1)
        return c.clamp(0, 1)


class CropSampler:
    """Random square crops from groups of uint8 RGB images (random downscaling and flips).

    A crop first draws its group with probability ``weights`` (default: proportional to the group's
    image count, i.e. uniform over images), then an image of the group uniformly, then one of the
    ``scales`` at which that image is at least ``crop`` pixels on each side (area downscaling, which
    turns large smooth frames into denser detail), then a uniform position and a random horizontal flip.
    """

    def __init__(
        self,
        groups: list[list[np.ndarray]],
        crop: int,
        seed: int,
        scales: tuple[float, ...] = DEFAULT_SCALES,
        weights: tuple[float, ...] | None = None,
        color_augment: float = 0.0,
        jitter: "ColorJitter | None" = None,
    ):
        if not 0 <= color_augment <= 1:
            raise ValueError(f"color_augment is a probability, got {color_augment}")
        self.color_augment = color_augment
        self.jitter = jitter or ColorJitter()
        if not scales or any(not 0 < s <= 1 for s in scales):
            raise ValueError(f"scales must lie in (0, 1], got {scales}")
        self.crop = crop
        self.rng = np.random.default_rng(seed)
        self.groups: list[list[list[torch.Tensor]]] = []  # group -> image -> its usable scales
        for images in groups:
            pyramids = []
            for a in images:
                t = torch.from_numpy(np.array(a, dtype=np.uint8, copy=True)).permute(2, 0, 1).float().div(255.0)
                levels = []
                for scale in scales:
                    s = t if scale == 1.0 else F.interpolate(t[None], scale_factor=scale, mode="area")[0]
                    if min(s.shape[1:]) >= crop:
                        levels.append(s)
                if levels:
                    pyramids.append(levels)
            if pyramids:
                self.groups.append(pyramids)
            elif weights is not None:
                raise ValueError(f"a weighted training source has no image of at least {crop}×{crop} pixels")
        if not self.groups:
            raise ValueError(f"no training image is at least {crop}×{crop} pixels")
        if weights is None:
            w = np.array([len(g) for g in self.groups], dtype=np.float64)
        else:
            if len(weights) != len(groups) or any(x < 0 for x in weights) or sum(weights) <= 0:
                raise ValueError(f"need one non-negative weight per source ({len(groups)}), got {weights}")
            w = np.array(weights, dtype=np.float64)
        self.weights = w / w.sum()

    def batch(self, n: int) -> torch.Tensor:
        out = []
        for _ in range(n):
            group = self.groups[self.rng.choice(len(self.groups), p=self.weights)]
            levels = group[self.rng.integers(len(group))]
            im = levels[self.rng.integers(len(levels))]
            _, h, w = im.shape
            i = self.rng.integers(h - self.crop + 1)
            j = self.rng.integers(w - self.crop + 1)
            c = im[:, i : i + self.crop, j : j + self.crop]
            if self.rng.random() < 0.5:
                c = c.flip(-1)
            if self.color_augment and self.rng.random() < self.color_augment:
                c = self.jitter(c, self.rng)
            out.append(c)
        return torch.stack(out)


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


def train(cfg: TrainConfig, device: str | torch.device | None = None, objective=None) -> dict:
    """Run (or resume) a training job; returns the summary written next to the log.

    ``objective(model, x, generator) -> RDCost`` is what is minimised (the mean of its ``loss``); by
    default the single-sample ELBO at ``cfg.lmbda`` (:class:`rdopt.losses.elbo.ELBO`)."""
    if objective is None:
        objective = ELBO(cfg.lmbda, scale_floor_weight=cfg.scale_floor_weight)
    from .data.sources import embedded_training_images, folder_images

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    out = Path(cfg.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    log_path = out.with_suffix(".log.jsonl")

    if cfg.init:
        net = network_from_state(cfg.architecture, read_state_dict(cfg.init), has_tables=False)
        if cfg.channels is not None and tuple(cfg.channels) != channels_from_state(net.state_dict()):
            net = widen_network(net, *cfg.channels, seed=cfg.seed)
    else:
        net = build_network(cfg.architecture, *(cfg.channels or EMBEDDED_CHANNELS))
    net.to(device).train()
    model = HyperpriorAdapter(net, model_id=cfg.architecture, lmbda=cfg.lmbda)
    main_params = [p for n, p in net.named_parameters() if not n.endswith(".quantiles")]
    aux_params = [p for n, p in net.named_parameters() if n.endswith(".quantiles")]
    opt = torch.optim.Adam(main_params, lr=cfg.lr)
    aux_opt = torch.optim.Adam(aux_params, lr=1e-3)
    step = 0
    gen = torch.Generator(device=device).manual_seed(cfg.seed)
    sampler_seed = cfg.seed

    if out.is_file():  # resume
        state = torch.load(out, map_location=device, weights_only=True)
        net.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        aux_opt.load_state_dict(state["aux_opt"])
        step = int(state["step"])
        gen.set_state(state["gen"].cpu() if device.type == "cpu" else state["gen"])
        sampler_seed = cfg.seed + step  # a fresh, reproducible crop stream after resuming

    if cfg.data:
        groups = [folder_images(cfg.data)]
    else:
        groups = embedded_training_images() + ([folder_images(cfg.extra_data)] if cfg.extra_data else [])
    sampler = CropSampler(groups, cfg.crop, sampler_seed, cfg.scales, None if cfg.data else cfg.source_weights,
                          color_augment=cfg.color_augment)

    def checkpoint() -> None:
        _atomic_save(
            {"model": net.state_dict(), "opt": opt.state_dict(), "aux_opt": aux_opt.state_dict(),
             "step": step, "gen": gen.get_state(), "config": json.dumps(asdict(cfg))},
            out,
        )

    acc = {"loss": 0.0, "bpp": 0.0, "mse": 0.0, "n": 0}
    t_start = time.time()
    # SIGTERM (a scheduler, `kill`) and SIGINT both end the run through the checkpointing path;
    # background jobs of a non-interactive shell ignore SIGINT, so SIGTERM matters.
    previous = signal.signal(signal.SIGTERM, _raise_interrupt) if threading.current_thread() is threading.main_thread() else None
    bar = tqdm(total=cfg.steps, initial=step, desc=f"train λ={cfg.lmbda}", unit="step", dynamic_ncols=True)
    try:
        with open(log_path, "a") as log:
            while step < cfg.steps:
                for g in opt.param_groups:
                    g["lr"] = _lr_at(cfg, step)
                x = sampler.batch(cfg.batch).to(device)
                cost = objective(model, x, gen)
                loss = cost.loss.mean()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(main_params, 1.0)
                opt.step()
                aux = net.aux_loss()
                aux_opt.zero_grad(set_to_none=True)
                aux.backward()
                aux_opt.step()
                step += 1
                bar.update(1)
                acc["loss"] += loss.item()
                acc["bpp"] += cost.bpp.mean().item()
                acc["mse"] += cost.mse.mean().item()
                acc["n"] += 1
                if step % cfg.log_every == 0 or step == cfg.steps:
                    n = acc["n"]
                    rec = {"step": step, "loss": acc["loss"] / n, "bpp": acc["bpp"] / n,
                           "psnr": -10 * math.log10(max(acc["mse"] / n, 1e-12)), "aux": aux.item(),
                           "lr": opt.param_groups[0]["lr"], "elapsed_s": round(time.time() - t_start, 1)}
                    log.write(json.dumps(rec) + "\n")
                    log.flush()
                    bar.set_postfix(loss=f"{rec['loss']:.3f}", bpp=f"{rec['bpp']:.3f}", psnr=f"{rec['psnr']:.2f}")
                    acc = {"loss": 0.0, "bpp": 0.0, "mse": 0.0, "n": 0}
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
        net.eval()
        save_embedded(net, cfg.export)
        summary["export"] = cfg.export
    return summary
