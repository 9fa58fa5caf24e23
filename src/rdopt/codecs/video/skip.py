"""Skip mode of the video codecs: P-frames and 16×16 blocks that take the motion-compensated prediction as their
reconstruction, for any P-frame codec of :mod:`.pframe` (the stream format is :mod:`rdopt.coding.skip`).

**Decoding** (:func:`reconstruct`): frame by frame in order, each frame from the decoded previous one — a
skipped frame or block changes the frame, hence the next frame's reference. For a P-frame ``t`` with prediction
``x̄_t`` (:attr:`MotionEvaluation.prediction`) and residual reconstruction ``x̂_t`` (:attr:`ResidualEvaluation.x_hat`):

* no skip stream: ``x̂_t`` (as without skip mode);
* whole-frame skip: ``x̄_t`` (the frame has no residual latents);
* block skip with mask ``M`` (16×16 blocks of the padded frame): ``M·x̄_t + (1 − M)·x̂_t``.

**The encoder's choice** (:func:`choose_skips`), after the GoP's hard latents are chosen (any allocation method):
frame by frame in order, on the references the decoder will have (earlier skips applied), with λ in CompressAI's
unit and costs in bits (``bits + λ·255²·SSE/3``, SSE of the decoded 8-bit frame on [0, 1] over its visible
pixels and three channels; divided by the visible pixel count this is the frame's ``bpp + λ·255²·MSE``):

1. *per block*: ``J_code = λ·255²·SSE_code/3 + bits of the residual latent positions under the block`` and
   ``J_skip = λ·255²·SSE_pred/3 + bits of those positions at their mode``, plus each choice's mask bits
   (Bernoulli(p), p refitted to the chosen mask a few times). The positions' bits come from the codec's
   optional ``residual_position_bits`` (the entropy model per position), else are measured through
   ``evaluate_residual`` block by block;
2. where blocks skip, the residual latent positions wholly under them are set to their mode — the value the
   codec rounds around (the Gaussian's mean, symbol 0: the codec's optional ``residual_at_mode``, which sets them
   in decoding order for a context model, else the ``offset`` its relaxation is called with) — so they cost the least
   their prior allows (the decoder ignores them there), and the frame is decoded again (the synthesis reaches past a
   block): the mask is kept only if the frame's total estimated cost (entropy-model bits of the streams written
   incl. the mask's payload and every stream's header in the container, distortion of the decoded 8-bit frame)
   is lower than without; else a mask of the blocks with the largest margins is tried (half, a quarter);
3. a whole-frame skip (motion only: its bits, the skip stream, the prediction's distortion), for codecs that
   decode the motion pair alone (:meth:`VideoCodec.frame_skip_ok`);
4. of these choices (no skip, the whole frame, the block mask), the one whose cost plus the next frame's cost
   (that frame decoded without skip on the choice's reconstruction) is lowest: a skip degrades the next
   frame's reference, and the next frame's latents were chosen for the reference without it. One frame of
   look-ahead costs a decode per choice; on carphone it turned skips that cost more than they saved over a GoP
   into savings (``benchmarks/video/skip.md``).

The latents of later frames stay those the allocation chose. Since they were chosen for references without
skips, the GoP's total estimated cost with the skips is compared with that without any skip (both decoded as the
decoder will), and the GoP keeps no skip if it would cost more: skip mode never raises the encoder's estimated
GoP cost (:attr:`SkipChoice.cost` ≤ :attr:`SkipChoice.cost_without`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ...coding.container import varint
from ...coding.skip import BLOCK, FrameSkip, block_grid, pack_skip, probability_byte, stream_name
from ...core.types import Latents
from ...relax.rounding import hard, hard_round
from .pframe import MotionEvaluation

RESIDUAL_KINDS = ("residual", "residual-hyper")
MOTION_KINDS = ("motion", "motion-hyper")
MASK_FITS = 4  # refits of the mask's Bernoulli probability to the chosen mask
FALLBACK_BATCH = 8  # blocks measured per evaluate_residual call without residual_position_bits


# ---------------------------------------------------------------------------------------- names and masks
def frame_names(gop_codec, t: int) -> dict[str, str]:
    """Frame ``t``'s latent names by kind (``motion``, ``motion-hyper``, ``residual``, ``residual-hyper``),
    read from ``gop_codec.latents``."""
    out = {s.kind: s.name for s in gop_codec.latents if s.frame == t}
    missing = [k for k in MOTION_KINDS + RESIDUAL_KINDS if k not in out]
    if missing:
        raise ValueError(f"frame {t} of the GoP has no latent of kind {', '.join(missing)}")
    return out


def pixel_mask(mask: np.ndarray, height: int, width: int, like: Tensor) -> Tensor:
    """A ``1×1×H×W`` bool tensor of a ``rows × cols`` block mask over a padded frame of ``height × width``."""
    m = torch.as_tensor(np.asarray(mask, dtype=bool), device=like.device)
    m = m.repeat_interleave(BLOCK, 0).repeat_interleave(BLOCK, 1)[:height, :width]
    return m[None, None]


def position_mask(pix: Tensor, shape: Sequence[int]) -> Tensor:
    """``1×1×h×w`` bool: the latent positions (grid ``shape[-2:]`` over the frame) whose whole cell lies in the
    skipped pixels ``pix``."""
    h, w = int(shape[-2]), int(shape[-1])
    outside = F.adaptive_max_pool2d((~pix).float(), (h, w))
    return outside < 0.5


def _block_sums(a: Tensor, rows: int, cols: int) -> Tensor:
    """``rows × cols`` sums of 16×16 blocks of a ``H×W`` map (zero-padded at the bottom and right)."""
    h, w = a.shape[-2:]
    a = F.pad(a.reshape(1, 1, h, w), (0, cols * BLOCK - w, 0, rows * BLOCK - h))
    return a.reshape(rows, BLOCK, cols, BLOCK).sum((1, 3))


# ---------------------------------------------------------------------------------------- decoding
def _hard_pair(names: Sequence[str]) -> dict[str, object]:
    h = hard()
    return {n: h for n in names}


@torch.no_grad()
def reconstruct(gop_codec, latents: Mapping[str, Tensor], skips: Sequence[FrameSkip | None]) -> tuple[Tensor, dict]:
    """The decoder's frames ``B×F×3×H×W`` (not clamped) and each latent's estimated bits, from hard latents and
    each frame's skip (``None``: none; frame 0 is never skipped). A frame skipped whole needs no residual
    latents."""
    frames = len(skips)
    if frames < 1 or skips[0] is not None:
        raise ValueError("a GoP's frame 0 (the I-frame) is never skipped")
    pf = gop_codec.pframe
    ev = gop_codec.iframe.evaluate(Latents({"y": latents["y_0"], "z": latents["z_0"]}), _hard_pair(("y", "z")))
    out, rates = [ev.x_hat], {"y_0": ev.rates["y"], "z_0": ev.rates["z"]}
    ref = ev.x_hat
    for t in range(1, frames):
        n = frame_names(gop_codec, t)
        m, mh, r, rh = n["motion"], n["motion-hyper"], n["residual"], n["residual-hyper"]
        b = {k: gop_codec.base_of(v) for k, v in n.items()}
        motion = pf.evaluate_motion(latents[m], latents[mh], ref, _hard_pair((b["motion"], b["motion-hyper"])))
        rates[m], rates[mh] = motion.bits, motion.hyper_bits
        skip = skips[t]
        if skip is not None and skip.mode == "frame":
            x = motion.prediction
        else:
            res = pf.evaluate_residual(latents[r], latents[rh], _hard_pair((b["residual"], b["residual-hyper"])), motion)
            rates[r], rates[rh] = res.bits, res.hyper_bits
            x = res.x_hat
            if skip is not None:
                x = torch.where(pixel_mask(skip.mask, x.shape[-2], x.shape[-1], x), motion.prediction, x)
        out.append(x)
        ref = x
    return torch.stack(out, 1), rates


# ---------------------------------------------------------------------------------------- the encoder's choice
@dataclass(frozen=True)
class SkipChoice:
    """The skips of one GoP: ``latents`` to code (residual latents under skipped blocks at their mode; those of a
    frame skipped whole are left as they were and not written), ``skips`` per frame, and the GoP's estimated cost
    (Σ over frames of bpp + λ·255²·MSE, module docstring) with them and without any skip."""

    latents: Latents
    skips: tuple[FrameSkip | None, ...]
    cost: float
    cost_without: float

    @property
    def any(self) -> bool:
        return any(s is not None for s in self.skips)


class _Offsets:
    """Hard rounding that keeps the offset it was called with (the value the codec rounds around)."""

    is_hard = True

    def __init__(self):
        self.offset: Tensor | None = None
        self.calls = 0  # more than one: the latent was rounded in parts (a context model), offset is not all of it

    def __call__(self, v: Tensor, offset) -> Tensor:
        self.calls += 1
        self.offset = torch.as_tensor(offset, dtype=v.dtype, device=v.device).expand_as(v)
        return hard_round(v, offset)


def stream_header_bits(name: str, nbytes: float) -> float:
    """Bits of a stream's entry in a frame chunk: kind, name length, name, payload length (varint)."""
    return 8.0 * (2 + len(name) + len(varint(max(int(math.ceil(nbytes)), 0))))


def _latent_stream_bits(name: str, bits: float) -> float:
    """A latent stream's estimated bits with its header."""
    return bits + stream_header_bits(name, bits / 8.0)


class _Frames:
    """Costs of decoded frames against the padded source (visible pixels, 8-bit as decoding writes them)."""

    def __init__(self, x: Tensor, height: int, width: int, lmbda: float):
        self.x, self.height, self.width = x, height, width
        self.npix = height * width
        self.scale = lmbda * 255.0 ** 2 / 3.0  # bits per unit of SSE on [0, 1] summed over channels

    def sse_map(self, t: int, x_hat: Tensor) -> Tensor:
        """Per pixel of the padded frame: the squared error of the 8-bit frame summed over channels (0 outside
        the visible frame)."""
        q = x_hat[0].clamp(0, 1).mul(255.0).round().div(255.0)
        e = (q - self.x[0, t]).square().sum(0)
        e[self.height:, :] = 0
        e[:, self.width:] = 0
        return e

    def distortion_bits(self, t: int, x_hat: Tensor) -> float:
        return self.scale * float(self.sse_map(t, x_hat).sum())


def _expand_motion(motion: MotionEvaluation, k: int) -> MotionEvaluation:
    def ex(v):
        return v.expand((k,) + tuple(v.shape[1:])) if isinstance(v, Tensor) and v.dim() and v.shape[0] == 1 else v

    state = None if motion.state is None else {key: ex(v) for key, v in motion.state.items()}
    return replace(motion, latent=ex(motion.latent), hyper=ex(motion.hyper), prediction=ex(motion.prediction),
                   state=state)


def _block_savings(pf, gop_codec, names: dict, y: Tensor, z: Tensor, mode: Tensor, motion: MotionEvaluation,
                   res_bits: float, frame_hw: tuple[int, int], rows: int, cols: int) -> Tensor:
    """``rows × cols`` bits the residual latent saves when the positions under each block (alone) are at their
    mode."""
    hp, wp = frame_hw
    fn = getattr(pf, "residual_position_bits", None)
    if callable(fn):
        per_pos = fn(y, z) - fn(mode, z)  # 1×h×w
        h, w = per_pos.shape[-2:]
        dens = F.interpolate(per_pos[:, None].float(), size=(hp, wp), mode="nearest")[0, 0] * (h * w / (hp * wp))
        return _block_sums(dens, rows, cols)
    # measured: the bits of the latent with one block's positions at their mode, FALLBACK_BATCH blocks per call
    br, brh = gop_codec.base_of(names["residual"]), gop_codec.base_of(names["residual-hyper"])
    relax = _hard_pair((br, brh))
    out = torch.zeros(rows * cols, dtype=torch.float64)
    like = torch.zeros(1, 1, hp, wp, device=y.device)
    for start in range(0, rows * cols, FALLBACK_BATCH):
        idx = list(range(start, min(start + FALLBACK_BATCH, rows * cols)))
        ys = []
        for i in idx:
            one = np.zeros((rows, cols), dtype=bool)
            one.flat[i] = True
            pos = position_mask(pixel_mask(one, hp, wp, like), y.shape)
            ys.append(torch.where(pos, mode, y))
        k = len(idx)
        res = pf.evaluate_residual(torch.cat(ys), z.expand((k,) + tuple(z.shape[1:])), relax, _expand_motion(motion, k))
        out[idx] = res_bits - res.bits.detach().double().cpu()
    return out.reshape(rows, cols).to(y.device)


def _fit_mask(margin: Tensor) -> np.ndarray | None:
    """The block mask that minimises Σ (skip ? −margin : 0) + mask bits, with p refitted to the mask
    ``MASK_FITS`` times (``margin`` = J_code − J_skip in bits before mask bits)."""
    p = 128
    mask = None
    m = margin.double().cpu().numpy()
    for _ in range(MASK_FITS):
        q = p / 256.0
        new = m > math.log2(1.0 - q) - math.log2(q)  # J_skip − log2(p) < J_code − log2(1 − p)
        if not new.any():
            return None
        if mask is not None and np.array_equal(new, mask):
            break
        mask = new
        p = probability_byte(mask)
    return mask


@torch.no_grad()
def choose_skips(gop_codec, x: Tensor, latents: Latents, height: int, width: int, lmbda: float,
                 frame_skip: bool | None = None) -> SkipChoice:
    """Skip decisions for one GoP (module docstring). ``x``: the padded GoP ``1×T×3×H×W`` in [0, 1] (the
    encoder's input); ``latents``: its hard latents (``gop_codec.quantize`` grid, all of them); ``height``,
    ``width``: the visible size; ``lmbda``: λ in CompressAI's unit. ``frame_skip``: offer whole-frame skips
    (default: when the codec decodes the motion pair alone)."""
    if x.dim() != 5 or x.shape[0] != 1:
        raise ValueError(f"skip decisions take one GoP 1×T×3×H×W, got {tuple(x.shape)}")
    frames = int(x.shape[1])
    if frame_skip is None:
        frame_skip = gop_codec.video.frame_skip_ok()
    costs = _Frames(x, height, width, lmbda)
    npix = costs.npix
    values = dict(latents.items())
    ev = _Evaluator(gop_codec, values, costs)
    i0 = gop_codec.iframe.evaluate(Latents({"y": latents["y_0"], "z": latents["z_0"]}), _hard_pair(("y", "z")))
    i_cost = (_latent_stream_bits("y_0", float(i0.rates["y"][0])) + _latent_stream_bits("z_0", float(i0.rates["z"][0]))
              + costs.distortion_bits(0, i0.x_hat)) / npix
    cost, cost_without = i_cost, i_cost
    ref = plain_ref = i0.x_hat
    skips: list[FrameSkip | None] = [None]
    for t in range(1, frames):
        options = _options(ev, t, ref, frame_skip)
        if t + 1 < frames and len(options) > 1:  # each option with the next frame's cost on its reconstruction
            best = min(options, key=lambda o: o.cost + ev.plain(t + 1, o.x_hat).cost)
        else:
            best = min(options, key=lambda o: o.cost)
        plain = ev.plain(t, plain_ref)
        cost += best.cost / npix
        cost_without += plain.cost / npix
        skips.append(best.skip)
        if best.skip is not None and best.skip.mode == "blocks":
            values[frame_names(gop_codec, t)["residual"]] = best.residual
        ref, plain_ref = best.x_hat, plain.x_hat
        ev.forget(t)
    if cost > cost_without:  # later frames' latents fit the references without skips better: keep none
        return SkipChoice(latents, (None,) * frames, cost_without, cost_without)
    return SkipChoice(Latents((n, values[n]) for n in latents.names), tuple(skips), cost, cost_without)


@dataclass(frozen=True)
class _Option:
    cost: float  # bits (rate + λ·255²·SSE/3)
    x_hat: Tensor
    skip: FrameSkip | None = None
    residual: Tensor | None = None


@dataclass(frozen=True)
class _Decoded:
    """A P-frame decoded without skip on one reference: both stages, the residual's offsets, its cost."""

    motion: MotionEvaluation
    x_hat: Tensor
    mode: Tensor | None  # the residual latent's offsets (the value each position is coded around)
    motion_bits: float  # with the streams' headers
    residual_bits: float  # the residual latent's estimated bits (no header)
    sse: Tensor
    cost: float


class _Evaluator:
    """Frame ``t`` decoded without skip on a reference, once per (frame, reference) while the reference lives
    (the choice of frame ``t``, the look-ahead from frame ``t − 1`` and the chain without skips share it)."""

    def __init__(self, gop_codec, values: Mapping[str, Tensor], costs: _Frames):
        self.gop_codec, self.values, self.costs = gop_codec, values, costs
        self._cache: dict = {}

    def forget(self, t: int) -> None:
        """Drop what frames ``≤ t`` decoded (decided)."""
        self._cache = {k: v for k, v in self._cache.items() if k[0] > t}

    def decode(self, t: int, ref: Tensor) -> _Decoded:
        key = (t, id(ref))
        if key in self._cache:
            return self._cache[key][0]
        g, v = self.gop_codec, self.values
        pf = g.pframe
        n = frame_names(g, t)
        m, mh, r, rh = n["motion"], n["motion-hyper"], n["residual"], n["residual-hyper"]
        motion = pf.evaluate_motion(v[m], v[mh], ref, _hard_pair((g.base_of(m), g.base_of(mh))))
        offsets = _Offsets()
        res = pf.evaluate_residual(v[r], v[rh], {g.base_of(r): offsets, g.base_of(rh): hard()}, motion)
        motion_bits = _latent_stream_bits(m, float(motion.bits[0])) + _latent_stream_bits(mh, float(motion.hyper_bits[0]))
        res_bits = float(res.bits[0])
        residual_bits = _latent_stream_bits(r, res_bits) + _latent_stream_bits(rh, float(res.hyper_bits[0]))
        sse = self.costs.sse_map(t, res.x_hat)
        out = _Decoded(motion, res.x_hat, offsets.offset if offsets.calls == 1 else None, motion_bits, res_bits, sse,
                       motion_bits + residual_bits + self.costs.scale * float(sse.sum()))
        self._cache[key] = (out, ref)  # keeps the reference alive: its id is not reused meanwhile
        return out

    def plain(self, t: int, ref: Tensor) -> _Option:
        d = self.decode(t, ref)
        return _Option(d.cost, d.x_hat)


def _options(ev: _Evaluator, t: int, ref: Tensor, frame_skip: bool) -> list[_Option]:
    """Frame ``t``'s choices on reference ``ref``: without skip, skipped whole (``frame_skip``), and the block
    mask whose cost is lowest among those tried (only if it costs less than without skip)."""
    g, values, costs = ev.gop_codec, ev.values, ev.costs
    pf = g.pframe
    n = frame_names(g, t)
    r, rh = n["residual"], n["residual-hyper"]
    br, brh = g.base_of(r), g.base_of(rh)
    d = ev.decode(t, ref)
    plain = _Option(d.cost, d.x_hat)
    options = [plain]
    pred = d.motion.prediction
    sse_pred = costs.sse_map(t, pred)
    skip_name = stream_name(t)
    if frame_skip:
        payload = pack_skip(FrameSkip("frame"))
        bits = d.motion_bits + stream_header_bits(skip_name, len(payload)) + 8 * len(payload)
        options.append(_Option(bits + costs.scale * float(sse_pred.sum()), pred, FrameSkip("frame")))
    at_mode = getattr(pf, "residual_at_mode", None)
    at_mode = at_mode if callable(at_mode) else None
    mode = at_mode(values[r], values[rh], torch.ones_like(values[r], dtype=torch.bool)) if at_mode else d.mode
    if mode is None:  # the codec never rounded its residual latent around one offset: no block skips
        return options
    hp, wp = pred.shape[-2:]
    rows, cols = block_grid(hp, wp)
    saving = _block_savings(pf, g, n, values[r], values[rh], mode, d.motion, d.residual_bits, (hp, wp), rows, cols)
    margin = saving.double() - costs.scale * (_block_sums(sse_pred, rows, cols) - _block_sums(d.sse, rows, cols)).double()
    mask = _fit_mask(margin)
    tried = 0
    while mask is not None and tried < 3:
        tried += 1
        pix = pixel_mask(mask, hp, wp, pred)
        pos = position_mask(pix, values[r].shape)
        y = at_mode(values[r], values[rh], pos) if at_mode else torch.where(pos, mode, values[r])
        res = pf.evaluate_residual(y, values[rh], _hard_pair((br, brh)), d.motion)
        x_hat = torch.where(pix, pred, res.x_hat)
        skip = FrameSkip("blocks", mask)
        payload = pack_skip(skip)
        bits = (d.motion_bits + _latent_stream_bits(r, float(res.bits[0])) + _latent_stream_bits(rh, float(res.hyper_bits[0]))
                + stream_header_bits(skip_name, len(payload)) + 8 * len(payload))
        option = _Option(bits + costs.distortion_bits(t, x_hat), x_hat, skip, y)
        if option.cost < plain.cost:
            options.append(option)
            break
        mask = _stricter(mask, margin)
    return options


def _stricter(mask: np.ndarray, margin: Tensor) -> np.ndarray | None:
    """The half of the skipped blocks with the largest margins (``None`` when one block was left)."""
    k = int(mask.sum()) // 2
    if k < 1:
        return None
    m = margin.double().cpu().numpy()
    keep = np.argsort(np.where(mask, m, -np.inf), axis=None)[::-1][:k]
    out = np.zeros_like(mask)
    out.flat[keep] = True
    return out


__all__ = ["SkipChoice", "choose_skips", "reconstruct", "frame_names", "pixel_mask", "position_mask",
           "stream_header_bits", "RESIDUAL_KINDS", "MOTION_KINDS"]
