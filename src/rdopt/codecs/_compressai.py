"""CompressAI without its package ``__init__``: what rdopt uses of it, at a fraction of the start-up.

``import compressai`` runs ``compressai/__init__.py``, which imports every subpackage. Its point-cloud
datasets and transforms, and ``compressai.registry.transforms`` (which ``compressai.models`` imports for the
``register_model`` decorator), import ``torch_geometric`` — and through it ``torch._dynamo``, sympy and
pandas — and ``torchvision``: ≈ 2.5 s and ≈ 250 MB that no rdopt path uses. ``compressai.entropy_models``
imports ``scipy.stats`` (≈ 0.7 s) for one call, ``norm.ppf`` in ``GaussianConditional.update``, which runs
only when scale tables are computed (zoo weights, training exports), never for the embedded models.
(Measured: benchmarks/startup/README.md.)

:func:`prepare` runs when ``rdopt.codecs`` is imported (the only rdopt package that imports CompressAI, an
import-linter contract), so before any rdopt module imports CompressAI, and imports nothing itself. If
CompressAI is not imported yet it

* registers the ``compressai`` package without running its ``__init__``: its ``__path__`` is the real one, so
  every submodule imports as usual; the package-level functions the submodules call (``get_entropy_coder``,
  ``available_entropy_coders``) and ``set_entropy_coder`` are defined as in ``__init__``, and the subpackages
  that ``__init__`` would have imported (``compressai.datasets``, ``compressai.zoo``, …) and ``__version__``
  are imported on first attribute access;
* registers ``compressai.registry.transforms`` with its ``register_transform`` and a ``TRANSFORMS`` table
  that lacks only the torchvision and torch_geometric classes (looked up by name by CompressAI's example
  training configurations; never by rdopt);

and it registers a stand-in for ``scipy.stats``, if not imported yet, that imports it on first use. Set
``RDOPT_FULL_COMPRESSAI=1`` for the stock import. ``tests/unit/test_compressai_import.py`` checks that both
give the same rANS strings, reconstructions and scale tables.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import os
import sys
import types

# What compressai/__init__.py imports (CompressAI 1.2.x).
SUBPACKAGES = ("datasets", "entropy_models", "latent_codecs", "layers", "losses", "models", "ops", "optimizers",
               "registry", "transforms", "typing", "zoo")


def prepare() -> None:
    if os.environ.get("RDOPT_FULL_COMPRESSAI"):
        return
    if "compressai" not in sys.modules:
        spec = importlib.util.find_spec("compressai")  # a top-level name: found, not imported
        if spec is not None and spec.submodule_search_locations:
            sys.modules["compressai"] = _package(spec)
            sys.modules.setdefault("compressai.registry.transforms", _transforms())
    _lazy("scipy.stats")


def _package(spec) -> types.ModuleType:
    pkg = importlib.util.module_from_spec(spec)  # __path__, __file__, __spec__ set; __init__.py not run
    coders = ["ans"]
    if importlib.util.find_spec("range_coder") is not None:
        coders.append("rangecoder")

    def set_entropy_coder(entropy_coder):
        if entropy_coder not in coders:
            raise ValueError(f'Invalid entropy coder "{entropy_coder}", choose from({", ".join(coders)}).')
        pkg._entropy_coder = entropy_coder

    def get_entropy_coder():
        return pkg._entropy_coder

    def available_entropy_coders():
        return coders

    def __getattr__(name):
        if name in SUBPACKAGES:
            return importlib.import_module(f"compressai.{name}")
        if name == "__version__":
            return importlib.import_module("compressai.version").__version__
        raise AttributeError(f"module 'compressai' has no attribute {name!r}")

    pkg.__dict__.update(_entropy_coder="ans", set_entropy_coder=set_entropy_coder, get_entropy_coder=get_entropy_coder,
                        available_entropy_coders=available_entropy_coders, __getattr__=__getattr__,
                        __all__=[*SUBPACKAGES, "available_entropy_coders", "get_entropy_coder", "set_entropy_coder"])
    return pkg


def _transforms() -> types.ModuleType:
    mod = types.ModuleType("compressai.registry.transforms")
    transforms: dict = {}

    def register_transform(name: str):
        def decorator(cls):
            transforms[name] = cls
            return cls

        return decorator

    mod.__dict__.update(TRANSFORMS=transforms, register_transform=register_transform,
                        __all__=["TRANSFORMS", "register_transform"])
    return mod


class _Deferred(types.ModuleType):
    """Stands in for a module not imported yet; imports it on the first use of one of its (non-dunder)
    attributes. Unlike :class:`importlib.util.LazyLoader`, looking at ``__file__`` does not import it:
    :func:`inspect.getmodule` looks at every module's, and torch calls it while it is imported."""

    def __getattr__(self, attr: str):
        if attr.startswith("__"):
            raise AttributeError(attr)
        name = self.__name__
        if sys.modules.get(name) is self:
            del sys.modules[name]
        real = importlib.import_module(name)  # also makes it the parent package's attribute
        self.__dict__.update(real.__dict__)  # for whoever kept a reference to the stand-in
        return getattr(real, attr)


def _lazy(name: str) -> None:
    """Register a stand-in for ``name`` (a submodule of a top-level package), importing neither."""
    if name in sys.modules:
        return
    parent, _, child = name.rpartition(".")
    pspec = importlib.util.find_spec(parent)  # a top-level name: found, not imported
    if pspec is None or not pspec.submodule_search_locations:
        return
    spec = importlib.machinery.PathFinder.find_spec(name, list(pspec.submodule_search_locations))
    if spec is None or spec.origin is None:
        return
    module = _Deferred(name)
    module.__file__ = spec.origin
    if spec.submodule_search_locations is not None:
        module.__path__ = list(spec.submodule_search_locations)
    sys.modules[name] = module
    if parent in sys.modules:
        setattr(sys.modules[parent], child, module)


__all__ = ["prepare"]
