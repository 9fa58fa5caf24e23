"""SAVI / SGA through CompressAI's autoregressive context models (mbt2018, cheng2020-anchor, cheng2020-attn):
the codec contract, byte-identity with the stock coder, the serial quantization against the stock decoder, the
true cost the loop keeps, the relaxed evaluation's gradients in float64, and checkpoints recognised by their keys.

Small randomly initialised models (N = M = 16, fixed seeds), saved in tmp_path: nothing is downloaded."""

import math

import numpy as np
import pytest
import torch

from conftest import frozen, pattern_image, relaxed_objective_gradcheck
from rdopt.codecs.image.context import ContextAdapter
from rdopt.core.types import Latents, relax_all
from rdopt.data.images import LoadedImage, pad, to_batch, to_tensor
from rdopt.infer import contract
from rdopt.relax.rounding import hard, identity, sga

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _net(kind: str = "mbt2018", seed: int = 0, n: int = 16):
    from compressai.models import Cheng2020Anchor, Cheng2020Attention, JointAutoregressiveHierarchicalPriors

    torch.manual_seed(seed)
    make = {"mbt2018": lambda: JointAutoregressiveHierarchicalPriors(N=n, M=n),
            "cheng2020-anchor": lambda: Cheng2020Anchor(N=n), "cheng2020-attn": lambda: Cheng2020Attention(N=n)}[kind]
    net = make().eval()
    net.update(force=True)
    return net


def _adapter(net, model_id: str = "mbt2018-custom") -> ContextAdapter:
    return frozen(ContextAdapter(net, model_id=model_id, lmbda=0.0067, quality=3))


@pytest.fixture(scope="module")
def mbt():
    return _adapter(_net("mbt2018"))


@pytest.fixture(scope="module")
def cheng():
    return _adapter(_net("cheng2020-anchor", seed=1), "cheng2020-anchor-custom")


def _batch(h=40, w=56, items=2):
    return torch.cat([pad(to_tensor(pattern_image(h, w, s)), 64) for s in range(items)])


def _stock_ar_decode(net, coded, item: int) -> torch.Tensor:
    """ŷ as the stock decoder rebuilds it for one file: CompressAI's own ``decompress`` steps (entropy bottleneck,
    ``h_s``, ``_decompress_ar`` into its float32 zero buffer), without the synthesis."""
    import torch.nn.functional as F

    with torch.no_grad():
        z_hat = net.entropy_bottleneck.decompress([coded.streams["z"][item]], coded.shapes["z"][-2:])
        params = net.h_s(z_hat)
        h, w = z_hat.size(2) * 4, z_hat.size(3) * 4
        y_hat = torch.zeros((1, net.M, h + 4, w + 4), device=z_hat.device)
        net._decompress_ar(coded.streams["y"][item], y_hat, params, h, w, 5, 2)
        return F.pad(y_hat, (-2, -2, -2, -2))


# ---------------------------------------------------------------------------------------------- contract
@pytest.mark.parametrize("kind", ["mbt2018", "cheng2020-anchor", "cheng2020-attn"])
def test_the_contract_suite_passes(kind):
    a = _adapter(_net(kind, seed=2))
    contract.check_all(a, _batch())


def test_a_hyperprior_adapter_refuses_a_context_model():
    from rdopt.codecs.image.hyperprior import HyperpriorAdapter

    with pytest.raises(TypeError, match="ContextAdapter"):
        HyperpriorAdapter(_net("mbt2018"), "mbt2018-custom", 0.0067)


# ---------------------------------------------------------------------------------------------- stock coder
@pytest.mark.parametrize("which", ["mbt", "cheng"])
def test_amortized_encode_is_byte_identical_to_the_stock_compress(which, request):
    from rdopt.api.image import encode_image
    from rdopt.coding.container import unpack

    a = request.getfixturevalue(which)
    rgb = pattern_image(50, 70, 3)
    enc = encode_image(a, LoadedImage(rgb, False, False, "RGB"))
    f = unpack(enc.data)
    with torch.no_grad():
        stock = a.net.compress(to_batch([rgb], 64))
    assert f.frames[0].stream("y").data == stock["strings"][0][0]
    assert f.frames[0].stream("z").data == stock["strings"][1][0]


def test_serial_quantize_is_what_the_stock_decoder_rebuilds(mbt):
    """Per item of a batch, bit for bit: ŷ of ``quantize`` = ŷ of CompressAI's ``_decompress_ar`` on the file's
    strings = rdopt's ``decompress``; and g_s of it is the stock ``decompress``'s picture."""
    x = _batch(64, 128, items=3)
    with torch.no_grad():
        lat = mbt.amortize(x)
        noise = torch.randn(lat["y"].shape, generator=torch.Generator().manual_seed(0))
        lat = lat.merged({"y": lat["y"] + 0.3 * noise})
        q = mbt.quantize(lat)
        coded = mbt.compress(q)
        ours = mbt.decompress(coded)
        assert torch.equal(ours["y"], q["y"]) and torch.equal(ours["z"], q["z"])
        for i in range(3):
            assert torch.equal(_stock_ar_decode(mbt.net, coded, i), q["y"][i : i + 1])
            stock = mbt.net.decompress([coded.streams["y"][i : i + 1], coded.streams["z"][i : i + 1]],
                                       coded.shapes["z"][-2:])["x_hat"]
            assert torch.equal(stock, mbt.reconstruct(q.select(i)).clamp(0, 1))
        # the serial dependence is real: teacher forcing on the continuous y gives other integers somewhere
        _, mu0 = mbt.entropy_parameters(mbt.hyper_synthesis(q["z"]), lat["y"])
        parallel = torch.round(lat["y"] - mu0) + mu0
        assert not torch.allclose(parallel, q["y"], atol=1e-4)


def test_the_hard_evaluation_is_the_true_cost_of_the_serial_latents(mbt):
    """The objective the loop keeps the best of: ŷ is the serial one, and the rate is −log2 of its likelihood
    under the serial entropy parameters (not the teacher-forced ones of the relaxed path)."""
    from rdopt.codecs.entropy import bottleneck_likelihood, gaussian_likelihood

    x = _batch()
    with torch.no_grad():
        lat = mbt.amortize(x)
        q = mbt.quantize(lat)
        ev = mbt.hard_evaluate(lat)
        assert torch.equal(ev.latents["y"], q["y"])
        y_hat, scales, means = mbt.serial(lat["y"], q["z"])
        lik = gaussian_likelihood(mbt.net.gaussian_conditional, y_hat, scales, means)
        bits_y = -torch.log2(lik).flatten(1).sum(1)
        bits_z = -torch.log2(bottleneck_likelihood(mbt.net.entropy_bottleneck, q["z"])).flatten(1).sum(1)
        assert torch.allclose(ev.rates["y"], bits_y, rtol=1e-5) and torch.allclose(ev.rates["z"], bits_z, rtol=1e-5)
        assert torch.equal(ev.x_hat, mbt.reconstruct(q))
        # the real strings are close to the estimate (a few bytes of coder overhead per string)
        coded = mbt.compress(q)
        for i in range(x.shape[0]):
            real = 8 * coded.num_bytes(i)
            assert abs(real - float(ev.bits[i])) < 8 * 16 + 0.1 * real


def test_evaluation_never_changes_the_weights():
    """CompressAI's MaskedConv2d masks its weight in place when called: the adapter never calls it, so a
    checkpoint whose stored weight is unmasked keeps its hash (and the stock decoder sees the same weights)."""
    a = _adapter(_net("mbt2018", seed=3))
    w0 = a.net.context_prediction.weight.clone()
    assert bool((w0 * (1 - a.net.context_prediction.mask)).abs().sum() > 0)  # unmasked, as initialised
    h0 = a.weight_hash()
    a._weight_hash = None
    x = _batch()
    lat = a.amortize(x)
    a.evaluate(lat, relax_all(sga(0.5, torch.Generator().manual_seed(0)), ("y", "z")))
    a.hard_evaluate(lat)
    a.compress(a.quantize(lat))
    assert torch.equal(a.net.context_prediction.weight, w0) and a.weight_hash() == h0


# ---------------------------------------------------------------------------------------------- SGA
def _savi(model, rgb, steps, lr, seed=0):
    from rdopt.infer.codec_graph import Target, codec_graph
    from rdopt.infer.image import savi
    from rdopt.infer.options import SolverOptions

    x = to_batch([rgb], model.pad_multiple)
    res = savi(codec_graph(model), Target(x, model.lmbda, rgb.shape[0], rgb.shape[1]),
               SolverOptions(method="sga", steps=steps, lr=lr, seed=seed, eval_every=5))
    return x, res


def test_sga_file_decodes_with_the_stock_decoder_to_what_rdopt_reports(mbt):
    """The SGA result's file: the stock ``net.decompress`` of its strings gives exactly (bit for bit) the ŷ and the
    picture rdopt reports — the hard evaluation the loop tracked and the 8-bit pixels ``encode_image`` measured."""
    from rdopt.api.image import encode_image
    from rdopt.coding.container import unpack
    from rdopt.infer.options import SolverOptions

    rgb = pattern_image(64, 64, 1)
    _, res = _savi(mbt, rgb, 30, 0.05)
    with torch.no_grad():
        q = mbt.quantize(res.latents)
        coded = mbt.compress(q)
        assert torch.equal(_stock_ar_decode(mbt.net, coded, 0), q["y"])
        stock = mbt.net.decompress([coded.streams["y"], coded.streams["z"]], coded.shapes["z"][-2:])["x_hat"]
        assert torch.equal(stock, mbt.hard_evaluate(res.latents).x_hat.clamp(0, 1))
    enc = encode_image(mbt, LoadedImage(rgb, False, False, "RGB"), SolverOptions(method="sga", steps=30, lr=0.05,
                                                                                  eval_every=5))
    f = unpack(enc.data)
    strings = [[f.frames[0].stream("y").data], [f.frames[0].stream("z").data]]
    with torch.no_grad():
        x_hat = mbt.net.decompress(strings, coded.shapes["z"][-2:])["x_hat"]
    stock_pixels = x_hat[0].mul(255.0).round().to(torch.uint8).permute(1, 2, 0).numpy()[:64, :64]
    assert np.array_equal(stock_pixels, enc.pixels)
    assert enc.stats.psnr == pytest.approx(10 * math.log10(255.0**2 / np.mean(
        (stock_pixels.astype(np.float64) - rgb.astype(np.float64)) ** 2)), abs=1e-9)


@pytest.mark.parametrize("which", ["mbt", "cheng"])
def test_sga_never_ends_above_the_amortized_true_cost(which, request):
    """The loop keeps the best true (serial) cost: the result is never worse than the amortized start, and a few
    dozen SGA steps usually improve on it."""
    from rdopt.core.rd import rd_cost

    model = request.getfixturevalue(which)
    below = 0
    for seed in range(3):
        rgb = pattern_image(64, 64, seed)
        x, res = _savi(model, rgb, 40, 0.05, seed=seed)
        amortized = model.quantize(model.amortize(x))
        start = rd_cost(model.hard_evaluate(amortized), x, model.lmbda).loss
        end = rd_cost(model.hard_evaluate(model.quantize(res.latents)), x, model.lmbda).loss
        assert torch.allclose(start, res.initial_loss, rtol=1e-6) and torch.allclose(end, res.final_loss, rtol=1e-6)
        assert float(end) <= float(start)
        below += float(end) < float(start) - 1e-4
    assert below >= 2


# ---------------------------------------------------------------------------------------------- gradients
def _fp64_model():
    from compressai.models import JointAutoregressiveHierarchicalPriors

    torch.manual_seed(5)
    net = JointAutoregressiveHierarchicalPriors(N=8, M=8).double().eval()
    with torch.no_grad():  # scales well above the Gaussian's floor 0.11, where CompressAI's LowerBound has a
        net.entropy_parameters[-1].bias[:8] += 2.0  # pass-through gradient (not the derivative of a max)
    a = ContextAdapter(net, "mbt2018-custom", 0.0067)
    for p in a.parameters():
        p.requires_grad_(False)
    return a


@pytest.mark.parametrize("relaxation", ["danneal", "sga", "identity"])
def test_relaxed_evaluation_gradient_matches_finite_differences(relaxation):
    """d(R + λD)/d(y, z) of the parallel teacher-forced evaluation in float64 against central differences —
    through the rounding offset μ⁰ = EP(h_s(z̃), CP(y)), the context of ỹ, the rate and the synthesis."""
    assert relaxed_objective_gradcheck(_fp64_model(), to_tensor(pattern_image(64, 64, 0)).double(), relaxation)


def test_hard_y_with_a_relaxed_z_has_exact_values_and_a_gradient_for_z():
    """A sequential solver's z stage: y hard (serial), z relaxed — values are the serial ones, and z gets the
    gradient of the direct path ẑ → h_s → (σ, μ) → ŷ = q + μ."""
    a = _fp64_model()
    x = to_tensor(pattern_image(64, 64, 1)).double()
    with torch.no_grad():
        lat = a.amortize(x)
        q = a.quantize(lat)
    z = lat["z"].clone().requires_grad_(True)
    ev = a.evaluate(Latents({"y": lat["y"], "z": z}), {"y": hard(), "z": identity()})
    with torch.no_grad():
        want, _, _ = a.serial(lat["y"], z.detach())
    assert torch.equal(ev.latents["y"], want)
    (g,) = torch.autograd.grad(ev.bits.sum() + ev.x_hat.pow(2).sum(), z)
    assert bool(torch.isfinite(g).all()) and float(g.abs().sum()) > 0
    assert not torch.equal(q["z"], z.detach())  # z relaxed by identity: not the hard ẑ


# ---------------------------------------------------------------------------------------------- loading
@pytest.mark.parametrize("kind", ["mbt2018", "cheng2020-anchor", "cheng2020-attn"])
def test_a_checkpoint_is_recognised_without_model(kind, tmp_path):
    from rdopt.codecs.image.loading import architecture_of, load_model

    net = _net(kind, seed=4)
    torch.save({"state_dict": net.state_dict(), "epoch": 1}, tmp_path / "ck.pth")
    assert architecture_of(net.state_dict()) == kind
    m = load_model(checkpoint=tmp_path / "ck.pth")  # no --model: rdopt-msh by default, taken for what it is
    assert isinstance(m, ContextAdapter) and m.model_id == kind and m.family == kind
    assert torch.equal(m.net.gaussian_conditional.scale_table, net.gaussian_conditional.scale_table)
    x = to_tensor(pattern_image(64, 64, 0))
    with torch.no_grad():
        assert m.compress(m.quantize(m.amortize(x))).streams["y"] == net.compress(x)["strings"][0]


def test_a_wrong_model_names_the_one_to_pass(tmp_path):
    from rdopt.codecs.image.loading import ModelUnavailable, load_model

    torch.save(_net("mbt2018").state_dict(), tmp_path / "ctx.pth")
    with pytest.raises(ModelUnavailable, match=r"looks like mbt2018 \(pass --model mbt2018\)"):
        load_model("mbt2018-mean", 3, checkpoint=tmp_path / "ctx.pth")
    torch.save(_net("cheng2020-attn").state_dict(), tmp_path / "attn.pth")
    with pytest.raises(ModelUnavailable, match=r"pass --model cheng2020-attn"):
        load_model("cheng2020-anchor", 3, checkpoint=tmp_path / "attn.pth")


def test_zoo_weights_are_never_downloaded(monkeypatch, tmp_path):
    from rdopt.codecs.image.loading import ModelUnavailable, load_model
    from rdopt.codecs.registry import get

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    with pytest.raises(ModelUnavailable, match=r"weights not available offline: put mbt2018-3-22901978\.pth\.tar at"):
        load_model("mbt2018", 3)
    with pytest.raises(ModelUnavailable, match="cheng2020-attn has qualities 1-6, got 7"):
        get("cheng2020-attn").load(quality=7)
    assert sorted(get("cheng2020-anchor").qualities) == [1, 2, 3, 4, 5, 6]
    assert sorted(get("mbt2018").qualities) == list(range(1, 9))


def test_info_names_the_serial_decode_from_the_model_id_only():
    from rdopt.codecs.names import CONTEXT_ARCHITECTURES
    from rdopt.coding.describe import SERIAL_DECODE_FAMILIES, decode_cost

    assert SERIAL_DECODE_FAMILIES == CONTEXT_ARCHITECTURES
    cost = decode_cost("mbt2018-q3", 768, 512)
    assert cost["order"] == "serial autoregressive" and cost["sequential_steps"] == 48 * 32
    assert decode_cost("cheng2020-attn-custom", 100, 70)["sequential_steps"] == 8 * 8
    assert decode_cost("cheng2020-anchor", 64, 64)["sequential_steps"] == 16
    assert decode_cost("mbt2018-mean-q3", 768, 512) is None and decode_cost("rdopt-msh-q3", 64, 64) is None
