"""Bjøntegaard delta rate and PSNR (BD-rate, BD-PSNR).

Both curves are fitted in (PSNR, log rate) — or (log rate, PSNR) for BD-PSNR — and the difference of
the integrals over the overlapping interval is averaged. Two interpolations:

* ``"pchip"``: piecewise cubic Hermite interpolation (monotone), the modern recommendation
  (VCEG-AL22 / JVET common test conditions);
* ``"cubic"``: Bjøntegaard's original least-squares cubic polynomial (VCEG-M33).

Validated against the ``bjontegaard`` package in the tests.
"""

from __future__ import annotations

import math

import numpy as np


def _prepare(rate, dist) -> tuple[np.ndarray, np.ndarray]:
    r = np.asarray(rate, dtype=np.float64)
    d = np.asarray(dist, dtype=np.float64)
    if r.shape != d.shape or r.ndim != 1 or len(r) < 2:
        raise ValueError("each curve needs at least two (rate, distortion) points of equal length")
    if np.any(r <= 0) or not np.all(np.isfinite(r)) or not np.all(np.isfinite(d)):
        raise ValueError("rates must be positive and all values finite")
    order = np.argsort(d)
    return np.log(r[order]), d[order]


def _integral(x: np.ndarray, y: np.ndarray, lo: float, hi: float, method: str) -> float:
    """∫_lo^hi f(t) dt where f interpolates the points (x, y) (x increasing)."""
    if method == "cubic":
        if len(x) < 4:
            raise ValueError("the cubic fit needs at least 4 points per curve")
        p = np.polyint(np.polyfit(x, y, 3))
        return float(np.polyval(p, hi) - np.polyval(p, lo))
    if method == "pchip":
        from scipy.interpolate import PchipInterpolator

        if np.any(np.diff(x) <= 0):
            raise ValueError("pchip needs strictly increasing quality values along each curve")
        return float(PchipInterpolator(x, y).integrate(lo, hi))
    raise ValueError(f"unknown interpolation {method!r} (pchip, cubic)")


def bd_rate(rate_anchor, psnr_anchor, rate_test, psnr_test, method: str = "pchip") -> float:
    """Average rate difference (%) of the test curve against the anchor at equal PSNR (negative =
    the test needs fewer bits)."""
    la, da = _prepare(rate_anchor, psnr_anchor)
    lt, dt = _prepare(rate_test, psnr_test)
    lo, hi = max(da.min(), dt.min()), min(da.max(), dt.max())
    if hi <= lo:
        raise ValueError("the two curves do not overlap in quality")
    ia = _integral(da, la, lo, hi, method)
    it = _integral(dt, lt, lo, hi, method)
    return (math.exp((it - ia) / (hi - lo)) - 1.0) * 100.0


def bd_psnr(rate_anchor, psnr_anchor, rate_test, psnr_test, method: str = "pchip") -> float:
    """Average PSNR difference (dB) of the test curve against the anchor at equal rate."""
    la, da = _prepare(rate_anchor, psnr_anchor)
    lt, dt = _prepare(rate_test, psnr_test)
    oa, ot = np.argsort(la), np.argsort(lt)
    la, da, lt, dt = la[oa], da[oa], lt[ot], dt[ot]
    lo, hi = max(la.min(), lt.min()), min(la.max(), lt.max())
    if hi <= lo:
        raise ValueError("the two curves do not overlap in rate")
    ia = _integral(la, da, lo, hi, method)
    it = _integral(lt, dt, lo, hi, method)
    return (it - ia) / (hi - lo)
