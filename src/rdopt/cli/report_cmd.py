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
    p.set_defaults(run=run)


def run(args) -> int:
    from dataclasses import asdict

    from ..evaluation import FORMAT
    from ..report.plots import learning_curves, rd_plot
    from ..report.tables import bd_table, summary_text

    path = Path(args.results)
    if not path.is_file():
        raise UserError(f"no such file: {path}")
    try:
        doc = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise UserError(f"{path} is not valid JSON ({e.msg})") from None
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
