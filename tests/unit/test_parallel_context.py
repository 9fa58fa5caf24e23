"""SAVI / SGA through parallel context models — CompressAI's checkerboard and channel-group latent codecs
(cheng2020-anchor-checkerboard, elic2022-official, elic2022-chandelier) and rdopt-scc: the codec contract, bit
identity with the stock coder and decoder, the relaxed evaluation in decoding order (exact when hard, the hard
objective in the limit τ → 0, gradients against finite differences in float64), rdopt-scc grown from a hyperprior
coding as the hyperprior does, the joined stream of passes, and checkpoints recognised by their keys.

Small randomly initialised models (fixed seeds) saved in tmp_path: nothing is downloaded."""

import numpy as np
import pytest
import torch

from conftest import frozen, pattern_image, relaxed_objective_gradcheck, tiny_adapter
from rdopt.codecs.image.loading import fine_scale_table
from rdopt.codecs.image.parallel import ParallelContextAdapter, anchor_mask, code_y
from rdopt.core.types import relax_all
from rdopt.data.images import LoadedImage, pad, to_batch, to_tensor
from rdopt.infer import contract
from rdopt.relax.rounding import deterministic_annealing, identity, sga

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
KINDS = ["cheng2020-anchor-checkerboard", "elic2022-official", "elic2022-chandelier", "rdopt-scc"]


def _net(kind: str, seed: int = 0):
    from compressai.models import Cheng2020AnchorCheckerboard, Elic2022Chandelier, Elic2022Official

    from rdopt.codecs.image.scc import build_scc

    torch.manual_seed(seed)
    net = {"cheng2020-anchor-checkerboard": lambda: Cheng2020AnchorCheckerboard(N=16),
           "elic2022-official": lambda: Elic2022Official(N=16, M=24, groups=[2, 2, 4, 8, 8]),
           "elic2022-chandelier": lambda: Elic2022Chandelier(N=16, M=24, groups=[2, 2, 4, 8, 8]),
           "rdopt-scc": lambda: build_scc(16, 24, hidden=16, channel_hidden=8)}[kind]().eval()
    if kind == "rdopt-scc":  # context terms away from zero, as after training
        with torch.no_grad():
            for m in net.modules():
                if hasattr(m, "mlp"):
                    m.mlp[-1].weight.normal_(0, 0.05)
    net.update(scale_table=fine_scale_table(32), force=True)
    return net


def _adapter(net, model_id: str = "x-custom") -> ParallelContextAdapter:
    return frozen(ParallelContextAdapter(net, model_id=model_id, lmbda=0.0067, quality=3))


@pytest.fixture(scope="module", params=KINDS)
def model(request):
    return _adapter(_net(request.param, seed=KINDS.index(request.param)), f"{request.param}-custom")


def _batch(h=40, w=120, items=2):
    return torch.cat([pad(to_tensor(pattern_image(h, w, s)), 64) for s in range(items)])


# ---------------------------------------------------------------------------------------------- contract, coder
def test_the_contract_suite_passes(model):
    contract.check_all(model, _batch())


def test_amortized_encode_is_byte_identical_to_the_stock_compress(model):
    x = _batch(items=1)
    with torch.no_grad():
        coded = model.compress(model.amortize(x))
        stock = model.net.compress(x)
    assert model.stock_strings(coded) == stock["strings"]


def test_the_stock_decoder_rebuilds_the_quantized_latents_and_picture(model):
    """Per item of a batch: the stock ``net.decompress`` of the file's strings gives bit for bit the picture of rdopt's
    ``decompress``, whose ẑ is ``quantize``'s and whose ŷ is ``quantize``'s up to the floating-point order of the
    means (the coder's integers are the same)."""
    x = _batch(items=2)
    with torch.no_grad():
        q = model.quantize(model.amortize(x))
        coded = model.compress(q)
        mine = model.decompress(coded)
        for i in range(2):
            one = type(coded)(streams={k: [v[i]] for k, v in coded.streams.items()}, shapes=coded.shapes)
            stock = model.net.decompress(model.stock_strings(one), model.stock_shape(*coded.shapes["y"][1:]))
            item = model.decompress(one)
            assert torch.equal(stock["x_hat"], model.reconstruct(item).clamp(0, 1))
    assert torch.equal(mine["z"], q["z"])
    assert float((mine["y"] - q["y"]).abs().max()) < 1e-5


def test_the_hard_evaluation_is_the_coders(model):
    """Hard rounding in decoding order gives exactly ``quantize``'s ŷ (each pass rounded around the means of what
    was decoded before it), and its bits are −log2 of the stock forward's likelihoods of that ŷ."""
    x = _batch(items=1)
    with torch.no_grad():
        lat = model.amortize(x)
        ev = model.hard_evaluate(lat)
        q = model.quantize(lat)
    assert torch.equal(ev.latents["y"], q["y"]) and torch.equal(ev.latents["z"], q["z"])
    assert torch.equal(ev.x_hat, model.reconstruct(q))
    bits, _, _ = model.hard_prior(q)
    assert torch.allclose(bits.flatten(1).sum(1), ev.rates["y"])


def test_the_rate_without_synthesis_is_the_hard_evaluation_s(model, monkeypatch):
    """``hard_bits`` (what the tiled encode of a large image reports as its estimate) is the hard evaluation's rate,
    the same operations without ``g_s``."""
    x = _batch(items=2)
    with torch.no_grad():
        q = model.quantize(model.amortize(x))
        bits = model.hard_evaluate(q).bits
        monkeypatch.setattr(model, "synthesize", lambda y: pytest.fail("hard_bits ran the synthesis"))
        assert torch.equal(model.hard_bits(q), bits)


def test_an_evaluation_never_changes_the_weights(model):
    h = model.weight_hash()
    x = _batch(items=1)
    with torch.no_grad():
        model.compress(model.quantize(model.amortize(x)))
        model.net.compress(x)  # the stock forward masks its convolutions in place: already masked
    model._weight_hash = None
    assert model.weight_hash() == h


# ---------------------------------------------------------------------------------------------- relaxed evaluation
@pytest.mark.parametrize("kind", ["elic2022-chandelier", "rdopt-scc"])
def test_relaxed_evaluation_tends_to_the_hard_one(kind):
    """SGA and deterministic annealing at τ → 0 give the hard evaluation: the decoding-order relaxation has no
    teacher forcing left to differ by."""
    a = _adapter(_net(kind, seed=3))
    x = _batch(items=1)
    with torch.no_grad():
        lat = a.amortize(x)
        hard_ev = a.hard_evaluate(lat)
        for relax in (sga(1e-4, torch.Generator().manual_seed(0)), deterministic_annealing(1e-4)):
            ev = a.evaluate(lat, relax_all(relax, ("y", "z")))
            assert torch.allclose(ev.latents["y"], hard_ev.latents["y"], atol=1e-5)
            assert torch.allclose(ev.rates["y"], hard_ev.rates["y"], rtol=1e-4)
            assert torch.allclose(ev.x_hat, hard_ev.x_hat, atol=1e-4)


def test_non_anchor_means_follow_the_relaxed_anchors():
    """The second checkerboard pass reads the relaxed anchors: moving one anchor moves the means of its non-anchor
    neighbours (and of no anchor)."""
    a = _adapter(_net("cheng2020-anchor-checkerboard", seed=1))
    codec = a.net.latent_codec.y
    with torch.no_grad():
        lat = a.amortize(_batch(items=1))
        side = a.hyper_synthesis(a.quantize(lat)["z"])
        _, _, m0, _ = code_y(codec, lat["y"], side, identity())
        y = lat["y"].clone()
        y[:, :, 2, 2] += 3.0  # (2, 2): an anchor of the even parity
        _, _, m1, _ = code_y(codec, y, side, identity())
    moved = (m1 - m0).abs().amax(1)[0] > 1e-6
    anchors = anchor_mask(*moved.shape, "even", moved)[0, 0]
    assert moved[2, 1] and moved[1, 2] and moved[2, 3] and moved[3, 2]
    assert not (moved & anchors).any()


def _fp64_adapter(kind: str):
    a = _adapter(_net(kind, seed=5).double())
    for m in a.net.modules():  # the Gaussian's floors out of the way: a smooth objective for finite differences
        if type(m).__name__ == "GaussianConditional":
            m.lower_bound_scale.bound.fill_(1e-6)
            m.likelihood_lower_bound.bound.fill_(1e-30)
    return a


@pytest.mark.parametrize("relaxation", ["danneal", "sga", "identity"])
def test_relaxed_evaluation_gradient_matches_finite_differences(relaxation):
    """d(R + λD)/d(y, z) in float64 against central differences, through both checkerboard passes and the channel
    contexts of every group (relaxation offsets, contexts, rates and the synthesis)."""
    assert relaxed_objective_gradcheck(_fp64_adapter("rdopt-scc"), to_tensor(pattern_image(64, 64, 0)).double(), relaxation)


# ---------------------------------------------------------------------------------------------- rdopt-scc
def test_scc_grown_from_a_hyperprior_codes_as_the_hyperprior():
    from rdopt.codecs.image.scc import grow_from_hyperprior

    base = tiny_adapter(seed=3, levels=32)
    net = grow_from_hyperprior(base.net, groups=[2, 2, 4, 4, 4], hidden=8, channel_hidden=8)
    net.update(scale_table=fine_scale_table(32), force=True)
    a = _adapter(net.eval())
    x = _batch(items=2)
    with torch.no_grad():
        lat = base.amortize(x)
        e0, e1 = base.hard_evaluate(lat), a.hard_evaluate(lat)
    assert torch.equal(e0.latents["y"], e1.latents["y"]) and torch.equal(e0.x_hat, e1.x_hat)
    assert torch.allclose(e0.rates["y"], e1.rates["y"], rtol=1e-6) and torch.equal(e0.rates["z"], e1.rates["z"])


def test_scc_groups_share_one_coder_table():
    net = _net("rdopt-scc")
    gcs = {id(gc) for gc, _, _ in _adapter(net).coding_passes()}
    assert len(gcs) == 1 and len(_adapter(net).coding_passes()) == 10


# ---------------------------------------------------------------------------------------------- streams
def test_a_tampered_stream_of_passes_is_refused(model):
    from rdopt.coding.container import BitstreamError, join_strings, split_strings

    assert split_strings(join_strings([b"ab", b"", b"cde"]), 3) == [b"ab", b"", b"cde"]
    with pytest.raises(BitstreamError):
        split_strings(join_strings([b"ab", b"cde"]) + b"x", 2)
    with pytest.raises(BitstreamError):
        split_strings(join_strings([b"ab", b"cde"])[:-1], 2)
    with pytest.raises(BitstreamError):
        split_strings(b"\x05", 2)
    x = _batch(items=1)
    with torch.no_grad():
        coded = model.compress(model.quantize(model.amortize(x)))
    y = coded.streams["y"][0]
    for bad in (y[:-1], y + b"\0", b"\xff\xff\xff\xff\xff\xff" + y):
        with pytest.raises(ValueError):
            model.decompress(type(coded)(streams={"y": [bad], "z": coded.streams["z"]}, shapes=coded.shapes))


def test_sga_never_ends_above_the_amortized_true_cost():
    from rdopt.core.rd import rd_cost
    from rdopt.infer.codec_graph import Target, codec_graph
    from rdopt.infer.image import savi
    from rdopt.infer.options import SolverOptions

    model = _adapter(_net("rdopt-scc", seed=2))
    below = 0
    for seed in range(2):
        rgb = pattern_image(64, 64, seed)
        x = to_batch([rgb], model.pad_multiple)
        res = savi(codec_graph(model), Target(x, model.lmbda, 64, 64),
                   SolverOptions(method="sga", steps=30, lr=0.05, seed=seed, eval_every=5))
        start = rd_cost(model.hard_evaluate(model.amortize(x)), x, model.lmbda).loss
        end = rd_cost(model.hard_evaluate(res.latents), x, model.lmbda).loss
        assert float(end) <= float(start) + 1e-6
        below += float(end) < float(start) - 1e-4
    assert below >= 1


# ---------------------------------------------------------------------------------------------- loading
@pytest.mark.parametrize("kind", KINDS)
def test_a_checkpoint_is_recognised_without_model(kind, tmp_path):
    from rdopt.api.image import decode_bytes, encode_image
    from rdopt.codecs.image.loading import architecture_of, load_model

    net = _net(kind, seed=4)
    torch.save({"state_dict": net.state_dict()}, tmp_path / "ck.pth")
    assert architecture_of(net.state_dict()) == kind
    m = load_model(checkpoint=tmp_path / "ck.pth")
    assert isinstance(m, ParallelContextAdapter)
    assert m.model_id == (f"{kind}-custom" if kind == "rdopt-scc" else kind)
    rgb = pattern_image(50, 70, 1)
    enc = encode_image(m, LoadedImage(rgb, False, False, "RGB"))
    dec = decode_bytes(enc.data, checkpoint=str(tmp_path / "ck.pth"))
    assert np.array_equal(dec.rgb, enc.pixels)


def test_no_weights_without_a_checkpoint_is_a_clear_error():
    from rdopt.codecs.image.loading import ModelUnavailable, load_model

    with pytest.raises(ModelUnavailable, match="CompressAI publishes no weights for elic2022-official"):
        load_model("elic2022-official", 3)
    with pytest.raises(ModelUnavailable, match="rdopt-scc has qualities 2-6, got 7"):
        load_model("rdopt-scc", 7)


def test_the_shipped_rdopt_scc_is_the_default_image_model_and_codes_as_rdopt_msh_did_at_birth():
    """Every quality of rdopt-scc is shipped (float16-exact weights, coder tables of the rounded weights) and is what a
    call naming no model loads; a checkpoint of rdopt-msh given without a name, or for rdopt-scc, is read as
    rdopt-msh."""
    from rdopt.codecs.image.loading import embedded_weights_path, load_model, model_name_of

    for q in (2, 3, 4, 5, 6):
        m = load_model(quality=q)
        assert isinstance(m, ParallelContextAdapter) and m.model_id == f"rdopt-scc-q{q}"
        assert all(torch.equal(p, p.half().float()) for p in m.net.parameters())
    msh = embedded_weights_path(3, "rdopt-msh")
    assert model_name_of(None, msh) == model_name_of("rdopt-scc", msh) == "rdopt-msh"
    assert load_model(checkpoint=msh).model_id == "rdopt-msh-custom"
    assert model_name_of("mbt2018-mean", msh) == "mbt2018-mean"


def test_info_names_the_parallel_decode():
    from rdopt.codecs.names import PARALLEL_ARCHITECTURES, SCC
    from rdopt.coding.describe import PARALLEL_DECODE_FAMILIES, decode_cost

    assert set(PARALLEL_DECODE_FAMILIES) == {SCC, *PARALLEL_ARCHITECTURES}
    assert decode_cost("elic2022-official-custom", 768, 512)["order"] == "parallel context passes"
    assert decode_cost("rdopt-scc-q3", 64, 64)["latent_grid"] == [4, 4]


def test_empty_or_short_pass_strings_are_refused(model):
    """Every rANS string CompressAI writes holds at least its 8-byte final state: a shorter pass is refused before
    any decoding (the decoder would read past its end)."""
    from rdopt.coding.container import join_strings

    x = _batch(items=1)
    with torch.no_grad():
        coded = model.compress(model.quantize(model.amortize(x)))
    passes = model.stock_strings(coded)[:-1]
    for short in (b"", b"1234567"):
        parts = [p[0] for p in passes]
        parts[len(parts) // 2] = short
        bad = type(coded)(streams={"y": [join_strings(parts)], "z": coded.streams["z"]}, shapes=coded.shapes)
        with pytest.raises(ValueError, match="an rANS string holds at least 8"):
            model.decompress(bad)


def test_channel_groups_of_plain_gaussians_are_refused():
    """CompressAI's channel-group decoder reads each group's shape as (C, H, W): groups coded without a checkerboard
    would write files it cannot read, so such a network is refused up front."""
    import rdopt.codecs  # noqa: F401
    from compressai.entropy_models import EntropyBottleneck
    from compressai.latent_codecs import (ChannelGroupsLatentCodec, GaussianConditionalLatentCodec, HyperLatentCodec,
                                          HyperpriorLatentCodec)
    from compressai.models import SimpleVAECompressionModel

    class Plain(SimpleVAECompressionModel):
        def __init__(self):
            super().__init__()
            self.g_a, self.g_s = torch.nn.Conv2d(3, 8, 16, 16), torch.nn.ConvTranspose2d(8, 3, 16, 16)
            self.latent_codec = HyperpriorLatentCodec(latent_codec={
                "y": ChannelGroupsLatentCodec(groups=[4, 4], channel_context={"y1": torch.nn.Conv2d(4, 8, 1)},
                                              latent_codec={f"y{k}": GaussianConditionalLatentCodec() for k in range(2)}),
                "hyper": HyperLatentCodec(entropy_bottleneck=EntropyBottleneck(4), h_a=torch.nn.Conv2d(8, 4, 4, 4),
                                          h_s=torch.nn.ConvTranspose2d(4, 16, 4, 4))})

    with pytest.raises(TypeError, match="each be coded by a CheckerboardLatentCodec"):
        ParallelContextAdapter(Plain(), "plain-custom", 0.01)


def test_tiled_decode_covers_the_synthesis_reach():
    """Large images decode tile by tile with a halo measured on the model: Cheng et al.'s residual synthesis reaches
    further than the hyperprior's 4 latents, and the tiled picture is the one-pass picture."""
    from rdopt.codecs.image.tiled import HALO, TILE, synthesis_halo, synthesize_uint8

    a = _adapter(_net("cheng2020-anchor-checkerboard", seed=6))
    halo = synthesis_halo(a)
    assert halo is not None and halo > HALO
    torch.manual_seed(0)
    y = torch.randn(1, 16, TILE + 8, 12) * 3
    h, w = y.shape[-2] * 16, y.shape[-1] * 16
    with torch.no_grad():
        whole = (a.synthesize(y).clamp(0, 1)[0].permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()
    # equal up to float summation order (a tile's convolutions may take other kernels than the whole image's: a
    # pixel on a rounding edge moves by one level); a halo too small would change whole bands of pixels
    diff = np.abs(synthesize_uint8(a, y, h, w).astype(np.int16) - whole.astype(np.int16))
    assert diff.max() <= 1 and (diff > 0).mean() < 1e-3, (int(diff.max()), float((diff > 0).mean()))
    assert synthesis_halo(_adapter(_net("rdopt-scc"))) == HALO  # rdopt-msh's transforms


def test_a_video_codec_with_parallel_context_iframes_round_trips(tmp_path):
    """The I-frame codec of a GoP codec can be a parallel context model: the I-frame's joined stream of passes goes
    into the .rdov like any stream and decodes to the frames the encoder reported."""
    from video_fixtures import tiny_frames, tiny_video_codec

    from rdopt.api.video import decode_video, encode_video
    from rdopt.codecs.video.gop import VideoCodec

    base = tiny_video_codec()
    iframe = _adapter(_net("rdopt-scc", seed=7))
    codec = VideoCodec(iframe, base.pframe, family="rdopt-video", quality=0, lmbda=base.lmbda).eval()
    frames = [(f.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8) for f in tiny_frames(t=3)[0]]
    reported = {}
    encode_video(codec, frames, tmp_path / "v.rdov", gop=3, on_frame=reported.__setitem__)
    out = list(decode_video(str(tmp_path / "v.rdov"), codec=codec).output_frames())
    assert len(out) == 3 and all(np.array_equal(out[i], reported[i]) for i in range(3))


def test_an_embedded_video_codec_names_its_iframe_model(tmp_path):
    """A P-frame weights file's meta names the embedded image model of its I-frames (rdopt-scc's shipped weights
    load); another name is refused in one line."""
    from video_fixtures import tiny_video_checkpoint

    from rdopt.api.video import load_video_codec
    from rdopt.codecs.registry import ModelUnavailable

    path = tiny_video_checkpoint(tmp_path / "p.pt")
    raw = torch.load(path, weights_only=True)
    raw["meta"]["iframe_model"] = "bogus"
    torch.save(raw, tmp_path / "bogus.pt")
    with pytest.raises(ModelUnavailable, match="I-frame model 'bogus' is not one of rdopt-msh, rdopt-scc"):
        load_video_codec(checkpoint=tmp_path / "bogus.pt")
    raw["meta"]["iframe_model"] = "rdopt-scc"
    torch.save(raw, tmp_path / "scc.pt")
    assert load_video_codec(checkpoint=tmp_path / "scc.pt").iframe.model_id == "rdopt-scc-q2"


def test_mixed_quantization_decodes_rounded_values_and_rates_noisy_ones():
    """Mixed quantization (training): the decoder's values — every context pass, the hyper-synthesis and the
    synthesis — are the hard ones, the rate is that of noisy values (for a hyperprior: exactly y + u under the prior
    of ẑ), and the gradient reaches y through both."""
    from rdopt.codecs.entropy import gaussian_likelihood
    from rdopt.core.types import Latents, bits_from_likelihoods
    from rdopt.relax.rounding import mixed

    x = _batch(items=1)
    for a in (_adapter(_net("rdopt-scc", seed=8)), tiny_adapter(seed=1, levels=32)):
        with torch.no_grad():
            lat = a.amortize(x)
            hard_ev = a.hard_evaluate(lat)
            ev = a.evaluate(lat, relax_all(mixed(torch.Generator().manual_seed(3)), ("y", "z")))
            again = a.evaluate(lat, relax_all(mixed(torch.Generator().manual_seed(3)), ("y", "z")))
        # the straight-through value x + (round − x) is the rounded one up to one floating-point rounding
        assert torch.allclose(ev.latents["y"], hard_ev.latents["y"], atol=1e-5)
        assert torch.allclose(ev.x_hat, hard_ev.x_hat, atol=1e-5)
        assert torch.equal(ev.rates["y"], again.rates["y"]) and not torch.equal(ev.rates["y"], hard_ev.rates["y"])
        y = lat["y"].clone().requires_grad_(True)
        ev = a.evaluate(Latents({"y": y, "z": lat["z"]}), relax_all(mixed(torch.Generator().manual_seed(3)), ("y", "z")))
        (g,) = torch.autograd.grad(ev.rates["y"].sum() + ev.x_hat.square().sum(), y)
        assert torch.isfinite(g).all() and g.abs().sum() > 0
    # the hyperprior by hand: u_y is the generator's first draw
    a = tiny_adapter(seed=1, levels=32)
    with torch.no_grad():
        lat = a.amortize(x)
        ev = a.evaluate(lat, relax_all(mixed(torch.Generator().manual_seed(3)), ("y", "z")))
        z_hat = a.quantize(lat)["z"]
        scales, means = a.prior(z_hat)
        u = torch.rand(lat["y"].shape, generator=torch.Generator().manual_seed(3)) - 0.5
        want = bits_from_likelihoods(gaussian_likelihood(a.net.gaussian_conditional, lat["y"] + u, scales, means))
    assert torch.allclose(ev.rates["y"], want)
