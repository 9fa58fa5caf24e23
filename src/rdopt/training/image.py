"""The image task of ``rdopt train``: a hyperprior trained on random crops of photos and video frames
(single-sample ELBO by default; any image objective object plugs in)."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from ..codecs.image.hyperprior import HyperpriorAdapter
from ..codecs.image.parallel import ParallelContextAdapter
from ..codecs.image.scc import grow_from_hyperprior
from ..codecs.names import SCC
from ..codecs.image.widen import widen_network
from ..codecs.image.loading import (EMBEDDED_CHANNELS, architecture_of, build_network, channels_from_state, network_from_state, read_state_dict,
                               save_embedded)
from ..losses.multisample import make_objective
from .config import DEFAULT_SCALES, TrainConfig


class ColorJitter:
    """Random colour transforms of a crop in [0, 1]: exposure (global gain), per-channel gains (white
    balance), gamma, hue rotation and saturation, then clipping to [0, 1] — so saturated, channel-clipped,
    near-monochrome, dark and bright colours that a few natural photos rarely show appear in training.

    Every factor is drawn log-uniformly (the hue angle uniformly) from the given ranges."""

    _LUMA = torch.tensor([0.299, 0.587, 0.114])

    def __init__(self, exposure=(0.35, 2.0), channel_gain=(0.6, 1.6), gamma=(0.6, 1.7), saturation=(0.2, 3.0)):
        self.exposure, self.channel_gain, self.gamma, self.saturation = exposure, channel_gain, gamma, saturation

    @staticmethod
    def _log_uniform(rng: np.random.Generator, lo_hi, size=None):
        lo, hi = lo_hi
        return np.exp(rng.uniform(math.log(lo), math.log(hi), size))

    def __call__(self, c: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        c = c.clamp(0, 1) ** float(self._log_uniform(rng, self.gamma))
        luma = self._LUMA.to(c).view(3, 1, 1)
        y = (c * luma).sum(0, keepdim=True)
        chroma = c - y
        if rng.random() < 0.5:  # rotate the chroma about the grey axis (a hue shift)
            theta = rng.uniform(0, 2 * math.pi)
            axis = torch.ones(3, dtype=c.dtype) / math.sqrt(3.0)
            k = torch.tensor([[0.0, -axis[2], axis[1]], [axis[2], 0.0, -axis[0]], [-axis[1], axis[0], 0.0]], dtype=c.dtype)
            rot = torch.eye(3, dtype=c.dtype) + math.sin(theta) * k + (1 - math.cos(theta)) * (k @ k)
            chroma = torch.einsum("ij,jhw->ihw", rot.to(c), chroma)
        c = y + float(self._log_uniform(rng, self.saturation)) * chroma
        gains = self._log_uniform(rng, self.channel_gain, 3) * self._log_uniform(rng, self.exposure)
        c = c * torch.from_numpy(gains).to(c).view(3, 1, 1)
        return c.clamp(0, 1)


class CropSampler:
    """Random square crops from groups of uint8 RGB images (random downscaling and flips).

    A crop first draws its group with probability ``weights`` (default: proportional to the group's
    image count, i.e. uniform over images), then an image of the group uniformly, then one of the
    ``scales`` at which that image is at least ``crop`` pixels on each side (area downscaling, which
    turns large smooth frames into denser detail), then a uniform position and a random horizontal flip.
    """

    def __init__(
        self,
        groups: list[list[np.ndarray]],
        crop: int,
        seed: int,
        scales: tuple[float, ...] = DEFAULT_SCALES,
        weights: tuple[float, ...] | None = None,
        color_augment: float = 0.0,
        jitter: "ColorJitter | None" = None,
    ):
        if not 0 <= color_augment <= 1:
            raise ValueError(f"color_augment is a probability, got {color_augment}")
        self.color_augment = color_augment
        self.jitter = jitter or ColorJitter()
        if not scales or any(not 0 < s <= 1 for s in scales):
            raise ValueError(f"scales must lie in (0, 1], got {scales}")
        self.crop = crop
        self.rng = np.random.default_rng(seed)
        self.groups: list[list[list[torch.Tensor]]] = []  # group -> image -> its usable scales
        for images in groups:
            pyramids = []
            for a in images:
                t = torch.from_numpy(np.array(a, dtype=np.uint8, copy=True)).permute(2, 0, 1).float().div(255.0)
                levels = []
                for scale in scales:
                    s = t if scale == 1.0 else F.interpolate(t[None], scale_factor=scale, mode="area")[0]
                    if min(s.shape[1:]) >= crop:
                        levels.append(s)
                if levels:
                    pyramids.append(levels)
            if pyramids:
                self.groups.append(pyramids)
            elif weights is not None:
                raise ValueError(f"a weighted training source has no image of at least {crop}×{crop} pixels")
        if not self.groups:
            raise ValueError(f"no training image is at least {crop}×{crop} pixels")
        if weights is None:
            w = np.array([len(g) for g in self.groups], dtype=np.float64)
        else:
            if len(weights) != len(groups) or any(x < 0 for x in weights) or sum(weights) <= 0:
                raise ValueError(f"need one non-negative weight per source ({len(groups)}), got {weights}")
            w = np.array(weights, dtype=np.float64)
        self.weights = w / w.sum()

    def batch(self, n: int) -> torch.Tensor:
        out = []
        for _ in range(n):
            group = self.groups[self.rng.choice(len(self.groups), p=self.weights)]
            levels = group[self.rng.integers(len(group))]
            im = levels[self.rng.integers(len(levels))]
            _, h, w = im.shape
            i = self.rng.integers(h - self.crop + 1)
            j = self.rng.integers(w - self.crop + 1)
            c = im[:, i : i + self.crop, j : j + self.crop]
            if self.rng.random() < 0.5:
                c = c.flip(-1)
            if self.color_augment and self.rng.random() < self.color_augment:
                c = self.jitter(c, self.rng)
            out.append(c)
        return torch.stack(out)




def objective_of(cfg: TrainConfig):
    """The image objective object ``cfg`` names (``cfg.objective`` and its options; see
    :func:`rdopt.losses.multisample.make_objective`)."""
    return make_objective(cfg.objective, cfg.lmbda, samples=cfg.samples, z_samples=cfg.z_samples,
                          estimator=cfg.estimator, direct_y=cfg.direct_y, weights=cfg.iw_weights,
                          scale_floor_weight=cfg.scale_floor_weight, quantization=cfg.quantization)


class ImageTask:
    """Train an image model (``cfg.architecture``: a hyperprior, or ``rdopt-scc`` grown from one) with an image
    objective.

    ``objective(model, x, generator) -> RDCost`` is what is minimised (the mean of its ``loss``); by
    default the one ``cfg`` names (:func:`objective_of`: the single-sample ELBO at ``cfg.lmbda`` unless
    ``cfg.objective`` says otherwise)."""

    def __init__(self, cfg: TrainConfig, device: torch.device, objective=None):
        self.cfg = cfg
        self.bits_back = cfg.objective == "bits-back"
        if self.bits_back:
            self._init_bits_back(cfg, device, objective)
            return
        self.objective = objective if objective is not None else objective_of(cfg)
        scc = cfg.architecture == SCC
        if cfg.init:
            state = read_state_dict(cfg.init)
            grow = scc and architecture_of(state) == "mbt2018-mean"
            net = network_from_state("mbt2018-mean" if grow else cfg.architecture, state, has_tables=False)
            if cfg.channels is not None and tuple(cfg.channels) != channels_from_state(net.state_dict()):
                net = widen_network(net, *cfg.channels, seed=cfg.seed)  # a hyperprior is widened before it grows
            if grow:  # rdopt-msh (widened or not) grown into rdopt-scc: codes as it does at birth
                net = grow_from_hyperprior(net)
        else:
            net = build_network(cfg.architecture, *(cfg.channels or EMBEDDED_CHANNELS))
        self.module = net.to(device).train()
        adapter = ParallelContextAdapter if scc else HyperpriorAdapter
        self.model = adapter(net, model_id=cfg.architecture, lmbda=cfg.lmbda)
        self.device = device
        self.description = f"train λ={cfg.lmbda}" + ("" if cfg.objective == "elbo" else f" {cfg.objective}")

    def _init_bits_back(self, cfg: TrainConfig, device: torch.device, objective) -> None:
        """The bits-back variant (paper 003 §3.3): from ``init`` (a bits-back state dict, or a mean-scale
        hyperprior converted by :meth:`BitsBackNet.from_hyperprior`), trained with the bits-back NELBO."""
        from ..codecs.image.bitsback import FAMILY, BitsBackCodec, BitsBackNet, net_from_state
        from ..losses.bitsback import BitsBackELBO

        if cfg.channels is not None:
            raise ValueError("--channels is not supported with the bits-back objective")
        if cfg.init:
            state = read_state_dict(cfg.init)
            if "density.matrices.0" in state:
                net = net_from_state(state)
            else:
                net = BitsBackNet.from_hyperprior(network_from_state("rdopt-msh", state, has_tables=False))
        else:
            net = BitsBackNet(*EMBEDDED_CHANNELS)
        self.objective = objective if objective is not None else BitsBackELBO(cfg.lmbda)
        self.module = net.to(device).train()
        self.model = BitsBackCodec(net, model_id=FAMILY, lmbda=cfg.lmbda)
        self.device = device
        self.description = f"train bits-back λ={cfg.lmbda}"

    def sampler(self, seed: int) -> CropSampler:
        from ..data.sources import embedded_training_images, folder_images

        cfg = self.cfg
        if cfg.data:
            groups = [folder_images(cfg.data)]
        else:
            groups = embedded_training_images() + ([folder_images(cfg.extra_data)] if cfg.extra_data else [])
        return CropSampler(groups, cfg.crop, seed, cfg.scales, None if cfg.data else cfg.source_weights,
                           color_augment=cfg.color_augment)

    def loss(self, x: torch.Tensor, generator: torch.Generator, step: int) -> dict[str, torch.Tensor]:
        cost = self.objective(self.model, x.to(self.device), generator)
        # a multi-sample objective's bpp and mse are those of its first sample (an ELBO sample); its
        # per-sample mean cost and the effective sample size of the weights are logged next to them
        terms = {"loss": cost.loss.mean(), "bpp": cost.bpp.mean().detach(), "mse": cost.mse.mean().detach()}
        for extra in ("elbo", "ess"):
            value = getattr(cost, extra, None)
            if value is not None:
                terms[extra] = value.mean().detach()
        return terms

    def aux_loss(self) -> torch.Tensor | None:
        """CompressAI's quantile loss; ``None`` for the bits-back variant (its prior has no quantiles)."""
        return None if self.bits_back else self.module.aux_loss()

    def snr_objectives(self) -> dict:
        """What ``--measure-snr`` compares: the ELBO with and without direct-y (MS-NIC Table 3) and the
        trained objective when it is neither."""
        from ..losses.multisample import ELBO

        cfg = self.cfg
        objs = {"elbo": ELBO(cfg.lmbda), "elbo-no-direct-y": ELBO(cfg.lmbda, direct_y=False)}
        if cfg.objective != "elbo":
            objs[cfg.objective] = self.objective
        return objs

    def export(self, path: str) -> None:
        self.module.eval()
        if self.bits_back:
            from ..codecs.image.bitsback import save_bitsback

            save_bitsback(self.module, path)
        else:
            save_embedded(self.module, path)
