"""The CLI run as a separate process where signals and processes matter: SIGTERM is handled like Ctrl-C
(a video encode keeps its finished GoPs, nothing temporary is left even after SIGKILL), an interrupt during
start-up is one line; video outputs get their mode from the umask (an existing file keeps its own); a failed
``rdopt eval video`` leaves no units folder it made unless units finished; a training state that is not one,
and an unwritable ``--out``, are one-line errors before any training."""

from __future__ import annotations

import json
import os
import re
import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from PIL import Image

import rdopt
from conftest import GOLDEN, one_error_line, pattern_image, refuses_new_files, training_photos_folder
from video_fixtures import moving_clip, tiny_clip_and_checkpoint, tiny_video_checkpoint

SRC = str(Path(rdopt.__file__).resolve().parents[1])  # the tree under test, not an installed copy
CKPT = str(GOLDEN / "tiny.pt")


def _env() -> dict:
    env = dict(os.environ, PYTHONPATH=SRC, OMP_NUM_THREADS="1")
    env.pop("RDOPT_MEMORY_LIMIT", None)
    return env


def run_cli(*args, umask: int | None = None, timeout: float = 300):
    pre = (lambda: os.umask(umask)) if umask is not None else None
    return subprocess.run([sys.executable, "-m", "rdopt", *map(str, args)], capture_output=True, text=True,
                          env=_env(), preexec_fn=pre, timeout=timeout)


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".") or p.name.endswith(".tmp"))


def assert_interrupted(code: int, err: str) -> None:
    messages = re.findall(r"rdopt: [a-z]+", err)  # a progress bar may end without a newline before it
    assert code == 130, err
    assert "Traceback" not in err, err
    assert messages == ["rdopt: interrupted"], err


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    from rdopt.data.video import write_video

    d = tmp_path_factory.mktemp("hardening")
    ckpt, clip = tiny_clip_and_checkpoint(d)
    long = d / "long.y4m"  # many GoPs of 2 frames: a signal always finds some finished, some not
    write_video(long, moving_clip(30, 60, 90))
    return {"ckpt": ckpt, "clip": clip, "long": long}


class Running:
    """``rdopt …`` in a subprocess whose standard error is collected while it runs."""

    def __init__(self, *args, cwd=None):
        self.p = subprocess.Popen([sys.executable, "-m", "rdopt", *map(str, args)], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, env=_env(), cwd=cwd)
        self.err: list[bytes] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for chunk in iter(lambda: self.p.stderr.read1(256), b""):
            self.err.append(chunk)

    def text(self) -> str:
        return b"".join(self.err).decode(errors="replace")

    def wait_for(self, predicate, timeout: float = 240) -> None:
        deadline = time.time() + timeout
        while not predicate(self.text()) and time.time() < deadline and self.p.poll() is None:
            time.sleep(0.1)
        assert self.p.poll() is None, f"finished before the signal: {self.text()}"

    def stop(self, sig) -> tuple[int, str, str]:
        self.p.send_signal(sig)
        out = self.p.stdout.read().decode()  # standard error is the reader thread's alone (no second reader)
        self.p.wait(timeout=120)
        self.reader.join(timeout=30)
        return self.p.returncode, out, self.text()


def _frames_done(text: str) -> int:
    """Frames the encode's progress bar counts as finished."""
    done = [int(m) for m in re.findall(r"encode:.*?\| *(\d+)/30", text)]
    return max(done, default=0)


def test_sigterm_keeps_the_finished_gops_and_leaves_no_temporary_file(video, tmp_path):
    out = tmp_path / "c.rdov"
    run = Running("encode", video["long"], "-o", out, "--gop", "2", "--checkpoint", video["ckpt"], "--threads", "1")
    run.wait_for(lambda t: _frames_done(t) >= 2)
    assert leftovers(tmp_path) == []  # the GoPs are spooled to an unnamed file
    code, _, err = run.stop(signal.SIGTERM)
    assert_interrupted(code, err)
    frames = int(err.split("wrote the ")[1].split()[0])
    assert 2 <= frames < 30 and frames % 2 == 0
    info = run_cli("info", out, "--json")
    assert info.returncode == 0 and json.loads(info.stdout)["frames"] == frames
    assert leftovers(tmp_path) == [] and {p.name for p in tmp_path.iterdir()} == {"c.rdov"}


def test_sigterm_before_the_first_gop_writes_nothing(video, tmp_path):
    out = tmp_path / "c.rdov"
    run = Running("encode", video["clip"], "-o", out, "--gop", "3", "--checkpoint", video["ckpt"], "--threads", "1",
                  "--method", "sequential", "--steps-i", "1000000")
    run.wait_for(lambda t: "/1000000" in t)  # the I-frame's optimization runs
    code, _, err = run.stop(signal.SIGTERM)
    assert_interrupted(code, err)
    assert list(tmp_path.iterdir()) == []


def test_a_killed_encode_leaves_no_temporary_file(video, tmp_path):
    out = tmp_path / "c.rdov"
    run = Running("encode", video["long"], "-o", out, "--gop", "2", "--checkpoint", video["ckpt"], "--threads", "1")
    run.wait_for(lambda t: _frames_done(t) >= 2)
    code, _, _ = run.stop(signal.SIGKILL)
    assert code == -signal.SIGKILL
    assert list(tmp_path.iterdir()) == []  # no output (it appears complete or not at all), nothing temporary


@pytest.mark.parametrize("keep", [False, True])
def test_sigterm_during_an_image_optimization_is_ctrl_c(tmp_path, keep):
    src = tmp_path / "a.png"
    Image.fromarray(pattern_image(64, 64)).save(src)
    out = tmp_path / "x.rdo"
    run = Running("encode", src, "-o", out, "--checkpoint", CKPT, "--method", "sga", "--steps", "1000000",
                  *(["--keep-interrupted"] if keep else []))
    run.wait_for(lambda t: "/1000000" in t)
    time.sleep(0.5)
    code, _, err = run.stop(signal.SIGTERM)
    assert_interrupted(code, err)
    assert out.exists() == keep
    assert leftovers(tmp_path) == []


INTERRUPT_AT_IMPORT = """
import os, signal, sys
signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal (a background job would ignore SIGINT)

class Interrupt:  # a real signal to this process when the module is first imported
    def find_spec(self, name, path=None, target=None):
        if name == sys.argv[1]:
            sys.meta_path.remove(self)
            os.kill(os.getpid(), getattr(signal, sys.argv[2]))
        return None

sys.meta_path.insert(0, Interrupt())
from rdopt.cli.main import main
sys.exit(main(sys.argv[3:]))
"""


@pytest.mark.parametrize("module", ["rdopt.cli.encode_cmd", "torch"])  # building the parser; running the command
@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_interrupt_during_start_up_is_one_line(tmp_path, module, sig):
    src = tmp_path / "a.png"
    Image.fromarray(pattern_image(24, 40)).save(src)
    r = subprocess.run([sys.executable, "-c", INTERRUPT_AT_IMPORT, module, sig, "encode", str(src), "-o",
                        str(tmp_path / "x.rdo"), "--checkpoint", CKPT], capture_output=True, text=True, env=_env(),
                       timeout=300)
    assert r.returncode == 130, r.stderr
    assert r.stderr.strip() == "rdopt: interrupted"
    assert {p.name for p in tmp_path.iterdir()} == {"a.png"}


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


@pytest.mark.parametrize("umask", [0o027])  # not the usual 0o022: other bits than a default would give
def test_video_outputs_get_the_umask_mode(video, tmp_path, umask):
    rdov = tmp_path / "c.rdov"
    r = run_cli("encode", video["clip"], "-o", rdov, "--gop", "3", "--checkpoint", video["ckpt"], "--quiet", umask=umask)
    assert r.returncode == 0, r.stderr
    outs = [tmp_path / "d.y4m", tmp_path / "d.mp4", tmp_path / "frames"]
    for out in outs:
        r = run_cli("decode", rdov, "-o", out, "--checkpoint", video["ckpt"], umask=umask)
        assert r.returncode == 0, r.stderr
    for p in (rdov, outs[0], outs[1]):
        assert _mode(p) == 0o666 & ~umask, (p.name, oct(_mode(p)))
    assert _mode(outs[2]) == 0o777 & ~umask, oct(_mode(outs[2]))
    pngs = sorted(outs[2].iterdir())
    assert len(pngs) == 5 and all(_mode(p) == 0o666 & ~umask for p in pngs)
    assert leftovers(tmp_path) == []


def test_replaced_video_outputs_keep_their_mode(video, tmp_path):
    rdov, y4m, mp4, folder = tmp_path / "c.rdov", tmp_path / "d.y4m", tmp_path / "d.mp4", tmp_path / "frames"
    for p, mode in ((rdov, 0o640), (y4m, 0o604), (mp4, 0o644)):
        p.write_bytes(b"old")
        p.chmod(mode)
    folder.mkdir()
    folder.chmod(0o751)  # an existing empty folder is replaced by the frames
    r = run_cli("encode", video["clip"], "-o", rdov, "--gop", "3", "--checkpoint", video["ckpt"], "--quiet", umask=0o077)
    assert r.returncode == 0, r.stderr
    for out in (y4m, mp4, folder):
        r = run_cli("decode", rdov, "-o", out, "--checkpoint", video["ckpt"], umask=0o077)
        assert r.returncode == 0, r.stderr
    assert [oct(_mode(p)) for p in (rdov, y4m, mp4, folder)] == ["0o640", "0o604", "0o644", "0o751"]
    assert rdov.read_bytes()[:4] == b"RDOV" and y4m.read_bytes()[:9] == b"YUV4MPEG2" and len(list(folder.iterdir())) == 5
    assert leftovers(tmp_path) == []


# ---------------------------------------------------------------------------------------------- eval video
def _eval(video, out, *extra, qualities="1", checkpoints=None):
    a = ["eval", "video", video["clip"], "--methods", "amortized", "--qualities", qualities, "--out", out, "--gop", "3",
         "--quiet", "--threads", "1"]
    for q, p in (checkpoints or {1: video["ckpt"]}).items():
        a += ["--checkpoint", f"{q}={p}"]
    return a + list(extra)


def test_failed_eval_video_leaves_no_units_folder(cli, video, tmp_path):
    out = tmp_path / "r.json"
    bad = tmp_path / "bad.y4m"
    bad.write_bytes(b"not a video")
    args = _eval(video, out)
    args.insert(3, bad)  # a bad clip among the inputs
    one_error_line(cli(*args), "not a Y4M file")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.y4m"]
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"garbage")
    # an error in the first unit (its codec cannot be loaded)
    one_error_line(cli(*_eval(video, out, checkpoints={1: garbage})), "garbage.pt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.y4m", "garbage.pt"]


def test_failed_eval_video_keeps_finished_units_and_resumes(cli, video, tmp_path):
    out = tmp_path / "r.json"
    q2 = tmp_path / "q2.pt"
    q2.write_bytes(b"garbage")
    args = _eval(video, out, qualities="1,2", checkpoints={1: video["ckpt"], 2: q2})
    code, text, err = cli(*args)
    one_error_line((code, text, err), "the 2 finished units are kept in")
    units = tmp_path / "r.json.units"
    assert units.is_dir() and str(units) in err and not out.exists()
    tiny_video_checkpoint(q2, seed=2, lmbda=512.0, iframe_quality=3)  # fixed: the rerun resumes
    code, text, err = cli(*args)
    assert code == 0, err
    assert len(json.loads(out.read_text())["rows"]) == 2
    assert sum(1 for _ in (units / "rank0.jsonl").open()) == 4


# ---------------------------------------------------------------------------------------------- train
@pytest.fixture
def train_data(tmp_path):
    return training_photos_folder(tmp_path)


def _train(out, data, *extra):
    # a huge step count: a refusal must come before the training, or the test would not finish
    return ["train", "--out", out, "--data", data, "--channels", "16", "16", "--crop", "64", "--batch", "2",
            "--quality", "3", "--threads", "1", "--steps", "1000000", *extra]


def test_resume_from_a_file_that_is_not_a_training_state(cli, tmp_path, train_data):
    import torch

    state = tmp_path / "s.pt"
    torch.save({"model": {"w": torch.zeros(1000)}, "step": 3, "gen": torch.zeros(8, dtype=torch.uint8)}, state)
    whole = state.read_bytes()
    files = {"truncated.pt": whole[: len(whole) // 2], "text.pt": b"hello\n",
             "weights.pt": (GOLDEN / "tiny.pt").read_bytes()}  # shipped weights, not a training state
    for name, data in files.items():
        p = tmp_path / name
        p.write_bytes(data)
        code, out, err = cli(*_train(p, train_data))
        one_error_line((code, out, err), f"{p} is not a training state")
        assert "weights_only" not in err and p.read_bytes() == data
    # a training state of another model
    code, out, err = cli(*_train(state, train_data))
    one_error_line((code, out, err), f"{state} is the training state of another model")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "s.pt", *sorted(files)]


def test_unwritable_out_is_refused_before_training(tmp_path, train_data):
    targets = []
    if refuses_new_files("/sys"):  # sysfs refuses new files even to root
        targets.append(Path("/sys/rdopt-test.pt"))
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    if refuses_new_files(str(locked)):  # not root
        targets.append(locked / "s.pt")
    if not targets:
        pytest.skip("no directory here refuses new files")
    for out in targets:
        r = run_cli(*_train(out, train_data), timeout=120)
        lines = [line for line in r.stderr.splitlines() if line.strip()]
        assert r.returncode == 2 and len(lines) == 1, r.stderr
        assert lines[0].startswith(f"rdopt: error: cannot write to directory {out.parent}"), r.stderr
    # an unwritable --export is found up front too
    r = run_cli(*_train(tmp_path / "s.pt", train_data, "--export", targets[0]), timeout=120)
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert r.returncode == 2 and len(lines) == 1 and "cannot write to directory" in lines[0], r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "locked"]
