"""``rdopt demo``: rdopt's main job on the embedded default model, in a few minutes on a CPU.

1. Encodes and decodes the evaluation photos (scikit-image: astronaut, coffee, chelsea, rocket,
   motorcycle_left/right) with the embedded model at qualities 2–6 — real ``.rdo`` files — and prints
   real and estimated bpp, PSNR, MS-SSIM and times; compares with JPEG, WebP and AVIF (Pillow) by
   BD-rate; writes the R-D plot.
2. Amortized vs SGA side by side on center crops (reduced step budget with a fitted schedule).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from .main import device_of, positive_int


def add_parser(sub) -> None:
    p = sub.add_parser("demo", help="encode/decode the evaluation photos; amortized vs SGA; plots")
    p.add_argument("--out", default="demo-output", help="folder for results and plots (default demo-output)")
    p.add_argument("--qualities", default="2,3,4,5,6", help="embedded-model qualities of part 1, comma-separated")
    p.add_argument("--sga-steps", type=positive_int, default=300, help="SGA steps in part 2 (default 300)")
    p.add_argument("--sga-crop", default="256", help="crop for part 2 (default 256)")
    p.add_argument("--sga-qualities", default="3,5", help="qualities of part 2, comma-separated")
    p.set_defaults(run=run)


def _classic_curves(images, out: Path) -> dict[str, dict]:
    from ..baselines import CODECS, available, curve

    curves = {}
    for codec in CODECS:
        if not available(codec):
            print(f"  ({codec} is not available in this Pillow build; skipped)")
            continue
        per_image = [curve(im.image.rgb, codec) for im in images]
        n = len(per_image[0])
        curves[codec] = {
            "bpp": [sum(c[i].bpp for c in per_image) / len(per_image) for i in range(n)],
            "psnr-rgb": [sum(c[i].psnr for c in per_image) / len(per_image) for i in range(n)],
            "quality": [per_image[0][i].quality for i in range(n)],
        }
    (out / "classic.json").write_text(json.dumps(curves, indent=1) + "\n")
    return curves


def run(args) -> int:
    from ..evaluation import collect_images, parse_crop, run_eval
    from ..infer.image import SaviOptions
    from ..baselines import bd_against
    from ..models.registry import EMBEDDED
    from ..report.plots import rd_plot
    from ..report.tables import summary_text
    from .common import int_list

    out = Path(args.out)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    device = device_of(args)
    qualities = int_list(args.qualities)

    print(f"== 1. {EMBEDDED} on the evaluation photos (amortized encoder, real .rdo files) ==")
    images = collect_images(["eval-set"], None)
    print("   images: " + ", ".join(f"{im.name} {im.image.width}×{im.image.height}" for im in images))
    amort = SaviOptions(method="amortized", steps=0, progress=False)
    doc = run_eval(images, qualities, ["amortized"], out / "embedded.json", amort, EMBEDDED, None, device,
                   batch=1, bitstreams=out / "bitstreams")
    print(summary_text(doc))
    r = doc["methods"]["amortized"]["results"]
    over = [100.0 * (b / e - 1.0) for b, e in zip(r["bpp"], r["bpp_estimated"])]
    print("   real file over estimated rate: " + ", ".join(f"q{q} {o:+.2f}%" for q, o in zip(r["quality"], over)))

    print("\n== classical codecs on the same images (Pillow) ==")
    classic = _classic_curves(images, out)
    print(f"   {'codec':6s} BD-rate of {EMBEDDED} vs codec (pchip)   BD-PSNR")
    for codec, bd in bd_against(classic, r["bpp"], r["psnr-rgb"]).items():
        if isinstance(bd, str):
            print(f"   {codec:6s} n/a ({bd})")
        else:
            print(f"   {codec:6s} {bd[0]:+8.2f}%                               {bd[1]:+.3f} dB")
    curves = {f"{EMBEDDED} (amortized)": (r["bpp"], r["psnr-rgb"])}
    curves.update({k: (v["bpp"], v["psnr-rgb"]) for k, v in classic.items()})
    rd_plot(curves, out / "rd_embedded_vs_classic.png", title="evaluation photos: mean R-D")

    crop = parse_crop(args.sga_crop)
    lr = 0.03  # the step-budget benchmark's best lr for short budgets (benchmarks/image/steps.json)
    print(f"\n== 2. amortized vs SGA on {args.sga_crop} center crops, {args.sga_steps} steps (Adam lr {lr}, schedule fitted to the budget) ==")
    crops = collect_images(["eval-set"], crop)
    sga = SaviOptions(method="sga", steps=args.sga_steps, lr=lr, schedule="budget", lr_decay="cosine", progress=False)
    doc2 = run_eval(crops, int_list(args.sga_qualities), ["amortized", "sga"], out / "sga.json", sga, EMBEDDED,
                    None, device, batch=8)
    print(summary_text(doc2))
    rd_plot({m: (c["results"]["bpp"], c["results"]["psnr-rgb"]) for m, c in doc2["methods"].items()},
            out / "rd_sga_vs_amortized.png", title=f"{args.sga_crop} crops: amortized vs SGA")
    print(f"\nwrote {out}/embedded.json, {out}/sga.json, {out}/rd_embedded_vs_classic.png, {out}/rd_sga_vs_amortized.png")
    return 0
