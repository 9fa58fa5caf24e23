"""The one relaxation registry: a method name → a schedule ``step -> Relaxation``.

Names (paper 003, Table 1):

==========  ===============================================================================
amortized   hard rounding (no optimization: the encoder's output, rounded)
sga         [M1] Stochastic Gumbel Annealing, ψ = atanh, temperature τ(t) (Eq. 4–5)
danneal     [A4] deterministic annealing: expectation of SGA's rounding inside the loss, τ(t)
noise       [A3] additive uniform noise (Campos et al. 2019)
ste         [A2] straight-through rounding
map         [A1] no rounding during optimization (identity), round at the end
==========  ===============================================================================
"""

from __future__ import annotations

import torch

from ..core.types import RelaxationSchedule
from . import rounding
from .schedules import Schedule

RELAXATIONS = ("amortized", "sga", "noise", "ste", "map", "danneal")
ANNEALED = ("sga", "danneal")  # the ones that take a temperature schedule


def relaxation_schedule(name: str, temperature: Schedule | None = None,
                        generator: torch.Generator | None = None) -> RelaxationSchedule:
    """``step -> Relaxation`` for a method name; ``temperature`` is required for the annealed ones,
    ``generator`` drives the stochastic ones (SGA, noise)."""
    if name in ANNEALED and temperature is None:
        raise ValueError(f"relaxation {name!r} needs a temperature schedule")
    if name == "sga":
        return lambda t: rounding.sga(temperature(t), generator)
    if name == "danneal":
        return lambda t: rounding.deterministic_annealing(temperature(t))
    if name == "noise":
        relax = rounding.uniform_noise(generator)
    elif name == "ste":
        relax = rounding.straight_through()
    elif name == "map":
        relax = rounding.identity()
    elif name == "amortized":
        relax = rounding.hard()
    else:
        raise ValueError(f"unknown relaxation {name!r}; choose from {', '.join(RELAXATIONS)}")
    return lambda t: relax


__all__ = ["ANNEALED", "RELAXATIONS", "relaxation_schedule"]
