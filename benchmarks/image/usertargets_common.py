"""Shared set-up of the user-target benchmarks (rate control, ROI, MS-SSIM retargeting): images, models, options."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch


def add_common_args(p: argparse.ArgumentParser, steps: int = 300) -> None:
    p.add_argument("--images", nargs="*", default=["eval-set"], help="files, folders or eval-set (default)")
    p.add_argument("--crop", default=None, help="centre crop N or WxH (default: the whole photos)")
    p.add_argument("--limit", type=int, default=None, help="use only the first N images")
    p.add_argument("--steps", type=int, default=steps, help=f"SAVI steps of a plain encode (default {steps})")
    p.add_argument("--lr", type=float, default=0.03, help="Adam learning rate (default 0.03, as benchmarks/image)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", required=True, help="results JSON")


def images(args):
    from rdopt.eval.images import collect_images, parse_crop

    ims = collect_images(args.images, parse_crop(args.crop))
    return ims[: args.limit] if args.limit else ims


def options(args, steps: int | None = None):
    from rdopt.infer.options import SolverOptions

    return SolverOptions(method="sga", steps=steps or args.steps, lr=args.lr, lr_decay="none", progress=False)


class Models:
    """The embedded models, loaded once per quality."""

    def __init__(self):
        self.cache = {}

    def __call__(self, q: int):
        from rdopt.codecs.image.loading import load_model

        if q not in self.cache:
            self.cache[q] = load_model("rdopt-msh", q)
        return self.cache[q]


def timed(fn, *a, **k):
    t = time.perf_counter()
    r = fn(*a, **k)
    return r, time.perf_counter() - t


def region_psnr(pixels: np.ndarray, ref: np.ndarray, mask: np.ndarray) -> tuple[float, float]:
    """PSNR inside (mask > 0.5) and outside (mask ≤ 0.5) a region."""
    d = ((pixels.astype(np.float64) - ref.astype(np.float64)) ** 2).mean(axis=2)
    out = []
    for sel in (mask > 0.5, mask <= 0.5):
        mse = float(d[sel].mean())
        out.append(float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse))
    return out[0], out[1]


def write(path: str, doc: dict) -> None:
    Path(path).write_text(json.dumps(doc, indent=2) + "\n")
    print(f"wrote {path}")


def setup_threads(args) -> None:
    torch.set_num_threads(args.threads)
