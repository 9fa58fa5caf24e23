"""The stress check: does a model keep its rate sane on colour and texture extremes?

For each image of a stress set (:mod:`rdopt.data.stress`) and each model, :func:`measure` writes a real
``.rdo`` file (amortized encoder) and records its size next to the image's lossless PNG size, the
estimated rate and the floor diagnostics of the prior (:meth:`HyperpriorAdapter.floor_diagnostics`).
:func:`check` applies the guard's rules to the rows of several qualities of one model family:

1. every file is smaller than the image's lossless PNG (Pillow's default zlib level 6);
2. the rate never falls as the quality rises (``MONOTONE_SLACK`` allows for the coder's granularity);
3. on the photo-derived images the bpp stays below ``PHOTO_FACTOR`` × the bpp the same quality needs on
   the hardest evaluation photo, measured on crops of the stress images' size (:func:`hardest_eval_bpp`);
4. no cost-carrying scale lies in the entropy model's floor region: on the photo-derived images the bits
   coded at a scale below the floor stay below ``FLOOR_SHARE`` of y's bits or below ``FLOOR_BPP`` (a
   floored scale on a value that sits on its mean costs nothing, so unused channels are allowed there, and
   on a nearly empty picture a large share of very few bits is no failure; the collapse it guards against had
   98-100 % of 4-15 bpp).
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import torch

from ..api.image import encode_image
from ..data.images import LoadedImage
from ..data.stress import StressImage
from ..infer.options import SolverOptions

PHOTO_FACTOR = 1.5
FLOOR_SHARE = 0.10
FLOOR_BPP = 0.05
MONOTONE_SLACK = 0.02


@dataclass(frozen=True)
class StressRow:
    image: str
    kind: str
    quality: int
    file_bytes: int
    png_bytes: int
    bpp: float  # real (file)
    bpp_estimated: float
    psnr: float
    floor_fraction: float  # of y's scales below the floor
    floor_bits_share: float  # share of y's bits coded at such scales


def png_bytes(pixels: np.ndarray) -> int:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return len(buf.getvalue())


def measure(model, images: list[StressImage]) -> list[StressRow]:
    """One row per image: a real amortized encode of it with ``model`` and its floor diagnostics."""
    rows = []
    amortized = SolverOptions(method="amortized", steps=0)
    for s in images:
        img = LoadedImage(rgb=np.ascontiguousarray(s.pixels), grayscale=False, alpha_dropped=False, source_mode="RGB")
        enc = encode_image(model, img, amortized)
        x = torch.from_numpy(np.ascontiguousarray(s.pixels)).permute(2, 0, 1)[None].to(model.device, torch.float32) / 255
        with torch.no_grad():
            fraction, share = model.floor_diagnostics(model.quantize(model.amortize(x)))
        rows.append(StressRow(
            image=s.name, kind=s.kind, quality=model.quality, file_bytes=enc.stats.file_bytes,
            png_bytes=png_bytes(s.pixels), bpp=enc.stats.bpp, bpp_estimated=enc.stats.bpp_estimated,
            psnr=enc.stats.psnr, floor_fraction=float(fraction), floor_bits_share=float(share),
        ))
    return rows


def hardest_eval_bpp(model, photos: list[np.ndarray], tile: int = 256) -> float:
    """The largest amortized (estimated) bpp of ``model`` over the tile×tile crops (a non-overlapping grid) of
    the evaluation photos: the same size as the stress images, so that a textured region is compared with a
    textured region rather than with a whole photo's average over sky and texture."""
    worst = 0.0
    for rgb in photos:
        h, w = rgb.shape[:2]
        crops = [rgb[i : i + tile, j : j + tile] for i in range(0, h - tile + 1, tile) for j in range(0, w - tile + 1, tile)]
        for c in crops or [rgb]:
            x = torch.from_numpy(np.ascontiguousarray(c)).permute(2, 0, 1)[None].to(model.device, torch.float32) / 255
            with torch.no_grad():
                ev = model.hard_evaluate(model.quantize(model.amortize(x)))
            worst = max(worst, float(ev.bits.sum()) / (c.shape[0] * c.shape[1]))
    return worst


def check(rows: list[StressRow], hardest: dict[int, float]) -> list[str]:
    """Every violation of the rules above, as one line each (empty: the models pass)."""
    problems = []
    by_image: dict[str, dict[int, StressRow]] = {}
    for r in rows:
        by_image.setdefault(r.image, {})[r.quality] = r
        if r.file_bytes >= r.png_bytes:
            problems.append(f"q{r.quality} {r.image}: file {r.file_bytes} B ≥ lossless PNG {r.png_bytes} B")
        if r.kind == "photo":
            limit = PHOTO_FACTOR * hardest[r.quality]
            if r.bpp > limit:
                problems.append(f"q{r.quality} {r.image}: {r.bpp:.3f} bpp > {PHOTO_FACTOR} × hardest evaluation photo "
                                f"({limit:.3f})")
            if r.floor_bits_share > FLOOR_SHARE and r.floor_bits_share * r.bpp_estimated > FLOOR_BPP:
                problems.append(f"q{r.quality} {r.image}: {100 * r.floor_bits_share:.1f} % of y's bits at floored scales")
    for name, per_q in by_image.items():
        qs = sorted(per_q)
        for a, b in zip(qs, qs[1:]):
            if per_q[b].file_bytes < (1 - MONOTONE_SLACK) * per_q[a].file_bytes:
                problems.append(f"{name}: rate falls from q{a} ({per_q[a].file_bytes} B) to q{b} ({per_q[b].file_bytes} B)")
    return problems
