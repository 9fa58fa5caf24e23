"""Issue 20: the CLI run as a separate process over hostile and careless inputs.

Every refused case must: exit with status 2, print exactly one line ``rdopt: error: …`` on stderr and no
traceback, leave no output file (and no temporary file), and leave the input untouched. Written outputs
get the mode the umask gives, and a symbolic link as output is written through.
"""

from __future__ import annotations

import os
import signal
import stat
import struct
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import rdopt
from conftest import GOLDEN, pattern_image, refuses_new_files

SRC = str(Path(rdopt.__file__).resolve().parents[1])  # the tree under test, not an installed copy
CKPT = str(GOLDEN / "tiny.pt")


def run_cli(*args, umask: int | None = None, stdin=None, limit_as: int | None = None, env_extra=None,
            timeout: float = 300, text: bool = True):
    env = dict(os.environ, PYTHONPATH=SRC, OMP_NUM_THREADS="1")
    env.pop("RDOPT_MEMORY_LIMIT", None)
    env.update(env_extra or {})

    def pre():
        if umask is not None:
            os.umask(umask)
        if limit_as is not None:
            import resource

            resource.setrlimit(resource.RLIMIT_AS, (limit_as, limit_as))

    return subprocess.run([sys.executable, "-m", "rdopt", *map(str, args)], capture_output=True, env=env,
                          preexec_fn=pre, timeout=timeout, input=stdin, text=text)


def assert_refused(r, pattern: str, folder: Path, before: set[str]):
    err = r.stderr if isinstance(r.stderr, str) else r.stderr.decode()
    lines = [line for line in err.splitlines() if line.strip()]
    assert r.returncode == 2, (r.returncode, err)
    assert "Traceback" not in err
    assert len(lines) == 1 and lines[0].startswith("rdopt: error: "), err
    assert pattern in lines[0], lines[0]
    assert {p.name for p in folder.iterdir()} == before, "an output or temporary file was left behind"


@pytest.fixture
def photo(tmp_path) -> Path:
    p = tmp_path / "a.png"
    Image.fromarray(pattern_image(24, 40)).save(p)
    return p


def snapshot(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()}


def test_output_is_the_input_directly_or_through_links(tmp_path, photo):
    original = photo.read_bytes()
    sym = tmp_path / "sym.png"
    sym.symlink_to(photo)
    hard = tmp_path / "hard.png"
    os.link(photo, hard)
    for out in (photo, sym, hard, tmp_path / "." / "a.png"):
        before = snapshot(tmp_path)
        r = run_cli("encode", photo, "-o", out, "--checkpoint", CKPT)
        assert_refused(r, "is the input file", tmp_path, before)
        assert photo.read_bytes() == original
    rdo = tmp_path / "x.rdo"
    assert run_cli("encode", photo, "-o", rdo, "--checkpoint", CKPT).returncode == 0
    data = rdo.read_bytes()
    before = snapshot(tmp_path)
    assert_refused(run_cli("decode", rdo, "-o", rdo, "--checkpoint", CKPT), "is the input file", tmp_path, before)
    assert rdo.read_bytes() == data


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_outputs_follow_the_umask(tmp_path, photo, umask):
    rdo, png = tmp_path / "x.rdo", tmp_path / "x.png"
    assert run_cli("encode", photo, "-o", rdo, "--checkpoint", CKPT, umask=umask).returncode == 0
    assert run_cli("decode", rdo, "-o", png, "--checkpoint", CKPT, umask=umask).returncode == 0
    for p in (rdo, png):
        assert stat.S_IMODE(p.stat().st_mode) == 0o666 & ~umask, oct(p.stat().st_mode)


def test_symlinked_output_is_written_through(tmp_path, photo):
    real = tmp_path / "store" / "real.rdo"
    real.parent.mkdir()
    link = tmp_path / "link.rdo"
    link.symlink_to(real)  # dangling: the target does not exist yet
    assert run_cli("encode", photo, "-o", link, "--checkpoint", CKPT).returncode == 0
    assert link.is_symlink() and real.is_file() and real.read_bytes()[:4] == b"RDO1"
    dangling = tmp_path / "dangling.rdo"
    dangling.symlink_to(tmp_path / "missing" / "x.rdo")
    before = snapshot(tmp_path)
    assert_refused(run_cli("encode", photo, "-o", dangling, "--checkpoint", CKPT), "missing directory", tmp_path, before)


def test_directory_name_too_long_and_unwritable_outputs(tmp_path, photo):
    before = snapshot(tmp_path)
    assert_refused(run_cli("encode", photo, "-o", tmp_path, "--checkpoint", CKPT), "is a directory", tmp_path, before)
    assert_refused(run_cli("decode", GOLDEN / "tiny.rdo", "-o", tmp_path), "is a directory", tmp_path, before)
    long = tmp_path / ("n" * 300 + ".rdo")
    # --steps huge: the check must come before the optimization, or this would not finish in time
    r = run_cli("encode", photo, "-o", long, "--checkpoint", CKPT, "--method", "sga", "--steps", "1000000", timeout=120)
    assert_refused(r, "file name too long", tmp_path, before)
    assert_refused(run_cli("decode", GOLDEN / "tiny.rdo", "-o", tmp_path / ("n" * 300 + ".png")),
                   "file name too long", tmp_path, before)
    # a directory no one may write to (sysfs refuses new files even to root)
    if refuses_new_files("/sys"):
        r = run_cli("encode", photo, "-o", "/sys/rdopt-test.rdo", "--checkpoint", CKPT, "--method", "sga",
                    "--steps", "1000000", timeout=120)
        assert_refused(r, "cannot write to directory /sys", tmp_path, before)
    assert_refused(run_cli("encode", photo, "-o", tmp_path / "no" / "x.rdo", "--checkpoint", CKPT),
                   "output directory does not exist", tmp_path, before)


def _big_png(path: Path, side: int) -> None:
    # A 1-bit image compresses to a few kilobytes whatever its size.
    Image.new("1", (side, side)).save(path)


def test_images_beyond_pillows_bomb_limit_are_one_line_errors(tmp_path):
    big = tmp_path / "big.png"
    _big_png(big, 10000)  # Pillow warns above 89 Mpixels and refuses above twice that
    before = snapshot(tmp_path)
    r = run_cli("encode", big, "-o", tmp_path / "big.rdo", "--checkpoint", CKPT, env_extra={"RDOPT_MEMORY_LIMIT": "2G"})
    assert_refused(r, "encoding a 10000×10000 image (amortized) needs about", tmp_path, before)
    assert "cannot decode" not in r.stderr
    assert "Warning" not in r.stderr
    huge = tmp_path / "huge.png"
    _big_png(huge, 16385)
    before = snapshot(tmp_path)
    assert_refused(run_cli("encode", huge, "-o", tmp_path / "h.rdo", "--checkpoint", CKPT), "too large", tmp_path, before)


def test_unavailable_device_is_a_one_line_error(tmp_path, photo):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is available here")
    before = snapshot(tmp_path)
    r = run_cli("--device", "cuda", "encode", photo, "-o", tmp_path / "x.rdo", "--checkpoint", CKPT)
    assert_refused(r, "no CUDA GPU", tmp_path, before)
    assert_refused(run_cli("--device", "cuda", "decode", GOLDEN / "tiny.rdo", "-o", tmp_path / "x.png"),
                   "no CUDA GPU", tmp_path, before)


def crafted(data: bytes, width: int, height: int) -> bytes:
    """The same file claiming another image size, with a valid CRC (container v1 or v2)."""
    n = data[6]
    if data[4] == 1:
        pos = 7 + n + 8 + 1 + 2  # method code, steps (u16)
    else:
        pos = 7 + n + 8 + 2  # method and solver codes, then steps (varint)
        while data[pos] & 0x80:
            pos += 1
        pos += 1
    body = bytearray(data[:-4])
    struct.pack_into("<HH", body, pos, height, width)
    return bytes(body) + struct.pack("<I", zlib.crc32(body) & 0xFFFFFFFF)


@pytest.mark.parametrize("golden", ["tiny.rdo", "tiny_v2.rdo"])  # container v1 and v2
def test_crafted_header_fails_fast_within_a_small_memory_budget(tmp_path, golden):
    bad = tmp_path / "huge.rdo"
    bad.write_bytes(crafted((GOLDEN / golden).read_bytes(), 16384, 16384))
    info = run_cli("info", bad, "--json")
    assert info.returncode == 0 and '"width": 16384' in info.stdout  # the header itself is well formed
    before = snapshot(tmp_path)
    # Address space: what importing torch maps (≈ 4 GB) plus 1 GB — far below what 16384² would take.
    t = time.perf_counter()
    r = run_cli("decode", bad, "-o", tmp_path / "out.png", "--checkpoint", CKPT, limit_as=5 << 30, timeout=120)
    assert_refused(r, "16384×16384", tmp_path, before)
    assert time.perf_counter() - t < 60
    # without a memory limit the strings are too short for the claimed size
    r = run_cli("decode", bad, "-o", tmp_path / "out.png", "--checkpoint", CKPT, timeout=120)
    assert_refused(r, "16384×16384", tmp_path, before)


def _reader(stream, sink: list[bytes]):
    for chunk in iter(lambda: stream.read1(256), b""):
        sink.append(chunk)


@pytest.mark.parametrize("keep", [False, True])
def test_ctrl_c_during_sga_exits_130(tmp_path, keep):
    src = tmp_path / "a.png"
    Image.fromarray(pattern_image(64, 64)).save(src)
    out = tmp_path / "x.rdo"
    env = dict(os.environ, PYTHONPATH=SRC, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "rdopt", "encode", str(src), "-o", str(out), "--checkpoint", CKPT,
           "--method", "sga", "--steps", "1000000"] + (["--keep-interrupted"] if keep else [])
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    err: list[bytes] = []
    threading.Thread(target=_reader, args=(p.stderr, err), daemon=True).start()
    deadline = time.time() + 240
    while b"/1000000" not in b"".join(err) and time.time() < deadline and p.poll() is None:
        time.sleep(0.2)  # wait for the optimization's progress bar
    time.sleep(1.0)
    p.send_signal(signal.SIGINT)
    stdout = p.communicate(timeout=120)[0].decode()
    time.sleep(0.2)
    text = b"".join(err).decode(errors="replace")
    assert p.returncode == 130, text
    assert "Traceback" not in text
    assert out.exists() == keep
    if keep:
        assert "interrupted after" in stdout  # the report says so
        assert run_cli("decode", out, "-o", tmp_path / "x.png", "--checkpoint", CKPT).returncode == 0
    assert not [q for q in tmp_path.iterdir() if q.name.startswith(".rdopt-")]


def test_stdin_and_stdout(tmp_path, photo):
    r = run_cli("encode", "-", "-o", "-", "--checkpoint", CKPT, stdin=photo.read_bytes(), text=False)
    assert r.returncode == 0, r.stderr
    assert r.stdout[:4] == b"RDO1" and b"bpp" in r.stderr  # the report goes to stderr
    d = run_cli("decode", "-", "-o", "-", "--checkpoint", CKPT, stdin=r.stdout, text=False)
    assert d.returncode == 0, d.stderr
    assert d.stdout[:8] == b"\x89PNG\r\n\x1a\n"
    img = tmp_path / "d.png"
    img.write_bytes(d.stdout)
    assert Image.open(img).size == (40, 24)
    i = run_cli("info", "-", stdin=r.stdout, text=False)
    assert i.returncode == 0 and b"width           40" in i.stdout


def test_info_starts_without_torch(tmp_path):
    code = ("import sys; from rdopt.cli.main import main; rc = main(['info', sys.argv[1]]); "
            "assert 'torch' not in sys.modules and 'numpy' not in sys.modules, 'torch imported'; sys.exit(rc)")
    r = subprocess.run([sys.executable, "-c", code, str(GOLDEN / "tiny.rdo")], capture_output=True, text=True,
                       env=dict(os.environ, PYTHONPATH=SRC), timeout=120)
    assert r.returncode == 0, r.stderr
    assert "rdopt-msh-custom" in r.stdout
