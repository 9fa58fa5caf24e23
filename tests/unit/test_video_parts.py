"""Building blocks of the P-frame codecs (rdopt.codecs.video.parts): the warp under a diverged (NaN) flow."""

import pytest
import torch

from rdopt.codecs.video.parts import warp


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_a_nan_flow_vector_gives_nan_at_its_pixel_and_a_finite_backward(dtype):
    """A diverged flow (e.g. the exact solver's nested descent on the real codec) reached grid_sample, whose CPU
    backward indexes memory with the NaN position (border padding) and crashed the process."""
    g = torch.Generator().manual_seed(2)
    ref = torch.rand(1, 3, 16, 16, generator=g, dtype=dtype, requires_grad=True)
    flow = 0.3 * torch.randn(1, 2, 16, 16, generator=g, dtype=dtype)
    clean = flow.clone()
    flow[0, 0, 5, 7] = float("nan")
    flow.requires_grad_()
    bad = torch.zeros(1, 1, 16, 16, dtype=torch.bool)
    bad[0, 0, 5, 7] = True
    out = warp(ref, flow)
    out.sum().backward()
    assert ref.grad.isfinite().all() and flow.grad.isfinite().all() and (flow.grad[0, :, 5, 7] == 0).all()
    assert out[0, :, 5, 7].isnan().all() and out.masked_select(~bad).isfinite().all()
    torch.testing.assert_close(out.masked_fill(bad, 0.0), warp(ref, clean).masked_fill(bad, 0.0), rtol=0, atol=0)
