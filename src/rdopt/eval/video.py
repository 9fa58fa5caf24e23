"""``rdopt eval video``: GoP bit-allocation methods × qualities on clips, one GoP per unit of work.

Every unit (clip, quality, method, GoP) runs :func:`rdopt.infer.allocation.allocate` on the GoP's frames and
records per frame: the real entropy-coded bytes of the frame's strings (the payload the ``.rdov`` file
carries, without its few header bytes), the *estimated* bits of every latent (w and y parts), PSNR of
the decoder's 8-bit output, the frame's R-D cost; per GoP: totals, the true GoP cost before (amortized)
and after, time and the solver's stage record (R-D cost vs SAVI stage, paper Fig. 10).

Results are appended, one JSON line per finished unit, to ``<out>.units/rank<r>.jsonl``: an interrupted
run keeps every finished GoP and a rerun with the same settings skips them (resume); a unit of a stage-wise
solver (sequential, windowed, lambda-domain) or of BAO cut short resumes where it stopped: after its last finished
stage, within a stage from its last snapshot (one a minute) (``<out>.units/<unit>.stages.pt``, removed when the
unit is recorded). Under ``torchrun``
(``RANK``/``WORLD_SIZE`` in the environment) rank ``r`` takes every ``world``-th unit; whichever rank
finds all units done writes the summary ``<out>`` (per clip, quality and method: mean bpp and PSNR,
per-position-in-GoP profile, bitrate error vs amortized (paper Tab. 2), time; BD-BR and BD-PSNR vs
amortized over the qualities).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from ..codecs.registry import DEFAULT_VIDEO_CODEC

FORMAT = "rdopt-eval-video-1"
SETTINGS_KEYS = ("codec", "gop", "frames", "start", "crop", "options", "checkpoints", "clips")


@dataclass(frozen=True)
class VideoUnit:
    clip: str
    quality: int
    method: str
    gop_index: int
    first: int  # index of the GoP's first frame in the evaluated range
    length: int

    @property
    def key(self) -> str:
        return f"{self.clip}|q{self.quality}|{self.method}|g{self.gop_index}"


def plan_video_units(clips: dict[str, int], qualities: Sequence[int], methods: Sequence[str], gop: int) -> list[VideoUnit]:
    """All units: for every clip (name → frame count), quality, method and GoP."""
    units = []
    for clip, n in clips.items():
        for q in qualities:
            for m in methods:
                for g, first in enumerate(range(0, n, gop)):
                    units.append(VideoUnit(clip, q, m, g, first, min(gop, n - first)))
    return units


def pad(frames: np.ndarray, multiple: int) -> torch.Tensor:
    """uint8 N×H×W×3 frames → one padded GoP 1×N×3×H'×W' in [0, 1] (edge replication, as encode_video)."""
    from ..data.images import to_batch

    return to_batch(list(frames), multiple)[None]


def run_unit(codec, unit: VideoUnit, frames: np.ndarray, options, stage_file: Path | None = None) -> dict:
    """Allocate one GoP and measure it; returns the JSON record. ``stage_file``: where the stage-wise solvers
    and BAO keep their finished stages and a snapshot of the stage under way
    (:func:`rdopt.infer.allocation.allocate`), so that an interrupted unit resumes there. An interrupted solver
    raises ``KeyboardInterrupt``: its best-so-far point is no result of the unit's method and is not recorded."""
    from dataclasses import replace

    from ..infer.allocation import allocate

    gop = codec.gop(unit.length)
    x = pad(frames, gop.pad_multiple)
    h, w = frames.shape[1:3]
    opts = replace(options, solver=unit.method)
    res = allocate(gop, x, opts, height=h, width=w, stage_file=stage_file)
    if res.interrupted:
        raise KeyboardInterrupt
    seconds = res.seconds
    rows = [asdict(r) for r in res.frames[0]]
    npix = h * w
    total_bytes = sum(r["bytes"] for r in rows)
    return {
        "key": unit.key, "clip": unit.clip, "quality": unit.quality, "method": unit.method, "gop": unit.gop_index,
        "first": unit.first, "frames": rows, "bytes": total_bytes, "bpp": 8.0 * total_bytes / (npix * unit.length),
        "bpp_estimated": sum(r["bpp_estimated"] for r in rows) / unit.length,
        "psnr": float(np.mean([r["psnr"] for r in rows])),
        "cost": float(res.objective[0]), "cost_amortized": float(res.amortized_objective[0]),
        "fell_back": bool(res.fell_back[0]), "seconds": round(seconds, 3), "stages": res.stages,
        "lmbda": codec.lmbda, "pixels": npix,
    }


def _rank_world() -> tuple[int, int]:
    return int(os.environ.get("RANK", "0")), max(int(os.environ.get("WORLD_SIZE", "1")), 1)


def read_records(folder: Path) -> dict[str, dict]:
    out: dict[str, dict] = {}
    if not folder.is_dir():
        return out
    for p in sorted(folder.glob("rank*.jsonl")):
        for line in p.read_text().splitlines():
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:  # a line cut by a kill: the unit is simply redone
                continue
            out[rec["key"]] = rec
    return out


def summarize(records: Sequence[dict], settings: dict) -> dict:
    """The summary document: per (clip, quality, method) aggregates, bitrate error vs amortized, and per
    clip and method BD-BR / BD-PSNR vs amortized over the qualities."""
    from ..metrics.bd import bd_psnr, bd_rate

    groups: dict[tuple[str, int, str], list[dict]] = {}
    for r in records:
        groups.setdefault((r["clip"], r["quality"], r["method"]), []).append(r)
    rows = []
    for (clip, q, m), recs in sorted(groups.items()):
        recs.sort(key=lambda r: r["gop"])
        frames = [f for r in recs for f in r["frames"]]
        n = len(frames)
        bits = sum(8 * f["bytes"] for f in frames)
        npix_bpp = [f["bpp"] for f in frames]
        gop_len = max(len(r["frames"]) for r in recs)
        profile = []
        for k in range(gop_len):
            at = [r["frames"][k] for r in recs if len(r["frames"]) > k]
            profile.append({"position": k, "bpp": float(np.mean([f["bpp"] for f in at])),
                            "psnr": float(np.mean([f["psnr"] for f in at])),
                            "bpp_w_estimated": float(np.mean([f["bits_w_estimated"] for f in at])),
                            "bpp_y_estimated": float(np.mean([f["bits_y_estimated"] for f in at])),
                            "cost": float(np.mean([f["cost"] for f in at]))})
        npix = recs[0]["pixels"]
        for p in profile:  # bits → bpp for the w / y parts
            p["bpp_w_estimated"] /= npix
            p["bpp_y_estimated"] /= npix
        rows.append({
            "clip": clip, "quality": q, "method": m, "frames": n, "gops": len(recs),
            "bpp": float(np.mean(npix_bpp)), "bits": bits,
            "bpp_estimated": float(np.mean([f["bpp_estimated"] for f in frames])),
            "psnr": float(np.mean([f["psnr"] for f in frames])),
            "cost": float(np.mean([r["cost"] for r in recs])), "cost_amortized": float(np.mean([r["cost_amortized"] for r in recs])),
            "seconds": float(sum(r["seconds"] for r in recs)), "seconds_per_frame": float(sum(r["seconds"] for r in recs) / n),
            "fell_back_gops": sum(r["fell_back"] for r in recs), "profile": profile,
        })
    by = {(r["clip"], r["quality"], r["method"]): r for r in rows}
    for r in rows:
        a = by.get((r["clip"], r["quality"], "amortized"))
        r["bitrate_error"] = abs(r["bpp"] - a["bpp"]) / a["bpp"] if a and a["bpp"] > 0 else None
    bd = []
    clips = sorted({r["clip"] for r in rows})
    methods = sorted({r["method"] for r in rows})
    for clip in clips:
        qs = sorted({r["quality"] for r in rows if r["clip"] == clip and r["method"] == "amortized"})
        if len(qs) < 4:
            continue
        ar = [by[(clip, q, "amortized")]["bpp"] for q in qs]
        ap = [by[(clip, q, "amortized")]["psnr"] for q in qs]
        for m in methods:
            if m == "amortized" or any((clip, q, m) not in by for q in qs):
                continue
            tr = [by[(clip, q, m)]["bpp"] for q in qs]
            tp = [by[(clip, q, m)]["psnr"] for q in qs]
            try:
                bd.append({"clip": clip, "method": m, "bd_rate": bd_rate(ar, ap, tr, tp), "bd_psnr": bd_psnr(ar, ap, tr, tp),
                           "bitrate_error": float(np.mean([by[(clip, q, m)]["bitrate_error"] for q in qs]))})
            except ValueError as e:
                bd.append({"clip": clip, "method": m, "error": str(e)})
    return {"format": FORMAT, "settings": settings, "rows": rows, "bd_vs_amortized": bd}


def summary_text(doc: dict) -> str:
    lines = [f"{'clip':<24} {'q':>2} {'method':<15} {'frames':>6} {'bpp':>8} {'PSNR':>7} {'cost':>8} {'R err':>6} {'s/frame':>8}"]
    for r in doc["rows"]:
        err = f"{100 * r['bitrate_error']:5.1f}%" if r.get("bitrate_error") is not None else "     -"
        lines.append(f"{r['clip'][:24]:<24} {r['quality']:>2} {r['method']:<15} {r['frames']:>6} {r['bpp']:8.4f} "
                     f"{r['psnr']:7.3f} {r['cost']:8.4f} {err:>6} {r['seconds_per_frame']:8.2f}")
    if doc["bd_vs_amortized"]:
        lines += ["", f"{'clip':<24} {'method':<15} {'BD-BR':>8} {'BD-PSNR':>8} {'R err':>6}"]
        for b in doc["bd_vs_amortized"]:
            if "error" in b:
                lines.append(f"{b['clip'][:24]:<24} {b['method']:<15} {b['error']}")
            else:
                lines.append(f"{b['clip'][:24]:<24} {b['method']:<15} {b['bd_rate']:7.2f}% {b['bd_psnr']:8.3f} "
                             f"{100 * b['bitrate_error']:5.1f}%")
    return "\n".join(lines)


def run_video_eval(clips: Sequence[str], qualities: Sequence[int], methods: Sequence[str], out: str | os.PathLike,
                   options, *, gop: int = 10, frames: int | None = None, start: int = 0, checkpoints: dict | None = None,
                   progress: bool = False, device=None, crop: tuple[int, int] | None = None,
                   codec_name: str = DEFAULT_VIDEO_CODEC) -> dict | None:
    """Run (or resume) the evaluation; returns the summary when every unit is done (else ``None``: other
    ranks are still working). A run that fails removes the units folder it created if no unit is finished;
    finished units are kept (the error says so) for the same command to resume."""
    from ..codecs.registry import ModelUnavailable
    from ..infer.allocation import METHODS

    bad = [m for m in methods if m not in METHODS]
    if bad:
        raise ValueError(f"unknown method(s) {', '.join(bad)}; choose from {', '.join(METHODS)}")
    out = Path(out)
    folder = out.with_name(out.name + ".units")
    created = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    opts = asdict(options)
    opts.pop("method")
    opts.pop("progress")
    settings = {"codec": codec_name, "gop": gop, "frames": frames, "start": start, "crop": list(crop) if crop else None, "options": opts,
                "checkpoints": {str(k): str(v) for k, v in (checkpoints or {}).items()}, "clips": list(map(str, clips)),
                "padding": "codec"}
    stamp = folder / "settings.json"
    legacy_padding = False
    if stamp.is_file():
        old = json.loads(stamp.read_text())
        legacy_padding = "padding" not in old  # started when every frame was padded to 64 (or the codec's more)
        diff = [k for k in SETTINGS_KEYS if k != "clips" and old.get(k, "rdopt-video" if k == "codec" else None) != settings[k]]
        if diff:
            hint = (f" or --codec {old.get('codec', 'rdopt-video')} (the codec it was started with)"
                    if "codec" in diff else "")
            raise ValueError(f"{out} was started with other settings ({', '.join(diff)}); use another --out{hint}")
    else:
        stamp.write_text(json.dumps(settings, indent=2))
    rank, world = _rank_world()
    part = folder / f"rank{rank}.jsonl"
    try:
        return _run_units(clips, qualities, methods, out, options, folder, part, settings, gop=gop, frames=frames,
                          start=start, checkpoints=checkpoints, progress=progress, device=device, crop=crop,
                          codec_name=codec_name, legacy_padding=legacy_padding)
    except BaseException as e:
        done = read_records(folder)
        if not done:
            # nothing to resume: remove the folder this run made (unless another rank works in it too)
            if created and {p.name for p in folder.iterdir()} <= {stamp.name, part.name}:
                shutil.rmtree(folder, ignore_errors=True)
            raise
        if isinstance(e, (ValueError, ModelUnavailable)):
            raise ValueError(f"{_first_line(e)} (the {len(done)} finished units are kept in {folder} for a rerun "
                             "to resume)") from None
        raise


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__


def _run_units(clips, qualities, methods, out: Path, options, folder: Path, part: Path, settings: dict, *, gop, frames,
               start, checkpoints, progress, device, crop, codec_name, legacy_padding=False) -> dict | None:
    """Read the clips, run this rank's units not done yet (appending to ``part``) and write the summary when
    every unit is done. ``legacy_padding``: the run was started before frames were padded to the codec's own
    multiple; it resumes only where that changes no frame's coded size."""
    from tqdm import tqdm

    from ..api.video import load_video_codec
    from ..data.video import read_frames

    data = {}
    for c in clips:
        arr = np.asarray(read_frames(c, start=start, frames=frames))
        if crop:  # centre crop (height, width) of every frame, as eval.images.parse_crop gives it
            ch, cw = crop
            h, w = arr.shape[1:3]
            if cw > w or ch > h:
                raise ValueError(f"--crop {cw}x{ch} is larger than the {w}x{h} frames of {c}")
            top, left = (h - ch) // 2, (w - cw) // 2
            arr = arr[:, top: top + ch, left: left + cw]
        data[Path(c).name] = np.ascontiguousarray(arr)
    units = plan_video_units({k: len(v) for k, v in data.items()}, qualities, methods, gop)
    rank, world = _rank_world()
    done = read_records(folder)
    mine = [u for i, u in enumerate(units) if i % world == rank and u.key not in done]
    codecs: dict[int, object] = {}
    if legacy_padding and done and units:
        q = units[0].quality
        c = codecs[q] = load_video_codec(codec_name, quality=q, checkpoint=(checkpoints or {}).get(q), device=device)
        moved = [name for name, v in data.items() if c.tight_padding(*v.shape[1:3])]
        if moved:
            raise ValueError(f"{out} was started when frames were padded to {c.legacy_pad_multiple}; {c.model_id} now "
                             f"pads them to {c.pad_multiple}, which changes the coded size of {', '.join(moved)}: "
                             "use another --out")
    with open(part, "a") as f:
        for u in tqdm(mine, desc=f"eval video (rank {rank})", unit="GoP", disable=not progress, dynamic_ncols=True):
            if u.quality not in codecs:
                codecs[u.quality] = load_video_codec(codec_name, quality=u.quality,
                                                     checkpoint=(checkpoints or {}).get(u.quality), device=device)
            stages = folder / (u.key.replace("|", ".") + ".stages.pt")
            rec = run_unit(codecs[u.quality], u, data[u.clip][u.first: u.first + u.length], options, stages)
            f.write(json.dumps(rec) + "\n")
            f.flush()
            stages.unlink(missing_ok=True)
    done = read_records(folder)
    if not all(u.key in done for u in units):
        return None
    doc = summarize([done[u.key] for u in units], settings)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps(doc, indent=1))
    os.replace(tmp, out)
    return doc


__all__ = ["FORMAT", "VideoUnit", "plan_video_units", "run_unit", "summarize", "summary_text", "run_video_eval", "pad",
           "read_records"]
