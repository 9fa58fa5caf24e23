"""Statistics of a codec's latents over an image set (MS-NIC Sec. 5.3, Tables 6 and 10): how much each
channel of y and z varies with the input — a channel that never varies carries no information ("dead").

For every latent (``y``, ``z``) and for its continuous encoder output and its coded (rounded) value
(``ŷ = round(y − μ) + μ``, ``ẑ = round(z − median) + median``: what the entropy coder writes), per
channel over all images and positions: the variance, and the coefficient of variation ``std / |mean|``.
The summary is the mean over channels (CoV over channels whose mean is not 0; channels whose variance
is 0 are counted as dead). Also the rate of each latent in bits per pixel (entropy-model estimate of
the coded values), averaged over images.

Difference from the paper: it takes statistics per latent *dimension* (channel and position) across
images of one size (Kodak); images of an arbitrary set differ in size, so rdopt pools the positions of
a channel — spatial variation within an image counts as variation too.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from ..core.types import LatentCodec, relax_all
from ..data.images import pad, to_tensor
from ..relax.rounding import hard


@dataclass
class _Moments:
    count: int = 0
    total: torch.Tensor | None = None
    squares: torch.Tensor | None = None

    def add(self, t: torch.Tensor) -> None:  # t: 1×C×H×W
        v = t.detach().double().transpose(0, 1).flatten(1)  # C × (H·W)
        s, q = v.sum(1), (v * v).sum(1)
        self.total = s if self.total is None else self.total + s
        self.squares = q if self.squares is None else self.squares + q
        self.count += v.shape[1]

    def summary(self) -> dict:
        mean = self.total / self.count
        var = (self.squares / self.count - mean * mean).clamp_min(0)
        std = var.sqrt()
        live = var > 1e-12
        nonzero = mean.abs() > 1e-12
        cov = std[nonzero] / mean.abs()[nonzero]
        return {"variance": float(var.mean()), "cov": float(cov.mean()) if cov.numel() else float("nan"),
                "dead_channels": int((~live).sum()), "channels": int(var.numel()),
                "per_channel": {"mean": mean.tolist(), "variance": var.tolist()}}


@dataclass
class LatentStats:
    images: int = 0
    moments: dict[str, _Moments] = field(default_factory=dict)
    bits: dict[str, float] = field(default_factory=dict)
    bpp_sum: dict[str, float] = field(default_factory=dict)

    def report(self) -> dict:
        out = {"images": self.images, "latents": {}}
        for key, m in self.moments.items():
            out["latents"][key] = m.summary()
        out["bpp"] = {k: v / self.images for k, v in self.bpp_sum.items()}
        return out


@torch.no_grad()
def latent_statistics(model: LatentCodec, images: list[np.ndarray], device: str | torch.device = "cpu") -> dict:
    """The statistics (see the module docstring) of ``model``'s latents over uint8 RGB ``images``:
    ``{"images", "latents": {"y", "y_hat", "z", "z_hat": {variance, cov, dead_channels, channels,
    per_channel}}, "bpp": {"y", "z"}}``."""
    if not images:
        raise ValueError("no images")
    stats = LatentStats()
    for rgb in images:
        x = pad(to_tensor(rgb, device), model.pad_multiple)
        latents = model.amortize(x)
        coded = model.quantize(latents)
        ev = model.evaluate(coded, relax_all(hard(), coded.names))
        pixels = rgb.shape[0] * rgb.shape[1]
        for name in latents.names:
            for key, t in ((name, latents[name]), (f"{name}_hat", coded[name])):
                stats.moments.setdefault(key, _Moments()).add(t)
            stats.bpp_sum[name] = stats.bpp_sum.get(name, 0.0) + float(ev.rates[name].sum()) / pixels
        stats.images += 1
    return stats.report()


def format_table(report: dict) -> str:
    """The summary as a small text table (Table 6's columns)."""
    rows = [f"{'latent':<8}{'variance':>12}{'CoV':>12}{'dead/ch':>10}"]
    for key, s in report["latents"].items():
        rows.append(f"{key:<8}{s['variance']:>12.4f}{s['cov']:>12.3f}{s['dead_channels']:>5}/{s['channels']:<4}")
    rows.append("bpp     " + "  ".join(f"{k}={v:.4f}" for k, v in report["bpp"].items()) + f"  ({report['images']} images)")
    return "\n".join(rows)


__all__ = ["format_table", "latent_statistics"]
