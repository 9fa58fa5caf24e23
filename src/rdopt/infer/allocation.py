"""GoP bit allocation (paper 001): the latents of a whole GoP chosen for the GoP's total
``Σ_t R_t + λ0·D_t``, with the generic DAG solvers of :mod:`rdopt.infer.dag` on the codec's latent graph
(:func:`rdopt.infer.codec_graph.codec_graph`). The decoder and the bitstream are unchanged: every method
returns hard latents the stock decoder reads.

Methods (``SolverOptions.solver``; ``joint`` is read as ``bao``):

================  ======================================================================================
``amortized``     the encoders' output (FAVI), rounded — the baseline every method is measured against
``bao``           BAO (Alg. 3): all chosen latents of the GoP updated jointly from one FAVI start, the
                  children never re-inferred (the paper shows this is the wrong approximation)
``sequential``    corrected approximate SAVI (Alg. 4, Eq. 15): latents in order ``y_0 | w_1 | y_1 | …``
                  (each hyper-latent with its latent, App. A.5); ancestors frozen at their hard values;
                  the current latent relaxed (``SolverOptions.method``, SGA by default); descendants re-inferred by the amortized encoders
                  *inside* the objective so its gradient flows through them
``windowed``      Eq. 26 (App. A.7): ``sequential`` with the objective cut to the current and ``C``
                  following frames; later frames are not computed (time and memory flat in the GoP size)
``exact``         exact SAVI (Alg. 1/2) by back-propagation through plain gradient descent: ``Θ(K^N)``,
                  for GoPs of at most :data:`EXACT_MAX_FRAMES` frames and a few steps (refused above)
``oeu``           online encoder update (Lu et al. 2020): the encoders' parameters adapted to the GoP by
                  Adam on its relaxed R-D cost, the GoP then encoded amortized with them
``oeu-sequential``  the same frame by frame (App. A.8, "COEU": frames before frozen)
``lambda-domain`` a classical per-frame λ allocation (HM low-delay-P QP-offset cascade mapped to λ, in
                  the spirit of Li et al. 2016/2022): each frame encoded for its own ``R_i + λ_i·D_i``
                  (SAVI on that frame's latents only, frame-local objective)
================  ======================================================================================

``latents`` (``y``, ``w`` or ``yw``) says which P-frame latents are optimized (paper Table 3); the
I-frame latent is optimized by every SAVI method. Defaults are the paper's: Adam, lr 1e-3, K = 2000
steps for the I-frame and 400 per P-frame latent, SGA with the temperature schedule fitted to each
stage's budget (hold τ0 for 35 % of the steps, the paper's t0 = 0.35·K), GoP 10; BAO gets the same total
work per GoP as the paper's (2000 joint steps).

The result is never worse than amortized: the true (hard) GoP R-D cost is tracked and an item whose
result is worse keeps the amortized latents (``fell_back``).
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from ..core.types import LatentCodec, Latents, frames_of
from ..relax.registry import relaxation_schedule
from ..relax.rounding import hard, uniform_noise
from ..relax.schedules import fitted_to_budget
from . import dag
from .codec_graph import Target, codec_graph
from .graph import LatentGraph
from .options import GOP_SOLVERS, LATENT_CHOICES, SolverOptions

METHODS = GOP_SOLVERS
HYPER_KINDS = ("hyper", "motion-hyper", "residual-hyper")
EXACT_MAX_FRAMES = 2
"""``exact`` is refused for longer GoPs: a GoP of 2 frames already has 6 latent nodes, Θ(K⁶) evaluations."""

# HM low-delay-P: QP offset of a P-frame by its position k ≥ 1 in a cycle of 4 (the 4th is the
# high-quality one), the I-frame at offset 0; λ_HEVC ∝ 2^(ΔQP/3) weighs *rate*, so rdopt's λ (which
# weighs distortion) scales as 2^(−ΔQP/3). Normalized so that the best P-frame gets λ0.
LD_P_QP_OFFSETS = {1: 3, 2: 2, 3: 3, 0: 1}


@dataclass(frozen=True)
class FrameReport:
    """One frame of one GoP after allocation (per item of the batch: index ``item``).

    ``bits_*`` are *estimated* (−log2 of the entropy model's probability of the hard latents);
    ``bytes`` is the real entropy-coded size of the frame's strings."""

    frame: int
    kind: str  # "I" or "P"
    bits_estimated: dict[str, float]
    bits_w_estimated: float
    bits_y_estimated: float
    bytes: int
    bpp_estimated: float
    bpp: float  # real, from bytes
    mse: float
    psnr: float
    cost: float  # bpp_estimated + λ0·255²·MSE (λ0 in CompressAI's unit)


@dataclass
class Allocation:
    """Result of :func:`allocate` for a batch of GoPs."""

    method: str
    latents: Latents  # hard (quantized) latents: what the coder writes
    frames: list[list[FrameReport]]  # per item, per frame
    objective: Tensor  # true GoP cost per item (Σ_t bpp_t + λ·255²·MSE_t, unclamped frames)
    amortized_objective: Tensor
    seconds: float
    fell_back: Tensor  # per item: the method's result was worse and amortized was kept
    interrupted: bool = False
    stages: list[dict] = field(default_factory=list)  # per solver stage: nodes, cost before/after, steps, seconds
    options: dict = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------- structure
def latent_stages(codec: LatentCodec) -> tuple[tuple[int, int], ...]:
    """Node ranges optimized together by the sequential solvers: a new stage at every latent that is not
    a hyper-latent (``y_0 | w_1 | y_1 | …``, each with its hyper-latent)."""
    kinds = [s.kind for s in codec.latents]
    starts = [j for j, k in enumerate(kinds) if k not in HYPER_KINDS or j == 0]
    return tuple(zip(starts, starts[1:] + [len(kinds)]))


def stage_budgets(codec: LatentCodec, options: SolverOptions) -> list[int]:
    """Steps per stage: the I-frame's ``steps``; a P-frame latent ``steps_p`` if its kind is chosen
    by ``options.latents``, else 0 (kept at its FAVI value, re-inferred from the frozen stages)."""
    specs = codec.latents
    chosen = LATENT_CHOICES[options.latents]
    out = []
    for a, _ in latent_stages(codec):
        s = specs[a]
        out.append(options.steps if s.frame == 0 else (options.steps_p if s.kind in chosen else 0))
    return out


def chosen_nodes(codec: LatentCodec, options: SolverOptions) -> list[str]:
    """The latents a joint method optimizes: the I-frame's and the chosen P-frame kinds (with hypers)."""
    specs = codec.latents
    budgets = stage_budgets(codec, options)
    names = []
    for (a, b), k in zip(latent_stages(codec), budgets):
        if k > 0 or specs[a].frame == 0:
            names += [specs[j].name for j in range(a, b)]
    return names


def frame_lambda_scales(frames: int) -> tuple[float, ...]:
    """Per-frame λ factors of the λ-domain rule (see :data:`LD_P_QP_OFFSETS`): the I-frame at ΔQP 0,
    P-frame ``k`` at its cycle offset; λ factor ``2^(−(ΔQP − 1)/3)`` (the best P-frame at 1)."""
    out = [2.0 ** (1.0 / 3.0)]
    for k in range(1, frames):
        out.append(2.0 ** (-(LD_P_QP_OFFSETS[k % 4] - 1) / 3.0))
    return tuple(out)


def _sga_schedules(codec: LatentCodec, budgets: Sequence[int], stages, options: SolverOptions,
                   generator: torch.Generator) -> dict:
    out = {}
    for (a, b), k in zip(stages, budgets):
        # A stage that is not optimized (budget 0) is still relaxed while it is re-inferred inside the objective
        # of earlier stages: give it the temperature of a P-frame stage, not one annealed to ~0 over one step.
        # A stage's temperature never falls below tau_end: the sequential solvers evaluate a later stage's
        # latents (re-inferred descendants) with that stage's schedule at the *current* stage's step, which
        # can be far past its own budget (the I-frame stage is 5× longer than a P-frame stage).
        horizon = k if k > 0 else max(options.steps_p, 1)
        temperature = fitted_to_budget(horizon, options.tau0, options.tau_end, options.hold)
        sched = relaxation_schedule(options.method, lambda t, _f=temperature: max(_f(t), options.tau_end), generator)
        for j in range(a, b):
            out[codec.latents[j].name] = sched
    return out


# ---------------------------------------------------------------------------------------------- reports
def _true_cost(graph: LatentGraph, target: Target, values: Sequence[Tensor]) -> Tensor:
    with torch.no_grad():
        return graph.objective(graph.context(target, None), list(values)).detach()


@torch.no_grad()
def frame_reports(codec: LatentCodec, latents: Latents, target: Target, lmbda: float) -> list[list[FrameReport]]:
    """Per item and frame: estimated bits per latent (and of motion / residual parts), real bytes from
    the entropy coder, PSNR of the decoder's 8-bit output (visible part), and the frame's cost
    ``bpp_est + λ0·255²·MSE`` (λ0 in CompressAI's unit)."""
    q = codec.quantize(latents)
    ev = codec.evaluate(q, {n: hard() for n in q.names})
    coded = codec.compress(q)
    h, w = target.visible
    npix = h * w
    groups = frames_of(codec.latents)
    kinds = {s.name: s.kind for s in codec.latents}
    x = target.x
    out = []
    for b in range(x.shape[0]):
        rows = []
        for f, names in enumerate(groups):
            bits = {n: float(ev.rates[n][b]) for n in names}
            bw = sum(v for n, v in bits.items() if kinds[n].startswith("motion"))
            by = sum(v for n, v in bits.items() if not kinds[n].startswith("motion"))
            nbytes = sum(len(coded.streams[n][b]) for n in names)
            xf = (ev.x_hat[b, f, :, :h, :w].clamp(0, 1) * 255.0).round() / 255.0  # the decoder's 8-bit output
            mse = float((xf - x[b, f, :, :h, :w]).pow(2).mean())
            bpp_est = (bw + by) / npix
            rows.append(FrameReport(f, "I" if f == 0 else "P", bits, bw, by, nbytes, bpp_est, 8.0 * nbytes / npix, mse,
                                    -10.0 * math.log10(max(mse, 1e-12)), bpp_est + lmbda * 255.0**2 * mse))
        out.append(rows)
    return out


def _stage_records(stages: Sequence[dag.StageResult]) -> list[dict]:
    return [{"nodes": list(s.nodes), "before": [float(v) for v in s.objective_before],
             "after": [float(v) for v in s.objective_after], "steps": s.steps, "seconds": round(s.seconds, 3)}
            for s in stages]


# ---------------------------------------------------------------------------------------------- methods
def _oeu(codec, target: Target, options: SolverOptions, sequential: bool, generator: torch.Generator):
    """Online encoder update on a private copy of the codec: returns the continuous latents its adapted
    encoders give (hard-rounded parents), the best seen under the true GoP cost."""
    if not hasattr(codec, "encoder_parameters") or not hasattr(codec, "with_copy"):
        raise ValueError(f"{options.solver} needs a codec that exposes its encoders (encoder_parameters, with_copy)")
    mine = codec.with_copy()
    params = mine.encoder_parameters()
    graph = codec_graph(mine)
    base_graph = codec_graph(codec)
    noise = uniform_noise(generator)
    n = len(graph)
    best_vals = [v.detach() for v in graph.amortize(target).tensors]
    best = _true_cost(base_graph, target, best_vals)
    stages = [(0, n)] if not sequential else [tuple(r) for r in _frame_ranges(graph)]
    frozen: list[Tensor] = []
    t0 = time.perf_counter()
    interrupted = False
    try:
        for a, b in stages:
            opt = torch.optim.Adam(params, lr=options.oeu_lr)
            terms = graph.term_indices(graph.window(a, None))
            steps = options.oeu_steps
            for step in range(steps):
                ctx = graph.context(target, [hard()] * a + [noise] * (n - a), step)
                vals = graph.complete(ctx, frozen)
                loss = graph.objective(ctx, vals, terms).sum()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                if (step + 1) % options.eval_every == 0 or step + 1 == steps:
                    with torch.no_grad():
                        cand = graph.complete(graph.context(target, None), frozen)
                    cost = _true_cost(base_graph, target, cand)
                    better = cost < best
                    if bool(better.any()):
                        best_vals = [torch.where(better.reshape(-1, *([1] * (c.dim() - 1))), c.detach(), v)
                                     for c, v in zip(cand, best_vals)]
                        best = torch.where(better, cost, best)
            if sequential:  # freeze this frame's latents from the adapted encoders (hard-rounded parents)
                with torch.no_grad():
                    frozen = [v.detach() for v in graph.complete(graph.context(target, None), frozen, b)]
    except KeyboardInterrupt:
        interrupted = True
    return Latents.of(graph.order, best_vals), [{"nodes": ["encoder"], "steps": options.oeu_steps,
                                                  "seconds": round(time.perf_counter() - t0, 3)}], interrupted


def _frame_ranges(graph: LatentGraph) -> list[tuple[int, int]]:
    return list(graph.stages())


def _modules(codec) -> list[torch.nn.Module]:
    if isinstance(codec, torch.nn.Module):
        return [codec]
    return [v for v in vars(codec).values() if isinstance(v, torch.nn.Module)]


@contextlib.contextmanager
def solving(codec):
    """The codec prepared for solving: its weights take no gradient (a step then costs a forward and a
    backward to the latents only) and, if it offers it, frozen frames are decoded once
    (:meth:`rdopt.codecs.video.gop.GopCodec.caching_frozen`). Restored afterwards."""
    params = [p for m in _modules(codec) for p in m.parameters()]
    flags = [p.requires_grad for p in params]
    for p in params:
        p.requires_grad_(False)
    cache = codec.caching_frozen() if hasattr(codec, "caching_frozen") else contextlib.nullcontext()
    try:
        with cache:
            yield codec
    finally:
        for p, f in zip(params, flags):
            p.requires_grad_(f)


def allocate(codec: LatentCodec, x: Tensor, options: SolverOptions | None = None, *, height: int | None = None,
             width: int | None = None, lmbda: float | None = None, report: bool = True,
             stage_file: str | os.PathLike | None = None) -> Allocation:
    """Bit allocation of a batch of GoPs ``x`` (``B×T×3×H×W`` in [0, 1], padded to the codec's multiple;
    the visible size ``height×width``) at λ0 = ``lmbda`` (CompressAI's unit; default the codec's own).
    ``options``: the allocation method is ``options.solver`` (default ``sequential``), the learning rate and
    window default to the GoP ones (:meth:`SolverOptions.gop`).
    ``report=False`` skips the per-frame reports (and the entropy coding they measure).

    ``stage_file`` (``sequential``, ``windowed``, ``lambda-domain``, ``bao``): after every finished stage its frozen
    values, stage records and the noise generator's state are saved there, and every minute the state of the stage
    under way (its optimization loop's; BAO is one stage, saved that way only); a call that finds the file resumes
    where it stopped and ends with the result an uninterrupted call gives. The file is the
    caller's to remove once the result is stored. A file of another problem (method, options, λ, GoP) is
    refused."""
    options = (options or SolverOptions(solver="sequential")).gop()
    with solving(codec):
        return _allocate(codec, x, options, height, width, lmbda, report, stage_file)


STAGE_FILE_FORMAT = "rdopt-stages-1"


def _problem_stamp(x: Tensor, options: SolverOptions, lmbda: float) -> dict:
    """What a stage file must have been made for: the method's options, λ0, and the GoP (shape, and a checksum
    of its pixels)."""
    opts = {k: v for k, v in asdict(options).items() if k != "progress"}
    return {"options": repr(sorted(opts.items())), "lmbda": float(lmbda), "shape": list(x.shape),
            "checksum": float(x.detach().double().sum()), "checksum2": float(x.detach().double().pow(2).sum())}


def _read_stage_file(path: Path, stamp: dict) -> dict | None:
    if not path.is_file():
        return None
    try:
        doc = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated by a kill mid-write cannot happen (atomic replace); anything else is named
        raise ValueError(f"stage file {path} is unreadable ({type(e).__name__}); remove it to start over") from None
    if not isinstance(doc, dict) or doc.get("format") != STAGE_FILE_FORMAT:
        raise ValueError(f"{path} is not an rdopt stage file")
    if doc.get("stamp") != stamp:
        raise ValueError(f"stage file {path} was made for another problem (method, options, λ or GoP); remove it "
                         f"to start over")
    return doc


class _StageFile:
    """The progress of one allocation in a file: the frozen values and records of the finished stages, and the
    loop state of the stage under way (``partial``: written every ``SNAPSHOT_SECONDS`` of a stage), each with the
    SGA noise generator's state at that point, so that a resumed call draws the same noise."""

    def __init__(self, path: Path, stamp: dict, generator: torch.Generator, t0: float):
        self.path, self.stamp, self.generator, self.t0 = path, stamp, generator, t0
        self.frozen: list[Tensor] = []
        self.records: list[dict] = []
        self.earlier = 0.0
        self.stage_generator = generator.get_state()  # the generator's state where the finished stages end

    def load(self, device) -> dict | None:
        """Read the file if there is one: sets the finished stages, the time spent, and the generator's state;
        returns the partial stage (``{"stage", "loop"}``) or ``None``."""
        doc = _read_stage_file(self.path, self.stamp)
        if doc is None:
            return None
        self.frozen = [v.to(device) for v in doc["frozen"]]
        self.records, self.earlier = list(doc["records"]), float(doc["seconds"])
        partial = doc.get("partial")
        self.stage_generator = doc["generator"]
        self.generator.set_state(partial["generator"] if partial is not None else doc["generator"])
        return None if partial is None else {"stage": int(partial["stage"]), "loop": partial["loop"]}

    def on_stage(self, frozen: list[Tensor], stage) -> None:
        self.frozen = list(frozen)
        self.records.extend(_stage_records([stage]))
        self.stage_generator = self.generator.get_state()
        self._write(None)

    def on_snapshot(self, stage: int, state: dict) -> None:
        self._write({"stage": int(stage), "loop": state, "generator": self.generator.get_state()})

    def _write(self, partial: dict | None) -> None:
        doc = {"format": STAGE_FILE_FORMAT, "stamp": self.stamp,
               "frozen": [v.detach().cpu().clone() for v in self.frozen], "records": self.records, "generator": self.stage_generator, "partial": partial,
               "seconds": self.earlier + time.perf_counter() - self.t0}
        tmp = self.path.with_name(self.path.name + ".tmp")
        torch.save(doc, tmp)
        os.replace(tmp, self.path)


SNAPSHOT_SECONDS = 60.0
"""How often a stage under way is saved to the stage file (its loop's state; a few hundred KB per GoP)."""


def _allocate(codec, x, options, height, width, lmbda, report, stage_file=None) -> Allocation:
    lm = float(lmbda if lmbda is not None else codec.lmbda)
    frames = x.shape[1]
    target = Target(x, lm, height, width)
    generator = torch.Generator(device=x.device).manual_seed(options.seed)
    graph = codec_graph(codec)
    t0 = time.perf_counter()
    favi = graph.amortize(target)
    amortized_cost = _true_cost(graph, target, favi.tensors)
    method = options.solver
    interrupted = False
    stages_rec: list[dict] = []
    store = None
    saving: dict = {}  # the solver's snapshot arguments when a stage file keeps its progress
    if stage_file is not None and method in ("sequential", "windowed", "lambda-domain", "bao"):
        store = _StageFile(Path(stage_file), _problem_stamp(x, options, lm), generator, t0)
        saving = dict(partial=store.load(x.device),  # before any noise is drawn: sets the generator's state
                      on_snapshot=store.on_snapshot, snapshot_seconds=SNAPSHOT_SECONDS)
        t0 -= store.earlier  # the time of the finished stages counts
    if method == "amortized":
        values = favi
    elif method in ("sequential", "windowed", "lambda-domain"):
        stages = latent_stages(codec)
        budgets = stage_budgets(codec, options)
        relax = _sga_schedules(codec, budgets, stages, options, generator)
        window = {"sequential": None, "windowed": options.window, "lambda-domain": 0}[method]
        solve_target = target if method != "lambda-domain" else Target(x, lm, height, width, frame_lambda_scales(frames))
        done_records = [] if store is None else list(store.records)
        res = dag.sequential(graph, solve_target, budgets, options.lr, relaxation=relax, eval_every=options.eval_every,
                             window=window, progress=options.progress, stages=stages,
                             resume=[] if store is None else store.frozen,
                             on_stage=None if store is None else store.on_stage, **saving)
        values, interrupted, stages_rec = res.values, res.interrupted, done_records + _stage_records(res.stages)
    elif method == "bao":
        nodes = chosen_nodes(codec, options)
        k = options.bao_steps
        sched = relaxation_schedule(options.method, fitted_to_budget(max(k, 1), options.tau0, options.tau_end, options.hold),
                                    generator)
        res = dag.joint(graph, target, k, options.lr, relaxation=sched, eval_every=options.eval_every,
                        progress=options.progress, nodes=nodes, init=favi, **saving)
        values, interrupted, stages_rec = res.values, res.interrupted, _stage_records(res.stages)
    elif method == "exact":
        if frames > EXACT_MAX_FRAMES:
            raise ValueError(f"exact SAVI is Θ(K^N): refused for a GoP of {frames} frames (at most {EXACT_MAX_FRAMES}); "
                             f"use sequential or windowed")
        bits_graph = codec_graph(codec, unit="bits")
        res = dag.exact(bits_graph, target, options.exact_steps, options.exact_lr, relaxation=None,
                        progress=options.progress)
        values, interrupted, stages_rec = res.values, res.interrupted, _stage_records(res.stages)
    elif method in ("oeu", "oeu-sequential"):
        values, stages_rec, interrupted = _oeu(codec, target, options, method == "oeu-sequential", generator)
    else:  # pragma: no cover - SolverOptions validates
        raise ValueError(method)
    q = codec.quantize(values)
    cost = _true_cost(graph, target, q.tensors)
    favi_q = codec.quantize(favi)
    worse = ~(cost <= amortized_cost)
    if bool(worse.any()):
        q = Latents((n, torch.where(worse.reshape(-1, *([1] * (t.dim() - 1))), favi_q[n], t)) for n, t in q.items())
        cost = torch.where(worse, amortized_cost, cost)
    frames_rep = frame_reports(codec, q, target, lm) if report else []
    return Allocation(method, q, frames_rep, cost, amortized_cost,
                      time.perf_counter() - t0, worse, interrupted, stages_rec, asdict(options))


def make_allocator(options: SolverOptions, lmbda: float | None = None) -> Callable[..., Latents]:
    """``allocate(gop_codec, x_padded, height, width) -> Latents`` (hard): the hook GoP encoders call, at λ0 =
    ``lmbda`` (CompressAI's unit; default the codec's own)."""

    def allocator(codec: LatentCodec, x: Tensor, height: int, width: int) -> Latents:
        res = allocate(codec, x, options, height=height, width=width, lmbda=lmbda, report=False)
        if res.interrupted:  # Ctrl-C inside a solver: stop the encode (the finished GoPs are kept)
            raise KeyboardInterrupt
        return res.latents

    return allocator


__all__ = ["METHODS", "LATENT_CHOICES", "EXACT_MAX_FRAMES", "Allocation", "FrameReport", "SolverOptions",
           "allocate", "make_allocator", "latent_stages", "stage_budgets", "chosen_nodes", "frame_lambda_scales",
           "frame_reports"]
