"""``rdopt-scc``: rdopt's mean-scale hyperprior with a space-channel context model (He et al. 2022, ELIC: channel
groups, each coded in two checkerboard passes, He et al. 2021), built from CompressAI's latent codecs and grown from
an ``rdopt-msh`` network without changing what it computes at birth.

Transforms ``g_a``, ``g_s``, ``h_a``, ``h_s`` and the entropy bottleneck are those of CompressAI's
``MeanScaleHyperprior`` (N filters, M latent channels). ``y``'s M channels are split into groups of
``M/12·(1, 1, 2, 4, 4)`` channels, coded one after the other; group ``k``'s entropy parameters are

    (σ_k, μ_k) = ψ-slice_k + EP_k([CP_k(ŷ_k anchors), CC_k(ŷ_<k), ψ])

with ``ψ = h_s(ẑ)`` (2M channels: the hyperprior's own scales and means of every channel), ``ψ-slice_k`` the
hyperprior's (σ, μ) of group k's channels, ``CP_k`` a 5×5 checkerboard-masked convolution (zero input for the
anchors), ``CC_k`` a small network of 3×3 convolutions over the groups decoded before (absent for k = 0) and ``EP_k`` a
pointwise network whose last layer starts at zero. So a network grown from ``rdopt-msh``
(:func:`grow_from_hyperprior`) codes exactly as the hyperprior does until training moves the context terms.
All groups share one Gaussian conditional (one scale table and one set of CDF tables in the file).
"""

from __future__ import annotations

import torch
from compressai.entropy_models import GaussianConditional
from compressai.latent_codecs import (ChannelGroupsLatentCodec, CheckerboardLatentCodec, GaussianConditionalLatentCodec,
                                      HyperLatentCodec, HyperpriorLatentCodec)
from compressai.layers import CheckerboardMaskedConv2d
from compressai.models import MeanScaleHyperprior, SimpleVAECompressionModel
from torch import Tensor, nn

FAMILY = "rdopt-scc"
GROUP_SHARES = (1, 1, 2, 4, 4)  # of M/12


def default_groups(m: int) -> list[int]:
    """Channel groups of an M-channel latent: ``M/12·(1, 1, 2, 4, 4)`` (M a multiple of 12)."""
    if m % 12:
        raise ValueError(f"rdopt-scc needs M a multiple of 12, got {m}")
    return [m // 12 * s for s in GROUP_SHARES]


class ResidualParameters(nn.Module):
    """Entropy parameters of one group: the hyperprior's (σ, μ) of the group's channels plus a pointwise network of
    ``[spatial context, channel context, ψ]`` whose last layer starts at zero.

    Args:
        context: channels of the spatial and channel contexts before ψ in the input.
        m: latent channels (ψ has 2M: scales of every channel, then means).
        start, size: the group's channels ``[start, start + size)``.
        hidden: width of the pointwise network.
    """

    def __init__(self, context: int, m: int, start: int, size: int, hidden: int):
        super().__init__()
        self.context, self.m, self.start, self.size = context, m, start, size
        self.mlp = nn.Sequential(nn.Conv2d(context + 2 * m, hidden, 1), nn.ReLU(),
                                 nn.Conv2d(hidden, hidden, 1), nn.ReLU(), nn.Conv2d(hidden, 2 * size, 1))
        nn.init.zeros_(self.mlp[-1].weight)
        nn.init.zeros_(self.mlp[-1].bias)

    def forward(self, x: Tensor) -> Tensor:
        psi = x[:, self.context:]
        a, b, m = self.start, self.start + self.size, self.m
        base = torch.cat((psi[:, a:b], psi[:, m + a : m + b]), dim=1)
        return base + self.mlp(x)


def space_channel_y(m: int, groups: list[int] | None = None, hidden: int = 128, channel_hidden: int = 64,
                    channel_kernel: int = 3, gaussian_conditional: GaussianConditional | None = None
                    ) -> ChannelGroupsLatentCodec:
    """The ``y`` codec of an M-channel latent (module docstring): channel groups, each a checkerboard codec whose
    entropy parameters add context terms born at zero to the hyperprior's (σ, μ) of its channels. Every group
    codes with one shared ``gaussian_conditional`` (a new one if not given)."""
    groups = list(groups) if groups is not None else default_groups(m)
    if sum(groups) != m or min(groups) < 1:
        raise ValueError(f"channel groups {groups} do not split M={m}")
    if channel_kernel % 2 == 0:
        raise ValueError(f"channel_kernel must be odd, got {channel_kernel}")
    ck = channel_kernel
    shared = gaussian_conditional if gaussian_conditional is not None else GaussianConditional(None)
    starts = [sum(groups[:k]) for k in range(len(groups))]
    channel_context = {
        f"y{k}": nn.Sequential(nn.Conv2d(starts[k], channel_hidden, ck, padding=ck // 2), nn.ReLU(),
                               nn.Conv2d(channel_hidden, channel_hidden, ck, padding=ck // 2), nn.ReLU(),
                               nn.Conv2d(channel_hidden, 2 * g, ck, padding=ck // 2))
        for k, g in enumerate(groups) if k > 0
    }
    codecs = {
        f"y{k}": CheckerboardLatentCodec(
            latent_codec={"y": GaussianConditionalLatentCodec(gaussian_conditional=shared, quantizer="ste")},
            entropy_parameters=ResidualParameters(2 * g + (2 * g if k > 0 else 0), m, starts[k], g, hidden),
            context_prediction=CheckerboardMaskedConv2d(g, 2 * g, kernel_size=5, stride=1, padding=2),
        )
        for k, g in enumerate(groups)
    }
    return ChannelGroupsLatentCodec(groups=groups, channel_context=channel_context, latent_codec=codecs)


class SCCNetwork(SimpleVAECompressionModel):
    """An ``rdopt-scc`` network (CompressAI ``SimpleVAECompressionModel`` with a latent codec).

    Args:
        n, m: filters and latent channels (as ``MeanScaleHyperprior``'s N, M).
        groups: channel groups of y (default :func:`default_groups`).
        hidden: width of every group's pointwise entropy-parameter network.
        channel_hidden: width of the channel-context networks.
        channel_kernel: kernel size of their convolutions (odd).
    """

    def __init__(self, n: int = 64, m: int = 192, groups: list[int] | None = None, hidden: int = 128,
                 channel_hidden: int = 64, channel_kernel: int = 3):
        super().__init__()
        groups = list(groups) if groups is not None else default_groups(m)
        self.N, self.M, self.groups = n, m, groups
        base = MeanScaleHyperprior(N=n, M=m)
        self.g_a, self.g_s = base.g_a, base.g_s
        self.latent_codec = HyperpriorLatentCodec(latent_codec={
            "y": space_channel_y(m, groups, hidden, channel_hidden, channel_kernel),
            "hyper": HyperLatentCodec(entropy_bottleneck=base.entropy_bottleneck, h_a=base.h_a, h_s=base.h_s,
                                      quantizer="ste"),
        })


def build_scc(n: int = 64, m: int = 192, groups: list[int] | None = None, hidden: int = 128,
              channel_hidden: int = 64, channel_kernel: int = 3) -> SCCNetwork:
    """A fresh ``rdopt-scc`` network."""
    return SCCNetwork(n, m, groups, hidden, channel_hidden, channel_kernel)


def groups_from_state(state: dict[str, Tensor]) -> list[int]:
    """The channel groups of an ``rdopt-scc`` state dict (from its checkerboard contexts' weights)."""
    groups, k = [], 0
    while (w := state.get(f"latent_codec.y.latent_codec.y{k}.context_prediction.weight")) is not None:
        groups.append(int(w.shape[1]))
        k += 1
    return groups


def scc_from_state(state: dict[str, Tensor]) -> SCCNetwork:
    """An (unloaded) ``rdopt-scc`` network of the sizes a state dict holds."""
    n, m = int(state["g_a.0.weight"].shape[0]), int(state["g_a.6.weight"].shape[0])
    hidden = int(state["latent_codec.y.latent_codec.y0.entropy_parameters.mlp.0.weight"].shape[0])
    cc = state.get("latent_codec.y.channel_context.y1.0.weight")
    if cc is None:
        return build_scc(n, m, groups_from_state(state), hidden)
    return build_scc(n, m, groups_from_state(state), hidden, int(cc.shape[0]), int(cc.shape[-1]))


def grow_from_hyperprior(net: nn.Module, groups: list[int] | None = None, hidden: int = 128,
                         channel_hidden: int = 64) -> SCCNetwork:
    """An ``rdopt-scc`` network that holds a ``MeanScaleHyperprior``'s transforms and bottleneck and codes as it does
    (context terms at zero). Entropy-coder tables are not computed (call ``update``)."""
    scc = build_scc(int(net.N), int(net.M), groups, hidden, channel_hidden)
    with torch.no_grad():
        for name in ("g_a", "g_s"):
            getattr(scc, name).load_state_dict(getattr(net, name).state_dict())
        hyper = scc.latent_codec.hyper
        hyper.h_a.load_state_dict(net.h_a.state_dict())
        hyper.h_s.load_state_dict(net.h_s.state_dict())
        eb = {k: v for k, v in net.entropy_bottleneck.state_dict().items()
              if not k.startswith(("_quantized_cdf", "_offset", "_cdf_length"))}
        hyper.entropy_bottleneck.load_state_dict(eb, strict=False)
    return scc


__all__ = ["FAMILY", "ResidualParameters", "SCCNetwork", "build_scc", "default_groups", "groups_from_state",
           "grow_from_hyperprior", "scc_from_state", "space_channel_y"]
