"""``rdopt eval images``: encode, write, decode and measure every (image, quality, method).

* Work is split into *units* — (quality, method, up to ``batch`` images of one size) — decided before
  any sharding, each with its own seed, so results do not depend on how many processes ran them.
* Resumable: finished entries are read back from the output and not redone; the output is rewritten
  atomically after every unit, so Ctrl-C loses at most the unit in progress.
* Scales out with PyTorch's launcher: under ``torchrun --nproc_per_node=N -m rdopt eval images …``
  the units are dealt to the ranks by a deterministic cost balance (``assign_ranks``), each rank writes a part file; rank 0 merges the parts after a barrier
  (gloo) into the same output a single process writes.

Output layout: ``{"name", "description", "results": {...}, "methods": {m: {"name", "results"}},
"entries": [...]}``. ``results`` / ``methods[m].results`` hold per-quality averages under CompressAI's
keys (``bpp``, ``psnr-rgb``, ``ms-ssim-rgb``, ``encoding_time``, ``decoding_time``) so that
``python -m compressai.utils.plot`` reads the per-method files ``RESULTS.<method>.json`` written beside.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..data.images import LoadedImage, atomic_write_bytes, load_image
from ..infer.options import SolverOptions

FORMAT = "rdopt-eval/1"


@dataclass(frozen=True)
class EvalImage:
    name: str
    image: LoadedImage


@dataclass(frozen=True)
class Unit:
    quality: int
    method: str
    names: tuple[str, ...]

    @property
    def keys(self) -> list[str]:
        return [entry_key(n, self.quality, self.method) for n in self.names]

    def seed(self, base: int) -> int:
        h = hashlib.sha256(f"{base}|{self.quality}|{self.method}|{','.join(self.names)}".encode()).digest()
        return int.from_bytes(h[:4], "little")


def entry_key(name: str, quality: int, method: str) -> str:
    return f"{name}|q{quality}|{method}"


def parse_crop(text: str | None) -> tuple[int, int] | None:
    """``"256"`` → 256×256, ``"512x384"`` → width 512, height 384 (returned as (height, width))."""
    if not text:
        return None
    parts = text.lower().split("x")
    try:
        nums = [int(p) for p in parts]
    except ValueError:
        raise ValueError(f"bad crop {text!r}: use N or WxH") from None
    if len(nums) == 1:
        nums = nums * 2
    if len(nums) != 2 or min(nums) <= 0:
        raise ValueError(f"bad crop {text!r}: use N or WxH with positive numbers")
    return nums[1], nums[0]


def center_crop(img: LoadedImage, size: tuple[int, int] | None) -> LoadedImage:
    if size is None:
        return img
    h, w = size
    if img.height < h or img.width < w:
        raise ValueError(f"image {img.width}×{img.height} is smaller than the crop {w}×{h}")
    i, j = (img.height - h) // 2, (img.width - w) // 2
    return replace(img, rgb=np.ascontiguousarray(img.rgb[i : i + h, j : j + w]))


def collect_images(sources: list[str], crop: tuple[int, int] | None) -> list[EvalImage]:
    """Files, folders (their PNG/JPEG/… files) or ``eval-set`` (the scikit-image evaluation photos)."""
    from ..data.sources import eval_image_paths

    paths: list[Path] = []
    for s in sources:
        if s == "eval-set":
            paths += eval_image_paths()
            continue
        p = Path(s)
        if p.is_dir():
            found = sorted(q for q in p.iterdir() if q.suffix.lower() in {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm"})
            if not found:
                raise FileNotFoundError(f"no images in {p}")
            paths += found
        else:
            paths.append(p)
    out, seen = [], set()
    for p in paths:
        name = p.stem
        if name in seen:
            raise ValueError(f"two inputs are named {name!r}; rename one")
        seen.add(name)
        out.append(EvalImage(name, center_crop(load_image(p), crop)))
    return out


def plan_units(images: list[EvalImage], qualities: list[int], methods: list[str], batch: int) -> list[Unit]:
    by_size: dict[tuple[int, int], list[str]] = {}
    for im in images:
        by_size.setdefault((im.image.height, im.image.width), []).append(im.name)
    units = []
    for q in qualities:
        for m in methods:
            for names in by_size.values():
                for k in range(0, len(names), batch):
                    units.append(Unit(q, m, tuple(names[k : k + batch])))
    return units


def assign_ranks(units: list[Unit], world: int, steps: int) -> list[int]:
    """Deterministic greedy balancing: each unit (in plan order) goes to the least-loaded rank, with
    cost = images × steps (an amortized unit costs about one step)."""
    load = [0] * world
    ranks = []
    for u in units:
        cost = len(u.names) * (1 if u.method == "amortized" else max(steps, 1))
        r = min(range(world), key=lambda k: (load[k], k))
        load[r] += cost
        ranks.append(r)
    return ranks


def _aggregate(entries: list[dict], method: str) -> dict:
    rows = [e for e in entries if e["method"] == method]
    qualities = sorted({e["quality"] for e in rows})
    res = {k: [] for k in ("quality", "bpp", "bpp_estimated", "psnr-rgb", "ms-ssim-rgb", "rd_cost", "encoding_time", "decoding_time")}
    for q in qualities:
        rs = [e for e in rows if e["quality"] == q]
        res["quality"].append(q)
        res["bpp"].append(float(np.mean([e["bpp"] for e in rs])))
        res["bpp_estimated"].append(float(np.mean([e["bpp_estimated"] for e in rs])))
        res["psnr-rgb"].append(float(np.mean([e["psnr"] for e in rs])))
        ms = [e["ms_ssim"] for e in rs if e["ms_ssim"] is not None]
        res["ms-ssim-rgb"].append(float(np.mean(ms)) if len(ms) == len(rs) else None)
        res["rd_cost"].append(float(np.mean([e["rd_cost"] for e in rs])))
        res["encoding_time"].append(float(np.mean([e["encode_seconds"] for e in rs])))
        res["decoding_time"].append(float(np.mean([e["decode_seconds"] for e in rs])))
    if any(v is None for v in res["ms-ssim-rgb"]):
        del res["ms-ssim-rgb"]
    return res


def build_document(entries: list[dict], settings: dict) -> dict:
    entries = sorted(entries, key=lambda e: (e["method"], e["quality"], e["image"]))
    methods = []
    for e in entries:
        if e["method"] not in methods:
            methods.append(e["method"])
    curves = {m: {"name": m, "description": f"rdopt {m}", "results": _aggregate(entries, m)} for m in methods}
    first = "amortized" if "amortized" in curves else (methods[0] if methods else None)
    return {
        "format": FORMAT,
        "name": f"rdopt {first}" if first else "rdopt",
        "description": "rdopt eval images; per-method curves under 'methods', per-item records under 'entries'",
        "results": curves[first]["results"] if first else {},
        "settings": settings,
        "methods": curves,
        "entries": entries,
    }


def write_document(path: Path, doc: dict, companions: bool = True) -> None:
    """Write the results file and (``companions``) one CompressAI-readable file per method."""
    atomic_write_bytes(path, (json.dumps(doc, indent=1) + "\n").encode())
    for m, curve in doc["methods"].items() if companions else ():
        atomic_write_bytes(path.with_name(f"{path.stem}.{m}.json"), (json.dumps(curve, indent=1) + "\n").encode())


def read_results(path: Path) -> dict:
    """The results document at ``path`` ({} if there is none), validated as an rdopt results file."""
    if not path.exists():
        return {}
    try:
        doc = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON ({e.msg}); move it away or choose another --out") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise ValueError(f"{path} is not an rdopt eval results file; choose another --out")
    return doc


def read_entries(path: Path) -> list[dict]:
    return list(read_results(path).get("entries", []))


#: settings besides the optimization options (``SolverOptions.recorded()``) that change a result: a results
#: file can only be resumed with the same values
RUN_KEYS = ("model", "checkpoint", "batch")


def resume_keys(settings: dict) -> tuple[str, ...]:
    """The settings compared on resume: the run's and every recorded optimization option."""
    return RUN_KEYS + tuple(k for k in settings.get("options", {}))


def check_resumable(out: Path, old: dict, settings: dict) -> None:
    """Refuse to add results to ``out`` (whose settings are ``old``) when they were made with other
    settings or other model weights; qualities, methods and images may be extended."""
    new_flat = {**settings.get("options", {}), **settings}
    old_flat = {**old.get("options", {}), **old}
    diff = [f"{k} {old_flat.get(k)!r} -> {new_flat.get(k)!r}" for k in resume_keys(settings)
            if k in old_flat and old_flat[k] != new_flat[k]]
    w_old, w_new = old.get("weights", {}), settings.get("weights", {})
    diff += [f"weights of quality {q} changed" for q in w_new if q in w_old and w_old[q] != w_new[q]]
    if diff:
        raise ValueError(f"{out} was made with other settings ({'; '.join(diff)}); "
                         "choose another --out or delete it to start over")


def drop_stale(previous: dict, weights: dict[str, str]) -> tuple[dict, list[int]]:
    """``previous`` without the entries of the qualities whose model weights differ from ``weights``
    (quality -> weight hash), and those qualities; their recorded hashes are updated to ``weights``."""
    old = previous.get("settings", {}).get("weights", {})
    stale = sorted(int(q) for q in weights if q in old and old[q] != weights[q])
    if not stale:
        return previous, []
    settings = {**previous["settings"], "weights": {**old, **{str(q): weights[str(q)] for q in stale}}}
    entries = [e for e in previous.get("entries", []) if e.get("quality") not in stale]
    return {**previous, "settings": settings, "entries": entries}, stale


@dataclass(frozen=True)
class EvalEntry:
    """One (image, quality, method) result: what encoding reported (:class:`rdopt.api.image.EncodeStats`) and
    where it comes from. Stored as one JSON object per entry (``to_dict``)."""

    key: str
    image: str
    quality: int
    method: str
    stats: dict  # EncodeStats.to_dict()
    unit_wall_seconds: float
    trace: tuple[dict, ...] = ()

    def to_dict(self) -> dict:
        rec = {"key": self.key, "image": self.image, **self.stats, "quality": self.quality, "method": self.method,
               "unit_wall_seconds": self.unit_wall_seconds}
        if self.trace:
            rec["trace"] = list(self.trace)
        return rec


@dataclass
class EvalPlan:
    """What ``run_eval`` will do: the settings recorded with the results, the entries already done
    (resumed), and the units still to run (before sharding)."""

    settings: dict
    done: dict[str, dict]
    units: list[Unit]


def plan_eval(images: list[EvalImage], qualities: list[int], methods: list[str], out: Path, options: SolverOptions,
              model_name: str, checkpoint: str | dict[str, str] | None, weights: dict[str, str], batch: int = 8,
              redo_stale: bool = False, log=None) -> EvalPlan:
    """Settings, resume check and the units not yet in ``out`` (``weights``: quality -> weight hash)."""
    settings = {
        "model": model_name, "checkpoint": checkpoint, "qualities": qualities, "methods": methods,
        "options": options.recorded(),
        "batch": batch, "images": [im.name for im in images],
        "size": sorted({f"{im.image.width}x{im.image.height}" for im in images}),
        "weights": dict(weights),
    }
    previous = read_results(out)
    if redo_stale:
        previous, stale = drop_stale(previous, settings["weights"])
        if stale and log is not None:
            log(f"weights changed for qualities {', '.join(map(str, stale))}: recomputing their entries")
    old_settings = previous.get("settings", {})
    check_resumable(out, old_settings, settings)
    settings["weights"] = {**old_settings.get("weights", {}), **settings["weights"]}
    done = {e["key"]: e for e in previous.get("entries", [])}
    units = [u for u in plan_units(images, qualities, methods, batch) if not all(k in done for k in u.keys)]
    return EvalPlan(settings, done, units)


def execute_units(units: list[Unit], images: dict[str, LoadedImage], models: dict[int, object],
                  options: SolverOptions, trace: bool = False, bitstreams: Path | None = None):
    """Encode every unit (one batch of images of one size, one quality and method); yields, per unit,
    its entries (:class:`EvalEntry`). Each unit has its own seed (``Unit.seed``), so results do not
    depend on which process runs it."""
    from ..api.image import encode_images

    for u in units:
        opts = replace(options, method=u.method, steps=0 if u.method == "amortized" else options.steps,
                       seed=u.seed(options.seed), trace_every=(10 if trace and u.method != "amortized" else 0),
                       progress=False)
        t0 = time.perf_counter()
        results = encode_images(models[u.quality], [images[n] for n in u.names], opts)
        if any(enc.stats.interrupted for enc in results):  # a cut optimization is no result of its method
            raise KeyboardInterrupt
        wall = time.perf_counter() - t0
        entries = []
        for name, enc in zip(u.names, results):
            entries.append(EvalEntry(entry_key(name, u.quality, u.method), name, u.quality, u.method,
                                     enc.stats.to_dict(), wall, tuple(t.to_dict() for t in enc.trace)))
            if bitstreams is not None:
                bitstreams.mkdir(parents=True, exist_ok=True)
                atomic_write_bytes(bitstreams / f"{name}.q{u.quality}.{u.method}.rdo", enc.data)
        yield u, entries


def merge_results(out: Path, done: dict[str, dict], parts: list[Path], settings: dict) -> dict:
    """The results document of the entries done before and those of every part file (later wins);
    written to ``out`` (with the per-method companions)."""
    merged = dict(done)
    for part in parts:
        for e in read_entries(part):
            merged[e["key"]] = e
    doc = build_document(list(merged.values()), settings)
    write_document(out, doc)
    return doc


def run_eval(
    images: list[EvalImage],
    qualities: list[int],
    methods: list[str],
    out: Path,
    options: SolverOptions,
    model_name: str,
    checkpoint: str | dict[int, str] | None,
    device: str,
    batch: int = 8,
    trace: bool = False,
    bitstreams: Path | None = None,
    progress: bool = False,
    redo_stale: bool = False,
) -> dict:
    """Run every unit not yet in ``out``; returns the merged document (on rank 0): plan
    (:func:`plan_eval`), execute this rank's share (:func:`execute_units`, the output rewritten after
    every unit), merge (:func:`merge_results`).

    ``checkpoint``: one weights file for every quality, or one per quality (``{quality: path}``; the others load
    the registered weights). With ``redo_stale``, entries of qualities whose model weights changed since they were computed are
    dropped and recomputed (instead of refusing the file); the other entries are kept."""
    from ..codecs.image.loading import load_model

    rank, world = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    dist = None
    if world > 1:
        import torch.distributed as dist

        if not dist.is_initialized():
            dist.init_process_group("gloo")
    per_quality = checkpoint if isinstance(checkpoint, dict) else {q: checkpoint for q in qualities}
    models: dict[int, object] = {q: load_model(model_name, q, checkpoint=per_quality.get(q), device=device)
                                 for q in qualities}
    if isinstance(checkpoint, dict):  # recorded with the run: which file each quality came from
        checkpoint = {str(q): str(p) for q, p in sorted(checkpoint.items())}
    weights = {str(q): m.weight_hash().hex() for q, m in models.items()}
    plan = plan_eval(images, qualities, methods, out, options, model_name, checkpoint, weights, batch, redo_stale,
                     log=(lambda msg: print(msg, file=sys.stderr)) if rank == 0 else None)
    mine = [u for u, r in zip(plan.units, assign_ranks(plan.units, world, options.steps)) if r == rank]
    part = out if world == 1 else _part_path(out, rank)
    entries = dict(plan.done) if world == 1 else {e["key"]: e for e in read_entries(part)}
    bar = tqdm(total=sum(len(u.names) for u in mine), desc=f"eval[{rank}]" if world > 1 else "eval",
               unit="img", disable=not progress, dynamic_ncols=True)
    interrupted = False
    try:
        for u, done_unit in execute_units(mine, {im.name: im.image for im in images}, models, options, trace,
                                          bitstreams):
            todo = [e for e in done_unit if e.key not in entries]
            for e in done_unit:
                entries[e.key] = e.to_dict()
            write_document(part, build_document(list(entries.values()), plan.settings), companions=world == 1)
            bar.update(len(todo) or len(u.names))
    except KeyboardInterrupt:
        interrupted = True
    finally:
        bar.close()
    if interrupted:
        raise KeyboardInterrupt
    if world == 1:
        doc = build_document(list(entries.values()), plan.settings)
        write_document(out, doc)
        return doc
    dist.barrier()
    doc = {}
    if rank == 0:
        parts = [_part_path(out, r) for r in range(world)]
        doc = merge_results(out, plan.done, parts, plan.settings)
        for p in parts:
            p.unlink(missing_ok=True)
    dist.barrier()
    return doc


def _part_path(out: Path, rank: int) -> Path:
    return out.with_name(f"{out.stem}.part{rank}{out.suffix}")
