"""Multi-sample (importance-weighted) training objectives for a two-level hyperprior (MS-NIC, Xu et al.
2022, ``../shared/papers/004_66a7f60ac3e5fac4.txt``), as objects the training loop minimises:

* :class:`ELBO` — the single-sample ELBO (:func:`rdopt.losses.elbo.elbo_loss`); with ``direct_y=False``
  the plain 2-level VAE whose z is inferred from the noisy ỹ (paper Table 2);
* :class:`IWAE` — the original 2-level IWAE (Burda et al.), without the direct-y trick (Fig. 1 (d)):
  ``k`` pairs (ỹ_i, z̃_i) with z̃_i ~ q(z | ỹ_i);
* :class:`MSMix` — MS-NIC-MIX (Eq. 11–13): ``k`` samples of ỹ, one z̃ (from ``h_a(y)``, direct-y);
* :class:`MSDMS` — MS-NIC-DMS (Eq. 14–15): ``k`` samples of ỹ and ``l`` of z̃, every pairing (Eq. 17).

Samples come from the posterior only: ``g_a`` runs once per image, ``h_a`` once per image with
direct-y (IWAE runs it on each ỹ_i, which is what the method is); the synthesis runs ``k`` times and
``h_s`` ``l`` times (App. A.9).

How λ enters the importance weights
-----------------------------------
rdopt minimises per image the cost ``C = bpp + λ·255²·MSE`` (:mod:`rdopt.core.rd`). The paper's ELBO
(Eq. 1, 3; App. A.4) reads it as a log density: with ``P`` pixels, ``C·P`` bits are ``ln2·C·P`` nats, so

    log w = log p(x | ỹ) + log p(ỹ | z̃) + log p(z̃)  (log q = 0 on the uniform posterior's support)
          = −ln2·P·C + const,

where the rate terms are the entropy model's −log probabilities and the distortion is a Gaussian
likelihood ``p(x | ỹ) = N(x; x̂, σ²)`` per colour value on [0, 1] with ``1/(2σ²) = ln2·λ·255²/3``
(``σ² = 3 / (2·ln2·λ·255²)``: the ``3`` because MSE averages the 3 colour values of a pixel). A sample's
log weight is therefore ``log w = −β·C`` with ``β = ln2·P``, and every bound here is reported in
rdopt's minimised form, in bits per pixel:

    loss = −(1/β)·log( mean_s exp(−β·C_s) )    (≤ mean_s C_s; = C_1 for one sample)

``weights="nats"`` (default) is this exact bound of Eq. 11–15. ``weights="bpp"`` uses ``β = 1``, i.e.
``w̃ = softmax(−C)`` with C in bits per pixel — the temperature of the paper's appendix code (A.5,
``IWAELoss(minus_elbo)`` with ``minus_elbo = R + λD`` per pixel). Checked against the paper: the
equations and the code differ by this factor ``ln2·P`` (≈ 11 000 for a 128² crop; with it the
weights are nearly one-hot, without it nearly uniform), and the code also normalises separate weights
for the distortion, the y-rate and the z-rate terms, which is the gradient of no single bound; rdopt
uses one weight per sample for the whole ``C``, as Eq. 13/15 do. ``β = 1`` is still a bound of the
tempered weights ``w^{1/(ln2·P)}`` (Jensen), looser than the exact one.

Gradient estimators
-------------------
``pathwise`` (Eq. 5/13): ``∇loss = Σ_s w̃_s ∇C_s`` with ``w̃ = softmax(−β·C)`` held constant; with
the uniform posterior this is also the STL estimator (Sec. 2.1). ``dreg`` (Tucker et al. 2018): the
gradient reaching the inference networks through the IWAE latent of sample ``s`` (ỹ_s; for IWAE also
z̃_s) is weighted ``w̃_s²`` instead of ``w̃_s``; generative parameters keep ``w̃_s``. For MS-NIC-MIX the
shared z̃ is the y-IWAE's prior (Sec. 3.1) and keeps the pathwise weights. Since ``log q = 0`` there is
no score term to remove; Sec. 2.2 explains why DReG is biased for the uniform posterior (Table 1).
DReG is defined for objectives whose samples are independent (IWAE, MIX), not for the DMS grid.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor

from ..core.rd import Lambda, RDCost, distortion_term
from ..core.types import LatentCodec, Latents, SampleGrid
from .elbo import elbo_loss, scale_floor_penalty

LN2 = math.log(2.0)
OBJECTIVES = ("elbo", "iwae", "ms-mix", "ms-dms")
ESTIMATORS = ("pathwise", "dreg")
WEIGHTS = ("nats", "bpp")


@dataclass(frozen=True)
class SampleCost(RDCost):
    """The R-D cost of a multi-sample objective per image.

    ``loss`` is the bound (minimised form, bits per pixel; its gradient is the estimator's); ``bpp``
    and ``mse`` are those of the first sample (ỹ_1 with z̃_1), distributed exactly as the ELBO's single
    sample; ``elbo`` is the mean per-sample cost (the single-sample objective averaged over the
    samples); ``ess`` the effective sample size ``1 / Σ w̃²`` of the importance weights."""

    elbo: Tensor = field(default=None)  # type: ignore[assignment]
    ess: Tensor = field(default=None)  # type: ignore[assignment]


def weight_scale(weights: str, num_pixels: int) -> float:
    """β of ``log w = −β·C`` (see the module docstring)."""
    if weights == "nats":
        return LN2 * num_pixels
    if weights == "bpp":
        return 1.0
    raise ValueError(f"weights must be one of {', '.join(WEIGHTS)}, got {weights!r}")


def importance_weights(costs: Tensor, beta: float) -> Tensor:
    """Normalised weights ``w̃ = softmax(−β·C)`` over the sample dimension 0 of ``costs`` (S×B)."""
    return torch.softmax(-beta * costs, dim=0)


def iw_bound(costs: Tensor, beta: float) -> Tensor:
    """``−(1/β)·log mean_s exp(−β·C_s)`` per item (``costs`` is S×B): the importance-weighted bound
    in the minimised form, by autograd (the reference the estimators are tested against)."""
    s = costs.shape[0]
    return -(torch.logsumexp(-beta * costs, dim=0) - math.log(s)) / beta


class _Scale:
    """A gradient scale known only after the forward pass (the importance weights)."""

    value: Tensor | None = None


class _ScaleGrad(torch.autograd.Function):
    """Identity forward; backward multiplies the gradient by ``holder.value`` (broadcast), set after
    the forward pass once the weights are known."""

    @staticmethod
    def forward(ctx, x, holder):
        ctx.holder = holder
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        scale = ctx.holder.value
        if scale is None:
            raise RuntimeError("the DReG gradient scale was never set")
        return grad * scale.to(grad.dtype), None


def scale_grad(x: Tensor, holder: _Scale) -> Tensor:
    """``x`` whose gradient is multiplied by ``holder.value`` when the backward pass reaches it."""
    return _ScaleGrad.apply(x, holder)


def _noise(n: int, like: Tensor, generator: torch.Generator | None) -> Tensor:
    """``n`` samples of U(−½, ½) shaped like ``like`` (as :func:`rdopt.relax.rounding.uniform_noise`
    draws them: one ``torch.rand`` call, so ``n = 1`` consumes the generator identically)."""
    u = torch.rand((n, *like.shape), generator=generator, device=like.device, dtype=like.dtype)
    return u - 0.5


def _repeat_lambda(lmbda: Lambda, batch: int, times: int) -> Lambda:
    if isinstance(lmbda, Tensor) and lmbda.dim() >= 1 and lmbda.shape[0] == batch and times > 1:
        return lmbda.repeat(times, *([1] * (lmbda.dim() - 1)))
    return lmbda


def _identity(x: Tensor, offset: Tensor) -> Tensor:
    return x


def evaluate_grid(model: LatentCodec, y_tilde: Tensor, z_tilde: Tensor) -> SampleGrid:
    """Every pairing of the samples ``y_tilde`` (K×B×…) with ``z_tilde`` (L×B×…): the codec's
    ``evaluate_grid`` if it has one, else its protocol ``evaluate`` on the K·L pairs (the same terms,
    with the synthesis run K·L times instead of K)."""
    fast = getattr(model, "evaluate_grid", None)
    if fast is not None:
        return fast(y_tilde, z_tilde)
    k, b = y_tilde.shape[:2]
    l = z_tilde.shape[0]
    yy = y_tilde.unsqueeze(1).expand(k, l, *y_tilde.shape[1:]).flatten(0, 2)
    zz = z_tilde.unsqueeze(0).expand(k, l, *z_tilde.shape[1:]).flatten(0, 2)
    ev = model.evaluate(Latents({"y": yy, "z": zz}), {"y": _identity, "z": _identity})
    x_hat = ev.x_hat.unflatten(0, (k, l, b))[:, 0]
    scales = ev.scales.get("y")
    return SampleGrid(x_hat=x_hat, bits_y=ev.rates["y"].unflatten(0, (k, l, b)),
                      bits_z=ev.rates["z"].unflatten(0, (k, l, b))[0],
                      scales=scales.unflatten(0, (k, l, b))[0] if scales is not None else None)


def _finish(costs: Tensor, first_bpp: Tensor, first_mse: Tensor, beta: float, penalty: Tensor | None,
            dreg: "_Scale | None" = None, per_sample: tuple[int, ...] = ()) -> SampleCost:
    """The SampleCost of per-sample costs ``C`` (S×B): value = the bound, gradient = Σ_s w̃_s ∇C_s
    (pathwise); with ``dreg`` its holder receives w̃ (shaped ``S×B`` then ``per_sample``) so that the
    inference networks see w̃_s² ∇C_s. One sample: the loss is ``C`` itself (the ELBO, bit for bit)."""
    w = importance_weights(costs.detach(), beta)
    if dreg is not None:
        dreg.value = w.view(*per_sample)
    if costs.shape[0] == 1:
        loss = costs[0]
    else:
        bound = iw_bound(costs.detach(), beta)
        surrogate = (w * costs).sum(0)
        loss = bound + (surrogate - surrogate.detach())
    if penalty is not None:
        loss = loss + penalty
    ess = 1.0 / (w**2).sum(0)
    return SampleCost(bpp=first_bpp.detach(), mse=first_mse.detach(), loss=loss, elbo=costs.detach().mean(0), ess=ess)


@dataclass(frozen=True)
class _MultiSample:
    lmbda: Lambda
    samples: int = 8
    estimator: str = "pathwise"
    weights: str = "nats"
    scale_floor_weight: float = 0.0

    def __post_init__(self) -> None:
        if self.samples < 1:
            raise ValueError(f"samples must be ≥ 1, got {self.samples}")
        if self.estimator not in ESTIMATORS:
            raise ValueError(f"estimator must be one of {', '.join(ESTIMATORS)}, got {self.estimator!r}")
        weight_scale(self.weights, 1)

    def _penalty(self, model: LatentCodec, scales: Tensor | None, num_pixels: int) -> Tensor | None:
        """The scale-floor penalty averaged over the z̃ samples (``scales`` is L×B×…)."""
        if not self.scale_floor_weight:
            return None
        if scales is None:
            raise ValueError("scale_floor_weight needs a model whose evaluation reports its prior scales")
        pen = torch.stack([scale_floor_penalty(s, model.scale_floor, num_pixels) for s in scales]).mean(0)
        return self.scale_floor_weight * pen


@dataclass(frozen=True)
class MSDMS(_MultiSample):
    """MS-NIC-DMS (Eq. 14–15, pairing of Eq. 17): ``samples`` (k) samples of ỹ = y + u_i and
    ``z_samples`` (l) of z̃ = z + v_j from one encoder pass (direct-y); the bound is the log-mean-exp
    of the k·l weights ``w_ij = p(x | ỹ_i) p(ỹ_i | z̃_j) p(z̃_j)``. ``z_samples = 1`` is MS-NIC-MIX,
    ``samples = z_samples = 1`` the ELBO with the same noise. Pathwise estimator only."""

    z_samples: int = 4

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.z_samples < 1:
            raise ValueError(f"z_samples must be ≥ 1, got {self.z_samples}")
        if self.estimator == "dreg" and self.z_samples > 1:
            raise ValueError("the DReG estimator needs independent samples: use it with iwae or ms-mix, not ms-dms")

    def __call__(self, model: LatentCodec, x: Tensor, generator: torch.Generator | None = None) -> SampleCost:
        k, l = self.samples, self.z_samples
        latents = model.amortize(x)  # the encoders run once
        y, z = latents["y"], latents["z"]
        # noise order: z̃_1, then ỹ_1..k, then z̃_2..l — so the first z̃ and ỹ are the ELBO's (which draws
        # z then y) and MS-NIC-MIX(k) is the first column of the DMS grid from the same generator state
        u_z = _noise(1, z, generator)
        u_y = _noise(k, y, generator)
        if l > 1:
            u_z = torch.cat([u_z, _noise(l - 1, z, generator)])
        z_tilde = z.unsqueeze(0) + u_z
        y_tilde = y.unsqueeze(0) + u_y
        b = x.shape[0]
        num_pixels = x.shape[-2] * x.shape[-1]
        beta = weight_scale(self.weights, num_pixels)
        holder = shape = None
        if self.estimator == "dreg":
            holder, shape = _Scale(), (k, b, *([1] * (y.dim() - 1)))
            y_tilde = scale_grad(y_tilde, holder)  # ỹ_i is only a generative input here (z = h_a(y))
        costs, first_bpp, first_mse, scales = self._costs(model, x, y_tilde, z_tilde, b, num_pixels)
        penalty = self._penalty(model, scales, num_pixels)
        return _finish(costs.flatten(0, 1), first_bpp, first_mse, beta, penalty, holder, shape or ())

    def _costs(self, model, x, y_tilde, z_tilde, b, num_pixels):
        k = y_tilde.shape[0]
        g = evaluate_grid(model, y_tilde, z_tilde)
        xr = x.unsqueeze(0).expand(k, *x.shape).flatten(0, 1)
        mse, dist = distortion_term(g.x_hat.flatten(0, 1), xr, _repeat_lambda(self.lmbda, b, k))
        dist = dist.view(k, 1, b)
        bits = g.bits_y + g.bits_z.unsqueeze(0)  # (k, l, B)
        bpp = bits / num_pixels
        costs = bpp + dist  # C_ij per image
        return costs, bpp[0, 0], mse.view(k, b)[0], g.scales


@dataclass(frozen=True)
class MSMix(MSDMS):
    """MS-NIC-MIX (Eq. 11–13): ``samples`` (k) samples of ỹ and one z̃ (from ``h_a(y)``): the bound is
    ``−(1/β) log mean_i exp(−β (bpp_y,i + λ·255²·MSE_i)) + bpp_z``. Estimators: pathwise or DReG."""

    z_samples: int = 1

    def __post_init__(self) -> None:
        if self.z_samples != 1:
            raise ValueError("MS-NIC-MIX draws one z̃: use MSDMS for z_samples > 1")
        super().__post_init__()


@dataclass(frozen=True)
class IWAE(_MultiSample):
    """The original 2-level IWAE without direct-y (Fig. 1 (d)): ỹ_i = y + u_i, z_i = h_a(ỹ_i),
    z̃_i = z_i + v_i, bound = log-mean-exp of ``w_i = p(x | ỹ_i) p(ỹ_i | z̃_i) p(z̃_i)``. With
    ``samples = 1`` it is the 2-level VAE (:class:`ELBO` with ``direct_y=False``). Kept because the
    paper shows it fails (Tables 4, 7)."""

    def __call__(self, model: LatentCodec, x: Tensor, generator: torch.Generator | None = None) -> SampleCost:
        k = self.samples
        b = x.shape[0]
        num_pixels = x.shape[-2] * x.shape[-1]
        beta = weight_scale(self.weights, num_pixels)
        y = model.infer("y", x, Latents(), {})  # once
        y_tilde = (y.unsqueeze(0) + _noise(k, y, generator)).flatten(0, 1)  # (k·B, …): y first (z needs ỹ)
        z = model.infer("z", x, Latents({"y": y_tilde}), {})  # h_a on each noisy sample
        v = _noise(1, z, generator)[0]
        z_tilde = z + v
        y_gen, z_gen = y_tilde, z_tilde
        holder = None
        if self.estimator == "dreg":
            # the IWAE latent of sample i is (ỹ_i, z̃_i): scale the gradient where they enter the
            # generative model, so that g_a (also through h_a) and h_a see w̃_i² ∇C_i
            holder = _Scale()
            y_gen, z_gen = scale_grad(y_tilde, holder), scale_grad(z_tilde, holder)
        costs, first_bpp, first_mse, scales = self._costs(model, x, y_gen, z_gen, b, k, num_pixels)
        penalty = self._penalty(model, scales, num_pixels)
        return _finish(costs, first_bpp, first_mse, beta, penalty, holder, (k * b,) + (1,) * (y.dim() - 1))

    def _costs(self, model, x, y_tilde, z_tilde, b, k, num_pixels):
        ev = model.evaluate(Latents({"y": y_tilde, "z": z_tilde}), {"y": _identity, "z": _identity})
        xr = x.unsqueeze(0).expand(k, *x.shape).flatten(0, 1)
        mse, dist = distortion_term(ev.x_hat, xr, _repeat_lambda(self.lmbda, b, k))
        bpp = ev.bits / num_pixels
        costs = (bpp + dist).view(k, b)
        scales = ev.scales.get("y")
        scales = scales.unflatten(0, (k, b)) if scales is not None else None
        return costs, bpp.view(k, b)[0], mse.view(k, b)[0], scales


@dataclass(frozen=True)
class ELBO:
    """The single-sample ELBO as a training objective object: ``objective(model, x, generator)`` returns
    the per-item :class:`rdopt.core.rd.RDCost` whose ``loss`` the training loop minimises (see
    :func:`rdopt.training.train`). Multi-sample, video-GoP and bits-back objectives plug in the same way.

    Attributes:
        lmbda: the R-D trade-off the model is trained for.
        scale_floor_weight: weight of :func:`scale_floor_penalty` (0: off).
        direct_y: infer z from the encoder's continuous y (Ballé et al. 2018, the default); ``False``
            infers it from the noisy sample ỹ — the plain 2-level VAE of MS-NIC Table 2, which trains much
            worse (:class:`IWAE` with one sample; the noise of y is drawn first).
        quantization: ``noise`` or ``mixed`` (:func:`rdopt.losses.elbo.elbo_loss`).
    """

    lmbda: Lambda
    scale_floor_weight: float = 0.0
    direct_y: bool = True
    quantization: str = "noise"

    def __call__(self, model: LatentCodec, x: Tensor, generator: torch.Generator | None = None) -> RDCost:
        if not self.direct_y:
            c = IWAE(self.lmbda, samples=1, scale_floor_weight=self.scale_floor_weight)(model, x, generator)
            return RDCost(bpp=c.bpp, mse=c.mse, loss=c.loss)
        return elbo_loss(model, x, self.lmbda, generator, scale_floor_weight=self.scale_floor_weight,
                         quantization=self.quantization)


def make_objective(name: str, lmbda: Lambda, samples: int | None = None, z_samples: int | None = None,
                   estimator: str = "pathwise", direct_y: bool = True, weights: str = "nats",
                   scale_floor_weight: float = 0.0, quantization: str = "noise"):
    """The objective object ``name`` (one of :data:`OBJECTIVES`) with its options checked; ``None``
    sample counts take the defaults (iwae, ms-mix: k = 8; ms-dms: k = l = 4). Bad combinations raise
    ``ValueError`` with a message naming the options."""
    if name not in OBJECTIVES:
        raise ValueError(f"unknown objective {name!r}; objectives: {', '.join(OBJECTIVES)}")
    if estimator not in ESTIMATORS:
        raise ValueError(f"unknown estimator {estimator!r}; estimators: {', '.join(ESTIMATORS)}")
    if weights not in WEIGHTS:
        raise ValueError(f"unknown importance weights {weights!r}; one of {', '.join(WEIGHTS)}")
    if z_samples is not None and name != "ms-dms":
        raise ValueError("--z-samples applies to ms-dms only")
    if quantization != "noise" and (name != "elbo" or not direct_y):
        raise ValueError("--quantization mixed applies to the elbo (with direct-y)")
    if name == "elbo":
        if samples not in (None, 1):
            raise ValueError("the elbo is single-sample: --samples needs iwae, ms-mix or ms-dms")
        if estimator != "pathwise":
            raise ValueError("--estimator dreg needs a multi-sample objective (iwae or ms-mix)")
        if weights != "nats":
            raise ValueError("--iw-weights applies to the multi-sample objectives")
        return ELBO(lmbda, scale_floor_weight=scale_floor_weight, direct_y=direct_y, quantization=quantization)
    if name == "iwae":
        # the original IWAE has no direct-y trick; --no-direct-y is accepted as a restatement
        return IWAE(lmbda, samples=8 if samples is None else samples, estimator=estimator, weights=weights,
                    scale_floor_weight=scale_floor_weight)
    if not direct_y:
        raise ValueError(f"{name} is built on the direct-y trick (z̃ from h_a(y)): --no-direct-y needs elbo or iwae")
    if name == "ms-mix":
        return MSMix(lmbda, samples=8 if samples is None else samples, estimator=estimator, weights=weights,
                     scale_floor_weight=scale_floor_weight)
    if estimator == "dreg":
        raise ValueError("--estimator dreg needs independent samples: use it with iwae or ms-mix, not ms-dms")
    return MSDMS(lmbda, samples=4 if samples is None else samples, z_samples=4 if z_samples is None else z_samples,
                 weights=weights, scale_floor_weight=scale_floor_weight)


__all__ = ["ELBO", "ESTIMATORS", "IWAE", "MSDMS", "MSMix", "OBJECTIVES", "SampleCost", "WEIGHTS", "evaluate_grid",
           "importance_weights", "iw_bound", "make_objective", "scale_grad", "weight_scale"]
