"""Toy codecs written only against rdopt's protocol (:class:`rdopt.core.types.LatentCodec`): no CompressAI.

* :class:`ToyImageCodec` — a two-level hyperprior in miniature: ``y = A(x)`` (4×4 patches → C channels),
  ``z = B(|y|)`` (2×2 pooling), ``p(y | z)`` a zero-mean discretized Gaussian whose scale comes from
  ``z``, ``z`` under a fixed unit Gaussian; entropy coding with constriction's ANS coder.
* :class:`ToyVideoCodec` — a two-frame "video" (``x``: B×2×3×H×W): frame 0 coded as above (``y0``,
  ``z0``); frame 1 as a residual against frame 0's reconstruction, ``x̂1 = x̂0 + S(r̃1)``, with its own
  hyper-latent (``r1``, ``h1``). The amortized inference of ``r1`` reads the decoded frame 0, so
  ``r1``'s parent is ``y0`` (under the caller's relaxation, so the sequential solvers differentiate
  through it).

Both run in float64 and are deterministic (weights from a seeded generator).
"""

from __future__ import annotations

import hashlib
import math

import constriction
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from rdopt.core.types import CodedLatents, Evaluation, LatentSpec, Latents
from rdopt.relax.rounding import hard, hard_round

_SYMBOL_RANGE = 200
_SCALE_FLOOR = 0.11


def _gaussian_bits(v: Tensor, scale: Tensor) -> Tensor:
    """−log2 P(v) per item under a zero-mean Gaussian discretized to unit bins around v."""
    s = scale * math.sqrt(2.0)
    p = 0.5 * (torch.erf((v + 0.5) / s) - torch.erf((v - 0.5) / s))
    return -torch.log2(p.clamp_min(1e-9)).flatten(1).sum(1)


def _encode(values: Tensor, scales: Tensor) -> list[bytes]:
    model = constriction.stream.model.QuantizedGaussian(-_SYMBOL_RANGE, _SYMBOL_RANGE)
    out = []
    for b in range(values.shape[0]):
        sym = values[b].detach().cpu().double().round().clamp(-_SYMBOL_RANGE, _SYMBOL_RANGE).numpy().astype(np.int32).ravel()
        sd = scales[b].detach().cpu().double().expand_as(values[b]).numpy().ravel().copy()
        coder = constriction.stream.stack.AnsCoder()
        coder.encode_reverse(sym, model, np.zeros_like(sd), sd)
        out.append(coder.get_compressed().tobytes())
    return out


def _decode(strings: list[bytes], scales: Tensor, shape: tuple[int, ...]) -> Tensor:
    model = constriction.stream.model.QuantizedGaussian(-_SYMBOL_RANGE, _SYMBOL_RANGE)
    rows = []
    for b, s in enumerate(strings):
        if len(s) % 4:
            raise ValueError("a toy stream is a whole number of 32-bit words")
        coder = constriction.stream.stack.AnsCoder(np.frombuffer(s, dtype=np.uint32).copy())
        sd = scales[b].detach().cpu().double().expand(shape).numpy().ravel().copy()
        sym = coder.decode(model, np.zeros_like(sd), sd)
        rows.append(torch.from_numpy(sym.astype(np.float64)).reshape(shape))
    return torch.stack(rows).to(dtype=scales.dtype, device=scales.device)


class _Transforms:
    """Analysis/synthesis/hyper transforms of one toy image codec (weights from ``seed``)."""

    def __init__(self, channels: int, hyper: int, seed: int, dtype=torch.float64):
        g = torch.Generator().manual_seed(seed)
        self.a = (torch.randn(channels, 3, 4, 4, generator=g, dtype=dtype) * 0.6)
        self.s = (torch.randn(channels, 3, 4, 4, generator=g, dtype=dtype) * 0.05)
        self.h = (torch.randn(hyper, channels, 2, 2, generator=g, dtype=dtype) * 0.3)
        self.hs = (torch.randn(hyper, channels, 2, 2, generator=g, dtype=dtype) * 0.3)
        self.bias = torch.full((1, channels, 1, 1), 0.5, dtype=dtype)

    def analysis(self, x: Tensor) -> Tensor:  # B×3×H×W → B×C×H/4×W/4
        return F.conv2d(x * 8.0, self.a.to(x), stride=4)

    def synthesis(self, y: Tensor) -> Tensor:
        return F.conv_transpose2d(y, self.s.to(y), stride=4) + 0.5

    def hyper_analysis(self, y: Tensor) -> Tensor:
        return F.conv2d(y.abs(), self.h.to(y), stride=2)

    def scales(self, z: Tensor) -> Tensor:
        return F.softplus(F.conv_transpose2d(z, self.hs.to(z), stride=2) + self.bias.to(z)) + _SCALE_FLOOR


class ToyImageCodec:
    """A miniature hyperprior image codec (latents ``y`` ← x, ``z`` ← y), see the module docstring."""

    family = "toy-image"
    quality = 1
    model_id = "toy-image-q1"
    lmbda = 0.01
    pad_multiple = 8
    scale_floor = _SCALE_FLOOR

    def __init__(self, seed: int = 0, channels: int = 6, hyper: int = 3):
        self.t = _Transforms(channels, hyper, seed)
        self.channels, self.hyper = channels, hyper
        self._hash = hashlib.sha256(f"{self.family}|{seed}|{channels}|{hyper}".encode()).digest()[:16]

    @property
    def latents(self) -> tuple[LatentSpec, ...]:
        return (LatentSpec("y", "latent", ()), LatentSpec("z", "hyper", ("y",)))

    def weight_hash(self) -> bytes:
        return self._hash

    def latent_shapes(self, height: int, width: int) -> dict[str, tuple[int, ...]]:
        return {"y": (self.channels, height // 4, width // 4), "z": (self.hyper, height // 8, width // 8)}

    def infer(self, name, x, parents, relax=None):
        if name == "y":
            return self.t.analysis(x)
        if name == "z":
            return self.t.hyper_analysis(parents["y"])
        raise KeyError(name)

    def amortize(self, x: Tensor) -> Latents:
        y = self.t.analysis(x)
        return Latents({"y": y, "z": self.t.hyper_analysis(y)})

    def evaluate(self, latents: Latents, relax) -> Evaluation:
        y, z = latents["y"], latents["z"]
        z_t = relax["z"](z, torch.zeros_like(z))
        scales = self.t.scales(z_t)
        y_t = relax["y"](y, torch.zeros_like(y))
        return Evaluation(
            x_hat=self.t.synthesis(y_t),
            rates={"y": _gaussian_bits(y_t, scales), "z": _gaussian_bits(z_t, torch.ones_like(z_t))},
            latents=Latents({"y": y_t, "z": z_t}),
            scales={"y": scales},
        )

    def quantize(self, latents: Latents) -> Latents:
        return latents.map(lambda t: hard_round(t.detach()))

    def compress(self, latents: Latents) -> CodedLatents:
        q = self.quantize(latents)
        y, z = q["y"], q["z"]
        return CodedLatents(
            streams={"y": _encode(y, self.t.scales(z)), "z": _encode(z, torch.ones_like(z))},
            shapes={"y": tuple(y.shape[1:]), "z": tuple(z.shape[1:])},
        )

    def decompress(self, coded: CodedLatents) -> Latents:
        zs = coded.shapes["z"]
        ones = torch.ones((len(coded.streams["z"]), *zs), dtype=torch.float64)
        z = _decode(coded.streams["z"], ones, zs)
        y = _decode(coded.streams["y"], self.t.scales(z), coded.shapes["y"])
        return Latents({"y": y, "z": z})

    def reconstruct(self, latents: Latents) -> Tensor:
        return self.t.synthesis(latents["y"])


class ToyVideoCodec:
    """A two-frame toy "video" codec: ``y0, z0`` (frame 0, intra) and ``r1, h1`` (frame 1, residual
    against the reconstruction of frame 0). Evidence ``x``: B×2×3×H×W; ``evaluate`` takes the latents
    of frame 0 only (x̂ of frame 0) or of both frames (x̂ of both)."""

    family = "toy-video"
    quality = 1
    model_id = "toy-video-q1"
    lmbda = 0.01
    pad_multiple = 8
    scale_floor = _SCALE_FLOOR

    def __init__(self, seed: int = 0, channels: int = 4, hyper: int = 2):
        self.intra = _Transforms(channels, hyper, seed)
        self.inter = _Transforms(channels, hyper, seed + 1)
        self.channels, self.hyper = channels, hyper
        self._hash = hashlib.sha256(f"{self.family}|{seed}|{channels}|{hyper}".encode()).digest()[:16]

    @property
    def latents(self) -> tuple[LatentSpec, ...]:
        return (
            LatentSpec("y0", "latent", (), frame=0),
            LatentSpec("z0", "hyper", ("y0",), frame=0),
            LatentSpec("r1", "residual", ("y0",), frame=1),
            LatentSpec("h1", "residual-hyper", ("r1",), frame=1),
        )

    def weight_hash(self) -> bytes:
        return self._hash

    def latent_shapes(self, height: int, width: int) -> dict[str, tuple[int, ...]]:
        y, z = (self.channels, height // 4, width // 4), (self.hyper, height // 8, width // 8)
        return {"y0": y, "z0": z, "r1": y, "h1": z}

    def infer(self, name, x, parents, relax=None):
        if name == "y0":
            return self.intra.analysis(x[:, 0])
        if name == "z0":
            return self.intra.hyper_analysis(parents["y0"])
        if name == "r1":
            r = (relax or {}).get("y0", hard())
            y0 = parents["y0"]
            x_hat0 = self.intra.synthesis(r(y0, torch.zeros_like(y0)))
            return self.inter.analysis(x[:, 1] - x_hat0 + 0.5)
        if name == "h1":
            return self.inter.hyper_analysis(parents["r1"])
        raise KeyError(name)

    def amortize(self, x: Tensor) -> Latents:
        y0 = self.infer("y0", x, Latents())
        z0 = self.infer("z0", x, Latents({"y0": y0}))
        r1 = self.infer("r1", x, Latents({"y0": y0}))
        return Latents({"y0": y0, "z0": z0, "r1": r1, "h1": self.infer("h1", x, Latents({"r1": r1}))})

    def evaluate(self, latents: Latents, relax) -> Evaluation:
        y0, z0 = latents["y0"], latents["z0"]
        z_t = relax["z0"](z0, torch.zeros_like(z0))
        s0 = self.intra.scales(z_t)
        y_t = relax["y0"](y0, torch.zeros_like(y0))
        x0 = self.intra.synthesis(y_t)
        rates = {"y0": _gaussian_bits(y_t, s0), "z0": _gaussian_bits(z_t, torch.ones_like(z_t))}
        values = {"y0": y_t, "z0": z_t}
        scales = {"y0": s0}
        frames = [x0]
        if "r1" in latents:
            r1, h1 = latents["r1"], latents["h1"]
            h_t = relax["h1"](h1, torch.zeros_like(h1))
            s1 = self.inter.scales(h_t)
            r_t = relax["r1"](r1, torch.zeros_like(r1))
            frames.append(x0 + self.inter.synthesis(r_t) - 0.5)
            rates.update(r1=_gaussian_bits(r_t, s1), h1=_gaussian_bits(h_t, torch.ones_like(h_t)))
            values.update(r1=r_t, h1=h_t)
            scales["r1"] = s1
        return Evaluation(torch.stack(frames, 1), rates, Latents(values), scales, frames=len(frames))

    def quantize(self, latents: Latents) -> Latents:
        return latents.map(lambda t: hard_round(t.detach()))

    def compress(self, latents: Latents) -> CodedLatents:
        q = self.quantize(latents)
        streams = {
            "y0": _encode(q["y0"], self.intra.scales(q["z0"])), "z0": _encode(q["z0"], torch.ones_like(q["z0"])),
            "r1": _encode(q["r1"], self.inter.scales(q["h1"])), "h1": _encode(q["h1"], torch.ones_like(q["h1"])),
        }
        return CodedLatents(streams, {n: tuple(t.shape[1:]) for n, t in q.items()})

    def decompress(self, coded: CodedLatents) -> Latents:
        out = {}
        for y, z, tr in (("y0", "z0", self.intra), ("r1", "h1", self.inter)):
            ones = torch.ones((len(coded.streams[z]), *coded.shapes[z]), dtype=torch.float64)
            out[z] = _decode(coded.streams[z], ones, coded.shapes[z])
            out[y] = _decode(coded.streams[y], tr.scales(out[z]), coded.shapes[y])
        return Latents((n, out[n]) for n in ("y0", "z0", "r1", "h1"))

    def reconstruct(self, latents: Latents) -> Tensor:
        x0 = self.intra.synthesis(latents["y0"])
        return torch.stack([x0, x0 + self.inter.synthesis(latents["r1"]) - 0.5], 1)


def smooth_frames(batch: int = 2, height: int = 16, width: int = 16, seed: int = 0) -> Tensor:
    """A deterministic two-frame clip B×2×3×H×W in [0, 1]: smooth patterns, frame 1 shifted by a pixel."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(height + 1, dtype=torch.float64), torch.arange(width + 1, dtype=torch.float64),
                            indexing="ij")
    clips = []
    for _ in range(batch):
        ph = torch.rand(3, generator=g, dtype=torch.float64) * 6
        base = torch.stack([0.5 + 0.4 * torch.sin(xx / 3 + ph[c]) * torch.cos(yy / 4 - ph[c]) for c in range(3)])
        clips.append(torch.stack([base[:, :height, :width], base[:, 1:, 1:]]))
    return torch.stack(clips).clamp(0, 1)


def smooth_images(batch: int = 2, height: int = 16, width: int = 16, seed: int = 0) -> Tensor:
    return smooth_frames(batch, height, width, seed)[:, 0]
