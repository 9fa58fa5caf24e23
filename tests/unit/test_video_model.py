"""The embedded P-frame codec, the GoP helpers, the clip sampler and the GoP-unrolled objective
(issue #18), on tiny random-weight models and 64×64 frames."""

import io

import numpy as np
import pytest
import torch

from rdopt.codecs.image.hyperprior import HyperpriorAdapter
from rdopt.codecs.video.dvc import (
    LATENT_NAMES, GopLatents, PFrameCodec, PFrameLatents, VideoCodec, iframe_quality_for, warp,
)
from rdopt.data.clips import CameraMotion, ClipSampler, photo_folder, synthetic_clip
from rdopt.losses.video import GopObjective
from rdopt.relax.rounding import hard, identity, uniform_noise

from video_fixtures import TINY, tiny_frames as _frames, tiny_video_codec as _codec


# ------------------------------------------------------------------------------------------ warp
def test_warp_is_identity_for_zero_flow_and_an_exact_integer_shift():
    g = torch.Generator().manual_seed(0)
    ref = torch.rand(2, 3, 16, 20, generator=g, dtype=torch.float64)
    zero = torch.zeros(2, 2, 16, 20, dtype=torch.float64)
    torch.testing.assert_close(warp(ref, zero), ref, rtol=0, atol=1e-12)
    flow = zero.clone()
    flow[:, 0], flow[:, 1] = 3.0, -2.0  # out[i, j] = ref[i − 2, j + 3]
    out = warp(ref, flow)
    torch.testing.assert_close(out[:, :, 2:, :-3], ref[:, :, :-2, 3:], rtol=0, atol=1e-12)
    # A half-pixel shift along x is the mean of the two neighbours (bilinear).
    flow = zero.clone()
    flow[:, 0] = 0.5
    torch.testing.assert_close(warp(ref, flow)[..., :-1], 0.5 * (ref[..., :-1] + ref[..., 1:]), rtol=0, atol=1e-12)


def test_warp_is_differentiable_in_reference_and_flow():
    g = torch.Generator().manual_seed(1)
    ref = torch.rand(1, 3, 8, 8, generator=g, dtype=torch.float64, requires_grad=True)
    flow = (0.3 * torch.randn(1, 2, 8, 8, generator=g, dtype=torch.float64)).requires_grad_()
    assert torch.autograd.gradcheck(warp, (ref, flow))
    with pytest.raises(ValueError, match="flow must be"):
        warp(ref, flow[:, :, :4])


# ------------------------------------------------------------------------------------ P-frame codec
def test_shapes_of_latents_and_evaluation():
    codec = _codec()
    x = _frames(b=2, t=2)
    pf = codec.pframe
    ref = x[:, 0]
    lat = pf.amortize(x[:, 1], ref)
    shapes = pf.latent_shapes(64, 64)
    for name in LATENT_NAMES:
        assert tuple(getattr(lat, name).shape) == (2, *shapes[name])
    ev = pf.evaluate(lat, ref, uniform_noise(torch.Generator().manual_seed(0)))
    assert ev.x_hat.shape == ev.prediction.shape == ev.motion.warped.shape == (2, 3, 64, 64)
    assert ev.motion.flow.shape == (2, 2, 64, 64)
    assert ev.bits.shape == (2,) and all(v.shape == (2,) for v in ev.bits_by_latent.values())
    assert torch.all(ev.bits > 0)
    with pytest.raises(ValueError, match="multiple of 64"):
        pf.infer_motion(torch.zeros(1, 3, 48, 64), torch.zeros(1, 3, 48, 64))
    with pytest.raises(KeyError, match="z_y"):
        pf.evaluate(lat, ref, {"w": hard(), "z_w": hard(), "y": hard()})


def test_untrained_prediction_starts_as_a_copy_of_the_reference():
    pf = PFrameCodec(**TINY)
    x = _frames(t=2)
    _, warped, pred = pf.predict(torch.zeros(1, 8, 4, 4), x[:, 0])
    torch.testing.assert_close(pred, warped)  # the MC net's last layer starts at zero


def test_quantize_is_round_around_the_prior_mean():
    codec = _codec()
    pf = codec.pframe
    x = _frames(t=2)
    lat = pf.amortize(x[:, 1], x[:, 0])
    q = pf.quantize(lat)
    for v, z, part in ((q.w, q.z_w, pf.motion_latent), (q.y, q.z_y, pf.residual_latent)):
        med = part.z_offset(z)
        torch.testing.assert_close(z - med, torch.round(z - med), rtol=0, atol=1e-5)
        _, mu = part.prior(z)
        torch.testing.assert_close(v - mu, torch.round(v - mu), rtol=0, atol=1e-5)


def test_compress_decompress_round_trip_gives_the_quantized_latents_and_reconstruction():
    codec = _codec()
    pf = codec.pframe
    x = _frames(b=2, t=2)
    ref = x[:, 0]
    lat = pf.amortize(x[:, 1], ref)
    # Latents a solver moved off the amortized values (and far into the tails) must code too.
    g = torch.Generator().manual_seed(3)
    moved = PFrameLatents(*(v + 3.0 * torch.randn(v.shape, generator=g) for v in (lat.w, lat.z_w, lat.y, lat.z_y)))
    for latents in (lat, moved):
        q = pf.quantize(latents)
        coded = pf.compress(latents)
        assert set(coded.strings) == set(LATENT_NAMES) and all(len(s) == 2 for s in coded.strings.values())
        back = pf.decompress(coded)
        for name in LATENT_NAMES:
            assert torch.equal(getattr(back, name), getattr(q, name)), name
        with torch.no_grad():
            assert torch.equal(pf.hard_evaluate(back, ref).x_hat, pf.hard_evaluate(q, ref).x_hat)
    # A GoP through its strings: the decoder's frames are the encoder's.
    frames = _frames(b=1, t=3)
    gop = codec.encode_gop(frames)
    back = codec.decompress_gop(codec.compress_gop(gop))
    assert torch.equal(codec.hard_evaluate_gop(back, frames).x_hat, codec.hard_evaluate_gop(gop, frames).x_hat)


def test_checkpoint_round_trip_codes_the_same_strings(tmp_path):
    pf = _codec().pframe
    x = _frames(t=2)
    lat = pf.amortize(x[:, 1], x[:, 0])
    path = tmp_path / "p.pt"
    torch.save({"state_dict": pf.state_dict(), "config": pf.config}, path)
    again = PFrameCodec.load(path)
    assert again.compress(lat).strings == pf.compress(lat).strings


# --------------------------------------------------------------------------------------- the GoP
def _last_frame_cost(codec, lat0_y, gop, ref_scale, lmbda=512.0):
    """Cost of the last frame of a 3-frame GoP as a function of the I-frame latent y_0 (identity
    relaxation, so that it is smooth) and of a scaling of the first reference."""
    from rdopt.core.types import Latents, relax_all

    lat = GopLatents(Latents({"y": lat0_y, "z": gop.iframe["z"]}), gop.pframes)
    relax = identity()
    ev0 = codec.iframe.evaluate(lat.iframe, relax_all(relax, ("y", "z")))
    ref = ev0.x_hat * ref_scale
    for p in lat.pframes:
        ev = codec.pframe.evaluate(p, ref, relax)
        ref = ev.x_hat
    return ev.bits.sum() / 4096 + lmbda * (ev.x_hat - _frames(t=3, dtype=ev.x_hat.dtype)[:, 2]).pow(2).mean()


def test_gradient_of_the_last_frame_reaches_y0_and_the_reference_float64():
    codec = _codec(dtype=torch.float64)
    frames = _frames(t=3, dtype=torch.float64)
    gop = codec.encode_gop(frames)
    y0 = gop.iframe["y"].clone().requires_grad_()
    scale = torch.ones((), dtype=torch.float64, requires_grad=True)
    cost = _last_frame_cost(codec, y0, gop, scale)
    g_y0, g_scale = torch.autograd.grad(cost, (y0, scale))
    assert torch.isfinite(g_y0).all() and g_y0.abs().sum() > 0 and g_scale.abs() > 0
    # Finite differences along a random direction agree with autograd (float64, central differences).
    gen = torch.Generator().manual_seed(5)
    d = torch.randn(y0.shape, generator=gen, dtype=torch.float64)
    eps = 1e-6
    with torch.no_grad():
        fd = (_last_frame_cost(codec, y0 + eps * d, gop, scale) - _last_frame_cost(codec, y0 - eps * d, gop, scale)) / (2 * eps)
    torch.testing.assert_close(fd, (g_y0 * d).sum(), rtol=1e-4, atol=1e-7)
    # The gradient with respect to a P-frame's reference itself.
    ref = frames[:, 0].clone().requires_grad_()
    ev = codec.pframe.evaluate(gop.pframes[0], ref, identity())
    (g_ref,) = torch.autograd.grad(ev.bits.sum() + (ev.x_hat - frames[:, 1]).pow(2).sum(), ref)
    assert g_ref.abs().sum() > 0


def test_gop_helpers_report_per_frame_bits_and_mse():
    codec = _codec()
    frames = _frames(b=2, t=3)
    gop = codec.encode_gop(frames)
    assert len(gop) == 3
    res = codec.hard_evaluate_gop(gop, frames)
    assert res.bits.shape == res.mse.shape == res.psnr.shape == (2, 3)
    assert res.x_hat.shape == frames.shape
    torch.testing.assert_close(res.bpp, res.bits / 4096)
    torch.testing.assert_close(res.psnr, -10 * torch.log10(res.mse))


def test_iframe_quality_for_video_lambdas():
    assert [iframe_quality_for(l) for l in (256, 512, 1024, 2048)] == [2, 3, 4, 5]


# --------------------------------------------------------------------------------------- objective
def test_objective_with_two_frames_is_the_sum_of_its_frame_terms():
    codec = _codec()
    clip = _frames(b=2, t=2)
    lmbda = 512.0
    rd = GopObjective(codec, relaxation=hard())(clip, lmbda)
    assert rd.bits.shape == rd.cost.shape == (2, 2) and rd.prediction_mse.shape == (2, 1)
    torch.testing.assert_close(rd.total, rd.cost.sum(1))
    torch.testing.assert_close(rd.loss, rd.total.mean())
    with torch.no_grad():
        ev0 = codec.iframe.hard_evaluate(codec.iframe.amortize(clip[:, 0]))
        c0 = ev0.bits / 4096 + lmbda * (ev0.x_hat - clip[:, 0]).pow(2).flatten(1).mean(1)
        lat = codec.pframe.amortize(clip[:, 1], ev0.x_hat)
        ev1 = codec.pframe.hard_evaluate(lat, ev0.x_hat)
        c1 = ev1.bits / 4096 + lmbda * (ev1.x_hat - clip[:, 1]).pow(2).flatten(1).mean(1)
    torch.testing.assert_close(rd.total, c0 + c1)
    torch.testing.assert_close(rd.cost[:, 1], c1)


def test_unrolled_objective_trains_every_pframe_part_and_lambda_per_clip():
    codec = _codec()
    clip = _frames(b=2, t=4)
    obj = GopObjective(codec, generator=torch.Generator().manual_seed(0), prediction_weight=0.5)
    rd = obj(clip, torch.tensor([256.0, 2048.0]))
    assert rd.cost.shape == (2, 4)
    rd.loss.backward()
    for name in ("motion_analysis", "motion_synthesis", "mc", "residual_analysis", "residual_synthesis",
                 "motion_latent", "residual_latent"):
        grads = [p.grad for p in getattr(codec.pframe, name).parameters() if p.requires_grad and p.grad is not None]
        assert grads and any(g.abs().sum() > 0 for g in grads), name
    assert all(p.grad is None for p in codec.iframe.parameters())


# --------------------------------------------------------------------------------------- clips
def test_pure_pan_is_a_true_shift_even_sub_pixel():
    g = torch.Generator().manual_seed(0)
    photo = torch.rand(3, 80, 90, generator=g, dtype=torch.float64) * 0.8 + 0.1
    clip = synthetic_clip(photo, CameraMotion(pan=(3.0, -2.0)), centre=(45.0, 40.0), size=32, frames=3)
    # frame k(p) = photo(c + k·v + p): frame 1 at (i, j) is frame 0 at (i − 2, j + 3).
    torch.testing.assert_close(clip[1, :, 2:, :-3], clip[0, :, :-2, 3:], rtol=0, atol=1e-12)
    assert not torch.allclose(clip[1], clip[0])
    # Half-pixel pan from a fractional centre: frame 2 is frame 0 shifted by one whole pixel.
    clip = synthetic_clip(photo, CameraMotion(pan=(0.5, 0.0)), centre=(44.3, 39.7), size=32, frames=3)
    torch.testing.assert_close(clip[2, :, :, :-1], clip[0, :, :, 1:], rtol=0, atol=1e-12)
    assert not torch.allclose(clip[1, :, :, :-1], clip[0, :, :, 1:], atol=1e-3)  # a true sub-pixel step


def test_clip_sampler_shapes_range_and_seed():
    rng = np.random.default_rng(0)
    video = (rng.random((6, 50, 60, 3)) * 255).astype(np.uint8)
    photos = [(rng.random((70, 80, 3)) * 255).astype(np.uint8), np.zeros((20, 20, 3), np.uint8)]
    a = ClipSampler([video], photos, size=32, frames=3, seed=7).batch(6)
    b = ClipSampler([video], photos, size=32, frames=3, seed=7).batch(6)
    assert a.shape == (6, 3, 3, 32, 32) and a.dtype == torch.float32
    assert torch.equal(a, b) and 0.0 <= a.min() and a.max() <= 1.0
    c = ClipSampler([video], photos, size=32, frames=3, seed=8).batch(6)
    assert not torch.equal(a, c)
    # Video-only clips are crops of consecutive frames (step 1): every frame is found in the video.
    v = ClipSampler([video], (), size=32, frames=2, seed=1, frame_steps=(1,), reverse=False).clip()
    u8 = (v * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    found = [any((video[t:t + 2, i:i + 32, j:j + 32] == u8).all() or (video[t:t + 2, i:i + 32, j:j + 32][:, :, ::-1] == u8).all()
                 for i in range(19) for j in range(29)) for t in range(5)]
    assert any(found)
    assert len(ClipSampler((), photos, size=32, frames=2).photos) == 1  # the 20×20 photo is too small
    with pytest.raises(ValueError, match="no video"):
        ClipSampler((), [np.zeros((20, 20, 3), np.uint8)], size=32)


def test_photo_folders_refuse_the_evaluation_photos(tmp_path):
    from PIL import Image

    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(tmp_path / "mine.png")
    assert len(photo_folder(tmp_path)) == 1
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(tmp_path / "astronaut.png")
    with pytest.raises(ValueError, match="evaluation photos"):
        photo_folder(tmp_path)
