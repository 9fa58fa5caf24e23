"""CompressAI's autoregressive context models through :class:`rdopt.core.types.LatentCodec`.

``mbt2018`` — :class:`compressai.models.JointAutoregressiveHierarchicalPriors` (Minnen, Ballé & Toderici
2018, joint autoregressive and hierarchical priors) — and its subclasses ``cheng2020-anchor`` /
``cheng2020-attn`` (:class:`compressai.models.Cheng2020Anchor`, :class:`~compressai.models.Cheng2020Attention`:
other transforms, the same prior and coder)::

      x ──g_a──▶ y ──h_a──▶ z ──Q(z−median)──▶ ẑ ──h_s──▶ ψ
                 │                                        │
                 └──▶ ŷ_i = Q(y_i − μ_i) + μ_i            ▼
                      (σ_i, μ_i) = EP(ψ_i, CP(ŷ_<i))  ◀───┘        x̂ = g_s(ŷ)

``CP`` (``context_prediction``) is a 5×5 convolution masked to the positions before ``i`` in raster order;
``EP`` (``entropy_parameters``) is a stack of 1×1 convolutions. The coder writes, position after position,
the integers ``q_i = round(y_i − μ_i)`` with μ_i computed from the already *decoded* ŷ_<i, and the decoder
rebuilds ``ŷ_i = q_i + μ_i`` in the same order: the hard latents depend serially on earlier ones.

Two evaluations of the rate–distortion objective, as SAVI needs them (paper 003, §3.1–3.2):

* **true (hard)** — paper 003 Eq. 2 on the ŷ the decoder will rebuild. :meth:`ContextAdapter.quantize` is the
  serial pass of CompressAI's coder (:meth:`ContextAdapter.serial`: the same raster order, zero padding of 2,
  the same 5×5 kernel and the same operations on the same shapes as ``_decompress_ar``, so its ŷ is the stock
  decoder's bit for bit), and the rate is −log2 p(ŷ_i | ŷ_<i, ẑ) under the serial (σ_i, μ_i). ``evaluate``
  takes this path whenever y's relaxation is hard rounding (:func:`rdopt.relax.rounding.hard`), which is the
  objective the optimization loop keeps the best of: a result is never worse than the amortized one in real
  terms. It costs H/16·W/16 sequential steps of small convolutions per image (one per latent position).
* **relaxed** — everything in parallel, by teacher forcing. The rounding offset of y is the mean the context
  model predicts from the continuous y itself, ``μ⁰ = EP(h_s(z̃), CP(y))``; the relaxation (SGA, paper 003
  Eq. 4–5, or an ablation) gives ``ỹ = relax(y, μ⁰)``; the context model then runs on ỹ at all positions at
  once, ``(σ, μ) = EP(h_s(z̃), CP(ỹ))``, the rate of y is −log2 p(ỹ | σ, μ) and ``x̂ = g_s(ỹ)``.

The approximation: the relaxation rounds y around teacher-forced means (of the continuous y, and the rate is
measured around those of ỹ), the hard path around the serial means of ŷ. As τ → 0 ỹ tends to
``round(y − μ⁰) + μ⁰``, which differs from the serial ŷ where the context of y differs from that of ŷ — the
part of the discretization gap (paper 003 Fig. 3) that is proper to an autoregressive prior. The loop keeps the
point of lowest true cost and the file codes that point's serial ŷ, so the approximation can slow the search but
never makes the result worse than its start.

Only the stored weights are read: the masked convolution is applied as ``F.conv2d`` with ``weight·mask``
(CompressAI's ``MaskedConv2d.forward`` masks its weight in place, which would change the weight hash).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...core.types import CodedLatents, Latents, Relaxations
from ...relax.rounding import hard_round
from ..entropy import gaussian_likelihood
from .base import CompressAIAdapter, EntropyTerms
_CACHE_SIZE = 4  # serial passes remembered (see ContextAdapter.serial)


class ContextAdapter(CompressAIAdapter):
    """A CompressAI ``JointAutoregressiveHierarchicalPriors`` (or Cheng2020 model) seen through rdopt's protocol.

    Args:
        net: the CompressAI model (its weights are used as they are, never modified).
        model_id: registry name written into bitstreams (e.g. ``mbt2018-q3``).
        lmbda: the λ the model was trained for (``loss = bpp + λ·255²·MSE``): a default only.
        quality: the quality index (CompressAI's numbering) or 0 when unknown.
        family: the model family (default: ``model_id`` without its ``-qN`` suffix).
    """

    kernel_size = 5  # CompressAI's coder hard-codes the 5×5 context kernel with padding 2
    padding = 2
    PARAMETER_ROLES = {**CompressAIAdapter.PARAMETER_ROLES, "context_prediction.": "y_prior", "entropy_parameters.": "y_prior"}

    def __init__(self, net: nn.Module, model_id: str, lmbda: float, quality: int = 0, family: str | None = None):
        from compressai.models import JointAutoregressiveHierarchicalPriors

        if not isinstance(net, JointAutoregressiveHierarchicalPriors):
            raise TypeError(f"unsupported model class {type(net).__name__}: need JointAutoregressiveHierarchicalPriors "
                            "(mbt2018) or a Cheng2020 model")
        cp = net.context_prediction
        if (tuple(cp.kernel_size), tuple(cp.padding), tuple(cp.stride)) != ((5, 5), (2, 2), (1, 1)):
            raise TypeError(f"{type(net).__name__}: the context model must be a 5×5 masked convolution with padding 2 "
                            "and stride 1 (what CompressAI's autoregressive coder assumes)")
        super().__init__(net, model_id, lmbda, quality, family)
        self._cache: list[tuple] = []

    # ------------------------------------------------------------------ helpers
    def hyper_synthesis(self, z_tilde: Tensor) -> Tensor:
        """``ψ = h_s(z̃)``: the hyperprior's half of the entropy parameters' input (2M channels per position)."""
        return self.net.h_s(z_tilde)

    def entropy_parameters(self, psi: Tensor, y_context: Tensor) -> tuple[Tensor, Tensor]:
        """Scales and means of every position at once, by teacher forcing: ``EP(ψ, CP(y_context))`` with the
        masked 5×5 convolution over the whole of ``y_context`` (position i sees ``y_context`` before i only)."""
        cp = self.net.context_prediction
        ctx = F.conv2d(y_context, cp.weight * cp.mask, cp.bias, stride=1, padding=self.padding)
        scales, means = self.net.entropy_parameters(torch.cat((psi, ctx), dim=1)).chunk(2, 1)
        return scales, means

    def sequential_steps(self, height: int, width: int) -> int:
        """Sequential context steps of one decode (or one :meth:`quantize`) of a padded height×width image."""
        return (height // self.stride) * (width // self.stride)

    # ------------------------------------------------------------------ the serial pass
    def _weights_version(self) -> int:
        net = self.net
        return sum(p._version for m in (net.h_s, net.context_prediction, net.entropy_parameters)
                   for p in m.parameters())

    def _cached(self, y: Tensor, z_hat: Tensor):
        version = self._weights_version()
        for key_y, key_z, key_v, out in self._cache:
            if (key_v == version and key_y.shape == y.shape and key_y.dtype == y.dtype and key_y.device == y.device
                    and key_z.shape == z_hat.shape and key_z.dtype == z_hat.dtype and key_z.device == z_hat.device
                    and torch.equal(key_y, y) and torch.equal(key_z, z_hat)):
                return tuple(t.clone() for t in out)
        return None

    def _remember(self, y: Tensor, z_hat: Tensor, out: tuple[Tensor, Tensor, Tensor]) -> None:
        version = self._weights_version()
        out = tuple(t.detach().clone() for t in out)
        # the pass is idempotent: the serial pass of its own ŷ gives the same ŷ, scales and means
        for key in (y, out[0]):
            self._cache.insert(0, (key.detach().clone(), z_hat.detach().clone(), version, out))
        del self._cache[_CACHE_SIZE:]

    @torch.no_grad()
    def serial(self, y: Tensor, z_hat: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """The hard latents ŷ the stock decoder rebuilds from the codes of ``y`` given ``ẑ``, with the serial
        scales and means of every position: ``(ŷ, σ, μ)``, each ``B×M×H×W``.

        Per image: ``ψ = h_s(ẑ)``; then for every position ``(h, w)`` in raster order ``μ, σ`` from the 5×5
        window of the ŷ decoded so far (zero-padded by 2, zero where not decoded yet), ``q = round(y − μ)`` and
        ``ŷ = q + μ`` — the operations of CompressAI's ``_decompress_ar`` on the same shapes (one image, all
        channels at once), so ŷ equals the stock decoder's bit for bit. Batched convolutions round differently
        from one-image ones on CPU (measured), hence one image at a time. The last few passes are remembered (by
        value of ``y`` and ``ẑ``; the pass of a result's own ŷ gives that result again)."""
        hit = self._cached(y, z_hat)
        if hit is not None:
            return hit
        net = self.net
        k, p = self.kernel_size, self.padding
        weight, bias = net.context_prediction.weight, net.context_prediction.bias
        batch, m, height, width = y.shape
        y_hat = y.new_zeros((batch, m, height + 2 * p, width + 2 * p))
        scales = y.new_empty((batch, m, height, width))
        means = y.new_empty((batch, m, height, width))
        for i in range(batch):
            psi = net.h_s(z_hat[i : i + 1])
            buf = y_hat[i : i + 1]
            for h in range(height):
                for w in range(width):
                    ctx_p = F.conv2d(buf[:, :, h : h + k, w : w + k], weight, bias=bias)
                    params = net.entropy_parameters(torch.cat((psi[:, :, h : h + 1, w : w + 1], ctx_p), dim=1))
                    s, mu = params.chunk(2, 1)
                    q = torch.round(y[i : i + 1, :, h : h + 1, w : w + 1] - mu)
                    buf[:, :, h + p : h + p + 1, w + p : w + p + 1] = q + mu
                    scales[i : i + 1, :, h : h + 1, w : w + 1] = s
                    means[i : i + 1, :, h : h + 1, w : w + 1] = mu
        out = (y_hat[:, :, p : p + height, p : p + width].contiguous(), scales, means)
        self._remember(y, z_hat, out)
        return out

    def _hard_y(self, y: Tensor, z_tilde: Tensor, psi: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """ŷ, σ, μ of the serial pass; values exact. Where a gradient is wanted (z relaxed while y is hard, as
        in a sequential solver's z stage), it is that of the parallel pass with the context held at ŷ — the
        direct path ``ẑ → ψ → (σ, μ)`` and ``∂ŷ/∂μ = 1`` of ``round(y − μ) + μ``, without the serial chain
        through earlier positions."""
        y_hat, scales, means = self.serial(y, z_tilde.detach())
        if torch.is_grad_enabled() and psi.requires_grad:
            s_tf, m_tf = self.entropy_parameters(psi, y_hat)
            ds, dm = s_tf - s_tf.detach(), m_tf - m_tf.detach()  # zero values, the parallel pass's gradient
            y_hat, scales, means = y_hat + dm, scales + ds, means + dm
        return y_hat, scales, means

    def hard_prior(self, latents: Latents) -> tuple[Tensor, Tensor, float]:
        """Bits of every element of ŷ, its scales and the coder's floor; the scales are the teacher-forced ones of
        the given ŷ — the serial ones up to floating-point summation order."""
        scales, means = self.entropy_parameters(self.hyper_synthesis(latents["z"]), latents["y"])
        bits = -torch.log2(gaussian_likelihood(self.net.gaussian_conditional, latents["y"], scales, means))
        return bits, scales, self.scale_floor

    # ------------------------------------------------------------------ protocol
    def entropy_terms(self, latents: Latents, relax: Relaxations) -> EntropyTerms:
        """The entropy side of the decoder-side evaluation, one relaxation per latent (no ``g_a``/``h_a``/``g_s``).

        ``z`` is relaxed around the bottleneck medians. With hard rounding of ``y`` (a relaxation with
        ``is_hard``) ŷ is the serial pass's (:meth:`serial`): the true discrete rate (paper 003 Eq. 2) and
        reconstruction of what the coder writes. Any other relaxation runs in parallel by teacher forcing: ``y``
        relaxed around ``μ⁰ = EP(h_s(z̃), CP(y))`` (Eq. 4–5 for SGA), then ``(σ, μ) = EP(h_s(z̃), CP(ỹ))`` and
        the rate of ỹ under them (see the module's documentation for the approximation)."""
        y, z = latents["y"], latents["z"]
        z_tilde = relax["z"](z, self.z_offset(z))
        psi = self.hyper_synthesis(z_tilde)
        relax_y = relax["y"]
        if getattr(relax_y, "is_hard", False):
            y_tilde, scales, means = self._hard_y(y, z_tilde, psi)
        else:
            _, offset = self.entropy_parameters(psi, y)
            y_tilde = relax_y(y, offset)
            scales, means = self.entropy_parameters(psi, y_tilde)
        return EntropyTerms(y_tilde, z_tilde, gaussian_likelihood(self.net.gaussian_conditional, y_tilde, scales, means),
                            scales)

    @torch.no_grad()
    def quantize(self, latents: Latents) -> Latents:
        """The hard latents the coder writes and the stock decoder rebuilds: ``ẑ = round(z − median) + median``,
        then ŷ by the serial pass (:meth:`serial`)."""
        z_hat = hard_round(latents["z"], self.z_offset(latents["z"]))
        y_hat, _, _ = self.serial(latents["y"], z_hat)
        return Latents({"y": y_hat, "z": z_hat})

    @torch.no_grad()
    def compress(self, latents: Latents) -> CodedLatents:
        """Entropy-code latents with CompressAI's own routines: ``z`` by the entropy bottleneck, then ``y`` by
        ``net._compress_ar`` (one image at a time, as ``net.compress`` does) with the entropy parameters of the
        *decoded* ẑ. Streams ``y`` then ``z`` (CompressAI's order); decodable by the stock
        ``net.decompress([streams["y"], streams["z"]], z_shape)``.

        Given :meth:`quantize`'s ŷ, the coder's ``round(ŷ − μ)`` gives back exactly its integers (ŷ − μ lies
        within rounding error of them), so the file holds the ŷ that ``quantize`` reported; given a continuous
        ``y`` it codes what the stock ``net.compress`` codes for that ``y``."""
        net = self.net
        y, z = latents["y"], latents["z"]
        if tuple(y.shape[-2:]) != (4 * z.shape[-2], 4 * z.shape[-1]):
            raise ValueError(f"y of {tuple(y.shape[-2:])} positions does not match z of {tuple(z.shape[-2:])} "
                             "(CompressAI's context models need 4 positions of y per position of z)")
        z_strings = net.entropy_bottleneck.compress(z)
        z_hat = net.entropy_bottleneck.decompress(z_strings, z.shape[-2:])
        psi = net.h_s(z_hat)
        k, p = self.kernel_size, self.padding
        height, width = y.shape[-2:]
        y_pad = F.pad(y, (p, p, p, p))
        y_strings = [net._compress_ar(y_pad[i : i + 1], psi[i : i + 1], height, width, k, p) for i in range(y.shape[0])]
        return CodedLatents(
            streams={"y": list(y_strings), "z": list(z_strings)},
            shapes={"y": tuple(int(s) for s in y.shape[1:]), "z": tuple(int(s) for s in z.shape[1:])},
        )

    @torch.no_grad()
    def decompress(self, coded: CodedLatents) -> Latents:
        """Decode the ``y`` and ``z`` streams to the hard latents (ŷ, ẑ): the stock ``net.decompress`` up to
        ``g_s`` (CompressAI's ``_decompress_ar``) in the network's dtype, one image at a time (``h_s`` included:
        each item is what the stock decoder gives for its file alone, and what :meth:`quantize` gives)."""
        net = self.net
        y_strings, z_strings, _, z_shape = self.coded_streams(coded, "a context model")
        if len(y_strings) != len(z_strings):
            raise ValueError(f"{len(y_strings)} strings of y for {len(z_strings)} of z")
        self.check_rans_strings("y", y_strings)
        self.check_rans_strings("z", z_strings)
        z_hat = net.entropy_bottleneck.decompress(z_strings, list(z_shape[-2:]))
        k, p = self.kernel_size, self.padding
        height, width = 4 * z_hat.shape[-2], 4 * z_hat.shape[-1]
        y_hat = torch.zeros((z_hat.shape[0], net.M, height + 2 * p, width + 2 * p), device=z_hat.device,
                            dtype=z_hat.dtype)
        for i, y_string in enumerate(y_strings):  # h_s per image too: each item as the file alone decodes
            net._decompress_ar(y_string, y_hat[i : i + 1], net.h_s(z_hat[i : i + 1]), height, width, k, p)
        return Latents({"y": y_hat[:, :, p : p + height, p : p + width].contiguous(), "z": z_hat})


__all__ = ["ContextAdapter"]
