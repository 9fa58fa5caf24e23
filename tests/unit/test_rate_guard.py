"""The scale-floor penalty (training) and the encode-time rate guard."""

import numpy as np
import torch

from rdopt.core.types import Latents
from rdopt.losses.elbo import elbo_loss, scale_floor_penalty
from rdopt.metrics.quality import lossless_png_bytes, rate_sanity


def test_scale_floor_penalty_values_and_gradient():
    s = torch.tensor([[[-2.0, 0.05], [0.2, 5.0]]], dtype=torch.float64, requires_grad=True)
    p = scale_floor_penalty(s, floor=0.11, num_pixels=4)
    expected = ((1.1 * 0.11 + 2.0) + (1.1 * 0.11 - 0.05)) / 4
    assert torch.allclose(p, torch.tensor([expected], dtype=torch.float64))
    p.sum().backward()
    assert torch.equal(s.grad, torch.tensor([[[-0.25, -0.25], [0.0, 0.0]]], dtype=torch.float64))


def test_elbo_with_floor_penalty_adds_it_to_the_loss_only():
    from compressai.models import MeanScaleHyperprior

    from rdopt.codecs.image.hyperprior import HyperpriorAdapter

    torch.manual_seed(0)
    model = HyperpriorAdapter(MeanScaleHyperprior(N=8, M=12), model_id="t", lmbda=0.01)
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():  # every scale of p(y|z) is -1, whatever z: below the floor
        model.net.h_s[-1].weight[:12].zero_()
        model.net.h_s[-1].bias[:12].fill_(-1.0)
    plain = elbo_loss(model, x, 0.01, torch.Generator().manual_seed(1))
    pen = elbo_loss(model, x, 0.01, torch.Generator().manual_seed(1), scale_floor_weight=0.5)
    assert torch.equal(plain.bpp, pen.bpp) and torch.equal(plain.mse, pen.mse)
    expected = 0.5 * 12 * 4 * 4 * (1.1 * model.scale_floor + 1.0) / (64 * 64)  # 12 channels of 4×4 latents
    assert torch.allclose(pen.loss - plain.loss, torch.full((2,), expected), atol=1e-4)


def test_floor_diagnostics_separate_unused_channels_from_costly_ones():
    from compressai.models import MeanScaleHyperprior

    from rdopt.codecs.image.hyperprior import HyperpriorAdapter

    torch.manual_seed(0)
    net = MeanScaleHyperprior(N=8, M=12)
    net.update(force=True)
    model = HyperpriorAdapter(net, model_id="t", lmbda=0.01).eval()
    x = torch.rand(1, 3, 64, 64)
    lat = model.quantize(model.amortize(x))
    with torch.no_grad():
        net.h_s[-1].weight[:12].zero_()
        net.h_s[-1].bias[:6].fill_(-30.0)  # channels 0-5 floored
        net.h_s[-1].bias[6:12].fill_(2.0)  # channels 6-11 well above the floor
    scales, means = model.prior(lat["z"])
    lat_on_mean = Latents({"y": torch.where(torch.arange(12).view(1, 12, 1, 1) < 6, means, lat["y"]), "z": lat["z"]})
    frac, share = model.floor_diagnostics(lat_on_mean)
    assert abs(float(frac) - 0.5) < 1e-6 and float(share) < 0.01  # floored but on the mean: harmless
    off = Latents({"y": lat_on_mean["y"] + (torch.arange(12).view(1, 12, 1, 1) < 6) * 3.0, "z": lat["z"]})
    frac2, share2 = model.floor_diagnostics(off)
    assert abs(float(frac2) - 0.5) < 1e-6 and float(share2) > 0.9  # floored and off the mean: the collapse


def test_rate_sanity_warns_when_the_file_or_the_amortized_estimate_exceeds_png():
    flat = np.full((64, 64, 3), 128, dtype=np.uint8)
    png = lossless_png_bytes(flat)
    assert png < 400
    assert rate_sanity(flat, png - 1) == (png, [])
    _, w = rate_sanity(flat, png + 1)
    assert len(w) == 1 and "larger than a lossless PNG" in w[0]
    _, w = rate_sanity(flat, 10, amortized_bits=8.0 * (png + 100))
    assert len(w) == 1 and "amortized" in w[0]


def test_encode_reports_the_guard():
    from rdopt.api.image import encode_image
    from rdopt.codecs.image.loading import load_model
    from rdopt.data.images import LoadedImage

    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    flat = np.full((64, 64, 3), 77, dtype=np.uint8)
    model = load_model(quality=2)
    for px in (noise, flat):
        stats = encode_image(model, LoadedImage(px, False, False, "RGB")).stats
        assert stats.png_bytes == lossless_png_bytes(px)
        assert bool(stats.warnings) == (stats.file_bytes > stats.png_bytes)
        assert stats.to_dict()["warnings"] == list(stats.warnings)
