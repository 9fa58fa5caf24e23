"""The CLI's optimization defaults (parsed as None so that giving one to amortized can be reported) are the
library's: rdopt.cli.common writes them out so that parsing never imports torch."""

import dataclasses

from rdopt.cli.common import OPTIMIZATION_DEFAULTS
from rdopt.infer.options import SolverOptions


def test_cli_optimization_defaults_are_the_library_defaults():
    defaults = dataclasses.asdict(SolverOptions().image())
    for name, value in OPTIMIZATION_DEFAULTS.items():
        assert defaults[name] == value, name


def test_cli_budget_defaults_and_method_names_are_the_library_ones():
    from rdopt.cli.common import BUDGET_DEFAULTS, IMAGE_METHODS
    from rdopt.cli.video_cmd import VIDEO_METHODS
    from rdopt.infer.allocation import METHODS as GOP_METHODS
    from rdopt.infer.image import METHODS

    defaults = {f.name: f.default for f in dataclasses.fields(SolverOptions)}
    for name, value in BUDGET_DEFAULTS.items():
        assert defaults[name] == value, name
    assert IMAGE_METHODS == METHODS
    assert VIDEO_METHODS == GOP_METHODS


def test_help_builds_without_torch():
    import os
    import subprocess
    import sys
    from pathlib import Path

    import rdopt

    src = str(Path(rdopt.__file__).resolve().parents[1])
    for argv in ([], ["encode"], ["train"], ["eval", "images"]):
        code = ("import sys; from rdopt.cli.main import main\n"
                f"try: main({argv + ['--help']!r})\nexcept SystemExit: pass\n"
                "heavy = [m for m in ('torch', 'numpy', 'scipy', 'compressai.models') if m in sys.modules]\n"
                "assert not heavy, heavy")
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                           env=dict(os.environ, PYTHONPATH=src))
        assert r.returncode == 0, (argv, r.stderr)
        assert "usage: rdopt" in r.stdout
