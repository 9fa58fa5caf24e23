"""Adapters that expose CompressAI hyperprior models through :class:`rdopt.core.types.LatentCodec`.

This module (with :mod:`rdopt.codecs.image.loading`) is the only place in rdopt that touches CompressAI's
internals. Two families are supported:

* ``mbt2018-mean`` — :class:`compressai.models.MeanScaleHyperprior` (Minnen et al. 2018 without context)::

      x ──g_a──▶ y ──h_a──▶ z ──Q(z−median)──▶ ẑ ──h_s──▶ (σ, μ)
                 └───────────────Q(y−μ)+μ──────▶ ŷ ──g_s──▶ x̂

* ``bmshj2018-hyperprior`` — :class:`compressai.models.ScaleHyperprior` (Ballé et al. 2018): the same
  with ``μ = 0`` and ``h_a`` applied to ``|y|``.

Decoder-side evaluation (:meth:`HyperpriorAdapter.evaluate`) runs only ``h_s``, ``g_s`` and the entropy
models: it never calls ``g_a``/``h_a``. The latents are named ``y`` (kind ``latent``) and ``z`` (kind
``hyper``); as an inference DAG ``y → z`` (the encoder computes ``z = h_a(y)``), while the prior's
dependence ``p(y | z)`` lives inside ``evaluate``. CompressAI's private likelihood calls are wrapped in
:mod:`rdopt.codecs.entropy` (shared with any future adapter).
"""

from __future__ import annotations

import hashlib
import re

import torch
from torch import Tensor, nn

from ...core.types import (CodedLatents, Evaluation, LatentSpec, Latents, Relaxations, SampleGrid, bits_from_likelihoods,
                     relax_all)
from ...relax.rounding import hard, hard_round
from ..entropy import bottleneck_likelihood, fewest_bits, gaussian_likelihood

_QUALITY_SUFFIX = re.compile(r"-q[0-9]+$")
_LATENTS = (LatentSpec("y", "latent", ()), LatentSpec("z", "hyper", ("y",)))


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


class HyperpriorAdapter(nn.Module):
    """A CompressAI ``ScaleHyperprior`` / ``MeanScaleHyperprior`` seen through rdopt's protocol.

    Args:
        net: the CompressAI model (its weights are used as they are).
        model_id: registry name written into bitstreams (e.g. ``rdopt-msh-q3``, ``mbt2018-mean``).
        lmbda: the λ the model was trained for (``loss = bpp + λ·255²·MSE``): a default only.
        quality: the quality index (CompressAI's numbering) or 0 when unknown.
        family: the model family (default: ``model_id`` without its ``-qN`` suffix).
    """

    pad_multiple = 64

    def __init__(self, net: nn.Module, model_id: str, lmbda: float, quality: int = 0, family: str | None = None):
        super().__init__()
        from compressai.models import JointAutoregressiveHierarchicalPriors, MeanScaleHyperprior, ScaleHyperprior

        if isinstance(net, JointAutoregressiveHierarchicalPriors):  # a MeanScaleHyperprior subclass, coded serially
            raise TypeError(f"{type(net).__name__} has an autoregressive context model: use "
                            "rdopt.codecs.image.context.ContextAdapter")
        if isinstance(net, MeanScaleHyperprior):
            self.has_mean = True
        elif isinstance(net, ScaleHyperprior):
            self.has_mean = False
        else:
            raise TypeError(f"unsupported model class {type(net).__name__}: need ScaleHyperprior or MeanScaleHyperprior")
        self.net = net
        self.model_id = model_id
        self.family = family if family is not None else _QUALITY_SUFFIX.sub("", model_id)
        self.lmbda = float(lmbda)
        self.quality = int(quality)
        self._weight_hash: bytes | None = None

    @property
    def latents(self) -> tuple[LatentSpec, ...]:
        """``y`` (the image latent), then ``z`` (its hyper-latent, inferred from ``y``)."""
        return _LATENTS

    # ------------------------------------------------------------------ helpers
    @property
    def device(self) -> torch.device:
        return next(self.net.parameters()).device

    def z_offset(self, z: Tensor) -> Tensor:
        """The entropy bottleneck's per-channel medians, shaped to broadcast over ``z``."""
        med = self.net.entropy_bottleneck.quantiles[:, 0, 1]
        return med.detach().to(z.dtype).reshape(1, -1, *([1] * (z.dim() - 2)))

    def prior(self, z_tilde: Tensor) -> tuple[Tensor, Tensor | None]:
        """Scales and means (``None`` for a scale-only model) of p(y | z̃) from ``h_s``."""
        params = self.net.h_s(z_tilde)
        if self.has_mean:
            scales, means = params.chunk(2, 1)
            return scales, means
        return params, None

    def scale_indexes(self, scales: Tensor) -> Tensor:
        """The coder's scale-table index of every predicted scale: the same integers as CompressAI's
        ``GaussianConditional.build_indexes`` (the smallest table entry ≥ the bounded scale, clamped
        to the last), by binary search instead of one pass over the tensor per table entry."""
        gc = self.net.gaussian_conditional
        bounded = gc.lower_bound_scale(scales)
        table = gc.scale_table[:-1].to(bounded.dtype).contiguous()
        return torch.searchsorted(table, bounded.contiguous(), right=False).int()

    @property
    def scale_floor(self) -> float:
        """The smallest scale the Gaussian conditional uses (CompressAI bounds predictions below by it)."""
        return float(self.net.gaussian_conditional.lower_bound_scale.bound)

    @torch.no_grad()
    def floor_diagnostics(self, latents: Latents) -> tuple[Tensor, Tensor]:
        """Per image, for hard latents (``y`` and ``z``): the fraction of y's predicted scales below the entropy model's floor,
        and the share of y's bits coded at such floored scales.

        A floored scale is harmless where the value sits on its mean (≈ 3·10⁻⁴ bits at σ = 0.11): channels
        a model leaves unused predict it everywhere. It is the collapse of saturated colours where the values are off
        the mean — each then costs tens of bits — so the share of bits is the quantity to watch."""
        scales, means = self.prior(latents["z"])
        bits = -torch.log2(gaussian_likelihood(self.net.gaussian_conditional, latents["y"], scales, means))
        floored = (scales < self.scale_floor).to(bits.dtype)
        fraction = floored.flatten(1).mean(1)
        share = (bits * floored).flatten(1).sum(1) / bits.flatten(1).sum(1).clamp_min(1e-12)
        return fraction, share


    def analysis(self, x: Tensor) -> Tensor:
        """``y = g_a(x)``: the amortized initializer of the image latent."""
        return self.net.g_a(x)

    def encoder_modules(self) -> list[nn.Module]:
        """The encoder-side modules (analysis and hyper-analysis transforms)."""
        return [self.net.g_a, self.net.h_a]

    def hyper_analysis(self, y: Tensor) -> Tensor:
        """``z = h_a(y)`` (of ``|y|`` for scale-only models): the amortized initializer of ``z`` given ``y``."""
        return self.net.h_a(y if self.has_mean else torch.abs(y))

    # ------------------------------------------------------------------ protocol
    def infer(self, name: str, x: Tensor, parents: Latents, relax: Relaxations | None = None) -> Tensor:
        """Amortized inference of one latent: ``y = g_a(x)``; ``z = h_a(y)`` from the given ``y``
        (continuous, as CompressAI's encoder does)."""
        if name == "y":
            return self.analysis(x)
        if name == "z":
            return self.hyper_analysis(parents["y"])
        raise KeyError(f"unknown latent {name!r}; latents: y, z")

    def amortize(self, x: Tensor) -> Latents:
        """Amortized inference: ``y = g_a(x)``, ``z = h_a(y)`` (continuous, not rounded)."""
        y = self.analysis(x)
        return Latents({"y": y, "z": self.hyper_analysis(y)})

    def evaluate(self, latents: Latents, relax: Relaxations) -> Evaluation:
        """Decoder-side evaluation with one relaxation per latent (no ``g_a``/``h_a``).

        ``z`` is relaxed around the bottleneck medians and its likelihood is evaluated on the relaxed
        value; ``y`` is relaxed around the prior mean ``μ(z̃)`` (0 for scale-only models) and its
        Gaussian likelihood evaluated on the relaxed value. With :func:`rdopt.relax.hard` this is the
        true discrete rate and reconstruction that the coder realises.
        """
        y, z = latents["y"], latents["z"]
        z_tilde = relax["z"](z, self.z_offset(z))
        scales, means = self.prior(z_tilde)
        y_offset = means if means is not None else torch.zeros_like(y)
        y_tilde = relax["y"](y, y_offset)
        x_hat = self.net.g_s(y_tilde)
        return Evaluation(
            x_hat=x_hat,
            rates={
                "y": bits_from_likelihoods(gaussian_likelihood(self.net.gaussian_conditional, y_tilde, scales, means)),
                "z": bits_from_likelihoods(bottleneck_likelihood(self.net.entropy_bottleneck, z_tilde)),
            },
            latents=Latents({"y": y_tilde, "z": z_tilde}),
            scales={"y": scales},
        )

    def evaluate_grid(self, y_tilde: Tensor, z_tilde: Tensor) -> SampleGrid:
        """Decoder-side terms of every pairing of ``K`` samples of ỹ with ``L`` samples of z̃ (the
        multi-sample objectives of :mod:`rdopt.losses.multisample`, Eq. 17 of MS-NIC).

        ``y_tilde`` is ``K×B×M×h×w`` and ``z_tilde`` ``L×B×N×h'×w'``: values already relaxed (sampled).
        ``g_s`` runs ``K`` times, ``h_s`` and the bottleneck ``L`` times, the Gaussian likelihood ``K·L``
        times; no encoder runs. With ``K = L = 1`` every term is computed by the same operations on the
        same values as :meth:`evaluate` with the same noise."""
        k, b = y_tilde.shape[:2]
        l = z_tilde.shape[0]
        if z_tilde.shape[1] != b:
            raise ValueError(f"ỹ has {b} items per sample, z̃ {z_tilde.shape[1]}")
        zf = z_tilde.flatten(0, 1)
        scales, means = self.prior(zf)
        x_hat = self.net.g_s(y_tilde.flatten(0, 1))
        bits_z = bits_from_likelihoods(bottleneck_likelihood(self.net.entropy_bottleneck, zf))

        def pairs(t: Tensor) -> Tensor:  # (L·B, …) -> (K·L·B, …), pair (i, j) at index (i·L + j)·B + b
            t = t.unflatten(0, (l, b))
            return t.unsqueeze(0).expand(k, *t.shape).flatten(0, 2)

        yy = y_tilde.unsqueeze(1).expand(k, l, *y_tilde.shape[1:]).flatten(0, 2)
        if k == 1 and l == 1:
            yy, ss, mm = y_tilde[0], scales, means
        else:
            ss, mm = pairs(scales), (pairs(means) if means is not None else None)
        bits_y = bits_from_likelihoods(gaussian_likelihood(self.net.gaussian_conditional, yy, ss, mm))
        return SampleGrid(x_hat=x_hat.unflatten(0, (k, b)), bits_y=bits_y.unflatten(0, (k, l, b)),
                          bits_z=bits_z.unflatten(0, (l, b)), scales=scales.unflatten(0, (l, b)))

    def parameter_groups(self) -> dict[str, list[tuple[str, nn.Parameter]]]:
        """The network's trainable parameters by role (MS-NIC Table 3): ``y_inference`` (``g_a``),
        ``y_generative`` (``g_s``), ``z_inference`` (``h_a``), ``z_generative`` (``h_s``), ``z_prior``
        (the entropy bottleneck's density, without its auxiliary quantiles)."""
        prefixes = {"g_a.": "y_inference", "g_s.": "y_generative", "h_a.": "z_inference", "h_s.": "z_generative",
                    "entropy_bottleneck.": "z_prior"}
        groups: dict[str, list[tuple[str, nn.Parameter]]] = {g: [] for g in prefixes.values()}
        for name, p in self.net.named_parameters():
            if name.endswith(".quantiles"):
                continue
            for pre, g in prefixes.items():
                if name.startswith(pre):
                    groups[g].append((name, p))
                    break
        return groups

    @torch.no_grad()
    def quantize(self, latents: Latents) -> Latents:
        """The hard latents the coder writes: ``ẑ = round(z − median) + median``, then
        ``ŷ = round(y − μ(ẑ)) + μ(ẑ)``."""
        z_hat = hard_round(latents["z"], self.z_offset(latents["z"]))
        _, means = self.prior(z_hat)
        y_hat = hard_round(latents["y"], means if means is not None else 0.0)
        return Latents({"y": y_hat, "z": z_hat})

    @torch.no_grad()
    def compress(self, latents: Latents) -> CodedLatents:
        """Entropy-code latents exactly as ``net.compress`` would code the same (y, z): streams ``y``
        then ``z`` (CompressAI's order).

        The prior for ``y`` is computed from the *decoded* ``ẑ`` (as the decoder will), so the strings
        are decodable by the stock ``net.decompress([streams["y"], streams["z"]], z_shape)``.
        """
        net = self.net
        y, z = latents["y"], latents["z"]
        z_strings = net.entropy_bottleneck.compress(z)
        z_hat = net.entropy_bottleneck.decompress(z_strings, z.shape[-2:])
        scales, means = self.prior(z_hat)
        indexes = self.scale_indexes(scales)
        y_strings = net.gaussian_conditional.compress(y, indexes, means=means)
        return CodedLatents(
            streams={"y": list(y_strings), "z": list(z_strings)},
            shapes={"y": tuple(int(s) for s in y.shape[1:]), "z": tuple(int(s) for s in z.shape[1:])},
        )

    @torch.no_grad()
    def decompress(self, coded: CodedLatents) -> Latents:
        """Decode the ``y`` and ``z`` streams to the hard latents (ŷ, ẑ)."""
        net = self.net
        try:
            y_strings, z_strings = coded.streams["y"], coded.streams["z"]
            z_shape = coded.shapes["z"]
        except KeyError as e:
            raise ValueError(f"a hyperprior needs the streams y and z, missing {e}") from None
        z_hat = net.entropy_bottleneck.decompress(z_strings, list(z_shape[-2:]))
        scales, means = self.prior(z_hat)
        indexes = self.scale_indexes(scales)
        y_hat = net.gaussian_conditional.decompress(y_strings, indexes, z_hat.dtype, means)
        return Latents({"y": y_hat, "z": z_hat})

    def reconstruct(self, latents: Latents) -> Tensor:
        """The decoder's picture from hard latents (``g_s(ŷ)``, not clamped)."""
        return self.net.g_s(latents["y"])

    def synthesize(self, y_hat: Tensor) -> Tensor:
        return self.net.g_s(y_hat)

    def min_bits_per_symbol(self) -> tuple[float, float]:
        """Fewest bits the entropy coder can spend on one symbol of ``y`` and of ``z`` (the largest
        frequency in the quantized CDF tables): bounds from below the size of an honest string."""
        return fewest_bits(self.net.gaussian_conditional), fewest_bits(self.net.entropy_bottleneck)

    # ------------------------------------------------------------------ conveniences
    def hard_evaluate(self, latents: Latents) -> Evaluation:
        """The true discrete evaluation (hard rounding of both latents)."""
        return self.evaluate(latents, relax_all(hard(), ("y", "z")))

    def latent_shapes(self, height: int, width: int) -> dict[str, tuple[int, ...]]:
        """Shapes (C, H, W) of y and z for a padded input of the given size."""
        m = self.net.M
        n = self.net.N
        return {"y": (m, height // 16, width // 16), "z": (n, height // 64, width // 64)}

    def weight_hash(self) -> bytes:
        """SHA-256 (first 16 bytes) over the canonical state dict: names, dtypes, shapes and values
        (floating tensors as float32). Entropy-coder tables are included: a model whose CDFs differ
        writes different bitstreams and must not be confused with this one."""
        if self._weight_hash is None:
            self._weight_hash = state_dict_hash(self.net)
        return self._weight_hash
