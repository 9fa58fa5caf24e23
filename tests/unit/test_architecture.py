"""The architecture rules that import-linter cannot state (the import contracts themselves live in
pyproject.toml and run with `make test`)."""

import re
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "rdopt"


def test_compressai_private_likelihoods_are_called_in_one_place():
    hits = [p.relative_to(SRC).as_posix() for p in SRC.rglob("*.py")
            if re.search(r"\._likelihood\(", p.read_text())]
    assert hits == ["codecs/entropy.py"], hits


def test_no_module_reads_lambda_from_the_model_in_the_algorithms():
    """λ is an argument: the solvers, the graph and the R-D module never read a model's λ."""
    for rel in ("infer/loop.py", "infer/dag.py", "infer/image.py", "infer/bitsback.py", "infer/graph.py", "core/rd.py",
                "relax"):
        paths = [SRC / rel] if rel.endswith(".py") else list((SRC / rel).rglob("*.py"))
        for p in paths:
            assert ".lmbda" not in p.read_text(), p


def test_import_contracts_are_declared():
    text = (SRC.parents[1] / "pyproject.toml").read_text()
    for name in ("Layers: each package imports only the packages below it", "Only codecs/ imports CompressAI"):
        assert name in text
