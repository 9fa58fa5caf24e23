"""Region of interest: PSNR inside and outside the ROI of the ``--roi`` encode against the plain
encode **at equal file size**.

Per image: a plain SAVI encode at quality ``--quality`` and the model's λ; then the ROI encode (weight
``--weight`` inside the mask) at the same size, two ways:

* ``sweep`` (default): fixed-λ ROI encodes at λ/mean(w) × {0.7, 1, 1.4} (the same optimization as the plain
  encode, only the objective's weights differ), and the inside / outside PSNR interpolated linearly in
  log rate at the plain file's size (from the two sweep points around it; none if it is outside the sweep);
* ``rc``: ``rdopt.ratecontrol.image.encode_to_size`` to the plain file's size on the same model (what
  ``--roi --target-size`` does): a real file at most that size, but λ moves during its run, which itself
  costs PSNR against a plain run (compare the ``ratecontrol.py`` PSNR gains).

The mask is ``--mask FILE`` (one for every image, resized as the CLI does) or, by default, a centred ellipse
covering about 20 % of the image (no masks ship with the photos).

Full run:
    PYTHONPATH=src .venv/bin/python benchmarks/image/roi.py --steps 2000 --out benchmarks/image/roi.json
Smoke run (one small crop, as run when the feature was added):
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
    p.add_argument("--modes", default="sweep,rc", help="sweep, rc or both (default both)")
    args = p.parse_args()
    setup_threads(args)

    from rdopt.api.image import encode_image
    from rdopt.data.masks import load_mask, roi_weight_map
    from rdopt.ratecontrol.image import encode_to_size

    models = Models()
    model = models(args.quality)
    opts = options(args)
    rows = []
    for ev in images(args):
        im = ev.image
        mask = load_mask(args.mask, im.width, im.height)[0] if args.mask else ellipse(im.height, im.width)
        plain, t_plain = timed(encode_image, model, im, opts)
        weight = torch.from_numpy(roi_weight_map(mask, args.weight))
        pi, po = region_psnr(plain.pixels, im.rgb, mask)
        n0 = plain.stats.file_bytes
        row = {"image": ev.name, "mask_share": float((mask > 0.5).mean()), "plain_bytes": n0, "plain_psnr_in": pi,
               "plain_psnr_out": po, "plain_psnr": plain.stats.psnr, "seconds_plain": t_plain}
        print(f"{ev.name}: plain {n0} B, inside {pi:.2f} dB, outside {po:.2f} dB", flush=True)
        if "sweep" in args.modes:
            base = model.lmbda / float(weight.double().mean())
            pts = []
            for f in (0.7, 1.0, 1.4):
                e = encode_image(model, im, opts, lmbda=base * f, weight=weight)
                ri, ro = region_psnr(e.pixels, im.rgb, mask)
                pts.append((e.stats.file_bytes, ri, ro))
                print(f"  sweep λ×{f:g}/mean(w): {e.stats.file_bytes} B, inside {ri:.2f} dB, outside {ro:.2f} dB", flush=True)
            pts.sort()
            row["sweep"] = pts
            row["sweep_psnr_in"] = row["sweep_psnr_out"] = None
            for (n1, i1, o1), (n2, i2, o2) in zip(pts, pts[1:]):
                if n1 <= n0 <= n2 and n2 > n1:
                    t = (np.log(n0) - np.log(n1)) / (np.log(n2) - np.log(n1))
                    row["sweep_psnr_in"], row["sweep_psnr_out"] = i1 + t * (i2 - i1), o1 + t * (o2 - o1)
            if row["sweep_psnr_in"] is not None:
                row["sweep_gain_in"] = row["sweep_psnr_in"] - pi
                row["sweep_change_out"] = row["sweep_psnr_out"] - po
                print(f"  at {n0} B (interpolated): inside {row['sweep_psnr_in']:.2f} dB ({row['sweep_gain_in']:+.2f}), "
                      f"outside {row['sweep_psnr_out']:.2f} dB ({row['sweep_change_out']:+.2f})", flush=True)
        if "rc" in args.modes:
            rc, t_roi = timed(encode_to_size, im, n0, opts, lambda q: model, [args.quality], weight=weight)
            ri, ro = region_psnr(rc.encoded.pixels, im.rgb, mask)
            row.update(rc_bytes=rc.encoded.stats.file_bytes, rc_hit=rc.hit, rc_psnr_in=ri, rc_psnr_out=ro,
                       rc_gain_in=ri - pi, rc_change_out=ro - po, seconds_rc=t_roi)
            print(f"  rate control to {n0} B: {rc.encoded.stats.file_bytes} B, inside {ri:.2f} dB ({ri - pi:+.2f}), "
                  f"outside {ro:.2f} dB ({ro - po:+.2f})", flush=True)
        rows.append(row)
    def mean(key):
        vals = [r[key] for r in rows if r.get(key) is not None]
        return statistics.mean(vals) if vals else None

    summary = {"images": len(rows), "weight": args.weight,
               "sweep_mean_gain_in_db": mean("sweep_gain_in"), "sweep_mean_change_out_db": mean("sweep_change_out"),
               "rc_mean_gain_in_db": mean("rc_gain_in"), "rc_mean_change_out_db": mean("rc_change_out"),
               "rc_hits": sum(bool(r.get("rc_hit")) for r in rows)}
    print(summary)
    write(args.out, {"args": vars(args), "summary": summary, "rows": rows})


if __name__ == "__main__":
    main()
