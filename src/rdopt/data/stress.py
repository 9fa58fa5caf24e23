"""A stress set for image codecs: colour and texture pushed to the edges.

Built only from *training-side* pictures (never the evaluation photos): each source photo is turned into
strongly saturated, channel-clipped, near-monochrome (green / blue / red), dark and bright versions, and
synthetic pictures add fine periodic texture and noise. Every variant is a deterministic function of
its source, so a guard test and a benchmark see the same images.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Rec. 601 luma weights
_LUMA = np.array([0.299, 0.587, 0.114])


@dataclass(frozen=True)
class StressImage:
    name: str
    kind: str  # "photo" (derived from a photo) or "synthetic"
    pixels: np.ndarray  # uint8 H×W×3


def _u8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x * 255.0), 0, 255).astype(np.uint8)


def photo_variants(rgb: np.ndarray) -> dict[str, np.ndarray]:
    """The colour extremes of one photo (uint8 H×W×3 in, name → uint8 H×W×3 out)."""
    x = rgb.astype(np.float64) / 255.0
    y = (x @ _LUMA)[..., None]
    out = {"original": rgb}
    out["saturated"] = _u8(y + 2.5 * (x - y))  # saturation ×2.5, clipped per channel
    out["clip-blue"] = _u8(x * np.array([1.1, 1.35, 1.0]) - np.array([0.0, 0.0, 0.35]))  # blue clipped at 0 widely
    out["leaf-green"] = _u8(np.clip(y * 1.4, 0, 1) * np.array([0.55, 1.0, 0.08]) + 0.02)  # backlit leaf: R≈96 G≈179 B≈15
    out["mono-blue"] = _u8(y * np.array([0.05, 0.25, 1.0]))
    out["mono-red"] = _u8(y * np.array([1.0, 0.08, 0.12]) * 1.3)
    out["dark"] = _u8(x**2.2 * 0.35)
    out["bright"] = _u8(x * 2.2 + 0.05)
    h, w = rgb.shape[:2]
    checker = (np.indices((h, w)).sum(0) % 2 * 2.0 - 1.0)[..., None]
    out["fine-texture"] = _u8(x + 0.06 * checker)  # the photo under a 1-pixel checkerboard of ±15 levels
    return out


def synthetic(h: int, w: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Fine periodic textures and noise, uint8 H×W×3."""
    rng = np.random.default_rng(seed)
    i, j = np.mgrid[0:h, 0:w].astype(np.float64)
    out = {}
    # Periods of 2.2-3.5 pixels that drift across the picture (a chirp), with a little noise: fine texture
    # that no byte-periodic coder (PNG's LZ77) finds for free, unlike an exact 2-pixel grating.
    f = 1 / 3.5 + (1 / 2.2 - 1 / 3.5) * (j / max(w - 1, 1))
    g = 0.5 + 0.42 * np.cos(2 * np.pi * (f * j + 0.07 * i))
    out["grating-fine"] = _u8(np.repeat(g[..., None], 3, axis=2) + 0.01 * rng.standard_normal((h, w, 1)))
    g2 = 0.5 + 0.4 * np.cos(2 * np.pi * (0.29 * i + 0.17 * j + 0.0004 * i * j))
    out["grating-colour"] = _u8(np.stack([g2, 1 - g2, 0.5 + 0.4 * np.sin(2 * np.pi * 0.23 * (i - j))], axis=2)
                                + 0.01 * rng.standard_normal((h, w, 3)))
    out["noise-gauss"] = _u8(0.5 + 0.12 * rng.standard_normal((h, w, 3)))
    out["noise-uniform"] = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    return out


def center_crop(a: np.ndarray, h: int, w: int) -> np.ndarray:
    """A centred h×w crop (the whole side where the image is smaller)."""
    H, W = a.shape[:2]
    i, j = max(0, (H - h) // 2), max(0, (W - w) // 2)
    return a[i : i + h, j : j + w]


def stress_set(photos: dict[str, np.ndarray], size: tuple[int, int] = (256, 256),
               variants: tuple[str, ...] | None = None, with_synthetic: bool = True) -> list[StressImage]:
    """The stress set of some training-side photos (name → uint8 RGB), centre-cropped to ``size``."""
    h, w = size
    out = []
    for name, rgb in photos.items():
        for vname, v in photo_variants(center_crop(rgb, h, w)).items():
            if variants is None or vname in variants:
                out.append(StressImage(f"{name}.{vname}", "photo", v))
    if with_synthetic:
        out.extend(StressImage(n, "synthetic", v) for n, v in synthetic(h, w).items())
    return out
