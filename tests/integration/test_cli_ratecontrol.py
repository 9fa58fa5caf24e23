"""`rdopt encode` with --target-size / --target-bpp, --roi, --distortion and several inputs."""

import json

import numpy as np
import pytest
from PIL import Image

from conftest import GOLDEN, pattern_image, one_error_line

CKPT = GOLDEN / "tiny.pt"


def encode(cli, *args):
    return cli("encode", *args, "--checkpoint", CKPT)


@pytest.fixture
def files(tmp_path):
    def img(name, h=64, w=80, seed=0):
        p = tmp_path / name
        Image.fromarray(pattern_image(h, w, seed)).save(p)
        return p

    def mask(name, h=64, w=80, box=(8, 40, 16, 48), value=255):
        m = np.zeros((h, w), np.uint8)
        m[box[0]:box[1], box[2]:box[3]] = value
        p = tmp_path / name
        Image.fromarray(m).save(p)
        return p

    return img, mask


def _decodes(cli, rdo, tmp_path, size):
    out = tmp_path / (rdo.stem + ".dec.png")
    code, _, err = cli("decode", rdo, "-o", out, "--checkpoint", CKPT)
    assert code == 0, err
    assert Image.open(out).size == size
    return np.asarray(Image.open(out))


def test_target_size_and_bpp(cli, files, tmp_path):
    img, _ = files
    src = img("a.png")
    plain = tmp_path / "plain.rdo"
    code, out, err = encode(cli, src, "-o", plain, "--method", "sga", "--steps", "40", "--json")
    assert code == 0, err
    n0 = json.loads(out)["file_bytes"]
    for args in (["--target-size", str(n0)], ["--target-size", f"{n0 / 1000}kB"],
                 ["--target-bpp", str(8 * n0 / (64 * 80))]):
        rdo = tmp_path / "t.rdo"
        code, out, err = encode(cli, src, "-o", rdo, "--steps", "40", "--json", *args)  # sga by default
        assert code == 0, err
        s = json.loads(out)
        rc = s["rate_control"]
        assert s["method"] == "sga" and rc["target_bytes"] == n0 and s["file_bytes"] == rdo.stat().st_size
        if rc["in_range"]:
            assert s["file_bytes"] <= n0
        _decodes(cli, rdo, tmp_path, (80, 64))
    # the text report says what happened
    code, out, err = encode(cli, src, "-o", tmp_path / "t2.rdo", "--steps", "20", "--target-size", "10B")
    assert code == 0, err
    assert "target      10 bytes: missed" in out and "below the smallest file" in out


def test_roi_and_distortion_outputs_decode(cli, files, tmp_path):
    img, mask = files
    src = img("a.png")
    plain, ones = tmp_path / "p.rdo", tmp_path / "o.rdo"
    assert encode(cli, src, "-o", plain, "--method", "sga", "--steps", "30", "--quiet")[0] == 0
    # a grey-level mask drawn at twice the size, weight 1: the plain file, bit for bit
    big = mask("big.png", 128, 160, (16, 80, 32, 96), 200)
    code, _, err = encode(cli, src, "-o", ones, "--roi", big, "--roi-weight", "1", "--steps", "30", "--quiet")
    assert code == 0, err
    assert "ROI mask resized from 160×128" in err
    assert ones.read_bytes() == plain.read_bytes()
    roi = tmp_path / "r.rdo"
    code, out, err = encode(cli, src, "-o", roi, "--roi", mask("m.png"), "--roi-weight", "20", "--steps", "30", "--json")
    assert code == 0, err
    assert json.loads(out)["weighted"] and roi.read_bytes() != plain.read_bytes()
    _decodes(cli, roi, tmp_path, (80, 64))
    for d in ("ms-ssim", "mix:0.3"):
        out_path = tmp_path / f"{d.replace(':', '')}.rdo"
        code, out, err = encode(cli, src, "-o", out_path, "--distortion", d, "--steps", "30", "--json")
        assert code == 0, err
        s = json.loads(out)
        assert s["distortion"] == d and any("3 scale(s)" in m for m in s["messages"])  # 64 px: 3 scales
        _decodes(cli, out_path, tmp_path, (80, 64))
    # every option at once
    code, out, err = encode(cli, src, "-o", tmp_path / "all.rdo", "--distortion", "mix:0.5", "--roi", mask("m2.png"),
                            "--target-size", "700", "--steps", "20", "--json")
    assert code == 0, err
    s = json.loads(out)
    assert s["weighted"] and s["distortion"] == "mix:0.5"
    assert s["file_bytes"] <= 700 or not s["rate_control"]["in_range"]


def test_batch(cli, files, tmp_path):
    img, mask = files
    a, b, c = img("a.png"), img("b.png", seed=1), img("c.png", 40, 40, seed=2)
    out = tmp_path / "out"
    out.mkdir()
    code, stdout, err = encode(cli, a, b, c, "-o", out, "--method", "sga", "--steps", "10", "--json")
    assert code == 0, err
    docs = json.loads(stdout)
    assert [d["output"] for d in docs] == [str(out / n) for n in ("a.rdo", "b.rdo", "c.rdo")]
    for d in docs:
        p = out / (d["input"].rsplit("/", 1)[-1].replace(".png", ".rdo"))
        assert p.stat().st_size == d["file_bytes"]
        _decodes(cli, p, tmp_path, (d["width"], d["height"]))
    # with a target and one mask per input (c's mask is resized: same aspect ratio)
    out2 = tmp_path / "out2"
    out2.mkdir()
    code, stdout, err = encode(cli, a, c, "-o", out2, "--target-size", "900", "--steps", "10", "--roi", mask("ma.png"),
                               "--roi", mask("mc.png", 20, 20, (0, 10, 0, 10)), "--json")
    assert code == 0, err
    docs = json.loads(stdout)
    assert len(docs) == 2 and all(d["weighted"] and d["rate_control"]["target_bytes"] == 900 for d in docs)
    # one input into a directory named with a trailing slash; without the slash the output names a file
    out4 = tmp_path / "out4"
    out4.mkdir()
    code, _, err = encode(cli, a, "-o", f"{out4}/", "--quiet")
    assert code == 0 and (out4 / "a.rdo").is_file(), err
    one_error_line(encode(cli, a, "-o", out4), "is a directory")
    # text mode: one report per file
    out3 = tmp_path / "out3"
    out3.mkdir()
    code, stdout, err = encode(cli, a, b, "-o", out3, "--quiet")
    assert code == 0, err
    assert stdout.count("file        ") == 2 and f"{a} -> {out3 / 'a.rdo'}" in stdout


def test_batch_interrupted_keeps_finished_files(cli, files, tmp_path, monkeypatch):
    import rdopt.api.image

    img, _ = files
    srcs = [img(f"{n}.png", seed=i) for i, n in enumerate("abc")]
    out = tmp_path / "out"
    out.mkdir()
    real = rdopt.api.image.encode_images
    calls = []

    def interrupt_second(*a, **k):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(rdopt.api.image, "encode_images", interrupt_second)
    code, stdout, err = encode(cli, *srcs, "-o", out, "--quiet")
    assert code == 130
    assert "kept the 1 finished file(s) of 3" in err
    assert sorted(p.name for p in out.iterdir()) == ["a.rdo"]
    _decodes(cli, out / "a.rdo", tmp_path, (80, 64))


def test_errors_are_one_line_and_write_nothing(cli, files, tmp_path):
    img, mask = files
    src, src2 = img("a.png"), img("b.png", seed=1)
    out = tmp_path / "o.rdo"
    one_error_line(encode(cli, src, "-o", out, "--target-size", "20kB", "--target-bpp", "0.5"), "not both")
    for bad in ("twenty", "-5kB", "0", "20TB", "kB"):
        one_error_line(encode(cli, src, "-o", out, f"--target-size={bad}"), "bad size")
    one_error_line(encode(cli, src, "-o", out, "--target-bpp", "0"), "must be a finite number > 0")
    one_error_line(encode(cli, src, "-o", out, "--target-bpp", "0.001"), "less than one byte")
    one_error_line(encode(cli, src, "-o", out, "--target-size", "2kB", "--lmbda", "0.01"), "exclude each other")
    one_error_line(encode(cli, src, "-o", out, "--target-size", "2kB", "--method", "amortized"), "optimizing --method")
    one_error_line(encode(cli, src, "-o", out, "--target-size", "2kB", "--keep-interrupted"), "--keep-interrupted")
    one_error_line(encode(cli, src, "-o", out, "--roi-weight", "3"), "--roi-weight needs --roi")
    one_error_line(encode(cli, src, "-o", out, "--roi", src), "colour image")
    one_error_line(encode(cli, src, "-o", out, "--roi", mask("sq.png", 40, 40)), "aspect ratios differ")
    one_error_line(encode(cli, src, "-o", out, "--roi", mask("black.png", value=0)), "marks nothing")
    one_error_line(encode(cli, src, "-o", out, "--roi", tmp_path / "none.png"), "no such file")
    one_error_line(encode(cli, src, "-o", out, "--roi", mask("m.png"), "--roi-weight", "0"), "must be a finite number > 0")
    one_error_line(encode(cli, src, "-o", out, "--distortion", "ssim"), "unknown distortion")
    one_error_line(encode(cli, src, "-o", out, "--distortion", "mix:7"), "mix:A needs a number A in 0…1")
    one_error_line(encode(cli, img("tiny.png", 8, 30), "-o", out, "--distortion", "ms-ssim"), "at least 11 pixels")
    one_error_line(encode(cli, src, "-o", tmp_path / "v.rdov", "--target-size", "2kB"), "videos take --target-kbps")
    # batch: the output must be a directory; no two inputs may write one file; --roi once or once per input
    one_error_line(encode(cli, src, src2, "-o", out), "names a directory that exists")
    d = tmp_path / "d"
    d.mkdir()
    other = tmp_path / "sub"
    other.mkdir()
    Image.fromarray(pattern_image(20, 20)).save(other / "a.png")
    one_error_line(encode(cli, src, other / "a.png", "-o", d), "would both be written")
    one_error_line(encode(cli, src, src2, img("c.png"), "-o", d, "--roi", mask("m1.png"), "--roi", mask("m2.png")),
                   "once per input (3), got 2")
    # a bad input anywhere in a batch: nothing is written
    (tmp_path / "bad.png").write_text("not an image")
    one_error_line(encode(cli, src, tmp_path / "bad.png", "-o", d), "not an image")
    one_error_line(encode(cli, src, src2, "-o", d, "--roi", mask("m3.png"), "--distortion", "ms-ssim",
                          "--roi", mask("sq2.png", 40, 40)), "aspect ratios differ")
    assert not out.exists() and list(d.iterdir()) == []
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".rdopt-")]
