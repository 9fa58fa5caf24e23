"""Typed containers and the protocols every rdopt algorithm is written against.

The central idea: an algorithm ("optimize the latents of a fixed model") reaches the model only through
:class:`LatentModel`:

* amortized inference      ``amortize(x) -> Latents``                (runs the analysis transforms once)
* decoder-side evaluation  ``evaluate(latents, relax_y, relax_z)``   (synthesis + entropy model only)
* coding                   ``compress(hard) -> CodedLatents``, ``decompress(coded) -> Latents``

so SGA, its ablations, the DAG solvers and the training objectives never see CompressAI directly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch
from torch import Tensor


@dataclass(frozen=True)
class Latents:
    """Latents of a two-level hierarchical VAE: ``y`` (image latent) and ``z`` (hyper-latent).

    Values are continuous (the "variational parameters" of the paper) unless produced by
    :meth:`LatentModel.quantize`, in which case they lie exactly on the grid the coder uses.
    """

    y: Tensor
    z: Tensor

    def detach(self) -> "Latents":
        return Latents(self.y.detach(), self.z.detach())

    def clone(self) -> "Latents":
        return Latents(self.y.detach().clone(), self.z.detach().clone())

    def select(self, index: int | slice | Tensor) -> "Latents":
        """The latents of some images of the batch."""
        if isinstance(index, int):
            index = slice(index, index + 1)
        return Latents(self.y[index], self.z[index])

    @staticmethod
    def cat(items: "list[Latents]") -> "Latents":
        return Latents(torch.cat([i.y for i in items]), torch.cat([i.z for i in items]))

    def to(self, *args, **kwargs) -> "Latents":
        return Latents(self.y.to(*args, **kwargs), self.z.to(*args, **kwargs))


@dataclass(frozen=True)
class Evaluation:
    """Decoder-side evaluation of a set of latents (per image in the batch).

    ``bits_y`` and ``bits_z`` are *estimated* information contents (−log2 of the entropy model's
    probabilities), one value per image. ``x_hat`` is the synthesis output, not yet clamped.
    """

    x_hat: Tensor
    bits_y: Tensor
    bits_z: Tensor
    y: Tensor  # the (relaxed or hard) y fed to the synthesis transform
    z: Tensor  # the (relaxed or hard) z fed to the hyper-synthesis transform
    scales: Tensor | None = None  # the prior's predicted scales of y before the entropy model's floor, if any

    @property
    def bits(self) -> Tensor:
        return self.bits_y + self.bits_z


@dataclass(frozen=True)
class RDCost:
    """Rate-distortion cost per image: ``loss = bpp + λ·255²·MSE`` (CompressAI's convention)."""

    bpp: Tensor
    mse: Tensor
    loss: Tensor


@dataclass(frozen=True)
class CodedLatents:
    """Entropy-coded latents of a batch: ``strings[k][b]`` is the string of latent k for image b."""

    strings: list[list[bytes]]
    z_shape: tuple[int, int]  # spatial size of z (what ``decompress`` needs)
    y_shape: tuple[int, int, int]  # (C, H, W) of y, kept for checking and for ``rdopt info``

    def num_bytes(self, index: int = 0) -> int:
        return sum(len(s[index]) for s in self.strings)


@runtime_checkable
class Relaxation(Protocol):
    """A relaxation of rounding: ``relax(x, offset) -> x̃``.

    ``offset`` is the point the entropy coder quantizes around (``round(x − offset) + offset``):
    the prior mean for a mean-scale model, the channel median for an entropy bottleneck, 0 otherwise.
    A relaxation is a plain callable built by a factory in :mod:`rdopt.relax` for one step.
    """

    def __call__(self, x: Tensor, offset: Tensor) -> Tensor: ...


@runtime_checkable
class LatentModel(Protocol):
    """What rdopt's algorithms need from a trained hierarchical image codec."""

    model_id: str
    lmbda: float
    pad_multiple: int

    def amortize(self, x: Tensor) -> Latents: ...

    def evaluate(self, latents: Latents, relax_y: Relaxation, relax_z: Relaxation) -> Evaluation: ...

    def quantize(self, latents: Latents) -> Latents: ...

    def compress(self, latents: Latents) -> CodedLatents: ...

    def decompress(self, coded: CodedLatents) -> Latents: ...

    def synthesize(self, y_hat: Tensor) -> Tensor: ...


def rd_cost(ev: Evaluation, x: Tensor, lmbda: float, num_pixels: int | None = None) -> RDCost:
    """R-D cost per image of an evaluation against the (padded or cropped) target ``x`` in [0, 1].

    ``num_pixels`` is the pixel count the rate is divided by (the original image size when ``x`` is
    padded); by default the pixel count of ``x``.
    """
    if num_pixels is None:
        num_pixels = x.shape[-2] * x.shape[-1]
    bpp = ev.bits / num_pixels
    mse = (ev.x_hat - x).pow(2).flatten(1).mean(1)
    return RDCost(bpp=bpp, mse=mse, loss=bpp + lmbda * 255.0**2 * mse)


def bits_from_likelihoods(likelihoods: Tensor) -> Tensor:
    """Sum of −log2 likelihoods per batch element."""
    return -torch.log(likelihoods).flatten(1).sum(1) / math.log(2.0)


__all__ = [
    "Latents",
    "Evaluation",
    "RDCost",
    "CodedLatents",
    "Relaxation",
    "LatentModel",
    "rd_cost",
    "bits_from_likelihoods",
]
