"""``rdopt-video2``: a P-frame codec with encoder-side classical motion and a conditional residual coder.

Paper 001 §2.1 (Eq. 1–2): every P-frame ``i`` has a motion latent ``w_i`` and a residual latent ``y_i``;
``x̂_i = g(x̂_{i−1}, ŵ_i, ŷ_i)`` is the reference of frame ``i+1``. What differs from ``rdopt-video``:

* **Motion is estimated by a classical dense optical flow at the encoder** (OpenCV's DIS,
  :func:`dis_flow`). The decoder never runs it: it decodes the motion latent ``ŵ`` (1/16 resolution,
  mean-scale hyperprior ``z_w`` at 1/64) into a coarse flow at 1/4 resolution, upsampled bilinearly. The
  amortized motion encoder reads the estimated flow and the two frames at 1/4 resolution; an optimizing
  encoder (SAVI) refines ``w`` from there like any other latent.
* **No motion-compensation net**: the prediction is the bilinear warp of the reference
  (:func:`rdopt.codecs.video.dvc.warp`), so a good warp is never made worse before the residual is added.
* **A conditional residual coder grown from the image model** (:class:`ConditionalResidualCoder`): the
  embedded ``rdopt-msh`` of the matching λ, with the prediction as extra input of its analysis transform
  (concatenated channels whose weights start at zero) and of its synthesis transform (zero-initialised
  additive branches at 1/4 and 1/2 resolution), so training starts exactly at "the image model coding the
  residual ``x − x_pred``" and learns conditional coding from there::

        x_i ─DIS(x_i, x̂_ref)─▶ flow ─f_w(flow, x_i, x̂_ref)─▶ w ─▶ ŵ ─g_w─▶ floŵ (¼ res, ×4 bilinear)
        x_pred = warp(x̂_ref, floŵ)
        (x_i − x_pred, x_pred) ─g_a─▶ y ─▶ ŷ ─g_s(ŷ, x_pred)─▶ r̂ ;   x̂_i = x_pred + r̂

The P-frame latents keep the layout of ``rdopt-video`` (``w, z_w, y, z_y``, each ``v`` with a mean-scale
hyperprior ``z``), so every GoP solver and container works on both codecs.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...core.types import Relaxation
from .gop import VideoCodec, load_shipped
from .parts import ContextLatent, HyperpriorPFrame, MeanScaleLatent, load_state_into, save_shipped, warp
from .pframe import MotionEvaluation, ResidualEvaluation

FLOW_SCALE = 8.0
"""Flow (pixels) is divided by this before the networks see it and multiplied back after decoding."""

FAMILY = "rdopt-video2"

VIDEO2_LAMBDAS = {1: 0.0067, 2: 0.0130, 3: 0.0250, 4: 0.0483}
"""λ of ``rdopt-video2``'s qualities in CompressAI units (cost = bpp + λ·255²·MSE on [0, 1] RGB): the image
model's qualities 3–6, whose weights the residual coders and the I-frames start from."""

VIDEO2_IFRAME_QUALITY = {1: 4, 2: 5, 3: 6, 4: 6}
"""The embedded image model's quality of each video quality's I-frames: one quality above the P-frames' λ (the
top quality has none above it). A better first reference pays for itself over a GoP of 10: on bigbuckbunny (a
training clip) it lowered the R-D cost of qualities 1 and 3 by 5 % and 2 % against I-frames at the same λ."""


class MotionEstimatorUnavailable(RuntimeError):
    """OpenCV (the encoder's optical flow) is not installed."""


# --------------------------------------------------------------------------- encoder-side motion
def _gray_u8(frames: Tensor) -> "list":
    import numpy as np

    rgb = frames.detach().float().clamp(0.0, 1.0).cpu()
    luma = (0.299 * rgb[:, 0] + 0.587 * rgb[:, 1] + 0.114 * rgb[:, 2]) * 255.0 + 0.5
    return [np.ascontiguousarray(a) for a in luma.to(torch.uint8).numpy()]


def dis_flow(current: Tensor, reference: Tensor, preset: str = "medium") -> Tensor:
    """Dense optical flow (DIS, Kroeger et al. 2016, through OpenCV) from ``current`` to ``reference``:
    ``B×2×H×W`` in pixels (channel 0 = x) with ``current[p] ≈ reference[p + flow[p]]`` — the convention of
    :func:`rdopt.codecs.video.dvc.warp`. Frames are ``B×3×H×W`` in [0, 1] on any device; the flow is computed on
    the CPU from 8-bit luma and returned on the frames' device and dtype. Not differentiable (encoder side)."""
    try:
        import cv2
    except ImportError:
        raise MotionEstimatorUnavailable(
            "rdopt-video2's encoder needs OpenCV's optical flow: pip install opencv-python-headless") from None
    presets = {"ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST, "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
               "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM}
    if preset not in presets:
        raise ValueError(f"unknown DIS preset {preset!r}; known: {', '.join(presets)}")
    if current.shape != reference.shape or current.dim() != 4:
        raise ValueError(f"frames must be two B×3×H×W tensors of one shape, got {tuple(current.shape)} and "
                         f"{tuple(reference.shape)}")
    dis = cv2.DISOpticalFlow_create(presets[preset])
    out = [torch.from_numpy(dis.calc(a, b, None)) for a, b in zip(_gray_u8(current), _gray_u8(reference))]
    return torch.stack(out).permute(0, 3, 1, 2).to(device=current.device, dtype=current.dtype)


def downsample_flow(flow: Tensor, factor: int) -> Tensor:
    """Area average of a flow field over ``factor×factor`` blocks (values stay in full-resolution pixels)."""
    return F.avg_pool2d(flow, factor) if factor > 1 else flow


def upsample_flow(flow: Tensor, factor: int) -> Tensor:
    """Bilinear upsampling of a coarse flow field by ``factor`` (values stay in full-resolution pixels)."""
    return F.interpolate(flow, scale_factor=factor, mode="bilinear", align_corners=False) if factor > 1 else flow


# ------------------------------------------------------------------------------ the motion coder
class MotionCoder(nn.Module):
    """Codes a coarse flow field: analysis ``f_w(flow, x, x̂_ref)`` at 1/4 → latent ``w`` at 1/16 (mean-scale
    hyperprior ``z_w`` at 1/64) → synthesis ``g_w(ŵ)`` = flow at 1/4 resolution, upsampled ×4."""

    scale = 4  # resolution of the analysis input and of the decoded flow

    def __init__(self, channels: int = 64, latent: int = 48, hyper: int = 32):
        super().__init__()
        from compressai.layers import GDN
        from compressai.models.utils import conv, deconv

        n, m = channels, latent
        self.config = dict(channels=n, latent=m, hyper=hyper)
        self.analysis = nn.Sequential(conv(8, n), GDN(n), conv(n, n, 3, 1), GDN(n), conv(n, m))
        self.synthesis = nn.Sequential(deconv(m, n), GDN(n, inverse=True), conv(n, n, 3, 1), nn.LeakyReLU(inplace=True),
                                       deconv(n, 2))
        self.latent = MeanScaleLatent(m, hyper)

    def analyse(self, flow: Tensor, x: Tensor, ref: Tensor) -> Tensor:
        s = self.scale
        inp = torch.cat([downsample_flow(flow, s) / FLOW_SCALE, F.avg_pool2d(x, s), F.avg_pool2d(ref, s)], dim=1)
        return self.analysis(inp)

    def coarse_flow(self, w_tilde: Tensor) -> Tensor:
        """The decoded flow at 1/4 resolution (full-resolution pixels)."""
        return self.synthesis(w_tilde) * FLOW_SCALE

    def decode_flow(self, w_tilde: Tensor) -> Tensor:
        return upsample_flow(self.coarse_flow(w_tilde), self.scale)


# ------------------------------------------------------------------- the conditional residual coder
class ConditionalResidualCoder(nn.Module):
    """The image model's transforms and hyperprior with the prediction as a condition.

    ``g_a([x − x_pred + ½, x_pred])`` — the image model's first convolution widened by three input channels
    whose weights start at zero; ``g_s(ŷ, x_pred)`` — the image model's synthesis with, after its second and
    third inverse-GDN layers (1/4 and 1/2 resolution), ``h += c_k(unshuffle_k(x_pred))`` where ``c_k`` ends
    in a zero-initialised convolution, minus ½. At initialisation the coder is the image model on the residual
    shifted to mid-grey.

    ``context=True``: the residual latent's entropy model adds a space-channel context model to the hyperprior
    (:class:`rdopt.codecs.video.parts.ContextLatent`, born at zero: :meth:`with_context` grows a trained coder
    into one that codes exactly as before).
    """

    def __init__(self, channels: int = 64, latent: int = 192, cond: int = 48, context: bool = False):
        super().__init__()
        from compressai.layers import GDN, conv3x3
        from compressai.models.utils import conv, deconv

        n, m = channels, latent
        self.config = dict(channels=n, latent=m, cond=cond, **({"context": True} if context else {}))
        self.g_a = nn.Sequential(conv(6, n), GDN(n), conv(n, n), GDN(n), conv(n, n), GDN(n), conv(n, m))
        self.g_s = nn.Sequential(deconv(m, n), GDN(n, inverse=True), deconv(n, n), GDN(n, inverse=True),
                                 deconv(n, n), GDN(n, inverse=True), deconv(n, 3))
        self.cond4 = nn.Sequential(conv3x3(48, cond), nn.LeakyReLU(inplace=True), conv3x3(cond, n))
        self.cond2 = nn.Sequential(conv3x3(12, cond), nn.LeakyReLU(inplace=True), conv3x3(cond, n))
        for c in (self.cond4, self.cond2):
            nn.init.zeros_(c[-1].weight)
            nn.init.zeros_(c[-1].bias)
        # the hyperprior of CompressAI's MeanScaleHyperprior at (N, M)
        self.latent = ContextLatent(m, n) if context else MeanScaleLatent(m, n)
        self.latent.h_a = nn.Sequential(conv3x3(m, n), nn.LeakyReLU(inplace=True), conv(n, n), nn.LeakyReLU(inplace=True),
                                        conv(n, n))
        self.latent.h_s = nn.Sequential(deconv(n, m), nn.LeakyReLU(inplace=True), deconv(m, m * 3 // 2),
                                        nn.LeakyReLU(inplace=True), conv3x3(m * 3 // 2, m * 2))

    @classmethod
    def from_image_model(cls, net: nn.Module, cond: int = 48) -> "ConditionalResidualCoder":
        """Grow the coder from a CompressAI ``MeanScaleHyperprior`` (e.g. ``rdopt-msh``): every shared weight
        copied, the new input channels and branches at zero."""
        n, m = int(net.g_a[0].weight.shape[0]), int(net.g_a[-1].weight.shape[0])
        coder = cls(n, m, cond)
        with torch.no_grad():
            w0 = net.g_a[0].weight
            coder.g_a[0].weight.zero_()
            coder.g_a[0].weight[:, :3].copy_(w0)
            coder.g_a[0].bias.copy_(net.g_a[0].bias)
            for i in range(1, len(net.g_a)):
                coder.g_a[i].load_state_dict(net.g_a[i].state_dict())
            coder.g_s.load_state_dict(net.g_s.state_dict())
            coder.latent.h_a.load_state_dict(net.h_a.state_dict())
            coder.latent.h_s.load_state_dict(net.h_s.state_dict())
            coder.latent.entropy_bottleneck = copy.deepcopy(net.entropy_bottleneck)
            coder.latent.gaussian_conditional = copy.deepcopy(net.gaussian_conditional)
        return coder

    def with_context(self) -> "ConditionalResidualCoder":
        """A coder with this one's weights whose residual latent has a space-channel context model born at zero (it
        codes as this one does until trained). Entropy-coder tables are not computed (call ``update``)."""
        coder = type(self)(**{**self.config, "context": True})
        missing, unexpected = load_state_into(coder, self.state_dict(), strict=False)
        if unexpected or any(not k.startswith("latent.context.") for k in missing):
            raise ValueError(f"with_context: weights do not carry over ({unexpected or missing})")
        return coder.to(next(self.parameters()).device)

    offset = 0.5
    """The residual is coded around mid-grey, ``x − x_pred + 0.5``: the image model was trained on images in
    [0, 1], not on signals centred at zero."""

    def analyse(self, x: Tensor, prediction: Tensor) -> Tensor:
        return self.g_a(torch.cat([x - prediction + self.offset, prediction], dim=1))

    def synthesize(self, y_tilde: Tensor, prediction: Tensor) -> Tensor:
        """The residual ``r̂ = g_s(ỹ, x_pred)``."""
        g = self.g_s
        h = g[3](g[2](g[1](g[0](y_tilde))))
        h = h + self.cond4(F.pixel_unshuffle(prediction, 4))
        h = g[5](g[4](h))
        h = h + self.cond2(F.pixel_unshuffle(prediction, 2))
        return g[6](h) - self.offset


# ------------------------------------------------------------------------------- the P-frame codec
class Video2PFrameCodec(HyperpriorPFrame):
    """The P-frame codec of ``rdopt-video2`` (module docstring): a
    :class:`rdopt.codecs.video.pframe.PFrameCodec` with encoder-side DIS motion and a conditional residual coder."""

    names = ("w", "z_w", "y", "z_y")
    pad_multiple = 16
    """Frames are padded to a multiple of 16 (the latents' stride), not 64: each hyper-synthesis output is cropped to
    its latent (:func:`rdopt.codecs.entropy.crop_to`), and every transform works at any multiple of 16 (the
    motion coder's at 1/4, 1/8, 1/16; the residual coder's conditioning at 1/4 and 1/2)."""

    def __init__(self, motion: MotionCoder | None = None, residual: ConditionalResidualCoder | None = None,
                 dis_preset: str = "medium"):
        super().__init__()
        self.motion = motion or MotionCoder()
        self.residual = residual or ConditionalResidualCoder()
        self.dis_preset = dis_preset

    @property
    def config(self) -> dict:
        return {"motion": dict(self.motion.config), "residual": dict(self.residual.config)}

    @property
    def motion_latent(self) -> MeanScaleLatent:
        return self.motion.latent

    @property
    def residual_latent(self) -> MeanScaleLatent:
        return self.residual.latent

    def encoder_modules(self) -> list[nn.Module]:
        return [self.motion.analysis, self.motion.latent.h_a, self.residual.g_a, self.residual.latent.h_a]

    # -------------------------------------------------------------------- amortized inference
    def estimate_flow(self, x: Tensor, ref: Tensor) -> Tensor:
        return dis_flow(x, ref, self.dis_preset)

    def infer_motion(self, x: Tensor, ref: Tensor, flow: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Amortized ``(w, z_w)`` from the estimated flow (DIS from ``x`` to ``ref`` unless given) and the frames."""
        self.check_size(x)
        if flow is None:
            flow = self.estimate_flow(x, ref)
        w = self.motion.analyse(flow, x, ref)
        return w, self.motion.latent.hyper_analysis(w)

    def infer_residual(self, x: Tensor, motion: MotionEvaluation) -> tuple[Tensor, Tensor]:
        y = self.residual.analyse(x, motion.prediction)
        return y, self.residual.latent.hyper_analysis(y)

    # -------------------------------------------------------------------- decoder side
    def predict(self, w_tilde: Tensor, ref: Tensor) -> tuple[Tensor, Tensor]:
        """``(flow, prediction)``; the prediction is the warp itself."""
        flow = self.motion.decode_flow(w_tilde)
        return flow, warp(ref, flow)

    def evaluate_motion(self, v: Tensor, h: Tensor, ref: Tensor, relax: Mapping[str, Relaxation]) -> MotionEvaluation:
        w_t, z_t, bits_w, bits_z = self._motion_pair(v, h, relax)
        flow, prediction = self.predict(w_t, ref)
        return MotionEvaluation(w_t, z_t, bits_w, bits_z, prediction, {"flow": flow})

    def evaluate_residual(self, v: Tensor, h: Tensor, relax: Mapping[str, Relaxation],
                          motion: MotionEvaluation) -> ResidualEvaluation:
        y_t, z_t, bits_y, bits_z = self._residual_pair(v, h, relax)
        pred = motion.prediction
        return ResidualEvaluation(y_t, z_t, bits_y, bits_z, pred + self.residual.synthesize(y_t, pred))

    def latent_shapes(self, height: int, width: int) -> dict[str, tuple[int, int, int]]:
        m, r = self.motion.config, self.residual.config
        h16, w16, h64, w64 = height // 16, width // 16, -(-height // 64), -(-width // 64)
        return {"w": (m["latent"], h16, w16), "z_w": (m["hyper"], h64, w64),
                "y": (r["latent"], h16, w16), "z_y": (r["channels"], h64, w64)}

    # -------------------------------------------------------------------- checkpoints
    def save_shipped(self, path: str | os.PathLike, meta: Mapping[str, int | float | str] | None = None,
                     levels: int = 256) -> None:
        save_shipped(self, path, self.config, meta, levels)

    @classmethod
    def from_parts(cls, motion_state: Mapping[str, Tensor], motion_config: Mapping, residual_state: Mapping[str, Tensor],
                   residual_config: Mapping) -> "Video2PFrameCodec":
        motion, residual = MotionCoder(**motion_config), ConditionalResidualCoder(**residual_config)
        load_state_into(motion, motion_state)
        load_state_into(residual, residual_state)
        return cls(motion, residual)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Video2PFrameCodec":
        state, config = read_part(path)
        codec = cls(MotionCoder(**config.get("motion", {})), ConditionalResidualCoder(**config.get("residual", {})))
        load_state_into(codec, state)
        if not any(k.endswith("_quantized_cdf") and v.numel() for k, v in state.items()):
            codec.update()
        return codec


def assemble(motion_path: str | os.PathLike, residual_path: str | os.PathLike, out: str | os.PathLike,
             meta: Mapping | None = None) -> Video2PFrameCodec:
    """A P-frame weights file from a motion-stage and a residual-stage export (the start of the joint stage)."""
    ms, mc = read_part(motion_path)
    rs, rc = read_part(residual_path)
    codec = Video2PFrameCodec.from_parts(ms, mc, rs, rc)
    codec.save_shipped(out, meta=dict(meta or {}))
    return codec


def weights_path(quality: int):
    from ..image.loading import WEIGHTS_DIR

    return WEIGHTS_DIR / f"{FAMILY}-q{quality}.pt"


def load_video2(quality: int | None = None, lmbda: float | None = None, checkpoint: str | os.PathLike | None = None,
                device=None) -> VideoCodec:
    """``rdopt-video2`` at a quality 1–4, or a P-frame weights file (its λ and I-frame quality read from its meta),
    in eval mode with its coder tables ready. Never downloads."""
    from ..registry import ModelUnavailable, choose_quality

    if checkpoint is None:
        quality = 2 if quality is None else quality
        if quality not in VIDEO2_LAMBDAS:
            raise ModelUnavailable(f"{FAMILY} has qualities 1-{len(VIDEO2_LAMBDAS)}, got {quality}")
        path = weights_path(quality)
        if not path.is_file():
            raise ModelUnavailable(f"{FAMILY} quality {quality} is not trained yet (no {path.name}); train it with "
                                   "benchmarks/train/train_video2.sh or pass --checkpoint FILE")
    else:
        path = checkpoint
    return load_shipped(
        FAMILY, path, Video2PFrameCodec.load, quality=quality, from_checkpoint=checkpoint is not None, lmbda=lmbda,
        device=device, trained_lmbda=lambda meta: float(meta.get("lmbda", VIDEO2_LAMBDAS.get(quality or 0, 0.013))),
        iframe_quality=lambda meta, lam: int(meta.get("iframe_quality", 0))
        or VIDEO2_IFRAME_QUALITY[choose_quality(FAMILY, quality, lmbda=lam)])


def read_part(path: str | os.PathLike) -> tuple[dict[str, Tensor], dict]:
    """``(state_dict, config)`` of a weights file (``{"state_dict", "config", …}``) or of a training state
    (``{"model", "config", "step", …}``), loaded with ``weights_only=True``."""
    import json

    raw = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(raw, dict):
        raise ValueError(f"{path} is not a weights file")
    if "state_dict" in raw:
        return raw["state_dict"], dict(raw.get("config") or {})
    if "model" in raw:
        cfg = raw.get("config")
        return raw["model"], (json.loads(cfg) if isinstance(cfg, str) else dict(cfg or {}))
    return raw, {}


__all__ = ["FAMILY", "FLOW_SCALE", "VIDEO2_LAMBDAS", "VIDEO2_IFRAME_QUALITY", "MotionEstimatorUnavailable", "dis_flow",
           "downsample_flow", "upsample_flow", "MotionCoder", "ConditionalResidualCoder", "Video2PFrameCodec",
           "assemble", "load_video2", "read_part", "weights_path"]
