"""The video task of ``rdopt train --video``: the embedded P-frame codec trained with the GoP-unrolled
objective (:class:`rdopt.losses.video.GopObjective`) on clips (:class:`rdopt.data.clips.ClipSampler`),
frame 0 coded by the frozen embedded image model.

Stages, as in DVC: pairs (``frames=2``) with a warm-up term on the motion-compensated prediction
(``prediction_weight`` during the first ``prediction_steps``), then clips of ``frames ≥ 4`` (≥ 3
P-frames unrolled through the codec's own references) started from the pair weights (``init``)."""

from __future__ import annotations

from pathlib import Path

import torch

from ..codecs.image.loading import load_model
from ..codecs.video.dvc import FAMILY, DVCPFrameCodec, iframe_quality_for
from ..codecs.video.gop import VideoCodec
from ..data.clips import ClipSampler
from ..data.sources import IMAGE_EXTS
from ..data.video import CONTAINER_SUFFIXES
from ..losses.video import GopObjective
from .config import TrainConfig

VIDEO_SUFFIXES = CONTAINER_SUFFIXES | {".y4m", ".yuv"}


def video_sources(path: str) -> list[str]:
    """The videos a ``--data`` path names: a video file, a folder of frames, or a folder holding video
    files and/or frame folders."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"--data: no such file or folder: {path}")
    if p.is_file():
        return [str(p)]
    children = sorted(p.iterdir())
    if any(c.is_file() and c.suffix.lower() in IMAGE_EXTS for c in children):
        return [str(p)]  # a frame folder
    found = [str(c) for c in children if (c.is_file() and c.suffix.lower() in VIDEO_SUFFIXES) or c.is_dir()]
    if not found:
        raise ValueError(f"--data: {path} holds no video file, frame folder or frames")
    return found


def clip_sampler(cfg: TrainConfig, seed: int, **kwargs) -> ClipSampler:
    """The training clips a config names: its ``--data`` videos (or none), bigbuckbunny unless left out, the training
    photos and ``--extra-data`` for synthetic camera motion."""
    videos = video_sources(cfg.data) if cfg.data else []
    return ClipSampler.from_sources(size=cfg.crop, frames=cfg.frames, seed=seed,
                                    photo_folders=[cfg.extra_data] if cfg.extra_data else [],
                                    video_paths=videos, bigbuckbunny=cfg.bigbuckbunny,
                                    synthetic_share=cfg.synthetic_share, **kwargs)


class GopLoss:
    """One training step's terms of :class:`rdopt.losses.video.GopObjective` for a video codec (the objective is
    rebuilt when the loop hands over another noise generator)."""

    def __init__(self, codec: VideoCodec, device: torch.device):
        self.codec, self.device = codec, device
        self._objective: GopObjective | None = None
        self._generator: torch.Generator | None = None

    def __call__(self, clips: torch.Tensor, generator: torch.Generator, lmbda: float,
                 prediction_weight: float = 0.0) -> dict[str, torch.Tensor]:
        if self._objective is None or self._generator is not generator:
            self._objective = GopObjective(self.codec, generator=generator)
            self._generator = generator
        self._objective.prediction_weight = prediction_weight
        rd = self._objective(clips.to(self.device), lmbda)
        return {"loss": rd.loss, "bpp": rd.bpp[:, 1:].mean().detach(), "mse": rd.mse[:, 1:].mean().detach(),
                "bpp_i": rd.bpp[:, 0].mean().detach(), "mse_pred": rd.prediction_mse.mean().detach()}


class VideoTask:
    """Train :class:`rdopt.codecs.video.dvc.DVCPFrameCodec` at ``cfg.lmbda`` (CompressAI's unit)."""

    def __init__(self, cfg: TrainConfig, device: torch.device):
        if cfg.crop % DVCPFrameCodec.pad_multiple:
            raise ValueError(f"video crops must be a multiple of {DVCPFrameCodec.pad_multiple} pixels, got {cfg.crop}")
        if cfg.frames < 2:
            raise ValueError(f"video clips need at least 2 frames (an I- and a P-frame), got {cfg.frames}")
        self.cfg = cfg
        self.device = device
        q = cfg.iframe_quality or iframe_quality_for(cfg.lmbda)
        iframe = load_model("rdopt-msh", quality=q, device=device)
        for p in iframe.parameters():
            p.requires_grad_(False)
        pframe = DVCPFrameCodec.load(cfg.init) if cfg.init else DVCPFrameCodec()
        self.module = pframe.to(device).train()
        self.codec = VideoCodec(iframe, pframe, family=FAMILY, lmbda=cfg.lmbda)
        self.iframe_quality = q
        self.description = f"train video λ={cfg.lmbda:g} T={cfg.frames}"
        self._loss = GopLoss(self.codec, device)

    def sampler(self, seed: int) -> ClipSampler:
        return clip_sampler(self.cfg, seed)

    def loss(self, clips: torch.Tensor, generator: torch.Generator, step: int) -> dict[str, torch.Tensor]:
        cfg = self.cfg
        return self._loss(clips, generator, cfg.lmbda,
                          cfg.prediction_weight if step < cfg.prediction_steps else 0.0)

    def aux_loss(self) -> torch.Tensor:
        return self.module.aux_loss()

    def export(self, path: str) -> None:
        self.module.eval()
        # rdopt-video's weight files store λ in DVC's unit (MSE of [0, 1] RGB); its loader converts back
        self.module.save_shipped(path, meta={"lmbda": float(self.cfg.lmbda) * 255.0**2,
                                             "iframe_quality": int(self.iframe_quality)})
