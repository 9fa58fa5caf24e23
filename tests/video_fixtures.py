"""Tiny random-weight video codecs and test clips (shared by the video tests)."""

import torch

from rdopt.codecs.image.hyperprior import HyperpriorAdapter
from rdopt.codecs.video.dvc import DVCPFrameCodec
from rdopt.codecs.video.gop import VideoCodec

TINY = dict(motion_channels=8, motion_latent=8, residual_channels=8, residual_latent=8, hyper_motion=8,
            hyper_residual=8, mc_channels=8)


def tiny_video_codec(dtype=torch.float32, seed=0, quality=0) -> VideoCodec:
    from compressai.models import MeanScaleHyperprior

    from rdopt.codecs.image.loading import fine_scale_table

    torch.manual_seed(seed)
    net = MeanScaleHyperprior(N=8, M=8)
    net.update(scale_table=fine_scale_table(16), force=True)  # a short table: fast to build
    iframe = HyperpriorAdapter(net, model_id="test", lmbda=0.0067, quality=3).eval()
    for p in iframe.parameters():
        p.requires_grad_(False)
    pframe = DVCPFrameCodec(**TINY).eval()
    with torch.no_grad():  # a visible flow and MC correction, so that every path carries gradient
        pframe.motion_synthesis[-1].weight.normal_(0.0, 0.5)
        pframe.mc.out[0].weight.normal_(0.0, 0.1)
    pframe.update(fine_scale_table(16))
    return VideoCodec(iframe, pframe, family="rdopt-video", quality=quality, lmbda=512.0 / 255.0**2).to(dtype)


def tiny_frames(b=1, t=3, size=64, dtype=torch.float32, seed=1):
    g = torch.Generator().manual_seed(seed)
    base = torch.rand(b, 3, size + 8, size + 8, generator=g, dtype=dtype)
    base = torch.nn.functional.avg_pool2d(base, 3, 1, 1)  # some spatial correlation
    return torch.stack([base[:, :, k: k + size, 2 * k: 2 * k + size] for k in range(t)], 1)


def tiny_video_checkpoint(path, seed=0, lmbda=512.0, iframe_quality=2):
    """A tiny random-weight P-frame codec saved as ``rdopt train --video`` exports one (``save_shipped``);
    ``load_video_codec(checkpoint=path)`` pairs it with the embedded image model of ``iframe_quality``."""

    torch.manual_seed(seed)
    pframe = DVCPFrameCodec(**TINY).eval()
    with torch.no_grad():
        pframe.motion_synthesis[-1].weight.normal_(0.0, 0.5)
        pframe.mc.out[0].weight.normal_(0.0, 0.1)
    pframe.save_shipped(path, meta={"lmbda": lmbda, "iframe_quality": iframe_quality}, levels=16)
    return path


def moving_clip(n=5, h=60, w=90, seed=3):
    """``n`` uint8 RGB frames (H×W×3) of a smooth pattern panning right and down."""
    import numpy as np

    rng = np.random.default_rng(seed)
    base = rng.random((h + 2 * n + 8, w + 3 * n + 8, 3))
    for _ in range(3):  # smooth it a little
        base = (base + np.roll(base, 1, 0) + np.roll(base, 1, 1) + np.roll(base, -1, 0) + np.roll(base, -1, 1)) / 5
    lo, hi = base.min(), base.max()
    img = (base - lo) / (hi - lo) * 255.0
    return [np.clip(np.rint(img[2 * k : 2 * k + h, 3 * k : 3 * k + w]), 0, 255).astype(np.uint8) for k in range(n)]


def tiny_clip_and_checkpoint(d, frames: int = 5, h: int = 60, w: int = 90):
    """``(checkpoint, clip)``: a tiny P-frame checkpoint and a Y4M clip of ``moving_clip`` frames in folder ``d``."""
    from rdopt.data.video import write_video

    ckpt = tiny_video_checkpoint(d / "p.pt")
    clip = d / "clip.y4m"
    write_video(clip, moving_clip(frames, h, w))
    return ckpt, clip
