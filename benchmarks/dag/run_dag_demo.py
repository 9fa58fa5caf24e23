"""SAVI on a DAG of latents with the real rdopt codec: exact (small K), sequential, joint.

Two latent DAGs are built from the embedded mean-scale hyperprior (``rdopt-msh``) on small crops of
scikit-image's astronaut:

1. **image (y → z)** — the codec's own latents as a 2-node DAG. The DAG is the *inference*
   factorization (paper 001 §4.2: the graph along which the amortized initializers run), not the
   prior's: the encoder computes ``y = g_a(x)`` and then ``z = h_a(y)``, so ``y`` is the parent and the
   amortized initializer of ``z`` depends on it. The prior's dependence (``p(y | z)``: ``h_s(ẑ)`` gives
   the mean and scale of ``y``, and the rounding offset of ``y``) lives inside the objective, which every
   solver sees whole. With the other direction (z → y) ``y``'s initializer ``g_a(x)`` would not depend on
   ``z`` and the DAG would be factorized for SAVI's purposes (nothing to re-initialize).
2. **two-frame chain (y1 → z1 → y2)** — a toy P-frame built from the image codec: frame 1 (a crop) is
   coded by (y1, z1); frame 2 (the crop shifted by a few pixels) codes its residual against frame 1's
   reconstruction with the same codec, ``x̂2 = x̂1 + g_s(ŷ2) − ½``. The amortized initializer of y2 is
   ``g_a(x2 − x̂1(ỹ1, z̃1) + ½)``, so it depends on both earlier nodes; frame 2's hyper-latent is kept
   amortized, ``z2 = h_a(y2)``, inside the frame-2 term. Objective: ``(R1 + R2)/pixels + λ·255²·(D1 + D2)``
   with CompressAI's convention per frame.

All solvers start from the same amortized initialization and report the true (hard-rounded) R-D cost,
objective-evaluation counts and wall time. ``exact`` differentiates through plain gradient descent, so it
is run with SGD at the step ``1/L`` (:func:`smoothness_step`); ``sequential`` and ``joint`` are run with
SGD at the same step (same optimizer: only the algorithm differs) and with Adam (the paper's practical
setting). Relaxation: straight-through by default (see :func:`relaxation_schedule` for why).

Run (after the q4 weights exist)::

    .venv/bin/python benchmarks/dag/run_dag_demo.py --write benchmarks/dag/RESULTS.md
"""

from __future__ import annotations

import argparse
import math
import platform
import sys
import time
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
from torch import Tensor

from rdopt.core.rd import distortion_term
from rdopt.core.types import Latents, relax_all
from rdopt.infer.codec_graph import Target, codec_graph
from rdopt.infer.dag import DagResult, amortized, exact, joint, sequential
from rdopt.infer.graph import Context, LatentGraph, Node, Term
from rdopt.relax.registry import relaxation_schedule as registry_schedule
from rdopt.relax.schedules import constant, fitted_to_budget


# ----------------------------------------------------------------------------------------------- data
def astronaut_crops(size: int = 64, count: int = 2, shift: tuple[int, int] = (0, 0)) -> Tensor:
    """``count`` crops of ``size``×``size`` from ``skimage.data.astronaut()`` (fixed positions spread
    over the face, suit and background), optionally shifted by ``shift`` pixels (rows, columns)."""
    from skimage import data

    img = torch.from_numpy(np.ascontiguousarray(data.astronaut())).permute(2, 0, 1).float().div(255.0)
    anchors = [(100, 180), (300, 260), (60, 360), (380, 100)]
    if count > len(anchors):
        raise ValueError(f"at most {len(anchors)} crops")
    out = []
    for r, c in anchors[:count]:
        r2, c2 = r + shift[0], c + shift[1]
        out.append(img[:, r2 : r2 + size, c2 : c2 + size])
    return torch.stack(out)


# ----------------------------------------------------------------------------------------------- graphs
def _pixels(x: Tensor) -> int:
    return x.shape[-2] * x.shape[-1]


def image_graph(model) -> LatentGraph:
    """The image codec's own latent graph (:func:`rdopt.infer.codec_graph.codec_graph`): y → z, one R-D term
    reading both, node-level stages (``frames=False``, paper 001's per-node formulation).

    The objective is expressed in bits, ``pixels·(bpp + λ·255²·MSE)`` (CompressAI's cost times the pixel
    count): same minimiser, but gradients per latent element of order one, so that plain gradient
    descent (which the exact solver differentiates) has a meaningful step size. Its evidence is a
    :class:`rdopt.infer.codec_graph.Target` (the crops and λ)."""
    return codec_graph(model, frames=False, unit="bits")


@dataclass(frozen=True)
class TwoFrames:
    x1: Tensor
    x2: Tensor


def two_frame_graph(model) -> LatentGraph:
    """The toy P-frame chain y1 → z1 → y2 (y2 also depends on y1), see the module docstring. Built from
    the codec's protocol (``infer``, ``evaluate``) and :mod:`rdopt.core.rd`; the frame-2 hyper-latent is not
    a node (kept amortized inside the frame-2 term), which a protocol codec could not express."""
    lmbda = model.lmbda

    def recon1(ctx: Context, y1: Tensor, z1: Tensor):
        return model.evaluate(Latents({"y": y1, "z": z1}), {"y": ctx.relax("y1"), "z": ctx.relax("z1")})

    def init_y2(ctx: Context, y1: Tensor, z1: Tensor) -> Tensor:
        x_hat1 = recon1(ctx, y1, z1).x_hat
        return model.infer("y", ctx.x.x2 - x_hat1 + 0.5, Latents())

    def frame1(ctx: Context, y1: Tensor, z1: Tensor) -> Tensor:
        ev = recon1(ctx, y1, z1)
        n = _pixels(ctx.x.x1)
        return (ev.bits / n + distortion_term(ev.x_hat, ctx.x.x1, lmbda)[1]) * n

    def frame2(ctx: Context, y1: Tensor, z1: Tensor, y2: Tensor) -> Tensor:
        x_hat1 = recon1(ctx, y1, z1).x_hat
        z2 = model.infer("z", None, Latents({"y": y2}))
        ev2 = model.evaluate(Latents({"y": y2, "z": z2}), relax_all(ctx.relax("y2"), ("y", "z")))
        x_hat2 = x_hat1 + ev2.x_hat - 0.5
        mse = (x_hat2 - ctx.x.x2).pow(2).flatten(1).mean(1)
        return ev2.bits + lmbda * 255.0**2 * mse * _pixels(ctx.x.x2)

    return LatentGraph(
        nodes=[
            Node("y1", (), lambda ctx: model.infer("y", ctx.x.x1, Latents())),
            Node("z1", ("y1",), lambda ctx, y1: model.infer("z", None, Latents({"y": y1}))),
            Node("y2", ("y1", "z1"), init_y2),
        ],
        terms=[Term("frame1", ("y1", "z1"), frame1), Term("frame2", ("y1", "z1", "y2"), frame2)],
    )


def _psnr(x_hat: Tensor, x: Tensor) -> Tensor:
    mse = (x_hat.clamp(0, 1) - x).pow(2).flatten(1).mean(1)
    return 10 * torch.log10(1.0 / mse)


@torch.no_grad()
def image_metrics(model, x: Tensor, values) -> tuple[float, float]:
    """(mean bpp, mean PSNR in dB) of hard-rounded (y, z)."""
    ev = model.hard_evaluate(values.subset(("y", "z")))
    return float((ev.bits / _pixels(x)).mean()), float(_psnr(ev.x_hat, x).mean())


@torch.no_grad()
def two_frame_metrics(model, x: TwoFrames, values) -> tuple[float, float]:
    """(mean bits per pixel of a frame, both frames together; mean PSNR over both frames)."""
    ev1 = model.hard_evaluate(Latents({"y": values["y1"], "z": values["z1"]}))
    y2 = values["y2"]
    ev2 = model.hard_evaluate(Latents({"y": y2, "z": model.infer("z", None, Latents({"y": y2}))}))
    x_hat2 = ev1.x_hat + ev2.x_hat - 0.5
    bpp = (ev1.bits + ev2.bits) / _pixels(x.x1)
    psnr = 0.5 * (_psnr(ev1.x_hat, x.x1) + _psnr(x_hat2, x.x2))
    return float(bpp.mean()), float(psnr.mean())


# ----------------------------------------------------------------------------------------------- runs
#: the demo's relaxation names → the library's registry (rdopt.relax.registry)
RELAXATION_NAMES = {"ste": "ste", "sga": "sga", "da": "danneal", "noise": "noise", "identity": "map"}


def relaxation_schedule(name: str, steps: int, seed: int, tau: float = 0.5, anneal: bool = False):
    """``step -> Relaxation`` from the library's registry: ``ste`` (straight-through: hard values forward,
    identity backward), ``sga`` / ``da`` (stochastic Gumbel annealing / deterministic annealing) at the
    constant temperature ``tau`` or, with ``anneal``, the image engine's schedule fitted to the node's
    budget (from ``tau`` down to 0.05), ``noise`` (additive uniform) or ``identity``.

    Why the default is STE and not annealed SGA: with budgets of a few steps the fitted schedule reaches
    τ = 0.05 within the inner optimizations, and the second derivatives that the exact solver propagates
    through them explode (measured on an intermediate training checkpoint of this codec: an exact gradient
    of norm 3.5e7 against 2.6e3 for the partial gradient, with plain descent at 1/L); at a constant temperature, or with STE, both are of the
    same order. STE is deterministic (so the finite-difference HVP option is valid too)."""
    if name not in RELAXATION_NAMES:
        raise ValueError(f"unknown relaxation {name!r}")
    sched = fitted_to_budget(max(steps, 1), tau0=tau) if anneal else constant(tau)
    return registry_schedule(RELAXATION_NAMES[name], sched, torch.Generator().manual_seed(seed))


def smoothness_step(graph: LatentGraph, x, relax, iterations: int = 20, seed: int = 0) -> float:
    """``1/L`` with ``L`` the largest magnitude of a Hessian eigenvalue of the relaxed objective w.r.t. all
    latents at the FAVI point (power iteration with autograd Hessian-vector products): the textbook step
    of plain gradient descent. Used for every SGD run of the demo — a property of the objective, not of a solver."""
    vals = [v.detach().clone().requires_grad_(True) for v in graph.amortize(x).tensors]
    ctx = graph.context(x, relax)
    grads = torch.autograd.grad(graph.objective(ctx, vals).sum(), vals, create_graph=True)
    gen = torch.Generator().manual_seed(seed)
    v = [torch.randn(t.shape, generator=gen, dtype=t.dtype).to(t.device) for t in vals]
    lam = 0.0
    for _ in range(iterations):
        norm = torch.sqrt(sum((t * t).sum() for t in v))
        v = [t / norm for t in v]
        hv = torch.autograd.grad(grads, vals, v, retain_graph=True)
        lam = abs(float(sum((a * b).sum() for a, b in zip(hv, v))))
        v = [h.detach() for h in hv]
    if not lam > 0 or not math.isfinite(lam):
        raise RuntimeError(f"power iteration gave an unusable curvature {lam}")
    return 1.0 / lam


@dataclass(frozen=True)
class Row:
    graph: str
    solver: str
    optimizer: str
    steps: int
    lr: float
    loss: float  # mean true R-D cost over the crops, per pixel (bpp + λ·255²·MSE, summed over frames)
    gain: float  # relative to amortized (FAVI), in %
    bpp: float
    psnr: float
    evaluations: int
    seconds: float


def _row(graph: str, r: DagResult, optimizer: str, steps: int, lr: float, base: float, pixels: int,
         metrics: tuple[float, float]) -> Row:
    loss = float(r.objective.mean()) / pixels
    return Row(graph, r.solver, optimizer, steps, lr, loss, 100.0 * (loss - base) / base, metrics[0], metrics[1],
               r.counts.objective, r.seconds)


def run_graph(
    name: str,
    graph: LatentGraph,
    x,
    *,
    exact_steps: int,
    steps: int,
    sgd_lr: float | None,
    adam_lr: float,
    relaxation: str,
    seed: int,
    pixels: int,
    tau: float,
    anneal: bool,
    metrics: Callable[[object], tuple[float, float]],
    log: Callable[[str], None] = print,
) -> list[Row]:
    """amortized, exact (SGD, ``exact_steps``), sequential/joint with SGD at ``sgd_lr`` (``exact_steps``
    and ``steps`` per node) and with Adam at ``adam_lr`` (``steps``). ``sgd_lr=None``: 1/L
    (:func:`smoothness_step`) under the relaxation at its first step."""
    base_res = amortized(graph, x)
    base = float(base_res.objective.mean()) / pixels
    if sgd_lr is None:
        sgd_lr = smoothness_step(graph, x, relaxation_schedule(relaxation, max(exact_steps, 1), seed, tau, anneal)(0))
        log(f"[{name}] SGD step 1/L = {sgd_lr:.3g}")
    rows = [_row(name, base_res, "-", 0, 0.0, base, pixels, metrics(base_res.values))]
    log(f"[{name}] amortized: {base:.4f}")

    def rel(k: int):
        return relaxation_schedule(relaxation, k, seed, tau, anneal)

    runs: list[tuple[str, int, float, Callable[[], DagResult]]] = [
        ("sgd", exact_steps, sgd_lr, lambda: exact(graph, x, exact_steps, sgd_lr, relaxation=rel(exact_steps),
                                                eval_every=1)),
        ("sgd", exact_steps, sgd_lr, lambda: sequential(graph, x, exact_steps, sgd_lr, relaxation=rel(exact_steps),
                                                         optimizer="sgd", eval_every=1)),
        ("sgd", exact_steps, sgd_lr, lambda: joint(graph, x, exact_steps, sgd_lr, relaxation=rel(exact_steps),
                                                    optimizer="sgd", eval_every=1)),
        ("sgd", steps, sgd_lr, lambda: sequential(graph, x, steps, sgd_lr, relaxation=rel(steps), optimizer="sgd",
                                                   eval_every=5)),
        ("sgd", steps, sgd_lr, lambda: joint(graph, x, steps, sgd_lr, relaxation=rel(steps), optimizer="sgd",
                                              eval_every=5)),
        ("adam", steps, adam_lr, lambda: sequential(graph, x, steps, adam_lr, relaxation=rel(steps), eval_every=5)),
        ("adam", steps, adam_lr, lambda: joint(graph, x, steps, adam_lr, relaxation=rel(steps), eval_every=5)),
    ]
    for opt, k, lr, fn in runs:
        r = fn()
        row = _row(name, r, opt, k, lr, base, pixels, metrics(r.values))
        rows.append(row)
        log(f"[{name}] {row.solver:10s} {opt:4s} K={k:3d} lr={lr:g}: {row.loss:.4f} ({row.gain:+.2f} %), "
            f"{row.bpp:.4f} bpp, {row.psnr:.2f} dB, "
            f"{row.evaluations} evaluations, {row.seconds:.1f}s")
    return rows


def run_demo(
    quality: int = 4,
    crops: int = 2,
    size: int = 64,
    exact_steps: int = 4,
    steps: int = 40,
    sgd_lr: float | None = None,
    adam_lr: float = 0.05,
    relaxation: str = "ste",
    seed: int = 0,
    tau: float = 0.5,
    anneal: bool = False,
    model=None,
    log: Callable[[str], None] = print,
) -> list[Row]:
    """Both DAGs, all solvers. ``model`` defaults to ``load_model("rdopt-msh", quality)``."""
    if model is None:
        from rdopt.codecs.image.loading import load_model

        model = load_model("rdopt-msh", quality=quality)
    for p in model.parameters():
        p.requires_grad_(False)
    x1 = astronaut_crops(size, crops)
    x2 = astronaut_crops(size, crops, shift=(2, 3))
    common = dict(exact_steps=exact_steps, steps=steps, sgd_lr=sgd_lr, adam_lr=adam_lr, relaxation=relaxation,
                  seed=seed, pixels=size * size, tau=tau, anneal=anneal, log=log)
    rows = run_graph("image y→z", image_graph(model), Target(x1, model.lmbda),
                     metrics=lambda v: image_metrics(model, x1, v), **common)
    two = TwoFrames(x1, x2)
    rows += run_graph("2-frame y1→z1→y2", two_frame_graph(model), two,
                      metrics=lambda v: two_frame_metrics(model, two, v), **common)
    return rows


def markdown_table(rows: Sequence[Row]) -> str:
    lines = [
        "| DAG | solver | optimizer | K per node | lr | true R-D cost | vs amortized | bpp | PSNR (dB) | objective evaluations | time (s) |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        k = "-" if r.solver == "amortized" else str(r.steps)
        lr = "-" if r.solver == "amortized" else f"{r.lr:g}"
        lines.append(f"| {r.graph} | {r.solver} | {r.optimizer} | {k} | {lr} | {r.loss:.4f} | {r.gain:+.2f} % | "
                     f"{r.bpp:.4f} | {r.psnr:.2f} | {r.evaluations} | {r.seconds:.1f} |")
    return "\n".join(lines)


NOTES = """\
What the rows are (see the docstring of `benchmarks/dag/run_dag_demo.py` for the graphs):

* **image y→z** — the codec's own (y, z) as a 2-node DAG. y is the parent: the amortized initializer of z
  is `h_a(y)` (the inference factorization, paper §4.2); the prior's z→y dependence is inside the objective.
* **2-frame y1→z1→y2** — a toy P-frame from the image codec: frame 2 (the crop shifted by (2, 3) px) codes
  its residual against frame 1's reconstruction, `x̂2 = x̂1 + g_s(ŷ2) − ½`; y2's initializer is
  `g_a(x2 − x̂1(ỹ1, z̃1) + ½)`, so it depends on both earlier nodes. bpp = bits of both frames per pixel of one
  frame; PSNR = mean over the two frames.
* **true R-D cost** — hard rounding of every latent, `bpp + λ·255²·MSE` per pixel (summed over frames), mean
  over the crops; "vs amortized" is relative to the FAVI initialization (all solvers start there).
* **exact** differentiates through the optimizer it runs, so it uses plain gradient descent; sequential
  and joint are shown with the same SGD step and per-node budget K (only the algorithm differs) and with
  Adam (the paper's practical optimizer) at a larger budget. Every run keeps, per crop, the best point under
  the true objective, evaluated after every step for the small-K runs and every 5 steps otherwise.
* **SGD step** — `1/L`, with `L` the largest Hessian eigenvalue magnitude of the relaxed objective over all
  latents at the FAVI point (power iteration), computed once per DAG: a property of the objective, the
  same for every solver. The objective is optimized in bits (the per-pixel cost times the pixel count).
* **relaxation** — straight-through (hard values forward, identity backward) by default. Annealed SGA / DA
  with the budget-fitted schedule reach τ ≈ 0.05 within a few inner steps, where the second derivatives the
  exact solver propagates explode (an exact gradient of norm 3.5e7 against 2.6e3 for the partial one, measured
  with an intermediate training checkpoint of this model while choosing the settings);
  `--relaxation sga|da --tau T [--anneal]` runs the other relaxations.
* **objective evaluations** — every evaluation of the full objective, relaxed or true (exact: Θ(K^N),
  sequential: N·(K + true evaluations), joint: K + true evaluations).
"""


def results_markdown(rows: Sequence[Row], command: str, settings: str, seconds: float) -> str:
    return (
        "# SAVI on a DAG of latents with the real rdopt codec\n\n"
        f"Command (from the repository root):\n\n```\n{command}\n```\n\n"
        f"Settings: {settings}; total wall time {seconds:.0f} s.\n\n"
        + markdown_table(rows)
        + "\n\n"
        + NOTES
    )


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quality", type=int, default=4)
    p.add_argument("--crops", type=int, default=2)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--exact-steps", type=int, default=4)
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--sgd-lr", default="auto", help="SGD step size, or 'auto': 1/L at the FAVI point")
    p.add_argument("--adam-lr", type=float, default=0.05)
    p.add_argument("--relaxation", default="ste", choices=["sga", "da", "ste", "noise", "identity"])
    p.add_argument("--tau", type=float, default=0.5, help="temperature of sga/da (constant unless --anneal)")
    p.add_argument("--anneal", action="store_true", help="anneal sga/da from --tau to 0.05 over each budget")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--write", default=None, help="write RESULTS.md (command, settings, table, notes) here")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    t0 = time.perf_counter()
    sgd_lr = None if args.sgd_lr == "auto" else float(args.sgd_lr)
    rows = run_demo(args.quality, args.crops, args.size, args.exact_steps, args.steps, sgd_lr, args.adam_lr,
                    args.relaxation, args.seed, args.tau, args.anneal)
    print(markdown_table(rows))
    if args.write:
        command = ".venv/bin/python benchmarks/dag/run_dag_demo.py " + " ".join(sys.argv[1:] if argv is None else argv)
        settings = (f"rdopt-msh q{args.quality}, {args.crops} crop(s) of {args.size}×{args.size} from "
                    f"skimage.data.astronaut(), relaxation {args.relaxation}"
                    + (f" (τ {'annealed from ' if args.anneal else '='} {args.tau})" if args.relaxation in ("sga", "da")
                       else "")
                    + f", seed {args.seed}, torch {torch.__version__} on {platform.machine()} with "
                    f"{args.threads} thread(s)")
        with open(args.write, "w") as f:
            f.write(results_markdown(rows, command, settings, time.perf_counter() - t0))
    return 0


if __name__ == "__main__":
    sys.exit(main())
