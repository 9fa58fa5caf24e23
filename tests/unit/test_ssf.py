"""CompressAI's ssf2020 (ScaleSpaceFlow) through rdopt's codec protocol (rdopt.codecs.video.ssf), with seeded
random weights on the smallest frames SSF takes (128×128): the contract, the graph, agreement with SSF's
own coder and decoder, gradients through the references, the per-step memo of decoded frames, and the
loader (a checkpoint, a cached zoo file, and its errors — never a download)."""

import pytest
import torch
import torch.nn.functional as F

from rdopt.codecs.image.loading import ModelUnavailable
from rdopt.codecs.video.gop import GopCodec
from rdopt.codecs.video.ssf import load_ssf, ssf_video, zoo_cache_path
from rdopt.infer import contract
from rdopt.infer.codec_graph import Target, codec_graph
from rdopt.relax.rounding import identity

SIZE = 128  # SSF's pad multiple: 4 stride-2 convolutions to y, 3 more to z


@pytest.fixture(scope="module")
def net():
    from compressai.models.video import ScaleSpaceFlow

    torch.manual_seed(0)
    net = ScaleSpaceFlow().eval()
    net.update(force=True)
    for p in net.parameters():
        p.requires_grad_(False)
    return net


def clip(batch: int, frames: int, seed: int = 0) -> torch.Tensor:
    """A smooth random clip B×T×3×128×128 in [0, 1], each frame shifted by (1, 2) pixels."""
    g = torch.Generator().manual_seed(seed)
    pad = 2 * frames + 4
    base = F.avg_pool2d(torch.rand(batch, 3, SIZE + pad, SIZE + pad, generator=g), 5, 1, 2)
    return torch.stack([base[..., t:t + SIZE, 2 * t:2 * t + SIZE] for t in range(frames)], 1)


@pytest.fixture(scope="module")
def codec(net):
    return ssf_video(net, quality=3).gop(2)


def test_latents_and_identity(codec, net):
    names = [s.name for s in codec.latents]
    assert names == ["y_0", "z_0", "m_1", "mz_1", "r_1", "rz_1"]
    spec = {s.name: s for s in codec.latents}
    assert spec["m_1"].parents == ("y_0", "z_0") and spec["mz_1"].parents == ("m_1",)
    assert spec["r_1"].parents == ("y_0", "z_0", "m_1", "mz_1") and spec["rz_1"].parents == ("r_1",)
    assert (codec.family, codec.model_id, codec.pad_multiple) == ("ssf2020", "ssf2020-q3", 128)
    assert codec.latent_shapes(128, 256)["r_1"] == (192, 8, 16)
    assert codec.latent_shapes(128, 256)["rz_1"] == (192, 1, 2)
    three = ssf_video(net).gop(3)
    assert {s.name: s for s in three.latents}["m_2"].parents == ("y_0", "z_0", "m_1", "mz_1", "r_1", "rz_1")
    assert three.model_id == "ssf2020-custom" and three.weight_hash() == codec.weight_hash()


def test_contract(codec):
    contract.check_all(codec, clip(2, 2))


def test_graph_amortizes_as_the_codec(codec):
    x = clip(1, 2, seed=1)
    with torch.no_grad():
        via_graph = codec_graph(codec).amortize(Target(x, codec.lmbda))
        plain = codec.amortize(x)
    assert via_graph.names == plain.names
    for n in plain.names:
        torch.testing.assert_close(via_graph[n], plain[n], rtol=0, atol=0)


def test_coder_and_decoder_are_ssfs_own(codec, net):
    """For amortized latents the streams are byte for byte those ScaleSpaceFlow.compress writes, the hard
    evaluation is ScaleSpaceFlow.decompress's output, and decompressing SSF's strings gives quantize."""
    x = clip(1, 2, seed=2)
    with torch.no_grad():
        lat = codec.amortize(x)
        ours = codec.compress(lat)
        strings, shapes = net.compress([x[:, 0], x[:, 1]])
        frames = net.decompress(strings, shapes)
        ev = codec.hard_evaluate(lat)
        q = codec.quantize(lat)
    theirs = {"y_0": strings[0][0], "z_0": strings[0][1],
              "m_1": strings[1]["motion"][0], "mz_1": strings[1]["motion"][1],
              "r_1": strings[1]["residual"][0], "rz_1": strings[1]["residual"][1]}
    for n, s in theirs.items():
        assert ours.streams[n] == list(s), f"stream {n} differs from ScaleSpaceFlow.compress"
    torch.testing.assert_close(ev.x_hat, torch.stack(frames, 1), rtol=0, atol=1e-6)
    with torch.no_grad():
        back = codec.decompress(ours)
        rec = codec.reconstruct(back)
    for n in q.names:
        torch.testing.assert_close(back[n], q[n], rtol=0, atol=1e-6)
    torch.testing.assert_close(rec, torch.stack(frames, 1), rtol=0, atol=1e-6)
    # the rates are CompressAI's: SSF's forward (eval mode) gives the same likelihoods
    with torch.no_grad():
        out = net([x[:, 0], x[:, 1]])
    bits = lambda lik: float(-torch.log2(lik).sum())  # noqa: E731
    lk = out["likelihoods"]
    want = {"y_0": lk[0]["keyframe"]["y"], "z_0": lk[0]["keyframe"]["z"], "m_1": lk[1]["motion"]["y"],
            "mz_1": lk[1]["motion"]["z"], "r_1": lk[1]["residual"]["y"], "rz_1": lk[1]["residual"]["z"]}
    for n, lik in want.items():
        assert float(ev.rates[n]) == pytest.approx(bits(lik), rel=1e-5), n


def test_last_frame_term_reaches_the_keyframe(net):
    """Frame 2's R-D term differentiates through two decoded references back to y_0."""
    codec = ssf_video(net).gop(3)
    graph = codec_graph(codec, unit="bits")
    target = Target(clip(1, 3, seed=3), codec.lmbda)
    values = graph.amortize(target)
    leaves = [v.clone().requires_grad_(True) for v in values.tensors]
    last = len(graph.terms) - 1
    cost = graph.objective(graph.context(target, identity()), leaves, terms=[last])
    grads = dict(zip(values.names, torch.autograd.grad(cost.sum(), leaves, allow_unused=True)))
    for n in ("y_0", "m_1", "r_1", "m_2", "mz_2", "r_2", "rz_2"):
        g = grads[n]
        assert g is not None and bool(torch.isfinite(g).all()) and float(g.abs().sum()) > 0, n


def test_missing_zoo_weights_never_download(monkeypatch, tmp_path):
    def no_network(*a, **k):
        raise AssertionError("tried to download")

    import compressai.zoo.video

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_network)
    monkeypatch.setattr(compressai.zoo.video, "load_state_dict_from_url", no_network)
    with pytest.raises(ModelUnavailable, match=r"not available offline and rdopt never downloads: "
                                                r"put ssf2020-mse-3-9c8b998d\.pth\.tar") as e:
        load_ssf(quality=3)
    assert str(tmp_path / "checkpoints" / "ssf2020-mse-3-9c8b998d.pth.tar") in str(e.value)
    with pytest.raises(ModelUnavailable, match="qualities 1-9"):
        load_ssf(quality=10)
    with pytest.raises(ModelUnavailable, match="quality .* or checkpoint"):
        load_ssf()


def test_bad_checkpoints(tmp_path):
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"\x00not a checkpoint" * 100)
    with pytest.raises(ModelUnavailable, match="cannot read checkpoint"):
        load_ssf(checkpoint=junk)
    with pytest.raises(ModelUnavailable, match="checkpoint not found"):
        load_ssf(checkpoint=tmp_path / "absent.pth")
    other = tmp_path / "other.pth"
    torch.save({"state_dict": {"g_a.0.weight": torch.zeros(2, 3, 5, 5)}}, other)
    with pytest.raises(ModelUnavailable, match="do not fit ssf2020"):
        load_ssf(checkpoint=other)


def test_loads_a_checkpoint_and_the_cached_zoo_file(net, codec, monkeypatch, tmp_path):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    path = zoo_cache_path(3)
    assert path.parent == tmp_path / "checkpoints"
    path.parent.mkdir()
    torch.save({"state_dict": {f"module.{k}": v for k, v in net.state_dict().items()}}, path)
    from_zoo = load_ssf(quality=3, frames=3)
    assert (from_zoo.model_id, from_zoo.quality, from_zoo.frames) == ("ssf2020-q3", 3, 3)
    assert from_zoo.weight_hash() == codec.weight_hash()
    assert not any(p.requires_grad for p in from_zoo.video.parameters()) and not from_zoo.video.training
    custom = load_ssf(checkpoint=path, lmbda=0.01)
    assert (custom.model_id, custom.lmbda, custom.frames) == ("ssf2020-custom", 0.01, 2)
    assert custom.weight_hash() == codec.weight_hash()


def test_memo_decodes_each_frame_once_and_changes_nothing(net, monkeypatch):
    codec = ssf_video(net).gop(3)
    graph = codec_graph(codec)
    target = Target(clip(1, 3, seed=5), codec.lmbda)
    values = graph.amortize(target).tensors
    calls = []
    hooks = [m.register_forward_hook(lambda *a, _n=n: calls.append(_n))
             for n, m in (("img", net.img_decoder), ("res", net.res_decoder))]
    try:
        with torch.no_grad():
            with_memo = graph.objective(graph.context(target, identity()), values)
            assert sorted(calls) == ["img", "res", "res"]  # frames 0, 1, 2 once for the three terms
            calls.clear()
            monkeypatch.setattr(GopCodec, "supports_memo", False)
            without = graph.objective(graph.context(target, identity()), values)
            assert sorted(calls) == ["img"] * 3 + ["res"] * 3  # 1 + 2 + 3 frame decodes
    finally:
        for h in hooks:
            h.remove()
    torch.testing.assert_close(with_memo, without, rtol=0, atol=0)
    # an in-place change of a latent is never served stale from the memo
    lat = codec.amortize(target.x)
    memo: dict = {}
    relax = {n: identity() for n in lat.names}
    with torch.no_grad():
        a = codec.evaluate(lat, relax, memo=memo).x_hat[:, 2].clone()
        lat["y_0"].add_(0.5)
        b = codec.evaluate(lat, relax, memo=memo).x_hat[:, 2]
        c = codec.evaluate(lat, relax).x_hat[:, 2]
    assert not torch.equal(a, b)
    torch.testing.assert_close(b, c, rtol=0, atol=0)


def test_skip_mode_on_ssf(net):
    """ssf2020's P-frame codec takes part in skip mode: it decodes its motion pair alone (whole-frame skips), its
    per-position residual bits sum to its estimate, and a GoP with a block skip and a frame skip is written and
    decoded as the decoder's chain says."""
    import numpy as np

    from rdopt.api.video import amortized, decode_gop, gop_frames
    from rdopt.codecs.video.skip import choose_skips, reconstruct
    from rdopt.coding.skip import FrameSkip

    video = ssf_video(net, quality=3)
    assert video.frame_skip_ok()
    g = video.gop(3)
    x = clip(1, 3)
    lat = amortized(g, x, SIZE, SIZE)
    ev = g.hard_evaluate(lat)
    bits = video.pframe.residual_position_bits(lat["r_1"], lat["rz_1"])
    assert bits.shape == (1, SIZE // 16, SIZE // 16)
    assert float(bits.sum()) == pytest.approx(float(ev.rates["r_1"][0]), rel=1e-4)
    mask = np.zeros((8, 8), bool)
    mask[:3, 2:] = True
    skips = (None, FrameSkip("blocks", mask), FrameSkip("frame"))
    frames = gop_frames(g, g.compress(lat), skips)
    assert [s.name for s in frames[2].streams] == ["m_2", "mz_2", "skip_2"]
    decoded, rates = decode_gop(g, frames, SIZE, SIZE)
    want = reconstruct(g, lat, skips)[0][0].clamp(0, 1).mul(255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    assert all(np.array_equal(a, b) for a, b in zip(decoded, want)) and "r_2" not in rates
    choice = choose_skips(g, x, lat, SIZE, SIZE, video.lmbda)
    assert choice.cost <= choice.cost_without
