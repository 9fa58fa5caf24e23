"""BD-rate / BD-PSNR of every method in an `rdopt eval images` results file against JPEG, WebP and AVIF.

    .venv/bin/python benchmarks/codec/vs_classic.py RESULTS.json CLASSIC.json [--versus OTHER.json] [--plot OUT.png]

CLASSIC.json is the Pillow curves file that `rdopt demo` writes (`classic.json`) for the same images; both
sides are means over the images of real file sizes and PSNR on the 8-bit output. --versus adds the BD of every
method of RESULTS against every method of another results file of the same images (e.g. rdopt-scc vs rdopt-msh).
"""

from __future__ import annotations

import argparse
import json

from rdopt.eval.anchors import bd_against


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results")
    ap.add_argument("classic")
    ap.add_argument("--versus", help="another results file of the same images: BD of every method against its methods")
    ap.add_argument("--plot", help="also write the R-D plot of all curves here")
    args = ap.parse_args()
    doc = json.load(open(args.results))
    classic = json.load(open(args.classic))
    model = doc["settings"]["model"]
    methods = {m: c["results"] for m, c in doc["methods"].items()}
    if args.versus:
        other = json.load(open(args.versus))
        if sorted(other["settings"]["images"]) != sorted(doc["settings"]["images"]):
            raise SystemExit(f"--versus: {args.versus} has other images")
        theirs = {f"{other['settings']['model']} {m}": c["results"] for m, c in other["methods"].items()}
        classic = {**classic, **theirs}
    print(f"{'method':10s} {'vs':20s} {'BD-rate pchip':>14s} {'BD-PSNR pchip':>14s}")
    for m, r in methods.items():
        for codec, bd in bd_against(classic, r["bpp"], r["psnr-rgb"]).items():
            br, bp = ("n/a", bd) if isinstance(bd, str) else (f"{bd[0]:+.2f}%", f"{bd[1]:+.3f} dB")
            print(f"{m:10s} {codec:20s} {br:>14s} {bp:>14s}")
    if args.plot:
        from rdopt.eval.report.plots import rd_plot

        curves = {f"{model} {m}": (r["bpp"], r["psnr-rgb"]) for m, r in methods.items()}
        curves.update({k: (v["bpp"], v["psnr-rgb"]) for k, v in classic.items()})
        rd_plot(curves, args.plot, title="evaluation photos (full size): mean R-D")
        print(f"wrote {args.plot}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
