"""Rate control for images: encode to a target file size by choosing the quality (model) and λ,
with SAVI inside.

Users ask for "this photo in at most 20 kB", not for a λ. With SAVI the encoder trades bits continuously
for the same decoder, so the target is met by a search over λ:

1. **Quality.** Every candidate model (the embedded qualities 2–6 unless ``qualities`` names one) codes
   the image once with its amortized encoder (one encoder pass each, real bytes); the model whose file
   is nearest the target in log size is chosen: SAVI at a λ near a model's own λ is where that model
   codes best.
2. **One SAVI run with λ control.** A plain SAVI run of ``options.steps`` steps (one temperature
   schedule, one Adam state) whose λ is steered while it runs: at ``control_points`` (default 10, at
   most one per ``eval_every`` steps) evenly spaced steps the best point so far is written (real size) and λ is moved along the log-size/log-λ
   slope (0.6) towards the target, at most ×/÷ 2 per point (the loop's ``control`` hook,
   :func:`rdopt.infer.loop.optimize`: λ lives in the target as a tensor changed in place, the best-so-far
   is re-evaluated under the new λ). The first λ is the log-log interpolation between the amortized sizes
   of the neighbouring qualities, divided by the mean of the distortion weight map (a ROI). Every control point is a warm start of the rest of the run from the
   previous λ's latents. (Separate short SAVI runs per λ do not work as a search: SGA's rate keeps rising
   while it anneals — about +13 % from the first to the last tenth of a run at a fixed λ on a 128² crop — so
   a short run's size does not predict a full run's, and restarting the run per λ (Adam state and all)
   cost 0.2 dB at 10 restarts in a 100-step run on the same crop.)
3. **Bracketing and bisection.** From the converged point, short runs of ``search_steps`` (default a
   tenth of the steps) warm-started from the already-run point nearest in log λ, with SGA at a moderate
   temperature (:data:`FINE_TAU`) and a larger step (:data:`FINE_LR`) so that they can move a converged
   rate by a few %: a one-sided step in log λ until the target is bracketed by a file above it and one at
   or below it, then the log-log secant point inside the bracket, replaced by the bisection point of
   log λ when it falls within a tenth of the bracket's ends (safeguarded bisection: the bracket shrinks
   at every step), until a file lands in the window or ``max_search`` runs are spent.

λ stays within a span of the model's λ (×/÷ 3, ×/÷ 8 beyond the lowest and highest quality); when the
span is exhausted without a hit, the neighbouring quality is tried once (another controlled run).

Limitation (measured on a 128² crop of astronaut, 100 steps, lr 0.03, ``benchmarks/image/ratecontrol.py``
smoke run): within one run SAVI moves the rate little — q5's file went from 1751 to 1719 bytes while λ
fell from 0.022 to 0.0083 — so the choice of the quality does most of the work, and a target between the
ranges two neighbouring qualities reach in the step budget is missed (the best file below it is returned,
with a message saying so). More steps widen each quality's range; full-size runs were not made.

Every run's file is a candidate (its real size is measured by writing it). The result is, among the
candidates whose real size is at most the target, one within ``tolerance`` (1 %) of it with the lowest
distortion of the chosen kind (best PSNR for MSE); if none is within the tolerance, the one of lowest
distortion at most the target. **No file above the target is ever returned** while one at or below it
exists; when even the smallest file the models can make (the lowest quality at its lowest λ) is larger
than the target, that smallest file is returned with ``in_range=False`` and a message, and when the target
exceeds what the highest quality makes at its highest λ, the largest file, again with a message.

**Safety net**: when the search ends with every file above the target although the model's λ span goes
lower, at most two more short runs warm-started from the smallest file (a step towards the target, then the
floor of the span) make a file at or below it; if even the floor is above, one plain SAVI run per lower quality
(the file a plain encode at that quality makes) until a file fits.

Cost: the controlled run has the steps of one plain SAVI encode, plus at most ``max_search`` (default 8)
short runs of a tenth of the steps (and the two of the safety net): at most 1.8× the steps of one plain encode (2.8× when the quality is
switched), plus one amortized pass per quality and one entropy coding per control point and run
(``benchmarks/image/ratecontrol.py`` measures the wall time against a plain encode).
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass, field, replace
from typing import Callable, Sequence

import torch
from torch import Tensor

from ..api.image import Encoded, check_distortion, check_weight, header_for, package, rdo_file
from ..coding.container import pack
from ..core.rd import MSE, Distortion, weighted_distortion_term
from ..core.types import LatentCodec, Latents
from ..data.images import LoadedImage, to_batch
from ..infer.codec_graph import Target, codec_graph
from ..infer.image import SaviResult, savi
from ..infer.options import SolverOptions

DEFAULT_SLOPE = 0.6  # d log(bytes) / d log(λ) before two points are measured (hyperprior codecs: 0.4 … 0.8)
SLOPE_RANGE = (0.03, 3.0)
FINE_SLOPE = 0.15  # the same slope for a short warm-started run (measured: ≈ 0.08–0.1, rdopt-msh q3, 128² crop)
FINE_TAU = 0.2  # SGA temperature of the short warm-started runs (τ_end barely moves a converged point)
FINE_LR = 3.0  # their learning rate, times the run's
MAX_STEP = 4.0  # a one-sided step changes λ by at most this factor
CONTROL_STEP = 2.0  # λ changes by at most this factor between two control points of the run
SPAN = 3.0  # λ within ×/÷ SPAN of the model's λ …
END_SPAN = 8.0  # … and ×/÷ END_SPAN beyond the lowest / highest quality


class SizeError(ValueError):
    """A target size or bpp that cannot be used (reported in one line)."""


_SIZE = re.compile(r"^\s*(?P<num>[0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*(?P<unit>[a-zA-Z]*)\s*$")
_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1000, "kib": 1024, "m": 10**6, "mb": 10**6, "mib": 1024**2, "g": 10**9,
          "gb": 10**9, "gib": 1024**3}


def parse_size(text: str) -> int:
    """Bytes of a size string: ``20000``, ``20000B``, ``20kB`` / ``20k`` (×1000), ``20KiB`` (×1024),
    ``1.5MB`` (×10⁶), ``1MiB`` (×1024²), ``1GB`` (×10⁹), ``1GiB`` (×1024³), units in any case; rounded down to
    whole bytes. Raises :class:`SizeError`."""
    m = _SIZE.match(str(text))
    unit = m.group("unit").lower() if m else ""
    if m is None or unit not in _UNITS:
        raise SizeError(f"bad size {text!r}: give bytes or a number with a unit (B, kB, MB, GB: ×1000; KiB, MiB, "
                        "GiB: ×1024), e.g. 20000, 20kB, 19.5KiB, 1MB")
    value = float(m.group("num")) * _UNITS[unit]
    if not math.isfinite(value) or value < 1:
        raise SizeError(f"bad size {text!r}: must be at least 1 byte")
    if value > 2**40:
        raise SizeError(f"bad size {text!r}: too large")
    return int(math.floor(value))


def bytes_for_bpp(bpp: float, width: int, height: int) -> int:
    """The file size in bytes (rounded down) of ``bpp`` bits per pixel of a ``width``×``height`` image."""
    if not (math.isfinite(bpp) and bpp > 0):
        raise SizeError(f"bad target bpp {bpp}: must be a finite number > 0")
    n = int(math.floor(bpp * width * height / 8.0))
    if n < 1:
        raise SizeError(f"target {bpp} bpp of a {width}×{height} image is less than one byte")
    return n


@dataclass
class Trial:
    """One file the search wrote (``bytes``: its real size; ``distortion``: of the chosen kind under the
    weight map, on the 8-bit output, λ = 1; ``psnr``: of the 8-bit output)."""

    phase: str  # "amortized" (a quality's amortized file) | "anneal" (a point of the controlled run) | "search"
    #   | "floor" (the safety net)
    quality: int
    lmbda: float  # the λ its latents were optimized for
    steps: int  # SAVI steps this point added to the search
    total_steps: int  # SAVI steps behind this point (the header's step count)
    bytes: int
    distortion: float
    psnr: float
    seconds: float
    # not reported:
    latents: Latents | None = field(default=None, repr=False)
    run: SaviResult | None = field(default=None, repr=False)
    options: SolverOptions | None = field(default=None, repr=False)
    model: LatentCodec | None = field(default=None, repr=False)

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in ("phase", "quality", "lmbda", "steps", "total_steps", "bytes",
                                              "distortion", "psnr", "seconds")}


@dataclass
class RateControlResult:
    encoded: Encoded  # the chosen file, measured by decoding it (stats.rate_control holds the summary)
    target_bytes: int
    hit: bool  # (1 − tolerance)·target ≤ bytes ≤ target
    in_range: bool  # a file at or below the target exists (False: the smallest file is returned)
    message: str | None
    trials: list[Trial]
    steps: int  # SAVI steps run in total (search, final and corrections)
    seconds: float

    @property
    def runs(self) -> int:
        """SAVI runs: one controlled run per quality tried, plus the short search runs."""
        return len({t.quality for t in self.trials if t.phase == "anneal"}) + sum(t.phase in ("search", "floor") for t in self.trials)

    def summary(self) -> dict:
        return {"target_bytes": self.target_bytes, "hit": self.hit, "in_range": self.in_range,
                "message": self.message, "runs": self.runs, "steps_total": self.steps, "seconds": self.seconds,
                "size_error": self.encoded.stats.file_bytes / self.target_bytes - 1.0,
                "trials": [t.to_dict() for t in self.trials]}


ModelLoader = Callable[[int], LatentCodec]


def _distortion_of(model, x: Tensor, latents: Latents, target: Target) -> tuple[float, float]:
    """(distortion of the chosen kind under the weight, PSNR) of the 8-bit output the latents decode to."""
    h, w = target.visible
    with torch.no_grad():
        ev = model.hard_evaluate(model.quantize(latents))
        x_hat = ev.x_hat[..., :h, :w].clamp(0, 1).mul(255).round().div(255).double()
        ref = x[..., :h, :w].double()
        mse, d = weighted_distortion_term(x_hat, ref, 1.0, target.distortion,
                                          None if target.weight is None else target.weight.double())
    m = float(mse[0])
    return float(d[0]), (math.inf if m == 0 else 10 * math.log10(1.0 / m))


def _file_bytes(model, image: LoadedImage, latents: Latents, options: SolverOptions, steps: int) -> int:
    with torch.no_grad():
        coded = model.compress(model.quantize(latents).select(0))
    return len(pack(rdo_file(model, coded, 0, header_for(model, image, options, steps))))


def _clone(latents: Latents) -> Latents:
    return Latents.of(latents.names, [t.detach().clone() for t in latents.values()])


def _measure(model, image: LoadedImage, target: Target, latents: Latents, options: SolverOptions, total_steps: int
             ) -> tuple[int, float, float]:
    n = _file_bytes(model, image, latents, options, total_steps)
    d, p = _distortion_of(model, target.x, latents, target)
    return n, d, p


def _check_interrupt(res: SaviResult) -> None:
    if res.dag is not None and res.dag.interrupted:
        raise KeyboardInterrupt  # Ctrl-C inside the loop: stop the whole search


def _run(model, image: LoadedImage, target: Target, options: SolverOptions, init: Latents | None, phase: str,
         total_before: int) -> Trial:
    """A separate SAVI run at the target's λ and its file."""
    t0 = time.perf_counter()
    res = savi(codec_graph(model), target, options, init=init)
    _check_interrupt(res)
    steps = sum(st.steps for st in res.dag.stages) if res.dag is not None else 0
    n, d, p = _measure(model, image, target, res.latents, options, total_before + steps)
    return Trial(phase, model.quality, float(target.lmbda), steps, total_before + steps, n, d, p,
                 time.perf_counter() - t0, res.latents, res, options, model)


def _slope(points: list[Trial]) -> float:
    """d log bytes / d log λ from the two most recent points of distinct λ (else the default)."""
    for i in range(len(points) - 1, 0, -1):
        a, b = points[i], points[i - 1]
        if a.lmbda != b.lmbda and a.bytes != b.bytes:
            s = math.log(a.bytes / b.bytes) / math.log(a.lmbda / b.lmbda)
            if SLOPE_RANGE[0] <= s <= SLOPE_RANGE[1]:
                return s
    return DEFAULT_SLOPE


def _next_lambda(points: list[Trial], target: int, aim: float, lo: float, hi: float,
                 slope: float | None = None) -> float | None:
    """The next λ to try (None: nothing left to try within [lo, hi])."""
    above = [p for p in points if p.bytes > target]
    a = min(above, key=lambda p: p.lmbda) if above else None  # the smallest λ known not to fit
    # the largest λ known to fit below it (SGA's noise can make a larger λ fit too: the bracket ignores it)
    below = [p for p in points if p.bytes <= target and (a is None or p.lmbda < a.lmbda)]
    if a is not None and below:
        b = max(below, key=lambda p: p.lmbda)
        la, lb = math.log(a.lmbda), math.log(b.lmbda)
        if la - lb < 1e-3:
            return None
        # secant in log-log towards the aim, safeguarded by bisection
        sa, sb = math.log(a.bytes), math.log(b.bytes)
        t = (math.log(aim) - sb) / (sa - sb) if sa != sb else 0.5
        if not 0.1 <= t <= 0.9:
            t = 0.5
        return math.exp(lb + t * (la - lb))
    if a is not None and a is not points[-1] and points[-1].bytes <= target:
        points = points + [a]  # step down from the smallest λ that does not fit
    last = points[-1]
    sl = _slope(points) if len(points) > 1 or slope is None else slope
    factor = (aim / last.bytes) ** (1.0 / sl)
    factor = min(MAX_STEP, max(1.0 / MAX_STEP, factor))
    lm = min(hi, max(lo, last.lmbda * factor))
    if any(abs(math.log(lm / p.lmbda)) < 1e-6 for p in points):
        return None  # at a bound already tried
    return lm


def _fine_options(options: SolverOptions, steps: int) -> SolverOptions:
    """Short warm-started runs after the anneal: SGA held at a moderate temperature (:data:`FINE_TAU`, at
    most τ0) with a larger step (:data:`FINE_LR`), enough to move a converged point's rate by a few %."""
    tau = min(FINE_TAU, options.tau0)
    options = options.image()
    return replace(options, steps=steps, schedule="paper", tau0=tau, decay=0.0, t0=0,
                   tau_end=min(options.tau_end, tau), lr=options.lr * FINE_LR, ste_lr=options.ste_lr * FINE_LR,
                   lr_decay="none")


def encode_to_size(image: LoadedImage, target_bytes: int, options: SolverOptions, loader: ModelLoader,
                   qualities: Sequence[int], *, lambdas: dict[int, float] | None = None,
                   distortion: Distortion = MSE, weight: Tensor | None = None, tolerance: float = 0.01,
                   search_steps: int | None = None, max_search: int = 8, control_points: int = 10) -> RateControlResult:
    """Encode ``image`` to a file of at most ``target_bytes`` (see the module docstring).

    ``loader(q)`` gives the model of quality ``q`` (loaded once per quality); ``qualities``: the ones to
    choose from, in increasing rate order (one: λ only); ``lambdas``: each quality's λ (default the
    model's own ``lmbda``). ``options``: the SAVI settings of a plain encode (its ``steps`` for the final
    run, ``search_steps`` — default a tenth — for each search run); ``distortion``, ``weight`` as in
    :func:`rdopt.api.image.encode_images`."""
    if options.method == "amortized" or options.steps == 0:
        raise ValueError("a target size needs an optimizing method (sga, …) with steps > 0")
    if options.solver != "joint":
        raise ValueError("a target size warm-starts SAVI runs: only the joint solver supports that")
    if target_bytes < 1:
        raise SizeError(f"target size must be at least 1 byte, got {target_bytes}")
    if not 0 < tolerance < 1:
        raise ValueError(f"tolerance must be in (0, 1), got {tolerance}")
    qualities = list(qualities)
    if not qualities:
        raise ValueError("no quality to choose from")
    t_start = time.perf_counter()
    h, w = image.height, image.width
    notes = check_distortion(distortion, h, w)
    weight = check_weight(weight, 1, h, w)
    s = search_steps if search_steps is not None else max(1, options.steps // 10)
    models: dict[int, LatentCodec] = {}

    def model_of(q: int):
        if q not in models:
            models[q] = loader(q)
        return models[q]

    def target_for(model, lm: float) -> Target:
        x = to_batch([image.rgb], model.pad_multiple, model.device)
        wt = None if weight is None else weight.to(device=model.device, dtype=x.dtype)
        return Target(x, lm if isinstance(lm, Tensor) else float(lm), h, w, distortion=distortion, weight=wt)

    def lambda_of(q: int) -> float:
        return float(lambdas[q]) if lambdas and q in lambdas else float(model_of(q).lmbda)

    trials: list[Trial] = []
    aim = target_bytes * (1.0 - tolerance / 2.0)
    lower = (1.0 - tolerance) * target_bytes

    # 1. the quality: the amortized file nearest the target (log size); a first λ from the amortized sizes
    sizes: dict[int, int] = {}
    for q in qualities if len(qualities) > 1 else []:
        m = model_of(q)
        t0 = time.perf_counter()
        tg = target_for(m, lambda_of(q))
        with torch.no_grad():
            lat = m.amortize(tg.x)
        n = _file_bytes(m, image, lat, replace(options, method="amortized", steps=0), 0)
        d, p = _distortion_of(m, tg.x, lat, tg)
        trials.append(Trial("amortized", q, lambda_of(q), 0, 0, n, d, p, time.perf_counter() - t0))
        sizes[q] = n
    q_index = 0
    if sizes:
        q_index = min(range(len(qualities)), key=lambda i: abs(math.log(sizes[qualities[i]] / target_bytes)))

    def bounds(i: int) -> tuple[float, float]:
        lm = lambda_of(qualities[i])
        lo = lm / (END_SPAN if i == 0 else SPAN)
        hi = lm * (END_SPAN if i == len(qualities) - 1 else SPAN)
        return lo, hi

    # a weight map scales the distortion term by about its mean: start from λ/mean(w), where a plain encode's
    # trade-off would be (ROI at about the plain encode's size)
    w_mean = 1.0 if weight is None else float(weight.double().mean())

    def first_lambda(i: int) -> float:
        """λ whose file should be near the target: log-log interpolation between the amortized sizes of the
        neighbouring qualities (one quality: the default slope), divided by the weight map's mean, within
        the model's span."""
        q = qualities[i]
        lm, slope = lambda_of(q) / w_mean, DEFAULT_SLOPE
        if sizes:
            nb = i + 1 if (target_bytes > sizes[q] and i + 1 < len(qualities)) or i == 0 else i - 1
            if 0 <= nb < len(qualities) and sizes[qualities[nb]] != sizes[q] and lambda_of(qualities[nb]) != lm:
                s_ = math.log(sizes[qualities[nb]] / sizes[q]) / math.log(lambda_of(qualities[nb]) / lm)
                if SLOPE_RANGE[0] <= s_ <= SLOPE_RANGE[1]:
                    slope = s_
            ratio = target_bytes * (1.0 - tolerance / 2.0) / sizes[q]
        else:
            lo, hi = bounds(i)
            return min(hi, max(lo, lm))  # no amortized measurement: start at the model's λ (over mean(w))
        lo, hi = bounds(i)
        return min(hi, max(lo, lm * ratio ** (1.0 / slope)))

    # 2. one SAVI run whose λ follows the measured size (control points), then short runs warm-started from
    #    the nearest (log λ) point: bracketing and safeguarded secant/bisection in log λ. The neighbouring
    #    quality is tried once when the model's λ span is exhausted without a hit.
    switched = 0
    runs = 0
    spent = 0
    while True:
        q = qualities[q_index]
        model = model_of(q)
        lo, hi = bounds(q_index)
        lam = torch.tensor(first_lambda(q_index), dtype=torch.float64)
        tg = target_for(model, lam)
        S = options.steps
        every = max(options.eval_every, int(round(S / max(control_points, 1) / options.eval_every)) * options.eval_every)
        points: list[Trial] = []
        state = {"next": every, "last": 0, "t": time.perf_counter()}

        def control(step: int, latents: Latents) -> bool:
            if step < state["next"] and step != S:
                return False
            lm_now = float(lam)
            fixed = target_for(model, lm_now)
            n, d, p = _measure(model, image, fixed, latents, options, spent + step)
            now = time.perf_counter()
            points.append(Trial("anneal", q, lm_now, step - state["last"], spent + step, n, d, p, now - state["t"],
                                _clone(latents), None, options, model))
            state.update(last=step, t=now, next=state["next"] + every)
            if step >= S:
                return False
            factor = min(CONTROL_STEP, max(1.0 / CONTROL_STEP, (aim / n) ** (1.0 / DEFAULT_SLOPE)))
            new = min(hi, max(lo, lm_now * factor))
            if new == lm_now:
                return False
            lam.fill_(new)
            return True

        res = savi(codec_graph(model), tg, options, control=control)
        _check_interrupt(res)
        spent += S
        for t in points:
            t.run = res
        trials += points
        chain = [points[-1]]
        fine = _fine_options(options, s)
        while runs < max_search and not (lower <= chain[-1].bytes <= target_bytes):
            lm_next = _next_lambda(chain, target_bytes, aim, lo, hi, slope=FINE_SLOPE)
            if lm_next is None:
                break
            near = min(chain, key=lambda t: abs(math.log(t.lmbda / lm_next)))
            tr = _run(model, image, target_for(model, lm_next), fine, near.latents, "search", spent)
            spent += tr.steps
            runs += 1
            trials.append(tr)
            chain.append(tr)
        on_model = points + chain[1:]
        if any(lower <= p.bytes <= target_bytes for p in on_model) or switched:
            break
        direction = 0
        at_lo = any(p.lmbda <= lo * (1 + 1e-9) for p in on_model)
        at_hi = any(p.lmbda >= hi * (1 - 1e-9) for p in on_model)
        if at_lo and all(p.bytes > target_bytes for p in chain) and q_index > 0:
            direction = -1
        elif at_hi and all(p.bytes < lower for p in chain) and q_index < len(qualities) - 1:
            direction = 1
        if not direction:
            break
        q_index += direction
        switched += 1

    # 2b. safety net: no file at or below the target was made although the model could go lower (the search
    #     ran out of runs above the target): at most two more short runs warm-started from the smallest file,
    #     one a step towards the aim along the short runs' slope, then one at the floor of the model's λ span
    if not any(t.bytes <= target_bytes for t in trials if t.latents is not None):
        for _ in range(2):
            smallest = min((t for t in trials if t.latents is not None), key=lambda t: (t.bytes, t.lmbda))
            lo_s = bounds(qualities.index(smallest.quality))[0]
            if smallest.bytes <= target_bytes or smallest.lmbda <= lo_s * (1 + 1e-9):
                break
            step = max(lo_s, smallest.lmbda * (aim / smallest.bytes) ** (1.0 / FINE_SLOPE))
            lm_next = step if not any(t.phase == "floor" for t in trials) else lo_s
            tr = _run(smallest.model, image, target_for(smallest.model, lm_next), _fine_options(options, s),
                      smallest.latents, "floor", spent)
            spent += tr.steps
            trials.append(tr)
        # still above at the floor of its span: the lower qualities, each one plain SAVI run (the steps of a plain
        # encode, from its amortized latents, at its own λ: the file a user would get by picking that quality)
        # until one makes a file at or below the target
        made = [t for t in trials if t.latents is not None]
        i = min(qualities.index(t.quality) for t in made)
        while not any(t.bytes <= target_bytes for t in made) and i > 0:
            i -= 1
            low = model_of(qualities[i])
            tr = _run(low, image, target_for(low, lambda_of(qualities[i])), options, None, "floor", spent)
            spent += tr.steps
            trials.append(tr)
            made.append(tr)

    # 3. the answer
    def best(cands: list[Trial]) -> Trial | None:
        fit = [t for t in cands if t.bytes <= target_bytes]
        hits = [t for t in fit if t.bytes >= lower]
        pool = hits or fit
        return min(pool, key=lambda t: (t.distortion, -t.bytes)) if pool else None

    run_trials = [t for t in trials if t.latents is not None]
    chosen = best(run_trials)
    in_range = chosen is not None
    message = None
    if chosen is None:
        chosen = min(run_trials, key=lambda t: t.bytes)
        message = (f"target {target_bytes} bytes is below the smallest file the model(s) make for this image: "
                   f"{chosen.bytes} bytes at quality {chosen.quality}, λ={chosen.lmbda:.3g} (written)")
    hit = lower <= chosen.bytes <= target_bytes
    if in_range and not hit:
        top = qualities[-1]
        at_top = chosen.quality == top and chosen.lmbda >= bounds(len(qualities) - 1)[1] * (1 - 1e-9)
        if at_top or all(t.bytes < lower for t in run_trials):
            message = (f"target {target_bytes} bytes is above what the model(s) make for this image: the largest file "
                       f"at most the target is {chosen.bytes} bytes ({100 * (chosen.bytes / target_bytes - 1):+.1f} %) "
                       f"at quality {chosen.quality}, λ={chosen.lmbda:.3g}")
        elif switched:
            tried = sorted({t.quality for t in run_trials})
            message = (f"target {target_bytes} bytes lies between what qualities {tried[0]} and {tried[-1]} make for this "
                       f"image in {options.steps} steps: the best file at most the target is {chosen.bytes} bytes "
                       f"({100 * (chosen.bytes / target_bytes - 1):+.1f} %) at quality {chosen.quality}; more steps "
                       "widen each quality's range")
        else:
            message = (f"the search did not land within {100 * tolerance:g} % of the target: the best file at most the "
                       f"target is {chosen.bytes} bytes ({100 * (chosen.bytes / target_bytes - 1):+.1f} %)")
    steps = spent
    run = chosen.run
    result = SaviResult(chosen.latents, run.initial_loss, run.final_loss, run.loop, list(run.messages), run.dag)
    enc = package(chosen.model, [image], target_for(chosen.model, chosen.lmbda), result, chosen.options,
                  steps=chosen.total_steps)[0]
    if enc.stats.file_bytes != chosen.bytes:  # the search measured exactly this file
        raise RuntimeError(f"rate control: file of {enc.stats.file_bytes} bytes, measured {chosen.bytes}")
    seconds = time.perf_counter() - t_start
    rc = RateControlResult(enc, target_bytes, hit, in_range, message, trials, steps, seconds)
    messages = tuple(notes) + enc.stats.messages + ((message,) if message else ())
    stats = replace(enc.stats, messages=messages, rate_control=rc.summary(), encode_seconds=seconds,
                    optimize_seconds=sum(t.seconds for t in trials))
    rc.encoded = enc._replace(stats=stats)
    return rc


__all__ = ["RateControlResult", "SizeError", "Trial", "bytes_for_bpp", "encode_to_size", "parse_size"]
