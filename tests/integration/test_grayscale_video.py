"""Grayscale video end to end through the CLI on real small files: a clip whose frames
are all gray (Y4M ``C420`` with flat chroma, Y4M ``Cmono``, an H.264 MP4 with neutral chroma, a folder of
mode-L PNGs) is flagged grayscale in the ``.rdov`` header (``rdopt info`` shows it) and decodes to gray
output — PNG frames of mode L, Y4M with every chroma sample 128, MP4 whose frames decode to R = G = B — and
the PSNR ``--json`` reports is the PSNR of what was written. Colour clips stay colour; ``.rdov`` files
written before the flag existed (golden files) decode exactly as they did. Encodes run as separate processes, decodes
and ``info`` in-process (the same command-line entry point, without a Python start-up each)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import GOLDEN, assert_decodes_as_recorded, run_rdopt
from rdopt.metrics.quality import psnr
from video_fixtures import moving_clip

CKPT = GOLDEN / "tiny_video.pt"
W = H = 64
N = 4


def ok(result) -> str:
    """The standard output of a successful in-process ``rdopt`` run (the ``cli`` fixture)."""
    code, out, err = result
    assert code == 0, err
    return out


def gray_levels() -> list[np.ndarray]:
    return [f[..., 1] for f in moving_clip(N, H, W, seed=3)]


def write_y4m(path: Path, tag: str, frames: list[tuple[np.ndarray, ...]], extra: str = "") -> Path:
    """A Y4M file written by hand: ``frames`` are tuples of planes."""
    with open(path, "wb") as f:
        f.write(f"YUV4MPEG2 W{W} H{H} F25:1 Ip A1:1 C{tag}{extra}\n".encode())
        for planes in frames:
            f.write(b"FRAME\n" + b"".join(np.ascontiguousarray(p, dtype=np.uint8).tobytes() for p in planes))
    return path


def neutral(h: int, w: int) -> np.ndarray:
    return np.full((h, w), 128, dtype=np.uint8)


def make_sources(d: Path) -> dict[str, Path]:
    import av

    g = gray_levels()
    luma = [np.clip(y, 16, 235).astype(np.uint8) for y in g]  # limited-range luma
    src = {
        "c420": write_y4m(d / "c420.y4m", "420", [(y, neutral(H // 2, W // 2), neutral(H // 2, W // 2)) for y in luma]),
        "mono": write_y4m(d / "mono.y4m", "mono", [(y,) for y in g]),
    }
    mp4 = d / "gray.mp4"  # lossy H.264 4:2:0 of gray frames: the chroma stays exactly 128
    with av.open(str(mp4), "w") as c:
        s = c.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt = W, H, "yuv420p"
        s.codec_context.thread_count = 1
        for i, y in enumerate(luma):
            fr = av.VideoFrame.from_ndarray(np.concatenate([y, neutral(H // 2, W)]), format="yuv420p")
            fr.pts = i
            for pkt in s.encode(fr):
                c.mux(pkt)
        for pkt in s.encode(None):
            c.mux(pkt)
    src["mp4"] = mp4
    folder = d / "pngs"
    folder.mkdir()
    for i, y in enumerate(g):
        Image.fromarray(y).save(folder / f"frame_{i + 1:04d}.png")  # mode L
    src["png"] = folder
    return src


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    d = tmp_path_factory.mktemp("grayvideo")
    return {"dir": d, "src": make_sources(d), "encoded": {}}


def encoded(clips, name: str, path: Path | None = None) -> tuple[Path, dict]:
    """Encode a source once (amortized, GoP 2): (the .rdov, the --json report)."""
    if name not in clips["encoded"]:
        out = clips["dir"] / f"{name}.rdov"
        r = run_rdopt("encode", path or clips["src"][name], "-o", out, "--method", "amortized", "--gop", "2",
                    "--checkpoint", CKPT, "--json")
        clips["encoded"][name] = (out, json.loads(r.stdout))
    return clips["encoded"][name]


def source_gray(path: Path) -> np.ndarray:
    """The source's gray levels as rdopt reads it (asserting that its frames are gray)."""
    from rdopt.data.video import read_frames

    rgb = read_frames(path)
    assert (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all()
    return rgb[..., 0]


def y4m_planes(path: Path) -> tuple[str, list[tuple[np.ndarray, np.ndarray, np.ndarray]]]:
    """(stream header, per frame (Y, Cb, Cr)) of a 4:2:0 Y4M file, parsed by hand."""
    data = path.read_bytes()
    head, _, body = data.partition(b"\n")
    assert b" C420" in head
    n, c = W * H, (W // 2) * (H // 2)
    frames = []
    for part in body.split(b"FRAME\n")[1:]:
        assert len(part) == n + 2 * c
        a = np.frombuffer(part, dtype=np.uint8)
        frames.append((a[:n].reshape(H, W), a[n:n + c].reshape(H // 2, W // 2), a[n + c:].reshape(H // 2, W // 2)))
    return head.decode(), frames


def png_frames(folder: Path) -> list[Image.Image]:
    files = sorted(folder.iterdir())
    assert [p.name for p in files] == [f"frame_{i:05d}.png" for i in range(1, N + 1)]
    return [Image.open(p) for p in files]


@pytest.mark.parametrize("name", ["c420", "mono", "mp4", "png"])
def test_gray_sources_are_flagged_and_decode_to_mode_L_frames_with_the_reported_psnr(clips, name, cli):
    rdov, report = encoded(clips, name)
    assert report["grayscale"] is True and report["frames"] == N
    info = json.loads(ok(cli("info", rdov, "--json")))
    assert info["grayscale"] is True
    assert rdov.read_bytes()[5] & 2  # the header's flags byte: bit 1
    out = clips["dir"] / f"{name}_frames"
    r = ok(cli("decode", rdov, "-o", out, "--checkpoint", CKPT))
    assert "grayscale" in r
    images = png_frames(out)
    assert [im.mode for im in images] == ["L"] * N
    ref = source_gray(clips["src"][name])
    got = [psnr(np.asarray(im), ref[i]) for i, im in enumerate(images)]
    assert got == pytest.approx([f["psnr"] for f in report["frame_stats"]], abs=1e-9)
    assert report["psnr"] == pytest.approx(np.mean(got), abs=1e-9)
    mses = [float(np.mean((np.asarray(im, dtype=np.float64) - ref[i]) ** 2)) for i, im in enumerate(images)]
    for gop in report["gops"]:
        mse = np.mean(mses[gop["first_frame"]:gop["first_frame"] + gop["frames"]])
        assert gop["psnr"] == pytest.approx(10 * np.log10(255.0**2 / mse), abs=1e-9)


@pytest.mark.parametrize("name,full_range", [("mono", True), ("c420", False)])
def test_gray_y4m_output_has_flat_chroma_and_rereads_as_the_gray_frames(clips, name, full_range, cli):
    from rdopt.data.video import read_frames

    rdov, report = encoded(clips, name)
    out = clips["dir"] / f"{name}_out.y4m"
    ok(cli("decode", rdov, "-o", out, "--checkpoint", CKPT))
    frames_dir = clips["dir"] / f"{name}_frames_y4m"
    ok(cli("decode", rdov, "-o", frames_dir, "--checkpoint", CKPT))
    gray = [np.asarray(im) for im in png_frames(frames_dir)]
    head, planes = y4m_planes(out)
    assert ("XCOLORRANGE=FULL" in head) is full_range  # Cmono is full range, C420 without a tag limited
    assert len(planes) == N
    for (y, cb, cr), g in zip(planes, gray):
        assert (cb == 128).all() and (cr == 128).all()
        want = g if full_range else np.clip(np.rint(16 + g * (219 / 255)), 0, 255).astype(np.uint8)
        assert np.array_equal(y, want)
    back = read_frames(out)
    assert (back[..., 0] == back[..., 1]).all() and (back[..., 1] == back[..., 2]).all()  # R = G = B on re-read
    ref = source_gray(clips["src"][name])
    if full_range:  # the luma is the gray level: the re-read file is what the PSNR was measured on
        assert np.array_equal(back[..., 0], np.stack(gray))
        assert [psnr(back[i, ..., 0], ref[i]) for i in range(N)] == pytest.approx(
            [f["psnr"] for f in report["frame_stats"]], abs=1e-9)
    else:  # limited range: one rounding of the luma on the way
        assert np.abs(back[..., 0].astype(int) - np.stack(gray)).max() <= 1


def test_gray_mp4_output_decodes_to_equal_channels_with_the_reported_psnr(clips, cli):
    import av

    rdov, report = encoded(clips, "mono")
    out = clips["dir"] / "mono_out.mp4"
    ok(cli("decode", rdov, "-o", out, "--checkpoint", CKPT))
    ref = source_gray(clips["src"]["mono"])
    with av.open(str(out)) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    assert len(frames) == N
    for i, rgb in enumerate(frames):
        assert (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all()
        assert psnr(rgb[..., 0], ref[i]) == pytest.approx(report["frame_stats"][i]["psnr"], abs=1e-9)


def test_colour_clips_stay_colour(clips, cli):
    from rdopt.data.video import write_video

    colour = clips["dir"] / "colour.y4m"
    write_video(colour, moving_clip(N, H, W, seed=3))
    rdov, report = encoded(clips, "colour", colour)
    assert report["grayscale"] is False
    assert json.loads(ok(cli("info", rdov, "--json")))["grayscale"] is False
    assert rdov.read_bytes()[5] & 2 == 0
    out = clips["dir"] / "colour_frames"
    r = ok(cli("decode", rdov, "-o", out, "--checkpoint", CKPT))
    assert "RGB" in r
    images = png_frames(out)
    assert [im.mode for im in images] == ["RGB"] * N
    assert max(int(np.ptp(np.asarray(im, dtype=int), axis=2).max()) for im in images) > 0
    y4m = clips["dir"] / "colour_out.y4m"
    ok(cli("decode", rdov, "-o", y4m, "--checkpoint", CKPT))
    assert any((cb != 128).any() or (cr != 128).any() for _, cb, cr in y4m_planes(y4m)[1])


def test_a_clip_with_one_colour_frame_is_colour_and_the_api_gives_gray_output_frames(tmp_path):
    """Grayscale is decided on every frame coded: gray frames then a colour one make a colour clip."""
    from rdopt.api.video import decode_video, encode_video, load_video_codec

    codec = load_video_codec(checkpoint=CKPT)
    g = gray_levels()
    gray_rgb = [np.repeat(y[..., None], 3, axis=2) for y in g]
    mixed = gray_rgb[:3] + [moving_clip(1, H, W, seed=4)[0]]
    s = encode_video(codec, mixed, tmp_path / "m.rdov", gop=2)
    assert not s.grayscale and not decode_video(str(tmp_path / "m.rdov"), codec=codec).header.grayscale
    reported = {}
    s = encode_video(codec, gray_rgb, tmp_path / "g.rdov", gop=2, on_frame=reported.__setitem__)
    assert s.grayscale
    dv = decode_video(str(tmp_path / "g.rdov"), codec=codec)
    assert dv.grayscale
    out = list(dv.output_frames())
    assert all(f.shape == (H, W) and f.dtype == np.uint8 for f in out)
    for i, f in enumerate(out):
        assert np.array_equal(f, np.clip(np.rint(reported[i].astype(np.float32).mean(axis=2)), 0, 255))
        assert psnr(f, g[i]) == pytest.approx(s.frame_stats[i].psnr, abs=1e-9)


GOLDEN_VIDEOS = ["tiny_colour.rdov", "tiny_gray_noflag.rdov"]


@pytest.mark.parametrize("name", GOLDEN_VIDEOS)
def test_rdov_files_from_before_the_flag_decode_as_they_did(name, tmp_path, cli):
    """Golden files of the format as it was before the grayscale flag (``make_golden_video.py``): the second
    holds a gray clip, which is read as a colour clip, to the same frames and Y4M file as then."""
    from rdopt.coding.rdov import pack_header, read_header

    path = GOLDEN / name
    with open(path, "rb") as f:
        h = read_header(f)
        size = f.tell()
    assert not h.grayscale and path.read_bytes()[5] & 2 == 0
    assert pack_header(h) == path.read_bytes()[:size]  # a colour header is written byte for byte as before
    assert json.loads(ok(cli("info", path, "--json")))["grayscale"] is False
    out = tmp_path / "frames"
    ok(cli("decode", path, "-o", out, "--checkpoint", CKPT, "--threads", "1"))  # as the golden hashes were made
    images = png_frames(out)
    assert [im.mode for im in images] == ["RGB"] * N
    assert_decodes_as_recorded(name, images)
    y4m = tmp_path / "out.y4m"
    ok(cli("decode", path, "-o", y4m, "--checkpoint", CKPT, "--threads", "1"))
    assert_decodes_as_recorded(name, y4m=y4m.read_bytes())


def test_header_flag_bits():
    from dataclasses import replace
    from fractions import Fraction

    from rdopt.coding.container import BitstreamError
    from rdopt.coding.rdov import FrameLayout, VideoHeader, pack_header, read_header
    import io

    h = VideoHeader(model_id="rdopt-video-q3", weight_hash=bytes(8), height=H, width=W, frames=N, gop=2,
                    fps=Fraction(25), matrix="709")
    layout = FrameLayout((("I", (("latent", "y"), ("hyper", "z"))),))
    for full_range in (False, True):
        for grayscale in (False, True):
            for tight in (False, True):
                for compact in (None, layout):
                    b = pack_header(replace(h, full_range=full_range, grayscale=grayscale, tight_padding=tight,
                                            layout=compact))
                    assert b[5] == int(full_range) | 2 * int(grayscale) | 4 * int(tight) | 8 * (compact is not None)
                    got = read_header(io.BytesIO(b))
                    assert (got.full_range, got.grayscale, got.tight_padding, got.layout) == \
                        (full_range, grayscale, tight, compact)
    b = bytearray(pack_header(h))
    b[5] = 16  # an unknown bit stays an error (checked before the CRC)
    with pytest.raises(BitstreamError, match="unknown flags"):
        read_header(io.BytesIO(bytes(b)))


def test_reading_luma_only_sources(tmp_path):
    """Y4M Cmono is full range unless tagged limited; an FFV1 gray stream without a range is full range."""
    import av

    from rdopt.data.video import open_video, read_frames

    g = gray_levels()
    full = read_frames(write_y4m(tmp_path / "a.y4m", "mono", [(y,) for y in g]))
    assert np.array_equal(full, np.repeat(np.stack(g)[..., None], 3, axis=3))
    limited = read_frames(write_y4m(tmp_path / "b.y4m", "mono", [(y,) for y in g], " XCOLORRANGE=LIMITED"))
    want = np.clip(np.rint((np.stack(g).astype(np.float64) - 16) * 255 / 219), 0, 255).astype(np.uint8)
    assert np.array_equal(limited[..., 0], want) and (limited[..., 0] == limited[..., 2]).all()
    mkv = tmp_path / "g.mkv"
    with av.open(str(mkv), "w") as c:
        s = c.add_stream("ffv1", rate=25)
        s.width, s.height, s.pix_fmt = W, H, "gray"
        for i, y in enumerate(g):
            fr = av.VideoFrame.from_ndarray(y, format="gray")
            fr.pts = i
            for pkt in s.encode(fr):
                c.mux(pkt)
        for pkt in s.encode(None):
            c.mux(pkt)
    with open_video(mkv) as r:
        assert r.info.full_range
    assert np.array_equal(read_frames(mkv), full)
