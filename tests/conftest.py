"""Shared fixtures: a tiny seeded hyperprior (fast), small synthetic images, CLI runner."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

warnings.filterwarnings("ignore", message=".*torch.jit.script.*is deprecated", category=FutureWarning)
torch.set_num_threads(int(os.environ.get("RDOPT_TEST_THREADS", "2")))

DATA = Path(__file__).parent / "data"
GOLDEN = DATA / "golden"


def make_tiny_net(seed: int = 0, n: int = 16, m: int = 16):
    from compressai.models import MeanScaleHyperprior

    torch.manual_seed(seed)
    net = MeanScaleHyperprior(N=n, M=m)
    net.eval()
    return net


def frozen(module):
    """A module in eval mode with every parameter's gradient off (a codec under test, not in training)."""
    module.eval()
    for p in module.parameters():
        p.requires_grad_(False)
    return module


def tiny_adapter(seed: int = 0, levels: int = 16, scale_only: bool = False):
    from compressai.models import ScaleHyperprior

    from rdopt.codecs.image.hyperprior import HyperpriorAdapter
    from rdopt.codecs.image.loading import fine_scale_table

    if scale_only:
        torch.manual_seed(seed)
        net = ScaleHyperprior(N=16, M=16).eval()
    else:
        net = make_tiny_net(seed)
    net.update(scale_table=fine_scale_table(levels), force=True)
    model = HyperpriorAdapter(net, model_id="rdopt-msh-custom", lmbda=0.0067, quality=3)
    for p in model.parameters():
        p.requires_grad_(False)
    return model.eval()


def training_photos_folder(tmp_path: Path) -> Path:
    """A folder of two small training photos (``tmp_path/data``)."""
    from PIL import Image

    data = tmp_path / "data"
    data.mkdir()
    for s in range(2):
        Image.fromarray(pattern_image(80, 96, s)).save(data / f"t{s}.png")
    return data


def refuses_new_files(folder: str) -> bool:
    """Whether a folder refuses new files (sysfs, or a read-only folder when not root)."""
    import tempfile

    try:
        fd, p = tempfile.mkstemp(dir=folder)
    except OSError:
        return True
    os.close(fd)
    os.unlink(p)
    return False


def relaxed_objective_gradcheck(adapter, x, relaxation: str) -> bool:
    """``torch.autograd.gradcheck`` (float64, central differences) of the relaxed R + λD of an image adapter with
    respect to (y, z) at its amortized latents; ``relaxation``: ``danneal`` / ``sga`` (the same Gumbel noise at every
    call) / ``identity``."""
    from rdopt.core.types import Latents, relax_all
    from rdopt.relax.rounding import deterministic_annealing, identity, sga

    with torch.no_grad():
        lat = adapter.amortize(x)
    y0 = lat["y"].clone().requires_grad_(True)
    z0 = lat["z"].clone().requires_grad_(True)
    n = x.shape[-2] * x.shape[-1]

    def relax():
        if relaxation == "danneal":
            return deterministic_annealing(0.5)
        if relaxation == "sga":
            return sga(0.5, torch.Generator().manual_seed(7))
        return identity()

    def objective(y, z):
        ev = adapter.evaluate(Latents({"y": y, "z": z}), relax_all(relax(), ("y", "z")))
        return ev.bits.sum() / n + 0.0067 * 255.0**2 * (ev.x_hat - x).pow(2).mean()

    return torch.autograd.gradcheck(objective, (y0, z0), eps=1e-6, atol=1e-5, rtol=1e-4)


def run_rdopt(*args, timeout: float = 600):
    """``python -m rdopt ARGS`` as a separate process on the tree under test (one thread, no memory-limit override);
    asserts it succeeds and returns the ``subprocess.CompletedProcess``."""
    import subprocess
    import sys

    import rdopt

    src = str(Path(rdopt.__file__).resolve().parents[1])
    env = dict(os.environ, PYTHONPATH=src, OMP_NUM_THREADS="1")
    env.pop("RDOPT_MEMORY_LIMIT", None)
    r = subprocess.run([sys.executable, "-m", "rdopt", *map(str, args)], capture_output=True, text=True, env=env,
                       timeout=timeout)
    assert r.returncode == 0, r.stderr
    return r


def one_error_line(result, pattern: str) -> None:
    """A refused CLI call: exit status 2 and exactly one line ``rdopt: error: …`` on stderr naming ``pattern``."""
    code, out, err = result
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("rdopt: error:"), (code, out, err)
    assert pattern in lines[0], lines[0]


def pattern_image(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A deterministic natural-ish test image: smooth gradients, an edge, mild texture."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    r = 128 + 90 * np.sin(xx / 9.0) * np.cos(yy / 13.0)
    g = 60 + 150 * (xx + yy) / (h + w)
    b = np.where(xx > w / 2, 200.0, 40.0) + 20 * np.sin(yy / 5.0)
    img = np.stack([r, g, b], axis=2) + rng.normal(0, 6, (h, w, 3))
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


@pytest.fixture
def float64():
    """Run a test with float64 as the default dtype (restored afterwards)."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


@pytest.fixture(scope="session")
def tiny_checkpoint():
    """A tiny (N=M=16) mean-scale model briefly trained on synthetic patterns, saved the way embedded
    models are shipped (float16 parameters, 16-level scale table); see golden/make_golden.py."""
    return GOLDEN / "tiny.pt"


@pytest.fixture(scope="session")
def tiny_model(tiny_checkpoint):
    from rdopt.codecs.image.loading import load_model

    return load_model("rdopt-msh", 3, checkpoint=tiny_checkpoint)


@pytest.fixture
def png(tmp_path):
    from PIL import Image

    def make(h=40, w=48, mode="RGB", name="in.png", seed=0):
        a = pattern_image(h, w, seed)
        im = Image.fromarray(a)
        if mode == "L":
            im = im.convert("L")
        elif mode == "RGBA":
            im = im.convert("RGBA")
        elif mode != "RGB":
            im = im.convert(mode)
        p = tmp_path / name
        im.save(p)
        return p

    return make


@pytest.fixture
def cli(capsys):
    """Run ``rdopt`` in-process: returns (exit status, stdout, stderr)."""
    from rdopt.cli.main import main

    def run(*args):
        try:
            code = main([str(a) for a in args])
        except SystemExit as e:  # argparse
            code = e.code
        out = capsys.readouterr()
        return code, out.out, out.err

    return run


def assert_decodes_as_recorded(name: str, frames=None, y4m: bytes | None = None) -> None:
    """Frames (``N×H×W×3`` uint8) or the Y4M file decoded from the golden video ``name`` against what was recorded
    when the golden decode was made (``golden/tiny_video_decoded.npz``, ``make_golden_video.py``): the same up to the
    float summation order of the CPU. The P-frame synthesis and the warp run in float32, another CPU's vector width
    moves a pixel here and there by a level, and the prediction carries it along the GoP; a misread file gives
    another picture altogether (mean differences of tens of levels)."""
    import numpy as np

    ref = np.load(GOLDEN / "tiny_video_decoded.npz")
    key = name.split(".")[0]
    pairs = []
    if frames is not None:
        pairs.append((np.stack([np.asarray(f) for f in frames]), ref[f"{key}.frames"]))
    if y4m is not None:
        got, want = np.frombuffer(y4m, np.uint8), ref[f"{key}.y4m"]
        assert got.shape == want.shape
        head = bytes(want[: int(np.argmax(want == 10)) + 1])  # the stream header line
        assert bytes(got[: len(head)]) == head
        pairs.append((got, want))
    for got, want in pairs:
        assert got.shape == want.shape
        diff = np.abs(got.astype(np.int16) - want.astype(np.int16))
        assert diff.max() <= 8 and diff.mean() <= 0.1, (int(diff.max()), float(diff.mean()))


def cut_solver_loop(monkeypatch, call_no: int) -> list:
    """Make the ``call_no``-th solver loop (0-based; ``-1``: none) of :mod:`rdopt.infer.dag` stop at its second step as
    Ctrl-C does (the loop returns its best point so far, flagged as interrupted). Returns the list that counts the
    loops run."""
    import rdopt.infer.dag as dag_module

    real = dag_module.optimize
    calls = []

    def optimize(params0, relaxed, true, steps, lr, **kw):
        calls.append(1)
        if len(calls) - 1 == call_no:
            def cut(params, step, _r=relaxed):
                if step == 1:
                    raise KeyboardInterrupt
                return _r(params, step)
            return real(params0, cut, true, steps, lr, **kw)
        return real(params0, relaxed, true, steps, lr, **kw)

    monkeypatch.setattr(dag_module, "optimize", optimize)
    return calls
