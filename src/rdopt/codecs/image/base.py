"""What every rdopt image adapter has in common: a two-latent VAE ``x ──g_a──▶ y ──h_a──▶ z`` with the picture
``x̂ = g_s(ŷ)`` seen through :class:`rdopt.core.types.LatentCodec`.

:class:`ImageAdapter` holds the network and the identity written into bitstreams (model id, family, λ, quality,
weight hash) and implements the protocol's parts that do not depend on the entropy model: amortized inference
(``infer``/``amortize``), the picture (``reconstruct``/``synthesize``), the latent shapes, the hard evaluation, the
parameter groups by role, and the floor diagnostics. Subclasses say how the prior of ``y`` is computed
(:mod:`.hyperprior`, :mod:`.context`, :mod:`.parallel`, :mod:`.bitsback`).
"""

from __future__ import annotations

import hashlib
import re
from typing import NamedTuple

import torch
from torch import Tensor, nn

from ...core.types import Evaluation, LatentSpec, Latents, Relaxations, bits_from_likelihoods, relax_all
from ...relax.rounding import hard
from ..entropy import bottleneck_likelihood, fewest_bits

RANS_MIN_BYTES = 8  # CompressAI's rANS coder flushes its 64-bit state: no string it writes is shorter
_QUALITY_SUFFIX = re.compile(r"-q[0-9]+$")
LATENTS = (LatentSpec("y", "latent", ()), LatentSpec("z", "hyper", ("y",)))


def state_dict_hash(net: nn.Module) -> bytes:
    """SHA-256 (first 16 bytes) over a network's canonical state dict: names (sorted), dtypes, shapes and
    values (floating tensors as float32), entropy-coder tables included. What every adapter's
    ``weight_hash`` returns, so two adapters of the same weights agree."""
    h = hashlib.sha256()
    for name, t in sorted(net.state_dict().items()):
        t = t.detach().cpu()
        if t.is_floating_point():
            t = t.float()
        h.update(name.encode())
        h.update(str(t.dtype).encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.contiguous().numpy().tobytes())
    return h.digest()[:16]


class ImageAdapter(nn.Module):
    """Base of the image adapters.

    Args:
        net: the network (its weights are used as they are).
        model_id: registry name written into bitstreams (e.g. ``rdopt-msh-q3``, ``mbt2018-mean``).
        lmbda: the λ the model was trained for (``loss = bpp + λ·255²·MSE``): a default only.
        quality: the quality index (CompressAI's numbering) or 0 when unknown.
        family: the model family (default: ``model_id`` without its ``-qN`` suffix).

    Subclasses implement ``evaluate`` (:class:`CompressAIAdapter`'s: ``entropy_terms``), ``quantize``, ``compress``,
    ``decompress`` (and :meth:`hard_prior` for the floor diagnostics); they may override :meth:`hyper_analysis`
    (``z`` from ``y``) and :attr:`PARAMETER_ROLES`.
    """

    pad_multiple = 64
    tight_multiple = 64  # the padding a container recording the padded size needs (a hyperprior adapter's: 16)
    stride = 16  # pixels per latent position of y (z: 4 times more)
    PARAMETER_ROLES: dict[str, str] = {"g_a.": "y_inference", "g_s.": "y_generative", "h_a.": "z_inference",
                                       "h_s.": "z_generative", "entropy_bottleneck.": "z_prior"}

    def __init__(self, net: nn.Module, model_id: str, lmbda: float, quality: int = 0, family: str | None = None):
        super().__init__()
        self.net = net
        self.model_id = model_id
        self.family = family if family is not None else _QUALITY_SUFFIX.sub("", model_id)
        self.lmbda = float(lmbda)
        self.quality = int(quality)
        self._weight_hash: bytes | None = None

    @property
    def latents(self) -> tuple[LatentSpec, ...]:
        """``y`` (the image latent), then ``z`` (its hyper-latent, inferred from ``y``)."""
        return LATENTS

    @property
    def device(self) -> torch.device:
        return next(self.net.parameters()).device

    # ------------------------------------------------------------------ amortized inference
    def analysis(self, x: Tensor) -> Tensor:
        """``y = g_a(x)``: the amortized initializer of the image latent."""
        return self.net.g_a(x)

    def hyper_analysis(self, y: Tensor) -> Tensor:
        """``z = h_a(y)``: the amortized initializer of ``z`` given ``y``."""
        return self.net.h_a(y)

    def encoder_modules(self) -> list[nn.Module]:
        """The encoder-side modules (analysis and hyper-analysis transforms)."""
        return [self.net.g_a, self.net.h_a]

    def infer(self, name: str, x: Tensor, parents: Latents, relax: Relaxations | None = None) -> Tensor:
        """Amortized inference of one latent: ``y`` from the image, ``z`` from the given ``y`` (continuous, as the
        stock encoder computes it)."""
        if name == "y":
            return self.analysis(x)
        if name == "z":
            return self.hyper_analysis(parents["y"])
        raise KeyError(f"unknown latent {name!r}; latents: y, z")

    def amortize(self, x: Tensor) -> Latents:
        """Amortized inference of both latents (continuous, not rounded)."""
        y = self.analysis(x)
        return Latents({"y": y, "z": self.hyper_analysis(y)})

    # ------------------------------------------------------------------ the picture
    def synthesize(self, y_hat: Tensor) -> Tensor:
        """``x̂ = g_s(ŷ)`` (not clamped)."""
        return self.net.g_s(y_hat)

    def reconstruct(self, latents: Latents) -> Tensor:
        """The decoder's picture from hard latents (``g_s(ŷ)``, not clamped)."""
        return self.synthesize(latents["y"])

    # ------------------------------------------------------------------ sizes, identity, roles
    def latent_channels(self) -> tuple[int, int]:
        """Channels of ``y`` and of ``z``."""
        return int(self.net.M), int(self.net.N)

    def latent_shapes(self, height: int, width: int) -> dict[str, tuple[int, ...]]:
        """Shapes (C, H, W) of y and z for a padded input of the given size."""
        m, n = self.latent_channels()
        s = self.stride
        return {"y": (m, height // s, width // s), "z": (n, -(-height // (4 * s)), -(-width // (4 * s)))}

    def weight_hash(self) -> bytes:
        """SHA-256 (first 16 bytes) over the canonical state dict (:func:`state_dict_hash`: names, dtypes, shapes,
        values, entropy-coder tables included — a model whose CDFs differ writes other bitstreams)."""
        if self._weight_hash is None:
            self._weight_hash = state_dict_hash(self.net)
        return self._weight_hash

    def parameter_groups(self) -> dict[str, list[tuple[str, nn.Parameter]]]:
        """The network's trainable parameters by role (MS-NIC Table 3, with ``y_prior`` for a context model):
        prefixes of :attr:`PARAMETER_ROLES`; the entropy bottleneck's auxiliary quantiles are left out."""
        groups: dict[str, list[tuple[str, nn.Parameter]]] = {g: [] for g in dict.fromkeys(self.PARAMETER_ROLES.values())}
        for name, p in self.net.named_parameters():
            if name.endswith(".quantiles"):
                continue
            for pre, g in self.PARAMETER_ROLES.items():
                if name.startswith(pre):
                    groups[g].append((name, p))
                    break
        return groups

    # ------------------------------------------------------------------ evaluation helpers
    def hard_evaluate(self, latents: Latents) -> Evaluation:
        """The true discrete evaluation (hard rounding of both latents, in the coder's order)."""
        return self.evaluate(latents, relax_all(hard(), ("y", "z")))

    def hard_prior(self, latents: Latents) -> tuple[Tensor, Tensor, float]:
        """For hard latents: bits of every element of ŷ, its predicted scales, and the coder's scale floor."""
        raise NotImplementedError

    @torch.no_grad()
    def floor_diagnostics(self, latents: Latents) -> tuple[Tensor, Tensor]:
        """Per image, for hard latents (``y`` and ``z``): the fraction of y's predicted scales below the entropy
        model's floor, and the share of y's bits coded at such floored scales.

        A floored scale is harmless where the value sits on its mean (≈ 3·10⁻⁴ bits at σ = 0.11): channels a model
        leaves unused predict it everywhere. It is the collapse of saturated colours where the values are off the
        mean — each then costs tens of bits — so the share of bits is the quantity to watch."""
        bits, scales, floor = self.hard_prior(latents)
        floored = (scales < floor).to(bits.dtype)
        fraction = floored.flatten(1).mean(1)
        share = (bits * floored).flatten(1).sum(1) / bits.flatten(1).sum(1).clamp_min(1e-12)
        return fraction, share


class EntropyTerms(NamedTuple):
    """What a :class:`CompressAIAdapter`'s entropy models give relaxed (or hard) latents: ``ỹ``, ``z̃``, the
    likelihoods of ``y``, its predicted scales, and where ``z``'s rate is measured (default ``z̃``; a relaxation's
    :func:`rdopt.relax.rounding.rate_value`)."""

    y_tilde: Tensor
    z_tilde: Tensor
    y_likelihoods: Tensor
    scales: Tensor
    z_rate: Tensor | None = None


class CompressAIAdapter(ImageAdapter):
    """An :class:`ImageAdapter` over a CompressAI network: ``z`` coded by an ``EntropyBottleneck`` around its
    channel medians, ``y`` by Gaussian conditionals (:attr:`scale_floor`, :meth:`min_bits_per_symbol`)."""

    @property
    def bottleneck(self) -> nn.Module:
        """The entropy bottleneck of ``z``."""
        return self.net.entropy_bottleneck

    def z_offset(self, z: Tensor) -> Tensor:
        """The entropy bottleneck's per-channel medians (what it quantizes ``z`` around), shaped to broadcast."""
        med = self.bottleneck.quantiles[:, 0, 1]
        return med.detach().to(z.dtype).reshape(1, -1, *([1] * (z.dim() - 2)))

    @property
    def scale_floor(self) -> float:
        """The smallest scale the Gaussian conditional uses (CompressAI bounds predictions below by it)."""
        return float(self.net.gaussian_conditional.lower_bound_scale.bound)

    @staticmethod
    def coded_streams(coded, what: str) -> tuple[list[bytes], list[bytes], tuple, tuple]:
        """``(y strings, z strings, y shape, z shape)`` of coded latents; a missing one is a ``ValueError`` saying
        that ``what`` (e.g. "a hyperprior") needs them."""
        try:
            return coded.streams["y"], coded.streams["z"], tuple(coded.shapes["y"]), tuple(coded.shapes["z"])
        except KeyError as e:
            raise ValueError(f"{what} needs the streams y and z, missing {e}") from None

    @staticmethod
    def check_rans_strings(name: str, strings) -> None:
        """Refuse, before decoding, a string shorter than CompressAI's rANS coder ever writes (its 64-bit final
        state, 8 bytes): its decoder would read that state past the end."""
        for s in strings:
            if len(s) < RANS_MIN_BYTES:
                raise ValueError(f"a string of {name} has {len(s)} bytes; an rANS string holds at least "
                                 f"{RANS_MIN_BYTES}")

    def entropy_terms(self, latents: Latents, relax: Relaxations) -> EntropyTerms:
        """The entropy models' side of :meth:`evaluate` (no ``g_a``, ``h_a`` or ``g_s``): the relaxed (or hard)
        latents, the likelihoods of ``y`` under the prior the subclass computes, its scales and the values the rate
        of ``z`` is measured at."""
        raise NotImplementedError

    def evaluate(self, latents: Latents, relax: Relaxations) -> Evaluation:
        """Decoder-side evaluation with one relaxation per latent: :meth:`entropy_terms`, then ``x̂ = g_s(ỹ)``."""
        t = self.entropy_terms(latents, relax)
        return Evaluation(x_hat=self.synthesize(t.y_tilde), rates=self._rates(t),
                          latents=Latents({"y": t.y_tilde, "z": t.z_tilde}), scales={"y": t.scales})

    @torch.no_grad()
    def hard_bits(self, latents: Latents) -> Tensor:
        """Per item, the bits of hard latents ``ŷ``, ``ẑ``: the rate :meth:`hard_evaluate` reports, by the same
        operations, without the synthesis ``g_s`` (what an encode of a large image needs)."""
        rates = self._rates(self.entropy_terms(latents, relax_all(hard(), ("y", "z"))))
        return rates["y"] + rates["z"]

    def _rates(self, t: EntropyTerms) -> dict[str, Tensor]:
        z_rate = t.z_tilde if t.z_rate is None else t.z_rate
        return {"y": bits_from_likelihoods(t.y_likelihoods),
                "z": bits_from_likelihoods(bottleneck_likelihood(self.bottleneck, z_rate))}

    def min_bits_per_symbol(self) -> tuple[float, float]:
        """Fewest bits the entropy coder can spend on one symbol of ``y`` and of ``z`` (the largest frequency in the
        quantized CDF tables): bounds from below the size of an honest string."""
        return fewest_bits(self.net.gaussian_conditional), fewest_bits(self.bottleneck)


__all__ = ["CompressAIAdapter", "EntropyTerms", "ImageAdapter", "LATENTS", "state_dict_hash"]
