"""The lossy bits-back variant of the mean-scale hyperprior (Yang, Bamler & Mandt 2020, §3.3, Supplement S2).

Two changes to the base model (``rdopt-msh``)::

    x ──g_a──▶ y ──h_a──▶ (μz, log σz²)          q(z | y) = N(μz, diag σz²)     (doubled last layer)
               │          z ~ q ──h_s──▶ (σ, μ)   p(ŷ | z) = N(μ, σ²) integrated over [ŷ ± ½]
               └──round──▶ ŷ ∈ ℤ ──g_s──▶ x̂       p(z) = flexible density (Ballé 2018, App. 6.1),
                                                          *not* convolved with U(−½, ½)

1. the hyper-analysis ``h_a`` outputs the mean and the log-variance of a Gaussian q(z | ·) (2N channels);
2. the prior p(z) is the factorized flexible density itself (its CDF's derivative), not its
   convolution with the unit box: z is continuous, only coded on a fine grid (below).

ŷ is coded as plain integers (rounding offset 0, unlike ``rdopt-msh``'s ``round(y − μ) + μ``): with
bits-back the hyper-latent ẑ is chosen *after* ŷ is fixed (from the side information), so ŷ must not
depend on ẑ.

**The grid of ẑ.** ẑ is coded on ``δ·ℤ`` with ``δ = 2^-Z_GRID_EXP`` (= 1/8) and symbols
``k ∈ [−Z_RANGE, Z_RANGE]`` (``ẑ = k·δ ∈ [−64, 64]``); P(ẑ = kδ) = F((k + ½)δ) − F((k − ½)δ) with F the
flexible density's CDF (tails folded into the end bins by the coder's renormalization), Q(ẑ = kδ) the
Gaussian q integrated over the same bin. The net cost of ẑ, ``−log2 P(ẑ) + log2 Q(ẑ)``, tends to the
continuous ``log2 q(z)/p(z)`` the NELBO trains as δ → 0; δ = 1/8 keeps the discretization small while the
file carries ≈ 3 extra bits per element of z that bits-back returns.

:class:`BitsBackCodec` exposes the model through :class:`rdopt.core.types.LatentCodec` with latents ``y`` and
``z`` (``z`` = a point: the posterior mean from ``amortize``); its ``compress`` codes a given ẑ with P(ẑ)
*without* bits-back (the protocol's plain path). Bits-back coding itself is :mod:`rdopt.api.bitsback`.
"""

from __future__ import annotations

import copy
import math
import os
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from ...core.determinism import pinned
from ...core.types import CodedLatents, Evaluation, Latents, Relaxations
from ..entropy import gaussian_entropy_bits
from .base import ImageAdapter

FAMILY = "rdopt-msh-bb"
Z_GRID_EXP = 3
DELTA = 2.0 ** -Z_GRID_EXP  # grid of ẑ
Z_RANGE = 512  # ẑ symbols k ∈ [−Z_RANGE, Z_RANGE]
Y_RANGE = 4096  # ŷ ∈ [−Y_RANGE, Y_RANGE]
SCALE_BOUND = 0.11  # smallest scale of p(ŷ | z) (CompressAI's)
LIKELIHOOD_BOUND = 1e-9
LOGVAR_INIT = math.log(1.0 / 12.0)  # variance of U(−½, ½): the base model's box, as a start
LOG2E = 1.0 / math.log(2.0)
BB_QUALITIES = (2, 3, 4, 5, 6)
SHARED = ("g_a.", "g_s.")  # the transforms a shipped bits-back file takes from rdopt-msh-qQ (see save_bitsback)
SHARED_DIGEST = "_shared_sha256"  # key of a slim file: SHA-256 of the base's shared parameters (uint8 tensor)
WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "weights"  # rdopt/codecs/weights


class FlexibleDensity(nn.Module):
    """The univariate, per-channel flexible density of Ballé et al. 2018 (App. 6.1): a CDF
    ``F(z) = sigmoid(f_K ∘ … ∘ f_1(z))`` with ``f_k(x) = g_k(H_k x + b_k)``, ``g_k(x) = x + a_k ⊙ tanh(x)``,
    ``H_k = softplus(Ĥ_k)``, ``a_k = tanh(â_k)`` (monotone by construction). The density is F' by the chain
    rule (computed alongside, exactly; no convolution with a box). Same parametrization and shapes as
    CompressAI's ``EntropyBottleneck`` (``matrices``, ``biases``, ``factors``), so its trained values
    initialize this one."""

    def __init__(self, channels: int, filters: tuple[int, ...] = (3, 3, 3, 3), init_scale: float = 10.0):
        super().__init__()
        self.channels = int(channels)
        dims = (1, *filters, 1)
        scale = init_scale ** (1.0 / (len(filters) + 1))
        self.matrices = nn.ParameterList()
        self.biases = nn.ParameterList()
        self.factors = nn.ParameterList()
        for i in range(len(filters) + 1):
            init = math.log(math.expm1(1.0 / scale / dims[i + 1]))
            self.matrices.append(nn.Parameter(torch.full((channels, dims[i + 1], dims[i]), init)))
            self.biases.append(nn.Parameter(torch.rand(channels, dims[i + 1], 1) - 0.5))
            if i < len(filters):
                self.factors.append(nn.Parameter(torch.zeros(channels, dims[i + 1], 1)))

    def _logits(self, v: Tensor) -> tuple[Tensor, Tensor]:
        """``v``: C×1×n → (logits of F, d logits / dv), both C×1×n."""
        x, dx = v, torch.ones_like(v)
        for i, (m, b) in enumerate(zip(self.matrices, self.biases)):
            h = nn.functional.softplus(m)
            x = torch.matmul(h, x) + b
            dx = torch.matmul(h, dx)
            if i < len(self.factors):
                a = torch.tanh(self.factors[i])
                t = torch.tanh(x)
                dx = dx * (1.0 + a * (1.0 - t * t))
                x = x + a * t
        return x, dx

    def _flat(self, z: Tensor) -> Tensor:
        return z.transpose(0, 1).reshape(self.channels, 1, -1)

    def _unflat(self, v: Tensor, like: Tensor) -> Tensor:
        return v.reshape(self.channels, like.shape[0], *like.shape[2:]).transpose(0, 1)

    def log2_density(self, z: Tensor) -> Tensor:
        """``log2 p(z)`` per element of ``z`` (B×C×…)."""
        logits, dlogits = self._logits(self._flat(z))
        ln = nn.functional.logsigmoid(logits) + nn.functional.logsigmoid(-logits) + torch.log(dlogits.clamp_min(1e-30))
        return self._unflat(ln, z) * LOG2E

    @torch.no_grad()
    def grid_table(self, delta: float = DELTA, k: int = Z_RANGE) -> np.ndarray:
        """``P(ẑ = jδ)`` for ``j = −k … k`` per channel (C × (2k+1), float64, unnormalized tails): the CDF
        differences at the bin edges, computed in float64 with the sign trick (differences of the CDF's
        tail ``1 − F`` where F is close to 1) so small probabilities keep their precision."""
        dens = copy.deepcopy(self).double().cpu()
        edges = (torch.arange(-k, k + 2, dtype=torch.float64) - 0.5) * delta
        v = edges.reshape(1, 1, -1).expand(self.channels, 1, -1).contiguous()
        logits, _ = dens._logits(v)
        lower, upper = logits[:, 0, :-1], logits[:, 0, 1:]
        sign = -torch.sign(lower + upper)
        p = torch.abs(torch.sigmoid(sign * upper) - torch.sigmoid(sign * lower))
        return p.numpy()


class BitsBackNet(nn.Module):
    """The networks of the bits-back model: ``g_a``, ``g_s`` (CompressAI's GDN transforms), ``h_a`` with
    2N outputs (mean, log-variance), ``h_s`` (scales, means of p(ŷ | z)), the flexible prior of z."""

    def __init__(self, n: int, m: int):
        super().__init__()
        from compressai.models import MeanScaleHyperprior

        base = MeanScaleHyperprior(N=n, M=m)
        self.N, self.M = int(n), int(m)
        self.g_a, self.g_s, self.h_s = base.g_a, base.g_s, base.h_s
        h_a = base.h_a
        h_a[4] = nn.Conv2d(n, 2 * n, kernel_size=5, stride=2, padding=2)
        self.h_a = h_a
        self.density = FlexibleDensity(n)

    @classmethod
    def from_hyperprior(cls, net) -> "BitsBackNet":
        """Initialize from a trained CompressAI ``MeanScaleHyperprior``: every shared layer copied; the
        mean half of ``h_a``'s last layer is the base model's ``z``, the log-variance half starts constant
        at log(1/12) (the base model's uniform noise); the density starts from the entropy bottleneck's
        (the density of z + U(−½, ½), a smooth start for that of z)."""
        n, m = int(net.N), int(net.M)
        bb = cls(n, m)
        bb.g_a.load_state_dict(net.g_a.state_dict())
        bb.g_s.load_state_dict(net.g_s.state_dict())
        bb.h_s.load_state_dict(net.h_s.state_dict())
        src = net.h_a.state_dict()
        with torch.no_grad():
            for i in (0, 2):
                bb.h_a[i].weight.copy_(src[f"{i}.weight"])
                bb.h_a[i].bias.copy_(src[f"{i}.bias"])
            last = bb.h_a[4]
            last.weight.zero_()
            last.weight[:n].copy_(src["4.weight"])
            last.bias.fill_(LOGVAR_INIT)
            last.bias[:n].copy_(src["4.bias"])
            eb = net.entropy_bottleneck.state_dict()
            for name, p in bb.density.named_parameters():
                p.copy_(eb[name])
        return bb

    def posterior(self, y: Tensor) -> tuple[Tensor, Tensor]:
        """(μz, log σz²) of q(z | y) from ``h_a``."""
        mu, logvar = self.h_a(y).chunk(2, 1)
        return mu, logvar

    def prior_y(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """Scales (bounded below by :data:`SCALE_BOUND`) and means of p(ŷ | z)."""
        scales, means = self.h_s(z).chunk(2, 1)
        return _lower_bound(scales, SCALE_BOUND), means

    def y_likelihood(self, y_tilde: Tensor, z: Tensor) -> Tensor:
        """``P(ỹ | z)``: the Gaussian N(μ, σ²) integrated over ``[ỹ − ½, ỹ + ½]`` (bounded below)."""
        scales, means = self.prior_y(z)
        v = torch.abs(y_tilde - means)
        lik = torch.special.ndtr((0.5 - v) / scales) - torch.special.ndtr((-0.5 - v) / scales)
        return _lower_bound(lik, LIKELIHOOD_BOUND)


class _LowerBound(torch.autograd.Function):
    """``max(x, bound)`` whose gradient passes where x is below the bound but the gradient pushes it up
    (as CompressAI's ``LowerBound``)."""

    @staticmethod
    def forward(ctx, x, bound):
        ctx.save_for_backward(x)
        ctx.bound = bound
        return x.clamp_min(bound)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        pass_through = (x >= ctx.bound) | (grad < 0)
        return grad * pass_through.to(grad.dtype), None


def _lower_bound(x: Tensor, bound: float) -> Tensor:
    return _LowerBound.apply(x, bound)


def _sum_bits(t: Tensor) -> Tensor:
    return t.flatten(1).sum(1)


class BitsBackCodec(ImageAdapter):
    """:class:`BitsBackNet` through :class:`rdopt.core.types.LatentCodec`, plus what bits-back coding needs.

    Protocol view: latents ``y`` (relaxed by the given relaxation around offset 0: ŷ ∈ ℤ) and ``z`` (a point,
    relaxed in grid units — hard: ``round(z/δ)·δ``; its rate in :meth:`evaluate` is the cost of coding it on
    the grid with P, without bits back: ``−log2 p(z) − log2 δ`` per element, the density standing in for
    the bin's probability). The bits-back pieces: :meth:`posterior`,
    :meth:`y_bits`, :meth:`z_prior_bits`, :meth:`hyper_nelbo_bits` (the NELBO terms that depend on z) and
    the coding parameters :meth:`y_coding_params` / :meth:`z_prior_table`."""

    PARAMETER_ROLES = {**ImageAdapter.PARAMETER_ROLES, "density.": "z_prior"}

    def __init__(self, net: BitsBackNet, model_id: str, lmbda: float, quality: int = 0):
        super().__init__(net, model_id, lmbda, quality, family=FAMILY)
        self._table: np.ndarray | None = None
        self._fp64: "BitsBackCodec | None" = None

    def hard_prior(self, latents: Latents) -> tuple[Tensor, Tensor, float]:
        """Bits of every element of ŷ under P(ŷ | ẑ), the scales ``h_s`` predicts (before their bound) and the
        bound."""
        scales = self.net.h_s(latents["z"]).chunk(2, 1)[0]
        return -torch.log2(self.net.y_likelihood(latents["y"], latents["z"])), scales, SCALE_BOUND
        self._table: np.ndarray | None = None
        self._fp64: "BitsBackCodec | None" = None

    # ------------------------------------------------------------------ bits-back pieces
    def posterior(self, y: Tensor) -> tuple[Tensor, Tensor]:
        return self.net.posterior(y)

    def y_bits(self, y_tilde: Tensor, z: Tensor) -> Tensor:
        """``−log2 P(ỹ | z)`` per item."""
        return _sum_bits(-torch.log2(self.net.y_likelihood(y_tilde, z)))

    def z_prior_bits(self, z: Tensor) -> Tensor:
        """``−log2 p(z)`` per item (density, no grid)."""
        return _sum_bits(-self.net.density.log2_density(z))

    def z_net_bits(self, z: Tensor, logvar: Tensor) -> Tensor:
        """The net cost of z in the NELBO, per item: ``−log2 p(z) − H[q]`` (``H`` analytic, in bits)."""
        return self.z_prior_bits(z) - _sum_bits(gaussian_entropy_bits(logvar.expand_as(z)))

    def hyper_nelbo_bits(self, y_hat: Tensor, mu: Tensor, logvar: Tensor, eps: Tensor) -> Tensor:
        """The NELBO of fixed ŷ as a function of q(z) (one reparameterized sample ``z = μ + σ·ε``):
        ``−log2 P(ŷ | z) − log2 p(z) − H[q]`` per item — what ``reproducible_bbvi`` minimises."""
        z = mu + torch.exp(0.5 * logvar) * eps
        return self.y_bits(y_hat, z) + self.z_net_bits(z, logvar)

    def fp64(self) -> "BitsBackCodec":
        """A float64 CPU copy (cached) for the computations encoder and decoder must reproduce bit for bit."""
        if self._fp64 is None:
            clone = BitsBackCodec(copy.deepcopy(self.net).cpu().double(), self.model_id, self.lmbda, self.quality)
            clone.eval()
            for p in clone.parameters():
                p.requires_grad_(False)
            clone._weight_hash = self.weight_hash()
            self._fp64 = clone
        return self._fp64

    def z_prior_table(self) -> np.ndarray:
        """``P(ẑ = kδ)`` for k = −Z_RANGE … Z_RANGE, per channel (float64, cached)."""
        if self._table is None:
            self._table = self.net.density.grid_table(DELTA, Z_RANGE)
        return self._table

    @torch.no_grad()
    def y_coding_params(self, z_hat: Tensor) -> tuple[np.ndarray, np.ndarray]:
        """Means and scales of P(ŷ | ẑ) (float64) from the float64 copy: call inside
        :func:`rdopt.core.determinism.pinned` so encoder and decoder compute the same values."""
        f = self.fp64()
        scales, means = f.net.prior_y(z_hat.detach().cpu().double())
        return means.numpy(), scales.numpy()

    # ------------------------------------------------------------------ protocol
    def hyper_analysis(self, y: Tensor) -> Tensor:
        """``z = μz(y)``: the posterior mean (the amortized point of ``z``)."""
        return self.posterior(y)[0]

    def evaluate(self, latents: Latents, relax: Relaxations) -> Evaluation:
        y, z = latents["y"], latents["z"]
        y_tilde = relax["y"](y, torch.zeros_like(y))
        z_tilde = relax["z"](z / DELTA, torch.zeros_like(z)) * DELTA  # relaxed in grid units (hard: the grid)
        scales, _ = self.net.prior_y(z_tilde)
        rates = {"y": self.y_bits(y_tilde, z_tilde),
                 "z": self.z_prior_bits(z_tilde) - z.flatten(1).shape[1] * math.log2(DELTA)}
        return Evaluation(x_hat=self.net.g_s(y_tilde), rates=rates, latents=Latents({"y": y_tilde, "z": z_tilde}),
                          scales={"y": scales})

    @torch.no_grad()
    def quantize(self, latents: Latents) -> Latents:
        return Latents({"y": torch.round(latents["y"]), "z": torch.round(latents["z"] / DELTA) * DELTA})

    @torch.no_grad()
    def compress(self, latents: Latents) -> CodedLatents:
        """Plain (no bits-back) coding of ẑ with P(ẑ) and ŷ with P(ŷ | ẑ) by constriction's ANS coder."""
        from ...coding import bitsback as bbc

        hard = self.quantize(latents)
        ys, zs = [], []
        for b in range(hard.batch_size):
            zsym = torch.round(hard["z"][b : b + 1] / DELTA).to(torch.int64).cpu().numpy()
            with pinned():
                means, scales = self.y_coding_params(torch.from_numpy(zsym).double() * DELTA)
            ys.append(bbc.encode_y(hard["y"][b : b + 1].to(torch.int64).cpu().numpy(), means, scales))
            zs.append(bbc.plain_encode_z(zsym, self.z_prior_table()))
        return CodedLatents(streams={"y": ys, "z": zs},
                            shapes={"y": tuple(hard["y"].shape[1:]), "z": tuple(hard["z"].shape[1:])})

    @torch.no_grad()
    def decompress(self, coded: CodedLatents) -> Latents:
        from ...coding import bitsback as bbc

        ys, zs = [], []
        for yb, zb in zip(coded.streams["y"], coded.streams["z"]):
            zsym = bbc.plain_decode_z(zb, (1, *coded.shapes["z"]), self.z_prior_table())
            z_hat = torch.from_numpy(zsym).double() * DELTA
            with pinned():
                means, scales = self.y_coding_params(z_hat)
            ys.append(torch.from_numpy(bbc.decode_y(yb, means, scales)).float())
            zs.append(z_hat.float())
        dev = self.device
        return Latents({"y": torch.cat(ys).to(dev), "z": torch.cat(zs).to(dev)})


# ---------------------------------------------------------------------------------------------- loading
def bitsback_weights_path(quality: int) -> Path:
    return WEIGHTS_DIR / f"{FAMILY}-q{quality}.pt"


def shared_digest(state: dict[str, Tensor], names) -> Tensor:
    """SHA-256 of the named tensors of ``state`` (sorted names, float16 values) as a uint8 tensor."""
    import hashlib

    h = hashlib.sha256()
    for k in sorted(names):
        h.update(k.encode())
        h.update(state[k].detach().cpu().half().contiguous().numpy().tobytes())
    return torch.frombuffer(bytearray(h.digest()), dtype=torch.uint8).clone()


def net_from_state(state: dict[str, Tensor]) -> BitsBackNet:
    if SHARED_DIGEST in state:
        raise ValueError("this is a slim rdopt-msh-bb file without its analysis / synthesis transforms (shipped ones "
                         "take them from rdopt-msh-qQ): load it as the embedded model, not as a checkpoint")
    try:
        n = int(state["g_a.0.weight"].shape[0])
        m = int(state["g_a.6.weight"].shape[0])
    except KeyError as e:
        raise ValueError(f"state dict is not a bits-back model (missing {e.args[0]})") from None
    if "density.matrices.0" not in state:
        raise ValueError("state dict is not a bits-back model (no density.*): convert a hyperprior with "
                         "BitsBackNet.from_hyperprior")
    net = BitsBackNet(n, m)
    net.load_state_dict({k: v.float() for k, v in state.items()})
    return net


def load_bitsback(quality: int = 3, checkpoint: str | os.PathLike | None = None, lmbda: float | None = None,
                  device=None) -> BitsBackCodec:
    """The bits-back model: the shipped ``rdopt-msh-bb-q{quality}`` or a checkpoint (a bits-back state
    dict, or a plain mean-scale hyperprior, converted by :meth:`BitsBackNet.from_hyperprior`)."""
    from .loading import COMPRESSAI_LAMBDAS, ModelUnavailable, architecture_of, network_from_state, read_state_dict

    if checkpoint is not None:
        state = read_state_dict(checkpoint)
        if "density.matrices.0" in state:
            net = net_from_state(state)
        else:
            shown = architecture_of(state)
            if shown != "mbt2018-mean":  # a context model or a scale-only hyperprior: no Gaussian q(z|y) to add
                raise ModelUnavailable(f"{checkpoint} holds {shown} weights: lossy bits-back needs a bits-back checkpoint "
                                       "or a mean-scale hyperprior (rdopt-msh) to convert")
            net = BitsBackNet.from_hyperprior(network_from_state("rdopt-msh", state, has_tables=False))
        model_id = f"{FAMILY}-custom"
    else:
        path = bitsback_weights_path(quality)
        if not path.is_file():
            raise ModelUnavailable(f"{FAMILY} has qualities {', '.join(map(str, BB_QUALITIES))} (no weights at {path}); "
                                   "pass --checkpoint FILE (a bits-back checkpoint or an rdopt-msh one to convert)")
        state = read_state_dict(path)
        if SHARED_DIGEST in state:  # a slim file: the analysis / synthesis parameters are the base model's
            base_path = WEIGHTS_DIR / f"rdopt-msh-q{quality}.pt"
            if not base_path.is_file():
                raise ModelUnavailable(f"{path.name} shares its transforms with rdopt-msh-q{quality}, which is missing")
            base = read_state_dict(base_path)
            shared = [k for k in base if k.startswith(SHARED) and k not in state]
            if not torch.equal(shared_digest(base, shared), state.pop(SHARED_DIGEST)):
                raise ModelUnavailable(f"{path.name} was trained on other weights of rdopt-msh-q{quality} than the "
                                       "installed ones: reinstall rdopt")
            state.update({k: base[k] for k in shared})
        net = net_from_state(state)
        model_id = f"{FAMILY}-q{quality}"
    codec = BitsBackCodec(net, model_id, lmbda if lmbda is not None else COMPRESSAI_LAMBDAS.get(quality, 0.0), quality)
    codec.eval()
    if device is not None:
        codec.to(device)
    for p in codec.parameters():
        p.requires_grad_(False)
    return codec


def save_bitsback(net: BitsBackNet, path: str | os.PathLike, shared_with: str | os.PathLike | None = None) -> None:
    """Ship a trained bits-back net: parameters rounded to float16 (the coder's tables are computed from
    the stored values at load time, in float64, so nothing else needs saving).

    ``shared_with``: an ``rdopt-msh`` weights file whose analysis and synthesis transforms (``g_a``, ``g_s``)
    this net kept unchanged (a fine-tune with ``--freeze g_a g_s``): their parameters are checked to be
    identical and left out of the file, which records their SHA-256 instead (the loader of the shipped
    ``rdopt-msh-bb-qQ`` takes them from ``rdopt-msh-qQ`` and refuses a base whose parameters do not match it)."""
    from .loading import read_state_dict

    net = net.cpu()
    state = {k: (v.half() if v.is_floating_point() else v) for k, v in net.state_dict().items()}
    if shared_with is not None:
        base = read_state_dict(shared_with)
        params = {k for k, _ in net.named_parameters()}  # buffers (GDN's constants) stay in the file
        dropped: list[str] = []
        for k in [k for k in state if k.startswith(SHARED) and k in params]:
            if k not in base or not torch.equal(base[k].half(), state[k]):
                raise ValueError(f"{k} differs from {shared_with}: the transforms are not shared (train with "
                                 "--freeze g_a g_s)")
            del state[k]
            dropped.append(k)
        state[SHARED_DIGEST] = shared_digest(base, dropped)
    tmp = Path(str(path) + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


__all__ = ["BB_QUALITIES", "BitsBackCodec", "BitsBackNet", "DELTA", "FAMILY", "FlexibleDensity", "Y_RANGE",
           "Z_GRID_EXP", "Z_RANGE", "gaussian_entropy_bits", "load_bitsback", "save_bitsback"]
