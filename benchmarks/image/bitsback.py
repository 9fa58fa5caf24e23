"""Lossy bits-back (paper 003 §3.3): SGA+BB vs SGA vs amortized, with the ablations A5 (BB without
SGA: amortized ŷ, reproducible BBVI) and A6 (BB without iterative inference: amortized ŷ, q(z) = h_a(ŷ)),
on crops of the evaluation photos. Every number comes from a real file decoded again (bits-back files: in
this process, side information recovered and checked).

Per quality, the anchors ``amortized`` and ``sga`` use ``rdopt-msh``; the bits-back methods use
``rdopt-msh-bb`` (shipped weights, or ``--bb-checkpoint Q=FILE``). Side information comes from the seeded
source (as long as ẑ can take), so ``net_bpp`` = (file bits − recovered bits) / pixels is the rate that
counts; ``recovered_share`` = recovered / file bits.

BD-rate (vs amortized, on net bpp for bits-back) needs at least 4 qualities with bits-back weights; with
fewer the script prints the per-quality table only. Full-size run (not run yet: only q3 has bits-back
weights, fine-tuned for a few hundred steps)::

    .venv/bin/python benchmarks/image/bitsback.py --qualities 2,3,4,5 --crop 256 --images 6 --steps 300 \\
        --lr 0.03 --bbvi-steps 300 --threads 1 --out benchmarks/image/bitsback_256.json

Smoke run, and the small run that was done (results in ``bitsback.md``)::

    .venv/bin/python benchmarks/image/bitsback.py --qualities 3 --crop 64 --images 1 --steps 5 --bbvi-steps 5 \\
        --out /tmp/bitsback_smoke.json
    .venv/bin/python benchmarks/image/bitsback.py --qualities 3 --crop 128 --images 2 --steps 100 --lr 0.03 \\
        --bbvi-steps 100 --out benchmarks/image/bitsback_small.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np
import torch

from rdopt.api.bitsback import encode_image_bb
from rdopt.api.image import encode_image
from rdopt.codecs.image.bitsback import load_bitsback
from rdopt.codecs.image.loading import ModelUnavailable, load_model
from rdopt.eval.images import collect_images, parse_crop
from rdopt.infer.options import SolverOptions
from rdopt.infer.options import SolverOptions
from rdopt.metrics.bd import bd_rate

METHODS = ("amortized", "sga", "sga-bb", "A5", "A6")


def run_one(method, q, im, args, bb_checkpoints):
    rec = {"method": method, "quality": q, "image": im.name}
    t0 = time.perf_counter()
    if method in ("amortized", "sga"):
        model = load_model("rdopt-msh", q)
        opts = SolverOptions(method=method, steps=0 if method == "amortized" else args.steps, lr=args.lr,
                           lr_decay="cosine", progress=False)
        enc = encode_image(model, im.image, opts)
        s = enc.stats
        rec.update(file_bpp=s.bpp, net_bpp=s.bpp, recovered_share=0.0, psnr=s.psnr, rd_cost=s.rd_cost,
                   lmbda=s.lmbda)
    else:
        model = load_bitsback(q, checkpoint=bb_checkpoints.get(q))
        steps = args.steps if method == "sga-bb" else 0
        opts = SolverOptions(method="sga" if steps else "amortized", steps=steps, lr=args.lr, lr_decay="cosine",
                             bbvi_steps=0 if method == "A6" else args.bbvi_steps, progress=False)
        enc = encode_image_bb(model, im.image, opts, source_seed=args.seed)
        s = enc.stats
        rec.update(file_bpp=s.bpp, net_bpp=s.net_bpp, recovered_share=s.side_info_bits / s.file_bits, psnr=s.psnr,
                   rd_cost=s.rd_cost_net, lmbda=s.lmbda, z_taken_bits=s.z_taken_bits, padding_bits=s.padding_bits)
    rec["seconds"] = time.perf_counter() - t0
    return rec


def summarize(records, qualities):
    lines = []
    by = {}
    for r in records:
        by.setdefault((r["method"], r["quality"]), []).append(r)
    lines.append(f"{'method':10s} {'q':>2s} {'file bpp':>9s} {'net bpp':>9s} {'recov.':>7s} {'PSNR':>7s} "
                 f"{'R-D cost':>9s} {'time[s]':>8s} images")
    curves = {}
    for m in METHODS:
        for q in qualities:
            rs = by.get((m, q))
            if not rs:
                continue
            mean = {k: float(np.mean([r[k] for r in rs])) for k in ("file_bpp", "net_bpp", "recovered_share", "psnr",
                                                                    "rd_cost", "seconds")}
            curves.setdefault(m, []).append((mean["net_bpp"], mean["psnr"]))
            lines.append(f"{m:10s} {q:2d} {mean['file_bpp']:9.4f} {mean['net_bpp']:9.4f} "
                         f"{100 * mean['recovered_share']:6.1f}% {mean['psnr']:7.3f} {mean['rd_cost']:9.4f} "
                         f"{mean['seconds']:8.2f} {len(rs)}")
    anchor = curves.get("amortized", [])
    for m, pts in curves.items():
        if m == "amortized":
            continue
        if len(pts) >= 4 and len(anchor) >= 4:
            ra, pa = zip(*anchor)
            rt, pt = zip(*pts)
            lines.append(f"BD-rate {m} vs amortized (net bpp): {bd_rate(ra, pa, rt, pt):+.2f} %")
        else:
            lines.append(f"BD-rate {m} vs amortized: needs >= 4 qualities (have {len(pts)})")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--qualities", default="3")
    ap.add_argument("--crop", default="256")
    ap.add_argument("--images", type=int, default=6)
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--steps", type=int, default=300, help="SGA (and joint SGA+BBVI) steps")
    ap.add_argument("--lr", type=float, default=0.03)
    ap.add_argument("--bbvi-steps", type=int, default=300)
    ap.add_argument("--bb-checkpoint", action="append", default=[], metavar="Q=FILE",
                    help="bits-back weights of a quality (default: the shipped rdopt-msh-bb-qQ)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the side-information source")
    ap.add_argument("--source", default="eval-set",
                    help="images: eval-set (the evaluation photos, for reporting) or a folder (e.g. the training photos "
                         "runs/photos/train, for choosing settings)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default="benchmarks/image/bitsback.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    qualities = [int(q) for q in args.qualities.split(",")]
    methods = [m for m in args.methods.split(",") if m]
    unknown = set(methods) - set(METHODS)
    if unknown:
        ap.error(f"unknown methods {sorted(unknown)}; choose from {', '.join(METHODS)}")
    bb_checkpoints = {int(k): v for k, v in (s.split("=", 1) for s in args.bb_checkpoint)}
    ims = collect_images([args.source], parse_crop(args.crop))[: args.images]
    doc = json.load(open(args.out)) if os.path.exists(args.out) else {"records": []}
    done = {(r["method"], r["quality"], r["image"]) for r in doc["records"]}
    doc["command"] = "benchmarks/image/bitsback.py " + " ".join(sys.argv[1:])
    doc["settings"] = {k: v for k, v in vars(args).items() if k != "out"}
    for q in qualities:
        for m in methods:
            for im in ims:
                if (m, q, im.name) in done:
                    continue
                try:
                    rec = run_one(m, q, im, args, bb_checkpoints)
                except ModelUnavailable as e:
                    print(f"skip {m} q{q}: {e}", file=sys.stderr)
                    break
                doc["records"].append(rec)
                print(json.dumps(rec), flush=True)
                with open(args.out + ".tmp", "w") as f:
                    json.dump(doc, f, indent=1)
                os.replace(args.out + ".tmp", args.out)
    text = summarize(doc["records"], qualities)
    print(text)
    with open(os.path.splitext(args.out)[0] + ".txt", "w") as f:
        f.write(text + "\n")


if __name__ == "__main__":
    main()
