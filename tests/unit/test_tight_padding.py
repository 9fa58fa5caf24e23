"""Tight padding: frames padded to the latents' stride (16) instead of 64, with each hyper-synthesis output cropped
to its latent — for the image hyperprior adapter (an embedded video codec's I-frames), the P-frame latents of
rdopt-video2, and the ``.rdov`` header bit that says which padding a file was coded at."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from rdopt.codecs.entropy import crop_to
from rdopt.core.types import Latents

from conftest import frozen, make_tiny_net


def test_crop_to_keeps_the_top_left_corner_and_refuses_to_grow():
    t = torch.arange(2 * 3 * 8 * 12.0).reshape(2, 3, 8, 12)
    assert crop_to(t, None) is t and crop_to(t, (8, 12)) is t
    assert torch.equal(crop_to(t, (5, 9)), t[..., :5, :9])
    with pytest.raises(ValueError, match="cannot cover"):
        crop_to(t, (9, 12))


def _adapter(seed: int = 0):
    from rdopt.codecs.image.hyperprior import HyperpriorAdapter
    from rdopt.codecs.image.loading import fine_scale_table

    net = make_tiny_net(seed, n=8, m=12)
    net.update(scale_table=fine_scale_table(16), force=True)
    return frozen(HyperpriorAdapter(net, model_id="test", lmbda=0.0067, quality=3))


@pytest.mark.parametrize("h,w", [(48, 80), (16, 112), (64, 128)])
def test_hyperprior_adapter_codes_a_tightly_padded_image(h, w):
    a = _adapter()
    g = torch.Generator().manual_seed(1)
    x = torch.nn.functional.avg_pool2d(torch.rand(1, 3, h, w, generator=g), 3, 1, 1)
    with torch.no_grad():
        lat = a.quantize(a.amortize(x))
        shapes = a.latent_shapes(h, w)
        assert {n: tuple(lat[n].shape[1:]) for n in ("y", "z")} == shapes
        assert shapes["z"][1:] == (-(-h // 64), -(-w // 64))
        coded = a.compress(lat)
        back = a.decompress(coded)
        assert torch.equal(back["y"], lat["y"]) and torch.equal(back["z"], lat["z"])
        est = float(a.hard_evaluate(lat).bits.sum())
    real = 8 * sum(len(s) for v in coded.streams.values() for s in v)
    assert est <= real <= est + 2 * 64 + 0.02 * est  # rANS: ≤ 32 bits of flush per string, a small per-symbol slack
    if h % 64 == 0 and w % 64 == 0:  # the crop is the identity: CompressAI's own decoder reads the strings
        out = a.net.decompress([coded.streams["y"], coded.streams["z"]], list(shapes["z"][1:]))
        assert torch.allclose(out["x_hat"], a.net.g_s(lat["y"]).clamp(0, 1), atol=1e-6)


def test_hyperprior_adapter_grid_and_floor_diagnostics_crop_too():
    a = _adapter(2)
    x = torch.rand(1, 3, 48, 80)
    with torch.no_grad():
        lat = a.quantize(a.amortize(x))
        grid = a.evaluate_grid(lat["y"][None], lat["z"][None])
        ev = a.hard_evaluate(lat)
        frac, share = a.floor_diagnostics(lat)
    assert torch.allclose(grid.bits_y.sum(), ev.rates["y"].sum(), rtol=1e-5)
    assert grid.scales.shape[-2:] == lat["y"].shape[-2:] and frac.shape == share.shape == (1,)


# ------------------------------------------------------------------------------- the .rdov padding flag
def _tiny_video2():
    from rdopt.codecs.video.gop import VideoCodec
    from rdopt.codecs.video.video2 import ConditionalResidualCoder, MotionCoder, Video2PFrameCodec

    torch.manual_seed(0)
    pframe = Video2PFrameCodec(MotionCoder(channels=16, latent=8, hyper=8), ConditionalResidualCoder(16, 16, 8))
    pframe.update()
    return frozen(VideoCodec(_adapter(), frozen(pframe), family="rdopt-video2", lmbda=0.013))


def _encode(codec, frames, path, **kw):
    from rdopt.api.video import encode_video

    seen = {}
    stats = encode_video(codec, frames, path, gop=2, progress=False, on_frame=lambda i, f: seen.__setitem__(i, f), **kw)
    return stats, [seen[i] for i in range(len(frames))]


def test_rdov_records_the_padding_and_decodes_either(tmp_path, monkeypatch):
    from rdopt.api.video import decode_video_frames
    from rdopt.codecs.video.gop import VideoCodec
    from rdopt.coding.rdov import BitstreamError, pack_video, unpack_video

    from video_fixtures import moving_clip

    codec = _tiny_video2()
    clip = moving_clip(3, 40, 72)  # padded to 48×80 (tight) or 64×128 (legacy)
    stats, frames = _encode(codec, clip, tmp_path / "tight.rdov")
    data = (tmp_path / "tight.rdov").read_bytes()
    header, gops = unpack_video(data)
    assert header.tight_padding
    assert all(np.array_equal(a, b) for a, b in zip(decode_video_frames(data, codec=codec), frames))
    # a file written before tight padding existed: frames padded to 64, no flag — still decodes as it was coded
    with monkeypatch.context() as m:
        m.setattr(VideoCodec, "pad_multiple", property(lambda self: self.legacy_pad_multiple))
        legacy_stats, legacy_frames = _encode(codec, clip, tmp_path / "legacy.rdov")
    legacy = (tmp_path / "legacy.rdov").read_bytes()
    assert not unpack_video(legacy)[0].tight_padding
    assert all(np.array_equal(a, b) for a, b in zip(decode_video_frames(legacy, codec=codec), legacy_frames))
    assert legacy_stats.frames == stats.frames == 3
    # the flag flipped in transit: the header's CRC refuses the file before any model runs
    assert data[5] & 4
    flipped = data[:5] + bytes([data[5] & ~4]) + data[6:]
    with pytest.raises(BitstreamError, match="checksum"):
        decode_video_frames(flipped, codec=codec)
    assert pack_video(header, gops) == data


def test_rdov_of_a_size_both_paddings_agree_on_has_no_flag(tmp_path):
    from rdopt.coding.describe import describe_rdov
    from rdopt.coding.rdov import unpack_video

    from video_fixtures import moving_clip

    codec = _tiny_video2()
    assert not codec.tight_padding(64, 128) and codec.tight_padding(40, 72) and codec.tight_padding(48, 128)
    _encode(codec, moving_clip(2, 64, 128), tmp_path / "a.rdov")
    assert not unpack_video((tmp_path / "a.rdov").read_bytes())[0].tight_padding
    assert describe_rdov(str(tmp_path / "a.rdov"))["tight_padding"] is False


def test_the_flag_is_refused_where_it_changes_nothing_and_codecs_opt_in(tmp_path):
    from rdopt.api.video import decode_video_frames
    from rdopt.coding.rdov import BitstreamError, pack_video, unpack_video

    from video_fixtures import moving_clip

    codec = _tiny_video2()
    _encode(codec, moving_clip(2, 64, 128), tmp_path / "a.rdov")
    header, gops = unpack_video((tmp_path / "a.rdov").read_bytes())
    with pytest.raises(BitstreamError, match="tight-padding flag is set"):  # one file per content
        decode_video_frames(pack_video(replace(header, tight_padding=True), gops), codec=codec)
    # a P-frame codec whose priors do not fit every latent size keeps the I-frame codec's 64
    codec.pframe.crops_priors = False
    assert codec.pad_multiple == codec.legacy_pad_multiple == 64 and not codec.tight_padding(40, 72)
