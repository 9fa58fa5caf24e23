"""Issue #21, region of interest: PSNR inside and outside the ROI of the ``--roi`` encode against the plain
encode **at equal file size**.

Per image: a plain SAVI encode at quality ``--quality``; then the ROI encode (weight ``--weight`` inside
the mask) with rate control to the plain file's size on the same model (λ search only), so the ROI file is
at most as large and within 1 % of it. The mask is ``--mask FILE`` (one for every image, resized as the CLI
does) or, by default, a centred ellipse covering about 20 % of the image (no masks ship with the photos).

Full run:
    PYTHONPATH=src .venv/bin/python benchmarks/image/roi.py --steps 2000 --out benchmarks/image/roi.json
Smoke run (one small crop, what was run for issue #21):
    PYTHONPATH=src .venv/bin/python benchmarks/image/roi.py --limit 1 --crop 128 --steps 100 --out /tmp/roi_smoke.json
"""

from __future__ import annotations

import argparse
import statistics

import numpy as np
import torch

from usertargets_common import Models, add_common_args, images, options, region_psnr, setup_threads, timed, write


def ellipse(h: int, w: int, area: float = 0.2) -> np.ndarray:
    """A centred ellipse of about ``area`` of the image (aspect of the image), as a 0/1 float32 mask."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    k = np.sqrt(area / np.pi)  # semi-axes k·h and k·w: area π·k²·h·w
    inside = ((yy - (h - 1) / 2) / (k * h)) ** 2 + ((xx - (w - 1) / 2) / (k * w)) ** 2 <= 1
    return inside.astype(np.float32)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(p)
    p.add_argument("--quality", type=int, default=3)
    p.add_argument("--weight", type=float, default=4.0, help="ROI weight W (default 4)")
    p.add_argument("--mask", default=None, help="a mask file for every image (default: a centred ellipse)")
    args = p.parse_args()
    setup_threads(args)

    from rdopt.api import encode_image
    from rdopt.data.masks import load_mask, roi_weight_map
    from rdopt.ratecontrol import encode_to_size

    models = Models()
    model = models(args.quality)
    opts = options(args)
    rows = []
    for ev in images(args):
        im = ev.image
        mask = load_mask(args.mask, im.width, im.height)[0] if args.mask else ellipse(im.height, im.width)
        plain, t_plain = timed(encode_image, model, im, opts)
        weight = torch.from_numpy(roi_weight_map(mask, args.weight))
        rc, t_roi = timed(encode_to_size, im, plain.stats.file_bytes, opts, lambda q: model, [args.quality], weight=weight)
        roi = rc.encoded
        pi, po = region_psnr(plain.pixels, im.rgb, mask)
        ri, ro = region_psnr(roi.pixels, im.rgb, mask)
        row = {"image": ev.name, "mask_share": float((mask > 0.5).mean()), "plain_bytes": plain.stats.file_bytes,
               "roi_bytes": roi.stats.file_bytes, "hit": rc.hit, "plain_psnr_in": pi, "plain_psnr_out": po,
               "roi_psnr_in": ri, "roi_psnr_out": ro, "gain_in": ri - pi, "loss_out": ro - po,
               "plain_psnr": plain.stats.psnr, "roi_psnr": roi.stats.psnr, "seconds_plain": t_plain, "seconds_roi": t_roi}
        rows.append(row)
        print(f"{ev.name}: {plain.stats.file_bytes} B vs {roi.stats.file_bytes} B; inside {pi:.2f} → {ri:.2f} dB, "
              f"outside {po:.2f} → {ro:.2f} dB", flush=True)
    summary = {"images": len(rows), "weight": args.weight,
               "mean_gain_in_db": statistics.mean(r["gain_in"] for r in rows),
               "mean_change_out_db": statistics.mean(r["loss_out"] for r in rows),
               "equal_size_hits": sum(r["hit"] for r in rows)}
    print(summary)
    write(args.out, {"args": vars(args), "summary": summary, "rows": rows})


if __name__ == "__main__":
    main()
