"""Parallel-decodable context models through :class:`rdopt.core.types.LatentCodec`: checkerboard spatial contexts
(He et al. 2021) and channel groups (Minnen & Singh 2020; He et al. 2022, ELIC), as CompressAI builds them from its
latent codecs, and rdopt's embedded model of that kind (``rdopt-scc``).

A network of this kind is a CompressAI ``SimpleVAECompressionModel`` whose ``latent_codec`` is a
``HyperpriorLatentCodec``: ``z`` (the ``hyper`` codec: ``h_a``, entropy bottleneck, ``h_s``) gives side parameters
``ψ = h_s(ẑ)``; the ``y`` codec is one of

* ``GaussianConditionalLatentCodec`` — ``(σ, μ) = EP(ψ)``;
* ``CheckerboardLatentCodec`` — two passes over a checkerboard of positions: the *anchors* from ``EP(0, ψ)``, the
  other half from ``EP(CP(ŷ_anchors), ψ)`` with ``CP`` a 5×5 convolution that sees anchors only;
* ``ChannelGroupsLatentCodec`` — channel groups coded one after the other, group ``k`` with the side parameters
  ``[CC_k(ŷ_<k), ψ]`` (``CC_k`` a convolution over the groups decoded before), each group by a codec of the two
  kinds above.

CompressAI's ``cheng2020-anchor-checkerboard``, ``elic2022-official`` and ``elic2022-chandelier`` are such networks.
Their decoders are parallel: two passes per group, each a convolution over the whole latent.

**Relaxed evaluation in decoding order** (paper 003 §3.1–3.2 for the relaxation): :meth:`ParallelContextAdapter.evaluate`
follows the decoder's order exactly — group after group, anchors then non-anchors — and where the decoder takes
``ŷ = round(y − μ) + μ`` it takes ``ỹ = relax(y, μ)`` (SGA, paper 003 Eq. 4–5, or an ablation), with μ computed from
the *relaxed* values decoded before (for mixed quantization, :func:`rdopt.relax.rounding.mixed`, the decoder's
values are the straight-through rounded ones and the rate is measured at noisy ones). Unlike a raster-scan context (:mod:`.context`) nothing is teacher-forced: with
hard rounding this evaluation is the coder's (the true rate of paper 003 Eq. 2; the decoder's ŷ up to the
floating-point summation order of the means, ~10⁻⁷ — the integers coded are the same, and the pixels an encode reports
are those of decoding its file), and as the relaxation's temperature goes to 0 the relaxed objective tends to the
true one.

The entropy-parameter networks must be pointwise (1×1 convolutions): CompressAI's checkerboard coder runs them on
the two half-lattices packed side by side, the evaluation on the whole lattice; pointwise layers give the same
values both ways (checked when an adapter is built).

Streams: ``z`` is the entropy bottleneck's string; ``y`` holds the strings of every pass (2 per checkerboard group,
1 per plain group, in coding order) joined by :func:`rdopt.coding.container.join_strings`. Split again, they are
exactly what the stock ``net.decompress([*y_strings, z_strings], shape)`` reads.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from ...coding.container import join_strings, split_strings
from ...core.types import CodedLatents, Latents, Relaxations
from ...relax.rounding import hard_round, rate_value
from ..entropy import MAX_SYMBOL, check_symbols, fast_indexes, fewest_bits, gaussian_likelihood, scale_indexes
from .base import CompressAIAdapter, EntropyTerms


def _kinds():
    from compressai.latent_codecs import (ChannelGroupsLatentCodec, CheckerboardLatentCodec,
                                          GaussianConditionalLatentCodec, HyperLatentCodec, HyperpriorLatentCodec)

    return ChannelGroupsLatentCodec, CheckerboardLatentCodec, GaussianConditionalLatentCodec, HyperLatentCodec, \
        HyperpriorLatentCodec


def _pointwise(module: nn.Module) -> bool:
    """Whether every convolution of a module is 1×1 with stride 1 and no padding (a per-position network)."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d) and (tuple(m.kernel_size) != (1, 1) or tuple(m.stride) != (1, 1)
                                         or tuple(m.padding) != (0, 0)):
            return False
        if isinstance(m, (nn.ConvTranspose2d, nn.Upsample, nn.PixelShuffle)):
            return False
    return True


def anchor_mask(height: int, width: int, parity: str, like: Tensor) -> Tensor:
    """``1×1×H×W`` boolean mask of a checkerboard's anchors: ``(h + w)`` even for parity ``even`` (CompressAI's
    default), odd otherwise."""
    h = torch.arange(height, device=like.device).view(-1, 1)
    w = torch.arange(width, device=like.device).view(1, -1)
    even = (h + w) % 2 == 0
    return (even if parity == "even" else ~even).view(1, 1, height, width)


# ---------------------------------------------------------------------------- evaluation in decoding order
def _params(codec, params: Tensor, like: Tensor) -> tuple[Tensor, Tensor]:
    scales, means = codec._chunk(codec.entropy_parameters(params))
    return scales, (means if means is not None else torch.zeros_like(like))


def walk(codec, side: Tensor, shape: tuple[int, int, int, int], visit) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Every pass of a CompressAI ``y`` latent codec (channel groups, checkerboard or plain Gaussian, nested as
    CompressAI nests them) in the decoder's order, given its side parameters ``side`` (e.g. ``ψ = h_s(z̃)``) and
    ``y``'s ``shape``. Each pass computes its positions' scales and means from the values of the passes before it
    and hands them to ``visit(group, mask, scales, means) → (values, rate_values)``: ``mask`` the pass's positions
    (boolean, the group's shape), ``scales``/``means`` over the whole group, the answers 1-D over ``mask`` in
    C order. Returns ``(ỹ, σ, μ, likelihoods of the rate values)`` over all of ``y``.

    The relaxed evaluation (:func:`code_y`) and the one-stream coder (:func:`encode_stream`, :func:`decode_stream`)
    are this walk with different ``visit``s, so the coder computes every mean and scale exactly as the evaluation
    does."""
    groups_kind, ckbd_kind, _, _, _ = _kinds()
    b, _, h, w = shape
    if isinstance(codec, groups_kind):
        decoded: list[Tensor] = []
        outs = []
        for k, g in enumerate(codec.groups):
            params = codec._get_ctx_params(k, side, decoded)
            sub = codec.latent_codec[f"y{k}"]
            outs.append(_walk_leaf(sub, params, (b, g, h, w), lambda *a, k=k: visit(k, *a)))
            decoded.append(outs[-1][0])
        return tuple(torch.cat([o[i] for o in outs], dim=1) for i in range(4))  # type: ignore[return-value]
    return _walk_leaf(codec, side, tuple(shape), lambda *a: visit(0, *a))


def _walk_leaf(codec, side: Tensor, shape: tuple[int, ...], visit) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """One checkerboard codec's two passes (anchors from ``EP(0, ψ)``, the rest from ``EP(CP(ỹ_anchors), ψ)``) or a
    plain Gaussian codec's one pass."""
    _, ckbd_kind, _, _, _ = _kinds()
    zeros_y = side.new_zeros(shape)
    if not isinstance(codec, ckbd_kind):
        scales, means = _params(codec, side, zeros_y)
        every = torch.ones(shape, dtype=torch.bool, device=side.device)
        values, rate = visit(every, scales, means)
        y_tilde, y_rate = values.reshape(shape), rate.reshape(shape)
        return y_tilde, scales, means, gaussian_likelihood(codec.gaussian_conditional, y_rate, scales, means)
    inner = codec.latent_codec["y"]
    cp = codec.context_prediction
    b, c, h, w = shape
    anchors = anchor_mask(h, w, codec.anchor_parity, side).expand(b, c, h, w)
    rest = ~anchors
    sa, ma = _params(inner, codec.entropy_parameters(codec.merge(side.new_zeros((b, cp.out_channels, h, w)), side)),
                     zeros_y)
    ya, ra = visit(anchors, sa, ma)
    y_anchors = zeros_y.masked_scatter(anchors, ya)
    ctx = cp._conv_forward(y_anchors, cp.weight * cp.mask, cp.bias)
    sn, mn = _params(inner, codec.entropy_parameters(codec.merge(ctx, side)), zeros_y)
    yn, rn = visit(rest, sn, mn)
    y_tilde = y_anchors.masked_scatter(rest, yn)
    y_rate = zeros_y.masked_scatter(anchors, ra).masked_scatter(rest, rn)
    scales, means = torch.where(anchors, sa, sn), torch.where(anchors, ma, mn)
    return y_tilde, scales, means, gaussian_likelihood(inner.gaussian_conditional, y_rate, scales, means)


def code_y(codec, y: Tensor, side: Tensor, relax_y) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``(ỹ, σ, μ, likelihoods)`` of a CompressAI ``y`` latent codec given its side parameters ``side``, pass after
    pass in the decoder's order (:func:`walk`), each pass relaxed by ``relax_y`` around the means computed from the
    relaxed values before it (module docstring); each value is relaxed once, in its own pass, and its rate taken at
    the relaxation's rate value (:func:`rdopt.relax.rounding.rate_value`: the noisy value for mixed quantization).
    With hard rounding, the coder's ŷ and its likelihoods."""
    parts = group_parts(codec, y)

    def visit(k, mask, scales, means):
        v, m = parts[k][mask], means[mask]
        relaxed = relax_y(v, m)
        return relaxed, rate_value(relax_y, v, m, relaxed)

    return walk(codec, side, tuple(y.shape), visit)


def group_parts(codec, t: Tensor) -> tuple[Tensor, ...]:
    """A tensor of ``y``'s shape split into the codec's channel groups, as :func:`walk` numbers them (one part for a
    codec without groups)."""
    groups_kind, _, _, _, _ = _kinds()
    return torch.split(t, codec.groups, dim=1) if isinstance(codec, groups_kind) else (t,)


def _coder_tables(gc) -> tuple[list, list, list]:
    """A Gaussian conditional's CDF rows (each cut to its length: the coder reads no further, and handing it the
    padded table costs 5× the time of each call), their lengths and offsets, as CompressAI's coder takes them."""
    lengths = gc._cdf_length.reshape(-1).int().tolist()
    return ([row[:n] for row, n in zip(gc._quantized_cdf.tolist(), lengths)], lengths,
            gc._offset.reshape(-1).int().tolist())


def leaf_coders(codec) -> list:
    """The Gaussian conditional of each group (one entry for a codec without groups)."""
    groups_kind, ckbd_kind, _, _, _ = _kinds()
    leaves = [codec.latent_codec[f"y{k}"] for k in range(len(codec.groups))] if isinstance(codec, groups_kind) \
        else [codec]
    return [(c.latent_codec["y"] if isinstance(c, ckbd_kind) else c).gaussian_conditional for c in leaves]


def _rans_string(runs: list[tuple[object, list[int], list[int]]], tables: dict) -> bytes:
    """One rANS string of ``(coder, symbols, indexes)`` runs, in order (the decoder reads them in the same order)."""
    from compressai.ans import BufferedRansEncoder

    enc = BufferedRansEncoder()
    for gc, symbols, indexes in runs:
        enc.encode_with_indexes(symbols, indexes, *tables[id(gc)])
    return enc.flush()


def _append_run(runs: list, gc, symbols: list[int], indexes: list[int]) -> None:
    if runs and runs[-1][0] is gc:
        runs[-1][1].extend(symbols)
        runs[-1][2].extend(indexes)
    else:
        runs.append((gc, list(symbols), list(indexes)))


@torch.no_grad()
def encode_stream(codec, y: Tensor, side: Tensor) -> tuple[bytes, Tensor]:
    """One item's ``y`` (``1×M×h×w``) as **one** rANS string holding every pass in the decoder's order (CompressAI's
    ``BufferedRansEncoder``; the stock codec writes one string per pass, each ending in an 8-byte coder state),
    and the ŷ it decodes to: ``round(y − μ) + μ`` pass after pass, μ from the ŷ before. A value that is not finite
    or whose symbol exceeds :data:`rdopt.codecs.entropy.MAX_SYMBOL` is refused (``ValueError``)."""
    if y.shape[0] != 1:
        raise ValueError(f"encode_stream codes one item, got a batch of {y.shape[0]}")
    parts = group_parts(codec, y)
    coders = leaf_coders(codec)
    runs: list = []

    def visit(k, mask, scales, means):
        m = means[mask]
        symbols = torch.round(parts[k][mask] - m)
        check_symbols(symbols)
        _append_run(runs, coders[k], symbols.int().tolist(), scale_indexes(coders[k], scales[mask]).tolist())
        values = symbols + m
        return values, values

    y_hat = walk(codec, side, tuple(y.shape), visit)[0]
    return _rans_string(runs, {id(gc): _coder_tables(gc) for gc in dict.fromkeys(coders)}), y_hat


@torch.no_grad()
def decode_stream(codec, string: bytes, side: Tensor, shape: tuple[int, int, int, int]) -> Tensor:
    """ŷ of one item from the string :func:`encode_stream` wrote (``side`` and ``shape`` as the encoder's).

    The string is untrusted: it must be whole 32-bit words, at least the coder's 8-byte state; CompressAI's decoder
    has no bounds checks, so it reads a copy followed by enough zero bytes that no content makes it read past the
    copy (every escape reads at most 15 four-bit counts per 4 bits read and 4 bytes per count; in zeros every symbol
    reads at most 4 bytes); and the symbols decoded must encode back to exactly the string (rANS is deterministic):
    anything else is a ``ValueError``, never a picture from bytes no encoder wrote."""
    from compressai.ans import RansDecoder

    if shape[0] != 1:
        raise ValueError(f"decode_stream decodes one item, got a shape of {tuple(shape)}")
    if len(string) < 8 or len(string) % 4:
        raise ValueError(f"a one-string latent has {len(string)} bytes; an rANS string is whole 32-bit words, at least "
                         "8 bytes")
    coders = leaf_coders(codec)
    tables = {id(gc): _coder_tables(gc) for gc in dict.fromkeys(coders)}
    symbols_total = int(np.prod(shape))
    pad = 128 * len(string) + 8 * symbols_total + 1024
    dec = RansDecoder()
    dec.set_stream(bytes(string) + bytes(pad))
    runs: list = []

    def visit(k, mask, scales, means):
        gc = coders[k]
        indexes = scale_indexes(gc, scales[mask]).tolist()
        symbols = dec.decode_stream(indexes, *tables[id(gc)])
        if symbols and max(abs(min(symbols)), abs(max(symbols))) >= MAX_SYMBOL:
            raise ValueError("corrupt latent string: a decoded symbol is out of range")
        _append_run(runs, gc, symbols, indexes)
        values = torch.tensor(symbols, dtype=means.dtype, device=means.device) + means[mask]
        return values, values

    y_hat = walk(codec, side, tuple(shape), visit)[0]
    if _rans_string(runs, tables) != bytes(string):
        raise ValueError("corrupt latent string: its symbols do not encode back to it (truncated, padded or altered)")
    return y_hat


class ParallelContextAdapter(CompressAIAdapter):
    """A CompressAI latent-codec network with checkerboard and/or channel-group contexts seen through rdopt's protocol.

    Args:
        net: the network (``net.latent_codec`` a ``HyperpriorLatentCodec`` of the kinds the module describes). Its
            masked convolutions' weights are masked once here — what their ``forward`` does in place anyway — so the
            weight hash stays what it is after any number of encodes.
        model_id, lmbda, quality, family: as for every adapter (:class:`rdopt.codecs.image.base.ImageAdapter`).
    """

    PARAMETER_ROLES = {"g_a.": "y_inference", "g_s.": "y_generative", "latent_codec.hyper.h_a.": "z_inference",
                       "latent_codec.hyper.h_s.": "z_generative",
                       "latent_codec.hyper.entropy_bottleneck.": "z_prior", "latent_codec.y.": "y_prior"}

    def __init__(self, net: nn.Module, model_id: str, lmbda: float, quality: int = 0, family: str | None = None):
        groups_kind, ckbd_kind, gauss_kind, hyper_kind, hyperprior_kind = _kinds()
        lc = getattr(net, "latent_codec", None)
        if not isinstance(lc, hyperprior_kind) or not isinstance(lc.hyper, hyper_kind):
            raise TypeError(f"unsupported model class {type(net).__name__}: need a CompressAI latent-codec model with "
                            "a HyperpriorLatentCodec (hyper: HyperLatentCodec)")
        self._check(lc.y, groups_kind, ckbd_kind, gauss_kind, top=True)
        super().__init__(net, model_id, lmbda, quality, family)
        from compressai.layers import MaskedConv2d

        with torch.no_grad():
            for m in net.modules():
                if isinstance(m, MaskedConv2d):
                    m.weight.mul_(m.mask)

    @staticmethod
    def _check(codec, groups_kind, ckbd_kind, gauss_kind, top: bool) -> None:
        if isinstance(codec, groups_kind) and top:
            for k in range(len(codec.groups)):
                group = codec.latent_codec[f"y{k}"]
                if not isinstance(group, ckbd_kind):  # CompressAI's decoder reads each group's shape as (C, H, W)
                    raise TypeError("the channel groups must each be coded by a CheckerboardLatentCodec")
                ParallelContextAdapter._check(group, groups_kind, ckbd_kind, gauss_kind, False)
            return
        if isinstance(codec, ckbd_kind):
            if not isinstance(codec.latent_codec["y"], gauss_kind):
                raise TypeError("a checkerboard codec must code its values with a GaussianConditionalLatentCodec")
            if not (_pointwise(codec.entropy_parameters) and _pointwise(codec.latent_codec["y"].entropy_parameters)):
                raise TypeError("the checkerboard's entropy parameters must be pointwise (1×1 convolutions)")
            cp = codec.context_prediction
            if (not isinstance(cp, nn.Conv2d) or not hasattr(cp, "mask") or tuple(cp.stride) != (1, 1)
                    or tuple(cp.dilation) != (1, 1) or any(2 * p + 1 != k for p, k in zip(cp.padding, cp.kernel_size))):
                raise TypeError("the checkerboard context must be a masked stride-1 convolution padded to keep the "
                                "size")
            return
        if isinstance(codec, gauss_kind):
            return
        raise TypeError(f"unsupported latent codec {type(codec).__name__} for y: need ChannelGroupsLatentCodec, "
                        "CheckerboardLatentCodec or GaussianConditionalLatentCodec")

    # ------------------------------------------------------------------ structure
    @property
    def hyper(self) -> nn.Module:
        return self.net.latent_codec.hyper

    @property
    def bottleneck(self) -> nn.Module:
        return self.hyper.entropy_bottleneck

    def hyper_analysis(self, y: Tensor) -> Tensor:
        """``z = h_a(y)``: the amortized initializer of ``z`` given ``y``."""
        return self.hyper.h_a(y)

    def hyper_synthesis(self, z_tilde: Tensor) -> Tensor:
        """``ψ = h_s(z̃)``: the side parameters of every position."""
        return self.hyper.h_s(z_tilde)

    def encoder_modules(self) -> list[nn.Module]:
        return [self.net.g_a, self.hyper.h_a]

    def latent_channels(self) -> tuple[int, int]:
        """Channels of ``y`` (what ``h_a``'s first convolution reads) and of ``z`` (the bottleneck's)."""
        first = next(m for m in self.hyper.h_a.modules() if isinstance(m, nn.Conv2d))
        return int(first.in_channels), int(self.bottleneck.channels)

    def coding_passes(self) -> list[tuple[nn.Module, str, int]]:
        """The passes of the decoder in order: (its Gaussian conditional, ``all`` / ``anchor`` / ``non_anchor``, the
        number of channels it codes)."""
        groups_kind, ckbd_kind, _, _, _ = _kinds()
        y = self.net.latent_codec.y
        if isinstance(y, groups_kind):
            codecs = [(y.latent_codec[f"y{k}"], g) for k, g in enumerate(y.groups)]
        else:
            codecs = [(y, self.latent_channels()[0])]
        out = []
        for c, g in codecs:
            if isinstance(c, ckbd_kind):
                gc = c.latent_codec["y"].gaussian_conditional
                out += [(gc, "anchor", g), (gc, "non_anchor", g)]
            else:
                out.append((c.gaussian_conditional, "all", g))
        return out

    @property
    def scale_floor(self) -> float:
        return min(float(gc.lower_bound_scale.bound) for gc, _, _ in self.coding_passes())

    def min_bits_per_symbol(self) -> tuple[float, float]:
        """Fewest bits per symbol of ``y`` and of ``z`` for the plausibility check of a file's streams. ``y``'s
        stream joins one rANS string per pass, each at least 8 bytes (its final state) and at least
        ``n_i·b_i/8 − 4``; so with ``b`` the least ``b_i`` the joined stream holds at least ``n·b/32`` bytes — the
        figure returned for ``y`` is ``b/4`` (each pass is also checked against its own bound, and against the 8 bytes
        every rANS string holds, on decode)."""
        coders = {id(gc): gc for gc, _, _ in self.coding_passes()}.values()
        return (min(fewest_bits(gc) for gc in coders) / 4.0, fewest_bits(self.bottleneck))

    def entropy_terms(self, latents: Latents, relax: Relaxations) -> EntropyTerms:
        """The entropy side of the evaluation, in decoding order (no ``g_a``/``h_a``/``g_s``): ``z`` relaxed around
        the bottleneck medians, ``ψ = h_s(z̃)``, then every pass of ``y`` relaxed around the means the decoder would
        compute from the relaxed values before it (see the module's documentation). With hard rounding this is the
        coder's ŷ and its true rate."""
        y, z = latents["y"], latents["z"]
        z_offset = self.z_offset(z)
        z_tilde = relax["z"](z, z_offset)
        y_tilde, scales, _, lik = code_y(self.net.latent_codec.y, y, self.hyper_synthesis(z_tilde), relax["y"])
        return EntropyTerms(y_tilde, z_tilde, lik, scales, rate_value(relax["z"], z, z_offset, z_tilde))

    def hard_prior(self, latents: Latents) -> tuple[Tensor, Tensor, float]:
        from ...relax.rounding import hard

        _, scales, _, lik = code_y(self.net.latent_codec.y, latents["y"], self.hyper_synthesis(latents["z"]),
                                         hard())
        return -torch.log2(lik), scales, self.scale_floor

    @torch.no_grad()
    def quantize(self, latents: Latents) -> Latents:
        """The hard latents the coder writes: ``ẑ = round(z − median) + median``, then ŷ pass after pass."""
        from ...relax.rounding import hard

        z_hat = hard_round(latents["z"], self.z_offset(latents["z"]))
        y_hat, _, _, _ = code_y(self.net.latent_codec.y, latents["y"], self.hyper_synthesis(z_hat), hard())
        return Latents({"y": y_hat, "z": z_hat})

    # ------------------------------------------------------------------ coding
    @torch.no_grad()
    def compress(self, latents: Latents) -> CodedLatents:
        """Entropy-code latents with CompressAI's own coders: ``z`` by the entropy bottleneck, then ``y`` by the
        network's ``y`` codec given ``ψ = h_s(ẑ)`` of the *decoded* ẑ. Given :meth:`quantize`'s ŷ the coders'
        ``round(ŷ − μ)`` are its integers again."""
        y, z = latents["y"], latents["z"]
        eb = self.bottleneck
        z_strings = eb.compress(z)
        z_hat = eb.decompress(z_strings, z.shape[-2:])
        with fast_indexes(gc for gc, _, _ in self.coding_passes()):
            out = self.net.latent_codec.y.compress(y, self.hyper_synthesis(z_hat))
        passes = out["strings"]
        y_joined = [join_strings([s[i] for s in passes]) for i in range(y.shape[0])]
        return CodedLatents(streams={"y": y_joined, "z": list(z_strings)},
                            shapes={"y": tuple(int(s) for s in y.shape[1:]), "z": tuple(int(s) for s in z.shape[1:])})

    def stock_strings(self, coded: CodedLatents) -> list[list[bytes]]:
        """The strings in the order of the stock ``net.decompress(strings, shape)``: every pass of ``y``, then ``z``
        (each a list over the batch)."""
        n_pass = len(self.coding_passes())
        per_image = [split_strings(s, n_pass) for s in coded.streams["y"]]
        return [[p[i] for p in per_image] for i in range(n_pass)] + [list(coded.streams["z"])]

    def stock_shape(self, height: int, width: int) -> dict:
        """The ``shape`` argument of the stock ``net.decompress`` for latents of ``height×width`` positions."""
        groups_kind, ckbd_kind, _, _, _ = _kinds()
        y = self.net.latent_codec.y

        def one(codec, c):
            return (c, height, width) if isinstance(codec, ckbd_kind) else (height, width)

        if isinstance(y, groups_kind):
            ys = [one(y.latent_codec[f"y{k}"], g) for k, g in enumerate(y.groups)]
        else:
            ys = one(y, self.latent_channels()[0])
        return {"y": ys, "hyper": (height // 4, width // 4)}

    @torch.no_grad()
    def decompress(self, coded: CodedLatents) -> Latents:
        """Decode the ``y`` and ``z`` streams to the hard latents (ŷ, ẑ) with the network's own decoders (every pass
        checked against the fewest bytes its symbols need first)."""
        _, z_strings, (_, hy, wy), z_shape = self.coded_streams(coded, "a context model")
        strings = self.stock_strings(coded)
        self.check_rans_strings("z", z_strings)
        for i, pass_strings in enumerate(strings[:-1]):
            self.check_rans_strings(f"y (pass {i})", pass_strings)
        passes = self.coding_passes()
        fewest = {id(gc): fewest_bits(gc) for gc, _, _ in passes}
        for (gc, kind, g), pass_strings in zip(passes, strings):
            symbols = g * hy * wy // (1 if kind == "all" else 2)
            need = int((symbols * fewest[id(gc)] - 32) // 8)
            for s in pass_strings:
                if len(s) < need:
                    raise ValueError(f"a pass of y has {len(s)} bytes, its {symbols} symbols need at least {need}")
        z_hat = self.bottleneck.decompress(z_strings, list(z_shape[-2:]))
        side = self.hyper_synthesis(z_hat)
        shape = self.stock_shape(hy, wy)["y"]
        with fast_indexes(gc for gc, _, _ in self.coding_passes()):
            y_hat = self.net.latent_codec.y.decompress(strings[:-1], shape, side)["y_hat"]
        return Latents({"y": y_hat.to(z_hat.dtype), "z": z_hat})


__all__ = ["ParallelContextAdapter", "anchor_mask", "code_y", "decode_stream", "encode_stream", "group_parts",
           "leaf_coders", "walk"]
