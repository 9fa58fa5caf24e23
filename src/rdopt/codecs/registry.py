"""Every codec rdopt knows, by name: what it is, its qualities and λ, where its weights come from, and how to
load it. One door for all of them — the embedded models, CompressAI's architectures, and a user's own codec:

* built in: ``rdopt-msh``, ``rdopt-msh-bb``, ``mbt2018-mean``, ``bmshj2018-hyperprior``, the autoregressive
  context models ``mbt2018``, ``cheng2020-anchor``, ``cheng2020-attn``, and the parallel context models
  ``rdopt-scc``, ``cheng2020-anchor-checkerboard``, ``elic2022-official``, ``elic2022-chandelier`` (image codecs);
  ``rdopt-video``, ``rdopt-video2``, ``ssf2020`` (GoP codecs: an I-frame and a P-frame codec);
* a package that declares an entry point in the group ``rdopt.codecs`` (``pip install mycodec`` makes it
  appear): the entry point names a :class:`CodecEntry` or a function returning one;
* a local file: ``path/to/file.py:factory`` (``--codec`` on the command line), where ``factory`` returns a
  :class:`CodecEntry`, or returns the codec itself when called with the loader's keywords.

Bitstreams record the codec's model id (``NAME-qQ``, or ``NAME-custom`` for a checkpoint) and a hash of its
weights; :func:`codec_for_model_id` finds the codec again from the id, or says exactly what to pass.

λ everywhere is CompressAI's unit: cost = bpp + λ·255²·MSE on [0, 1] RGB (qualities 0.0018 … 0.0483 …).

Importing this module imports neither torch nor CompressAI: loaders are named as ``"module:function"`` and
imported when a codec is loaded, so the command line can list and check codec names cheaply.
"""

from __future__ import annotations

import importlib
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

ENTRY_POINT_GROUP = "rdopt.codecs"

COMPRESSAI_LAMBDAS = MappingProxyType(
    {1: 0.0018, 2: 0.0035, 3: 0.0067, 4: 0.0130, 5: 0.0250, 6: 0.0483, 7: 0.0932, 8: 0.1800})
"""CompressAI's λ of the MSE models of each quality (its training example: loss = λ·255²·MSE + bpp)."""


class ModelUnavailable(RuntimeError):
    """The requested codec (or its weights) cannot be loaded here."""


@dataclass(frozen=True)
class CodecEntry:
    """A registered codec.

    Args:
        name: the registry name (lower case, digits, ``-``), also the family part of model ids.
        kind: ``"image"`` (an image :class:`rdopt.core.types.LatentCodec`) or ``"video"`` (a
            :class:`rdopt.codecs.video.gop.VideoCodec`: I-frame + P-frame codec).
        qualities: quality index → λ (CompressAI's unit) of the weights that ship or that a zoo provides.
        loader: ``"module:function"`` or a callable ``loader(quality=…, lmbda=…, checkpoint=…, device=…)``
            returning the codec (every keyword may be None).
        weights: where the weights come from (shown in messages).
        description: one line for listings.
        default_quality: the quality used when none is given.
    """

    name: str
    kind: Literal["image", "video"]
    qualities: Mapping[int, float]
    loader: str | Callable[..., Any]
    weights: str = ""
    description: str = ""
    default_quality: int | None = None
    options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        if not re.fullmatch(r"[a-z0-9][a-z0-9.-]{0,62}", self.name) or re.search(r"-(q\d+|custom)$", self.name):
            raise ValueError(f"codec name {self.name!r}: lower-case letters, digits, '.' and '-' (at most 63), "
                             "not ending in -q<N> or -custom")
        if self.kind not in ("image", "video"):
            raise ValueError(f"codec {self.name}: kind must be 'image' or 'video', got {self.kind!r}")

    def load(self, quality: int | None = None, lmbda: float | None = None, checkpoint=None, device=None):
        """The codec at a quality (or from a checkpoint), in eval mode with its coder tables ready."""
        if checkpoint is None and quality is None:
            quality = self.default_quality
        if checkpoint is None and self.qualities and quality not in self.qualities:
            qs = sorted(self.qualities)
            raise ModelUnavailable(f"{self.name} has qualities {qs[0]}-{qs[-1]}, got {quality}")
        fn = resolve(self.loader) if isinstance(self.loader, str) else self.loader
        return fn(quality=quality, lmbda=lmbda, checkpoint=checkpoint, device=device, **dict(self.options))


def resolve(target: str) -> Callable[..., Any]:
    """The object a ``"module:attribute"`` string names."""
    module, _, attr = target.partition(":")
    obj = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


def _q(qs) -> dict[int, float]:
    return {q: COMPRESSAI_LAMBDAS[q] for q in qs}


BUILTIN = (
    CodecEntry("rdopt-msh", "image", _q((2, 3, 4, 5, 6)), "rdopt.codecs.image.loading:load_embedded",
               "shipped with rdopt", "rdopt's embedded mean-scale hyperprior (N=64, M=96/192)", 3),
    CodecEntry("rdopt-msh-bb", "image", _q((2, 3, 4, 5, 6)), "rdopt.codecs.image.bitsback:load_bitsback_codec",
               "shipped with rdopt", "rdopt-msh with a Gaussian q(z|y) for lossy bits-back coding", 3),
    CodecEntry("mbt2018-mean", "image", _q(range(1, 9)), "rdopt.codecs.image.loading:load_zoo",
               "CompressAI zoo file in the torch hub cache, or --checkpoint", "CompressAI's mean-scale hyperprior", 3,
               {"architecture": "mbt2018-mean"}),
    CodecEntry("bmshj2018-hyperprior", "image", _q(range(1, 9)), "rdopt.codecs.image.loading:load_zoo",
               "CompressAI zoo file in the torch hub cache, or --checkpoint", "CompressAI's scale hyperprior", 3,
               {"architecture": "bmshj2018-hyperprior"}),
    CodecEntry("mbt2018", "image", _q(range(1, 9)), "rdopt.codecs.image.loading:load_zoo",
               "CompressAI zoo file in the torch hub cache, or --checkpoint",
               "CompressAI's joint autoregressive + hyperprior model (Minnen et al. 2018); serial decode", 3,
               {"architecture": "mbt2018"}),
    CodecEntry("cheng2020-anchor", "image", _q(range(1, 7)), "rdopt.codecs.image.loading:load_zoo",
               "CompressAI zoo file in the torch hub cache, or --checkpoint",
               "CompressAI's Cheng et al. 2020 anchor (residual blocks, context model); serial decode", 3,
               {"architecture": "cheng2020-anchor"}),
    CodecEntry("cheng2020-attn", "image", _q(range(1, 7)), "rdopt.codecs.image.loading:load_zoo",
               "CompressAI zoo file in the torch hub cache, or --checkpoint",
               "CompressAI's Cheng et al. 2020 with attention (context model); serial decode", 3,
               {"architecture": "cheng2020-attn"}),
    CodecEntry("rdopt-scc", "image", _q((2, 3, 4, 5, 6)), "rdopt.codecs.image.loading:load_zoo",
               "shipped with rdopt (the default image model)",
               "rdopt-msh grown into a space-channel context model (channel groups × checkerboard); parallel decode",
               3, {"architecture": "rdopt-scc"}),
    CodecEntry("cheng2020-anchor-checkerboard", "image", _q(range(1, 7)), "rdopt.codecs.image.loading:load_zoo",
               "--checkpoint (CompressAI publishes no weights)",
               "Cheng et al. 2020 anchor with a checkerboard context (He et al. 2021); parallel decode", 3,
               {"architecture": "cheng2020-anchor-checkerboard"}),
    CodecEntry("elic2022-official", "image", _q(range(1, 7)), "rdopt.codecs.image.loading:load_zoo",
               "--checkpoint (CompressAI publishes no weights)",
               "ELIC (He et al. 2022): uneven channel groups × checkerboard; parallel decode", 3,
               {"architecture": "elic2022-official"}),
    CodecEntry("elic2022-chandelier", "image", _q(range(1, 7)), "rdopt.codecs.image.loading:load_zoo",
               "--checkpoint (CompressAI publishes no weights)",
               "ELIC as re-implemented by Chandelier (first and last groups as channel context); parallel decode", 3,
               {"architecture": "elic2022-chandelier"}),
    CodecEntry("rdopt-video", "video", {1: 256 / 255**2, 2: 512 / 255**2, 3: 1024 / 255**2, 4: 2048 / 255**2},
               "rdopt.codecs.video.dvc:load_video_codec", "shipped with rdopt",
               "rdopt's first embedded video codec: DVC-style P-frames, rdopt-msh I-frames", 3),
    CodecEntry("rdopt-video2", "video", {1: 0.0067, 2: 0.0130, 3: 0.0250, 4: 0.0483},
               "rdopt.codecs.video.video2:load_video2", "shipped with rdopt",
               "rdopt's video codec: encoder-side optical flow, conditional residual coder grown from rdopt-msh", 2),
    CodecEntry("ssf2020", "video", {**_q(range(1, 9)), 9: 0.36}, "rdopt.codecs.video.ssf:load_ssf_codec",
               "CompressAI zoo file in the torch hub cache, or --checkpoint",
               "CompressAI's scale-space flow (Agustsson et al. 2020)", 4),
)

_registry: dict[str, CodecEntry] = {}


def _load_builtin() -> None:
    if not _registry:
        _registry.update({e.name: e for e in BUILTIN})


def register(entry: CodecEntry, replace: bool = False) -> CodecEntry:
    """Add a codec to the registry (``replace``: allow a name that is taken)."""
    if not isinstance(entry, CodecEntry):
        raise TypeError(f"register takes a CodecEntry, got {type(entry).__name__}")
    _load_builtin()
    if entry.name in _registry and not replace and _registry[entry.name] is not entry:
        raise ValueError(f"a codec named {entry.name!r} is registered already")
    _registry[entry.name] = entry
    return entry


def unregister(name: str) -> None:
    """Remove a codec registered in this process (built-in codecs come back with :func:`register`)."""
    _registry.pop(name, None)


def _entry_points() -> dict[str, Any]:
    """The ``rdopt.codecs`` entry points of installed packages, by name (each names a :class:`CodecEntry` or a
    function returning one; loaded only when its name is asked for, so a broken plug-in never breaks start-up)."""
    from importlib.metadata import entry_points

    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def entries() -> dict[str, Any]:
    """Every codec by name: built-in and registered in this process (:class:`CodecEntry`), and the entry points of
    installed packages not loaded yet (``importlib.metadata.EntryPoint``)."""
    _load_builtin()
    out: dict[str, Any] = dict(_registry)
    for name, ep in _entry_points().items():
        out.setdefault(name, ep)
    return out


def get(name: str) -> CodecEntry:
    """The entry of a codec name (an entry point is loaded here)."""
    known = entries()
    if name not in known:
        raise ModelUnavailable(f"unknown codec {name!r}; known: {', '.join(sorted(known))} (a codec of your own: "
                               "--codec FILE.py:FACTORY, or a package with an 'rdopt.codecs' entry point)")
    entry = known[name]
    if not isinstance(entry, CodecEntry):  # an entry point: load it now
        try:
            obj = entry.load()
            real = obj if isinstance(obj, CodecEntry) else obj()
        except Exception as e:  # noqa: BLE001 - a plug-in's failure, named in one line
            raise ModelUnavailable(f"codec {name!r} (entry point {entry.value}) failed to load: "
                                   f"{type(e).__name__}: {e}") from None
        if not isinstance(real, CodecEntry) or real.name != name:
            raise ModelUnavailable(f"entry point {name} = {entry.value} must give a CodecEntry named {name!r}")
        _registry[name] = entry = real
    return entry


def choose_quality(name: str, quality: int | None = None, lmbda: float | None = None, checkpoint=None) -> int:
    """The quality to load: ``quality`` if given; else the one whose λ is nearest to ``lmbda`` in log λ —
    among the codec's registered qualities, or among CompressAI's for a checkpoint of an image codec (it may
    have been trained at any of them); else the codec's default."""
    if quality is not None:
        return quality
    entry = get(name)
    if lmbda is None:
        return entry.default_quality
    table = COMPRESSAI_LAMBDAS if checkpoint is not None and entry.kind == "image" else entry.qualities
    return min(table, key=lambda q: abs(math.log(table[q] / lmbda)))


def load_codec(name: str, quality: int | None = None, lmbda: float | None = None, checkpoint=None, device=None):
    """Load a registered codec by name at a quality (or from a checkpoint). Never downloads."""
    return get(name).load(quality=quality, lmbda=lmbda, checkpoint=checkpoint, device=device)


def codec_from_file(spec: str, quality: int | None = None, lmbda: float | None = None, checkpoint=None, device=None):
    """The codec a ``FILE.py:FACTORY`` spec names: ``FACTORY`` is called with those of the loader's keywords
    (``quality``, ``lmbda``, ``checkpoint``, ``device``) it accepts and returns the codec — or a
    :class:`CodecEntry`, which is then registered and loaded with them."""
    import importlib.util
    import inspect
    import sys
    from pathlib import Path

    path, sep, attr = spec.rpartition(":")
    if not sep or not path or not attr:
        raise ModelUnavailable(f"--codec {spec!r}: expected FILE.py:FACTORY")
    file = Path(path)
    if not file.is_file():
        raise ModelUnavailable(f"--codec {spec!r}: no such file {path}")
    mod_name = "rdopt_user_codec_" + re.sub(r"\W", "_", str(file.resolve()))
    module_spec = importlib.util.spec_from_file_location(mod_name, file)
    if module_spec is None or module_spec.loader is None:
        raise ModelUnavailable(f"--codec {spec!r}: {path} is not a Python file")
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[mod_name] = module
    try:
        module_spec.loader.exec_module(module)
    except Exception as e:  # noqa: BLE001 - the user's file: any error is theirs, named in one line
        sys.modules.pop(mod_name, None)
        raise ModelUnavailable(f"--codec {spec!r}: importing {path} failed: {type(e).__name__}: {e}") from None
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise ModelUnavailable(f"--codec {spec!r}: {path} has no function {attr!r}")
    given = {"quality": quality, "lmbda": lmbda, "checkpoint": checkpoint, "device": device}
    params = inspect.signature(factory).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        kwargs = given
    else:
        dropped = [k for k, v in given.items() if v is not None and k not in params and k != "device"]
        if dropped:
            raise ModelUnavailable(f"--codec {spec!r}: {attr}() takes no {', '.join(dropped)}")
        kwargs = {k: v for k, v in given.items() if k in params}
    made = factory(**kwargs)
    if isinstance(made, CodecEntry):
        register(made, replace=True)
        return made.load(quality=quality, lmbda=lmbda, checkpoint=checkpoint, device=device)
    if device is not None and hasattr(made, "to"):
        made = made.to(device)
    return made


DEFAULT_VIDEO_CODEC = "rdopt-video2"
"""The video codec of a video encode that names none."""


def video_family_of(checkpoint) -> str | None:
    """The registered embedded video codec whose P-frame weights file ``checkpoint`` is, from its config
    (``rdopt-video2``: ``motion``/``residual`` sections; ``rdopt-video``: ``motion_channels`` …; a training state of
    ``rdopt train --video``: its architecture), or ``None`` when the file says nothing (or cannot be read)."""
    try:
        import torch

        raw = torch.load(checkpoint, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - an unreadable file is reported by the loader
        return None
    config = raw.get("config") if isinstance(raw, dict) else None
    if isinstance(config, str):
        import json

        try:
            config = json.loads(config)
        except ValueError:
            config = None
    if isinstance(config, dict):
        if isinstance(config.get("motion"), dict) and isinstance(config.get("residual"), dict):
            return "rdopt-video2"
        if "motion_channels" in config or "residual_channels" in config:
            return "rdopt-video"
        if config.get("video") is True:  # a training state of `rdopt train --video` (its TrainConfig)
            return "rdopt-video2" if config.get("architecture") == "rdopt-video2" else "rdopt-video"
    return None


def video_codec_for(*checkpoints) -> str:
    """The registered video codec a video encode or evaluation without ``--codec`` uses: the family of its
    checkpoint files (:func:`video_family_of`; ``None`` entries and files that name no family do not count — their
    loader reports them), else :data:`DEFAULT_VIDEO_CODEC`. Files of two families are a ``ValueError``."""
    families = {str(c): f for c, f in ((c, video_family_of(c)) for c in checkpoints if c is not None) if f}
    if len(set(families.values())) > 1:
        raise ValueError("checkpoint files of different codecs (" + ", ".join(f"{c}: {f}" for c, f in families.items())
                         + "): use one codec per run, or name it with --codec")
    return next(iter(families.values()), DEFAULT_VIDEO_CODEC)


def is_file_spec(spec: str) -> bool:
    """Whether a ``--codec`` value names a local file (``FILE.py:FACTORY``) rather than a registered name."""
    path, sep, _ = spec.rpartition(":")
    return bool(sep) and path.endswith(".py")


def load_any(spec: str, quality: int | None = None, lmbda: float | None = None, checkpoint=None, device=None):
    """A codec by registered name or by ``FILE.py:FACTORY``."""
    if is_file_spec(spec):
        return codec_from_file(spec, quality=quality, lmbda=lmbda, checkpoint=checkpoint, device=device)
    return load_codec(spec, quality=quality, lmbda=lmbda, checkpoint=checkpoint, device=device)


_MODEL_ID = re.compile(r"^(?P<family>[a-z0-9][a-z0-9.-]*?)-(?:q(?P<q>\d+)|custom)$")


def parse_model_id(model_id: str) -> tuple[str, int | None]:
    """``("rdopt-video2", 3)`` of ``rdopt-video2-q3``; ``(family, None)`` of ``family-custom``."""
    m = _MODEL_ID.match(model_id)
    if not m:
        raise ModelUnavailable(f"bitstream names codec {model_id!r}, which is not NAME-qQ or NAME-custom")
    return m.group("family"), (int(m.group("q")) if m.group("q") else None)


def codec_for_model_id(model_id: str, checkpoint=None, codec_spec: str | None = None, device=None):
    """Load the codec that wrote a bitstream: from ``codec_spec`` (``FILE.py:FACTORY``) if given, else by the
    family named in the model id from the registry — at its quality, or from ``checkpoint`` for ``-custom``."""
    family, quality = parse_model_id(model_id)
    if codec_spec is not None:
        return codec_from_file(codec_spec, quality=None if checkpoint is not None else quality, checkpoint=checkpoint,
                               device=device)
    try:
        entry = get(family)
    except ModelUnavailable:
        raise ModelUnavailable(f"bitstream was written by codec {model_id!r}, which is not registered here: pass "
                               "--codec FILE.py:FACTORY (and --checkpoint if it needs one), or install the package "
                               "that registers it") from None
    if quality is None and checkpoint is None:
        raise ModelUnavailable(f"bitstream was written by {model_id} (its own weights): pass its --checkpoint")
    return entry.load(quality=None if checkpoint is not None else quality, checkpoint=checkpoint, device=device)


__all__ = ["ENTRY_POINT_GROUP", "COMPRESSAI_LAMBDAS", "ModelUnavailable", "CodecEntry", "BUILTIN", "register",
           "unregister", "entries", "get", "choose_quality", "load_codec", "load_any", "is_file_spec", "codec_from_file", "parse_model_id", "codec_for_model_id",
           "resolve", "DEFAULT_VIDEO_CODEC", "video_codec_for", "video_family_of"]
