"""Summarize benchmarks/train/objectives.sh: R-D cost of each objective's export on the evaluation photos,
the gradient SNR per parameter group, and seconds per step vs k.

    .venv/bin/python benchmarks/train/objectives_summary.py runs/objectives --quality 3 [--json OUT.json]

R-D cost = real bpp (the bytes of the entropy-coded y and z streams, 8 bits each, over the image's pixels)
+ λ·255²·MSE of the decoded picture (clamped to [0, 1], 8-bit rounding not applied), averaged over the six
evaluation photos (scikit-image astronaut, coffee, chelsea, rocket, motorcycle left/right); the relative
difference is against the `elbo` run. The paper's reference (Table 7, Ballé 2018 base, Kodak, λ = 0.0130-like
units of bpp + λ·MSE on 0..255): 1.017 (ELBO) → 0.9988 (MIX, k = 8) → 0.9954 (DMS, 16×16); IWAE 1.42.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import torch

from rdopt.codecs.image.loading import COMPRESSAI_LAMBDAS, load_model
from rdopt.data.images import load_image, pad, to_tensor
from rdopt.data.sources import eval_image_paths

RUNS = ["elbo", "elbo-no-direct-y", "iwae-k8", "ms-mix-k8", "ms-dms-k4l4", "ms-mix-k8-dreg", "ms-mix-k8-bpp"]


@torch.no_grad()
def rd_on_photos(weights: Path, quality: int, lmbda: float) -> dict:
    model = load_model("rdopt-msh", quality, checkpoint=weights)
    rows = []
    for p in eval_image_paths():
        rgb = load_image(p).rgb
        h, w = rgb.shape[:2]
        x = to_tensor(rgb)
        lat = model.amortize(pad(x, model.pad_multiple))
        hard = model.quantize(lat)
        coded = model.compress(hard)
        bpp = 8 * coded.num_bytes(0) / (h * w)
        x_hat = model.reconstruct(hard)[..., :h, :w].clamp(0, 1)
        mse = float((x_hat - x).pow(2).mean())
        rows.append({"bpp": bpp, "mse": mse, "cost": bpp + lmbda * 255**2 * mse})
    n = len(rows)
    return {k: sum(r[k] for r in rows) / n for k in ("bpp", "mse", "cost")}


def seconds_per_step(log: Path) -> float | None:
    rows = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    times = [r["elapsed_s"] for r in rows if "elapsed_s" in r]
    if len(times) < 3:
        return None
    # the first steps include start-up: the slope over the second half of the run
    half = len(times) // 2
    return (times[-1] - times[half]) / max(len(times) - 1 - half, 1)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out", type=Path)
    ap.add_argument("--quality", type=int, default=3)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--extra", action="append", default=[], metavar="NAME=WEIGHTS",
                    help="also evaluate these rdopt-msh weights (e.g. fine-tunes of the shipped model)")
    ap.add_argument("--baseline", default="elbo", help="the run the relative differences are against")
    args = ap.parse_args()
    lmbda = COMPRESSAI_LAMBDAS[args.quality]
    result = {"lmbda": lmbda, "runs": {}, "snr": {}, "timing": {}}
    extra = dict(e.split("=", 1) for e in args.extra)
    for name in RUNS + list(extra):
        w = Path(extra[name]) if name in extra else args.out / f"{name}.pt"
        if not w.is_file():
            continue
        rd = rd_on_photos(w, args.quality, lmbda)
        log = args.out / f"{name}.state.log.jsonl"
        rows = [json.loads(line) for line in log.read_text().splitlines() if line.strip()] if log.is_file() else []
        steps = [r for r in rows if "loss" in r]
        snr = [r for r in rows if "snr" in r]
        if snr:
            result["snr"][name] = snr[-1]["snr"]
        rd["steps"] = steps[-1]["step"] if steps else 0
        rd["s_per_step"] = seconds_per_step(log) if log.is_file() else None
        result["runs"][name] = rd
    for k in (1, 2, 4, 8, 16):
        log = args.out / f"timing-k{k}.state.log.jsonl"
        if log.is_file():
            result["timing"][k] = seconds_per_step(log)
    base = result["runs"].get(args.baseline, {}).get("cost")
    print(f"λ = {lmbda} (quality {args.quality}); R-D cost on the evaluation photos (real bpp + λ·255²·MSE)\n")
    print(f"| run | steps | bpp | PSNR (dB) | R-D cost | vs {args.baseline} |")
    print("|---|---:|---:|---:|---:|---:|")
    import math

    for name, r in result["runs"].items():
        rel = f"{100 * (r['cost'] / base - 1):+.2f} %" if base else "–"
        psnr = -10 * math.log10(max(r["mse"], 1e-12))
        print(f"| {name} | {r['steps']} | {r['bpp']:.4f} | {psnr:.2f} | {r['cost']:.4f} | {rel} |")
    if result["snr"]:
        groups = ["y_inference", "y_generative", "z_inference", "z_generative", "z_prior"]
        print("\nGradient SNR per parameter group at the end of training (mean over scalars of |mean|/std)\n")
        print("| trained with | measured objective | " + " | ".join(groups) + " |")
        print("|---|---|" + "---:|" * len(groups))
        for run, per in result["snr"].items():
            for obj, g in per.items():
                print(f"| {run} | {obj} | " + " | ".join(f"{g[x]:.3f}" for x in groups) + " |")
    if result["timing"]:
        t1 = result["timing"].get(1)
        print("\nSeconds per step vs k (ms-mix; k = 1 is the ELBO)\n")
        print("| k | s/step | × k = 1 |")
        print("|---:|---:|---:|")
        for k, t in result["timing"].items():
            ratio = f"{t / t1:.2f}" if (t and t1) else "–"
            print(f"| {k} | {t:.3f} | {ratio} |" if t is not None else f"| {k} | – | – |")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
