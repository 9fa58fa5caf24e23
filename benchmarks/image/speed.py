"""Speed of the image optimization step, as a ratio against one forward+backward of the decoder-side
modules alone, measured in the same run (interleaved blocks), plus images per hour.

    .venv/bin/python benchmarks/image/speed.py --quality 4 --crop 256 --images 6 --steps 200 --threads 2
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from common import setup
from rdopt.core.rd import rd_cost
from rdopt.core.types import relax_all
from rdopt.infer.codec_graph import Target, codec_graph
from rdopt.infer.image import savi
from rdopt.infer.options import SolverOptions
from rdopt.relax.rounding import identity


def reference_seconds(model, x, lat, n):
    """Mean time of one forward+backward through h_s, g_s and the entropy models (no optimizer)."""
    free = lat.map(lambda t: t.clone().requires_grad_(True))
    relax = relax_all(identity(), free.names)
    t = time.perf_counter()
    for _ in range(n):
        loss = rd_cost(model.evaluate(free, relax), x, model.lmbda).loss.sum()
        for v in free.values():
            v.grad = None
        loss.backward()
    return (time.perf_counter() - t) / n


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quality", type=int, default=4)
    ap.add_argument("--crop", default="256")
    ap.add_argument("--images", type=int, default=6)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="benchmarks/image/speed.json")
    args = ap.parse_args()
    model, ims, x = setup(args.quality, args.crop, args.images, args.threads)
    device = str(x.device)
    with torch.no_grad():
        lat = model.amortize(x)
    reference_seconds(model, x, lat, 3)  # warm-up
    rows = []
    for r in range(args.rounds):
        ref_a = reference_seconds(model, x, lat, 20)
        res = {}
        for method in ("sga", "noise", "danneal"):
            out = savi(codec_graph(model), Target(x, model.lmbda),
                       SolverOptions(method=method, steps=args.steps, schedule="paper", progress=False), init=lat)
            res[method] = out.loop.seconds / args.steps
        ref_b = reference_seconds(model, x, lat, 20)
        ref = (ref_a + ref_b) / 2
        rows.append({"round": r, "reference_s": ref, **{f"{m}_step_s": v for m, v in res.items()},
                     **{f"{m}_ratio": v / ref for m, v in res.items()}})
        print(json.dumps(rows[-1]))
    def med(k):
        return sorted(row[k] for row in rows)[len(rows) // 2]
    summary = {
        "command": "benchmarks/image/speed.py " + " ".join(f"--{k} {v}" for k, v in vars(args).items() if k != "out"),
        "device": device, "threads": args.threads, "batch": len(ims), "crop": args.crop,
        "reference_s_median": med("reference_s"),
        **{f"{m}_ratio_median": med(f"{m}_ratio") for m in ("sga", "noise", "danneal")},
        "sga_images_per_hour_2000_steps": 3600.0 / (med("sga_step_s") * 2000) * len(ims),
        "rounds": rows,
    }
    with open(args.out, "w") as f:
        json.dump(summary, f, indent=1)
    print(json.dumps({k: v for k, v in summary.items() if k != "rounds"}, indent=1))


if __name__ == "__main__":
    main()
