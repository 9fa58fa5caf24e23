"""`rdopt encode / decode / info` end to end on small images with the tiny model."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import GOLDEN, one_error_line
from rdopt.metrics.quality import psnr


def encode(cli, src, out, ckpt, *extra):
    return cli("encode", src, "-o", out, "--checkpoint", ckpt, "--json", *extra)


def test_round_trip_reports_what_decoding_gives(cli, png, tmp_path, tiny_checkpoint):
    src = png(40, 48)
    rdo = tmp_path / "x.rdo"
    code, out, err = encode(cli, src, rdo, tiny_checkpoint)
    assert code == 0, err
    stats = json.loads(out)
    assert stats["file_bytes"] == rdo.stat().st_size
    assert stats["bpp"] == pytest.approx(8 * rdo.stat().st_size / (40 * 48))
    assert stats["bpp_estimated"] > 0 and stats["ms_ssim"] is None  # too small for MS-SSIM
    dec = tmp_path / "x.png"
    code, _, err = cli("decode", rdo, "-o", dec, "--checkpoint", tiny_checkpoint)
    assert code == 0, err
    a, b = np.asarray(Image.open(src).convert("RGB")), np.asarray(Image.open(dec))
    assert b.shape == a.shape
    assert psnr(b, a) == pytest.approx(stats["psnr"], abs=1e-9)
    code, out, _ = cli("info", rdo, "--json")
    info = json.loads(out)
    assert code == 0 and info["width"] == 48 and info["height"] == 40 and info["model"] == "rdopt-msh-custom"


def test_golden_bitstream(cli, tmp_path, tiny_checkpoint):
    """A fixed model and image give a fixed bitstream (format v2, ``tiny_v2.rdo``) whose entropy-coded
    payload is byte-identical to the golden v1 file's (``tiny.rdo``, written before v2), and both golden
    files decode to the golden image."""
    from rdopt.coding.container import unpack

    rdo = tmp_path / "g.rdo"
    code, _, err = encode(cli, GOLDEN / "input.png", rdo, tiny_checkpoint)
    assert code == 0, err
    assert rdo.read_bytes() == (GOLDEN / "tiny_v2.rdo").read_bytes()
    v1, v2 = unpack((GOLDEN / "tiny.rdo").read_bytes()), unpack(rdo.read_bytes())
    assert (v1.version, v2.version) == (1, 2)
    assert v2.strings == v1.strings and v2.header == v1.header
    for golden in ("tiny.rdo", "tiny_v2.rdo"):
        dec = tmp_path / f"{golden}.png"
        assert cli("decode", GOLDEN / golden, "-o", dec, "--checkpoint", tiny_checkpoint)[0] == 0
        got, want = np.asarray(Image.open(dec)).astype(int), np.asarray(Image.open(GOLDEN / "decoded.png")).astype(int)
        assert np.abs(got - want).max() <= 1 and (got != want).mean() < 1e-3


def test_stock_compressai_decoder_reads_rdo_payload(tmp_path, tiny_model, png):
    from rdopt.api.image import decode_bytes, encode_image
    from rdopt.coding.container import unpack
    from rdopt.data.images import load_image

    data, _, pixels, _ = encode_image(tiny_model, load_image(png(70, 90)))
    f = unpack(data)
    stock = tiny_model.net.decompress([[f.strings[0]], [f.strings[1]]], [2, 2])  # 128×128 padded → z 2×2
    x = stock["x_hat"][..., :70, :90]
    stock_pixels = x[0].mul(255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    assert np.array_equal(stock_pixels, pixels)
    assert np.array_equal(decode_bytes(data, tiny_model)[1], pixels)


@pytest.mark.parametrize("h,w", [(1, 1), (7, 130), (65, 33), (64, 64)])
def test_any_size_is_padded_and_cropped(cli, png, tmp_path, tiny_checkpoint, h, w):
    rdo, dec = tmp_path / "s.rdo", tmp_path / "s.png"
    assert encode(cli, png(h, w), rdo, tiny_checkpoint)[0] == 0
    assert cli("decode", rdo, "-o", dec, "--checkpoint", tiny_checkpoint)[0] == 0
    assert Image.open(dec).size == (w, h)


def test_grayscale_rgba_and_16bit_inputs(cli, png, tmp_path, tiny_checkpoint):
    # grayscale in -> grayscale out
    rdo, dec = tmp_path / "g.rdo", tmp_path / "g.png"
    assert encode(cli, png(32, 40, mode="L"), rdo, tiny_checkpoint)[0] == 0
    assert cli("decode", rdo, "-o", dec, "--checkpoint", tiny_checkpoint)[0] == 0
    assert Image.open(dec).mode == "L"
    # RGBA: alpha dropped with a note, RGB out
    code, _, err = encode(cli, png(32, 40, mode="RGBA"), rdo, tiny_checkpoint)
    assert code == 0 and "alpha channel was dropped" in err
    assert cli("decode", rdo, "-o", dec, "--checkpoint", tiny_checkpoint)[0] == 0
    assert Image.open(dec).mode == "RGB"
    # 16-bit grayscale PNG -> scaled to 8 bits
    a16 = (np.arange(32 * 40, dtype=np.uint16).reshape(32, 40) * 50).astype(np.uint16)
    p16 = tmp_path / "g16.png"
    Image.fromarray(a16).save(p16)
    assert Image.open(p16).mode.startswith("I;16")
    code, out, err = encode(cli, p16, rdo, tiny_checkpoint)
    assert code == 0, err
    assert cli("decode", rdo, "-o", dec, "--checkpoint", tiny_checkpoint)[0] == 0
    assert Image.open(dec).mode == "L"
    # JPEG input
    jpg = tmp_path / "in.jpg"
    Image.open(png(32, 40)).save(jpg, quality=90)
    assert encode(cli, jpg, rdo, tiny_checkpoint)[0] == 0


def test_input_errors_are_one_line_and_leave_no_output(cli, tmp_path, png, tiny_checkpoint):
    out = tmp_path / "o.rdo"
    one_error_line(encode(cli, tmp_path / "missing.png", out, tiny_checkpoint), "no such file")
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    one_error_line(encode(cli, empty, out, tiny_checkpoint), "empty file")
    text = tmp_path / "text.png"
    text.write_text("hello, not an image\n")
    one_error_line(encode(cli, text, out, tiny_checkpoint), "not an image")
    good = png(64, 64).read_bytes()
    trunc = tmp_path / "trunc.png"
    trunc.write_bytes(good[: len(good) // 2])
    one_error_line(encode(cli, trunc, out, tiny_checkpoint), "cannot decode image")
    one_error_line(encode(cli, tmp_path, out, tiny_checkpoint), "is a directory")
    one_error_line(cli("encode", png(8, 8), "-o", tmp_path / "nodir" / "o.rdo"), "output directory does not exist")
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir() if p.suffix == ".tmp"] == []


def test_bitstream_errors_are_one_line_and_leave_no_output(cli, tmp_path, png, tiny_checkpoint):
    rdo = tmp_path / "x.rdo"
    assert encode(cli, png(40, 48), rdo, tiny_checkpoint)[0] == 0
    data = rdo.read_bytes()
    dec = tmp_path / "d.png"
    bad = tmp_path / "bad.rdo"
    bad.write_bytes(data[:-10])
    one_error_line(cli("decode", bad, "-o", dec, "--checkpoint", tiny_checkpoint), "truncated")
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 0x40
    bad.write_bytes(bytes(flipped))
    one_error_line(cli("decode", bad, "-o", dec, "--checkpoint", tiny_checkpoint), "checksum")
    bad.write_bytes(b"GIF89a" + data[6:])
    one_error_line(cli("decode", bad, "-o", dec, "--checkpoint", tiny_checkpoint), "not an rdopt bitstream")
    one_error_line(cli("info", bad), "not an rdopt bitstream")
    one_error_line(cli("decode", tmp_path / "nope.rdo", "-o", dec), "no such file")
    # the right format but other weights
    other = tmp_path / "other.pt"
    sd = torch.load(tiny_checkpoint, weights_only=True)
    sd["g_s.0.weight"] = sd["g_s.0.weight"] * 1.01
    torch.save(sd, other)
    one_error_line(cli("decode", rdo, "-o", dec, "--checkpoint", other), "other weights")
    # a custom-model stream without its checkpoint
    one_error_line(cli("decode", rdo, "-o", dec), "pass its --checkpoint")
    one_error_line(cli("decode", rdo, "-o", tmp_path / "d.jpg", "--checkpoint", tiny_checkpoint), "unsupported output extension")
    assert not dec.exists() and not (tmp_path / "d.jpg").exists()


def test_argument_errors_are_one_line(cli, png, tmp_path, tiny_checkpoint, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty-hub"))
    src, out = png(16, 16), tmp_path / "o.rdo"
    one_error_line(cli("encode", src, "-o", out, "--method", "bogus"), "invalid choice")
    one_error_line(cli("encode", src, "-o", out, "--steps", "-5"), "must be > 0")
    one_error_line(cli("encode", src, "-o", out, "--lr", "nan"), "finite number")
    one_error_line(cli("encode", src, "-o", out, "--method", "sga", "--schedule", "budget", "--hold", "1.5",
                      "--checkpoint", tiny_checkpoint), "0 <= hold < 1")
    one_error_line(cli("encode", src, "-o", out, "--quality", "9"), "invalid choice")
    one_error_line(cli("encode", src, "-o", out, "--quality", "8"), "qualities 2-6")
    one_error_line(cli("encode", src, "-o", out, "--model", "mbt2018-mean", "--quality", "3"), "weights not available offline")
    assert not out.exists()


def test_console_script_exit_status(tmp_path):
    """The installed entry point: non-zero exit and one line on stderr."""
    r = subprocess.run([sys.executable, "-m", "rdopt", "decode", str(tmp_path / "nope.rdo"), "-o", str(tmp_path / "x.png")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [f"rdopt: error: no such file: {tmp_path / 'nope.rdo'}"]
