"""`rdopt encode / decode / info` on video (.rdov GoP bitstreams), end to end with a tiny random-weight
P-frame codec (a `--checkpoint` written by `save_shipped`; the I-frame is the embedded image model).
5 frames of 90×60 (padded to 128×64), GoP 3: GoPs of 3 and 2 frames."""

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rdopt.coding.container import BitstreamError
from rdopt.metrics.quality import psnr
from video_fixtures import moving_clip, tiny_video_checkpoint
from conftest import one_error_line

SRC = Path(__file__).resolve().parents[2] / "src"


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from rdopt.api.video import encode_video
    from rdopt.api.video import load_video_codec
    from rdopt.data.video import read_frames, write_video

    d = tmp_path_factory.mktemp("video")
    ckpt = tiny_video_checkpoint(d / "p.pt")
    other = tiny_video_checkpoint(d / "other.pt", seed=1)
    clip = d / "clip.y4m"
    write_video(clip, moving_clip(5, 60, 90))
    codec = load_video_codec(checkpoint=ckpt)
    frames = {}
    stats = encode_video(codec, clip, d / "api.rdov", gop=3, progress=False,
                         on_frame=lambda i, rgb: frames.__setitem__(i, rgb))
    return {"dir": d, "ckpt": ckpt, "other": other, "clip": clip, "codec": codec, "stats": stats, "frames": frames,
            "source": read_frames(clip), "data": (d / "api.rdov").read_bytes()}


def _leftovers(d: Path) -> list[str]:
    return [p.name for p in d.iterdir() if p.name.startswith(".") or p.name.endswith(".tmp")]


def test_cli_encode_reports_per_frame_real_and_estimated_bits(cli, setup, tmp_path):
    out = tmp_path / "c.rdov"
    code, text, err = cli("encode", setup["clip"], "-o", out, "--gop", "3", "--checkpoint", setup["ckpt"], "--json")
    assert code == 0, err
    s = json.loads(text)
    assert out.read_bytes() == setup["data"]  # the CLI and the API write the same (deterministic) file
    assert s["file_bytes"] == out.stat().st_size and s["frames"] == 5 and s["gop"] == 3
    assert (s["width"], s["height"]) == (90, 60) and s["model"] == "rdopt-video-custom" and s["method"] == "amortized"
    assert s["matrix"] == "709" and s["fps"] == "25" and not s["interrupted"]
    assert s["bpp"] == pytest.approx(8 * s["file_bytes"] / (5 * 60 * 90))
    assert s["bits_estimated"] > 0 and s["bpp_estimated"] == pytest.approx(s["bits_estimated"] / (5 * 60 * 90))
    rows = s["frame_stats"]
    assert [r["index"] for r in rows] == [0, 1, 2, 3, 4] and [r["type"] for r in rows] == list("IPPIP")
    assert [r["gop"] for r in rows] == [0, 0, 0, 1, 1]
    for r in rows:
        assert r["bits"] == 8 * r["bytes"] == 8 * sum(r["stream_bytes"].values())
        assert r["bits_estimated"] == pytest.approx(sum(r["bits_estimated_per_latent"].values()))
        assert set(r["bits_estimated_per_latent"]) == set(r["stream_bytes"])
        assert np.isfinite(r["psnr"]) and r["bpp"] == pytest.approx(r["bits"] / (60 * 90))
    skip = rows[1]["skip"]  # the random-weight codec's P-frames are often better skipped (skip mode)
    assert set(rows[1]["stream_bytes"]) == ({"w_1", "z_w_1"} | ({"y_1", "z_y_1"} if skip != "frame" else set())
                                            | ({"skip_1"} if skip else set()))
    gops = s["gops"]
    assert [g["frames"] for g in gops] == [3, 2] and [g["first_frame"] for g in gops] == [0, 3]
    assert s["header_bytes"] + sum(g["chunk_bytes"] for g in gops) == s["file_bytes"]
    assert sum(g["payload_bytes"] for g in gops) == sum(r["bytes"] for r in rows)
    assert s["psnr"] == pytest.approx(np.mean([r["psnr"] for r in rows]))
    # the text report: one row per frame
    code, text, err = cli("encode", setup["clip"], "-o", tmp_path / "t.rdov", "--gop", "3", "--checkpoint",
                          setup["ckpt"], "--quiet")
    assert code == 0, err
    assert "estimated" in text and sum(1 for l in text.splitlines() if l.split()[:3] in (["0", "0", "I"], ["4", "1", "P"])) == 2


def test_fresh_process_decode_reproduces_the_frames_the_encoder_reported(setup, tmp_path):
    out = tmp_path / "frames"
    env = dict(os.environ, PYTHONPATH=str(SRC), OMP_NUM_THREADS="1")
    r = subprocess.run([sys.executable, "-m", "rdopt", "decode", str(setup["dir"] / "api.rdov"), "-o", str(out),
                        "--checkpoint", str(setup["ckpt"])], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    files = sorted(out.iterdir())
    assert [p.name for p in files] == [f"frame_{i:05d}.png" for i in range(1, 6)]
    for i, p in enumerate(files):
        got = np.asarray(Image.open(p))
        assert np.array_equal(got, setup["frames"][i])  # bit-exact: what the encoder measured
        assert psnr(got, setup["source"][i]) == pytest.approx(setup["stats"].frame_stats[i].psnr, abs=1e-6)


def test_decode_to_y4m_and_the_api_stream(cli, setup, tmp_path):
    from rdopt.api.video import decode_video
    from rdopt.data.video import read_frames

    y4m = tmp_path / "d.y4m"
    code, text, err = cli("decode", setup["dir"] / "api.rdov", "-o", y4m, "--checkpoint", setup["ckpt"])
    assert code == 0, err
    assert "decoded 5 frames" in text
    back = read_frames(y4m)
    assert back.shape == (5, 60, 90, 3)
    assert psnr(back[0], setup["frames"][0]) > 35  # 4:2:0 of the decoded frame, same matrix
    dv = decode_video(setup["data"], codec=setup["codec"])
    sizes = [len(g) for g in dv.gops()]
    assert sizes == [3, 2] and dv.header.frames == 5


def test_info_shows_one_row_per_frame(cli, setup):
    rdov = setup["dir"] / "api.rdov"
    code, text, err = cli("info", rdov)
    assert code == 0, err
    rows = [l.split() for l in text.splitlines() if l.split()[:1] and l.split()[0].isdigit() and len(l.split()) > 4]
    assert [r[0] for r in rows] == ["0", "1", "2", "3", "4"] and [r[2] for r in rows] == list("IPPIP")
    assert "motion" in text and ("residual-hyper" in text or "skip" in text)  # P-frames skipped whole have no residual
    code, text, _ = cli("info", rdov, "--json")
    info = json.loads(text)
    assert info["frames"] == 5 and info["gop"] == 3 and info["model"] == "rdopt-video-custom"
    assert info["compact_frames"] and "compact_frames  True" in cli("info", rdov)[1]
    assert [f["frame"] for f in info["frame_table"]] == [0, 1, 2, 3, 4]
    assert info["file_bytes"] == len(setup["data"])
    want = [f.bytes for f in setup["stats"].frame_stats]
    assert [f["bytes"] for f in info["frame_table"]] == want


def test_wrong_model_and_missing_checkpoint_are_clear_errors(cli, setup, tmp_path):
    rdov = setup["dir"] / "api.rdov"
    out = tmp_path / "o"
    one_error_line(cli("decode", rdov, "-o", out, "--checkpoint", setup["other"]), "other weights")
    one_error_line(cli("decode", rdov, "-o", out), "pass its --checkpoint")
    from rdopt.api.video import decode_video
    from rdopt.api.video import load_video_codec

    with pytest.raises(BitstreamError, match="other weights"):
        decode_video(setup["data"], codec=load_video_codec(checkpoint=setup["other"]))
    assert not out.exists() and _leftovers(tmp_path) == []


def test_every_truncation_and_bit_flip_of_an_encoded_stream_is_detected(setup):
    from rdopt.coding.rdov import VideoBitstreamReader

    data = setup["data"]

    def read(b):
        r = VideoBitstreamReader(b)
        list(r.gops())

    for cut in range(len(data)):
        with pytest.raises(BitstreamError):
            read(data[:cut])
    rng = random.Random(1)
    for pos in range(len(data)):
        bad = bytearray(data)
        bad[pos] ^= 1 << rng.randrange(8)
        with pytest.raises(BitstreamError):
            read(bytes(bad))


def test_corrupt_streams_through_the_cli_are_one_line_and_write_nothing(cli, setup, tmp_path):
    from rdopt.coding.rdov import read_header

    import io

    data = setup["data"]
    header_len = io.BytesIO(data)
    read_header(header_len)
    h = header_len.tell()
    g0 = setup["stats"].gops[0].chunk_bytes
    bad = tmp_path / "bad.rdov"
    out = tmp_path / "out"
    for cut, what in ((3, "truncated"), (h - 2, "truncated"), (h + 10, "truncated"), (h + g0, "ends after 1 of 2"),
                      (len(data) - 1, "truncated")):
        bad.write_bytes(data[:cut])
        one_error_line(cli("decode", bad, "-o", out, "--checkpoint", setup["ckpt"]), what)
        one_error_line(cli("info", bad), what)
    for pos, what in ((1, "bad magic"), (h - 6, "header checksum"), (h + 20, "GoP 0 checksum"),
                      (h + g0 + 30, "GoP 1 checksum")):
        b = bytearray(data)
        b[pos] ^= 0x10
        bad.write_bytes(bytes(b))
        one_error_line(cli("decode", bad, "-o", out, "--checkpoint", setup["ckpt"]), what)
    # a later GoP is corrupt: the first was decoded, but no output appears
    one_error_line(cli("decode", bad, "-o", tmp_path / "out.y4m", "--checkpoint", setup["ckpt"]), "GoP 1 checksum")
    assert not out.exists() and not (tmp_path / "out.y4m").exists()
    assert _leftovers(tmp_path) == []


def test_valid_checksums_but_a_dishonest_structure_are_refused(setup):
    from dataclasses import replace

    from rdopt.api.video import decode_video_frames
    from rdopt.coding.container import Frame, Stream
    from rdopt.coding.rdov import GopChunk, pack_video, unpack_video

    h, gops = unpack_video(setup["data"])
    codec = setup["codec"]
    assert h.layout is not None  # the encoder writes compact frame chunks

    def decode(header, chunks, compact=False):  # named frame chunks hold any list of streams
        return decode_video_frames(pack_video(header if compact else replace(header, layout=None), chunks), codec=codec)

    g0 = gops[0]
    # compact chunks hold subsets of the layout only, but a subset can still be dishonest: a P-frame without motion
    p1 = g0.frames[1]
    no_motion = GopChunk(0, 0, (g0.frames[0], Frame("P", p1.streams[2:4])) + g0.frames[2:])
    with pytest.raises(BitstreamError, match="frame 1"):
        decode(h, [no_motion, gops[1]], compact=True)
    no_hyper = GopChunk(0, 0, (Frame("I", g0.frames[0].streams[:1]),) + g0.frames[1:])
    with pytest.raises(BitstreamError):
        decode(h, [no_hyper, gops[1]], compact=True)
    # a layout other than the codec's (here with an unused B-frame entry) is refused: one file per content
    from rdopt.coding.rdov import FrameLayout

    other = FrameLayout(h.layout.types + (("B", (("latent", "y"),)),))
    with pytest.raises(BitstreamError, match="stream layout is not that of"):
        decode(replace(h, layout=other), gops, compact=True)
    swapped = GopChunk(0, 0, (Frame("P", g0.frames[0].streams),) + g0.frames[1:])
    with pytest.raises(BitstreamError, match="frame 0 of a GoP is P"):
        decode(h, [swapped, gops[1]])
    renamed = GopChunk(0, 0, (Frame("I", (Stream("y_0", "latent", g0.frames[0].streams[0].data),
                                          Stream("z_9", "hyper", b"x"))),) + g0.frames[1:])
    with pytest.raises(BitstreamError, match="has streams y_0, z_9"):
        decode(h, [renamed, gops[1]])
    wrong_kind = GopChunk(0, 0, (Frame("I", (replace(g0.frames[0].streams[0], kind="residual"),
                                             g0.frames[0].streams[1])),) + g0.frames[1:])
    with pytest.raises(BitstreamError, match="kind"):
        decode(h, [wrong_kind, gops[1]])
    # a header that claims a far larger frame than the streams can hold: refused before entropy decoding
    with pytest.raises(BitstreamError, match="needs at least"):
        decode(replace(h, width=4000, height=3000), gops)


def test_interrupt_keeps_the_finished_gops_and_allocate_hook(setup, tmp_path):
    from rdopt.api.video import EncodeInterrupted, amortized, decode_video_frames, encode_video

    calls = []

    def allocate(gop_codec, x, height, width):
        calls.append((tuple(x.shape), height, width, gop_codec.frames))
        if len(calls) == 2:
            raise KeyboardInterrupt
        return amortized(gop_codec, x, height, width)

    out = tmp_path / "c.rdov"
    with pytest.raises(EncodeInterrupted) as e:
        encode_video(setup["codec"], setup["clip"], out, gop=3, allocate=allocate, progress=False)
    assert calls[0] == ((1, 3, 3, 64, 128), 60, 90, 3)
    s = e.value.stats
    assert s.interrupted and s.frames == 3 and len(s.gops) == 1 and s.file_bytes == out.stat().st_size
    frames = decode_video_frames(out.read_bytes(), codec=setup["codec"])
    assert len(frames) == 3 and all(np.array_equal(frames[i], setup["frames"][i]) for i in range(3))
    # interrupted before any GoP was finished: nothing is written
    calls.clear()
    out2 = tmp_path / "d.rdov"

    def stop_at_once(*a):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt) as e2:
        encode_video(setup["codec"], setup["clip"], out2, gop=3, allocate=stop_at_once, progress=False)
    assert not isinstance(e2.value, EncodeInterrupted)
    assert not out2.exists() and _leftovers(tmp_path) == []


def test_video_argument_and_input_errors(cli, setup, tmp_path, png):
    out = tmp_path / "o.rdov"
    ck = setup["ckpt"]
    one_error_line(cli("encode", setup["clip"], "-o", out, "--method", "sga", "--checkpoint", ck), "is an image method")
    one_error_line(cli("encode", setup["clip"], "-o", out, "--steps-p", "3", "--checkpoint", ck),
                  "only applies to a bit-allocation method")
    one_error_line(cli("encode", setup["clip"], "-o", out, "--method", "sequential", "--steps", "3", "--checkpoint", ck),
                  "--steps-i/--steps-p")
    one_error_line(cli("encode", setup["clip"], "-o", out, "--method", "exact", "--checkpoint", ck, "--quiet"),
                  "refused for a GoP of 10 frames")
    one_error_line(cli("encode", setup["clip"], "-o", out, "--method", "exact", "--gop", "2", "--steps-i", "5",
                       "--checkpoint", ck), "--method exact does not use --steps-i (it reads --exact-steps, --exact-lr)")
    one_error_line(cli("encode", setup["clip"], "-o", out, "--method", "sequential", "--window", "3", "--checkpoint", ck),
                  "--method sequential does not use --window")
    one_error_line(cli("encode", setup["clip"], "-o", out, "--method", "oeu", "--lr", "0.1", "--checkpoint", ck),
                  "--method oeu does not use --lr")
    one_error_line(cli("encode", png(16, 16), "-o", tmp_path / "i.rdo", "--method", "bao"), "GoP bit-allocation method")
    one_error_line(cli("encode", png(16, 16), "-o", tmp_path / "i.rdo", "--latents", "y"), "--latents apply to video")
    one_error_line(cli("encode", setup["clip"], "-o", out, "--quality", "6"), "--quality 1-4")
    one_error_line(cli("encode", setup["clip"], "-o", out, "--gop", "300", "--checkpoint", ck), "at most 255")
    one_error_line(cli("encode", png(16, 16), "-o", tmp_path / "i.rdo", "--gop", "3"), "--gop apply to video inputs")
    one_error_line(cli("encode", setup["clip"], "-o", out, "--frames", "9", "--checkpoint", ck), "only 5 there")
    trunc = tmp_path / "t.y4m"
    trunc.write_bytes(setup["clip"].read_bytes()[:-100])
    one_error_line(cli("encode", trunc, "-o", out, "--checkpoint", ck, "--quiet"), "truncated")
    one_error_line(cli("decode", setup["dir"] / "api.rdov", "-o", tmp_path / "x.jpg", "--checkpoint", ck),
                  "unsupported video output")
    assert not out.exists() and _leftovers(tmp_path) == []
    # --start / --frames select frames; a PNG-folder input and the .rdov suffix pick the video form
    folder = tmp_path / "pngs"
    folder.mkdir()
    for i, f in enumerate(moving_clip(3, 60, 90)):
        Image.fromarray(f).save(folder / f"im{i + 1}.png")
    code, text, err = cli("encode", folder, "-o", out, "--start", "1", "--frames", "2", "--checkpoint", ck, "--json")
    assert code == 0, err
    s = json.loads(text)
    assert s["frames"] == 2 and s["gop"] == 10 and [f["type"] for f in s["frame_stats"]] == ["I", "P"]
    assert s["matrix"] == "none"
    # raw .yuv needs --size; --matrix is recorded for YUV sources
    from rdopt.data.video import write_video

    yuv = tmp_path / "clip.yuv"
    write_video(yuv, moving_clip(2, 60, 90))
    one_error_line(cli("encode", yuv, "-o", tmp_path / "y.rdov", "--checkpoint", ck), "needs its size")
    code, text, err = cli("encode", yuv, "-o", tmp_path / "y.rdov", "--size", "90x60", "--matrix", "601",
                          "--checkpoint", ck, "--json")
    assert code == 0, err
    s = json.loads(text)
    assert s["frames"] == 2 and s["matrix"] == "601" and (s["width"], s["height"]) == (90, 60)


def test_a_header_claiming_a_huge_video_is_refused_before_allocating(cli, setup, tmp_path, monkeypatch):
    from dataclasses import replace

    from rdopt.coding.rdov import pack_header, unpack_video

    h, gops = unpack_video(setup["data"])
    bad = tmp_path / "huge.rdov"
    bad.write_bytes(pack_header(replace(h, width=16384, height=16384, gop=255, frames=100000)))
    monkeypatch.setenv("RDOPT_MEMORY_LIMIT", "1G")
    one_error_line(cli("decode", bad, "-o", tmp_path / "o.y4m", "--checkpoint", setup["ckpt"]), "needs about")
    one_error_line(cli("info", bad), "ends after 0 of 393 GoPs")
    assert not (tmp_path / "o.y4m").exists()


def test_ctrl_c_through_the_cli_keeps_the_finished_gops(cli, setup, tmp_path, monkeypatch):
    import rdopt.api.video as video_api

    calls = []
    original = video_api.amortized

    def interrupt_second(*a):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return original(*a)

    monkeypatch.setattr(video_api, "amortized", interrupt_second)
    out = tmp_path / "c.rdov"
    code, text, err = cli("encode", setup["clip"], "-o", out, "--gop", "3", "--checkpoint", setup["ckpt"], "--json")
    assert code == 130 and "wrote the 3 finished frames (1 GoP)" in err
    s = json.loads(text)
    assert s["interrupted"] and s["frames"] == 3 and s["file_bytes"] == out.stat().st_size
    code, text, _ = cli("info", out, "--json")
    assert code == 0 and json.loads(text)["frames"] == 3
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize("method", ["sequential", "bao", "windowed", "lambda-domain", "oeu"])
def test_bit_allocation_bitstreams_decode_in_a_fresh_process_to_the_reported_frames(cli, setup, tmp_path, method):
    """Every GoP bit-allocation method writes a stream the unchanged decoder reads, in a fresh process, to
    exactly the frames the encoder reported."""
    out = tmp_path / f"{method}.rdov"
    budget = ["--oeu-steps", "2"] if method == "oeu" else ["--steps-i", "6", "--steps-p", "3"]
    code, text, err = cli("encode", setup["clip"], "-o", out, "--gop", "3", "--frames", "3", "--checkpoint",
                          setup["ckpt"], "--method", method, *budget, "--json")
    assert code == 0, err
    s = json.loads(text)
    assert s["method"] == method and s["frames"] == 3
    frames_dir = tmp_path / "dec"
    env = dict(os.environ, PYTHONPATH=str(SRC), OMP_NUM_THREADS="1")
    r = subprocess.run([sys.executable, "-m", "rdopt", "decode", str(out), "-o", str(frames_dir), "--checkpoint",
                        str(setup["ckpt"])], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    for i, p in enumerate(sorted(frames_dir.iterdir())):
        got = np.asarray(Image.open(p))
        assert psnr(got, setup["source"][i]) == pytest.approx(s["frame_stats"][i]["psnr"], abs=1e-6)
