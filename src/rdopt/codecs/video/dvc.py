"""rdopt's embedded neural P-frame codec (issue #18) and the GoP-level :class:`VideoCodec`.

Paper 001 §2.1 (Eq. 1–2, Fig. 1): every P-frame ``i`` has a motion latent ``w_i`` inferred from
``(x_i, x̂_{i−1})`` and a residual latent ``y_i`` inferred from ``x_i`` and the motion-compensated
prediction; the reconstruction ``x̂_i = g(x̂_{i−1}, w̃_i, ỹ_i)`` is the reference of frame ``i+1``.
Each latent has its own mean-scale hyperprior (Minnen et al. 2018), so a P-frame has four latents
``w, z_w, y, z_y``::

    (x_i, x̂_ref) ─f_w─▶ w ─h_a─▶ z_w ─Q(z_w−med)─▶ ẑ_w ─h_s─▶ (σ_w, μ_w)
                        └────────────Q(w−μ_w)+μ_w───▶ ŵ ─g_w─▶ flow (¼ res, upsampled ×4)
    x̂_ref ──warp(x̂_ref, flow)──▶ x̄ ──mc(x̄, x̂_ref, flow)──▶ x_pred
    x_i − x_pred ─f_y─▶ y ─h_a─▶ z_y ─Q─▶ ẑ_y ─h_s─▶ (σ_y, μ_y)
                        └─────────Q(y−μ_y)+μ_y──────▶ ŷ ─g_y─▶ r̂ ;   x̂_i = x_pred + r̂

Design choice: DVC-style optical flow (Lu et al. 2019) with a small motion-compensation (MC) net, not
the scale-space flow of Agustsson et al. 2020 (CompressAI's ``ssf2020``).

* The warp is one bilinear ``grid_sample`` of the 3-channel reference: exactly the identity for zero
  flow and an exact integer shift for integer flow (unit-tested), differentiable in the reference and
  the flow. SSF needs a 5-level Gaussian scale-space volume of the reference (five blurs) and a
  trilinear 3-D ``grid_sample`` per frame; its blur channel is what covers disocclusions — here the
  MC net and the residual do that.
* Cost on 2 CPU cores: the flow is decoded at ¼ resolution (two transposed convolutions from the
  1/16 latent) and upsampled bilinearly — motion fields are smooth, and the MC net (¼ resolution,
  24 channels, pixel-(un)shuffle in and out) repairs the fine detail. The only full-resolution layer
  is the residual decoder's last transposed convolution. The residual coder has the image model's
  shape with N=48, M=96. ≈1.7 M parameters in all; one 256×256 P-frame decode is ≈0.6 G MACs.
* The MC net's last layer starts at zero and the flow head near zero, so an untrained model predicts
  "copy the reference": training can only improve on the copy baseline.

The methods are the pieces a latent-DAG protocol needs per P-frame: amortized inference
(:meth:`PFrameCodec.infer_motion`, :meth:`PFrameCodec.infer_residual`), decoder-side evaluation under
caller-given relaxations (:meth:`PFrameCodec.evaluate_motion`, :meth:`PFrameCodec.evaluate_residual`,
:meth:`PFrameCodec.evaluate`: per-latent estimated bits and the reconstruction, differentiable in all
latents and in the reference, never running an analysis transform), hard quantization
(``round(v − μ) + μ``) and rANS coding of each latent's strings with CompressAI's entropy models.

The I-frame codec is the embedded image model (:class:`rdopt.codecs.image.hyperprior.HyperpriorAdapter`);
:class:`VideoCodec` holds both and offers GoP helpers. Reconstructions are used as references
unclamped (encoder and decoder compute the same values, and the gradient reaches every pixel);
clamp to [0, 1] only for output.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...core.types import Latents, Relaxation, bits_from_likelihoods, relax_all
from ...relax.rounding import hard, hard_round
from ..entropy import bottleneck_likelihood, gaussian_likelihood
from ..image.hyperprior import HyperpriorAdapter

LATENT_NAMES = ("w", "z_w", "y", "z_y")

VIDEO_LAMBDAS = {1: 256.0, 2: 512.0, 3: 1024.0, 4: 2048.0}
"""λ (DVC units: MSE of [0, 1] RGB) of the embedded video codec's qualities."""
"""The latents of one P-frame, in the order the coder writes them."""

RelaxSpec = Relaxation | Mapping[str, Relaxation]
"""One relaxation for every latent, or one per latent name (``w``, ``z_w``, ``y``, ``z_y``)."""


def pick(relax: RelaxSpec, name: str) -> Relaxation:
    if isinstance(relax, Mapping):
        try:
            return relax[name]
        except KeyError:
            raise KeyError(f"no relaxation given for latent {name!r} (have {sorted(relax)})") from None
    return relax


# ---------------------------------------------------------------------------------------- warping
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
    return F.grid_sample(ref, grid, mode="bilinear", padding_mode="border", align_corners=True)


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

    def prior(self, z_tilde: Tensor) -> tuple[Tensor, Tensor]:
        """Scales and means of ``p(v | z̃)``."""
        scales, means = self.h_s(z_tilde).chunk(2, 1)
        return scales, means

    def z_bits(self, z_tilde: Tensor) -> Tensor:
        return bits_from_likelihoods(bottleneck_likelihood(self.entropy_bottleneck, z_tilde))

    def v_bits(self, v_tilde: Tensor, scales: Tensor, means: Tensor) -> Tensor:
        return bits_from_likelihoods(gaussian_likelihood(self.gaussian_conditional, v_tilde, scales, means))

    def evaluate(self, v: Tensor, z: Tensor, relax_v: Relaxation, relax_z: Relaxation) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """``(ṽ, z̃, bits_v, bits_z)``: ``z`` relaxed around the bottleneck medians, ``v`` around ``μ(z̃)``."""
        z_tilde = relax_z(z, self.z_offset(z))
        scales, means = self.prior(z_tilde)
        v_tilde = relax_v(v, means)
        return v_tilde, z_tilde, self.v_bits(v_tilde, scales, means), self.z_bits(z_tilde)

    @torch.no_grad()
    def quantize(self, v: Tensor, z: Tensor) -> tuple[Tensor, Tensor]:
        z_hat = hard_round(z, self.z_offset(z))
        _, means = self.prior(z_hat)
        return hard_round(v, means), z_hat

    def _indexes(self, scales: Tensor) -> Tensor:
        gc = self.gaussian_conditional
        bounded = gc.lower_bound_scale(scales)
        table = gc.scale_table[:-1].to(bounded.dtype).contiguous()
        return torch.searchsorted(table, bounded.contiguous(), right=False).int()

    @torch.no_grad()
    def compress(self, v: Tensor, z: Tensor) -> tuple[list[bytes], list[bytes]]:
        """rANS strings of ``round(z − med)`` and of ``round(v − μ(ẑ))``, the prior taken from the
        *decoded* ``ẑ`` as the decoder will."""
        eb, gc = self.entropy_bottleneck, self.gaussian_conditional
        z_strings = eb.compress(z)
        z_hat = eb.decompress(z_strings, z.shape[-2:]).to(z.dtype)
        scales, means = self.prior(z_hat)
        v_strings = gc.compress(v, self._indexes(scales), means=means)
        return list(v_strings), list(z_strings)

    @torch.no_grad()
    def decompress(self, v_strings: list[bytes], z_strings: list[bytes], z_shape: tuple[int, int],
                   dtype: torch.dtype = torch.float32) -> tuple[Tensor, Tensor]:
        eb, gc = self.entropy_bottleneck, self.gaussian_conditional
        z_hat = eb.decompress(z_strings, list(z_shape)).to(dtype)
        scales, means = self.prior(z_hat)
        v_hat = gc.decompress(v_strings, self._indexes(scales), dtype, means)
        return v_hat, z_hat

    def update(self, scale_table: Tensor | None = None, force: bool = True) -> None:
        """Compute the coder's tables (after training or loading)."""
        if scale_table is None:
            from ..registry import fine_scale_table

            scale_table = fine_scale_table()
        self.gaussian_conditional.update_scale_table(scale_table, force=force)
        self.entropy_bottleneck.update(force=force)

    def aux_loss(self) -> Tensor:
        return self.entropy_bottleneck.loss()


# --------------------------------------------------------------------------------- typed values
@dataclass(frozen=True)
class PFrameLatents:
    """The four latents of one P-frame (continuous, or on the coder's grid after ``quantize``)."""

    w: Tensor
    z_w: Tensor
    y: Tensor
    z_y: Tensor

    def as_dict(self) -> dict[str, Tensor]:
        return {n: getattr(self, n) for n in LATENT_NAMES}

    def detach(self) -> "PFrameLatents":
        return PFrameLatents(*(getattr(self, n).detach() for n in LATENT_NAMES))

    def clone(self) -> "PFrameLatents":
        return PFrameLatents(*(getattr(self, n).detach().clone() for n in LATENT_NAMES))

    def to(self, *args, **kwargs) -> "PFrameLatents":
        return PFrameLatents(*(getattr(self, n).to(*args, **kwargs) for n in LATENT_NAMES))


@dataclass(frozen=True)
class MotionEvaluation:
    """Decoder side of the motion part: relaxed ``w̃, z̃_w``, their estimated bits (per frame of the
    batch), the decoded flow (full resolution, pixels), the warped reference and the MC prediction."""

    w: Tensor
    z_w: Tensor
    bits_w: Tensor
    bits_z_w: Tensor
    flow: Tensor
    warped: Tensor
    prediction: Tensor


@dataclass(frozen=True)
class ResidualEvaluation:
    y: Tensor
    z_y: Tensor
    bits_y: Tensor
    bits_z_y: Tensor
    residual: Tensor  # g_y(ỹ)


@dataclass(frozen=True)
class PFrameEvaluation:
    """Decoder-side evaluation of one P-frame: ``x_hat = prediction + residual`` (not clamped) and
    the estimated bits of every latent, one value per batch item."""

    x_hat: Tensor
    motion: MotionEvaluation
    residual: ResidualEvaluation

    @property
    def bits(self) -> Tensor:
        return self.motion.bits_w + self.motion.bits_z_w + self.residual.bits_y + self.residual.bits_z_y

    @property
    def bits_by_latent(self) -> dict[str, Tensor]:
        return {"w": self.motion.bits_w, "z_w": self.motion.bits_z_w, "y": self.residual.bits_y, "z_y": self.residual.bits_z_y}

    @property
    def prediction(self) -> Tensor:
        return self.motion.prediction


@dataclass(frozen=True)
class PFrameStrings:
    """Entropy-coded P-frame latents: ``strings[name][b]`` for each name of :data:`LATENT_NAMES`;
    the spatial sizes of the two hyper-latents are what decoding needs."""

    strings: dict[str, list[bytes]]
    z_w_shape: tuple[int, int]
    z_y_shape: tuple[int, int]

    def num_bytes(self, index: int = 0) -> int:
        return sum(len(self.strings[n][index]) for n in LATENT_NAMES)


# ------------------------------------------------------------------------------- the P-frame codec
class MotionCompensation(nn.Module):
    """``x_pred = x̄ + m(x̄, x̂_ref, flow)``: a small residual refinement of the warped reference (DVC's MC
    net, much smaller). The inputs are folded to half resolution (pixel-unshuffle, no information lost),
    processed at ¼ resolution and unfolded back with sub-pixel convolutions, so no convolution runs at
    full resolution. Its last layer starts at zero (prediction = warp)."""

    def __init__(self, channels: int = 24):
        super().__init__()
        from compressai.layers import ResidualBlock, conv3x3, subpel_conv3x3

        c = channels
        self.fold = nn.PixelUnshuffle(2)  # 8 channels at full res -> 32 at half res
        self.down = nn.Sequential(conv3x3(32, c, stride=2), nn.LeakyReLU(inplace=True))
        self.body = ResidualBlock(c, c)
        self.up = nn.Sequential(subpel_conv3x3(c, c, 2), nn.LeakyReLU(inplace=True))
        self.out = nn.Sequential(conv3x3(c + 32, 12), nn.PixelShuffle(2))
        nn.init.zeros_(self.out[0].weight)
        nn.init.zeros_(self.out[0].bias)

    def forward(self, warped: Tensor, ref: Tensor, flow: Tensor) -> Tensor:
        # Flow is divided by 8 to bring typical motions (a few pixels) to the range of the images.
        half = self.fold(torch.cat([warped, ref, flow / 8.0], dim=1))
        h = self.up(self.body(self.down(half)))
        return warped + self.out(torch.cat([h, half], dim=1))


class PFrameCodec(nn.Module):
    """DVC-style P-frame codec (see the module docstring for the data flow and the design choice).

    Args:
        motion_channels, motion_latent: filters ``N_w`` and latent channels ``M_w`` of the motion coder.
        residual_channels, residual_latent: ``N`` and ``M`` of the residual coder.
        hyper_motion, hyper_residual: channels of the two hyper-latents.
        mc_channels: width of the motion-compensation net.
    """

    pad_multiple = 64
    flow_downscale = 4

    def __init__(self, motion_channels: int = 48, motion_latent: int = 64, residual_channels: int = 48,
                 residual_latent: int = 96, hyper_motion: int = 48, hyper_residual: int = 48, mc_channels: int = 24):
        super().__init__()
        from compressai.layers import GDN
        from compressai.models.utils import conv, deconv

        nw, mw, n, m = motion_channels, motion_latent, residual_channels, residual_latent
        self.config = dict(motion_channels=nw, motion_latent=mw, residual_channels=n, residual_latent=m,
                           hyper_motion=hyper_motion, hyper_residual=hyper_residual, mc_channels=mc_channels)
        self.motion_analysis = nn.Sequential(
            conv(6, nw), GDN(nw), conv(nw, nw), GDN(nw), conv(nw, nw), GDN(nw), conv(nw, mw))
        # ŵ (1/16) → flow at 1/4 resolution in full-resolution pixels, then bilinear ×4.
        self.motion_synthesis = nn.Sequential(
            deconv(mw, nw), GDN(nw, inverse=True), deconv(nw, nw), GDN(nw, inverse=True), conv(nw, 2, 3, 1))
        with torch.no_grad():  # start near zero flow: the untrained model predicts "copy the reference"
            self.motion_synthesis[-1].weight.mul_(0.01)
            self.motion_synthesis[-1].bias.zero_()
        self.motion_latent = MeanScaleLatent(mw, hyper_motion)
        self.mc = MotionCompensation(mc_channels)
        self.residual_analysis = nn.Sequential(
            conv(3, n), GDN(n), conv(n, n), GDN(n), conv(n, n), GDN(n), conv(n, m))
        self.residual_synthesis = nn.Sequential(
            deconv(m, n), GDN(n, inverse=True), deconv(n, n), GDN(n, inverse=True), deconv(n, n),
            GDN(n, inverse=True), deconv(n, 3))
        self.residual_latent = MeanScaleLatent(m, hyper_residual)

    # -------------------------------------------------------------------- amortized inference
    def infer_motion(self, x: Tensor, ref: Tensor) -> tuple[Tensor, Tensor]:
        """Amortized ``(w, z_w)`` from the current frame and the (decoded) reference."""
        self._check_size(x)
        w = self.motion_analysis(torch.cat([x, ref], dim=1))
        return w, self.motion_latent.hyper_analysis(w)

    def infer_residual(self, x: Tensor, prediction: Tensor) -> tuple[Tensor, Tensor]:
        """Amortized ``(y, z_y)`` from the current frame and the (decoded) motion-compensated prediction."""
        y = self.residual_analysis(x - prediction)
        return y, self.residual_latent.hyper_analysis(y)

    def amortize(self, x: Tensor, ref: Tensor, relax: RelaxSpec | None = None) -> PFrameLatents:
        """Amortized inference of all four latents (Eq. 1). The residual encoder sees the prediction
        decoded from the *relaxed* motion latents (``relax``: hard rounding by default — what the
        decoder will compute)."""
        relax = hard() if relax is None else relax
        w, z_w = self.infer_motion(x, ref)
        motion = self.evaluate_motion(w, z_w, ref, relax)
        y, z_y = self.infer_residual(x, motion.prediction)
        return PFrameLatents(w, z_w, y, z_y)

    # -------------------------------------------------------------------- decoder side
    def decode_flow(self, w_tilde: Tensor) -> Tensor:
        f = self.motion_synthesis(w_tilde)
        return F.interpolate(f, scale_factor=self.flow_downscale, mode="bilinear", align_corners=False)

    def predict(self, w_tilde: Tensor, ref: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(flow, warped, prediction)`` from a (relaxed or hard) motion latent and the reference."""
        flow = self.decode_flow(w_tilde)
        warped = warp(ref, flow)
        return flow, warped, self.mc(warped, ref, flow)

    def evaluate_motion(self, w: Tensor, z_w: Tensor, ref: Tensor, relax: RelaxSpec) -> MotionEvaluation:
        w_t, z_t, bits_w, bits_z = self.motion_latent.evaluate(w, z_w, pick(relax, "w"), pick(relax, "z_w"))
        flow, warped, prediction = self.predict(w_t, ref)
        return MotionEvaluation(w_t, z_t, bits_w, bits_z, flow, warped, prediction)

    def evaluate_residual(self, y: Tensor, z_y: Tensor, relax: RelaxSpec) -> ResidualEvaluation:
        y_t, z_t, bits_y, bits_z = self.residual_latent.evaluate(y, z_y, pick(relax, "y"), pick(relax, "z_y"))
        return ResidualEvaluation(y_t, z_t, bits_y, bits_z, self.residual_synthesis(y_t))

    def evaluate(self, latents: PFrameLatents, ref: Tensor, relax: RelaxSpec) -> PFrameEvaluation:
        """Decoder-side evaluation (Eq. 2) under the given relaxation(s): estimated bits per latent and
        ``x̂ = prediction + g_y(ỹ)``; differentiable in all latents and in ``ref``. With
        :func:`rdopt.relax.hard` this is exactly what the decoder computes from the strings."""
        motion = self.evaluate_motion(latents.w, latents.z_w, ref, relax)
        residual = self.evaluate_residual(latents.y, latents.z_y, relax)
        return PFrameEvaluation(motion.prediction + residual.residual, motion, residual)

    def hard_evaluate(self, latents: PFrameLatents, ref: Tensor) -> PFrameEvaluation:
        return self.evaluate(latents, ref, hard())

    # -------------------------------------------------------------------- coding
    @torch.no_grad()
    def quantize(self, latents: PFrameLatents) -> PFrameLatents:
        """The values the coder writes: ``ẑ = round(z − med) + med``, ``v̂ = round(v − μ(ẑ)) + μ(ẑ)``."""
        w, z_w = self.motion_latent.quantize(latents.w, latents.z_w)
        y, z_y = self.residual_latent.quantize(latents.y, latents.z_y)
        return PFrameLatents(w, z_w, y, z_y)

    @torch.no_grad()
    def compress(self, latents: PFrameLatents) -> PFrameStrings:
        """rANS strings of the quantized latents (continuous latents are rounded as in :meth:`quantize`)."""
        w_s, zw_s = self.motion_latent.compress(latents.w, latents.z_w)
        y_s, zy_s = self.residual_latent.compress(latents.y, latents.z_y)
        return PFrameStrings(
            strings={"w": w_s, "z_w": zw_s, "y": y_s, "z_y": zy_s},
            z_w_shape=(int(latents.z_w.shape[-2]), int(latents.z_w.shape[-1])),
            z_y_shape=(int(latents.z_y.shape[-2]), int(latents.z_y.shape[-1])),
        )

    @torch.no_grad()
    def decompress(self, coded: PFrameStrings, dtype: torch.dtype | None = None) -> PFrameLatents:
        dtype = dtype or next(self.parameters()).dtype
        s = coded.strings
        w, z_w = self.motion_latent.decompress(s["w"], s["z_w"], coded.z_w_shape, dtype)
        y, z_y = self.residual_latent.decompress(s["y"], s["z_y"], coded.z_y_shape, dtype)
        return PFrameLatents(w, z_w, y, z_y)

    def update(self, scale_table: Tensor | None = None, force: bool = True) -> None:
        """Compute the entropy coders' tables (call after training or after changing weights)."""
        self.motion_latent.update(scale_table, force)
        self.residual_latent.update(scale_table, force)

    def aux_loss(self) -> Tensor:
        """CompressAI's auxiliary loss of the two entropy bottlenecks (fits their quantiles)."""
        return self.motion_latent.aux_loss() + self.residual_latent.aux_loss()

    # -------------------------------------------------------------------- shapes, checkpoints
    def _check_size(self, x: Tensor) -> None:
        h, w = x.shape[-2:]
        if h % self.pad_multiple or w % self.pad_multiple:
            raise ValueError(f"frame size {h}×{w} is not a multiple of {self.pad_multiple}: pad it first")

    def latent_shapes(self, height: int, width: int) -> dict[str, tuple[int, int, int]]:
        """Shapes ``(C, H, W)`` of every latent for a padded frame of the given size."""
        c = self.config
        h16, w16, h64, w64 = height // 16, width // 16, height // 64, width // 64
        return {"w": (c["motion_latent"], h16, w16), "z_w": (c["hyper_motion"], h64, w64),
                "y": (c["residual_latent"], h16, w16), "z_y": (c["hyper_residual"], h64, w64)}

    def save_shipped(self, path: str | os.PathLike, meta: Mapping[str, int | float | str] | None = None,
                     levels: int = 256) -> None:
        """Finalize for shipping (as :func:`rdopt.codecs.registry.save_embedded` does for images): weights
        rounded to float16, coder tables computed *from the rounded weights* with a fine scale table,
        saved as ``{"state_dict", "config", "meta"}`` (tensors, numbers and strings only)."""
        from pathlib import Path

        from ..registry import fine_scale_table

        self.cpu()
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(p.half().float())
        self.update(scale_table=fine_scale_table(levels), force=True)
        params = {name for name, _ in self.named_parameters()}
        state = {k: (v.half() if k in params else v) for k, v in self.state_dict().items()}
        tmp = Path(str(path) + ".tmp")
        torch.save({"state_dict": state, "config": dict(self.config), "meta": dict(meta or {})}, tmp)
        os.replace(tmp, path)

    @classmethod
    def from_state_dict(cls, state: dict[str, Tensor], config: dict | None = None) -> "PFrameCodec":
        """A codec with the given weights (coder tables are recomputed if the state has none)."""
        model = cls(**(config or {}))
        # Entropy-coder buffers change size with the tables: give them the saved sizes first.
        for name, buf in model.named_buffers():
            if name in state and state[name].shape != buf.shape:
                module = model.get_submodule(name.rsplit(".", 1)[0])
                setattr(module, name.rsplit(".", 1)[1], torch.empty_like(state[name]))
        model.load_state_dict({k: (v.float() if v.is_floating_point() else v) for k, v in state.items()})
        if not any(k.endswith("_quantized_cdf") and v.numel() for k, v in state.items()):
            model.update()
        return model

    @classmethod
    def load(cls, path: str | os.PathLike, config: dict | None = None) -> "PFrameCodec":
        state = torch.load(path, map_location="cpu", weights_only=True)
        if isinstance(state, dict) and "state_dict" in state:
            config = config or state.get("config")
            state = state["state_dict"]
        elif isinstance(state, dict) and "model" in state and "step" in state:  # an `rdopt train --video` state
            state = state["model"]
        return cls.from_state_dict(state, config)


# ------------------------------------------------------------------------------------- the GoP
@dataclass(frozen=True)
class GopLatents:
    """The latents of a GoP: the I-frame's ``(y_0, z_0)`` and one :class:`PFrameLatents` per P-frame."""

    iframe: Latents
    pframes: tuple[PFrameLatents, ...]

    def __len__(self) -> int:
        return 1 + len(self.pframes)


@dataclass(frozen=True)
class GopEvaluation:
    """Per frame (``B×T``) estimated bits, and the reconstructions ``B×T×3×H×W`` (not clamped)."""

    bits: Tensor
    x_hat: Tensor
    pframes: tuple[PFrameEvaluation, ...]


@dataclass(frozen=True)
class GopResult:
    """Hard evaluation of a GoP against its frames, per frame (``B×T``): estimated bits, bpp, MSE
    (of the clamped reconstruction, [0, 1] RGB) and PSNR (dB)."""

    bits: Tensor
    bpp: Tensor
    mse: Tensor
    psnr: Tensor
    x_hat: Tensor


class VideoCodec(nn.Module):
    """An I-frame image codec plus a :class:`PFrameCodec`, with GoP-level helpers (low-delay P: every
    P-frame references the reconstruction of the frame before it).

    Frames are given as ``B×T×3×H×W`` in [0, 1], ``H`` and ``W`` multiples of 64.
    """

    def __init__(self, iframe: HyperpriorAdapter, pframe: PFrameCodec, lmbda: float = 1024.0, quality: int = 0):
        super().__init__()
        self.iframe = iframe
        self.pframe = pframe
        self.lmbda = float(lmbda)  # the λ it was trained for, DVC units (MSE of [0, 1] RGB)
        self.quality = int(quality)

    pad_multiple = 64

    def encode_gop(self, frames: Tensor) -> GopLatents:
        """Amortized encoding (FAVI) of a GoP: every frame's latents are inferred from the frame and the
        decoder's hard reconstruction of the previous frame, then quantized."""
        with torch.no_grad():
            lat0 = self.iframe.quantize(self.iframe.amortize(frames[:, 0]))
            ref = self.iframe.hard_evaluate(lat0).x_hat
            pframes = []
            for t in range(1, frames.shape[1]):
                lat = self.pframe.quantize(self.pframe.amortize(frames[:, t], ref))
                ref = self.pframe.hard_evaluate(lat, ref).x_hat
                pframes.append(lat)
        return GopLatents(lat0, tuple(pframes))

    def evaluate_gop(self, latents: GopLatents, relax_iframe: Relaxation | None = None,
                     relax_pframe: RelaxSpec | None = None) -> GopEvaluation:
        """Decoder-side evaluation of a whole GoP (hard rounding by default), differentiable in every
        latent: each P-frame's reference is the previous frame's (relaxed) reconstruction."""
        ri = hard() if relax_iframe is None else relax_iframe
        rp = hard() if relax_pframe is None else relax_pframe
        ev0 = self.iframe.evaluate(latents.iframe, relax_all(ri, latents.iframe.names))
        bits, recs, evs = [ev0.bits], [ev0.x_hat], []
        ref = ev0.x_hat
        for lat in latents.pframes:
            ev = self.pframe.evaluate(lat, ref, rp)
            bits.append(ev.bits)
            recs.append(ev.x_hat)
            evs.append(ev)
            ref = ev.x_hat
        return GopEvaluation(torch.stack(bits, 1), torch.stack(recs, 1), tuple(evs))

    @torch.no_grad()
    def hard_evaluate_gop(self, latents: GopLatents, frames: Tensor) -> GopResult:
        """The true per-frame rate (estimated bits of the hard latents) and distortion of a GoP."""
        ev = self.evaluate_gop(latents)
        x_hat = ev.x_hat.clamp(0.0, 1.0)
        mse = (x_hat - frames).pow(2).flatten(2).mean(2)
        npix = frames.shape[-2] * frames.shape[-1]
        psnr = -10.0 * torch.log10(mse.clamp_min(1e-12))
        return GopResult(ev.bits, ev.bits / npix, mse, psnr, x_hat)

    @torch.no_grad()
    def compress_gop(self, latents: GopLatents):
        """``(I-frame CodedLatents, [PFrameStrings…])`` of a GoP's latents."""
        return self.iframe.compress(latents.iframe), [self.pframe.compress(p) for p in latents.pframes]

    @torch.no_grad()
    def decompress_gop(self, coded) -> GopLatents:
        icoded, pcoded = coded
        dtype = next(self.pframe.parameters()).dtype
        lat0 = self.iframe.decompress(icoded)
        return GopLatents(lat0.to(dtype), tuple(self.pframe.decompress(p, dtype) for p in pcoded))


VIDEO_FAMILY = "rdopt-video"


def video_weights_path(quality: int):
    from ..registry import WEIGHTS_DIR

    return WEIGHTS_DIR / f"{VIDEO_FAMILY}-q{quality}.pt"


def load_video_codec(quality: int = 3, checkpoint: str | os.PathLike | None = None,
                     device: str | torch.device | None = None, iframe_quality: int | None = None) -> VideoCodec:
    """The embedded video codec ``rdopt-video`` at a quality 1–4 (λ 256 … 2048), or a P-frame checkpoint
    written by ``rdopt train --video`` (its I-frame model and λ are read from the file's meta), in eval
    mode with its coder tables ready. Never downloads."""
    from ..registry import ModelUnavailable, load_model

    if checkpoint is None:
        if quality not in VIDEO_LAMBDAS:
            raise ModelUnavailable(f"{VIDEO_FAMILY} has qualities 1-{len(VIDEO_LAMBDAS)}, got {quality}")
        path = video_weights_path(quality)
        if not path.is_file():
            raise ModelUnavailable(f"embedded video weights missing: {path} (train them with benchmarks/train/train_video.sh)")
    else:
        path = checkpoint
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ModelUnavailable(f"no such checkpoint: {path}") from None
    except Exception as e:  # noqa: BLE001 - any unreadable file is the same user error
        raise ModelUnavailable(f"cannot read video checkpoint {path}: {type(e).__name__}: {e}") from None
    meta = raw.get("meta", {}) if isinstance(raw, dict) else {}
    lmbda = float(meta.get("lmbda", VIDEO_LAMBDAS.get(quality, 1024.0)))
    try:
        pframe = PFrameCodec.load(path)
    except (RuntimeError, KeyError, TypeError) as e:
        raise ModelUnavailable(f"{path} is not a P-frame codec checkpoint: {e}") from None
    iq = iframe_quality or int(meta.get("iframe_quality", 0)) or iframe_quality_for(lmbda)
    iframe = load_model("rdopt-msh", quality=iq, device=device)
    codec = VideoCodec(iframe, pframe, lmbda=lmbda, quality=quality if checkpoint is None else 0)
    return codec.to(device or "cpu").eval()


def iframe_quality_for(lmbda_video: float) -> int:
    """The embedded image model's quality whose λ is closest to a video λ (DVC units on [0, 1] MSE):
    ``λ_image = λ_video / 255²`` compared on a log scale."""
    import math

    from ..registry import COMPRESSAI_LAMBDAS, EMBEDDED_QUALITIES

    target = lmbda_video / 255.0**2
    return min(EMBEDDED_QUALITIES, key=lambda q: abs(math.log(COMPRESSAI_LAMBDAS[q] / target)))


__all__ = [
    "LATENT_NAMES", "VIDEO_LAMBDAS", "warp", "MeanScaleLatent", "PFrameLatents", "MotionEvaluation", "ResidualEvaluation",
    "PFrameEvaluation", "PFrameStrings", "MotionCompensation", "PFrameCodec", "GopLatents", "GopEvaluation",
    "GopResult", "VideoCodec", "iframe_quality_for", "load_video_codec", "video_weights_path", "VIDEO_FAMILY",
    "pick",
]
