"""A smooth camera pan over an evaluation photo, written as a PNG-frame folder (the quality-ceiling check of the
video benchmarks: a codec without a ceiling keeps raising PSNR with its quality on this easy motion).

Frame k samples scikit-image's ``coffee`` (an evaluation photo: in no training set) at centre + k·(1.25, 0.5) px,
bicubic (``rdopt.data.clips.synthetic_clip``), 256×256, 20 frames. Deterministic.

    .venv/bin/python benchmarks/video/pan_clip.py runs/clips/pan_coffee
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from PIL import Image

from rdopt.data.clips import CameraMotion, synthetic_clip
from rdopt.data.images import load_image, to_tensor, to_uint8
from rdopt.data.sources import skimage_data_dir


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path, help="output folder (frame_000.png …)")
    ap.add_argument("--photo", default="coffee.png")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--frames", type=int, default=20)
    ap.add_argument("--pan", type=float, nargs=2, default=(1.25, 0.5), metavar=("DX", "DY"))
    a = ap.parse_args()
    photo = to_tensor(load_image(skimage_data_dir() / a.photo).rgb, dtype=torch.float64)[0]
    motion = CameraMotion(pan=tuple(a.pan))
    ex, ey = motion.extent(a.size, a.frames)
    _, h, w = photo.shape
    if 2 * ex + 1 > w or 2 * ey + 1 > h:
        raise SystemExit(f"{a.photo} ({w}×{h}) is too small for a {a.size}² pan of {a.frames} frames")
    # start so that the whole pan stays inside the photo
    cx = (w - 1) / 2.0 - (a.frames - 1) * a.pan[0] / 2.0
    cy = (h - 1) / 2.0 - (a.frames - 1) * a.pan[1] / 2.0
    clip = synthetic_clip(photo, motion, (cx, cy), a.size, a.frames)
    a.out.mkdir(parents=True, exist_ok=True)
    for k in range(a.frames):
        Image.fromarray(to_uint8(clip[k : k + 1])).save(a.out / f"frame_{k:03d}.png")
    print(f"{a.frames} frames {a.size}² → {a.out}")


if __name__ == "__main__":
    main()
