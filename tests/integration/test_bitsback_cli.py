"""`rdopt encode --method sga-bb` / `decode --side-info-out` / `info` / `train --objective bits-back`, with the
side information recovered in a *fresh* decoding process. Tiny model (the golden checkpoint, converted)."""

import hashlib
import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from conftest import GOLDEN, pattern_image


def _rdopt(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "rdopt", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout)


def _encode(cli, src, out, *extra):
    code, o, err = cli("encode", src, "-o", out, "--method", "sga-bb", "--checkpoint", GOLDEN / "tiny.pt",
                       "--steps", "6", "--bbvi-steps", "10", "--json", *extra)
    assert code == 0, err
    return json.loads(o)


@pytest.mark.parametrize("shape,n_bytes", [((70, 130), 0), ((70, 130), 37), ((90, 70), 37), ((90, 70), 20000)])
def test_side_info_recovered_in_a_fresh_process(cli, tmp_path, shape, n_bytes):
    """Several images and side-information lengths, 0 bytes and more than the z stream can carry (the
    excess rides in the z stream: it is in the file bits and in the recovered bits)."""
    src, rdo, out, got = tmp_path / "in.png", tmp_path / "x.rdo", tmp_path / "out.png", tmp_path / "got.bin"
    Image.fromarray(pattern_image(*shape, seed=n_bytes % 7)).save(src)
    xi = np.random.default_rng(n_bytes).bytes(n_bytes)
    (tmp_path / "xi.bin").write_bytes(xi)
    stats = _encode(cli, src, rdo, "--side-info", tmp_path / "xi.bin")
    assert stats["file_bits"] == 8 * rdo.stat().st_size and stats["side_info_bits"] == 8 * n_bytes
    assert stats["net_bits"] == stats["file_bits"] - stats["side_info_bits"]
    if n_bytes == 20000:
        assert stats["z_taken_bits"] < 8 * n_bytes and stats["file_bits"] > 8 * n_bytes
    r = _rdopt("decode", rdo, "-o", out, "--checkpoint", GOLDEN / "tiny.pt", "--side-info-out", got)
    assert r.returncode == 0, r.stderr
    assert got.read_bytes() == xi
    assert f"recovered {8 * n_bytes} bits" in r.stdout and f"net {stats['net_bits']} bits" in r.stdout
    a, b = np.asarray(Image.open(src).convert("RGB")), np.asarray(Image.open(out))
    from rdopt.metrics.quality import psnr

    assert psnr(b, a) == pytest.approx(stats["psnr"], abs=1e-9)
    code, o, _ = cli("info", rdo, "--json")
    bb = json.loads(o)["bits_back"]
    assert code == 0 and bb["net_bits"] == stats["net_bits"] and bb["side_info_bits"] == 8 * n_bytes


def test_seeded_source_reports_the_net_rate(cli, tmp_path):
    src, rdo = tmp_path / "in.png", tmp_path / "x.rdo"
    Image.fromarray(pattern_image(70, 130, 5)).save(src)
    s1 = _encode(cli, src, rdo)
    assert s1["side_info_source"] == "seeded" and s1["padding_bits"] == 0
    assert s1["side_info_bits"] >= s1["z_taken_bits"] and s1["net_bits"] == s1["file_bits"] - s1["side_info_bits"]
    code, out, err = cli("decode", rdo, "-o", tmp_path / "o.png", "--checkpoint", GOLDEN / "tiny.pt")
    assert code == 0 and "checksum ok" in out


_BBVI_SCRIPT = """
import hashlib, sys, torch
sys.path.insert(0, {tests!r})
from conftest import GOLDEN, pattern_image
from rdopt.data.images import to_batch
from rdopt.infer.bitsback import reproducible_bbvi
from rdopt.infer.options import SolverOptions
from rdopt.codecs.image.bitsback import load_bitsback
torch.set_num_threads({threads})
m = load_bitsback(checkpoint=GOLDEN / "tiny.pt")
y = torch.round(m.amortize(to_batch([pattern_image(70, 130, 3)], 64))["y"]).detach()
mu, sigma = reproducible_bbvi(m, y, SolverOptions(bbvi_steps=25))
print(hashlib.sha256(mu.numpy().tobytes() + sigma.numpy().tobytes()).hexdigest())
"""


def test_reproducible_bbvi_across_processes_and_thread_counts(tmp_path):
    """Two processes, one with 1 and one with 2 PyTorch threads (pinned to 1 inside): the same bits."""
    from pathlib import Path

    tests = str(Path(__file__).resolve().parents[1])
    digests = []
    for threads in (1, 2):
        r = subprocess.run([sys.executable, "-c", _BBVI_SCRIPT.format(tests=tests, threads=threads)],
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr
        digests.append(r.stdout.strip().splitlines()[-1])
    assert len(digests[0]) == 64 and digests[0] == digests[1]


def test_cli_errors_are_clean(cli, tmp_path):
    src, rdo = tmp_path / "in.png", tmp_path / "x.rdo"
    Image.fromarray(pattern_image(40, 48)).save(src)
    _encode(cli, src, rdo, "--side-info", src)  # any file is side information (here: the PNG itself)
    data = rdo.read_bytes()
    bad = tmp_path / "bad.rdo"
    bad.write_bytes(data[:-7])
    code, _, err = cli("decode", bad, "-o", tmp_path / "o.png", "--checkpoint", GOLDEN / "tiny.pt")
    assert code != 0 and err.startswith("rdopt: error:") and len(err.strip().splitlines()) == 1
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 0x04
    bad.write_bytes(bytes(flipped))
    code, _, err = cli("decode", bad, "-o", tmp_path / "o.png", "--checkpoint", GOLDEN / "tiny.pt")
    assert code != 0 and "corrupt" in err
    code, _, err = cli("encode", src, "-o", rdo, "--side-info", src, "--checkpoint", GOLDEN / "tiny.pt")
    assert code == 2 and "--method sga-bb" in err
    code, _, err = cli("decode", rdo, "-o", tmp_path / "o.png", "--side-info-out", tmp_path / "s.bin")
    assert code != 0 and "--checkpoint" in err  # a custom-weights file names no shipped model


def test_train_bits_back_objective_and_use(cli, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    for s in range(2):
        Image.fromarray(pattern_image(80, 96, s)).save(data / f"t{s}.png")
    state, weights = tmp_path / "state.pt", tmp_path / "w.pt"
    code, out, err = cli("train", "--objective", "bits-back", "--init", GOLDEN / "tiny.pt", "--out", state, "--data",
                         data, "--crop", "64", "--batch", "2", "--quality", "3", "--threads", "1", "--steps", "3",
                         "--export", weights)
    assert code == 0, err
    log = [json.loads(line) for line in state.with_suffix(".log.jsonl").read_text().splitlines()]
    assert log[-1]["step"] == 3 and np.isfinite(log[-1]["loss"])
    src, rdo = tmp_path / "x.png", tmp_path / "x.rdo"
    Image.fromarray(pattern_image(64, 64, 9)).save(src)
    code, out, err = cli("encode", src, "-o", rdo, "--method", "sga-bb", "--checkpoint", weights, "--steps", "3",
                         "--bbvi-steps", "3", "--json")
    assert code == 0, err
    got = tmp_path / "g.bin"
    assert cli("decode", rdo, "-o", tmp_path / "y.png", "--checkpoint", weights, "--side-info-out", got)[0] == 0
    assert hashlib.sha256(got.read_bytes()).hexdigest() and 8 * len(got.read_bytes()) == json.loads(out)["side_info_bits"]


def test_shipped_bits_back_weights_round_trip(cli, tmp_path):
    """The shipped rdopt-msh-bb-q3 (no --checkpoint): encode with side information, decode in a fresh process."""
    src, rdo, got = tmp_path / "in.png", tmp_path / "x.rdo", tmp_path / "got.bin"
    Image.fromarray(pattern_image(64, 64, 4)).save(src)
    (tmp_path / "xi.bin").write_bytes(b"caption: a test pattern")
    code, out, err = cli("encode", src, "-o", rdo, "--method", "sga-bb", "--steps", "2", "--bbvi-steps", "2",
                         "--side-info", tmp_path / "xi.bin", "--json")
    assert code == 0, err
    assert json.loads(out)["model"] == "rdopt-msh-bb-q3"
    r = _rdopt("decode", rdo, "-o", tmp_path / "o.png", "--side-info-out", got)
    assert r.returncode == 0, r.stderr
    assert got.read_bytes() == b"caption: a test pattern"


def test_info_of_a_bits_back_file_needs_no_torch(cli, tmp_path):
    import os
    from pathlib import Path

    src, rdo = tmp_path / "in.png", tmp_path / "x.rdo"
    Image.fromarray(pattern_image(40, 48)).save(src)
    stats = _encode(cli, src, rdo)
    code = ("import sys; from rdopt.cli.main import main; rc = main(['info', '--json', sys.argv[1]]); "
            "assert 'torch' not in sys.modules and 'numpy' not in sys.modules, 'torch imported'; sys.exit(rc)")
    srcdir = str(Path(__file__).resolve().parents[2] / "src")
    r = subprocess.run([sys.executable, "-c", code, str(rdo)], capture_output=True, text=True,
                       env=dict(os.environ, PYTHONPATH=srcdir), timeout=120)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["bits_back"]["net_bits"] == stats["net_bits"]
