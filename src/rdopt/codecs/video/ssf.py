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

from ...core.types import (CodedLatents, Evaluation, LatentSpec, Latents, Relaxation, Relaxations, bits_from_likelihoods)
from ...relax.rounding import hard_round
from ..entropy import bottleneck_likelihood, fewest_bits, gaussian_likelihood
from ..image.base import state_dict_hash
from ..image.loading import read_state_dict
from ..registry import COMPRESSAI_LAMBDAS, ModelUnavailable
from .gop import GopCodec, VideoCodec
from .pframe import MotionEvaluation, ResidualEvaluation

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





class SSFPair:
    """One SSF ``Hyperprior`` (a latent ``v`` and its hyper-latent ``z``) under rdopt's rules: ``z`` relaxed and
    rounded around the entropy bottleneck's medians, ``v`` around the mean decoded from ``z̃`` — what
    ``Hyperprior.compress`` / ``quantize_ste`` do in CompressAI."""

    def __init__(self, hp: nn.Module):
        self.hp = hp

    def evaluate(self, v: Tensor, z: Tensor, relax_v: Relaxation, relax_z: Relaxation):
        """``(ṽ, z̃, bits_v, bits_z, scales)``."""
        v_t, z_t, scales, means = _relax_pair(self.hp, v, z, relax_v, relax_z)
        bits_v, bits_z = _pair_bits(self.hp, v_t, z_t, scales, means)
        return v_t, z_t, bits_v, bits_z, scales

    @torch.no_grad()
    def quantize(self, v: Tensor, z: Tensor) -> tuple[Tensor, Tensor]:
        z_hat = hard_round(z.detach(), _z_offset(self.hp, z))
        return hard_round(v.detach(), self.hp.hyper_decoder_mean(z_hat)), z_hat

    @torch.no_grad()
    def compress(self, v: Tensor, z: Tensor) -> tuple[list[bytes], list[bytes]]:
        """Strings of ``v`` and ``z``; ``v``'s prior from the *decoded* ``ẑ``, as the decoder does."""
        eb, gc = self.hp.entropy_bottleneck, self.hp.gaussian_conditional
        z_strings = eb.compress(z)
        z_hat = eb.decompress(z_strings, z.shape[-2:]).to(z.dtype)
        scales, means = _prior(self.hp, z_hat)
        return list(gc.compress(v, gc.build_indexes(scales), means=means)), list(z_strings)

    @torch.no_grad()
    def decompress(self, v_strings, z_strings, z_shape, dtype) -> tuple[Tensor, Tensor]:
        eb, gc = self.hp.entropy_bottleneck, self.hp.gaussian_conditional
        z_hat = eb.decompress(z_strings, list(z_shape[-2:])).to(dtype)
        scales, means = _prior(self.hp, z_hat)
        return gc.decompress(v_strings, gc.build_indexes(scales), dtype, means), z_hat

    def min_bits(self) -> tuple[float, float]:
        return fewest_bits(self.hp.gaussian_conditional), fewest_bits(self.hp.entropy_bottleneck)

    def shapes(self, encoder: nn.Module, height: int, width: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
        return ((int(encoder[-1].out_channels), height // 16, width // 16),
                (int(self.hp.hyper_encoder[-1].out_channels), height // 128, width // 128))


class SSFIntraCodec(nn.Module):
    """SSF's image coder of frame 0 (``img_encoder``, ``img_hyperprior``, ``img_decoder``) as an image
    :class:`rdopt.core.types.LatentCodec` with latents ``y`` and ``z``."""

    pad_multiple = 128

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net
        self.pair = SSFPair(net.img_hyperprior)
        self.latents = (LatentSpec("y", "latent", ()), LatentSpec("z", "hyper", ("y",)))

    def encoder_modules(self) -> list[nn.Module]:
        return [self.net.img_encoder, self.net.img_hyperprior.hyper_encoder]

    def analysis(self, x: Tensor) -> Tensor:
        return self.net.img_encoder(x)

    def hyper_analysis(self, y: Tensor) -> Tensor:
        return self.net.img_hyperprior.hyper_encoder(y)

    def amortize(self, x: Tensor) -> Latents:
        y = self.analysis(x)
        return Latents({"y": y, "z": self.hyper_analysis(y)})

    def evaluate(self, latents: Latents, relax: Relaxations) -> Evaluation:
        y_t, z_t, bits_y, bits_z, scales = self.pair.evaluate(latents["y"], latents["z"], relax["y"], relax["z"])
        return Evaluation(self.net.img_decoder(y_t), {"y": bits_y, "z": bits_z}, Latents({"y": y_t, "z": z_t}),
                          {"y": scales})

    @torch.no_grad()
    def quantize(self, latents: Latents) -> Latents:
        y, z = self.pair.quantize(latents["y"], latents["z"])
        return Latents({"y": y, "z": z})

    @torch.no_grad()
    def compress(self, latents: Latents) -> CodedLatents:
        ys, zs = self.pair.compress(latents["y"], latents["z"])
        return CodedLatents({"y": ys, "z": zs}, {n: tuple(int(s) for s in latents[n].shape[1:]) for n in ("y", "z")})

    @torch.no_grad()
    def decompress(self, coded: CodedLatents) -> Latents:
        dtype = next(self.net.parameters()).dtype
        y, z = self.pair.decompress(coded.streams["y"], coded.streams["z"], coded.shapes["z"], dtype)
        return Latents({"y": y, "z": z})

    def latent_shapes(self, height: int, width: int) -> dict[str, tuple[int, ...]]:
        y, z = self.pair.shapes(self.net.img_encoder, height, width)
        return {"y": y, "z": z}

    def min_bits_per_symbol(self) -> tuple[float, float]:
        return self.pair.min_bits()

    def weight_hash(self) -> bytes:
        return state_dict_hash(self.net)


class SSFPFrameCodec(nn.Module):
    """SSF's P-frame: the motion pair ``(m, mz)`` decoded to a scale-space flow and the prediction
    ``x̄ = warp(scale-space volume of x̂_{t−1}, flow, scale)``; the residual pair ``(r, rz)`` decoded with the
    motion latent, ``x̂ = x̄ + res_decoder([r̂, m̂])``. A :class:`rdopt.codecs.video.pframe.PFrameCodec`."""

    names = ("m", "mz", "r", "rz")
    pad_multiple = 128

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net
        self.motion_pair, self.residual_pair = SSFPair(net.motion_hyperprior), SSFPair(net.res_hyperprior)

    def encoder_modules(self) -> list[nn.Module]:
        n = self.net
        return [n.motion_encoder, n.motion_hyperprior.hyper_encoder, n.res_encoder, n.res_hyperprior.hyper_encoder]

    def infer_motion(self, x: Tensor, ref: Tensor) -> tuple[Tensor, Tensor]:
        m = self.net.motion_encoder(torch.cat((x, ref), dim=1))
        return m, self.net.motion_hyperprior.hyper_encoder(m)

    def evaluate_motion(self, v: Tensor, h: Tensor, ref: Tensor, relax: Mapping[str, Relaxation]) -> MotionEvaluation:
        m_t, mz_t, bits_m, bits_mz, _ = self.motion_pair.evaluate(v, h, relax["m"], relax["mz"])
        prediction = self.net.forward_prediction(ref, self.net.motion_decoder(m_t))
        return MotionEvaluation(m_t, mz_t, bits_m, bits_mz, prediction)

    def infer_residual(self, x: Tensor, motion: MotionEvaluation) -> tuple[Tensor, Tensor]:
        r = self.net.res_encoder(x - motion.prediction)
        return r, self.net.res_hyperprior.hyper_encoder(r)

    def evaluate_residual(self, v: Tensor, h: Tensor, relax: Mapping[str, Relaxation],
                          motion: MotionEvaluation) -> ResidualEvaluation:
        r_t, rz_t, bits_r, bits_rz, _ = self.residual_pair.evaluate(v, h, relax["r"], relax["rz"])
        x_hat = motion.prediction + self.net.res_decoder(torch.cat((r_t, motion.latent), dim=1))
        return ResidualEvaluation(r_t, rz_t, bits_r, bits_rz, x_hat)

    def hyper_analysis(self, name: str, v: Tensor) -> Tensor:
        hp = {"mz": self.net.motion_hyperprior, "rz": self.net.res_hyperprior}.get(name)
        if hp is None:
            raise KeyError(f"{name!r} is not a hyper-latent of ssf2020 (mz, rz)")
        return hp.hyper_encoder(v)

    def _pairs(self):
        return (("m", "mz", self.motion_pair), ("r", "rz", self.residual_pair))

    @torch.no_grad()
    def quantize(self, latents: Mapping[str, Tensor]) -> dict[str, Tensor]:
        out = {}
        for v, z, pair in self._pairs():
            out[v], out[z] = pair.quantize(latents[v], latents[z])
        return out

    @torch.no_grad()
    def compress(self, latents: Mapping[str, Tensor]) -> dict[str, list[bytes]]:
        out = {}
        for v, z, pair in self._pairs():
            out[v], out[z] = pair.compress(latents[v], latents[z])
        return out

    @torch.no_grad()
    def decompress(self, strings, shapes, dtype) -> dict[str, Tensor]:
        """The latents whose strings are given: both pairs, or the motion pair alone (a skipped frame)."""
        out = {}
        for v, z, pair in self._pairs():
            if v in strings or z in strings or v == "m":
                out[v], out[z] = pair.decompress(strings[v], strings[z], shapes[z], dtype)
        return out

    @torch.no_grad()
    def residual_position_bits(self, v: Tensor, h: Tensor) -> Tensor:
        """Estimated bits of the hard residual latent ``v`` at each position (``B×H×W``, summed over channels)
        given its hard hyper-latent ``h``."""
        hp = self.net.res_hyperprior
        scales, means = _prior(hp, h)
        return -torch.log2(gaussian_likelihood(hp.gaussian_conditional, v, scales, means)).sum(1)

    def latent_shapes(self, height: int, width: int) -> dict[str, tuple[int, ...]]:
        n = self.net
        m, mz = self.motion_pair.shapes(n.motion_encoder, height, width)
        r, rz = self.residual_pair.shapes(n.res_encoder, height, width)
        return {"m": m, "mz": mz, "r": r, "rz": rz}

    def min_bits_per_symbol(self) -> dict[str, float]:
        out = {}
        for v, z, pair in self._pairs():
            out[v], out[z] = pair.min_bits()
        return out


def ssf_video(net: nn.Module, quality: int = 0, lmbda: float | None = None, model_id: str | None = None) -> VideoCodec:
    """A CompressAI ``ScaleSpaceFlow`` network (coder tables ready) as a :class:`VideoCodec`: its image coder
    for I-frames, its P-frame path for P-frames; the weight hash is that of the whole network."""
    from compressai.models.video import ScaleSpaceFlow

    if not isinstance(net, ScaleSpaceFlow):
        raise TypeError(f"ssf_video wraps a compressai ScaleSpaceFlow, got {type(net).__name__}")
    lmbda = float(lmbda if lmbda is not None else LAMBDAS.get(int(quality), DEFAULT_LAMBDA))
    return VideoCodec(SSFIntraCodec(net), SSFPFrameCodec(net), family=FAMILY, quality=quality, lmbda=lmbda,
                      model_id=model_id, weight_hash=lambda: state_dict_hash(net))


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


def load_ssf_codec(quality: int | None = None, lmbda: float | None = None, checkpoint: str | os.PathLike | None = None,
                   device: str | torch.device | None = None) -> VideoCodec:
    """``ssf2020`` as a :class:`VideoCodec` in eval mode (parameters frozen). Never downloads.

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
    codec = ssf_video(net, quality=(quality or 0) if checkpoint is None else 0, lmbda=lmbda, model_id=model_id)
    codec.eval()
    if device is not None:
        codec.to(device)
    for p in codec.parameters():
        p.requires_grad_(False)
    return codec


def load_ssf(quality: int | None = None, checkpoint: str | os.PathLike | None = None,
             device: str | torch.device | None = None, frames: int = 2, lmbda: float | None = None) -> GopCodec:
    """The GoP codec of ``frames`` frames of :func:`load_ssf_codec`."""
    return load_ssf_codec(quality=quality, lmbda=lmbda, checkpoint=checkpoint, device=device).gop(frames)


__all__ = ["DEFAULT_LAMBDA", "FAMILY", "LAMBDAS", "QUALITIES", "SSFPair", "SSFIntraCodec", "SSFPFrameCodec", "ssf_video",
           "load_ssf", "load_ssf_codec", "network_from_state", "zoo_cache_path", "zoo_url"]
