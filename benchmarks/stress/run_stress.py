"""Stress benchmark for the scale-floor collapse: the qualities of an embedded image model (rdopt-msh, or
rdopt-scc with --model) on colour and texture extremes.

    .venv/bin/python benchmarks/stress/run_stress.py --out benchmarks/stress/shipped.json [--model M] [--weights DIR] [--photos DIR]
    .venv/bin/python benchmarks/stress/run_stress.py --rows benchmarks/stress/shipped.json --out ... (re-check only)
    .venv/bin/python benchmarks/stress/run_stress.py --model rdopt-scc --qualities 3 ... --out q3.json  (one quality;
        the record of all is then --rows q2.json … q6.json --out benchmarks/stress/scc.json, with the same --weights)

The set: the test's stress set (5 scikit-image training photos × 9 variants + 4 synthetic, 256×256) and,
with --photos (the held-out wallpaper photos of benchmarks/train/fetch_photos.py, runs/photos/stress), the
same variants of those photos as 512×384 centre crops. --weights DIR takes MODEL-qQ.pt files from DIR
instead of the shipped ones (e.g. the phase-4 weights). Prints per quality: files ≥ PNG, worst bpp / PNG
bpp, worst photo bpp against the hardest evaluation photo, the largest share of bits at floored scales,
and the check's violations; writes every row as JSON with the weight hash of every quality (the test suite holds
the shipped weights to this record: tests/integration/test_stress.py).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from rdopt.codecs.image.loading import EMBEDDED, EMBEDDED_QUALITIES, SCC, load_model
from rdopt.data.sources import TRAIN_IMAGE_FILES, eval_image_paths, training_photos
from rdopt.data.stress import stress_set
from rdopt.eval.stress import StressRow, check, hardest_eval_bpp, measure

STRESS_PHOTOS = ("grass.png", "hubble_deep_field.jpg", "ihc.png", "retina.jpg", "camera.png")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--model", default=EMBEDDED, choices=(EMBEDDED, SCC), help="embedded model family (default %(default)s)")
    ap.add_argument("--weights", help="folder with MODEL-qQ.pt files (default: the shipped weights)")
    ap.add_argument("--photos", help="folder of extra training-side photos (512×384 centre crops)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--qualities", default=",".join(map(str, EMBEDDED_QUALITIES)),
                    help="comma-separated (default all; a record for shipping needs all)")
    ap.add_argument("--rows", nargs="+", help="take the measured rows from these JSON outputs instead of encoding "
                                              "again (e.g. one run per quality; recomputes only the evaluation-photo "
                                              "reference, the weight hashes and the check)")
    args = ap.parse_args()
    qualities = [int(q) for q in args.qualities.split(",")]
    torch.set_num_threads(args.threads)
    photos = dict(zip(TRAIN_IMAGE_FILES, training_photos()))
    images = stress_set({n: photos[n] for n in STRESS_PHOTOS}, (256, 256))
    if args.photos and not args.rows:
        extra = {p.stem: np.asarray(Image.open(p).convert("RGB")) for p in sorted(Path(args.photos).glob("*.png"))}
        images += stress_set(extra, (384, 512), with_synthetic=False)
    eval_photos = [np.asarray(Image.open(p).convert("RGB")) for p in eval_image_paths()]
    rows, hardest, hashes = [], {}, {}
    if args.rows:
        for f in args.rows:
            doc = json.loads(Path(f).read_text())
            if doc.get("model", EMBEDDED) != args.model:
                raise SystemExit(f"{f} holds rows of {doc.get('model', EMBEDDED)}, not {args.model}")
            rows += [StressRow(**r) for r in doc["rows"] if r["quality"] in qualities]
    for q in tqdm(qualities, desc="qualities"):
        ckpt = str(Path(args.weights) / f"{args.model}-q{q}.pt") if args.weights else None
        model = load_model(args.model, quality=q, checkpoint=ckpt)
        hardest[q] = hardest_eval_bpp(model, eval_photos)
        hashes[q] = model.weight_hash().hex()
        if not args.rows:
            rows += measure(model, images)
    problems = check(rows, hardest)
    print(f"model: {args.model}; weights: {args.weights or 'shipped'}; {len(rows) // len(qualities)} images per quality")
    print("| q | files ≥ PNG | worst file/PNG | worst photo bpp (image) | hardest eval bpp | max floor-bits share (photo) | violations |")
    print("|---|---:|---:|---|---:|---:|---:|")
    for q in qualities:
        rq = [r for r in rows if r.quality == q]
        ph = [r for r in rq if r.kind == "photo"]
        worst = max(ph, key=lambda r: r.bpp)
        ratio = max(r.file_bytes / r.png_bytes for r in rq)
        nviol = sum(1 for p in problems if p.startswith(f"q{q} "))
        print(f"| {q} | {sum(r.file_bytes >= r.png_bytes for r in rq)} | {ratio:.3f} | {worst.bpp:.3f} ({worst.image}) | "
              f"{hardest[q]:.3f} | {max(r.floor_bits_share for r in ph):.3f} | {nviol} |")
    print(f"violations: {len(problems)}")
    for p in problems[:40]:
        print("  " + p)
    Path(args.out).write_text(json.dumps({"model": args.model, "weights": args.weights or "shipped", "weight_hashes": hashes,
                                          "hardest_eval_bpp": hardest,
                                          "violations": problems, "rows": [asdict(r) for r in rows]}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
