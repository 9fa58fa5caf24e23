"""Building blocks of P-frame codecs: the bilinear backward warp, a latent with its own mean-scale hyperprior,
and the coding half of a P-frame codec whose two latents each have one (:class:`HyperpriorPFrame`)."""

from __future__ import annotations

import os
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...core.types import Relaxation, bits_from_likelihoods
from ...relax.rounding import hard, hard_round, rate_value
from ..entropy import bottleneck_likelihood, check_symbols, crop_to, fewest_bits, gaussian_likelihood, scale_indexes


def warp(ref: Tensor, flow: Tensor) -> Tensor:
    """Bilinear backward warp: ``out[p] = ref[p + flow[p]]`` (flow in pixels, channel 0 = x, 1 = y).

    Sampling positions outside the frame take the nearest border pixel. ``grid_sample`` is used with
    ``align_corners=True``, so pixel ``j`` sits at normalized coordinate ``2j/(W−1) − 1``: zero flow is
    the identity and an integer flow an exact shift (up to the floating-point round trip of the
    normalization, ~1 ulp). Differentiable in ``ref`` and in ``flow``.
    """
    b, _, h, w = ref.shape
    if flow.shape != (b, 2, h, w):
        raise ValueError(f"flow must be {(b, 2, h, w)} for a reference of shape {tuple(ref.shape)}, got {tuple(flow.shape)}")
    ys = torch.arange(h, dtype=flow.dtype, device=flow.device).view(1, h, 1)
    xs = torch.arange(w, dtype=flow.dtype, device=flow.device).view(1, 1, w)
    gx = (xs + flow[:, 0]) * (2.0 / max(w - 1, 1)) - 1.0
    gy = (ys + flow[:, 1]) * (2.0 / max(h - 1, 1)) - 1.0
    grid = torch.stack([gx, gy], dim=-1)
    # A NaN position never reaches grid_sample: PyTorch's vectorized CPU kernel turns it into an index outside the
    # reference and, with border padding (no bounds check there), its backward writes out of bounds and crashes
    # the process (pytorch/pytorch#19826). Such a pixel (a diverged optimization) is NaN in the output instead.
    nan = torch.isnan(grid).any(-1, keepdim=True)
    out = F.grid_sample(ref, grid.masked_fill(nan, 0.0), mode="bilinear", padding_mode="border", align_corners=True)
    return out.masked_fill(nan.permute(0, 3, 1, 2), float("nan"))




# --------------------------------------------------------------------- one latent + its hyperprior
class MeanScaleLatent(nn.Module):
    """A latent ``v`` with a mean-scale hyperprior ``z`` (the latent codec of Minnen et al. 2018's
    ``mbt2018-mean``, at a size of our choosing). Wraps the only private CompressAI calls of this module
    (the likelihoods of the entropy bottleneck and of the Gaussian conditional)."""

    def __init__(self, channels: int, hyper_channels: int):
        super().__init__()
        from compressai.entropy_models import EntropyBottleneck, GaussianConditional
        from compressai.layers import conv3x3
        from compressai.models.utils import conv, deconv

        c, n = channels, hyper_channels
        self.channels, self.hyper_channels = c, n
        self.h_a = nn.Sequential(conv3x3(c, n), nn.LeakyReLU(inplace=True), conv(n, n), nn.LeakyReLU(inplace=True), conv(n, n))
        self.h_s = nn.Sequential(
            deconv(n, n), nn.LeakyReLU(inplace=True), deconv(n, n * 3 // 2), nn.LeakyReLU(inplace=True),
            conv3x3(n * 3 // 2, 2 * c),
        )
        self.entropy_bottleneck = EntropyBottleneck(n)
        self.gaussian_conditional = GaussianConditional(None)

    def hyper_analysis(self, v: Tensor) -> Tensor:
        """``z = h_a(v)``: the amortized initializer of the hyper-latent."""
        return self.h_a(v)

    def z_offset(self, z: Tensor) -> Tensor:
        med = self.entropy_bottleneck.quantiles[:, 0, 1]
        return med.detach().to(z.dtype).reshape(1, -1, 1, 1)

    def prior(self, z_tilde: Tensor, size: tuple[int, int] | torch.Size | None = None) -> tuple[Tensor, Tensor]:
        """Scales and means of ``p(v | z̃)``, cropped to ``v``'s spatial ``size`` (:func:`crop_to`)."""
        scales, means = crop_to(self.h_s(z_tilde), size).chunk(2, 1)
        return scales, means

    def z_bits(self, z_tilde: Tensor) -> Tensor:
        return bits_from_likelihoods(bottleneck_likelihood(self.entropy_bottleneck, z_tilde))

    def v_bits(self, v_tilde: Tensor, scales: Tensor, means: Tensor) -> Tensor:
        return bits_from_likelihoods(gaussian_likelihood(self.gaussian_conditional, v_tilde, scales, means))

    def v_bits_map(self, v: Tensor, z: Tensor) -> Tensor:
        """Estimated bits of the hard latent ``v`` at each position (``B×H×W``, summed over channels) given its
        hard hyper-latent ``z``."""
        scales, means = self.prior(z, v.shape[-2:])
        lik = gaussian_likelihood(self.gaussian_conditional, v, scales, means)
        return -torch.log2(lik).sum(1)

    def evaluate(self, v: Tensor, z: Tensor, relax_v: Relaxation, relax_z: Relaxation) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """``(ṽ, z̃, bits_v, bits_z)``: ``z`` relaxed around the bottleneck medians, ``v`` around ``μ(z̃)``; each rate
        taken at its relaxation's rate value (:func:`rdopt.relax.rounding.rate_value`: the noisy value for mixed
        quantization, else the relaxed one)."""
        z_offset = self.z_offset(z)
        z_tilde = relax_z(z, z_offset)
        scales, means = self.prior(z_tilde, v.shape[-2:])
        v_tilde = relax_v(v, means)
        return (v_tilde, z_tilde, self.v_bits(rate_value(relax_v, v, means, v_tilde), scales, means),
                self.z_bits(rate_value(relax_z, z, z_offset, z_tilde)))

    @torch.no_grad()
    def quantize(self, v: Tensor, z: Tensor) -> tuple[Tensor, Tensor]:
        z_hat = hard_round(z, self.z_offset(z))
        _, means = self.prior(z_hat, v.shape[-2:])
        return hard_round(v, means), z_hat

    def _indexes(self, scales: Tensor) -> Tensor:
        return scale_indexes(self.gaussian_conditional, scales)

    @torch.no_grad()
    def offsets(self, v: Tensor, z: Tensor) -> Tensor:
        """The value each position of the hard latent ``v`` is rounded around (its mean) given its hyper-latent."""
        return self.prior(hard_round(z, self.z_offset(z)), v.shape[-2:])[1]

    @torch.no_grad()
    def at_mode(self, v: Tensor, z: Tensor, positions: Tensor) -> Tensor:
        """The hard latent ``v`` with the ``positions`` (a boolean mask of its shape, or one that broadcasts to it) at
        their mode, symbol 0 — the least their prior allows."""
        return torch.where(positions, self.offsets(v, z), v)

    @torch.no_grad()
    def compress(self, v: Tensor, z: Tensor) -> tuple[list[bytes], list[bytes]]:
        """rANS strings of ``round(z − med)`` and of ``round(v − μ(ẑ))``, the prior taken from the
        *decoded* ``ẑ`` as the decoder will."""
        z_strings, z_hat = self._code_z(z)
        scales, means = self.prior(z_hat, v.shape[-2:])
        check_symbols(torch.round(v - means))
        v_strings = self.gaussian_conditional.compress(v, self._indexes(scales), means=means)
        return list(v_strings), z_strings

    def _code_z(self, z: Tensor) -> tuple[list[bytes], Tensor]:
        """The rANS strings of ``round(z − med)`` and the ẑ the decoder will decode from them."""
        eb = self.entropy_bottleneck
        check_symbols(torch.round(z - self.z_offset(z)))
        z_strings = eb.compress(z)
        return list(z_strings), eb.decompress(z_strings, z.shape[-2:]).to(z.dtype)

    @torch.no_grad()
    def decompress(self, v_strings: list[bytes], z_strings: list[bytes], z_shape: tuple[int, int],
                   dtype: torch.dtype = torch.float32, v_shape: tuple[int, int] | None = None) -> tuple[Tensor, Tensor]:
        """``(v̂, ẑ)`` from their strings; ``v_shape``: ``v``'s spatial size (default ``4×`` ``z_shape``)."""
        eb, gc = self.entropy_bottleneck, self.gaussian_conditional
        z_hat = eb.decompress(z_strings, list(z_shape)).to(dtype)
        scales, means = self.prior(z_hat, v_shape)
        v_hat = gc.decompress(v_strings, self._indexes(scales), dtype, means)
        return v_hat, z_hat

    def update(self, scale_table: Tensor | None = None, force: bool = True) -> None:
        """Compute the coder's tables (after training or loading)."""
        if scale_table is None:
            from ..image.loading import fine_scale_table

            scale_table = fine_scale_table()
        self.gaussian_conditional.update_scale_table(scale_table, force=force)
        self.entropy_bottleneck.update(force=force)

    def aux_loss(self) -> Tensor:
        return self.entropy_bottleneck.loss()



class ContextLatent(MeanScaleLatent):
    """A latent ``v`` with a mean-scale hyperprior ``z`` *and* a space-channel context model (channel groups ×
    checkerboard, He et al. 2021/2022; :func:`rdopt.codecs.image.scc.space_channel_y`): the hyperprior's
    ``(σ, μ) = h_s(ẑ)`` plus context terms from the groups and checkerboard half decoded before, born at zero — a
    :class:`MeanScaleLatent` grown into one codes exactly as before until training moves them.

    Evaluation follows the decoder's order pass after pass (:func:`rdopt.codecs.image.parallel.code_y`); the coder
    writes **one** rANS string per item for all ten passes (:func:`rdopt.codecs.image.parallel.encode_stream`), so
    the context costs no stream overhead beyond the plain hyperprior's.

    As with every learned entropy model, the decoder must compute the scales and means the encoder computed, to the
    bit: the next passes' means depend on the values decoded before, so a file is decoded reliably on the kind of
    device (and floating-point kernels) it was encoded on. Decoding verifies the string (the symbols decoded must
    encode back to it), so such a mismatch almost always shows as an error rather than a wrong picture.
    """

    def __init__(self, channels: int, hyper_channels: int, groups: list[int] | None = None, hidden: int = 128,
                 channel_hidden: int = 64):
        super().__init__(channels, hyper_channels)
        from ..image.scc import space_channel_y

        self.context = space_channel_y(channels, groups, hidden, channel_hidden,
                                       gaussian_conditional=self.gaussian_conditional)

    def side(self, z_tilde: Tensor, size: tuple[int, int] | torch.Size | None) -> Tensor:
        """``ψ = h_s(z̃)`` cropped to ``v``'s size: every channel's hyperprior scale, then its mean."""
        return crop_to(self.h_s(z_tilde), size)

    def _code(self, v: Tensor, z_tilde: Tensor, relax_v: Relaxation) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        from ..image.parallel import code_y

        return code_y(self.context, v, self.side(z_tilde, v.shape[-2:]), relax_v)

    def evaluate(self, v: Tensor, z: Tensor, relax_v: Relaxation, relax_z: Relaxation) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        z_offset = self.z_offset(z)
        z_tilde = relax_z(z, z_offset)
        v_tilde, _, _, lik = self._code(v, z_tilde, relax_v)
        return v_tilde, z_tilde, bits_from_likelihoods(lik), self.z_bits(rate_value(relax_z, z, z_offset, z_tilde))

    def _hard(self, v: Tensor, z_hat: Tensor, part: int) -> Tensor:
        """One of ``(ŷ, σ, μ, likelihoods)`` of the hard evaluation, item by item as the coder codes them (a
        convolution's floating-point sums may differ with the batch size, and a mean that moves by an ulp may flip a
        rounding)."""
        return torch.cat([self._code(v[i : i + 1], z_hat[i : i + 1], hard())[part] for i in range(v.shape[0])])

    def v_bits_map(self, v: Tensor, z: Tensor) -> Tensor:
        return -torch.log2(self._hard(v, z, 3)).sum(1)

    @torch.no_grad()
    def offsets(self, v: Tensor, z: Tensor) -> Tensor:
        return self._hard(v, hard_round(z, self.z_offset(z)), 2)

    @torch.no_grad()
    def at_mode(self, v: Tensor, z: Tensor, positions: Tensor) -> Tensor:
        """Pass after pass in the decoder's order: the ``positions`` at the mean their context gives them (symbol 0),
        the others rounded around theirs — a position's mean moves when positions decoded before it change."""
        from ..image.parallel import group_parts, walk

        z_hat = hard_round(z, self.z_offset(z))
        positions = positions.expand_as(v)
        out = []
        for i in range(v.shape[0]):
            parts, where = group_parts(self.context, v[i : i + 1]), group_parts(self.context, positions[i : i + 1])

            def visit(k, mask, scales, means):
                m = means[mask]
                values = torch.where(where[k][mask], m, hard_round(parts[k][mask], m))
                return values, values

            out.append(walk(self.context, self.side(z_hat[i : i + 1], v.shape[-2:]), (1,) + tuple(v.shape[1:]), visit)[0])
        return torch.cat(out)

    def update(self, scale_table: Tensor | None = None, force: bool = True) -> None:
        from ..image.parallel import leaf_coders

        if any(gc is not self.gaussian_conditional for gc in leaf_coders(self.context)):
            raise RuntimeError("the context model's groups must code with the latent's own Gaussian conditional")
        super().update(scale_table, force)

    @torch.no_grad()
    def quantize(self, v: Tensor, z: Tensor) -> tuple[Tensor, Tensor]:
        """``(ŷ, ẑ)`` as the coder writes them."""
        z_hat = hard_round(z, self.z_offset(z))
        return self._hard(v, z_hat, 0), z_hat

    @torch.no_grad()
    def compress(self, v: Tensor, z: Tensor) -> tuple[list[bytes], list[bytes]]:
        """rANS strings of ``round(z − med)`` and, per item, one string of every pass of ``v`` given the *decoded* ẑ."""
        from ..image.parallel import encode_stream

        z_strings, z_hat = self._code_z(z)
        v_strings = [encode_stream(self.context, v[i : i + 1], self.side(z_hat[i : i + 1], v.shape[-2:]))[0]
                     for i in range(v.shape[0])]
        return v_strings, z_strings

    @torch.no_grad()
    def decompress(self, v_strings: list[bytes], z_strings: list[bytes], z_shape: tuple[int, int],
                   dtype: torch.dtype = torch.float32, v_shape: tuple[int, int] | None = None) -> tuple[Tensor, Tensor]:
        from ..image.parallel import decode_stream

        z_hat = self.entropy_bottleneck.decompress(z_strings, list(z_shape)).to(dtype)
        h, w = v_shape if v_shape is not None else (4 * z_shape[0], 4 * z_shape[1])
        v_hat = torch.cat([decode_stream(self.context, s, self.side(z_hat[i : i + 1], (h, w)), (1, self.channels, h, w))
                           for i, s in enumerate(v_strings)])
        return v_hat, z_hat


class HyperpriorPFrame(nn.Module):
    """The coding half of a P-frame codec whose two latents each have a mean-scale hyperprior
    (:class:`MeanScaleLatent` ``motion_latent`` and ``residual_latent``): hyper-analysis, rounding, rANS coding
    and the coders' bounds of the :class:`rdopt.codecs.video.pframe.PFrameCodec` protocol, by base name.
    Subclasses give ``names``, the two latent modules and the four inference / evaluation methods."""

    names: tuple[str, str, str, str] = ("w", "z_w", "y", "z_y")
    pad_multiple = 64
    crops_priors = True
    """Each hyper-synthesis output is cropped to its latent (:func:`rdopt.codecs.entropy.crop_to`): frames need no
    padding beyond :attr:`pad_multiple`, which a :class:`rdopt.codecs.video.gop.VideoCodec` may then use below the
    I-frame codec's 64."""

    def _pairs(self) -> tuple[tuple[str, str, "MeanScaleLatent"], tuple[str, str, "MeanScaleLatent"]]:
        m, mh, r, rh = self.names
        return (m, mh, self.motion_latent), (r, rh, self.residual_latent)

    def hyper_analysis(self, name: str, v: Tensor) -> Tensor:
        """The amortized hyper-latent ``name`` (a base name) of its latent ``v``."""
        for _, h, lat in self._pairs():
            if h == name:
                return lat.hyper_analysis(v)
        raise KeyError(f"{name!r} is not a hyper-latent of {type(self).__name__} ({self.names[1]}, {self.names[3]})")

    def _motion_pair(self, v: Tensor, h: Tensor, relax: Mapping[str, Relaxation]):
        return self.motion_latent.evaluate(v, h, relax[self.names[0]], relax[self.names[1]])

    def _residual_pair(self, v: Tensor, h: Tensor, relax: Mapping[str, Relaxation]):
        return self.residual_latent.evaluate(v, h, relax[self.names[2]], relax[self.names[3]])

    @torch.no_grad()
    def quantize(self, latents: Mapping[str, Tensor]) -> dict[str, Tensor]:
        out = {}
        for v, h, lat in self._pairs():
            out[v], out[h] = lat.quantize(latents[v], latents[h])
        return out

    @torch.no_grad()
    def compress(self, latents: Mapping[str, Tensor]) -> dict[str, list[bytes]]:
        out = {}
        for v, h, lat in self._pairs():
            out[v], out[h] = lat.compress(latents[v], latents[h])
        return out

    @torch.no_grad()
    def decompress(self, strings: Mapping[str, list[bytes]], shapes: Mapping[str, tuple[int, ...]],
                   dtype: torch.dtype) -> dict[str, Tensor]:
        """The latents whose strings are given: both pairs, or the motion pair alone (a skipped frame)."""
        out = {}
        for v, h, lat in self._pairs():
            if v in strings or h in strings or v == self.names[0]:
                out[v], out[h] = lat.decompress(strings[v], strings[h], tuple(shapes[h][-2:]), dtype,
                                                tuple(shapes[v][-2:]) if v in shapes else None)
        return out

    @torch.no_grad()
    def residual_at_mode(self, v: Tensor, h: Tensor, positions: Tensor) -> Tensor:
        """The hard residual latent ``v`` (hyper-latent ``h``) with ``positions`` at their mode (symbol 0, the least
        their prior allows): what skip mode codes under a skipped block."""
        return self.residual_latent.at_mode(v, h, positions)

    @torch.no_grad()
    def residual_position_bits(self, v: Tensor, h: Tensor) -> Tensor:
        """Estimated bits of the hard residual latent ``v`` at each position (``B×H×W``, summed over channels)
        given its hard hyper-latent ``h``: what skip mode's per-block decision weighs."""
        return self.residual_latent.v_bits_map(v, h)

    def min_bits_per_symbol(self) -> dict[str, float]:
        out = {}
        for v, h, lat in self._pairs():
            out[v], out[h] = fewest_bits(lat.gaussian_conditional), fewest_bits(lat.entropy_bottleneck)
        return out

    def update(self, scale_table: Tensor | None = None, force: bool = True) -> None:
        """Compute the entropy coders' tables (after training or after changing weights)."""
        for _, _, lat in self._pairs():
            lat.update(scale_table, force)

    def aux_loss(self) -> Tensor:
        """CompressAI's auxiliary loss of the two entropy bottlenecks (fits their quantiles)."""
        return self.motion_latent.aux_loss() + self.residual_latent.aux_loss()

    def check_size(self, x: Tensor) -> None:
        h, w = x.shape[-2:]
        if h % self.pad_multiple or w % self.pad_multiple:
            raise ValueError(f"frame size {h}×{w} is not a multiple of {self.pad_multiple}: pad it first")


def load_state_into(module: nn.Module, state: Mapping[str, Tensor], strict: bool = True):
    """Load a (float16 or float32) state dict, first resizing the entropy coders' table buffers to the saved
    sizes (they change size with the tables). Returns ``load_state_dict``'s missing and unexpected keys."""
    for name, buf in module.named_buffers():
        if name in state and state[name].shape != buf.shape:
            owner = module.get_submodule(name.rsplit(".", 1)[0]) if "." in name else module
            setattr(owner, name.rsplit(".", 1)[1], torch.empty_like(state[name]))
    return module.load_state_dict({k: (v.float() if v.is_floating_point() else v) for k, v in state.items()},
                                  strict=strict)


def save_shipped(module: nn.Module, path: str | os.PathLike, config: Mapping, meta: Mapping | None = None,
                 levels: int = 256) -> None:
    """Finalize a P-frame codec for shipping: weights rounded to float16, coder tables computed *from the
    rounded weights* with a fine scale table, saved as ``{"state_dict", "config", "meta"}`` (tensors, numbers
    and strings only; loaded with ``weights_only=True``)."""
    from pathlib import Path

    from ..image.loading import fine_scale_table

    module.cpu()
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(p.half().float())
    module.update(scale_table=fine_scale_table(levels), force=True)
    params = {name for name, _ in module.named_parameters()}
    state = {k: (v.half() if k in params else v) for k, v in module.state_dict().items()}
    tmp = Path(str(path) + ".tmp")
    torch.save({"state_dict": state, "config": dict(config), "meta": dict(meta or {})}, tmp)
    os.replace(tmp, path)


__all__ = ["warp", "MeanScaleLatent", "ContextLatent", "HyperpriorPFrame", "load_state_into", "save_shipped"]
