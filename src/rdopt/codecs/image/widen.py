"""Function-preserving widening of a mean-scale hyperprior (``rdopt train --init W --channels N M``).

A trained model at (N₀, M₀) channels becomes a model at (N, M) ≥ (N₀, M₀) that decodes *the same
picture* from the same latents, so training a wider model can start where the narrow one is instead of
from scratch (the "Net2WiderNet" idea; our construction differs in that new units start with zero
outgoing weights rather than split copies, which keeps the old function exactly).

Rules, per layer of ``MeanScaleHyperprior`` (old channel i keeps index i, except in the last layer of
h_s, whose output is split into scales and means and so maps the old means block to the new one):

* weights *from* a new channel into any channel are zero, so new channels influence nothing at first;
* weights *into* a new hidden unit (g_a/g_s/h_a/h_s hidden layers) keep the fresh layer's random
  initialisation, so the unit is active and gets gradients as soon as its outgoing weights move;
* new latent channels are born silent: the new rows of g_a's last layer (new y), of h_a's last layer
  (new z) and of h_s's last layer (their predicted means and scales) are zero, except the scales' biases,
  which are 1.1 × the entropy model's scale floor: y_new = 0 is coded under mean 0 and a scale just above
  the floor (≈ 5·10⁻⁵ bits), and z_new = 0 (scales born at 0 would start in the floor region);
* GDN/IGDN keep the old (β, γ) block; a new channel gets the fresh layer's β = 1, γ_ii = 0.1 and no
  cross terms with old channels;
* the entropy bottleneck keeps each old channel's density; new z channels get the fresh density.

Hence g_s(ŷ) and the likelihoods of the old latent channels are unchanged. The only rate that changes is
that of the new channels (y_new: ≈ 0 bits; z_new, when N grows: the fresh density's cost of coding 0).
Noise-based training breaks the symmetry of the silent channels (ỹ_new = u ≠ 0 reaches g_s).
"""

from __future__ import annotations

import torch

from .loading import channels_from_state

NEW_SCALE_FLOOR_FACTOR = 1.1  # new y channels' predicted scale, as a multiple of the entropy model's floor

# layer -> (kind, input group, output group); groups name channel axes that are widened together.
# None is the image (3 channels, never widened). Hidden groups get random new rows, latent groups
# ("y", "z", "gauss") zero new rows.
_MSH_LAYERS = {
    "g_a.0": ("conv", None, "N"), "g_a.1": ("gdn", "N", "N"), "g_a.2": ("conv", "N", "N"),
    "g_a.3": ("gdn", "N", "N"), "g_a.4": ("conv", "N", "N"), "g_a.5": ("gdn", "N", "N"),
    "g_a.6": ("conv", "N", "y"),
    "g_s.0": ("deconv", "y", "N"), "g_s.1": ("gdn", "N", "N"), "g_s.2": ("deconv", "N", "N"),
    "g_s.3": ("gdn", "N", "N"), "g_s.4": ("deconv", "N", "N"), "g_s.5": ("gdn", "N", "N"),
    "g_s.6": ("deconv", "N", None),
    "h_a.0": ("conv", "y", "N"), "h_a.2": ("conv", "N", "N"), "h_a.4": ("conv", "N", "z"),
    "h_s.0": ("deconv", "z", "M"), "h_s.2": ("deconv", "M", "M3/2"), "h_s.4": ("conv", "M3/2", "gauss"),
}
_SILENT = {"y", "z", "gauss"}


class WidenError(ValueError):
    """The model cannot be widened to the requested size."""


def _index_maps(n0: int, m0: int, n: int, m: int) -> dict[str | None, tuple[torch.Tensor, int]]:
    """group -> (new index of every old channel, new size)."""
    def ident(a: int, b: int):
        return torch.arange(a), b

    # h_s's last layer outputs [scales (M), means (M)]: the old means move from M₀ to M.
    gauss = torch.cat([torch.arange(m0), m + torch.arange(m0)])
    return {None: ident(3, 3), "N": ident(n0, n), "y": ident(m0, m), "z": ident(n0, n), "M": ident(m0, m),
            "M3/2": ident(m0 * 3 // 2, m * 3 // 2), "gauss": (gauss, 2 * m)}


def _new_only(old_idx: torch.Tensor, size: int) -> torch.Tensor:
    mask = torch.ones(size, dtype=torch.bool)
    mask[old_idx] = False
    return mask.nonzero().flatten()


def widen_network(net, n: int, m: int, seed: int = 0):
    """A ``MeanScaleHyperprior`` with (N, M) = (n, m) channels computing the same reconstruction as ``net``.

    ``net`` must be a ``MeanScaleHyperprior`` (rdopt-msh, mbt2018-mean) with N₀ ≤ n and M₀ ≤ m. The random
    part of the new weights is drawn from ``seed``. Entropy-coder tables are recomputed (CompressAI's
    default scale table; :func:`~rdopt.codecs.image.loading.save_embedded` stores a finer one on export)."""
    from compressai.models import MeanScaleHyperprior

    if type(net) is not MeanScaleHyperprior:
        raise WidenError(f"widening supports the mean-scale hyperprior only, not {type(net).__name__}")
    old = {k: v.detach().cpu() for k, v in net.state_dict().items()}
    n0, m0 = channels_from_state(old)
    if n < n0 or m < m0:
        raise WidenError(f"cannot narrow a model: it has N={n0}, M={m0}, asked for N={n}, M={m}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        wide = MeanScaleHyperprior(N=n, M=m)
    new = wide.state_dict()  # shares storage with wide's tensors: the edits below change wide in place
    dtype = new["g_a.0.weight"].dtype
    old = {k: v.to(dtype) if v.is_floating_point() else v for k, v in old.items()}
    maps = _index_maps(n0, m0, n, m)
    with torch.no_grad():
        for layer, (kind, gin, gout) in _MSH_LAYERS.items():
            oi, osz = maps[gout]
            if kind == "gdn":
                beta, gamma = new[f"{layer}.beta"], new[f"{layer}.gamma"]
                beta[oi] = old[f"{layer}.beta"]
                gamma[oi[:, None], oi[None, :]] = old[f"{layer}.gamma"]
                continue
            ii, isz = maps[gin]
            w, b = new[f"{layer}.weight"], new[f"{layer}.bias"]
            out_dim, in_dim = (0, 1) if kind == "conv" else (1, 0)  # ConvTranspose2d stores [in, out, k, k]
            w.index_fill_(in_dim, _new_only(ii, isz), 0.0)  # new channels feed nothing
            if gout in _SILENT:
                w.index_fill_(out_dim, _new_only(oi, osz), 0.0)
                b.index_fill_(0, _new_only(oi, osz), 0.0)
            if kind == "conv":
                w[oi[:, None], ii[None, :]] = old[f"{layer}.weight"]
            else:
                w[ii[:, None], oi[None, :]] = old[f"{layer}.weight"]
            b[oi] = old[f"{layer}.bias"]
        # New y channels are predicted just above the Gaussian conditional's scale floor, not at 0: coding
        # y_new = 0 there still costs ≈ 5·10⁻⁵ bits, but the scale stays where the likelihood's gradient
        # reaches it both ways. Born at 0 (below the floor), a channel that the training data never excites
        # keeps a prior far below the floor, and an unseen input that excites it costs tens of bits per value
        # (widened models born at 0 collapsed on saturated greens; the M=96 models did not).
        new_scales = _new_only(torch.arange(m0), m)
        new["h_s.4.bias"][new_scales] = NEW_SCALE_FLOOR_FACTOR * float(wide.gaussian_conditional.lower_bound_scale.bound)
        eb = "entropy_bottleneck."
        for k in new:
            if k.startswith(eb) and k.split(".")[1] in ("matrices", "biases", "factors", "quantiles"):
                new[k][:n0] = old[k]
    wide.update(force=True)
    return wide.to(next(net.parameters()).device)
