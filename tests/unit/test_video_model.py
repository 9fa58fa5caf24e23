"""The embedded P-frame codec, a GoP through its codec (codec.gop), the clip sampler and the GoP-unrolled objective,
on tiny random-weight models and 64×64 frames."""


import numpy as np
import pytest
import torch

from rdopt.codecs.video.dvc import DVCPFrameCodec, iframe_quality_for
from rdopt.codecs.video.parts import warp
from rdopt.codecs.video.pframe import amortize_frame, evaluate_frame
from rdopt.data.clips import CameraMotion, ClipSampler, photo_folder, synthetic_clip
from rdopt.losses.video import GopObjective
from rdopt.relax.rounding import hard, identity, uniform_noise

from video_fixtures import TINY, tiny_frames as _frames, tiny_video_codec as _codec

NAMES = ("w", "z_w", "y", "z_y")


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
    lat = amortize_frame(pf, x[:, 1], ref)
    shapes = pf.latent_shapes(64, 64)
    assert pf.names == NAMES and set(lat) == set(NAMES)
    for name in NAMES:
        assert tuple(lat[name].shape) == (2, *shapes[name])
    ev = evaluate_frame(pf, lat, ref, uniform_noise(torch.Generator().manual_seed(0)))
    assert ev.x_hat.shape == ev.prediction.shape == ev.motion.state["warped"].shape == (2, 3, 64, 64)
    assert ev.motion.state["flow"].shape == (2, 2, 64, 64)
    per_latent = (ev.motion.bits, ev.motion.hyper_bits, ev.residual.bits, ev.residual.hyper_bits)
    assert ev.bits.shape == (2,) and all(v.shape == (2,) for v in per_latent)
    assert torch.all(ev.bits > 0)
    with pytest.raises(ValueError, match="multiple of 64"):
        pf.infer_motion(torch.zeros(1, 3, 48, 64), torch.zeros(1, 3, 48, 64))
    with pytest.raises(KeyError, match="z_y"):
        evaluate_frame(pf, lat, ref, {"w": hard(), "z_w": hard(), "y": hard()})


def test_untrained_prediction_starts_as_a_copy_of_the_reference():
    pf = DVCPFrameCodec(**TINY)
    x = _frames(t=2)
    _, warped, pred = pf.predict(torch.zeros(1, 8, 4, 4), x[:, 0])
    torch.testing.assert_close(pred, warped)  # the MC net's last layer starts at zero


def test_quantize_is_round_around_the_prior_mean():
    codec = _codec()
    pf = codec.pframe
    x = _frames(t=2)
    lat = amortize_frame(pf, x[:, 1], x[:, 0])
    q = pf.quantize(lat)
    assert set(q) == set(NAMES)
    for v, z, part in ((q["w"], q["z_w"], pf.motion_latent), (q["y"], q["z_y"], pf.residual_latent)):
        med = part.z_offset(z)
        torch.testing.assert_close(z - med, torch.round(z - med), rtol=0, atol=1e-5)
        _, mu = part.prior(z)
        torch.testing.assert_close(v - mu, torch.round(v - mu), rtol=0, atol=1e-5)


def test_compress_decompress_round_trip_gives_the_quantized_latents_and_reconstruction():
    codec = _codec()
    pf = codec.pframe
    x = _frames(b=2, t=2)
    ref = x[:, 0]
    lat = amortize_frame(pf, x[:, 1], ref)
    # Latents a solver moved off the amortized values (and far into the tails) must code too.
    g = torch.Generator().manual_seed(3)
    moved = {n: lat[n] + 3.0 * torch.randn(lat[n].shape, generator=g) for n in NAMES}
    shapes = pf.latent_shapes(64, 64)
    for latents in (lat, moved):
        q = pf.quantize(latents)
        coded = pf.compress(latents)
        assert set(coded) == set(NAMES) and all(len(s) == 2 for s in coded.values())
        back = pf.decompress(coded, shapes, torch.float32)
        assert set(back) == set(NAMES)
        for name in NAMES:
            assert torch.equal(back[name], q[name]), name
        with torch.no_grad():
            assert torch.equal(evaluate_frame(pf, back, ref, hard()).x_hat, evaluate_frame(pf, q, ref, hard()).x_hat)
    # A GoP through its strings: the decoder's latents and frames are the encoder's.
    frames = _frames(b=1, t=3)
    gop = codec.gop(3)
    q = gop.quantize(gop.amortize(frames))
    back = gop.decompress(gop.compress(q))
    assert back.names == q.names
    for name in q.names:
        assert torch.equal(back[name], q[name]), name
    with torch.no_grad():
        ev = gop.hard_evaluate(back)
        assert ev.x_hat.shape == frames.shape and ev.frames == 3
        assert torch.equal(ev.x_hat, gop.hard_evaluate(q).x_hat)
        assert torch.equal(gop.reconstruct(back), ev.x_hat)


def test_checkpoint_round_trip_codes_the_same_strings(tmp_path):
    pf = _codec().pframe
    x = _frames(t=2)
    lat = amortize_frame(pf, x[:, 1], x[:, 0])
    path = tmp_path / "p.pt"
    torch.save({"state_dict": pf.state_dict(), "config": pf.config}, path)
    again = DVCPFrameCodec.load(path)
    assert again.compress(lat) == pf.compress(lat)


# --------------------------------------------------------------------------------------- the GoP
def _frame_latents(lat, t):
    """The P-frame codec's latents (by base name) of frame ``t`` of a GoP's latents."""
    return {n: lat[f"{n}_{t}"] for n in NAMES}


def _last_frame_cost(codec, lat0_y, gop, ref_scale, lmbda=512.0 / 255.0**2):
    """Cost of the last frame of a 3-frame GoP (latents ``gop`` of ``codec.gop(3)``) as a function of the
    I-frame latent y_0 (identity relaxation, so that it is smooth) and of a scaling of the first reference;
    λ in CompressAI units."""
    from rdopt.core.types import Latents, relax_all

    relax = identity()
    ev0 = codec.iframe.evaluate(Latents({"y": lat0_y, "z": gop["z_0"]}), relax_all(relax, ("y", "z")))
    ref = ev0.x_hat * ref_scale
    for t in (1, 2):
        ev = evaluate_frame(codec.pframe, _frame_latents(gop, t), ref, relax)
        ref = ev.x_hat
    mse = (ev.x_hat - _frames(t=3, dtype=ev.x_hat.dtype)[:, 2]).pow(2).mean()
    return ev.bits.sum() / 4096 + lmbda * 255.0**2 * mse


def test_gradient_of_the_last_frame_reaches_y0_and_the_reference_float64():
    codec = _codec(dtype=torch.float64)
    frames = _frames(t=3, dtype=torch.float64)
    g3 = codec.gop(3)
    gop = g3.quantize(g3.amortize(frames))
    y0 = gop["y_0"].clone().requires_grad_()
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
    ev = evaluate_frame(codec.pframe, _frame_latents(gop, 1), ref, identity())
    (g_ref,) = torch.autograd.grad(ev.bits.sum() + (ev.x_hat - frames[:, 1]).pow(2).sum(), ref)
    assert g_ref.abs().sum() > 0


def test_iframe_quality_for_video_lambdas():
    # λ in CompressAI units: the DVC-unit qualities 256 … 2048 divided by 255²
    assert [iframe_quality_for(l / 255.0**2) for l in (256, 512, 1024, 2048)] == [2, 3, 4, 5]


# --------------------------------------------------------------------------------------- objective
def test_objective_with_two_frames_is_the_sum_of_its_frame_terms():
    codec = _codec()
    clip = _frames(b=2, t=2)
    lmbda = 512.0 / 255.0**2  # CompressAI units: cost = bpp + λ·255²·MSE
    rd = GopObjective(codec, relaxation=hard())(clip, lmbda)
    assert rd.bits.shape == rd.cost.shape == (2, 2) and rd.prediction_mse.shape == (2, 1)
    torch.testing.assert_close(rd.total, rd.cost.sum(1))
    torch.testing.assert_close(rd.loss, rd.total.mean())
    with torch.no_grad():
        ev0 = codec.iframe.hard_evaluate(codec.iframe.amortize(clip[:, 0]))
        c0 = ev0.bits / 4096 + lmbda * 255.0**2 * (ev0.x_hat - clip[:, 0]).pow(2).flatten(1).mean(1)
        lat = amortize_frame(codec.pframe, clip[:, 1], ev0.x_hat)
        ev1 = evaluate_frame(codec.pframe, lat, ev0.x_hat, hard())
        c1 = ev1.bits / 4096 + lmbda * 255.0**2 * (ev1.x_hat - clip[:, 1]).pow(2).flatten(1).mean(1)
    torch.testing.assert_close(rd.total, c0 + c1)
    torch.testing.assert_close(rd.cost[:, 1], c1)


def test_unrolled_objective_trains_every_pframe_part_and_lambda_per_clip():
    codec = _codec()
    clip = _frames(b=2, t=4)
    obj = GopObjective(codec, generator=torch.Generator().manual_seed(0), prediction_weight=0.5)
    rd = obj(clip, torch.tensor([256.0, 2048.0]) / 255.0**2)
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
