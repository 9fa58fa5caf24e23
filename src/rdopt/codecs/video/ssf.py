"""CompressAI's ``ssf2020`` video codec (Agustsson et al. 2020, *scale-space flow*) as an rdopt
:class:`rdopt.core.types.LatentCodec`, so the DAG solvers run on a user's own SSF weights.

One :class:`SSFGopCodec` codes a GoP of ``T`` frames (``T`` fixed per instance; evidence ``x``:
``B×T×3×H×W``, ``H`` and ``W`` multiples of 128) the way :class:`compressai.models.video.ScaleSpaceFlow`
does: frame 0 with SSF's image coder, every later frame ``t`` as a P-frame predicted from the
reconstruction of frame ``t−1``. Every coded latent has its own SSF ``Hyperprior`` (a mean-scale
hyperprior whose scale decoder ends in a QReLU), so a frame's latents come in pairs ``(v, hyper of v)``::

    frame 0   x_0 ─img_encoder─▶ y_0 ─hyper_encoder─▶ z_0 ─Q(z−med)─▶ ẑ_0 ─▶ (σ, μ)
                                 └─────────────Q(y−μ)+μ─────────────▶ ŷ_0 ─img_decoder─▶ x̂_0
    frame t   (x_t, x̂_{t−1}) ─motion_encoder─▶ m_t ─▶ mz_t     m̂_t ─motion_decoder─▶ (flow, scale)
              x̄_t = warp(scale-space volume of x̂_{t−1}, flow, scale)
              x_t − x̄_t ─res_encoder─▶ r_t ─▶ rz_t            x̂_t = x̄_t + res_decoder([r̂_t, m̂_t])

Latent names and kinds (``t ≥ 1``)::

    y_0 latent   z_0 hyper   m_t motion   mz_t motion-hyper   r_t residual   rz_t residual-hyper

Inference parents (what SSF's encoders read): ``z_0 ← y_0``; ``m_t ←`` every latent of frames
``0…t−1`` (the encoder reads the *decoded* reference ``x̂_{t−1}``); ``mz_t ← m_t``; ``r_t ←`` the same
as ``m_t`` plus ``m_t, mz_t`` (it reads the decoded prediction ``x̄_t``); ``rz_t ← r_t``. In ``infer``
the decoded values are computed under the caller's relaxations, so sequential solvers differentiate
through the reference.

Rounding is what SSF's own coder does: every hyper-latent around its entropy bottleneck's medians,
every latent around the mean predicted from its (rounded) hyper-latent, ``round(v − μ) + μ``
(``Hyperprior.compress`` / ``quantize_ste`` in CompressAI) — so :meth:`SSFGopCodec.compress` writes,
for amortized latents, the very strings ``ScaleSpaceFlow.compress`` writes (tested), and the hard
:meth:`SSFGopCodec.evaluate` gives the frames ``ScaleSpaceFlow.decompress`` decodes.

The residual decoder reads ``[r̂_t, m̂_t]`` (SSF concatenates the motion latent), and the warp is
computed in float32 whatever the model's dtype (CompressAI's ``warp_volume`` casts to float32).

Memo: within one optimization step a codec graph evaluates every frame's term (and, for the sequential
solvers, the initializers of later latents), each needing the decoded frames before it — ``O(T²)`` frame
decodes per step. ``infer`` and ``evaluate`` take the graph context's ``memo`` (``supports_memo``) and
decode each frame once per step, keyed by the identity and in-place version of the latent tensors and
the identity of their relaxations, so a changed value or relaxation is never served stale.

Weights: :func:`load_ssf` reads a user checkpoint, or CompressAI's zoo file for a quality if it is
already in the torch hub cache. Nothing here downloads.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlparse

import torch
from torch import Tensor, nn

from ...core.types import (CodedLatents, Evaluation, LatentSpec, Latents, Relaxation, Relaxations, bits_from_likelihoods,
                     relax_all)
from ...relax.rounding import hard, hard_round
from ..entropy import bottleneck_likelihood, gaussian_likelihood
from ..image.hyperprior import state_dict_hash
from ..registry import COMPRESSAI_LAMBDAS, ModelUnavailable, read_state_dict

FAMILY = "ssf2020"
QUALITIES = tuple(range(1, 10))
# CompressAI does not ship the λ its ssf2020 weights were trained for: the image models' λ of the same
# quality index (q9: the next doubling) is the default. It is a default only — every solver takes λ per call.
LAMBDAS = {**COMPRESSAI_LAMBDAS, 9: 0.36}
DEFAULT_LAMBDA = COMPRESSAI_LAMBDAS[4]


def frame_latent_names(frame: int) -> tuple[str, ...]:
    """The latent names of one frame, in inference order."""
    if frame == 0:
        return ("y_0", "z_0")
    return (f"m_{frame}", f"mz_{frame}", f"r_{frame}", f"rz_{frame}")


# ------------------------------------------------------------------ one SSF Hyperprior (pair v, z)
def _z_offset(hp, z: Tensor) -> Tensor:
    """The entropy bottleneck's medians (what ``z`` is rounded around), shaped to broadcast over ``z``."""
    med = hp.entropy_bottleneck.quantiles[:, 0, 1]
    return med.detach().to(z.dtype).reshape(1, -1, 1, 1)


def _prior(hp, z_tilde: Tensor) -> tuple[Tensor, Tensor]:
    """Scales (before the Gaussian conditional's floor) and means of ``p(v | z̃)``."""
    return hp.hyper_decoder_scale(z_tilde), hp.hyper_decoder_mean(z_tilde)


def _relax_pair(hp, v: Tensor, z: Tensor, relax_v: Relaxation, relax_z: Relaxation):
    """``(ṽ, z̃, scales, means)``: ``z`` relaxed around the medians, ``v`` around ``μ(z̃)``."""
    z_t = relax_z(z, _z_offset(hp, z))
    scales, means = _prior(hp, z_t)
    return relax_v(v, means), z_t, scales, means


def _pair_bits(hp, v_t: Tensor, z_t: Tensor, scales: Tensor, means: Tensor) -> tuple[Tensor, Tensor]:
    bits_v = bits_from_likelihoods(gaussian_likelihood(hp.gaussian_conditional, v_t, scales, means))
    bits_z = bits_from_likelihoods(bottleneck_likelihood(hp.entropy_bottleneck, z_t))
    return bits_v, bits_z


_HARD = hard()  # the default relaxation (one object: memo keys hold relaxations by identity)


def _IDENTITY(v: Tensor, offset: Tensor) -> Tensor:
    return v


class SSFGopCodec(nn.Module):
    """A GoP of ``frames`` frames coded by a CompressAI ``ScaleSpaceFlow`` network (see the module
    docstring for the latents, their parents and the rounding).

    Args:
        net: the ``ScaleSpaceFlow`` network, with its entropy-coder tables ready (``net.update()``).
        frames: the GoP length ``T`` (frame 0 intra, frames 1…T−1 predicted).
        quality: the zoo quality index (1–9), 0 when unknown.
        lmbda: the λ the weights were trained for (a default only); by default CompressAI's image λ of
            the same quality.
        model_id: the name bitstreams carry (default ``ssf2020-q<quality>``, or ``ssf2020-custom``).
    """

    family = FAMILY
    supports_memo = True  # infer/evaluate take the graph context's memo (decoded frames shared per step)
    pad_multiple = 128  # 4 stride-2 convolutions to the latents, 3 more to the hyper-latents

    def __init__(self, net: nn.Module, frames: int, quality: int = 0, lmbda: float | None = None,
                 model_id: str | None = None):
        super().__init__()
        from compressai.models.video import ScaleSpaceFlow

        if not isinstance(net, ScaleSpaceFlow):
            raise TypeError(f"SSFGopCodec wraps a compressai ScaleSpaceFlow, got {type(net).__name__}")
        if int(frames) < 1:
            raise ValueError(f"a GoP has at least one frame, got {frames}")
        self.net = net
        self.frames = int(frames)
        self.quality = int(quality)
        self.lmbda = float(lmbda if lmbda is not None else LAMBDAS.get(self.quality, DEFAULT_LAMBDA))
        self.model_id = model_id or (f"{FAMILY}-q{self.quality}" if self.quality else f"{FAMILY}-custom")
        self._weight_hash: bytes | None = None
        specs = [LatentSpec("y_0", "latent", (), 0), LatentSpec("z_0", "hyper", ("y_0",), 0)]
        for t in range(1, self.frames):
            earlier = tuple(s.name for s in specs)
            m, mz, r, rz = frame_latent_names(t)
            specs += [
                LatentSpec(m, "motion", earlier, t),
                LatentSpec(mz, "motion-hyper", (m,), t),
                LatentSpec(r, "residual", (*earlier, m, mz), t),
                LatentSpec(rz, "residual-hyper", (r,), t),
            ]
        self._specs = tuple(specs)
        self._by_name = {s.name: s for s in specs}

    # ------------------------------------------------------------------ identity and shapes
    @property
    def latents(self) -> tuple[LatentSpec, ...]:
        return self._specs

    def weight_hash(self) -> bytes:
        """SHA-256 (first 16 bytes) of the network's canonical state dict (as the image adapter's)."""
        if self._weight_hash is None:
            self._weight_hash = state_dict_hash(self.net)
        return self._weight_hash

    @property
    def dtype(self) -> torch.dtype:
        return next(self.net.parameters()).dtype

    def _pairs(self, frame: int) -> tuple[tuple[str, str, nn.Module], ...]:
        """``(latent, its hyper-latent, the SSF Hyperprior coding them)`` of one frame."""
        net = self.net
        if frame == 0:
            return (("y_0", "z_0", net.img_hyperprior),)
        m, mz, r, rz = frame_latent_names(frame)
        return ((m, mz, net.motion_hyperprior), (r, rz, net.res_hyperprior))

    def latent_shapes(self, height: int, width: int) -> dict[str, tuple[int, ...]]:
        """Shapes ``(C, H, W)`` of every latent for padded frames of the given size."""
        net = self.net
        out: dict[str, tuple[int, ...]] = {}
        for t in range(self.frames):
            for (v, z, hp), enc in zip(self._pairs(t), (net.img_encoder,) if t == 0 else (net.motion_encoder,
                                                                                         net.res_encoder)):
                out[v] = (int(enc[-1].out_channels), height // 16, width // 16)
                out[z] = (int(hp.hyper_encoder[-1].out_channels), height // 128, width // 128)
        return out

    def _check_frames(self, x: Tensor, need: int) -> None:
        if x.dim() != 5 or x.shape[2] != 3:
            raise ValueError(f"SSF evidence is B×T×3×H×W, got shape {tuple(x.shape)}")
        if x.shape[1] < need:
            raise ValueError(f"need at least {need} frames, got {x.shape[1]}")
        h, w = x.shape[-2:]
        if h % self.pad_multiple or w % self.pad_multiple:
            raise ValueError(f"frame size {h}×{w} is not a multiple of {self.pad_multiple}: pad it first")

    def _frames_of(self, names) -> int:
        """How many frames a set of latent names covers (it must be those of frames 0…F−1)."""
        have = set(names)
        want: set[str] = set()
        for f in range(self.frames):
            want |= set(frame_latent_names(f))
            if want == have:
                return f + 1
        raise ValueError(f"expected the latents of frames 0…F−1 (a prefix of {[s.name for s in self._specs]}), "
                         f"got {sorted(have)}")

    # ------------------------------------------------------------------ decoder side
    def _predict(self, x_ref: Tensor, m_tilde: Tensor) -> Tensor:
        """The motion-compensated prediction ``x̄`` of a frame from its (relaxed) motion latent."""
        return self.net.forward_prediction(x_ref, self.net.motion_decoder(m_tilde))

    def _prefix(self, frame: int) -> tuple[str, ...]:
        """The latent names of frames ``0…frame``."""
        return tuple(n for f in range(frame + 1) for n in frame_latent_names(f))

    @staticmethod
    def _cached(memo: dict | None, key_parts: tuple, values: Mapping[str, Tensor], relax: Mapping[str, Relaxation],
                names: tuple[str, ...], compute):
        """``compute()``, or its result kept in ``memo`` for the same tensors (identity and in-place
        version) under the same relaxation objects. An entry holds those tensors and relaxations, so
        their ids cannot be reused while the memo lives."""
        if memo is None:
            return compute()
        key = key_parts + tuple((id(values[n]), values[n]._version, id(relax[n])) for n in names)
        hit = memo.get(key)
        if hit is None:
            hit = (compute(), tuple(values[n] for n in names), tuple(relax[n] for n in names))
            memo[key] = hit
        return hit[0]

    def _motion(self, t: int, values: Mapping[str, Tensor], relax: Mapping[str, Relaxation], memo: dict | None):
        """Frame ``t``'s prediction and its motion pair: ``(x̄_t, (m̃_t, mz̃_t, scales, means))``."""
        m, mz = frame_latent_names(t)[:2]

        def compute():
            x_ref = self._frame(t - 1, values, relax, memo)[0]
            pair = _relax_pair(self.net.motion_hyperprior, values[m], values[mz], relax[m], relax[mz])
            return self._predict(x_ref, pair[0]), pair

        return self._cached(memo, ("motion", t), values, relax, self._prefix(t - 1) + (m, mz), compute)

    def _frame(self, t: int, values: Mapping[str, Tensor], relax: Mapping[str, Relaxation], memo: dict | None):
        """Frame ``t`` decoded from the latents of frames ``0…t`` under ``relax`` (synthesis and
        hyper-synthesis only): ``(x̂_t, {latent: (ṽ, z̃, scales, means)})``."""

        def compute():
            net = self.net
            if t == 0:
                pair = _relax_pair(net.img_hyperprior, values["y_0"], values["z_0"], relax["y_0"], relax["z_0"])
                return net.img_decoder(pair[0]), {"y_0": pair}
            m, _, r, rz = frame_latent_names(t)
            x_pred, mpair = self._motion(t, values, relax, memo)
            rpair = _relax_pair(net.res_hyperprior, values[r], values[rz], relax[r], relax[rz])
            return x_pred + net.res_decoder(torch.cat((rpair[0], mpair[0]), dim=1)), {m: mpair, r: rpair}

        return self._cached(memo, ("frame", t), values, relax, self._prefix(t), compute)

    def evaluate(self, latents: Latents, relax: Relaxations, memo: dict | None = None) -> Evaluation:
        """Decoder-side evaluation of the latents of frames ``0…F−1``: per latent its estimated bits
        (−log2 likelihood), ``x_hat`` (``B×F×3×H×W``, not clamped), the relaxed values and the predicted
        scales. Differentiable in every latent (the reference of frame ``t`` is the relaxed ``x̂_{t−1}``).

        ``memo`` (optional, :attr:`rdopt.infer.graph.Context.memo`): decoded frames shared with the other terms
        and initializers of one evaluation context."""
        frames = self._frames_of(latents.names)
        missing = [n for n in latents.names if n not in relax]
        if missing:
            raise KeyError(f"no relaxation given for latents {missing}")
        rates: dict[str, Tensor] = {}
        tilde: dict[str, Tensor] = {}
        scales: dict[str, Tensor] = {}
        memo = {} if memo is None else memo  # within one call every frame is decoded once in any case
        x_hats = []
        for t in range(frames):
            x_hat, pairs = self._frame(t, latents, relax, memo)
            x_hats.append(x_hat)
            for (v, z, hp) in self._pairs(t):
                v_t, z_t, sc, mu = pairs[v]
                rates[v], rates[z] = _pair_bits(hp, v_t, z_t, sc, mu)
                tilde[v], tilde[z] = v_t, z_t
                scales[v] = sc
        order = [s.name for s in self._specs if s.name in rates]
        return Evaluation(
            x_hat=torch.stack(x_hats, dim=1),
            rates={n: rates[n] for n in order},
            latents=Latents((n, tilde[n]) for n in order),
            scales=scales,
            frames=frames,
        )

    def hard_evaluate(self, latents: Latents) -> Evaluation:
        return self.evaluate(latents, relax_all(hard(), latents.names))

    def reconstruct(self, latents: Latents) -> Tensor:
        """The decoder's frames ``B×F×3×H×W`` (not clamped) from hard latents (e.g. :meth:`decompress`'s)."""
        frames = self._frames_of(latents.names)
        ident = {n: _IDENTITY for n in latents.names}
        memo: dict = {}
        return torch.stack([self._frame(t, latents, ident, memo)[0] for t in range(frames)], dim=1)

    # ------------------------------------------------------------------ amortized inference
    def infer(self, name: str, x: Tensor, parents: Latents, relax: Relaxations | None = None,
              memo: dict | None = None) -> Tensor:
        """SSF's encoder for latent ``name``: from the frame, and for a P-frame the reference (and the
        prediction) decoded from the parents under ``relax`` (hard rounding for latents without one).
        ``memo``: as in :meth:`evaluate`."""
        try:
            spec = self._by_name[name]
        except KeyError:
            raise KeyError(f"unknown latent {name!r}; latents: {', '.join(self._by_name)}") from None
        t = spec.frame
        self._check_frames(x, t + 1)
        net = self.net
        if name == "y_0":
            return net.img_encoder(x[:, 0])
        if spec.kind in ("hyper", "motion-hyper", "residual-hyper"):
            hp = {"hyper": net.img_hyperprior, "motion-hyper": net.motion_hyperprior,
                  "residual-hyper": net.res_hyperprior}[spec.kind]
            return hp.hyper_encoder(parents[spec.parents[0]])
        given = relax or {}
        rel = {n: given.get(n, _HARD) for n in spec.parents}
        if spec.kind == "motion":
            x_ref = self._frame(t - 1, parents, rel, memo)[0]
            return net.motion_encoder(torch.cat((x[:, t], x_ref), dim=1))
        return net.res_encoder(x[:, t] - self._motion(t, parents, rel, memo)[0])

    def amortize(self, x: Tensor) -> Latents:
        """All latents by SSF's encoders, frame by frame, each P-frame encoded against the decoder's hard
        reconstruction of the frame before (what ``ScaleSpaceFlow.compress`` computes)."""
        self._check_frames(x, self.frames)
        net, rnd = self.net, hard()
        out: dict[str, Tensor] = {}
        y = net.img_encoder(x[:, 0])
        z = net.img_hyperprior.hyper_encoder(y)
        out.update(y_0=y, z_0=z)
        y_hat, _, _, _ = _relax_pair(net.img_hyperprior, y, z, rnd, rnd)
        x_ref = net.img_decoder(y_hat)
        for t in range(1, self.frames):
            mn, mzn, rn, rzn = frame_latent_names(t)
            m = net.motion_encoder(torch.cat((x[:, t], x_ref), dim=1))
            mz = net.motion_hyperprior.hyper_encoder(m)
            m_hat, _, _, _ = _relax_pair(net.motion_hyperprior, m, mz, rnd, rnd)
            x_pred = self._predict(x_ref, m_hat)
            r = net.res_encoder(x[:, t] - x_pred)
            rz = net.res_hyperprior.hyper_encoder(r)
            r_hat, _, _, _ = _relax_pair(net.res_hyperprior, r, rz, rnd, rnd)
            x_ref = x_pred + net.res_decoder(torch.cat((r_hat, m_hat), dim=1))
            out.update({mn: m, mzn: mz, rn: r, rzn: rz})
        return Latents((s.name, out[s.name]) for s in self._specs)

    # ------------------------------------------------------------------ coding
    def _present_pairs(self, names) -> list[tuple[str, str, nn.Module]]:
        frames = self._frames_of(names)
        return [p for f in range(frames) for p in self._pairs(f)]

    @torch.no_grad()
    def quantize(self, latents: Latents) -> Latents:
        """The values the coder writes: ``ẑ = round(z − med) + med``, ``v̂ = round(v − μ(ẑ)) + μ(ẑ)``."""
        out: dict[str, Tensor] = {}
        for v, z, hp in self._present_pairs(latents.names):
            z_hat = hard_round(latents[z].detach(), _z_offset(hp, latents[z]))
            out[z] = z_hat
            out[v] = hard_round(latents[v].detach(), hp.hyper_decoder_mean(z_hat))
        return Latents((n, out[n]) for n in latents.names)

    @torch.no_grad()
    def compress(self, latents: Latents) -> CodedLatents:
        """One rANS stream per latent with SSF's entropy models (continuous latents are rounded as in
        :meth:`quantize`); each latent's prior is taken from its *decoded* hyper-latent, as the decoder
        does, so the strings are those ``ScaleSpaceFlow.compress`` writes for the same latents."""
        streams: dict[str, list[bytes]] = {}
        for v, z, hp in self._present_pairs(latents.names):
            eb, gc = hp.entropy_bottleneck, hp.gaussian_conditional
            zv, vv = latents[z], latents[v]
            z_strings = eb.compress(zv)
            z_hat = eb.decompress(z_strings, zv.shape[-2:]).to(zv.dtype)
            scales, means = _prior(hp, z_hat)
            streams[z] = list(z_strings)
            streams[v] = list(gc.compress(vv, gc.build_indexes(scales), means=means))
        return CodedLatents(
            streams={n: streams[n] for n in latents.names},
            shapes={n: tuple(int(s) for s in latents[n].shape[1:]) for n in latents.names},
        )

    @torch.no_grad()
    def decompress(self, coded: CodedLatents) -> Latents:
        """The hard latents of the named streams (those of frames 0…F−1)."""
        dtype = self.dtype
        out: dict[str, Tensor] = {}
        for v, z, hp in self._present_pairs(tuple(coded.streams)):
            eb, gc = hp.entropy_bottleneck, hp.gaussian_conditional
            try:
                z_shape = coded.shapes[z]
            except KeyError:
                raise ValueError(f"no shape given for stream {z!r}") from None
            z_hat = eb.decompress(coded.streams[z], list(z_shape[-2:])).to(dtype)
            scales, means = _prior(hp, z_hat)
            out[z] = z_hat
            out[v] = gc.decompress(coded.streams[v], gc.build_indexes(scales), dtype, means)
        return Latents((s.name, out[s.name]) for s in self._specs if s.name in out)


# ---------------------------------------------------------------------------------------- loading
def zoo_url(quality: int) -> str:
    """CompressAI's URL of the ``ssf2020`` (MSE) weights of a quality (read from the installed
    CompressAI; never fetched here)."""
    from compressai.zoo.video import model_urls

    return model_urls[FAMILY]["mse"][quality]


def zoo_cache_path(quality: int) -> Path:
    """Where torch hub caches that file (``torch.hub.get_dir()/checkpoints/<file name of the URL>``)."""
    name = os.path.basename(urlparse(zoo_url(quality)).path)
    return Path(torch.hub.get_dir()) / "checkpoints" / name


def network_from_state(state: dict[str, Tensor]):
    """A ``ScaleSpaceFlow`` with the given weights; the entropy-coder tables are those of the state if
    it carries them for every entropy model, else computed from the weights."""
    from compressai.entropy_models import EntropyBottleneck, GaussianConditional
    from compressai.models.video import ScaleSpaceFlow

    net = ScaleSpaceFlow()
    state = {k: (v.float() if v.is_floating_point() else v) for k, v in state.items()}
    try:
        net.load_state_dict(state)
    except (RuntimeError, KeyError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ModelUnavailable(f"weights do not fit {FAMILY} (compressai ScaleSpaceFlow): {first}") from None
    coders = [m for m in net.modules() if isinstance(m, (EntropyBottleneck, GaussianConditional))]
    if not all(m._quantized_cdf.numel() for m in coders):
        net.update(force=True)
    return net


def load_ssf(quality: int | None = None, checkpoint: str | os.PathLike | None = None,
             device: str | torch.device | None = None, frames: int = 2, lmbda: float | None = None) -> SSFGopCodec:
    """An :class:`SSFGopCodec` of ``frames`` frames in eval mode (parameters frozen). Never downloads.

    Args:
        quality: CompressAI zoo quality 1–9; its file must already be in the torch hub cache
            (see :func:`zoo_cache_path`), unless ``checkpoint`` is given.
        checkpoint: a user's weights (a state dict, or ``{"state_dict": ...}``), loaded with
            ``weights_only=True``. ``quality`` then only sets the default λ.

    Raises:
        ModelUnavailable: no weights named, weights missing or unreadable, or not an SSF state dict.
    """
    if checkpoint is not None:
        state = read_state_dict(checkpoint)
        model_id = f"{FAMILY}-custom"
    elif quality is None:
        raise ModelUnavailable(f"{FAMILY}: give a quality ({QUALITIES[0]}-{QUALITIES[-1]}, CompressAI zoo weights "
                               "from the torch hub cache) or checkpoint=FILE")
    else:
        if quality not in QUALITIES:
            raise ModelUnavailable(f"{FAMILY} has qualities {QUALITIES[0]}-{QUALITIES[-1]}, got {quality}")
        path = zoo_cache_path(quality)
        if not path.is_file():
            raise ModelUnavailable(
                f"{FAMILY} quality {quality} weights are not available offline and rdopt never downloads: "
                f"put {path.name} (CompressAI's {zoo_url(quality)}) at {path}, or pass checkpoint=FILE")
        state = read_state_dict(path)
        model_id = f"{FAMILY}-q{quality}"
    net = network_from_state(state)
    codec = SSFGopCodec(net, frames=frames, quality=quality or 0, lmbda=lmbda, model_id=model_id)
    codec.eval()
    if device is not None:
        codec.to(device)
    for p in codec.parameters():
        p.requires_grad_(False)
    return codec


__all__ = ["DEFAULT_LAMBDA", "FAMILY", "LAMBDAS", "QUALITIES", "SSFGopCodec", "frame_latent_names", "load_ssf",
           "network_from_state", "zoo_cache_path", "zoo_url"]
