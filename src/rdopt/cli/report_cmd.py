"""``rdopt report RESULTS.json``: tables (BD-rate / BD-PSNR vs the anchor) and plots."""

from __future__ import annotations

import json
from pathlib import Path

from .main import UserError


def add_parser(sub) -> None:
    p = sub.add_parser("report", help="BD-rate table and R-D / learning-curve plots from eval results")
    p.add_argument("results", help="results JSON written by `rdopt eval images`")
    p.add_argument("--anchor", default="amortized", help="method BD-rates are measured against (default amortized)")
    p.add_argument("--plot", help="R-D plot PNG (default: RESULTS.rd.png)")
    p.add_argument("--curves", help="learning-curve plot PNG, if the results have traces (default: RESULTS.curves.png)")
    p.add_argument("--json", action="store_true", help="print the BD table as JSON")
    p.add_argument("--anchors", help="video results: anchors JSON of benchmarks/video/anchors.py (x264/x265/SVT-AV1 "
                   "curves on the same clip) drawn into the R-D plot")
    p.set_defaults(run=run)


def run(args) -> int:
    from dataclasses import asdict

    from ..eval.images import FORMAT
    from ..eval.report.plots import learning_curves, rd_plot
    from ..eval.report.tables import bd_table, summary_text

    path = Path(args.results)
    if not path.is_file():
        raise UserError(f"no such file: {path}")
    try:
        doc = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise UserError(f"{path} is not valid JSON ({e.msg})") from None
    from ..eval.video import FORMAT as VIDEO_FORMAT

    if isinstance(doc, dict) and doc.get("format") == VIDEO_FORMAT:
        return video_report(doc, path, args)
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or not doc.get("entries"):
        raise UserError(f"{path} is not an rdopt eval results file with entries")
    try:
        if args.json:
            rows = bd_table(doc, args.anchor) if args.anchor in doc["methods"] else []
            print(json.dumps([asdict(r) for r in rows], indent=2))
        else:
            print(summary_text(doc, args.anchor))
    except ValueError as e:
        raise UserError(str(e)) from None
    plot = Path(args.plot) if args.plot else path.with_suffix(".rd.png")
    rd_plot({m: (c["results"]["bpp"], c["results"]["psnr-rgb"]) for m, c in doc["methods"].items()}, plot,
            title=f"{doc['settings'].get('model', '')}: R-D (mean over images)")
    written = [str(plot)]
    traces = {}
    for e in doc["entries"]:
        if e.get("trace"):
            traces.setdefault(e["method"], []).append(e["trace"])
    if traces:
        curves = Path(args.curves) if args.curves else path.with_suffix(".curves.png")
        merged = {}
        for m, ts in traces.items():
            n = min(len(t) for t in ts)
            merged[m] = [{"step": ts[0][i]["step"], "true": [t[i]["true"] for t in ts],
                          "relaxed": [t[i]["relaxed"] for t in ts]} for i in range(n)]
        learning_curves(merged, curves, title="true R-D cost and discretization gap (mean over images and qualities)")
        written.append(str(curves))
    if not args.json:
        print("\nwrote " + ", ".join(written))
    return 0


def video_report(doc: dict, path: Path, args) -> int:
    """Tables and plots of `rdopt eval video` results: R-D curves (with anchors), per-frame profiles of
    amortized / bao / sequential (Fig. 3, 11), and R-D cost vs SAVI stage (Fig. 10)."""
    from ..eval.report.plots import gop_profile_plot, rd_plot, stage_plot
    from ..eval.video import summary_text

    print(summary_text(doc))
    rows = doc["rows"]
    clips = sorted({r["clip"] for r in rows})
    written = []
    anchors = None
    if args.anchors:
        try:
            anchors = json.loads(Path(args.anchors).read_text())["sweeps"]
        except (OSError, ValueError, KeyError) as e:
            raise UserError(f"--anchors: not an anchors JSON of benchmarks/video/anchors.py ({e})") from None
    for clip in clips:
        curves = {}
        for m in sorted({r["method"] for r in rows if r["clip"] == clip}):
            rs = sorted((r for r in rows if r["clip"] == clip and r["method"] == m), key=lambda r: r["bpp"])
            curves[f"{doc['settings'].get('codec', 'rdopt-video')} {m}"] = ([r["bpp"] for r in rs], [r["psnr"] for r in rs])
        for name, sweep in (anchors or {}).items():
            curves[f"{name} ({sweep[0].get('preset', '')})"] = ([s["bpp"] for s in sweep], [s["psnr"] for s in sweep])
        stem = path.with_suffix("") if len(clips) == 1 else path.with_suffix("").with_name(f"{path.stem}.{clip}")
        plot = Path(args.plot) if args.plot and len(clips) == 1 else Path(f"{stem}.rd.png")
        rd_plot(curves, plot, title=f"{clip}: R-D (RGB PSNR, GoP {doc['settings']['gop']})")
        written.append(str(plot))
        qs = sorted({r["quality"] for r in rows if r["clip"] == clip})
        for q in qs:
            prof = {r["method"]: r["profile"] for r in rows if r["clip"] == clip and r["quality"] == q
                    and r["method"] in ("amortized", "bao", "sequential", "windowed")}
            if prof:
                p = Path(f"{stem}.q{q}.frames.png")
                gop_profile_plot(prof, p, title=f"{clip}, quality {q}: per frame (mean over GoPs)")
                written.append(str(p))
    units = path.with_name(path.name + ".units")
    if units.is_dir():
        from ..eval.video import read_records

        stages: dict[str, list[list[float]]] = {}
        for rec in read_records(units).values():
            if rec["stages"] and rec["method"] == "sequential":
                costs = [rec["cost_amortized"]] + [s["after"][0] for s in rec["stages"] if "after" in s]
                stages.setdefault(f"{rec['method']} q{rec['quality']}", []).append(costs)
        if stages:
            mean = {}
            for k, runs in stages.items():
                n = min(len(c) for c in runs)
                mean[k] = [sum(c[i] for c in runs) / len(runs) for i in range(n)]
            p = path.with_suffix(".stages.png")
            stage_plot(mean, p, title="GoP R-D cost after each SAVI stage (mean over GoPs)")
            written.append(str(p))
    print("\nwrote " + ", ".join(written))
    return 0
