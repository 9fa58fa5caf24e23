"""Distortion retargeting: MS-SSIM BD-rate of ``--distortion ms-ssim`` against the MSE encode
(same MSE-trained decoder), and the PSNR it costs.

Per image and quality: a SAVI encode minimising MSE and one minimising MS-SSIM (λ·K·(1 − MS-SSIM),
:data:`rdopt.core.rd.MS_SSIM_LAMBDA_FACTOR`), each at the model's λ. Curves: real bpp vs MS-SSIM in dB
(−10·log10(1 − MS-SSIM), measured on the decoded file by pytorch-msssim) and vs PSNR. BD-rate (pchip) per
image of the ms-ssim curve against the mse curve on the MS-SSIM axis (negative: fewer bits for the same
MS-SSIM), BD-PSNR on the PSNR axis (the PSNR it costs). Images need ≥ 161 px per side (5 scales).

Full run:
    PYTHONPATH=src .venv/bin/python benchmarks/image/msssim_retarget.py --steps 2000 --out benchmarks/image/msssim_retarget.json
Smoke run (one small crop, two qualities, as run when the feature was added):
    PYTHONPATH=src .venv/bin/python benchmarks/image/msssim_retarget.py --limit 1 --crop 176 --steps 60 \
        --qualities 3,5 --out /tmp/msssim_smoke.json
"""

from __future__ import annotations

import argparse
import math
import statistics

from usertargets_common import Models, add_common_args, images, options, setup_threads, timed, write


def db(msssim: float) -> float:
    return -10 * math.log10(max(1 - msssim, 1e-12))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(p)
    p.add_argument("--qualities", default="2,3,4,5,6")
    args = p.parse_args()
    setup_threads(args)

    from rdopt.api.image import encode_image
    from rdopt.core.rd import MSE, Distortion
    from rdopt.metrics.bd import bd_psnr, bd_rate

    qualities = [int(q) for q in args.qualities.split(",")]
    models = Models()
    opts = options(args)
    rows, per_image = [], []
    for ev in images(args):
        im = ev.image
        curves = {"mse": [], "ms-ssim": []}
        for q in qualities:
            for name, dist in (("mse", MSE), ("ms-ssim", Distortion(1.0))):
                enc, sec = timed(encode_image, models(q), im, opts, distortion=dist)
                s = enc.stats
                if s.ms_ssim is None:
                    raise SystemExit(f"{ev.name} is {im.width}×{im.height}: MS-SSIM needs ≥ 161 px per side (use --crop)")
                curves[name].append((s.bpp, s.psnr, s.ms_ssim))
                rows.append({"image": ev.name, "quality": q, "distortion": name, "bpp": s.bpp, "psnr": s.psnr,
                             "ms_ssim": s.ms_ssim, "ms_ssim_db": db(s.ms_ssim), "seconds": sec})
                print(f"{ev.name} q{q} {name}: {s.bpp:.4f} bpp, {s.psnr:.2f} dB, MS-SSIM {s.ms_ssim:.4f} "
                      f"({db(s.ms_ssim):.2f} dB), {sec:.1f} s", flush=True)
        m, t = curves["mse"], curves["ms-ssim"]
        entry = {"image": ev.name}
        try:
            entry["bd_rate_msssim"] = bd_rate([r for r, _, _ in m], [db(x) for _, _, x in m],
                                              [r for r, _, _ in t], [db(x) for _, _, x in t])
        except ValueError as e:
            entry["bd_rate_msssim"] = None
            entry["bd_rate_error"] = str(e)
        try:
            entry["bd_psnr"] = bd_psnr([r for r, _, _ in m], [p for _, p, _ in m], [r for r, _, _ in t], [p for _, p, _ in t])
        except ValueError as e:
            entry["bd_psnr"] = None
            entry["bd_psnr_error"] = str(e)
        per_image.append(entry)
        print(entry, flush=True)
    ok = [e["bd_rate_msssim"] for e in per_image if e["bd_rate_msssim"] is not None]
    okp = [e["bd_psnr"] for e in per_image if e["bd_psnr"] is not None]
    summary = {"images": len(per_image), "mean_bd_rate_msssim_pct": statistics.mean(ok) if ok else None,
               "mean_bd_psnr_db": statistics.mean(okp) if okp else None}
    print(summary)
    write(args.out, {"args": vars(args), "summary": summary, "per_image": per_image, "rows": rows})


if __name__ == "__main__":
    main()
