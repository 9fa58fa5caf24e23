"""rdopt's BD-rate / BD-PSNR against the bjontegaard package on known inputs."""

import bjontegaard
import numpy as np
import pytest

from rdopt.metrics.bd import bd_psnr, bd_rate

# Rate/PSNR points from the bjontegaard package's documentation-style example (four points each)
R1, D1 = [9487.76, 4593.60, 2486.44, 1358.24], [40.037, 38.615, 36.845, 34.851]
R2, D2 = [9787.80, 4469.00, 2451.40, 1356.24], [40.121, 38.532, 36.682, 34.839]


@pytest.mark.parametrize("method", ["pchip", "cubic"])
def test_bd_rate_matches_package(method):
    ours = bd_rate(R1, D1, R2, D2, method=method)
    ref = bjontegaard.bd_rate(R1, D1, R2, D2, method=method)
    assert ours == pytest.approx(ref, abs=1e-6)


@pytest.mark.parametrize("method", ["pchip", "cubic"])
def test_bd_psnr_matches_package(method):
    ours = bd_psnr(R1, D1, R2, D2, method=method)
    ref = bjontegaard.bd_psnr(R1, D1, R2, D2, method=method)
    assert ours == pytest.approx(ref, abs=1e-6)


@pytest.mark.parametrize("method", ["pchip", "cubic"])
def test_random_curves_match_package(method):
    rng = np.random.default_rng(0)
    for _ in range(20):
        r = np.sort(rng.uniform(0.05, 2.0, 5))
        d = 25 + 6 * np.log2(r / r[0]) + np.cumsum(rng.uniform(0, 0.3, 5))
        r2 = r * rng.uniform(0.7, 1.2)
        d2 = d + rng.uniform(-0.5, 0.5)
        assert bd_rate(r, d, r2, d2, method) == pytest.approx(bjontegaard.bd_rate(r, d, r2, d2, method=method), abs=1e-6)
        assert bd_psnr(r, d, r2, d2, method) == pytest.approx(bjontegaard.bd_psnr(r, d, r2, d2, method=method), abs=1e-6)


def test_known_values():
    r = [0.1, 0.2, 0.4, 0.8]
    d = [28.0, 30.0, 32.0, 34.0]
    # the same curve at 10 % fewer bits everywhere: exactly −10 %
    assert bd_rate(r, d, [x * 0.9 for x in r], d) == pytest.approx(-10.0, abs=1e-9)
    assert bd_rate(r, d, r, d, "cubic") == pytest.approx(0.0, abs=1e-9)
    # +1 dB everywhere at equal rate
    assert bd_psnr(r, d, r, [x + 1 for x in d]) == pytest.approx(1.0, abs=1e-9)


def test_errors():
    with pytest.raises(ValueError, match="overlap"):
        bd_rate([1, 2], [30, 31], [1, 2], [40, 41])
    with pytest.raises(ValueError, match="4 points"):
        bd_rate([1, 2, 3], [30, 31, 32], [1, 2, 3], [30, 31, 32], "cubic")
    with pytest.raises(ValueError):
        bd_rate([0, 2], [30, 31], [1, 2], [30, 31])
