"""Decoded-size limit (a small file claiming a huge image), MS-SSIM on tiny images, rate control of a clip
shorter than a GoP, and the CLI's messages (notes in ``--json``, size units, output names, misplaced options).

Every refused case: exit status 2, one line ``rdopt: error: …`` on stderr, no output file.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import rdopt
from conftest import GOLDEN, one_error_line, pattern_image

SRC = str(Path(rdopt.__file__).resolve().parents[1])  # the tree under test, not an installed copy
CKPT = GOLDEN / "tiny.pt"
SIDE = 16384


def _bomb(model) -> bytes:
    """The golden v2 file claiming 16384×16384, its streams padded to the plausibility bound (valid CRC)."""
    from rdopt.coding.container import Frame, RdoFile, Stream, pack, unpack

    f = unpack((GOLDEN / "tiny_v2.rdo").read_bytes())
    shapes = model.latent_shapes(SIDE, SIDE)
    fewest = dict(zip((s.name for s in model.latents), model.min_bits_per_symbol()))
    frames = []
    for fr in f.frames:
        streams = []
        for s in fr.streams:
            need = int((int(np.prod(shapes[s.name])) * fewest[s.name] - 32) // 8)
            streams.append(Stream(s.name, s.kind, s.data + bytes(max(0, need - len(s.data)))))
        frames.append(Frame(fr.type, streams, fr.side_info_bits))
    from dataclasses import replace

    return pack(RdoFile(replace(f.header, height=SIDE, width=SIDE), frames))


@pytest.fixture
def no_decoding(monkeypatch):
    """Fail the test if decoding gets as far as loading a model or entropy decoding."""
    import rdopt.api.image as api_image
    import rdopt.api.video as api_video

    def refuse(*a, **k):
        raise AssertionError("decoding went past the header")

    for mod, name in ((api_image, "model_for_header"), (api_image, "_decompress"), (api_image, "synthesize_uint8"),
                      (api_video, "codec_for_header"), (api_video, "decode_gop")):
        monkeypatch.setattr(mod, name, refuse)


def test_a_small_file_claiming_a_huge_image_is_refused_from_its_header(cli, tiny_model, tmp_path, monkeypatch,
                                                                        no_decoding):
    from rdopt.api.image import check_payload, coded_latents, decode_bytes
    from rdopt.coding.container import BitstreamError, unpack

    data = _bomb(tiny_model)
    assert len(data) < 24_000
    f = unpack(data)
    check_payload(f.header, coded_latents(f, tiny_model), tiny_model)  # plausible: only a size limit stops it
    bad = tmp_path / "bomb.rdo"
    bad.write_bytes(data)
    monkeypatch.setenv("RDOPT_MEMORY_LIMIT", "1T")  # the memory budget would let it through
    t = time.perf_counter()
    one_error_line(cli("decode", bad, "-o", tmp_path / "out.png", "--checkpoint", CKPT),
                   "16384×16384 image has 268435456 pixels, more than the decoding limit of 67108864")
    assert time.perf_counter() - t < 10
    # the library refuses it too, before the model is used; max_pixels= raises the limit
    with pytest.raises(BitstreamError, match="decoding limit"):
        decode_bytes(data, tiny_model)
    monkeypatch.setenv("RDOPT_MEMORY_LIMIT", "1G")
    from rdopt.data.safeio import MemoryBudgetError

    with pytest.raises(MemoryBudgetError, match="needs about"):  # past the size limit, stopped by the budget
        decode_bytes(data, tiny_model, max_pixels=SIDE * SIDE)
    one_error_line(cli("decode", bad, "-o", tmp_path / "out.png", "--checkpoint", CKPT, "--max-pixels", SIDE * SIDE),
                   "needs about")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bomb.rdo"]


def test_max_pixels_on_an_ordinary_file(cli, tmp_path):
    out = tmp_path / "x.png"
    one_error_line(cli("decode", GOLDEN / "tiny.rdo", "-o", out, "--checkpoint", CKPT, "--max-pixels", 48 * 40 - 1),
                   "48×40 image has 1920 pixels, more than the decoding limit of 1919 (--max-pixels raises it)")
    assert not out.exists()
    code, _, err = cli("decode", GOLDEN / "tiny.rdo", "-o", out, "--checkpoint", CKPT, "--max-pixels", 48 * 40)
    assert code == 0 and out.is_file(), err
    one_error_line(cli("decode", GOLDEN / "tiny.rdo", "-o", out, "--max-pixels", "0"), "--max-pixels")


def _huge_rdov() -> bytes:
    """A .rdov whose header claims 16384×16384 frames, with one GoP of one frame."""
    from rdopt.coding.container import Frame, Stream
    from rdopt.coding.rdov import GopChunk, VideoHeader, pack_video

    h = VideoHeader(model_id="rdopt-video-q1", weight_hash=bytes(8), height=SIDE, width=SIDE, frames=1, gop=1)
    frame = Frame("I", (Stream("y_0", "latent", bytes(4000)), Stream("z_0", "hyper", bytes(4000))))
    return pack_video(h, [GopChunk(0, 0, (frame,))])


def test_a_video_header_claiming_huge_frames_is_refused(cli, tmp_path, monkeypatch, no_decoding):
    bad = tmp_path / "bomb.rdov"
    bad.write_bytes(_huge_rdov())
    monkeypatch.setenv("RDOPT_MEMORY_LIMIT", "1T")
    one_error_line(cli("decode", bad, "-o", tmp_path / "out.y4m"),
                   "16384×16384 frame has 268435456 pixels, more than the decoding limit of 67108864")
    monkeypatch.setenv("RDOPT_MEMORY_LIMIT", "1G")
    one_error_line(cli("decode", bad, "-o", tmp_path / "out.y4m", "--max-pixels", SIDE * SIDE), "needs about")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bomb.rdov"]


def test_a_huge_video_header_on_standard_input_is_refused(tmp_path):
    env = dict(os.environ, PYTHONPATH=SRC, OMP_NUM_THREADS="1", RDOPT_MEMORY_LIMIT="1T")
    r = subprocess.run([sys.executable, "-m", "rdopt", "decode", "-", "-o", str(tmp_path / "out.y4m")],
                       input=_huge_rdov(), capture_output=True, env=env, timeout=120)
    err = r.stderr.decode()
    assert r.returncode == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith("rdopt: error:") and "more than the decoding limit of 67108864" in err
    assert not list(tmp_path.iterdir())


# ---------------------------------------------------------------------------------------------- MS-SSIM
def test_ms_ssim_distortion_is_refused_below_two_scales_and_null_is_explained(cli, png, tmp_path):
    tiny = png(16, 16, name="tiny.png")
    out = tmp_path / "t.rdo"
    for d in ("ms-ssim", "mix:0.5"):
        one_error_line(cli("encode", tiny, "-o", out, "--checkpoint", CKPT, "--distortion", d, "--steps", "3"),
                       f"the {d} distortion needs an image of at least 21 pixels per side")
        assert not out.exists()
    code, text, err = cli("encode", tiny, "-o", out, "--checkpoint", CKPT, "--json")
    assert code == 0, err
    s = json.loads(text)
    assert s["ms_ssim"] is None
    assert any("ms_ssim is null" in m and "161 pixels per side" in m and "16×16" in m for m in s["messages"])


# ---------------------------------------------------------------------------------------------- rate control
def test_target_kbps_on_a_clip_shorter_than_the_gop(cli, tmp_path):
    from video_fixtures import moving_clip

    from rdopt.data.video import write_video

    clip = tmp_path / "short.y4m"
    write_video(clip, moving_clip(2, 64, 64))
    out = tmp_path / "s.rdov"
    code, text, err = cli("encode", clip, "-o", out, "--gop", "10", "--target-kbps", "100", "--steps-i", "2",
                          "--steps-p", "2", "--json")
    assert code == 0, err
    d = json.loads(text)
    assert d["frames"] == 2 and len(d["rate_control"]["gops"]) == 1 and d["file_bytes"] == out.stat().st_size


# ---------------------------------------------------------------------------------------------- messages
def test_input_notes_are_in_json_messages_and_on_stderr(cli, tmp_path):
    src = tmp_path / "rot.png"
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated 90°
    Image.fromarray(pattern_image(24, 40)).convert("RGBA").save(src, exif=exif)
    code, text, err = cli("encode", src, "-o", tmp_path / "a.rdo", "--checkpoint", CKPT, "--json")
    assert code == 0, err
    messages = json.loads(text)["messages"]
    assert any("EXIF orientation 6 applied" in m for m in messages), messages
    assert any("alpha channel was dropped" in m for m in messages), messages
    code, text, err = cli("encode", src, "-o", tmp_path / "b.rdo", "--checkpoint", CKPT)
    assert code == 0, err
    assert "rdopt: note: EXIF orientation 6 applied" in err and "rdopt: note: the alpha channel was dropped" in err


def test_target_size_units(cli, png, tmp_path):
    src = png()
    for text, n in (("1GB", 10**9), ("1gib", 1024**3), ("0.5 MiB", 1024**2 // 2)):
        code, out, err = cli("encode", src, "-o", tmp_path / "t.rdo", "--checkpoint", CKPT, "--target-size", text,
                             "--steps", "5", "--json")
        assert code == 0, err
        assert json.loads(out)["rate_control"]["target_bytes"] == n
    for bad in ("1TB", "1 G B", "lots"):
        one_error_line(cli("encode", src, "-o", tmp_path / "u.rdo", "--checkpoint", CKPT, "--target-size", bad),
                       "KiB, MiB, GiB: ×1024")
    assert not (tmp_path / "u.rdo").exists()


def test_an_encode_output_named_like_an_image_or_video_is_refused(cli, png, tmp_path):
    from video_fixtures import moving_clip

    from rdopt.data.video import write_video

    src = png()
    for name in ("out.png", "out.JPG", "out.mp4"):
        one_error_line(cli("encode", src, "-o", tmp_path / name, "--checkpoint", CKPT), "name it out.rdo")
        assert not (tmp_path / name).exists()
    one_error_line(cli("encode", src, "-o", src, "--checkpoint", CKPT), "is the input file")  # said first
    clip = tmp_path / "clip.y4m"
    write_video(clip, moving_clip(2, 32, 32))
    one_error_line(cli("encode", clip, "-o", tmp_path / "v.mp4"), "name it v.rdov")
    assert not (tmp_path / "v.mp4").exists()


def test_video_decode_to_standard_output_names_every_video_output(cli, tmp_path):
    v = tmp_path / "x.rdov"
    v.write_bytes(_huge_rdov())
    code, out, err = cli("decode", v, "-o", "-")
    one_error_line((code, out, err), "a video cannot be written to standard output")
    for form in ("a folder (PNG frames)", ".y4m", ".yuv", ".mp4", ".mkv"):
        assert form in err


def test_device_after_the_subcommand_says_where_it_goes(cli, png, tmp_path):
    src = png()
    one_error_line(cli("encode", src, "-o", tmp_path / "x.rdo", "--device", "cpu"),
                   "--device goes before the subcommand: rdopt --device cpu encode")
    one_error_line(cli("decode", GOLDEN / "tiny.rdo", "-o", tmp_path / "x.png", "--device=cpu"),
                   "--device goes before the subcommand: rdopt --device cpu decode")
    # the global option keeps its value (the subcommand's hidden one sets nothing)
    one_error_line(cli("--device", "bogus", "decode", GOLDEN / "tiny.rdo", "-o", tmp_path / "x.png", "--checkpoint",
                       CKPT), "bad --device 'bogus'")
    assert not list(p for p in tmp_path.iterdir() if p.suffix in (".rdo", ".png") and p != src)
