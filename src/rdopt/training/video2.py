"""Training stages of ``rdopt-video2`` (:mod:`rdopt.codecs.video.video2`) for the one training loop.

* ``motion`` — the motion coder alone, on pairs ``(x_0, x_1)`` with the reference ``x_0``:
  ``L = R_w / (H·W) + λ·MSE(warp(x_0, floŵ), x_1) + γ·‖floŵ_¼ − DIS_¼‖² / FLOW_SCALE²`` — the rate of the motion
  latents, the warp error of the decoded flow (λ·255² in CompressAI's unit), and, while ``step < flow_steps``,
  a supervised term pulling the decoded coarse flow towards the 4×-area-averaged DIS flow (the cheap target that
  keeps the motion path from collapsing to "no motion" before the warp term has taught it what motion is worth).
* ``residual`` — the conditional residual coder grown from the embedded image model of the same λ, on pairs:
  the reference is the image model's hard reconstruction of ``x_0`` (the artefacts a decoder sees), the
  prediction the warp of it by the DIS flow averaged over 8×8 blocks and upsampled (a stand-in for a coded
  coarse flow); ``L = R_y / (H·W) + λ·255²·MSE(x_pred + r̂, x_1)``.
* ``joint`` — the whole P-frame codec end to end over unrolled clips (:class:`rdopt.losses.video.GopObjective`,
  I-frame = the frozen image model), from the two pretrained parts.

Rounding is relaxed with additive uniform noise (the single-sample ELBO of paper 003 §2).
"""

from __future__ import annotations

import torch

from ..codecs.image.loading import COMPRESSAI_LAMBDAS, load_model
from ..codecs.video.dvc import warp
from ..codecs.video.gop import VideoCodec
from ..codecs.video.parts import load_state_into
from ..codecs.video.video2 import (FAMILY, FLOW_SCALE, ConditionalResidualCoder, MotionCoder, Video2PFrameCodec,
                                   dis_flow, downsample_flow, read_part, upsample_flow)
from ..data.clips import ClipSampler
from ..relax.rounding import uniform_noise
from .config import TrainConfig
from .video import GopLoss, clip_sampler

STAGES = ("motion", "residual", "joint")


def iframe_quality_of(lmbda: float) -> int:
    """The embedded image model's quality with the λ closest to ``lmbda`` (CompressAI units, log scale)."""
    import math

    from ..codecs.image.loading import EMBEDDED_QUALITIES

    return min(EMBEDDED_QUALITIES, key=lambda q: abs(math.log(COMPRESSAI_LAMBDAS[q] / lmbda)))


class _Video2Task:
    def __init__(self, cfg: TrainConfig, device: torch.device):
        if cfg.crop % 64:
            raise ValueError(f"video crops must be a multiple of 64 pixels, got {cfg.crop}")
        if cfg.frames < 2:
            raise ValueError(f"video clips need at least 2 frames, got {cfg.frames}")
        self.cfg = cfg
        self.device = device

    def sampler(self, seed: int) -> ClipSampler:
        return clip_sampler(self.cfg, seed, layer_share=self.cfg.layer_share, frame_steps=(1, 2, 3))

    def _export(self, path: str, module: torch.nn.Module, config: dict, meta: dict) -> None:
        import os
        from pathlib import Path

        from ..codecs.image.loading import fine_scale_table

        module = module.cpu().eval()
        with torch.no_grad():
            for p in module.parameters():
                p.copy_(p.half().float())
        for m in module.modules():
            if hasattr(m, "update") and hasattr(m, "entropy_bottleneck"):
                m.update(scale_table=fine_scale_table(), force=True)
        params = {n for n, _ in module.named_parameters()}
        state = {k: (v.half() if k in params else v) for k, v in module.state_dict().items()}
        tmp = Path(str(path) + ".tmp")
        torch.save({"state_dict": state, "config": config, "meta": meta}, tmp)
        os.replace(tmp, path)


class MotionStage(_Video2Task):
    """The ``motion`` stage (module docstring)."""

    def __init__(self, cfg: TrainConfig, device: torch.device):
        super().__init__(cfg, device)
        self.module = MotionCoder().to(device)
        if cfg.init:
            state, _ = read_part(cfg.init)
            load_state_into(self.module, state)
        self.module.train()
        self.description = f"video2 motion λ={cfg.lmbda:g}"

    def loss(self, clips: torch.Tensor, generator: torch.Generator, step: int) -> dict[str, torch.Tensor]:
        cfg = self.cfg
        noise = uniform_noise(generator)
        ref, x = clips[:, 0], clips[:, 1]
        flow = dis_flow(x, ref)
        m = self.module
        w = m.analyse(flow, x, ref)
        w_t, _, bits_w, bits_z = m.latent.evaluate(w, m.latent.hyper_analysis(w), noise, noise)
        coarse = m.coarse_flow(w_t)
        pred = warp(ref, upsample_flow(coarse, m.scale))
        npix = x.shape[-2] * x.shape[-1]
        bpp = (bits_w + bits_z) / npix
        mse = (pred - x).pow(2).flatten(1).mean(1)
        flow_err = (coarse - downsample_flow(flow, m.scale)).pow(2).flatten(1).mean(1) / FLOW_SCALE**2
        gamma = cfg.flow_weight if step < cfg.flow_steps else 0.0
        loss = (bpp + cfg.lmbda * 255.0**2 * mse + gamma * flow_err).mean()
        with torch.no_grad():
            mse_dis = (warp(ref, flow) - x).pow(2).flatten(1).mean(1).mean()
            mse_copy = (ref - x).pow(2).flatten(1).mean(1).mean()
        return {"loss": loss, "bpp": bpp.mean().detach(), "mse": mse.mean().detach(), "mse_dis": mse_dis,
                "mse_copy": mse_copy, "flow_err": flow_err.mean().detach()}

    def aux_loss(self) -> torch.Tensor:
        return self.module.latent.aux_loss()

    def export(self, path: str) -> None:
        self._export(path, self.module, dict(self.module.config), {"stage": "motion", "lmbda": float(self.cfg.lmbda)})


class ResidualStage(_Video2Task):
    """The ``residual`` stage (module docstring)."""

    def __init__(self, cfg: TrainConfig, device: torch.device):
        super().__init__(cfg, device)
        q = cfg.iframe_quality or iframe_quality_of(cfg.lmbda)
        self.iframe = load_model("rdopt-msh", quality=q, device=device)
        self.iframe_quality = q
        if cfg.init:
            state, config = read_part(cfg.init)
            self.module = ConditionalResidualCoder(**config)
            load_state_into(self.module, state)
        else:
            self.module = ConditionalResidualCoder.from_image_model(self.iframe.net)
        self.module.to(device).train()
        self.description = f"video2 residual λ={cfg.lmbda:g}"

    @torch.no_grad()
    def prediction(self, ref_frame: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(reference, prediction)``: the image model's hard reconstruction of ``ref_frame`` and its warp by
        the DIS flow averaged over 8×8 blocks."""
        lat = self.iframe.quantize(self.iframe.amortize(ref_frame))
        ref = self.iframe.reconstruct(lat)
        coarse = upsample_flow(downsample_flow(dis_flow(x, ref), 8), 8)
        return ref, warp(ref, coarse)

    def loss(self, clips: torch.Tensor, generator: torch.Generator, step: int) -> dict[str, torch.Tensor]:
        noise = uniform_noise(generator)
        x = clips[:, 1]
        ref, pred = self.prediction(clips[:, 0], x)
        r = self.module
        y = r.analyse(x, pred)
        y_t, _, bits_y, bits_z = r.latent.evaluate(y, r.latent.hyper_analysis(y), noise, noise)
        x_hat = pred + r.synthesize(y_t, pred)
        npix = x.shape[-2] * x.shape[-1]
        bpp = (bits_y + bits_z) / npix
        mse = (x_hat - x).pow(2).flatten(1).mean(1)
        loss = (bpp + self.cfg.lmbda * 255.0**2 * mse).mean()
        return {"loss": loss, "bpp": bpp.mean().detach(), "mse": mse.mean().detach(),
                "mse_pred": (pred - x).pow(2).flatten(1).mean(1).mean()}

    def aux_loss(self) -> torch.Tensor:
        return self.module.latent.aux_loss()

    def export(self, path: str) -> None:
        self._export(path, self.module, dict(self.module.config),
                     {"stage": "residual", "lmbda": float(self.cfg.lmbda), "iframe_quality": self.iframe_quality})


class JointStage(_Video2Task):
    """The ``joint`` stage (module docstring): the whole P-frame codec (``init``: a P-frame weights file, e.g. from
    :func:`rdopt.codecs.video.video2.assemble`) over unrolled clips, the I-frame coded by the frozen image model."""

    def __init__(self, cfg: TrainConfig, device: torch.device):
        super().__init__(cfg, device)
        if not cfg.init:
            raise ValueError("the joint stage starts from a P-frame weights file (--init): assemble the motion and "
                             "residual stages' exports first")
        q = cfg.iframe_quality or iframe_quality_of(cfg.lmbda)
        iframe = load_model("rdopt-msh", quality=q, device=device)
        for p in iframe.parameters():
            p.requires_grad_(False)
        self.iframe_quality = q
        self.module = Video2PFrameCodec.load(cfg.init).to(device).train()
        self.codec = VideoCodec(iframe, self.module, family=FAMILY, lmbda=cfg.lmbda)
        self.description = f"video2 joint λ={cfg.lmbda:g} T={cfg.frames}"
        self._loss = GopLoss(self.codec, device)

    def loss(self, clips: torch.Tensor, generator: torch.Generator, step: int) -> dict[str, torch.Tensor]:
        return self._loss(clips, generator, self.cfg.lmbda)

    def aux_loss(self) -> torch.Tensor:
        return self.module.aux_loss()

    def export(self, path: str) -> None:
        self.module.save_shipped(path, meta={"lmbda": float(self.cfg.lmbda), "iframe_quality": int(self.iframe_quality)})


def make_stage(cfg: TrainConfig, device: torch.device):
    if cfg.stage == "motion":
        return MotionStage(cfg, device)
    if cfg.stage == "residual":
        return ResidualStage(cfg, device)
    if cfg.stage == "joint":
        return JointStage(cfg, device)
    raise ValueError(f"unknown rdopt-video2 training stage {cfg.stage!r}; known: {', '.join(STAGES)}")


__all__ = ["STAGES", "MotionStage", "ResidualStage", "JointStage", "make_stage", "iframe_quality_of"]
