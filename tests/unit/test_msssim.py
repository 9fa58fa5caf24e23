"""The differentiable MS-SSIM objective: values against pytorch-msssim, fewer scales, weights,
and the gradient against finite differences in float64."""

import pytest
import torch

from rdopt.core.rd import MS_SSIM_LAMBDA_FACTOR, Distortion, distortion_term, weighted_distortion_term
from rdopt.metrics.msssim import max_scales, ms_ssim


def _pair(h, w, batch=2, seed=0, noise=0.08, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(h, dtype=dtype), torch.arange(w, dtype=dtype), indexing="ij")
    base = 0.5 + 0.3 * torch.sin(xx / 7)[None, None] * torch.cos(yy / 5)[None, None]
    x = (base.expand(batch, 3, h, w) + 0.05 * torch.rand(batch, 3, h, w, generator=g, dtype=dtype)).clamp(0, 1)
    y = (x + noise * torch.randn(batch, 3, h, w, generator=g, dtype=dtype)).clamp(0, 1)
    return x.contiguous(), y.contiguous()


def test_five_scales_match_pytorch_msssim():
    from pytorch_msssim import ms_ssim as reference

    x, y = _pair(170, 181)
    ours = ms_ssim(x, y)
    ref = reference(x, y, data_range=1.0, size_average=False)
    assert torch.allclose(ours, ref, rtol=0, atol=1e-10)
    # a weight map of ones is the unweighted value; a constant map too
    assert torch.allclose(ms_ssim(x, y, weight=torch.ones(1, 1, 170, 181, dtype=torch.float64)), ours, atol=1e-12)
    assert torch.allclose(ms_ssim(x, y, weight=torch.full((2, 1, 170, 181), 3.0, dtype=torch.float64)), ours, atol=1e-12)
    assert float(ms_ssim(x, x).min()) == pytest.approx(1.0, abs=1e-12)


def test_scales_fit_the_image_size():
    assert [max_scales(s, s) for s in (10, 11, 20, 21, 41, 81, 160, 161, 1000)] == [0, 1, 1, 2, 3, 4, 4, 5, 5]
    x, y = _pair(64, 90, batch=1)
    v3 = ms_ssim(x, y)  # 3 scales fit 64 pixels
    assert torch.allclose(v3, ms_ssim(x, y, scales=3)) and not torch.allclose(v3, ms_ssim(x, y, scales=1))
    with pytest.raises(ValueError, match="at most 3 scales"):
        ms_ssim(x, y, scales=4)
    with pytest.raises(ValueError, match="at least 11 pixels"):
        ms_ssim(x[..., :10, :], y[..., :10, :])


def test_weights_emphasize_the_region():
    x, y = _pair(64, 64, batch=1, noise=0.0)
    y = y.clone()
    y[..., :32, :] = (y[..., :32, :] + 0.2 * torch.randn_like(y[..., :32, :])).clamp(0, 1)  # damage the top half
    top = torch.zeros(1, 1, 64, 64, dtype=torch.float64)
    top[..., :32, :] = 1.0
    bottom = 1.0 - top
    assert float(ms_ssim(x, y, weight=top + 0.01)) < float(ms_ssim(x, y)) < float(ms_ssim(x, y, weight=bottom + 0.01))


@pytest.mark.parametrize("size,scales", [(24, 2), (46, 3)])
def test_gradient_matches_finite_differences(size, scales):
    x, y = _pair(size, size + 3, batch=1, seed=1)
    w = torch.rand(1, 1, size, size + 3, dtype=torch.float64, generator=torch.Generator().manual_seed(2)) + 0.5
    y.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda t: ms_ssim(x, t, scales=scales, weight=w), (y,), eps=1e-6, atol=1e-7,
                                      fast_mode=size > 24)


def test_five_scale_objective_gradient_matches_a_directional_difference():
    """The distortion term of ``--distortion ms-ssim`` (and a mix) at 161×161 under a weight map: the
    analytic directional derivative equals the central difference (float64)."""
    x, y0 = _pair(161, 165, batch=1, seed=3)
    g = torch.Generator().manual_seed(4)
    v = torch.randn(y0.shape, generator=g, dtype=torch.float64)
    w = 1.0 + 3.0 * (torch.rand(1, 1, 161, 165, generator=g, dtype=torch.float64) > 0.5)
    for dist in (Distortion(1.0), Distortion(0.3)):
        def f(t):
            return weighted_distortion_term(t, x, 0.01, dist, w)[1].sum()

        y = y0.clone().requires_grad_(True)
        f(y).backward()
        analytic = float((y.grad * v).sum())
        h = 1e-6
        numeric = (float(f(y0 + h * v)) - float(f(y0 - h * v))) / (2 * h)
        assert analytic == pytest.approx(numeric, rel=1e-6, abs=1e-9)


def test_distortion_terms():
    x, y = _pair(32, 40, batch=2, dtype=torch.float32)
    mse, plain = distortion_term(y, x, 0.01)
    # a weight map of ones: bit for bit what no map computes, value and gradient
    for lm in (0.01, torch.tensor([0.01, 0.02])):
        y1 = y.clone().requires_grad_(True)
        y2 = y.clone().requires_grad_(True)
        a = weighted_distortion_term(y1, x, lm, Distortion(), torch.ones(32, 40))[1]
        b = distortion_term(y2, x, lm)[1]
        assert torch.equal(a, b)
        a.sum().backward()
        b.sum().backward()
        assert torch.equal(y1.grad, y2.grad)
    # ms-ssim: λ·K·(1 − MS-SSIM); a mix is the weighted sum
    d_ms = weighted_distortion_term(y, x, 0.01, Distortion(1.0))[1]
    assert torch.allclose(d_ms, 0.01 * MS_SSIM_LAMBDA_FACTOR * (1 - ms_ssim(y, x)))
    d_mix = weighted_distortion_term(y, x, 0.01, Distortion(0.25))[1]
    assert torch.allclose(d_mix, 0.75 * plain + 0.25 * d_ms, rtol=1e-5)
    with pytest.raises(ValueError, match="cannot be combined"):
        weighted_distortion_term(y, x, torch.full((2, 1, 32, 40), 0.01), Distortion(1.0))


@pytest.mark.parametrize("text,share", [("mse", 0.0), ("ms-ssim", 1.0), ("MS-SSIM", 1.0), ("mix:0.5", 0.5), ("mix:1", 1.0)])
def test_distortion_parse(text, share):
    assert Distortion.parse(text).ms_ssim == share


@pytest.mark.parametrize("text", ["ssim", "mix:", "mix:1.5", "mix:-0.1", "mix:nan", "mix:abc", ""])
def test_distortion_parse_errors(text):
    with pytest.raises(ValueError):
        Distortion.parse(text)
