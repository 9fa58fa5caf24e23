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

import torch
from torch import Tensor, nn

from ...core.types import CodedLatents, Latents, Relaxations, SampleGrid, bits_from_likelihoods
from ...relax.rounding import hard_round, rate_value
from ..entropy import bottleneck_likelihood, crop_to, gaussian_likelihood, scale_indexes
from .base import CompressAIAdapter, EntropyTerms


class HyperpriorAdapter(CompressAIAdapter):
    """A CompressAI ``ScaleHyperprior`` / ``MeanScaleHyperprior`` seen through rdopt's protocol.

    Args:
        net: the CompressAI model (its weights are used as they are).
        model_id: registry name written into bitstreams (e.g. ``rdopt-msh-q3``, ``mbt2018-mean``).
        lmbda: the λ the model was trained for (``loss = bpp + λ·255²·MSE``): a default only.
        quality: the quality index (CompressAI's numbering) or 0 when unknown.
        family: the model family (default: ``model_id`` without its ``-qN`` suffix).
    """

    def __init__(self, net: nn.Module, model_id: str, lmbda: float, quality: int = 0, family: str | None = None):
        from compressai.models import JointAutoregressiveHierarchicalPriors, MeanScaleHyperprior, ScaleHyperprior

        if isinstance(net, JointAutoregressiveHierarchicalPriors):  # a MeanScaleHyperprior subclass, coded serially
            raise TypeError(f"{type(net).__name__} has an autoregressive context model: use "
                            "rdopt.codecs.image.context.ContextAdapter")
        if isinstance(net, MeanScaleHyperprior):
            has_mean = True
        elif isinstance(net, ScaleHyperprior):
            has_mean = False
        else:
            raise TypeError(f"unsupported model class {type(net).__name__}: need ScaleHyperprior or MeanScaleHyperprior")
        super().__init__(net, model_id, lmbda, quality, family)
        self.has_mean = has_mean

    # ------------------------------------------------------------------ helpers
    tight_multiple = 16
    """Inside a container that records the padded size (``.rdov``), frames need padding to a multiple of 16 only:
    the prior is cropped to ``y`` (:func:`rdopt.codecs.entropy.crop_to`). Image files keep :attr:`pad_multiple`
    (64), which CompressAI's own ``decompress`` needs."""

    def prior(self, z_tilde: Tensor, size=None) -> tuple[Tensor, Tensor | None]:
        """Scales and means (``None`` for a scale-only model) of p(y | z̃) from ``h_s``, cropped to ``y``'s spatial
        ``size`` when given (the identity for an input padded to 64)."""
        params = crop_to(self.net.h_s(z_tilde), size)
        if self.has_mean:
            scales, means = params.chunk(2, 1)
            return scales, means
        return params, None

    def scale_indexes(self, scales: Tensor) -> Tensor:
        """The coder's scale-table index of every predicted scale: the same integers as CompressAI's
        ``GaussianConditional.build_indexes`` (the smallest table entry ≥ the bounded scale, clamped
        to the last), by binary search instead of one pass over the tensor per table entry."""
        return scale_indexes(self.net.gaussian_conditional, scales)

    def hard_prior(self, latents: Latents) -> tuple[Tensor, Tensor, float]:
        """Bits of every element of ŷ under p(ŷ | ẑ), its scales, and the coder's scale floor."""
        scales, means = self.prior(latents["z"], latents["y"].shape[-2:])
        bits = -torch.log2(gaussian_likelihood(self.net.gaussian_conditional, latents["y"], scales, means))
        return bits, scales, self.scale_floor

    def hyper_analysis(self, y: Tensor) -> Tensor:
        """``z = h_a(y)`` (of ``|y|`` for scale-only models): the amortized initializer of ``z`` given ``y``."""
        return self.net.h_a(y if self.has_mean else torch.abs(y))

    # ------------------------------------------------------------------ protocol
    def entropy_terms(self, latents: Latents, relax: Relaxations) -> EntropyTerms:
        """The entropy side of the decoder-side evaluation, one relaxation per latent (no ``g_a``/``h_a``/``g_s``).

        ``z`` is relaxed around the bottleneck medians and its likelihood is evaluated on the relaxed
        value; ``y`` is relaxed around the prior mean ``μ(z̃)`` (0 for scale-only models) and its
        Gaussian likelihood evaluated on the relaxed value (on the relaxation's ``rate_value`` for mixed
        quantization, :func:`rdopt.relax.rounding.mixed`). With :func:`rdopt.relax.hard` this is the
        true discrete rate and reconstruction that the coder realises.
        """
        y, z = latents["y"], latents["z"]
        z_offset = self.z_offset(z)
        z_tilde = relax["z"](z, z_offset)
        scales, means = self.prior(z_tilde, y.shape[-2:])
        y_offset = means if means is not None else torch.zeros_like(y)
        y_tilde = relax["y"](y, y_offset)
        y_rate = rate_value(relax["y"], y, y_offset, y_tilde)
        return EntropyTerms(y_tilde, z_tilde, gaussian_likelihood(self.net.gaussian_conditional, y_rate, scales, means),
                            scales, rate_value(relax["z"], z, z_offset, z_tilde))

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
        scales, means = self.prior(zf, y_tilde.shape[-2:])
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

    @torch.no_grad()
    def quantize(self, latents: Latents) -> Latents:
        """The hard latents the coder writes: ``ẑ = round(z − median) + median``, then
        ``ŷ = round(y − μ(ẑ)) + μ(ẑ)``."""
        z_hat = hard_round(latents["z"], self.z_offset(latents["z"]))
        _, means = self.prior(z_hat, latents["y"].shape[-2:])
        y_hat = hard_round(latents["y"], means if means is not None else 0.0)
        return Latents({"y": y_hat, "z": z_hat})

    @torch.no_grad()
    def compress(self, latents: Latents) -> CodedLatents:
        """Entropy-code latents exactly as ``net.compress`` would code the same (y, z): streams ``y``
        then ``z`` (CompressAI's order).

        The prior for ``y`` is computed from the *decoded* ``ẑ`` (as the decoder will), so the strings of an input
        padded to 64 are decodable by the stock ``net.decompress([streams["y"], streams["z"]], z_shape)``; of a tighter
        input (a ``.rdov`` frame, :attr:`tight_multiple`) only with the prior cropped to ``y`` (:meth:`decompress`).
        """
        net = self.net
        y, z = latents["y"], latents["z"]
        z_strings = net.entropy_bottleneck.compress(z)
        z_hat = net.entropy_bottleneck.decompress(z_strings, z.shape[-2:])
        scales, means = self.prior(z_hat, y.shape[-2:])
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
        y_strings, z_strings, y_shape, z_shape = self.coded_streams(coded, "a hyperprior")
        self.check_rans_strings("y", y_strings)
        self.check_rans_strings("z", z_strings)
        z_hat = net.entropy_bottleneck.decompress(z_strings, list(z_shape[-2:]))
        scales, means = self.prior(z_hat, y_shape[-2:])
        indexes = self.scale_indexes(scales)
        y_hat = net.gaussian_conditional.decompress(y_strings, indexes, z_hat.dtype, means)
        return Latents({"y": y_hat, "z": z_hat})
