"""Summarize the training logs of the embedded models as the Markdown table of README.md.

    .venv/bin/python benchmarks/train/summary.py benchmarks/train/logs/q4.state.log.jsonl benchmarks/train/logs/ft-q{2,3,5,6}.state.log.jsonl

Each log line is a running mean over 25 steps on training crops with noise (not the evaluation set);
`elapsed_s` restarts at every resume, so the wall time is the sum of the segments' last values (steps
redone after an interruption count, they were paid for).
"""

from __future__ import annotations

import json
import re
import sys

from rdopt.codecs.image.loading import COMPRESSAI_LAMBDAS as LAMBDAS


def summarize(path: str) -> dict:
    rows = [json.loads(line) for line in open(path) if line.strip()]
    wall, last = 0.0, None
    for r in rows:
        if last is not None and r["elapsed_s"] < last["elapsed_s"]:
            wall += last["elapsed_s"]
        last = r
    wall += last["elapsed_s"]
    by_step = {r["step"]: r for r in rows}  # a redone step keeps its latest record
    final = by_step[max(by_step)]
    return {"steps": final["step"], "bpp": final["bpp"], "psnr": final["psnr"], "loss": final["loss"], "wall": wall}


def main(paths: list[str]) -> None:
    print("| model | λ | steps | last bpp | last PSNR (dB) | last loss | wall time (s) |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for p in paths:
        q = int(re.search(r"q(\d)\.state", p).group(1))
        s = summarize(p)
        print(f"| rdopt-msh-q{q} | {LAMBDAS[q]} | {s['steps']} | {s['bpp']:.3f} | {s['psnr']:.2f} | {s['loss']:.3f} "
              f"| {s['wall']:.0f} |")


if __name__ == "__main__":
    main(sys.argv[1:])
