"""A GoP of the embedded video codec as a :class:`rdopt.core.types.LatentCodec` — the latent DAG of paper 001
(§2.1, Fig. 1) that the solvers of :mod:`rdopt.infer.dag` accept.

For a GoP of ``T`` frames (frame 0 intra, frames ``1 … T−1`` low-delay P) the latents are, in inference
order::

    y_0, z_0                          the I-frame (image model: y, hyper z)
    w_t, z_w_t, y_t, z_y_t            P-frame t: motion, its hyper, residual, its hyper

with parents (what the amortized encoders read besides the frames ``x``):

* ``w_t`` ← every latent of frames ``< t`` — the encoder reads the *decoded* reference ``x̂_{t−1}``,
  a function of all of them (the edges of Fig. 1 that make bit allocation matter);
* ``y_t`` ← the latents of frames ``< t`` and ``w_t, z_w_t`` — it reads the motion-compensated
  prediction decoded from the (relaxed) motion latents and the reference;
* ``z_0 ← y_0``, ``z_w_t ← w_t``, ``z_y_t ← y_t`` (hyper-analysis).

The evidence is ``x``: ``B×T×3×H×W`` in [0, 1] (H, W multiples of 64). :meth:`GopCodec.evaluate` takes
the latents of any prefix of frames ``0 … F−1`` and returns ``x̂`` of those frames, decoding each frame
from the previous frame's (relaxed) reconstruction — differentiable in every latent.

λ: the codec is trained for λ in DVC units (MSE of [0, 1] RGB); :attr:`GopCodec.lmbda` is the same in
CompressAI units (``λ_video / 255²``), the units of :mod:`rdopt.core.rd` (``bpp + λ·255²·MSE``), so a GoP's
graph objective is ``Σ_t bpp_t + λ_video·MSE_t``.

Memo: a codec graph evaluates, within one optimization step, every frame's term and the initializers of
re-inferred latents, each of which needs the decoded frames before it. Decoding the prefix again for each
would cost ``O(T²)`` frame decodes per step; with ``memo`` (a dict living as long as one evaluation
context, :attr:`rdopt.infer.graph.Context.memo`) each frame is decoded once per step and shared — keyed by the
identity and version of the latent tensors and the identity of their relaxations, so a changed value or
relaxation is never served stale.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

from ...core.types import CodedLatents, Evaluation, LatentSpec, Latents, Relaxation, Relaxations
from ...relax.rounding import hard
from .dvc import LATENT_NAMES, PFrameLatents, PFrameStrings, VideoCodec

_P_KINDS = {"w": "motion", "z_w": "motion-hyper", "y": "residual", "z_y": "residual-hyper"}


def gop_names(frames: int) -> tuple[tuple[str, ...], ...]:
    """Latent names per frame of a GoP: ``(("y_0", "z_0"), ("w_1", "z_w_1", "y_1", "z_y_1"), …)``."""
    return (("y_0", "z_0"),) + tuple(tuple(f"{n}_{t}" for n in LATENT_NAMES) for t in range(1, frames))


class GopCodec:
    """One GoP length ``frames`` of a :class:`rdopt.codecs.video.dvc.VideoCodec` as a latent codec.

    Args:
        video: the I-frame + P-frame codec.
        frames: the GoP length ``T`` (≥ 1).
        lmbda_video: the λ the codec was trained for, in DVC units (default: the P-frame codec's meta).
        quality: the video quality index (0 if unknown); family / model id follow.
    """

    family = "rdopt-video"
    pad_multiple = 64
    supports_memo = True

    def __init__(self, video: VideoCodec, frames: int, lmbda_video: float, quality: int = 0,
                 model_id: str | None = None):
        if frames < 1:
            raise ValueError(f"a GoP has at least one frame, got {frames}")
        self.video = video
        self.frames = int(frames)
        self.lmbda_video = float(lmbda_video)
        self.lmbda = self.lmbda_video / 255.0**2
        self.quality = int(quality)
        self.model_id = model_id or (f"{self.family}-q{quality}" if quality else f"{self.family}-custom")
        self._names = gop_names(self.frames)
        specs: list[LatentSpec] = [LatentSpec("y_0", "latent", (), 0), LatentSpec("z_0", "hyper", ("y_0",), 0)]
        earlier = ["y_0", "z_0"]
        for t in range(1, self.frames):
            w, zw, y, zy = self._names[t]
            specs += [LatentSpec(w, "motion", tuple(earlier), t), LatentSpec(zw, "motion-hyper", (w,), t),
                      LatentSpec(y, "residual", tuple(earlier) + (w, zw), t), LatentSpec(zy, "residual-hyper", (y,), t)]
            earlier += [w, zw, y, zy]
        self._specs = tuple(specs)
        self._hash: bytes | None = None
        self._frozen: dict | None = None  # see caching_frozen

    # ------------------------------------------------------------------ identity
    @property
    def latents(self) -> tuple[LatentSpec, ...]:
        return self._specs

    @property
    def iframe(self):
        return self.video.iframe

    @property
    def pframe(self):
        return self.video.pframe

    def encoder_parameters(self) -> list[torch.nn.Parameter]:
        """The parameters of the encoder side only (analysis and hyper-analysis transforms of the I-frame
        model and of the P-frame codec): what online encoder updating adapts; the decoder never sees them."""
        net, p = self.iframe.net, self.pframe
        mods = [net.g_a, net.h_a, p.motion_analysis, p.motion_latent.h_a, p.residual_analysis, p.residual_latent.h_a]
        return [q for m in mods for q in m.parameters()]

    def with_copy(self) -> "GopCodec":
        """A GoP codec over a private copy of the video codec whose encoder parameters (only) take
        gradients: online encoder updating adapts it without touching the shared model."""
        import copy

        video = copy.deepcopy(self.video)
        for q in video.parameters():
            q.requires_grad_(False)
        mine = GopCodec(video, self.frames, self.lmbda_video, self.quality, self.model_id)
        for q in mine.encoder_parameters():
            q.requires_grad_(True)
        return mine

    def names_of(self, frame: int) -> tuple[str, ...]:
        return self._names[frame]

    def weight_hash(self) -> bytes:
        """SHA-256 (16 bytes) over the I-frame model's hash and the P-frame codec's state (names, shapes,
        values as float32; coder tables included)."""
        if self._hash is None:
            h = hashlib.sha256(b"rdopt-video|")
            h.update(self.iframe.weight_hash())
            for name, t in sorted(self.pframe.state_dict().items()):
                t = t.detach().cpu()
                t = t.float() if t.is_floating_point() else t
                h.update(name.encode())
                h.update(str(tuple(t.shape)).encode())
                h.update(t.contiguous().numpy().tobytes())
            self._hash = h.digest()[:16]
        return self._hash

    def latent_shapes(self, height: int, width: int) -> dict[str, tuple[int, ...]]:
        i = self.iframe.latent_shapes(height, width)
        p = self.pframe.latent_shapes(height, width)
        out: dict[str, tuple[int, ...]] = {"y_0": tuple(i["y"]), "z_0": tuple(i["z"])}
        for t in range(1, self.frames):
            out.update({f"{n}_{t}": tuple(p[n]) for n in LATENT_NAMES})
        return out

    # ------------------------------------------------------------------ decoding with a memo
    @contextlib.contextmanager
    def caching_frozen(self, max_entries: int = 64):
        """While active, frames and motion predictions decoded from latents that are all hard-rounded and
        take no gradient (the frozen frames of a sequential solver) are kept across evaluation contexts,
        so each optimization step decodes only the frames it changes. The decoder's weights must not
        change meanwhile (bit allocation never changes them)."""
        self._frozen, self._frozen_max = {}, max_entries
        try:
            yield self
        finally:
            self._frozen = None

    def _get(self, memo: dict | None, key) :
        if memo is not None and key in memo:
            return memo[key][0]
        if self._frozen is not None and key in self._frozen:
            return self._frozen[key][0]
        return None

    def _put(self, memo: dict | None, key, value, keep: tuple, relax: Relaxations, names: Sequence[str],
             output: Tensor) -> None:
        if memo is not None:
            memo[key] = (value, keep)  # keeps the keyed tensors alive: their ids cannot be reused
        if (self._frozen is not None and not output.requires_grad and all(getattr(relax[n], "is_hard", False) for n in names)
                and not any(t.requires_grad for t in keep)):
            if len(self._frozen) >= self._frozen_max:
                self._frozen.pop(next(iter(self._frozen)))
            self._frozen[key] = (value, keep)

    @staticmethod
    def _key(kind: str, t: int, latents: Mapping[str, Tensor], relax: Relaxations, names: Sequence[str]) -> tuple:
        return (kind, t) + tuple((id(latents[n]), latents[n]._version, id(relax[n])) for n in names)

    def _prefix(self, t: int) -> tuple[str, ...]:
        return tuple(n for f in range(t + 1) for n in self._names[f])

    def _frame(self, t: int, latents: Mapping[str, Tensor], relax: Relaxations, memo: dict | None):
        """Frame ``t`` decoded from the latents of frames ``0 … t``: ``(x̂_t, rates, relaxed values,
        scales, motion evaluation or None)``."""
        key = self._key("frame", t, latents, relax, self._prefix(t))
        hit = self._get(memo, key)
        if hit is not None:
            return hit
        if t == 0:
            ev = self.iframe.evaluate(Latents({"y": latents["y_0"], "z": latents["z_0"]}),
                                      {"y": relax["y_0"], "z": relax["z_0"]})
            out = (ev.x_hat, {"y_0": ev.rates["y"], "z_0": ev.rates["z"]},
                   {"y_0": ev.latents["y"], "z_0": ev.latents["z"]}, {"y_0": ev.scales["y"]} if "y" in ev.scales else {})
        else:
            w, zw, y, zy = self._names[t]
            motion = self._motion(t, latents, relax, memo)
            res = self.pframe.evaluate_residual(latents[y], latents[zy], {"y": relax[y], "z_y": relax[zy]})
            out = (motion.prediction + res.residual,
                   {w: motion.bits_w, zw: motion.bits_z_w, y: res.bits_y, zy: res.bits_z_y},
                   {w: motion.w, zw: motion.z_w, y: res.y, zy: res.z_y}, {})
        self._put(memo, key, out, tuple(latents[n] for n in self._prefix(t)), relax, self._prefix(t), out[0])
        return out

    def _motion(self, t: int, latents: Mapping[str, Tensor], relax: Relaxations, memo: dict | None):
        w, zw = self._names[t][:2]
        names = self._prefix(t - 1) + (w, zw)
        key = self._key("motion", t, latents, relax, names)
        hit = self._get(memo, key)
        if hit is not None:
            return hit
        ref = self._frame(t - 1, latents, relax, memo)[0]
        motion = self.pframe.evaluate_motion(latents[w], latents[zw], ref, {"w": relax[w], "z_w": relax[zw]})
        self._put(memo, key, motion, tuple(latents[n] for n in names), relax, names, motion.prediction)
        return motion

    # ------------------------------------------------------------------ protocol
    def infer(self, name: str, x: Tensor, parents: Latents, relax: Relaxations | None = None,
              memo: dict | None = None) -> Tensor:
        """Amortized inference of one latent from the frames and its parents' *decoded* values (decoded
        under ``relax``; hard rounding for latents it does not name)."""
        relax = _complete(relax, parents.names)
        memo = {} if memo is None else memo
        if name == "y_0":
            return self.iframe.analysis(x[:, 0])
        if name == "z_0":
            return self.iframe.hyper_analysis(parents["y_0"])
        try:
            base, t = name.rsplit("_", 1)
            t = int(t)
        except ValueError:
            raise KeyError(f"unknown latent {name!r}") from None
        if not 1 <= t < self.frames or base not in LATENT_NAMES:
            raise KeyError(f"unknown latent {name!r}")
        if base == "w":
            ref = self._frame(t - 1, parents, relax, memo)[0]
            return self.pframe.infer_motion(x[:, t], ref)[0]
        if base == "z_w":
            return self.pframe.motion_latent.hyper_analysis(parents[name.replace("z_w", "w", 1)])
        if base == "y":
            prediction = self._motion(t, parents, relax, memo).prediction
            return self.pframe.infer_residual(x[:, t], prediction)[0]
        return self.pframe.residual_latent.hyper_analysis(parents[f"y_{t}"])

    def amortize(self, x: Tensor) -> Latents:
        """FAVI of the whole GoP: each frame's latents from the frame and the *hard* reconstruction of
        the previous frame (what the decoder will see); continuous, not rounded."""
        if x.dim() != 5 or x.shape[1] != self.frames:
            raise ValueError(f"a GoP of {self.frames} frames needs x of shape B×{self.frames}×3×H×W, got {tuple(x.shape)}")
        values: dict[str, Tensor] = {}
        memo: dict = {}
        hard_all = _complete(None, [s.name for s in self._specs])
        for s in self._specs:
            values[s.name] = self.infer(s.name, x, Latents((p, values[p]) for p in s.parents), hard_all, memo)
        return Latents(values)

    def _frames_in(self, latents: Latents) -> int:
        f = 0
        while f < self.frames and all(n in latents for n in self._names[f]):
            f += 1
        expected = self._prefix(f - 1) if f else ()
        if f == 0 or tuple(latents.names) != expected:
            raise ValueError(f"evaluate needs the latents of frames 0 … F−1 in order, got {latents.names}")
        return f

    def evaluate(self, latents: Latents, relax: Relaxations, memo: dict | None = None) -> Evaluation:
        """Decoder-side evaluation of frames ``0 … F−1`` (the frames whose latents are given)."""
        frames = self._frames_in(latents)
        memo = {} if memo is None else memo  # within one call each frame is decoded once in any case
        x_hats, rates, values, scales = [], {}, {}, {}
        for t in range(frames):
            x_hat, r, v, s = self._frame(t, latents, relax, memo)
            x_hats.append(x_hat)
            rates.update(r)
            values.update(v)
            scales.update(s)
        return Evaluation(torch.stack(x_hats, 1), rates, Latents((n, values[n]) for n in latents.names), scales,
                          frames=frames)

    @torch.no_grad()
    def quantize(self, latents: Latents) -> Latents:
        """The hard values the coder writes (per frame: the image model's and the P-frame codec's rule)."""
        q = self.iframe.quantize(Latents({"y": latents["y_0"], "z": latents["z_0"]}))
        out = {"y_0": q["y"], "z_0": q["z"]}
        for t in range(1, self._frames_in(latents)):
            names = self._names[t]
            p = self.pframe.quantize(PFrameLatents(*(latents[n] for n in names)))
            out.update(zip(names, (p.w, p.z_w, p.y, p.z_y)))
        return Latents((n, out[n]) for n in latents.names)

    @torch.no_grad()
    def compress(self, latents: Latents) -> CodedLatents:
        """rANS strings of every latent (the image model's coder for frame 0, the P-frame codec's after)."""
        frames = self._frames_in(latents)
        ci = self.iframe.compress(Latents({"y": latents["y_0"], "z": latents["z_0"]}))
        streams = {"y_0": list(ci.streams["y"]), "z_0": list(ci.streams["z"])}
        shapes = {"y_0": tuple(ci.shapes["y"]), "z_0": tuple(ci.shapes["z"])}
        for t in range(1, frames):
            names = self._names[t]
            coded = self.pframe.compress(PFrameLatents(*(latents[n] for n in names)))
            for base, n in zip(LATENT_NAMES, names):
                streams[n] = list(coded.strings[base])
                shapes[n] = tuple(int(s) for s in latents[n].shape[1:])
        return CodedLatents({n: streams[n] for n in latents.names}, {n: shapes[n] for n in latents.names})

    @torch.no_grad()
    def decompress(self, coded: CodedLatents) -> Latents:
        dtype = next(self.pframe.parameters()).dtype
        lat0 = self.iframe.decompress(CodedLatents({"y": coded.streams["y_0"], "z": coded.streams["z_0"]},
                                                   {"y": coded.shapes["y_0"], "z": coded.shapes["z_0"]}))
        out = {"y_0": lat0["y"].to(dtype), "z_0": lat0["z"].to(dtype)}
        t = 1
        while t < self.frames and self._names[t][0] in coded.streams:
            names = self._names[t]
            strings = PFrameStrings(strings={b: coded.streams[n] for b, n in zip(LATENT_NAMES, names)},
                                    z_w_shape=tuple(coded.shapes[names[1]][-2:]),
                                    z_y_shape=tuple(coded.shapes[names[3]][-2:]))
            p = self.pframe.decompress(strings, dtype)
            out.update(zip(names, (p.w, p.z_w, p.y, p.z_y)))
            t += 1
        return Latents((n, out[n]) for n in self._prefix(t - 1))

    def reconstruct(self, latents: Latents) -> Tensor:
        """The decoder's frames ``B×F×3×H×W`` from hard latents (not clamped)."""
        return self.evaluate(latents, _complete(None, latents.names)).x_hat


def _complete(relax: Relaxations | None, names: Sequence[str]) -> dict[str, Relaxation]:
    """``relax`` with hard rounding for every name it does not give."""
    h = hard()
    out = {n: h for n in names}
    if relax:
        out.update(relax)
    return out


def gop_codec(video: VideoCodec, frames: int, lmbda_video: float | None = None,
              quality: int | None = None) -> GopCodec:
    """The :class:`GopCodec` of a GoP of ``frames`` frames of ``video`` (by default at the λ and quality of
    ``video``)."""
    return GopCodec(video, frames, video.lmbda if lmbda_video is None else lmbda_video,
                    video.quality if quality is None else quality)


__all__ = ["GopCodec", "gop_codec", "gop_names"]
