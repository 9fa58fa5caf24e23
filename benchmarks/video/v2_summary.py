"""Tables of a video codec's `rdopt eval video` results against classical anchors, one clip at a time.

For every (results JSON, anchors JSON, label) triple: per quality and method the bpp (real file bytes), RGB PSNR,
I-frame bpp / PSNR, mean P-frame bpp, P/I bits ratio, motion bits per P-frame (estimated from the entropy model,
labelled so), PSNR drop over the GoP (first → last frame of the mean GoP), and the BD-rate / BD-PSNR of every method
against every anchor (pchip over the overlap, rdopt.metrics.bd), plus the method-vs-amortized BD-rate.

    .venv/bin/python benchmarks/video/v2_summary.py \
        --clip carphone benchmarks/video/v2/carphone.json benchmarks/video/anchors_carphone.json "evaluation clip" \
        --clip bikes benchmarks/video/v2/bikes.json benchmarks/video/v2/anchors_bikes.json "held out, never tuned on" \
        --out benchmarks/video/v2/summary.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from rdopt.metrics.bd import bd_psnr, bd_rate


def _rows(doc: dict, method: str) -> list[dict]:
    return sorted((r for r in doc["rows"] if r["method"] == method), key=lambda r: r["quality"])


def _bd(ab, ap, bpp, psnr, fn):
    try:
        return fn(ab, ap, bpp, psnr)
    except ValueError:
        return None


def clip_table(name: str, results: dict, anchors: dict, label: str) -> tuple[list[str], dict]:
    lines = [f"== {name} ({label}) — {results['rows'][0]['frames']} frames, GoP {results['settings']['gop']}"
             + (f", centre crop {results['settings']['crop']}" if results["settings"].get("crop") else "") + " =="]
    lines.append(f"{'method':12s} {'q':>2} {'bpp':>7} {'PSNR':>6} {'I bpp':>6} {'I PSNR':>6} {'P bpp':>6} {'P/I':>5} "
                 f"{'w bpp(est)':>10} {'GoP drop':>8} {'s/frame':>7}")
    out: dict = {"label": label, "methods": {}, "bd": {}}
    methods = sorted({r["method"] for r in results["rows"]}, key=lambda m: (m != "amortized", m))
    for m in methods:
        rows = _rows(results, m)
        recs = []
        for r in rows:
            prof = r["profile"]
            p = prof[1:]
            pb = sum(x["bpp"] for x in p) / max(len(p), 1)
            wb = sum(x.get("bpp_w_estimated", 0.0) for x in p) / max(len(p), 1)
            drop = prof[0]["psnr"] - prof[-1]["psnr"]
            rec = {"quality": r["quality"], "bpp": r["bpp"], "psnr": r["psnr"], "i_bpp": prof[0]["bpp"],
                   "i_psnr": prof[0]["psnr"], "p_bpp": pb, "p_over_i": pb / prof[0]["bpp"], "w_bpp_estimated": wb,
                   "gop_psnr_drop": drop, "seconds_per_frame": r["seconds_per_frame"]}
            recs.append(rec)
            lines.append(f"{m:12s} {r['quality']:>2} {r['bpp']:7.4f} {r['psnr']:6.2f} {rec['i_bpp']:6.3f} {rec['i_psnr']:6.2f} "
                         f"{pb:6.3f} {rec['p_over_i']:5.2f} {wb:10.4f} {drop:8.2f} {r['seconds_per_frame']:7.2f}")
        out["methods"][m] = recs
        bpp, psnr = [r["bpp"] for r in rows], [r["psnr"] for r in rows]
        for a, sweep in anchors["sweeps"].items():
            ab, ap = [s["bpp"] for s in sweep], [s["psnr"] for s in sweep]
            out["bd"].setdefault(m, {})[a] = {"bd_rate": _bd(ab, ap, bpp, psnr, bd_rate),
                                              "bd_psnr": _bd(ab, ap, bpp, psnr, bd_psnr)}
        if m != "amortized" and "amortized" in out["methods"] and len(rows) >= 2:
            am = _rows(results, "amortized")
            ab, ap = [r["bpp"] for r in am], [r["psnr"] for r in am]
            out["bd"][m]["amortized"] = {"bd_rate": _bd(ab, ap, bpp, psnr, bd_rate), "bd_psnr": _bd(ab, ap, bpp, psnr, bd_psnr)}
    lines.append("BD-rate / BD-PSNR (RGB PSNR over bpp, pchip, overlap only; n/a: no overlap):")
    for m, per in out["bd"].items():
        parts = []
        for a, v in per.items():
            rate = "n/a" if v["bd_rate"] is None else f"{v['bd_rate']:+.1f} %"
            psnr = "n/a" if v["bd_psnr"] is None else f"{v['bd_psnr']:+.2f} dB"
            parts.append(f"vs {a} {rate} / {psnr}")
        lines.append(f"  {m:12s} " + "; ".join(parts))
    return lines, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clip", nargs=4, action="append", required=True, metavar=("NAME", "RESULTS", "ANCHORS", "LABEL"))
    ap.add_argument("--out", default=None, help="summary JSON")
    a = ap.parse_args()
    summary = {}
    for name, res, anc, label in a.clip:
        if not Path(res).is_file():
            print(f"== {name}: {res} not written yet ==\n")
            continue
        lines, out = clip_table(name, json.loads(Path(res).read_text()), json.loads(Path(anc).read_text()), label)
        print("\n".join(lines) + "\n")
        summary[name] = out
    if a.out:
        Path(a.out).write_text(json.dumps(summary, indent=1) + "\n")


if __name__ == "__main__":
    main()
