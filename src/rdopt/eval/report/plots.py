"""R-D plots and learning-curve plots (matplotlib, written as PNG)."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def _save(fig, path: str | os.PathLike) -> None:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(f".{p.name}.tmp.png")
    fig.savefig(tmp, dpi=120, bbox_inches="tight")
    plt.close(fig)
    os.replace(tmp, p)


def rd_plot(curves: dict[str, tuple[list[float], list[float]]], path, title: str = "", ylabel: str = "PSNR [dB]") -> None:
    """One line per method: ``curves[name] = (bpp values, quality values)``."""
    fig, ax = plt.subplots(figsize=(6.4, 4.8))
    for name, (rates, values) in curves.items():
        order = sorted(range(len(rates)), key=lambda i: rates[i])
        ax.plot([rates[i] for i in order], [values[i] for i in order], marker="o", ms=3, label=name)
    ax.set_xlabel("bits per pixel (real file size)")
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    ax.legend()
    if title:
        ax.set_title(title)
    _save(fig, path)


def learning_curves(traces: dict[str, list[dict]], path, title: str = "") -> None:
    """Paper Fig. 3: true R-D cost vs step (left) and discretization gap = relaxed − true (right).

    ``traces[method]`` is a list of ``{"step", "true": [...], "relaxed": [...]}`` records; values are
    averaged over the images of the record."""
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4.2))
    for name, recs in traces.items():
        if not recs:
            continue
        steps = [r["step"] for r in recs]
        true = [sum(r["true"]) / len(r["true"]) for r in recs]
        gap = [sum(r["relaxed"]) / len(r["relaxed"]) - t for r, t in zip(recs, true)]
        a1.plot(steps, true, label=name)
        a2.plot(steps, gap, label=name)
    a1.set_xlabel("step")
    a1.set_ylabel("true R-D cost (bpp + λ·255²·MSE)")
    a2.set_xlabel("step")
    a2.set_ylabel("relaxed − true objective")
    a2.axhline(0.0, color="k", lw=0.5)
    for a in (a1, a2):
        a.grid(True, alpha=0.3)
        a.legend()
    if title:
        fig.suptitle(title)
    _save(fig, path)


def gop_profile_plot(profiles: dict[str, list[dict]], path, title: str = "") -> None:
    """Paper Fig. 3 / 11: per position in the GoP (mean over GoPs) the frame's R-D cost, PSNR, and the
    estimated bpp of the motion (w) and residual (y) latents, one line per method.
    ``profiles[method]`` is a list of ``{"position", "cost", "psnr", "bpp_w_estimated", "bpp_y_estimated"}``."""
    panels = (("cost", "R-D cost (bpp + λ·MSE)"), ("psnr", "PSNR [dB]"), ("bpp_w_estimated", "bpp of w (estimated)"),
              ("bpp_y_estimated", "bpp of y (estimated)"))
    fig, axes = plt.subplots(1, 4, figsize=(17, 3.8))
    for ax, (key, label) in zip(axes, panels):
        for name, prof in profiles.items():
            ax.plot([p["position"] for p in prof], [p[key] for p in prof], marker="o", ms=3, label=name)
        ax.set_xlabel("frame in GoP")
        ax.set_ylabel(label)
        ax.grid(True, alpha=0.3)
    axes[0].legend()
    if title:
        fig.suptitle(title)
    _save(fig, path)


def stage_plot(stages: dict[str, list[float]], path, title: str = "") -> None:
    """Paper Fig. 10: the GoP's true R-D cost after each SAVI stage (stage 0 = amortized)."""
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for name, costs in stages.items():
        ax.plot(range(len(costs)), costs, marker="o", ms=3, label=name)
    ax.set_xlabel("SAVI stage (latent group, in order y_0, w_1, y_1, …)")
    ax.set_ylabel("true GoP R-D cost")
    ax.grid(True, alpha=0.3)
    ax.legend()
    if title:
        ax.set_title(title)
    _save(fig, path)
