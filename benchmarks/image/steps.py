"""How the final true R-D cost depends on the SGA step budget (paper schedule vs a schedule fitted to
the budget), on crops of the evaluation photos.

    .venv/bin/python benchmarks/image/steps.py --quality 4 --crop 256 --images 6 --threads 2
"""

from __future__ import annotations

import argparse
import json

import torch

from rdopt.data.images import pad, to_tensor
from rdopt.evaluation import collect_images, parse_crop
from rdopt.infer.image import SaviOptions, savi
from rdopt.models.registry import load_model


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quality", type=int, default=4)
    ap.add_argument("--crop", default="256")
    ap.add_argument("--images", type=int, default=6)
    ap.add_argument("--budgets", default="250,500,1000,2000")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="benchmarks/image/steps.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = load_model("rdopt-msh", args.quality, device=device)
    ims = collect_images(["eval-set"], parse_crop(args.crop))[: args.images]
    x = torch.cat([pad(to_tensor(im.image.rgb, device), 64) for im in ims])
    runs = []
    configs = [("paper", "none", 2000)] + [("budget", "cosine", int(b)) for b in args.budgets.split(",")]
    for schedule, lr_decay, steps in configs:
        r = savi(model, x, SaviOptions(method="sga", steps=steps, schedule=schedule, lr_decay=lr_decay, progress=True))
        init, final = r.initial_loss.mean().item(), r.final_loss.mean().item()
        runs.append({"schedule": schedule, "lr_decay": lr_decay, "steps": steps, "initial": init, "final": final,
                     "gain": init - final, "relative_gain_percent": 100 * (init - final) / init,
                     "seconds": r.loop.seconds})
        print(json.dumps(runs[-1]))
    ref = max(run["gain"] for run in runs if run["steps"] == 2000)
    for run in runs:
        run["fraction_of_best_2000_step_gain"] = run["gain"] / ref
    doc = {"command": "benchmarks/image/steps.py " + " ".join(f"--{k} {v}" for k, v in vars(args).items() if k != "out"),
           "quality": args.quality, "images": [im.name for im in ims], "crop": args.crop, "runs": runs}
    with open(args.out, "w") as f:
        json.dump(doc, f, indent=1)


if __name__ == "__main__":
    main()
