"""Tiny random-weight video codecs and test clips (shared by the video tests)."""

import torch

from rdopt.codecs.image.hyperprior import HyperpriorAdapter
from rdopt.codecs.video.dvc import DVCPFrameCodec
from rdopt.codecs.video.gop import VideoCodec

TINY = dict(motion_channels=8, motion_latent=8, residual_channels=8, residual_latent=8, hyper_motion=8,
            hyper_residual=8, mc_channels=8)


def tiny_iframe(seed=0) -> HyperpriorAdapter:
    """A tiny random-weight I-frame codec (N = M = 8, a short scale table), frozen, drawn after ``manual_seed(seed)``."""
    from compressai.models import MeanScaleHyperprior

    from rdopt.codecs.image.loading import fine_scale_table

    torch.manual_seed(seed)
    net = MeanScaleHyperprior(N=8, M=8)
    net.update(scale_table=fine_scale_table(16), force=True)  # a short table: fast to build
    iframe = HyperpriorAdapter(net, model_id="test", lmbda=0.0067, quality=3).eval()
    for p in iframe.parameters():
        p.requires_grad_(False)
    return iframe


def tiny_video_codec(dtype=torch.float32, seed=0, quality=0) -> VideoCodec:
    from rdopt.codecs.image.loading import fine_scale_table

    iframe = tiny_iframe(seed)
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


# ------------------------------------------------------------------ a hand-made codec for skip mode
BLOCKMEAN_STEP = 255.0  # the residual's 4×4 block means are coded in 8-bit steps


def _blockmean_pframe():
    """A hand-made P-frame codec whose behaviour is known (built inside a function: its classes need CompressAI).

    Motion: a latent per 16×16 block decoded to a flow of that many pixels (zero from the amortized encoder, so
    the prediction is the reference). Residual: the 4×4 block means of ``x − prediction`` in steps of
    1/:data:`BLOCKMEAN_STEP` (a latent of stride 4, finer than a skip block), added back block by block. Both
    latents have a hyperprior whose synthesis is a constant (mean 0; scale 2 for motion, 0.5 for the residual):
    a residual of ±1 step (noise) costs about 2 bits more than 0, a changed region is corrected at a high price."""
    import torch.nn.functional as F
    from torch import nn

    from rdopt.codecs.image.loading import fine_scale_table
    from rdopt.codecs.video.parts import HyperpriorPFrame, MeanScaleLatent, warp
    from rdopt.codecs.video.pframe import MotionEvaluation, ResidualEvaluation

    class BlockMeanPFrame(HyperpriorPFrame):
        names = ("w", "z_w", "y", "z_y")
        pad_multiple = 64

        def __init__(self):
            super().__init__()
            self.motion_latent = MeanScaleLatent(2, 2)
            self.residual_latent = MeanScaleLatent(3, 2)
            self.res_a = nn.Conv2d(3, 3, 4, 4, bias=False)
            self.res_s = nn.ConvTranspose2d(3, 3, 4, 4, bias=False)
            with torch.no_grad():
                eye = torch.eye(3)[:, :, None, None].expand(3, 3, 4, 4)
                self.res_a.weight.copy_(eye * BLOCKMEAN_STEP / 16.0)
                self.res_s.weight.copy_(eye / BLOCKMEAN_STEP)
                for lat, scale in ((self.motion_latent, 2.0), (self.residual_latent, 0.5)):
                    last = lat.h_s[-1]
                    last.weight.zero_()
                    last.bias.zero_()
                    last.bias[: lat.channels] = scale
            self.update(fine_scale_table(16))

        def infer_motion(self, x, ref):
            w = torch.zeros(x.shape[0], 2, x.shape[-2] // 16, x.shape[-1] // 16, dtype=x.dtype, device=x.device)
            return w, self.motion_latent.hyper_analysis(w)

        def evaluate_motion(self, v, h, ref, relax):
            w_t, z_t, bits, hbits = self._motion_pair(v, h, relax)
            flow = F.interpolate(w_t, scale_factor=16, mode="nearest")
            return MotionEvaluation(w_t, z_t, bits, hbits, warp(ref, flow), {"flow": flow})

        def infer_residual(self, x, motion):
            y = self.res_a(x - motion.prediction)
            return y, self.residual_latent.hyper_analysis(y)

        def evaluate_residual(self, v, h, relax, motion):
            y_t, z_t, bits, hbits = self._residual_pair(v, h, relax)
            return ResidualEvaluation(y_t, z_t, bits, hbits, motion.prediction + self.res_s(y_t))

        def latent_shapes(self, height, width):
            return {"w": (2, height // 16, width // 16), "z_w": (2, height // 64, width // 64),
                    "y": (3, height // 4, width // 4), "z_y": (2, height // 16, width // 16)}

        def encoder_modules(self):
            return [self.res_a, self.motion_latent.h_a, self.residual_latent.h_a]

    return BlockMeanPFrame


def blockmean_video_codec(quality=None, device=None) -> VideoCodec:
    """The embedded image model (quality 5) for I-frames and the hand-made block-mean P-frame codec
    (:func:`_blockmean_pframe`); seeded, so every process builds the same codec. Also a ``--codec
    tests/video_fixtures.py:blockmean_video_codec`` factory."""
    from rdopt.codecs.image.loading import load_model

    torch.manual_seed(7)
    pframe = _blockmean_pframe()().eval()
    iframe = load_model("rdopt-msh", quality=5)
    codec = VideoCodec(iframe, pframe, family="test-blockmean", quality=1, lmbda=0.013).eval()
    for p in codec.parameters():
        p.requires_grad_(False)
    return codec.to(device) if device is not None else codec


def smooth_background(h=64, w=96):
    """A smooth uint8 RGB frame (sinusoids): the image model codes it well."""
    import numpy as np

    yy, xx = np.mgrid[0:h, 0:w] / 16.0
    bg = np.stack([128 + 60 * np.sin(xx * 0.9 + yy * 0.3), 128 + 60 * np.cos(yy * 0.7),
                   128 + 50 * np.sin((xx + yy) * 0.5)], -1)
    return np.clip(np.rint(bg), 0, 255).astype(np.uint8)


def object_clip(n=4, h=64, w=96, size=20, step=(2, 5), noise=3.0, seed=0):
    """``n`` frames of a flat two-colour square moving over :func:`smooth_background`, with fresh Gaussian noise
    of ``noise`` levels in every frame; returns ``(frames, [(top, left) of the square per frame])``."""
    import numpy as np

    rng = np.random.default_rng(seed)
    bg = smooth_background(h, w)
    frames, where = [], []
    for k in range(n):
        f = np.clip(np.rint(bg + rng.normal(0.0, noise, bg.shape)), 0, 255).astype(np.uint8)
        y, x = 8 + step[0] * k, 8 + step[1] * k
        f[y:y + size, x:x + size] = (230, 40, 40)
        f[y + 4:y + size - 4, x + 4:x + size - 4] = (40, 200, 60)
        frames.append(f)
        where.append((y, x))
    return frames, where
