"""``rdopt-video``: rdopt's first embedded P-frame codec (DVC-style) — registered so its files still decode.

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

DVC-style optical flow (Lu et al. 2019) with a small motion-compensation (MC) net: the flow is decoded at
¼ resolution (two transposed convolutions from the 1/16 latent) and upsampled bilinearly, the MC net works
at ¼ resolution; the residual coder has the image model's shape with N=48, M=96 (≈1.7 M parameters in all).
The MC net's last layer starts at zero and the flow head near zero, so an untrained model predicts "copy
the reference".

:class:`DVCPFrameCodec` is a :class:`rdopt.codecs.video.pframe.PFrameCodec`; :func:`load_video_codec` joins
it with the embedded image model into a :class:`rdopt.codecs.video.gop.VideoCodec`. Its weight files store
λ in DVC's unit (MSE of [0, 1] RGB, 256 … 2048); the loader converts to CompressAI's (÷ 255²).
Reconstructions are used as references unclamped (encoder and decoder compute the same values, and the
gradient reaches every pixel); clamp to [0, 1] only for output.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...core.types import Relaxation
from .gop import VideoCodec, load_shipped
from .parts import HyperpriorPFrame, MeanScaleLatent, load_state_into, save_shipped, warp
from .pframe import MotionEvaluation, ResidualEvaluation

FAMILY = "rdopt-video"

VIDEO_LAMBDAS_DVC = {1: 256.0, 2: 512.0, 3: 1024.0, 4: 2048.0}
"""λ of the qualities in DVC's unit (MSE of [0, 1] RGB), as the weight files store it."""


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



class DVCPFrameCodec(HyperpriorPFrame):
    """DVC-style P-frame codec (module docstring for the data flow).

    Args:
        motion_channels, motion_latent: filters ``N_w`` and latent channels ``M_w`` of the motion coder.
        residual_channels, residual_latent: ``N`` and ``M`` of the residual coder.
        hyper_motion, hyper_residual: channels of the two hyper-latents.
        mc_channels: width of the motion-compensation net.
    """

    names = ("w", "z_w", "y", "z_y")
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
        self.check_size(x)
        w = self.motion_analysis(torch.cat([x, ref], dim=1))
        return w, self.motion_latent.hyper_analysis(w)

    def infer_residual(self, x: Tensor, motion: MotionEvaluation) -> tuple[Tensor, Tensor]:
        """Amortized ``(y, z_y)`` from the current frame and the (decoded) motion-compensated prediction."""
        y = self.residual_analysis(x - motion.prediction)
        return y, self.residual_latent.hyper_analysis(y)

    # -------------------------------------------------------------------- decoder side
    def decode_flow(self, w_tilde: Tensor) -> Tensor:
        f = self.motion_synthesis(w_tilde)
        return F.interpolate(f, scale_factor=self.flow_downscale, mode="bilinear", align_corners=False)

    def predict(self, w_tilde: Tensor, ref: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(flow, warped, prediction)`` from a (relaxed or hard) motion latent and the reference."""
        flow = self.decode_flow(w_tilde)
        warped = warp(ref, flow)
        return flow, warped, self.mc(warped, ref, flow)

    def evaluate_motion(self, v: Tensor, h: Tensor, ref: Tensor, relax: Mapping[str, Relaxation]) -> MotionEvaluation:
        w_t, z_t, bits_w, bits_z = self._motion_pair(v, h, relax)
        flow, warped, prediction = self.predict(w_t, ref)
        return MotionEvaluation(w_t, z_t, bits_w, bits_z, prediction, {"flow": flow, "warped": warped})

    def evaluate_residual(self, v: Tensor, h: Tensor, relax: Mapping[str, Relaxation],
                          motion: MotionEvaluation) -> ResidualEvaluation:
        y_t, z_t, bits_y, bits_z = self._residual_pair(v, h, relax)
        return ResidualEvaluation(y_t, z_t, bits_y, bits_z, motion.prediction + self.residual_synthesis(y_t))

    def encoder_modules(self) -> list[nn.Module]:
        return [self.motion_analysis, self.motion_latent.h_a, self.residual_analysis, self.residual_latent.h_a]

    def latent_shapes(self, height: int, width: int) -> dict[str, tuple[int, int, int]]:
        """Shapes ``(C, H, W)`` of every latent for a padded frame of the given size."""
        c = self.config
        h16, w16, h64, w64 = height // 16, width // 16, height // 64, width // 64
        return {"w": (c["motion_latent"], h16, w16), "z_w": (c["hyper_motion"], h64, w64),
                "y": (c["residual_latent"], h16, w16), "z_y": (c["hyper_residual"], h64, w64)}

    # -------------------------------------------------------------------- checkpoints
    def save_shipped(self, path: str | os.PathLike, meta: Mapping[str, int | float | str] | None = None,
                     levels: int = 256) -> None:
        """Weights in float16 and coder tables computed from them (:func:`rdopt.codecs.video.parts.save_shipped`)."""
        save_shipped(self, path, self.config, meta, levels)

    @classmethod
    def from_state_dict(cls, state: dict[str, Tensor], config: dict | None = None) -> "DVCPFrameCodec":
        """A codec with the given weights (coder tables are recomputed if the state has none)."""
        model = cls(**(config or {}))
        load_state_into(model, state)
        if not any(k.endswith("_quantized_cdf") and v.numel() for k, v in state.items()):
            model.update()
        return model

    @classmethod
    def load(cls, path: str | os.PathLike, config: dict | None = None) -> "DVCPFrameCodec":
        state = torch.load(path, map_location="cpu", weights_only=True)
        if isinstance(state, dict) and "state_dict" in state:
            config = config or state.get("config")
            state = state["state_dict"]
        elif isinstance(state, dict) and "model" in state and "step" in state:  # an `rdopt train --video` state
            state = state["model"]
        return cls.from_state_dict(state, config)


def video_weights_path(quality: int):
    from ..image.loading import WEIGHTS_DIR

    return WEIGHTS_DIR / f"{FAMILY}-q{quality}.pt"


def load_video_codec(quality: int | None = 3, checkpoint: str | os.PathLike | None = None,
                     device: str | torch.device | None = None, iframe_quality: int | None = None,
                     lmbda: float | None = None) -> VideoCodec:
    """``rdopt-video`` at a quality 1–4, or a P-frame checkpoint written by ``rdopt train --video`` (its I-frame
    model and λ are read from the file's meta), in eval mode with its coder tables ready. Never downloads.
    ``lmbda`` (CompressAI's unit) overrides the λ the codec reports as trained for."""
    from ..registry import ModelUnavailable

    if checkpoint is None:
        quality = 3 if quality is None else quality
        if quality not in VIDEO_LAMBDAS_DVC:
            raise ModelUnavailable(f"{FAMILY} has qualities 1-{len(VIDEO_LAMBDAS_DVC)}, got {quality}")
        path = video_weights_path(quality)
        if not path.is_file():
            raise ModelUnavailable(f"embedded video weights missing: {path}")
    else:
        path = checkpoint
    # the files store DVC's λ (on [0, 1] MSE); CompressAI's unit is that ÷ 255²
    return load_shipped(
        FAMILY, path, DVCPFrameCodec.load, quality=quality, from_checkpoint=checkpoint is not None, lmbda=lmbda,
        device=device,
        trained_lmbda=lambda meta: float(meta.get("lmbda", VIDEO_LAMBDAS_DVC.get(quality or 3, 1024.0))) / 255.0**2,
        iframe_quality=lambda meta, lm: iframe_quality or int(meta.get("iframe_quality", 0)) or iframe_quality_for(lm))


def iframe_quality_for(lmbda: float) -> int:
    """The embedded image model's quality whose λ (CompressAI's unit) is closest to ``lmbda``, on a log scale."""
    import math

    from ..image.loading import EMBEDDED_QUALITIES
    from ..registry import COMPRESSAI_LAMBDAS

    return min(EMBEDDED_QUALITIES, key=lambda q: abs(math.log(COMPRESSAI_LAMBDAS[q] / lmbda)))


__all__ = ["FAMILY", "VIDEO_LAMBDAS_DVC", "MotionCompensation", "DVCPFrameCodec", "iframe_quality_for",
           "load_video_codec", "video_weights_path"]
