"""A P-frame codec written outside rdopt, from docs/video_codecs.md alone: a translation-only motion model (one
motion vector per 16×16 block, upsampled bilinearly) and a plain residual coder, both latents with a mean-scale
hyperprior from rdopt's public building blocks. Its weights are random but seeded, so every process builds the
same codec (and the same weight hash). Reached by tests as ``--codec tests/user_codec.py:make_codec`` and through
the ``rdopt.codecs`` entry-point group (:func:`entry`)."""

import torch
import torch.nn.functional as F
from torch import nn

from rdopt.codecs.registry import CodecEntry
from rdopt.codecs.video.gop import VideoCodec
from rdopt.codecs.video.parts import HyperpriorPFrame, MeanScaleLatent, warp
from rdopt.codecs.video.pframe import MotionEvaluation, ResidualEvaluation

NAME = "toy-translate"
LMBDA = 0.013


class TranslatePFrame(HyperpriorPFrame):
    names = ("mv", "mv_h", "res", "res_h")
    pad_multiple = 64

    def __init__(self, c: int = 8):
        super().__init__()
        self.motion_analysis = nn.Sequential(nn.Conv2d(6, c, 5, 4, 2), nn.ReLU(), nn.Conv2d(c, c, 5, 4, 2))
        self.motion_synthesis = nn.Conv2d(c, 2, 1)
        self.residual_analysis = nn.Sequential(nn.Conv2d(3, c, 5, 4, 2), nn.ReLU(), nn.Conv2d(c, c, 5, 4, 2))
        self.residual_synthesis = nn.Sequential(nn.ConvTranspose2d(c, c, 8, 4, 2), nn.ReLU(),
                                                nn.ConvTranspose2d(c, 3, 8, 4, 2))
        self.motion_latent = MeanScaleLatent(c, c)
        self.residual_latent = MeanScaleLatent(c, c)

    def infer_motion(self, x, ref):
        v = self.motion_analysis(torch.cat([x, ref], 1))
        return v, self.motion_latent.hyper_analysis(v)

    def evaluate_motion(self, v, h, ref, relax):
        v_t, h_t, bits, hbits = self._motion_pair(v, h, relax)
        flow = F.interpolate(self.motion_synthesis(v_t), scale_factor=16, mode="bilinear", align_corners=False)
        return MotionEvaluation(v_t, h_t, bits, hbits, warp(ref, flow), {"flow": flow})

    def infer_residual(self, x, motion):
        v = self.residual_analysis(x - motion.prediction)
        return v, self.residual_latent.hyper_analysis(v)

    def evaluate_residual(self, v, h, relax, motion):
        v_t, h_t, bits, hbits = self._residual_pair(v, h, relax)
        return ResidualEvaluation(v_t, h_t, bits, hbits, motion.prediction + self.residual_synthesis(v_t))

    def latent_shapes(self, height, width):
        c = self.motion_latent.channels
        return {"mv": (c, height // 16, width // 16), "mv_h": (c, height // 64, width // 64),
                "res": (c, height // 16, width // 16), "res_h": (c, height // 64, width // 64)}

    def encoder_modules(self):
        return [self.motion_analysis, self.motion_latent.h_a, self.residual_analysis, self.residual_latent.h_a]


def make_codec(quality=None, device=None):
    """The factory ``--codec FILE.py:make_codec`` calls: a VideoCodec of a tiny image model and the P-frame codec."""
    from compressai.models import MeanScaleHyperprior

    from rdopt.codecs.image.hyperprior import HyperpriorAdapter
    from rdopt.codecs.image.loading import fine_scale_table

    torch.manual_seed(1234)
    net = MeanScaleHyperprior(N=8, M=8)
    net.update(scale_table=fine_scale_table(16), force=True)
    iframe = HyperpriorAdapter(net, model_id="toy-intra", lmbda=LMBDA, quality=1)
    pframe = TranslatePFrame()
    with torch.no_grad():
        pframe.motion_synthesis.weight.mul_(0.1)
    pframe.update(fine_scale_table(16))
    codec = VideoCodec(iframe, pframe, family=NAME, quality=1, lmbda=LMBDA).eval()
    for p in codec.parameters():
        p.requires_grad_(False)
    return codec.to(device) if device is not None else codec


def load(quality=None, lmbda=None, checkpoint=None, device=None):
    if checkpoint is not None:
        raise ValueError(f"{NAME} has no checkpoints")
    return make_codec(quality, device)


def entry():
    """What the ``rdopt.codecs`` entry point names."""
    return CodecEntry(NAME, "video", {1: LMBDA}, load, "seeded random weights", "a translation-only test codec", 1)
