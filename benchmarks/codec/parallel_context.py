"""Cost of a parallel context model against the hyperprior it was grown from, at 768×512, one thread, side by side
(alternating runs, medians): an SGA step (relaxed evaluation + backward of the decoder-side modules), the entropy
decode of a file and the synthesis. rdopt-scc grown from the shipped rdopt-msh q3 (context terms at zero: the same
transforms, so the differences are the context model's) unless ``--scc FILE`` gives trained weights.

    .venv/bin/python benchmarks/codec/parallel_context.py [--scc FILE] [--repeats 5] > benchmarks/codec/parallel_context.txt
"""

from __future__ import annotations

import argparse
import platform
import shlex
import statistics
import sys
import time

import numpy as np
import torch

from machine import background_jobs, load_average  # benchmarks/codec/machine.py


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scc", help="rdopt-scc weights (default: grown from rdopt-msh q3, context terms at zero)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--steps", type=int, default=5, help="SGA steps per timed run")
    args = ap.parse_args()
    torch.set_num_threads(1)
    from skimage import data

    from rdopt.codecs.image.loading import fine_scale_table, load_model
    from rdopt.codecs.image.parallel import ParallelContextAdapter
    from rdopt.codecs.image.scc import grow_from_hyperprior
    from rdopt.core.rd import rd_cost
    from rdopt.core.types import relax_all
    from rdopt.relax.rounding import sga

    msh = load_model("rdopt-msh", 3)
    if args.scc:
        scc = load_model(checkpoint=args.scc)
    else:
        net = grow_from_hyperprior(msh.net)
        net.update(scale_table=fine_scale_table(), force=True)
        scc = ParallelContextAdapter(net.eval(), "rdopt-scc-custom", msh.lmbda, 3)
        for p in scc.parameters():
            p.requires_grad_(False)
    from PIL import Image

    rgb = np.asarray(Image.fromarray(data.coffee()).resize((768, 512), Image.Resampling.LANCZOS))
    x = torch.from_numpy(rgb.copy()).permute(2, 0, 1)[None].float() / 255
    load_before, jobs = load_average(), background_jobs("parallel_context.py")

    def sga_steps(model) -> float:
        with torch.no_grad():
            lat = model.amortize(x)
        lat = lat.map(lambda t: t.clone().requires_grad_(True))
        opt = torch.optim.Adam(list(lat.tensors), lr=5e-3)
        t = time.perf_counter()
        for i in range(args.steps):
            ev = model.evaluate(lat, relax_all(sga(0.5, torch.Generator().manual_seed(i)), lat.names))
            loss = rd_cost(ev, x, model.lmbda).loss.sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
        return (time.perf_counter() - t) / args.steps

    def decode(model) -> tuple[float, float, int]:
        with torch.no_grad():
            coded = model.compress(model.quantize(model.amortize(x)))
            t = time.perf_counter()
            lat = model.decompress(coded)
            t1 = time.perf_counter()
            model.synthesize(lat["y"])
            t2 = time.perf_counter()
        return t1 - t, t2 - t1, coded.num_bytes()

    rows = {"msh": {"step": [], "entropy": [], "synthesis": []}, "scc": {"step": [], "entropy": [], "synthesis": []}}
    size = {}
    for _ in range(args.repeats):
        for name, model in (("msh", msh), ("scc", scc)):
            rows[name]["step"].append(sga_steps(model))
            e, s, n = decode(model)
            rows[name]["entropy"].append(e)
            rows[name]["synthesis"].append(s)
            size[name] = n
    med = {n: {k: statistics.median(v) for k, v in r.items()} for n, r in rows.items()}
    print(f"# command: {' '.join(shlex.quote(a) for a in sys.argv)}")
    print(f"# machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, 1 thread; load average "
          f"before {load_before}, after {load_average()}; other jobs: {len(jobs)}")
    for j in jobs:
        print(f"#   {j}")
    print(f"# image: scikit-image coffee resized to 768×512; rdopt-scc: {args.scc or 'grown from rdopt-msh q3'}")
    print(f"# medians of {args.repeats} alternating runs ({args.steps} SGA steps each)")
    print(f"{'':22s} {'rdopt-msh q3':>14s} {'rdopt-scc':>14s} {'ratio':>7s}")
    for k, label in (("step", "SGA step (s)"), ("entropy", "entropy decode (s)"), ("synthesis", "synthesis (s)")):
        print(f"{label:22s} {med['msh'][k]:14.3f} {med['scc'][k]:14.3f} {med['scc'][k] / med['msh'][k]:7.2f}")
    total = {n: med[n]["entropy"] + med[n]["synthesis"] for n in med}
    print(f"{'decode total (s)':22s} {total['msh']:14.3f} {total['scc']:14.3f} {total['scc'] / total['msh']:7.2f}")
    print(f"{'file bytes (amortized)':22s} {size['msh']:14d} {size['scc']:14d}")


if __name__ == "__main__":
    main()
