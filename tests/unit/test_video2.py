"""rdopt-video2's parts: the encoder's optical flow, the motion coder, the conditional residual coder grown from
an image model, the P-frame codec's coding round trip and its P-frame protocol (the GoP contract suite), and the
carry-over training state."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rdopt.codecs.video.parts import warp
from rdopt.codecs.video.pframe import amortize_frame, evaluate_frame, pframe_problems
from rdopt.codecs.video.video2 import (ConditionalResidualCoder, MotionCoder, Video2PFrameCodec, dis_flow,
                                       downsample_flow, upsample_flow)
from rdopt.relax.rounding import hard

from conftest import make_tiny_net


def _texture(h: int, w: int, seed: int = 0) -> torch.Tensor:
    """A smooth random texture 1×3×h×w in [0, 1] (a flow estimator needs structure at several scales)."""
    g = torch.Generator().manual_seed(seed)
    base = torch.rand(1, 3, h // 8 + 2, w // 8 + 2, generator=g)
    big = torch.nn.functional.interpolate(base, size=(h + 16, w + 16), mode="bicubic", align_corners=False)
    fine = torch.rand(1, 3, h + 16, w + 16, generator=g) * 0.15
    return (big * 0.85 + fine).clamp(0, 1)


def test_dis_flow_follows_the_warp_convention():
    # current[p] = reference[p + (3, −2)]: the flow must be (+3, −2) and the warp must rebuild the current frame
    full = _texture(96, 128)
    ref = full[..., 8:8 + 96, 8:8 + 128]
    cur = full[..., 8 - 2:8 - 2 + 96, 8 + 3:8 + 3 + 128]
    flow = dis_flow(cur, ref)
    assert flow.shape == (1, 2, 96, 128) and flow.dtype == cur.dtype
    inner = flow[..., 16:-16, 16:-16]
    assert abs(float(inner[:, 0].median()) - 3.0) < 0.1
    assert abs(float(inner[:, 1].median()) + 2.0) < 0.1
    err_warp = (warp(ref, flow) - cur)[..., 16:-16, 16:-16].abs().mean()
    err_copy = (ref - cur)[..., 16:-16, 16:-16].abs().mean()
    assert err_warp < 0.1 * err_copy


def test_dis_flow_errors():
    with pytest.raises(ValueError, match="preset"):
        dis_flow(torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 8, 8), preset="slowest")
    with pytest.raises(ValueError, match="one shape"):
        dis_flow(torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 8, 16))


def test_flow_resampling_keeps_pixel_units():
    flow = torch.full((1, 2, 32, 32), 2.5)
    assert torch.allclose(downsample_flow(flow, 8), torch.full((1, 2, 4, 4), 2.5))
    assert torch.allclose(upsample_flow(torch.full((1, 2, 4, 4), 2.5), 8), flow)


def test_residual_coder_starts_as_the_image_model_on_the_residual():
    torch.manual_seed(0)
    net = make_tiny_net(n=16, m=24).double()
    coder = ConditionalResidualCoder.from_image_model(net).double()
    x, pred = torch.rand(2, 3, 64, 64, dtype=torch.float64), torch.rand(2, 3, 64, 64, dtype=torch.float64)
    y = coder.analyse(x, pred)
    assert torch.allclose(y, net.g_a(x - pred + 0.5), atol=1e-12)
    assert torch.allclose(coder.synthesize(y, pred), net.g_s(y) - 0.5, atol=1e-12)
    assert torch.allclose(coder.latent.hyper_analysis(y), net.h_a(y), atol=1e-12)
    # the condition branches learn: their last layers get a gradient at the start
    coder.synthesize(y.detach(), pred).square().sum().backward()
    assert coder.cond4[-1].weight.grad.abs().sum() > 0 and coder.cond2[-1].weight.grad.abs().sum() > 0


def _tiny_pframe(seed: int = 0) -> Video2PFrameCodec:
    torch.manual_seed(seed)
    codec = Video2PFrameCodec(MotionCoder(channels=16, latent=8, hyper=8), ConditionalResidualCoder(16, 16, 8))
    codec.update()
    return codec.eval()


@pytest.mark.parametrize("h,w", [(64, 128), (48, 80)])  # 48×80: latents of 3×5, hyper-latents of 1×2 (prior cropped)
def test_pframe_codec_round_trip_and_hard_evaluation(h, w):
    codec = _tiny_pframe()
    ref = _texture(h, w, seed=1)[..., 8:8 + h, 8:8 + w]
    x = _texture(h, w, seed=1)[..., 9:9 + h, 6:6 + w]
    names = ("w", "z_w", "y", "z_y")
    with torch.no_grad():
        lat = codec.quantize(amortize_frame(codec, x, ref))
        shapes = codec.latent_shapes(h, w)
        assert set(lat) == set(shapes) == set(names)
        for name, t in lat.items():
            assert tuple(t.shape[1:]) == shapes[name]
        coded = codec.compress(lat)
        assert set(coded) == set(names) and all(len(s) == 1 for s in coded.values())
        back = codec.decompress(coded, shapes, torch.float32)
        for name in names:
            assert torch.equal(back[name], lat[name]), name
        ev = evaluate_frame(codec, back, ref, hard())
        ev2 = evaluate_frame(codec, lat, ref, hard())
        residual = codec.residual.synthesize(ev.residual.latent, ev.prediction)  # g_s(ŷ, x_pred)
    assert torch.equal(ev.x_hat, ev2.x_hat)
    assert torch.allclose(ev.x_hat, ev.prediction + residual)
    assert sum(len(s[0]) for s in coded.values()) > 0


def test_pframe_codec_is_differentiable_in_latents_and_reference():
    codec = _tiny_pframe(1).double()
    ref = torch.rand(1, 3, 64, 64, dtype=torch.float64, requires_grad=True)
    lat = {n: torch.randn(1, *s, dtype=torch.float64, requires_grad=True)
           for n, s in codec.latent_shapes(64, 64).items()}
    from rdopt.relax.rounding import identity

    ev = evaluate_frame(codec, lat, ref, identity())
    (ev.x_hat.square().mean() + ev.bits.sum()).backward()
    for name in ("w", "z_w", "y", "z_y"):
        assert lat[name].grad.abs().sum() > 0, name
    assert ref.grad.abs().sum() > 0


def test_pframe_codec_refuses_unpadded_frames():
    codec = _tiny_pframe()
    with pytest.raises(ValueError, match="multiple of 16"):
        codec.infer_motion(torch.rand(1, 3, 40, 64), torch.rand(1, 3, 40, 64))


def test_pframe_codec_satisfies_the_protocol_and_its_gop_passes_the_contract_suite_float64():
    from rdopt.codecs.video.gop import VideoCodec
    from rdopt.infer.contract import check_all

    from video_fixtures import tiny_frames, tiny_iframe

    pframe = _tiny_pframe(2)
    assert pframe_problems(pframe) == []
    codec = VideoCodec(tiny_iframe(0), pframe, family="rdopt-video2", lmbda=0.013).to(torch.float64)
    assert codec.model_id == "rdopt-video2-custom" and (codec.pad_multiple, codec.legacy_pad_multiple) == (16, 64)
    check_all(codec.gop(2), tiny_frames(b=2, t=2, size=64, dtype=torch.float64))
    check_all(codec.gop(2), tiny_frames(b=2, t=2, size=48, dtype=torch.float64))  # a tight padding: priors cropped


def test_slim_state_keeps_weights_in_float16_and_constants_exact(tmp_path):
    from rdopt.training.loop import slim_state

    coder = MotionCoder(channels=16, latent=8, hyper=8)
    state = {"model": coder.state_dict(), "opt": {"state": {}}, "aux_opt": None, "step": 1234,
             "gen": torch.Generator().manual_seed(3).get_state(), "config": "{}"}
    torch.save(state, tmp_path / "s.pt")
    assert slim_state(tmp_path / "s.pt", tmp_path / "slim.pt") == 1234
    slim = torch.load(tmp_path / "slim.pt", weights_only=True)
    assert slim["opt"] is None and slim["step"] == 1234
    for k, v in slim["model"].items():
        orig = state["model"][k]
        if orig.dtype == torch.float32 and orig.numel() >= 16:
            assert v.dtype == torch.float16 and torch.allclose(v.float(), orig, rtol=1e-3, atol=1e-4), k
        else:
            assert torch.equal(v, orig), k  # e.g. the likelihood bound 1e-9 would be 0 in float16
    fresh = MotionCoder(channels=16, latent=8, hyper=8)
    fresh.load_state_dict(slim["model"])  # loads into float32 parameters


def test_clip_layers_are_reproducible_and_in_range():
    from rdopt.data.clips import ClipSampler

    rng = np.random.default_rng(0)
    photos = [(rng.random((200, 220, 3)) * 255).astype(np.uint8) for _ in range(3)]
    a = ClipSampler([], photos, size=64, frames=3, seed=5, layer_share=1.0).batch(4)
    b = ClipSampler([], photos, size=64, frames=3, seed=5, layer_share=1.0).batch(4)
    plain = ClipSampler([], photos, size=64, frames=3, seed=5, layer_share=0.0).batch(4)
    assert torch.equal(a, b) and a.shape == (4, 3, 3, 64, 64)
    assert float(a.min()) >= 0 and float(a.max()) <= 1
    assert not torch.equal(a, plain)
    with pytest.raises(ValueError, match="layer_share"):
        ClipSampler([], photos, size=64, frames=3, layer_share=1.5)


def test_a_checkpoint_without_an_iframe_quality_takes_the_one_of_its_lambda(tmp_path):
    from rdopt.codecs.video.video2 import VIDEO2_IFRAME_QUALITY, load_video2

    codec = _tiny_pframe()
    codec.save_shipped(tmp_path / "p.pt", meta={"lmbda": 0.025})
    video = load_video2(checkpoint=tmp_path / "p.pt")
    assert video.iframe.quality == VIDEO2_IFRAME_QUALITY[3] and video.lmbda == 0.025
