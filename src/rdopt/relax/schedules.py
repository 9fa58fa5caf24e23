"""Schedules are plain functions ``step -> value`` (temperatures, learning-rate factors)."""

from __future__ import annotations

import math
from typing import Callable

Schedule = Callable[[int], float]


def constant(value: float) -> Schedule:
    def schedule(step: int) -> float:
        return value

    return schedule


def exp_decay_after(tau0: float, rate: float, t0: int) -> Schedule:
    """``τ(t) = min(τ0, τ0·exp(−rate·(t − t0)))``: hold ``τ0`` for ``t0`` steps, then decay
    exponentially (Yang et al. 2020, Supplement S3; defaults there τ0 = 0.5, rate = 1e-3, t0 = 700)."""
    if tau0 <= 0 or rate < 0 or t0 < 0:
        raise ValueError(f"invalid schedule: tau0={tau0}, rate={rate}, t0={t0}")

    def schedule(step: int) -> float:
        return min(tau0, tau0 * math.exp(-rate * (step - t0)))

    return schedule


def fitted_to_budget(steps: int, tau0: float = 0.5, tau_end: float = 0.05, hold: float = 0.35) -> Schedule:
    """The S3 schedule rescaled to a step budget: hold ``τ0`` for ``hold·steps`` steps, then decay so
    that the temperature reaches ``tau_end`` at the last step. With ``steps = 2000`` and the defaults
    this is close to the paper's schedule (t0 = 700, rate ≈ 1.8e-3)."""
    if steps <= 0:
        raise ValueError(f"steps must be positive, got {steps}")
    t0 = int(round(hold * steps))
    rate = math.log(tau0 / tau_end) / max(steps - t0, 1)
    return exp_decay_after(tau0, rate, t0)


def cosine_factor(steps: int, final: float = 0.1) -> Schedule:
    """Learning-rate factor decaying from 1 to ``final`` along a half cosine over ``steps``."""

    def schedule(step: int) -> float:
        p = min(max(step / max(steps, 1), 0.0), 1.0)
        return final + (1.0 - final) * 0.5 * (1.0 + math.cos(math.pi * p))

    return schedule
