"""Relaxations of rounding, as plain functions.

Every factory returns a callable ``relax(x, offset) -> x̃`` (see :class:`rdopt.core.types.Relaxation`).
``offset`` is the point the entropy coder rounds around, so the hard value of every relaxation is
``round(x − offset) + offset`` — exactly what CompressAI's ``compress()`` codes for a mean-scale model.

Relaxations know nothing about models; they are unit-tested in float64 (limits and gradients).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..core.types import Relaxation

# atanh(1) is infinite: distances are kept strictly inside [0, 1) before ψ is applied. The margin
# is relative to the dtype so float64 tests can go closer to the limit than float32 runs.
_ATANH_MARGIN = {torch.float16: 1e-3, torch.bfloat16: 1e-2, torch.float32: 1e-6, torch.float64: 1e-12}


def hard_round(x: Tensor, offset: Tensor | float = 0.0) -> Tensor:
    """``round(x − offset) + offset`` (no gradient): the value the entropy coder writes."""
    return torch.round(x - offset) + offset


def hard() -> Relaxation:
    """Hard rounding (the true, discrete objective)."""

    def relax(x: Tensor, offset: Tensor) -> Tensor:
        return hard_round(x, offset)

    relax.is_hard = True  # deterministic, no gradient: results computed from it may be cached
    return relax


def identity() -> Relaxation:
    """MAP ablation [A1]: ignore rounding while optimizing; round only at the end."""

    def relax(x: Tensor, offset: Tensor) -> Tensor:
        return x

    return relax


def uniform_noise(generator: torch.Generator | None = None) -> Relaxation:
    """Additive uniform noise U(−½, ½) (Ballé et al. 2017; ablation [A3], Campos et al. 2019).

    The noise is centred on ``x`` itself; the offset does not matter for a uniform perturbation.
    """

    def relax(x: Tensor, offset: Tensor) -> Tensor:
        u = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        return x + (u - 0.5)

    return relax


def straight_through() -> Relaxation:
    """Straight-through estimator [A2]: hard rounding forward, identity gradient backward."""

    def relax(x: Tensor, offset: Tensor) -> Tensor:
        return x + (hard_round(x, offset) - x).detach()

    return relax


def mixed(generator: torch.Generator | None = None) -> Relaxation:
    """Mixed quantization for training (Minnen & Singh 2020; what CompressAI's latent codecs do with
    ``quantizer="ste"``): every value the decoder computes from — the synthesis, the hyper-synthesis, a context
    model — is the straight-through rounding ``round(x − offset) + offset`` (identity gradient), while the rate is
    that of additive uniform noise ``x + u``, ``u ~ U(−½, ½)`` (:attr:`rate_value`). An adapter that knows the
    attribute takes the likelihood at ``rate_value(x, offset)``; one that does not measures it at the rounded value.
    """

    def relax(x: Tensor, offset: Tensor) -> Tensor:
        return x + (hard_round(x, offset) - x).detach()

    def rate_value(x: Tensor, offset: Tensor) -> Tensor:
        u = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        return x + (u - 0.5)

    relax.rate_value = rate_value
    return relax


def rate_value(relax: Relaxation, x: Tensor, offset: Tensor, relaxed: Tensor) -> Tensor:
    """Where a relaxation's rate is measured: its ``rate_value`` if it has one (:func:`mixed`), else the relaxed
    value itself."""
    fn = getattr(relax, "rate_value", None)
    return relaxed if fn is None else fn(x, offset)


def _rounding_logits(x: Tensor, offset: Tensor, tau: float) -> tuple[Tensor, Tensor]:
    """Floor of ``x − offset`` and the logits of rounding (down, up), paper Eq. 4 with ψ = atanh.

    ``log q(down) ∝ −atanh(v − ⌊v⌋)/τ`` and ``log q(up) ∝ −atanh(⌈v⌉ − v)/τ`` with ``⌈v⌉ = ⌊v⌋ + 1``
    (for an integer ``v`` the distance down is 0 and rounding down has probability → 1).
    """
    v = x - offset
    floor = torch.floor(v).detach()
    margin = _ATANH_MARGIN.get(x.dtype, 1e-6)
    d_down = (v - floor).clamp(0.0, 1.0 - margin)
    d_up = (floor + 1.0 - v).clamp(margin, 1.0 - margin)
    logits = torch.stack([-torch.atanh(d_down), -torch.atanh(d_up)], dim=-1) / tau
    return floor, logits


def sga(tau: float, generator: torch.Generator | None = None, gumbel_tau: float | None = None) -> Relaxation:
    """Stochastic Gumbel Annealing (Yang et al. 2020, Eq. 4-5): tempered stochastic two-way rounding.

    One Gumbel-softmax sample of the rounding direction ``r ~ q_τ(r | x)`` per element:
    ``x̃ = offset + ⌊v⌋ + s_up`` with ``s = softmax((logits + g) / τ_g)``, ``g ~ Gumbel(0, 1)``.

    Where the temperature enters: ``q_τ`` itself is tempered (its logits are ``−ψ(·)/τ``, Eq. 4), and
    the Gumbel-softmax relaxation of a sample from ``q_τ`` has its own temperature ``τ_g``. The paper
    says it uses "the same temperature τ as in q_τ" for both, which is what the reference code does
    (τ applied twice). rdopt follows the paper: ``gumbel_tau`` defaults to ``tau``; pass another
    value to decouple the two. As ``τ → 0`` the sample tends to the hard rounding of ``x``.
    """
    if tau <= 0:
        raise ValueError(f"SGA temperature must be > 0, got {tau}")
    tau_g = tau if gumbel_tau is None else gumbel_tau
    if tau_g <= 0:
        raise ValueError(f"Gumbel-softmax temperature must be > 0, got {tau_g}")

    def relax(x: Tensor, offset: Tensor) -> Tensor:
        floor, logits = _rounding_logits(x, offset, tau)
        u = torch.rand(logits.shape, generator=generator, device=x.device, dtype=x.dtype)
        tiny = torch.finfo(x.dtype).tiny
        neg_log_u = (-torch.log(u.clamp_min(tiny))).clamp_min(tiny)
        gumbel = -torch.log(neg_log_u)
        sample = torch.softmax((logits + gumbel) / tau_g, dim=-1)
        return offset + floor + sample[..., 1]

    return relax


def deterministic_annealing(tau: float) -> Relaxation:
    """Deterministic annealing [A4]: the expectation of SGA's rounding moved inside the loss,
    ``x̃ = offset + ⌊v⌋ + q_τ(up | x)``. Tends to hard rounding as ``τ → 0``."""
    if tau <= 0:
        raise ValueError(f"annealing temperature must be > 0, got {tau}")

    def relax(x: Tensor, offset: Tensor) -> Tensor:
        floor, logits = _rounding_logits(x, offset, tau)
        return offset + floor + torch.softmax(logits, dim=-1)[..., 1]

    return relax


def probability_round_up(x: Tensor, offset: Tensor | float, tau: float) -> Tensor:
    """``q_τ(r = up | x)`` of Eq. 4 (used by tests and plots)."""
    offset_t = torch.as_tensor(offset, dtype=x.dtype, device=x.device)
    _, logits = _rounding_logits(x, offset_t, tau)
    return torch.softmax(logits, dim=-1)[..., 1]


def atanh_margin(dtype: torch.dtype) -> float:
    return _ATANH_MARGIN.get(dtype, 1e-6)

