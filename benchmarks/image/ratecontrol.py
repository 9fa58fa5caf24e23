"""Rate control: hit rate and size error of ``--target-size`` at four targets over the evaluation
photos, its time against one plain SAVI encode, and its PSNR against the nearest fixed quality.

Per image: plain SAVI encodes (same steps) at every embedded quality (the "fixed qualities" a user could
pick), then ``rdopt.ratecontrol.image.encode_to_size`` at each target. Per (image, target):

* hit: the file is ≤ the target and within 1 % of it; size error: file / target − 1;
* time: rate-control wall time / the wall time of the plain encode at the quality it chose;
* PSNR gain: rate-control PSNR − PSNR of the largest fixed quality whose plain file is ≤ the target (the
  best a user gets by picking a quality; none if even q2 is larger).

Full run (the evaluation photos, 2000 steps):
    PYTHONPATH=src .venv/bin/python benchmarks/image/ratecontrol.py --steps 2000 --out benchmarks/image/ratecontrol.json
Smoke run (one small crop, as run when the feature was added):
    PYTHONPATH=src .venv/bin/python benchmarks/image/ratecontrol.py --limit 1 --crop 128 --steps 100 \
        --targets-bpp 0.3,0.5,0.8,1.2 --out /tmp/ratecontrol_smoke.json
"""

from __future__ import annotations

import argparse
import statistics

from usertargets_common import Models, add_common_args, images, options, setup_threads, timed, write


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(p)
    p.add_argument("--targets-bpp", default="0.15,0.3,0.5,0.8", help="targets in bits per pixel (default 4)")
    p.add_argument("--qualities", default="2,3,4,5,6")
    args = p.parse_args()
    setup_threads(args)

    from rdopt.api.image import encode_image
    from rdopt.ratecontrol.image import bytes_for_bpp, encode_to_size

    targets = [float(t) for t in args.targets_bpp.split(",")]
    qualities = [int(q) for q in args.qualities.split(",")]
    models = Models()
    opts = options(args)
    rows = []
    for ev in images(args):
        im = ev.image
        fixed = {}
        for q in qualities:
            enc, sec = timed(encode_image, models(q), im, opts)
            fixed[q] = {"bytes": enc.stats.file_bytes, "psnr": enc.stats.psnr, "seconds": sec}
            print(f"{ev.name} q{q}: {enc.stats.file_bytes} B, {enc.stats.psnr:.2f} dB, {sec:.1f} s", flush=True)
        for tb in targets:
            target = bytes_for_bpp(tb, im.width, im.height)
            rc = encode_to_size(im, target, opts, models, qualities)
            s = rc.encoded.stats
            fits = [q for q in qualities if fixed[q]["bytes"] <= target]
            near = max(fits) if fits else None
            chosen_q = s.quality
            row = {"image": ev.name, "width": im.width, "height": im.height, "target_bpp": tb, "target_bytes": target,
                   "bytes": s.file_bytes, "size_error": s.file_bytes / target - 1, "hit": rc.hit, "in_range": rc.in_range,
                   "quality": chosen_q, "lmbda": s.lmbda, "psnr": s.psnr, "steps_total": rc.steps, "seconds": rc.seconds,
                   "time_vs_plain": rc.seconds / fixed[chosen_q]["seconds"],
                   "fixed_quality": near, "fixed_bytes": fixed[near]["bytes"] if near else None,
                   "fixed_psnr": fixed[near]["psnr"] if near else None,
                   "psnr_gain": s.psnr - fixed[near]["psnr"] if near else None, "message": rc.message,
                   "runs": rc.runs}
            rows.append(row)
            print(f"  target {tb} bpp = {target} B: {s.file_bytes} B ({100 * row['size_error']:+.2f} %), "
                  f"{'hit' if rc.hit else 'miss'}, q{chosen_q} λ={s.lmbda:.4g}, {s.psnr:.2f} dB "
                  f"(fixed q{near}: {row['fixed_psnr'] if near else float('nan'):.2f} dB), "
                  f"{rc.seconds:.1f} s = {row['time_vs_plain']:.2f}× plain", flush=True)
    inr = [r for r in rows if r["in_range"]]
    summary = {
        "cases": len(rows), "in_range": len(inr), "hits": sum(r["hit"] for r in rows),
        "hit_rate_in_range": (sum(r["hit"] for r in inr) / len(inr)) if inr else None,
        "above_target": sum(r["bytes"] > r["target_bytes"] for r in inr),
        "mean_abs_size_error_in_range": statistics.mean(abs(r["size_error"]) for r in inr) if inr else None,
        "max_abs_size_error_in_range": max(abs(r["size_error"]) for r in inr) if inr else None,
        "mean_time_vs_plain": statistics.mean(r["time_vs_plain"] for r in rows) if rows else None,
        "max_time_vs_plain": max(r["time_vs_plain"] for r in rows) if rows else None,
        "mean_psnr_gain_vs_fixed": statistics.mean(g for g in (r["psnr_gain"] for r in rows) if g is not None)
        if any(r["psnr_gain"] is not None for r in rows) else None,
    }
    print(summary)
    write(args.out, {"args": vars(args), "summary": summary, "rows": rows})


if __name__ == "__main__":
    main()
