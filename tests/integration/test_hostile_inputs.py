"""The CLI run as a separate process over hostile and careless inputs.

Every refused case must: exit with status 2, print exactly one line ``rdopt: error: …`` on stderr and no
traceback, leave no output file (and no temporary file), and leave the input untouched. Written outputs
get the mode the umask gives, and a symbolic link as output is written through.

``test_hostile_input`` is a table of 53 cases, each run as a separate process (a hang fails by its timeout): unusual images
that must be coded correctly (a PNG named .jpg, 16-bit RGB, 1×1 and 300×1, palette with transparency, LA,
CMYK JPEG, an animated PNG's first frame, Unicode and spaces in names), images that cannot be (a header
claiming 100000×100000, a truncated JPEG, a text-chunk bomb, a FIFO, /dev/zero), out-of-range option values,
video options and inputs, outputs that cannot be written (/dev/full, standard output on a full device, a file
size limit while writing, a read-only folder — skipped as root —, a file where the frames folder goes) and
hostile bitstreams (random bytes, zero length, a header bit flip, /dev/zero and a FIFO, each also through
``rdopt info``, which must not import torch; an .rdo and an .rdov renamed to each other decode to the golden
pictures). ``test_truncated_and_header_flipped_golden_bitstreams`` adds 2 cases: truncations at a stride and
header bit flips of the golden ``tiny.rdo`` and ``tiny_colour.rdov``. 55 table-driven cases in all.
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
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import rdopt
from conftest import GOLDEN, assert_decodes_as_recorded, pattern_image, refuses_new_files

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


@pytest.mark.parametrize("umask", [0o077, 0o002])
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


# ---------------------------------------------------------------------------------------------- the table
# Each case is one `rdopt` process over one hostile or unusual input, option value, output or bitstream: a
# refusal (the one line's text given) or a success (what the output must be). Inputs live in one module folder
# whose files must stay as they were; outputs go to the case's own folder, which a refusal leaves empty.

VCKPT = str(GOLDEN / "tiny_video.pt")
IMG = ["--checkpoint", CKPT]
VID = ["--checkpoint", VCKPT]
# `rdopt info` in a process that then checks that torch was never imported
INFO_WITHOUT_TORCH = ("import sys; from rdopt.cli.main import main; rc = main(sys.argv[1:]); "
                      "assert 'torch' not in sys.modules, 'rdopt info imported torch'; sys.exit(rc)")


def _env() -> dict:
    env = dict(os.environ, PYTHONPATH=SRC, OMP_NUM_THREADS="1")
    for name in ("RDOPT_MEMORY_LIMIT", "PYTHONUNBUFFERED"):  # standard output buffered, as users run it
        env.pop(name, None)
    return env


def _run(argv, *, info: bool = False, stdout=subprocess.PIPE, fsize: int | None = None, timeout: float = 60):
    """One process; ``info``: ``rdopt info`` that must not import torch. A hang is a failure (the timeout)."""

    def pre():
        if fsize is not None:
            import resource

            resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))

    head = [sys.executable, "-c", INFO_WITHOUT_TORCH] if info else [sys.executable, "-m", "rdopt"]
    return subprocess.run([*head, *map(str, argv)], stdin=subprocess.DEVNULL, stdout=stdout, stderr=subprocess.PIPE,
                          env=_env(), timeout=timeout, preexec_fn=pre if fsize is not None else None, text=True)


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _png(width: int, height: int, bit_depth: int, colour_type: int, rows: bytes) -> bytes:
    """A PNG written by hand: any header, with ``rows`` (filter bytes included) as its one IDAT chunk."""
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", zlib.compress(rows))
            + _png_chunk(b"IEND", b""))


def _snapshot_tree(folder: Path) -> dict[str, str]:
    """Every entry under ``folder`` with its content's hash (a special file by its kind: reading it may block)."""
    import hashlib

    state = {}
    for p in sorted(folder.rglob("*")):
        mode = p.lstat().st_mode
        if stat.S_ISREG(mode):
            state[str(p.relative_to(folder))] = hashlib.sha256(p.read_bytes()).hexdigest()
        else:
            state[str(p.relative_to(folder))] = oct(stat.S_IFMT(mode))
    return state


@pytest.fixture(scope="module")
def hostile(tmp_path_factory) -> Path:
    """The input folder of the table, and ``ref.rdo``: the amortized code of ``a.png``, made by the CLI."""
    from video_fixtures import moving_clip

    from rdopt.data.video import write_video

    d = tmp_path_factory.mktemp("hostile")
    a = pattern_image(24, 40)
    Image.fromarray(a).save(d / "a.png")
    (d / "png-named.jpg").write_bytes((d / "a.png").read_bytes())
    (d / "naïve photo 1.png").write_bytes((d / "a.png").read_bytes())
    a16 = a.astype(">u2") * 257  # 16 bits per sample; the 8-bit values again after scaling
    (d / "rgb16.png").write_bytes(_png(40, 24, 16, 2, b"".join(b"\x00" + row.tobytes() for row in a16)))
    frames = [Image.fromarray(pattern_image(24, 40, seed=s)) for s in range(3)]  # the first frame is a.png
    frames[0].save(d / "anim.png", save_all=True, append_images=frames[1:], duration=50)
    Image.fromarray(pattern_image(1, 1)).save(d / "one.png")
    Image.fromarray(pattern_image(1, 300)).save(d / "row.png")
    Image.fromarray(a).quantize(16).save(d / "palette.png", transparency=0)
    Image.fromarray(a).convert("LA").save(d / "la.png")
    Image.fromarray(a).convert("CMYK").save(d / "cmyk.jpg", quality=95)
    (d / "bomb.png").write_bytes(_png(100000, 100000, 1, 0, b""))  # a header claiming 10¹⁰ pixels
    Image.fromarray(pattern_image(64, 64)).save(d / "whole.jpg", quality=90)
    jpg = (d / "whole.jpg").read_bytes()
    (d / "truncated.jpg").write_bytes(jpg[: len(jpg) // 2])
    (d / "whole.jpg").unlink()
    png = (d / "a.png").read_bytes()  # a text chunk that inflates to 4 MB, after the header (33 bytes)
    text = _png_chunk(b"zTXt", b"Comment\x00\x00" + zlib.compress(b"A" * (4 << 20), 9))
    (d / "text-bomb.png").write_bytes(png[:33] + text + png[33:])
    for name in ("fifo.png", "fifo.rdo", "fifo.y4m"):
        os.mkfifo(d / name)
    write_video(d / "clip.y4m", moving_clip(3, 32, 32))
    (d / "clip_90x60.yuv").write_bytes(bytes([128]) * (2 * 8100 + 7))  # two 90×60 4:2:0 frames and 7 bytes
    rng = np.random.default_rng(20)
    (d / "garbage.mp4").write_bytes(rng.bytes(2000))
    (d / "random.rdo").write_bytes(rng.bytes(300))
    (d / "random.rdov").write_bytes(rng.bytes(300))
    (d / "empty.rdo").write_bytes(b"")
    (d / "empty.rdov").write_bytes(b"")
    (d / "video-named.rdo").write_bytes((GOLDEN / "tiny_colour.rdov").read_bytes())
    (d / "image-named.rdov").write_bytes((GOLDEN / "tiny.rdo").read_bytes())
    for src, name in (("tiny.rdo", "flipped.rdo"), ("tiny_colour.rdov", "flipped.rdov")):
        b = bytearray((GOLDEN / src).read_bytes())
        b[10] ^= 0x04  # in the header: the model name
        (d / name).write_bytes(bytes(b))
    (d / "existing").write_bytes(b"a file without a suffix")
    ro = d / "read-only"
    ro.mkdir()
    ro.chmod(0o555)
    r = _run(["encode", d / "a.png", "-o", d / "ref.rdo", *IMG])
    assert r.returncode == 0, r.stderr
    return d


def _info(path) -> dict:
    import json

    r = _run(["info", path, "--json"], info=True)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def _same_code_as_a_png(name: str):
    def check(d: Path, out: Path, r) -> None:
        assert (out / name).read_bytes() == (d / "ref.rdo").read_bytes()

    return check


def _info_says(**fields):
    def check(d: Path, out: Path, r) -> None:
        doc = _info(out / "x.rdo")
        assert {k: doc[k] for k in fields} == fields, doc

    return check


def _noted(text: str, then=None):
    def check(d: Path, out: Path, r) -> None:
        assert f"rdopt: note: {text}" in r.stderr, r.stderr
        if then is not None:
            then(d, out, r)

    return check


def _one_pixel(d: Path, out: Path, r) -> None:
    assert _info(out / "x.rdo")["width"] == 1
    dec = _run(["decode", out / "x.rdo", "-o", out / "x.png", *IMG])
    assert dec.returncode == 0, dec.stderr
    with Image.open(out / "x.png") as im:
        assert im.size == (1, 1) and im.mode == "RGB"


def _json_stdout(test):
    def check(d: Path, out: Path, r) -> None:
        import json

        test(json.loads(r.stdout), out)

    return check


def _below_the_smallest(s: dict, out: Path) -> None:
    rc = s["rate_control"]
    assert rc["target_bytes"] == 1 and not rc["in_range"] and not rc["hit"]
    assert "below the smallest file" in rc["message"] and "(written)" in rc["message"]
    assert s["file_bytes"] == (out / "x.rdo").stat().st_size > 1


def _above_the_largest(s: dict, out: Path) -> None:
    rc = s["rate_control"]
    assert rc["target_bytes"] == 40 * 24 * 100 // 8 and rc["in_range"]
    assert "above what the model(s) make" in rc["message"]
    assert s["file_bytes"] == (out / "x.rdo").stat().st_size <= rc["target_bytes"]


def _golden_video_frames(d: Path, out: Path, r) -> None:
    assert_decodes_as_recorded("tiny_colour.rdov", y4m=(out / "x.y4m").read_bytes())


def _golden_image(d: Path, out: Path, r) -> None:
    with Image.open(out / "x.png") as got, Image.open(GOLDEN / "decoded.png") as want:
        assert np.array_equal(np.asarray(got), np.asarray(want))


def _last_frame_only(s: dict, out: Path) -> None:
    assert s["frames"] == 1 and [f["type"] for f in s["frame_stats"]] == ["I"]
    assert _info(out / "x.rdov")["frames"] == 1


@dataclass(frozen=True)
class Case:
    """``argv`` with ``{d}`` (the input folder) and ``{o}`` (the case's output folder). ``error``: the text of the
    one line (``{d}``/``{o}`` filled in); ``None``: the command must succeed and ``check(d, out, result)`` hold.
    ``info``: ``rdopt info`` of the same input gives the same line, without torch. ``run_info``: ``argv`` is an
    ``rdopt info`` command (run without torch). ``stdout_full``: standard output is /dev/full. ``fsize``: the
    largest file the process may write. ``read_only``: skipped where a folder without write permission is
    writable (as root)."""

    argv: list
    error: str | None = None
    check: Callable | None = None
    info: bool = False
    run_info: bool = False
    stdout_full: bool = False
    fsize: int | None = None
    read_only: bool = False


def A(*options):  # noqa: N802 - short, for the table: the encode of a.png with some options
    return ["encode", "{d}/a.png", "-o", "{o}/x.rdo", *options]


C = pytest.param
CASES = [
    # ------------------------------------------------------------ unusual images: coded correctly
    C(Case(["encode", "{d}/png-named.jpg", "-o", "{o}/x.rdo", *IMG], check=_same_code_as_a_png("x.rdo")),
      id="png-named-jpg"),
    C(Case(["encode", "{d}/rgb16.png", "-o", "{o}/x.rdo", *IMG], check=_same_code_as_a_png("x.rdo")),
      id="rgb-16-bit-png"),
    C(Case(["encode", "{d}/naïve photo 1.png", "-o", "{o}/ré sult.rdo", *IMG], check=_same_code_as_a_png("ré sult.rdo")),
      id="unicode-and-spaces"),
    C(Case(["encode", "{d}/anim.png", "-o", "{o}/x.rdo", *IMG],
           check=_noted("the input has 3 frames; only the first is coded", _same_code_as_a_png("x.rdo"))),
      id="animated-png-first-frame"),
    C(Case(["encode", "{d}/one.png", "-o", "{o}/x.rdo", *IMG], check=_one_pixel), id="one-pixel"),
    C(Case(["encode", "{d}/row.png", "-o", "{o}/x.rdo", *IMG], check=_info_says(width=300, height=1)),
      id="one-pixel-high"),
    C(Case(["encode", "{d}/palette.png", "-o", "{o}/x.rdo", *IMG],
           check=_noted("the alpha channel was dropped", _info_says(grayscale=False, alpha_dropped=True))),
      id="palette-with-transparency"),
    C(Case(["encode", "{d}/la.png", "-o", "{o}/x.rdo", *IMG],
           check=_noted("the alpha channel was dropped", _info_says(grayscale=True, alpha_dropped=True))),
      id="gray-with-alpha"),
    C(Case(["encode", "{d}/cmyk.jpg", "-o", "{o}/x.rdo", *IMG],
           check=_info_says(width=40, height=24, grayscale=False, alpha_dropped=False)), id="cmyk-jpeg"),
    # ------------------------------------------------------------ images that cannot be coded
    C(Case(["encode", "{d}/bomb.png", "-o", "{o}/x.rdo", *IMG],
           "image too large: 100000×100000 (at most 16384 per side)"), id="png-header-claims-1e10-pixels"),
    C(Case(["encode", "{d}/truncated.jpg", "-o", "{o}/x.rdo", *IMG], "image file is truncated"), id="truncated-jpeg"),
    C(Case(["encode", "{d}/text-bomb.png", "-o", "{o}/x.rdo", *IMG], "Decompressed data too large"),
      id="png-text-chunk-bomb"),
    C(Case(["encode", "{d}/fifo.png", "-o", "{o}/x.rdo", *IMG], "fifo.png is a FIFO (named pipe), not a regular file"),
      id="fifo-as-image"),
    C(Case(["encode", "/dev/zero", "-o", "{o}/x.rdo", *IMG], "/dev/zero is a character device, not a regular file"),
      id="dev-zero-as-image"),
    # ------------------------------------------------------------ option values
    C(Case(A("--quality", "0"), "argument --quality: invalid choice: 0"), id="quality-0"),
    C(Case(A("--method", "sga", "--lmbda", "-1", *IMG), "argument --lmbda: must be a finite number > 0, got -1"),
      id="lmbda-negative"),
    C(Case(A("--method", "sga", "--lmbda", "nan", *IMG), "argument --lmbda: must be a finite number > 0, got nan"),
      id="lmbda-nan"),
    C(Case(A("--method", "sga", "--lmbda", "inf", *IMG), "argument --lmbda: must be a finite number > 0, got inf"),
      id="lmbda-inf"),
    C(Case(A("--method", "sga", "--steps", "0", *IMG), "argument --steps: must be > 0, got 0"), id="sga-steps-0"),
    C(Case(A("--method", "sga", "--lr", "0", *IMG), "argument --lr: must be a finite number > 0, got 0"), id="lr-0"),
    C(Case(A("--method", "sga", "--tau0", "0", *IMG), "argument --tau0: must be a finite number > 0, got 0"),
      id="tau0-0"),
    C(Case(A("--threads", "0", *IMG), "argument --threads: must be > 0, got 0"), id="threads-0"),
    C(Case(A("--threads", "-1", *IMG), "argument --threads: must be > 0, got -1"), id="threads-negative"),
    C(Case(["--device", "meta", *A(*IMG)], "--device meta cannot be used: Cannot copy out of meta tensor"),
      id="device-meta-holds-no-data"),
    C(Case(["decode", GOLDEN / "tiny.rdo", "-o", "{o}/x.png", "--max-pixels", "-1", *IMG],
           "argument --max-pixels: must be > 0, got -1"), id="max-pixels-negative"),
    C(Case(A("--target-size", "0", "--steps", "1", *IMG), "bad size '0': must be at least 1 byte"), id="target-size-0"),
    C(Case(A("--target-size", "1B", "--steps", "1", "--json", *IMG), check=_json_stdout(_below_the_smallest)),
      id="target-size-1-byte"),
    C(Case(A("--target-bpp", "100", "--steps", "1", "--json", *IMG), check=_json_stdout(_above_the_largest)),
      id="target-bpp-100"),
    C(Case(A("--distortion", "mix:2", "--steps", "1", *IMG), "bad distortion 'mix:2'"), id="distortion-mix-2"),
    # ------------------------------------------------------------ video options and inputs
    C(Case(["encode", "{d}/clip.y4m", "-o", "{o}/x.rdov", "--gop", "0", *VID], "argument --gop: must be > 0, got 0"),
      id="gop-0"),
    C(Case(["encode", "{d}/clip.y4m", "-o", "{o}/x.rdov", "--frames", "0", *VID],
           "argument --frames: must be > 0, got 0"), id="frames-0"),
    C(Case(["encode", "{d}/clip.y4m", "-o", "{o}/x.rdov", "--start", "9", *VID], "start 9 is past the end (3 frames)"),
      id="start-beyond-the-clip"),
    C(Case(["encode", "{d}/clip.y4m", "-o", "{o}/x.rdov", "--start", "2", "--json", *VID],
           check=_json_stdout(_last_frame_only)), id="start-at-the-last-frame"),
    C(Case(["encode", "{d}/clip_90x60.yuv", "-o", "{o}/x.rdov", *VID],
           "16207 bytes is not a whole number of 90x60 4:2:0 frames"), id="yuv-size-does-not-divide"),
    C(Case(["encode", "{d}/clip_90x60.yuv", "-o", "{o}/x.rdov", "--size", "90by60", *VID],
           "bad size '90by60': expected WxH"), id="size-malformed"),
    C(Case(["encode", "{d}/garbage.mp4", "-o", "{o}/x.rdov", *VID], "garbage.mp4: cannot open as a video file"),
      id="garbage-mp4"),
    C(Case(["encode", "{d}/fifo.y4m", "-o", "{o}/x.rdov", *VID], "fifo.y4m is a FIFO (named pipe), not a regular file"),
      id="fifo-as-video"),
    # ------------------------------------------------------------ outputs
    C(Case(["encode", "{d}/a.png", "-o", "/dev/full", *IMG], "output is not a regular file: /dev/full"),
      id="output-dev-full"),
    C(Case(["encode", "{d}/a.png", "-o", "-", *IMG], "cannot write to standard output: No space left on device",
           stdout_full=True), id="encode-to-full-stdout"),
    C(Case(["info", GOLDEN / "tiny_colour.rdov"], "cannot write to standard output: No space left on device",
           stdout_full=True, run_info=True), id="info-to-full-stdout"),
    C(Case(A(*IMG), "cannot write {o}/x.rdo: File too large", fsize=100), id="file-size-limit-while-writing"),
    C(Case(["encode", "{d}/a.png", "-o", "{d}/read-only/x.rdo", *IMG], "cannot write to directory {d}/read-only",
           read_only=True), id="read-only-directory"),
    C(Case(["decode", GOLDEN / "tiny_colour.rdov", "-o", "{d}/existing", *VID], "exists and is not a folder"),
      id="video-frames-folder-is-a-file"),
    # ------------------------------------------------------------ bitstreams
    C(Case(["decode", "{d}/random.rdo", "-o", "{o}/x.png", *IMG], "not an rdopt bitstream (bad magic)", info=True),
      id="random-bytes-rdo"),
    C(Case(["decode", "{d}/random.rdov", "-o", "{o}/x.y4m", *VID], "not an rdopt video bitstream (bad magic)",
           info=True), id="random-bytes-rdov"),
    C(Case(["decode", "{d}/video-named.rdo", "-o", "{o}/x.y4m", "--threads", "1", *VID], check=_golden_video_frames),
      id="rdov-renamed-rdo"),
    C(Case(["decode", "{d}/image-named.rdov", "-o", "{o}/x.png", *IMG], check=_golden_image), id="rdo-renamed-rdov"),
    C(Case(["decode", "{d}/empty.rdo", "-o", "{o}/x.png", *IMG], "empty bitstream (0 bytes)", info=True),
      id="zero-length-rdo"),
    C(Case(["decode", "{d}/empty.rdov", "-o", "{o}/x.y4m", *VID], "empty bitstream (0 bytes)", info=True),
      id="zero-length-rdov"),
    C(Case(["decode", "{d}/flipped.rdo", "-o", "{o}/x.png", *IMG], "checksum mismatch", info=True),
      id="header-bit-flip-rdo"),
    C(Case(["decode", "{d}/flipped.rdov", "-o", "{o}/x.y4m", *VID], "header checksum mismatch", info=True),
      id="header-bit-flip-rdov"),
    C(Case(["decode", "/dev/zero", "-o", "{o}/x.png", *IMG], "/dev/zero is a character device, not a regular file",
           info=True), id="dev-zero-as-bitstream"),
    C(Case(["decode", "{d}/fifo.rdo", "-o", "{o}/x.png", *IMG], "fifo.rdo is a FIFO (named pipe), not a regular file",
           info=True), id="fifo-as-bitstream"),
]


@pytest.mark.parametrize("case", CASES)
def test_hostile_input(hostile, tmp_path, case: Case):
    d, out = hostile, tmp_path / "out"
    out.mkdir()
    if case.read_only and not refuses_new_files(str(d / "read-only")):
        pytest.skip("a folder without write permission is writable here (running as root)")
    fill = {"d": str(d), "o": str(out)}
    argv = [str(a).format(**fill) for a in case.argv]
    before = _snapshot_tree(d)
    if case.stdout_full:
        with open("/dev/full", "w") as full:
            r = _run(argv, stdout=full, info=case.run_info)
    else:
        r = _run(argv, fsize=case.fsize, info=case.run_info)
    assert "Traceback" not in r.stderr, r.stderr
    if case.error is None:
        assert r.returncode == 0, r.stderr
        # nothing on standard error but notes (no warning, no "Exception ignored"; the successes run quiet)
        assert all(line.startswith("rdopt: note: ") for line in r.stderr.splitlines() if line.strip()), r.stderr
        case.check(d, out, r)
        assert not [p for p in out.iterdir() if p.name.startswith(".")], "a temporary file was left behind"
    else:
        lines = [line for line in r.stderr.splitlines() if line.strip()]
        assert r.returncode == 2, (r.returncode, r.stderr)
        assert len(lines) == 1 and lines[0].startswith("rdopt: error: "), r.stderr
        assert case.error.format(**fill) in lines[0], lines[0]
        assert list(out.iterdir()) == [], "an output or temporary file was left behind"
    assert _snapshot_tree(d) == before, "an input was changed, or a file was left in the input folder"
    if case.info:  # `rdopt info` of the same input: the same line, without torch
        i = _run(["info", argv[1]], info=True)
        lines = [line for line in i.stderr.splitlines() if line.strip()]
        assert i.returncode == 2 and len(lines) == 1 and lines[0] == r.stderr.strip(), i.stderr


def _refused_by_info(data: bytes, path: Path) -> str:
    """``rdopt info`` of ``data`` (without torch): one line, exit status 2; the line."""
    path.write_bytes(data)
    r = _run(["info", path], info=True)
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert r.returncode == 2 and len(lines) == 1 and lines[0].startswith("rdopt: error: "), (len(data), r.stderr)
    return lines[0]


@pytest.mark.parametrize("golden, header, cut_stride, flip_stride, decode", [
    ("tiny.rdo", 29, 13, 3, [(180, "checksum mismatch")]),
    ("tiny_colour.rdov", 49, 43, 4, [(500, "GoP 1 needs 307 bytes")]),
])
def test_truncated_and_header_flipped_golden_bitstreams(tmp_path, golden, header, cut_stride, flip_stride, decode):
    """Truncations at a stride and bit flips in the header of the golden files: ``info`` says so in one line (it
    reads every chunk of a ``.rdov``); ``decode`` refuses a few of them too, before writing anything."""
    data = (GOLDEN / golden).read_bytes()
    bad = tmp_path / ("bad" + Path(golden).suffix)
    cuts = sorted({*range(0, len(data), cut_stride), header - 1, header, len(data) - 1})
    for cut in cuts:
        line = _refused_by_info(data[:cut], bad)
        assert ("truncated" in line or "checksum mismatch" in line or (cut == 0 and "empty bitstream" in line)), line
    for pos in range(0, header, flip_stride):
        flipped = bytearray(data)
        flipped[pos] ^= 1 << (pos % 8)
        line = _refused_by_info(bytes(flipped), bad)
        assert "bitstream" in line, line
    ckpt = VCKPT if golden.endswith(".rdov") else CKPT
    for cut, message in decode:
        bad.write_bytes(data[:cut])
        out = tmp_path / ("out.y4m" if golden.endswith(".rdov") else "out.png")
        r = _run(["decode", bad, "-o", out, "--checkpoint", ckpt, "--threads", "1"])
        lines = [line for line in r.stderr.splitlines() if line.strip()]
        assert r.returncode == 2 and len(lines) == 1 and message in lines[0], r.stderr
        assert sorted(p.name for p in tmp_path.iterdir()) == [bad.name], "an output or temporary file was left behind"
