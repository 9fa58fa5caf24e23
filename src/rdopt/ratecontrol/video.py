"""Target bitrate for video: ``--target-kbps`` (with ``--fps``) on the GoP bit-allocation methods.

The decoder and the ``.rdov`` format are unchanged: only λ0 — the trade-off the GoP allocation
(:mod:`rdopt.infer.allocation`) minimises, ``Σ_t R_t + λ0·D_t`` — is chosen per GoP so that the GoP's chunk in the
file has the size the bitrate asks for. :class:`VideoRateController` is an ``allocate`` hook of
:func:`rdopt.api.video.encode_video`:

1. **Budget of a GoP.** ``bytes = kbps·1000/8 · frames / fps`` (the GoP chunk as it is written: streams,
   frame headers, chunk length and CRC; the file header, a few dozen bytes, is the clip's, not a GoP's: the
   report gives the bitrate of the GoP chunks and of the whole file). With ``carry`` (default) the running
   balance — the nominal budgets of the GoPs so far minus their bytes — is added to the next GoP's budget
   (that GoP's budget clamped to ×/÷ 1.5 of its nominal one; what the clamp cuts off stays in the balance):
   the *clip* meets the bitrate, as x264's average-bitrate mode does.
2. **Search of λ0.** The first run of a GoP uses the λ0 the previous GoP ended with (the model's own λ for
   the first GoP): consecutive GoPs of a clip need similar λ0, so most GoPs are done in one or two runs.
   Each run is the whole allocation (all its steps) at one λ0, then real entropy coding of its latents. The
   next λ0 moves log-linearly along the measured log-size/log-λ slope (two runs: their secant; one run:
   :data:`DEFAULT_SLOPE`), at most ×/÷ :data:`MAX_STEP` per run; once the budget is bracketed (a run above
   it and one below) the secant point stays inside the bracket (bisection in log λ0 when it lands within a
   tenth of an end). λ0 stays within ×/÷ :data:`SPAN` of the model's λ. The search stops when a run is
   within ``tolerance`` (default 3 %) of the budget or after ``max_runs`` runs.
3. **Choice.** Among the runs within the tolerance, the largest (most bits spent for the budget: the best
   quality); else the run nearest the budget in log size. Every run's latents are coded and measured as
   :func:`rdopt.api.video.encode_video` writes them — with skip mode (``skip``, as the encode's), the skip
   decisions at the run's λ0 included — so the size reported is the size written. The controller's
   ``gop_lmbda`` (the chosen run's λ0) tells the encode which λ0 to decide the GoP's skips at.

Cost: ``max_runs`` (default 4) allocations per GoP at worst; a clip whose λ0 settles costs about one
allocation per GoP plus the search on the first GoPs (``benchmarks/video/ratecontrol.py`` measures it).

Quality (model): a file has one model; :func:`choose_quality` codes the first GoP once with each embedded
quality's amortized encoder (cheap: one encoder pass) and picks the one whose size is nearest the budget
in log size — the allocation then moves the rate around that model's λ.

The ``amortized`` method has no λ to move (the encoder's output does not depend on λ): rate control needs an
optimizing method.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Sequence

import numpy as np
import torch
from torch import Tensor

from ..coding.rdov import GopChunk, pack_gop
from ..core.types import Latents
from ..infer.allocation import allocate
from ..infer.options import SolverOptions

DEFAULT_SLOPE = 0.5  # d log(bytes) / d log(λ0) before two runs of a GoP are measured
SLOPE_RANGE = (0.05, 3.0)
MAX_STEP = 4.0  # λ0 changes by at most this factor from one run to the next
SPAN = 16.0  # λ0 within ×/÷ SPAN of the model's λ
CARRY_CLAMP = 1.5  # a GoP's budget with the carried deficit stays within ×/÷ this of the nominal budget


@dataclass(frozen=True)
class VideoRateOptions:
    """Settings of the video rate control (module docstring)."""

    kbps: float
    fps: float
    tolerance: float = 0.03
    max_runs: int = 4
    carry: bool = True

    def __post_init__(self):
        if not (math.isfinite(self.kbps) and self.kbps > 0):
            raise ValueError(f"the target bitrate must be a positive number of kbit/s, got {self.kbps}")
        if not (math.isfinite(self.fps) and self.fps > 0):
            raise ValueError(f"the frame rate must be positive, got {self.fps}")
        if not 0 < self.tolerance < 1:
            raise ValueError(f"the tolerance is a fraction in (0, 1), got {self.tolerance}")
        if not 1 <= self.max_runs <= 64:
            raise ValueError(f"max_runs must be 1-64, got {self.max_runs}")

    def gop_bytes(self, frames: int) -> float:
        """The nominal budget of a GoP of ``frames`` frames, in bytes."""
        return self.kbps * 1000.0 / 8.0 * frames / self.fps


@dataclass(frozen=True)
class RateRun:
    lmbda: float
    bytes: int


@dataclass
class GopRate:
    """One GoP's rate control: its budget, what was written, the runs made."""

    index: int
    frames: int
    nominal_bytes: float  # kbps·frames/fps
    target_bytes: float  # with the carried deficit
    bytes: int  # the chosen run's GoP chunk (real)
    lmbda: float  # λ0 of the chosen run
    runs: list[RateRun] = field(default_factory=list)

    @property
    def error(self) -> float:
        """Rate error of the GoP against its nominal budget, in percent (signed)."""
        return 100.0 * (self.bytes / self.nominal_bytes - 1.0)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["error_percent"] = self.error
        return d


def gop_chunk_bytes(gop_codec, latents: Latents, first_frame: int, *, x: Tensor | None = None, height: int = 0,
                    width: int = 0, lmbda: float = 0.0, skip: bool = False) -> int:
    """The size the GoP chunk of these hard latents has in the file (entropy coded for real). ``skip``: as
    :func:`rdopt.api.video.encode_video` writes it with skip mode, the skips decided at λ ``lmbda`` on the padded
    GoP ``x`` of visible size ``height × width``."""
    from ..api.video import code_gop, frame_layout, gop_frames

    if skip:
        frames = code_gop(gop_codec, x, latents, height, width, lmbda=lmbda, skip=True)[0]
    else:
        with torch.no_grad():
            coded = gop_codec.compress(latents.detach())
        frames = gop_frames(gop_codec, coded)
    return len(pack_gop(GopChunk(0, first_frame, tuple(frames)), frame_layout(gop_codec.video)))


def next_lambda(runs: Sequence[RateRun], target: float, lmbda_model: float) -> float:
    """λ0 of the next run from the runs so far (module docstring, step 2)."""
    last = runs[-1]
    x, y, t = math.log(last.lmbda), math.log(last.bytes), math.log(target)
    slope = DEFAULT_SLOPE
    distinct = [r for r in runs[:-1] if r.lmbda != last.lmbda and r.bytes != last.bytes]
    if distinct:
        ref = min(distinct, key=lambda r: abs(math.log(r.lmbda) - x))
        slope = (y - math.log(ref.bytes)) / (x - math.log(ref.lmbda))
        slope = min(max(slope, SLOPE_RANGE[0]), SLOPE_RANGE[1]) if slope > 0 else DEFAULT_SLOPE
    step = max(-math.log(MAX_STEP), min(math.log(MAX_STEP), (t - y) / slope))
    nxt = x + step
    above = [r for r in runs if r.bytes > target]
    below = [r for r in runs if r.bytes <= target]
    if above and below:  # bracketed: stay inside (λ0 rises with the rate)
        lo = max(below, key=lambda r: r.lmbda)  # the largest λ0 still at or below the budget
        hi = min(above, key=lambda r: r.lmbda)
        a, b = math.log(lo.lmbda), math.log(hi.lmbda)
        if a < b:
            ya, yb = math.log(lo.bytes), math.log(hi.bytes)
            nxt = a + (t - ya) * (b - a) / (yb - ya) if yb > ya else 0.5 * (a + b)
            if not a + 0.1 * (b - a) <= nxt <= b - 0.1 * (b - a):
                nxt = 0.5 * (a + b)
    lo_span, hi_span = math.log(lmbda_model / SPAN), math.log(lmbda_model * SPAN)
    return math.exp(min(max(nxt, lo_span), hi_span))


class VideoRateController:
    """The ``allocate`` hook that meets a bitrate (module docstring). ``records`` holds one
    :class:`GopRate` per finished GoP; :meth:`summary` the clip's figures. ``skip``: the encode's skip mode
    (:func:`rdopt.api.video.encode_video` refuses a controller that measures otherwise)."""

    def __init__(self, options: SolverOptions, rate: VideoRateOptions, skip: bool = True):
        if options.gop().solver == "amortized":
            raise ValueError("a target bitrate needs an optimizing allocation method (the amortized encoder's "
                             "output does not depend on λ): use --method sequential, windowed, bao, …")
        self.options = options
        self.rate = rate
        self.skip = bool(skip)
        self.gop_lmbda: float | None = None  # λ0 of the latents the last call returned
        self.records: list[GopRate] = []
        self._lmbda: float | None = None
        self._balance = 0.0  # Σ nominal budgets − Σ bytes of the GoPs so far

    def _target(self, frames: int) -> tuple[float, float]:
        nominal = self.rate.gop_bytes(frames)
        target = nominal + (self._balance if self.rate.carry else 0.0)
        return nominal, min(max(target, nominal / CARRY_CLAMP), nominal * CARRY_CLAMP)

    def __call__(self, gop_codec, x: Tensor, height: int, width: int) -> Latents:
        frames = int(x.shape[1])
        first_frame = sum(r.frames for r in self.records)
        nominal, target = self._target(frames)
        lmbda_model = float(gop_codec.lmbda)
        lmbda = self._lmbda if self._lmbda is not None else lmbda_model
        runs: list[RateRun] = []
        results: list[tuple[RateRun, Latents]] = []
        tol = self.rate.tolerance
        for _ in range(self.rate.max_runs):
            res = allocate(gop_codec, x, self.options, height=height, width=width, lmbda=lmbda, report=False)
            if res.interrupted:  # Ctrl-C inside the solver: stop the encode (encode_video keeps the finished GoPs)
                raise KeyboardInterrupt
            q = res.latents
            run = RateRun(lmbda, gop_chunk_bytes(gop_codec, q, first_frame, x=x, height=height, width=width,
                                                 lmbda=lmbda, skip=self.skip))
            runs.append(run)
            results.append((run, q))
            if abs(run.bytes / target - 1.0) <= tol:
                break
            nxt = next_lambda(runs, target, lmbda_model)
            if any(abs(math.log(nxt / r.lmbda)) < 1e-6 for r in runs):  # at the end of the span: no new point
                break
            lmbda = nxt
        inside = [(r, q) for r, q in results if abs(r.bytes / target - 1.0) <= tol]
        if inside:
            run, q = max(inside, key=lambda rq: rq[0].bytes)
        else:
            run, q = min(results, key=lambda rq: abs(math.log(rq[0].bytes / target)))
        self._lmbda = self.gop_lmbda = run.lmbda
        self._balance += nominal - run.bytes
        self.records.append(GopRate(len(self.records), frames, nominal, target, run.bytes, run.lmbda, runs))
        return q

    def summary(self, file_bytes: int | None = None, gops: int | None = None) -> dict:
        """Per-GoP rate errors and the clip's bitrate: of the GoP chunks, and of the whole file when
        ``file_bytes`` is given (real). ``gops``: how many GoPs the file holds (after Ctrl-C the last GoP
        allocated may not have been written)."""
        records = self.records[:gops] if gops is not None else self.records
        frames = sum(r.frames for r in records)
        chunk = sum(r.bytes for r in records)
        seconds = frames / self.rate.fps if frames else 0.0
        errors = [r.error for r in records]
        total = file_bytes if file_bytes is not None else chunk
        kbps = 8.0 * total / 1000.0 / seconds if seconds else 0.0
        return {
            "target_kbps": self.rate.kbps, "fps": self.rate.fps, "tolerance": self.rate.tolerance,
            "kbps": kbps, "error_percent": 100.0 * (kbps / self.rate.kbps - 1.0) if seconds else 0.0,
            "kbps_gop_chunks": 8.0 * chunk / 1000.0 / seconds if seconds else 0.0,
            "gop_error_mean_abs_percent": float(np.mean(np.abs(errors))) if errors else 0.0,
            "gop_error_max_abs_percent": float(np.max(np.abs(errors))) if errors else 0.0,
            "runs": sum(len(r.runs) for r in records),
            "gops": [r.to_dict() for r in records],
        }


def choose_quality(first_gop: Sequence[np.ndarray], kbps: float, fps: float, qualities: Sequence[int],
                   load, skip: bool = True) -> tuple[int, dict[int, int]]:
    """The quality whose amortized coding of the clip's first GoP is nearest the budget in log size; also
    returns each quality's amortized GoP chunk bytes (with the skips the encode would decide at the codec's λ:
    ``skip``). ``load(quality)`` gives a :class:`rdopt.codecs.video.gop.VideoCodec` (e.g.
    ``lambda q: load_codec(name, quality=q)``)."""
    from ..api.video import amortized
    from ..data.images import to_batch

    frames = len(first_gop)
    h, w = first_gop[0].shape[:2]
    budget = VideoRateOptions(kbps=kbps, fps=fps).gop_bytes(frames)
    sizes: dict[int, int] = {}
    for q in qualities:
        codec = load(q)
        param = next(codec.pframe.parameters())
        x = to_batch(list(first_gop), codec.pad_multiple, param.device, param.dtype)[None]
        g = codec.gop(frames)
        sizes[q] = gop_chunk_bytes(g, amortized(g, x, h, w), 0, x=x, height=h, width=w, lmbda=float(codec.lmbda),
                                   skip=skip)
    best = min(sizes, key=lambda q: abs(math.log(sizes[q] / budget)))
    return best, sizes


__all__ = ["VideoRateOptions", "VideoRateController", "GopRate", "RateRun", "choose_quality", "gop_chunk_bytes",
           "next_lambda"]
