"""Fixed numeric codes of the ``.rdo`` container (never list positions: a code once given keeps its
meaning forever; new names get new codes, retired codes are never reused).

The method codes 0–5 are those format version 1 wrote (as positions of a list then); v2 keeps them.
"""

from __future__ import annotations

from types import MappingProxyType

#: relaxation used while optimizing (informational)
METHOD_CODES = MappingProxyType({"amortized": 0, "sga": 1, "noise": 2, "ste": 3, "map": 4, "danneal": 5,
                                 # GoP bit allocation (video; rdopt.infer.allocation)
                                 "bao": 6, "sequential": 7, "windowed": 8, "exact": 9, "oeu": 10,
                                 "oeu-sequential": 11, "lambda-domain": 12,
                                 # lossy bits-back (paper 003 §3.3; rdopt.api.bitsback)
                                 "sga-bb": 13})
#: DAG solver (informational; v1 files were all written by image SAVI = joint)
SOLVER_CODES = MappingProxyType({"joint": 0, "sequential": 1, "windowed": 2, "exact": 3})
#: what a named stream holds
LATENT_KIND_CODES = MappingProxyType({
    "latent": 0,  # the main latent of an image / intra frame (y)
    "hyper": 1,  # a hyper-latent (z)
    "motion": 2,  # motion latent of a predicted frame (w)
    "motion-hyper": 3,
    "residual": 4,  # residual latent of a predicted frame
    "residual-hyper": 5,
    "bits-back": 6,  # the bits-back record of a frame (grid, BBVI settings, padding, checksum of ξ)
    "skip": 7,  # skip mode of a video P-frame: whole frame, or a mask of 16×16 blocks (rdopt.coding.skip)
})
#: frame types of a per-frame chunk
FRAME_TYPE_CODES = MappingProxyType({"I": 0, "P": 1, "B": 2})


def _inverse(table) -> MappingProxyType:
    inv = {v: k for k, v in table.items()}
    if len(inv) != len(table):
        raise AssertionError("duplicate code in a code table")
    return MappingProxyType(inv)


METHOD_NAMES = _inverse(METHOD_CODES)
SOLVER_NAMES = _inverse(SOLVER_CODES)
LATENT_KIND_NAMES = _inverse(LATENT_KIND_CODES)
FRAME_TYPE_NAMES = _inverse(FRAME_TYPE_CODES)

__all__ = [
    "FRAME_TYPE_CODES", "FRAME_TYPE_NAMES", "LATENT_KIND_CODES", "LATENT_KIND_NAMES", "METHOD_CODES",
    "METHOD_NAMES", "SOLVER_CODES", "SOLVER_NAMES",
]
