"""The protocol adapter against CompressAI itself: same latents, same strings, same decode."""

import numpy as np
import pytest
import torch

from conftest import pattern_image, tiny_adapter
from rdopt.core.types import Latents, bits_from_likelihoods
from rdopt.data.images import to_tensor
from rdopt.relax.rounding import hard


@pytest.fixture(params=["mean-scale", "scale-only"])
def model(request, tiny_model):
    return tiny_model if request.param == "mean-scale" else tiny_adapter(scale_only=True)


def image(h=64, w=128, seed=3):
    return to_tensor(pattern_image(h, w, seed))


def test_amortize_matches_compressai_forward(model):
    x = image()
    lat = model.amortize(x)
    ref = model.net(x)  # eval mode: quantized ("dequantize") forward pass
    ev = model.hard_evaluate(lat)
    torch.testing.assert_close(ev.x_hat, ref["x_hat"], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ev.rates["y"], bits_from_likelihoods(ref["likelihoods"]["y"]), rtol=1e-5, atol=1e-3)
    torch.testing.assert_close(ev.rates["z"], bits_from_likelihoods(ref["likelihoods"]["z"]), rtol=1e-5, atol=1e-3)


def test_evaluate_never_calls_the_analysis_transforms(model, monkeypatch):
    lat = model.amortize(image())

    def boom(*a, **k):
        raise AssertionError("analysis transform called during decoder-side evaluation")

    monkeypatch.setattr(model.net.g_a, "forward", boom)
    monkeypatch.setattr(model.net.h_a, "forward", boom)
    model.evaluate(lat, {"y": hard(), "z": hard()})


def test_compress_is_what_compressai_writes(model):
    x = image()
    ours = model.compress(model.amortize(x))
    theirs = model.net.compress(x)
    assert [ours.streams["y"], ours.streams["z"]] == theirs["strings"]
    assert list(ours.shapes["z"][1:]) == list(theirs["shape"])


def test_stock_decoder_reads_our_strings_and_matches_quantize(model):
    x = image()
    lat = model.amortize(x)
    coded = model.compress(lat)
    stock = model.net.decompress([coded.streams["y"], coded.streams["z"]], list(coded.shapes["z"][1:]))
    ours = model.decompress(coded)
    q = model.quantize(lat)
    torch.testing.assert_close(ours["y"], q["y"], rtol=0, atol=1e-5)
    torch.testing.assert_close(ours["z"], q["z"], rtol=0, atol=1e-5)
    torch.testing.assert_close(model.reconstruct(ours).clamp(0, 1), stock["x_hat"], rtol=0, atol=1e-6)


def test_scale_indexes_equal_build_indexes(model):
    scales = torch.exp(torch.linspace(-4, 6, 5000)).reshape(1, 5, 10, 100)
    scales = torch.cat([scales, model.net.gaussian_conditional.scale_table.reshape(1, 1, 1, -1).expand(1, 5, 10, -1)], 3)
    assert torch.equal(model.scale_indexes(scales), model.net.gaussian_conditional.build_indexes(scales))


def test_hard_rounding_is_relative_to_the_prior_mean(tiny_model):
    lat = tiny_model.amortize(image())
    q = tiny_model.quantize(lat)
    _, means = tiny_model.prior(q["z"])
    k = q["y"] - means
    torch.testing.assert_close(k, torch.round(k), rtol=0, atol=1e-4)
    assert not torch.allclose(q["y"], torch.round(q["y"]))  # not plain integer rounding
    med = tiny_model.z_offset(q["z"])
    torch.testing.assert_close(q["z"] - med, torch.round(q["z"] - med), rtol=0, atol=1e-4)


def test_batch_equals_single(tiny_model):
    xs = torch.cat([image(seed=1), image(seed=2)])
    both = tiny_model.hard_evaluate(tiny_model.amortize(xs))
    one = tiny_model.hard_evaluate(tiny_model.amortize(xs[1:]))
    torch.testing.assert_close(both.bits[1:], one.bits, rtol=1e-5, atol=1e-3)
    torch.testing.assert_close(both.x_hat[1:], one.x_hat, rtol=1e-5, atol=1e-5)


def test_weight_hash_detects_any_change(tiny_model):
    a = tiny_adapter(seed=0)
    b = tiny_adapter(seed=0)
    assert a.weight_hash() == b.weight_hash()
    with torch.no_grad():
        b.net.g_s[0].weight.view(-1)[0] += 1e-3
    b._weight_hash = None
    assert a.weight_hash() != b.weight_hash()


def test_latents_helpers():
    a = Latents({"y": torch.zeros(2, 3, 4, 4), "z": torch.ones(2, 5, 1, 1)})
    assert a.select(1)["y"].shape == (1, 3, 4, 4)
    assert Latents.cat([a, a])["z"].shape == (4, 5, 1, 1)
    assert a.names == ("y", "z") and list(a) == ["y", "z"] and a.batch_size == 2
    with pytest.raises(KeyError, match="unknown latent"):
        a["w"]
    with pytest.raises(ValueError, match="duplicate"):
        Latents([("y", a["y"]), ("y", a["y"])])
    assert np.isclose(float(bits_from_likelihoods(torch.full((1, 8), 0.5))[0]), 8.0)
