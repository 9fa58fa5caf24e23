"""rdopt-video2's residual latent with a space-channel context model (ContextLatent): born at zero it codes as the
hyperprior does; its one-string rANS coder decodes exactly what the relaxed evaluation's hard rounding computes, in
fewer bytes than CompressAI's one string per pass; the P-frame codec built on it passes the GoP contract suite, skip
mode and the ``.rdov`` round trip."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rdopt.codecs.image.parallel import code_y, decode_stream, encode_stream
from rdopt.codecs.image.scc import space_channel_y
from rdopt.codecs.video.parts import ContextLatent, MeanScaleLatent
from rdopt.codecs.video.video2 import ConditionalResidualCoder, MotionCoder, Video2PFrameCodec
from rdopt.relax.rounding import hard, hard_round, identity, mixed

from conftest import make_tiny_net

M = 24  # latent channels: groups 2, 2, 4, 8, 8


def _stir(module: torch.nn.Module, seed: int, scale: float = 0.05) -> None:
    """Move every weight of ``module`` (e.g. context terms born at zero) off its start."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g, dtype=p.dtype))


def _latents(b=1, h=5, w=7, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    y = torch.randn(b, M, h, w, generator=g, dtype=dtype) * 3.0
    return y


def test_grown_context_codes_exactly_as_the_hyperprior_at_birth_float64():
    torch.manual_seed(0)
    coder = ConditionalResidualCoder.from_image_model(make_tiny_net(n=16, m=M)).double()
    grown = coder.with_context().double()
    assert grown.config["context"] is True and "context" not in coder.config
    assert isinstance(grown.latent, ContextLatent) and type(coder.latent) is MeanScaleLatent
    y = _latents(2, dtype=torch.float64)
    z = coder.latent.hyper_analysis(y)
    for relax in (hard(), identity()):
        a = coder.latent.evaluate(y, z, relax, hard())
        b = grown.latent.evaluate(y, z, relax, hard())
        for u, v in zip(a, b):
            torch.testing.assert_close(u, v, rtol=1e-12, atol=1e-9)
    qa, qb = coder.latent.quantize(y, z), grown.latent.quantize(y, z)
    assert torch.equal(qa[0], qb[0]) and torch.equal(qa[1], qb[1])
    torch.testing.assert_close(grown.latent.offsets(*qb), coder.latent.offsets(*qa), rtol=0, atol=1e-12)
    # the context terms learn: their last layers get a gradient at the start (mixed quantization)
    v_t, _, bits, _ = grown.latent.evaluate(y, z, mixed(torch.Generator().manual_seed(1)), hard())
    bits.sum().backward()
    last = grown.latent.context.latent_codec["y3"].entropy_parameters.mlp[-1].weight
    assert last.grad is not None and last.grad.abs().sum() > 0


def _context_latent(seed=0) -> ContextLatent:
    from rdopt.codecs.image.loading import fine_scale_table

    torch.manual_seed(seed)
    lat = ContextLatent(M, 16)
    _stir(lat.context, seed + 1)
    lat.update(fine_scale_table(64))
    return lat.eval()


@pytest.mark.parametrize("h,w", [(5, 7), (4, 4), (1, 3)])
def test_one_string_round_trip_is_the_hard_evaluation(h, w):
    lat = _context_latent()
    y = _latents(2, h, w, seed=3)
    z = lat.hyper_analysis(y)
    y_hat, z_hat = lat.quantize(y, z)
    assert torch.equal(lat.quantize(y_hat, z_hat)[0], y_hat)  # idempotent
    mu = lat.offsets(y_hat, z_hat)
    assert torch.equal(hard_round(y_hat, mu), y_hat)
    assert torch.allclose(y_hat - mu, torch.round(y_hat - mu), atol=1e-4)
    v_strings, z_strings = lat.compress(y, z)
    assert len(v_strings) == 2 and all(isinstance(s, bytes) for s in v_strings)
    back, z_back = lat.decompress(v_strings, z_strings, z.shape[-2:], v_shape=(h, w))
    assert torch.equal(z_back, z_hat) and torch.equal(back, y_hat)
    # what was written costs at most what the entropy model estimates plus the coder's final state (less where values
    # fall outside the coder's tables: it codes them by escape, the estimate charges the likelihood bound)
    bits = lat.evaluate(y_hat, z_hat, hard(), hard())[2]
    for s, est in zip(v_strings, bits.tolist()):
        assert 8 * len(s) <= est + 64 + 0.02 * est


def test_one_string_is_shorter_than_one_string_per_pass():
    from rdopt.codecs.entropy import fast_indexes

    lat = _context_latent(1)
    y = _latents(1, 6, 8, seed=4)
    z_hat = hard_round(lat.hyper_analysis(y), lat.z_offset(y))
    side = lat.side(z_hat, y.shape[-2:])
    one, y_hat = encode_stream(lat.context, y, side)
    assert torch.equal(decode_stream(lat.context, one, side, tuple(y.shape)), y_hat)
    assert torch.equal(code_y(lat.context, y, side, hard())[0], y_hat)
    with fast_indexes([lat.gaussian_conditional]), torch.no_grad():
        stock = lat.context.compress(y, side)
    passes = [s[0] for s in stock["strings"]]
    assert len(passes) == 10 and torch.equal(stock["y_hat"], y_hat)  # CompressAI's coder rounds the same way
    assert len(one) < sum(len(p) for p in passes)


def test_space_channel_y_validates_its_groups():
    with pytest.raises(ValueError, match="multiple of 12"):
        space_channel_y(16)
    with pytest.raises(ValueError, match="do not split"):
        space_channel_y(24, groups=[8, 8])
    with pytest.raises(ValueError, match="odd"):
        space_channel_y(24, channel_kernel=2)


def _context_pframe(seed=0) -> Video2PFrameCodec:
    from rdopt.codecs.image.loading import fine_scale_table

    torch.manual_seed(seed)
    codec = Video2PFrameCodec(MotionCoder(channels=16, latent=8, hyper=8),
                              ConditionalResidualCoder(16, M, 8, context=True))
    _stir(codec.residual.latent.context, seed + 7)
    codec.update(fine_scale_table(64))
    return codec.eval()


def test_context_pframe_passes_the_protocol_and_the_gop_contract_suite_float64():
    from rdopt.codecs.video.gop import VideoCodec
    from rdopt.codecs.video.pframe import pframe_problems
    from rdopt.infer.contract import check_all

    from video_fixtures import tiny_frames, tiny_iframe

    pframe = _context_pframe(2)
    assert pframe_problems(pframe) == []
    codec = VideoCodec(tiny_iframe(0), pframe, family="rdopt-video2", lmbda=0.013).to(torch.float64)
    check_all(codec.gop(2), tiny_frames(b=2, t=2, size=48, dtype=torch.float64))


def test_context_checkpoint_round_trip_and_rdov_encode_decode(tmp_path):
    from rdopt.api.video import decode_video_frames, encode_video, load_video_codec

    from video_fixtures import object_clip

    pframe = _context_pframe(3)
    ckpt = tmp_path / "ctx.pt"
    pframe.save_shipped(ckpt, meta={"lmbda": 0.013, "iframe_quality": 2}, levels=64)
    loaded = Video2PFrameCodec.load(ckpt)
    assert loaded.config["residual"]["context"] is True
    for k, v in pframe.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v), k
    codec = load_video_codec("rdopt-video2", checkpoint=ckpt)
    frames, _ = object_clip(4, 64, 96)
    got = {}
    out = tmp_path / "c.rdov"
    stats = encode_video(codec, frames, out, gop=4, progress=False, on_frame=lambda i, rgb: got.__setitem__(i, rgb))
    decoded = decode_video_frames(out.read_bytes(), checkpoint=ckpt)
    assert len(decoded) == 4
    for i, rgb in enumerate(decoded):
        assert np.array_equal(rgb, got[i]), i
    assert stats.file_bytes == out.stat().st_size


@pytest.mark.parametrize("kind", ["plain", "context"])
def test_mixed_quantization_decodes_rounded_values_and_rates_noisy_ones_float64(kind):
    """Mixed quantization (CompressAI's training of latent codecs): the values the decoder sees are the hard ones
    (straight through), the rate is that of the latent plus uniform noise — for both residual latents."""
    torch.manual_seed(0)
    lat = (MeanScaleLatent(M, 16) if kind == "plain" else ContextLatent(M, 16)).double()
    if kind == "context":
        _stir(lat.context, 5)
    y = _latents(1, 4, 6, seed=2, dtype=torch.float64)
    z = lat.hyper_analysis(y)
    v_t, z_t, bits, _ = lat.evaluate(y, z, mixed(torch.Generator().manual_seed(9)), hard())
    v_h, z_h, bits_h, _ = lat.evaluate(y, z, hard(), hard())
    torch.testing.assert_close(v_t, v_h, rtol=0, atol=1e-12)  # x + (round(x) − x): equal up to the last bit
    assert torch.equal(z_t, z_h)
    assert not torch.allclose(bits, bits_h)
    # the same noise drawn again: the rate of noisy values, pass by pass in the context model's order
    v_n, _, bits_n, _ = lat.evaluate(y, z, mixed(torch.Generator().manual_seed(9)), hard())
    assert torch.equal(bits, bits_n)
    if kind == "plain":
        u = torch.rand(y.shape, generator=torch.Generator().manual_seed(9), dtype=y.dtype) - 0.5
        scales, means = lat.prior(z_h, y.shape[-2:])
        torch.testing.assert_close(bits, lat.v_bits(y + u, scales, means))


def _one_string(seed=5):
    lat = _context_latent(seed)
    y = _latents(1, 4, 6, seed=seed)
    z_hat = hard_round(lat.hyper_analysis(y), lat.z_offset(y))
    side = lat.side(z_hat, y.shape[-2:])
    string, y_hat = encode_stream(lat.context, y, side)
    return lat, side, tuple(y.shape), string, y_hat


@pytest.mark.parametrize("mutate", [
    lambda s: b"", lambda s: s[:3], lambda s: s[:8], lambda s: s + b"\0\0", lambda s: s[:-4], lambda s: s + bytes(4),
    lambda s: b"\xff" * len(s), lambda s: bytes(np.random.default_rng(0).integers(0, 256, len(s), dtype=np.uint8)),
    lambda s: bytes(np.random.default_rng(1).integers(0, 256, 4 * len(s), dtype=np.uint8)),
], ids=["empty", "3 bytes", "8 bytes", "not whole words", "truncated", "padded", "all ff", "random", "random long"])
def test_a_malformed_one_string_is_an_error_not_a_picture(mutate):
    lat, side, shape, string, _ = _one_string()
    bad = mutate(string)
    assert bad != string
    with pytest.raises(ValueError, match="rANS string|corrupt latent string"):
        decode_stream(lat.context, bad, side, shape)


def test_one_string_codes_far_values_by_escape_and_refuses_what_it_cannot_code():
    lat, side, shape, _, _ = _one_string()
    y = torch.zeros(shape)
    y[0, 0, 0, 0], y[0, 5, 1, 2], y[0, 20, 3, 5] = 4.0e4, -7.5e5, 1.0e7  # far outside every table: escape coded
    string, y_hat = encode_stream(lat.context, y, side)
    assert torch.equal(decode_stream(lat.context, string, side, shape), y_hat)
    assert float(y_hat[0, 20, 3, 5]) == pytest.approx(1.0e7, abs=1.0)
    for bad in (float("nan"), float("inf"), 1.0e9):
        y[0, 3, 2, 2] = bad
        with pytest.raises(ValueError, match="not finite or too far"):
            encode_stream(lat.context, y, side)


def test_positions_at_their_mode_are_set_in_decoding_order():
    """Skip mode's latent: masked positions at symbol 0 of the mean their context gives them *after* the positions
    before them changed; every other position still on its grid."""
    lat = _context_latent(4)
    y = _latents(2, 4, 6, seed=6)
    y_hat, z_hat = lat.quantize(y, lat.hyper_analysis(y))
    g = torch.Generator().manual_seed(3)
    positions = torch.rand(y_hat.shape, generator=g) < 0.4
    at = lat.at_mode(y_hat, z_hat, positions)
    mu = lat.offsets(at, z_hat)
    assert torch.equal(at[positions], mu[positions])
    assert torch.equal(lat.quantize(at, z_hat)[0], at)  # on the coder's grid: it codes exactly this
    assert not torch.equal(at[~positions], y_hat[~positions])  # later passes' means moved with the earlier values
    plain = MeanScaleLatent(M, 16)
    torch.testing.assert_close(plain.at_mode(y_hat, z_hat, positions),
                               torch.where(positions, plain.offsets(y_hat, z_hat), y_hat))


def test_block_skips_on_the_context_codec_code_their_positions_at_symbol_0():
    from rdopt.codecs.video import skip as S
    from rdopt.codecs.video.gop import VideoCodec

    from test_skip import _gop
    from video_fixtures import object_clip, tiny_iframe

    codec = VideoCodec(tiny_iframe(0), _context_pframe(3), family="rdopt-video2", lmbda=1e-3)
    g, x, lat = _gop(codec, object_clip(3)[0], 64, 96)
    choice = S.choose_skips(g, x, lat, 64, 96, 1e-3, frame_skip=False)
    assert choice.cost < choice.cost_without
    blocks = [(t, s) for t, s in enumerate(choice.skips) if s is not None and s.mode == "blocks"]
    assert blocks
    lat_c = codec.pframe.residual.latent
    for t, s in blocks:
        y, z = choice.latents[f"y_{t}"], choice.latents[f"z_y_{t}"]
        pos = S.position_mask(S.pixel_mask(s.mask, 64, 96, y), y.shape).expand_as(y)
        assert pos.any()
        mu = lat_c.offsets(y, z)
        assert torch.equal(y[pos], mu[pos])  # symbol 0 under the skipped blocks, in decoding order
        assert torch.equal(lat_c.quantize(y, z)[0], y)  # the latent the coder writes, as chosen
