"""Video codecs as one family: an I-frame image codec plus a P-frame codec (:mod:`.pframe`) make a
:class:`VideoCodec`; a GoP of ``T`` frames of it is a :class:`GopCodec` — the latent DAG of paper 001
(§2.1, Fig. 1) that the solvers of :mod:`rdopt.infer.dag` accept, and what the ``.rdov`` container codes.

For a GoP of ``T`` frames (frame 0 intra, frames ``1 … T−1`` low-delay P) the latents are, in inference
order (the P-frame codec's base names ``m, mh, r, rh`` suffixed with the frame)::

    y_0, z_0                          the I-frame (image codec: y, hyper z)
    m_t, mh_t, r_t, rh_t              P-frame t: motion, its hyper, residual, its hyper

with parents (what the amortized encoders read besides the frames ``x``):

* ``m_t`` ← every latent of frames ``< t`` — the encoder reads the *decoded* reference ``x̂_{t−1}``,
  a function of all of them (the edges of Fig. 1 that make bit allocation matter);
* ``r_t`` ← the latents of frames ``< t`` and ``m_t, mh_t`` — it reads the decoded first stage;
* ``z_0 ← y_0``, ``mh_t ← m_t``, ``rh_t ← r_t`` (hyper-analysis).

The evidence is ``x``: ``B×T×3×H×W`` in [0, 1] (H, W multiples of :attr:`VideoCodec.pad_multiple`).
:meth:`GopCodec.evaluate` takes the latents of any prefix of frames ``0 … F−1`` and returns ``x̂`` of those
frames, decoding each frame from the previous frame's (relaxed) reconstruction — differentiable in every
latent.

λ is in CompressAI's unit at every edge (cost = bpp + λ·255²·MSE on [0, 1] RGB).

Memo: a codec graph evaluates, within one optimization step, every frame's term and the initializers of
re-inferred latents, each of which needs the decoded frames before it. Decoding the prefix again for each
would cost ``O(T²)`` frame decodes per step; with ``memo`` (a dict living as long as one evaluation
context, :attr:`rdopt.infer.graph.Context.memo`) each frame is decoded once per step and shared — keyed by
the identity and version of the latent tensors and the identity of their relaxations, so a changed value
or relaxation is never served stale.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import math
from collections.abc import Callable, Mapping, Sequence

import torch
from torch import Tensor, nn

from ...core.types import CodedLatents, Evaluation, LatentSpec, Latents, Relaxation, Relaxations
from ...relax.rounding import hard
from .pframe import MotionEvaluation, PFrameCodec, pframe_problems

KINDS = ("motion", "motion-hyper", "residual", "residual-hyper")
"""The latent kinds of a P-frame's four latents, in the order of :attr:`PFrameCodec.names`."""


def state_hash(module: nn.Module, h) -> None:
    """Feed a module's state (names, shapes, values as float32; coder tables included) to a hash."""
    for name, t in sorted(module.state_dict().items()):
        t = t.detach().cpu()
        t = t.float() if t.is_floating_point() else t
        h.update(name.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.contiguous().numpy().tobytes())


class VideoCodec(nn.Module):
    """An I-frame image codec and a P-frame codec (low-delay P: every P-frame references the reconstruction
    of the frame before it), with the identity bitstreams record.

    Args:
        iframe: image codec of frame 0 (latents ``y``, ``z``).
        pframe: a :class:`rdopt.codecs.video.pframe.PFrameCodec`.
        family: the registered codec name (``rdopt-video2``, ``ssf2020``, a user's name).
        quality: the quality index (0: a custom checkpoint); ``model_id`` is ``family-qQ`` or ``family-custom``.
        lmbda: the λ the codec was trained for, CompressAI's unit.
        hash_tag: bytes that start the weight hash (default ``family|``).
        weight_hash: a function computing the 16-byte weight hash instead (a family whose bitstreams hash its
            network another way, e.g. ssf2020's whole-network hash).
    """

    def __init__(self, iframe: nn.Module, pframe: nn.Module, *, family: str, quality: int = 0, lmbda: float,
                 model_id: str | None = None, hash_tag: bytes | None = None, weight_hash=None):
        super().__init__()
        problems = pframe_problems(pframe)
        if problems:
            raise TypeError(f"{type(pframe).__name__} is not a P-frame codec: " + "; ".join(problems))
        self.iframe = iframe
        self.pframe = pframe
        self.family = family
        self.quality = int(quality)
        self.lmbda = float(lmbda)
        self.model_id = model_id or (f"{family}-q{self.quality}" if self.quality else f"{family}-custom")
        self.hash_tag = hash_tag if hash_tag is not None else family.encode() + b"|"
        self._hash_fn = weight_hash
        self._hash: bytes | None = None
        self._gops: dict[int, GopCodec] = {}
        self._frame_skip_ok: bool | None = None

    @property
    def pad_multiple(self) -> int:
        """What frames are padded to: the least common multiple of the P-frame codec's ``pad_multiple`` and of
        what the I-frame codec needs inside a container recording the padded size (its ``tight_multiple``) — the
        latter only for a P-frame codec that says its priors fit any latent size (``crops_priors``); else the
        I-frame codec's ``pad_multiple`` (:attr:`legacy_pad_multiple`)."""
        if not getattr(self.pframe, "crops_priors", False):
            return self.legacy_pad_multiple
        i = getattr(self.iframe, "tight_multiple", getattr(self.iframe, "pad_multiple", 64))
        return math.lcm(int(i), int(self.pframe.pad_multiple))

    @property
    def legacy_pad_multiple(self) -> int:
        """What frames were padded to before tight padding (the I-frame codec's image-file multiple, 64): what a
        ``.rdov`` file without the tight-padding flag was coded at."""
        return math.lcm(int(getattr(self.iframe, "pad_multiple", 64)), int(self.pframe.pad_multiple))

    def padding_of(self, tight: bool) -> int:
        """The padding multiple of a ``.rdov`` file with (``tight``) or without the tight-padding flag."""
        return self.pad_multiple if tight else self.legacy_pad_multiple

    def tight_padding(self, height: int, width: int) -> bool:
        """Whether a file of visible ``height × width`` frames is written with the tight-padding flag: when the two
        paddings give different coded sizes (otherwise the file is what it was before the flag)."""
        from ...data.images import padded_size

        return padded_size(height, width, self.pad_multiple) != padded_size(height, width, self.legacy_pad_multiple)

    def weight_hash(self) -> bytes:
        """SHA-256 (16 bytes) over the tag, the I-frame codec's hash and the P-frame codec's state."""
        if self._hash is None and self._hash_fn is not None:
            self._hash = self._hash_fn()[:16]
        if self._hash is None:
            h = hashlib.sha256(self.hash_tag)
            h.update(self.iframe.weight_hash())
            state_hash(self.pframe, h)
            self._hash = h.digest()[:16]
        return self._hash

    def min_bits_per_symbol(self) -> dict[str, float]:
        """Fewest bits per symbol of every latent by base name (``y_0``, ``z_0`` and the P-frame's names)."""
        iy, iz = self.iframe.min_bits_per_symbol()
        return {"y_0": iy, "z_0": iz, **self.pframe.min_bits_per_symbol()}

    @torch.no_grad()
    def frame_skip_ok(self) -> bool:
        """Whether the P-frame codec decodes a frame's motion latents from the motion strings alone (a frame
        skipped whole has no residual streams): checked once, by coding zero latents of the smallest frame and
        decoding the motion pair's strings alone."""
        if self._frame_skip_ok is None:
            pf = self.pframe
            m, mh = pf.names[:2]
            param = next(pf.parameters())
            size = self.pad_multiple
            shapes = {n: tuple(int(d) for d in sh) for n, sh in pf.latent_shapes(size, size).items()}
            try:
                q = pf.quantize({n: torch.zeros((1,) + shapes[n], dtype=param.dtype, device=param.device)
                                 for n in pf.names})
                strings = pf.compress(q)
                got = pf.decompress({m: strings[m], mh: strings[mh]}, shapes, param.dtype)
                self._frame_skip_ok = (set(got) == {m, mh}
                                       and all(torch.equal(got[n].to(q[n].device), q[n]) for n in (m, mh)))
            except Exception:  # noqa: BLE001 - any failure means: this codec needs every stream of a frame
                self._frame_skip_ok = False
        return self._frame_skip_ok

    def gop(self, frames: int) -> "GopCodec":
        """This codec's GoP of ``frames`` frames (one instance per length, kept)."""
        if frames not in self._gops:
            self._gops[frames] = GopCodec(self, frames)
        return self._gops[frames]

    def train(self, mode: bool = True):
        self._hash = None
        return super().train(mode)


def gop_names(pframe_names: Sequence[str], frames: int) -> tuple[tuple[str, ...], ...]:
    """Latent names per frame of a GoP: ``(("y_0", "z_0"), ("w_1", "z_w_1", "y_1", "z_y_1"), …)``."""
    return (("y_0", "z_0"),) + tuple(tuple(f"{n}_{t}" for n in pframe_names) for t in range(1, frames))


class GopCodec:
    """One GoP length ``frames`` of a :class:`VideoCodec` as a :class:`rdopt.core.types.LatentCodec`."""

    supports_memo = True

    def __init__(self, video: VideoCodec, frames: int):
        if frames < 1:
            raise ValueError(f"a GoP has at least one frame, got {frames}")
        self.video = video
        self.frames = int(frames)
        self.base = tuple(video.pframe.names)
        self._names = gop_names(self.base, self.frames)
        specs: list[LatentSpec] = [LatentSpec("y_0", "latent", (), 0), LatentSpec("z_0", "hyper", ("y_0",), 0)]
        earlier = ["y_0", "z_0"]
        for t in range(1, self.frames):
            m, mh, r, rh = self._names[t]
            specs += [LatentSpec(m, KINDS[0], tuple(earlier), t), LatentSpec(mh, KINDS[1], (m,), t),
                      LatentSpec(r, KINDS[2], tuple(earlier) + (m, mh), t), LatentSpec(rh, KINDS[3], (r,), t)]
            earlier += [m, mh, r, rh]
        self._specs = tuple(specs)
        self._frame_of = {s.name: s.frame for s in specs}
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

    @property
    def family(self) -> str:
        return self.video.family

    @property
    def quality(self) -> int:
        return self.video.quality

    @property
    def model_id(self) -> str:
        return self.video.model_id

    @property
    def lmbda(self) -> float:
        return self.video.lmbda

    @property
    def pad_multiple(self) -> int:
        return self.video.pad_multiple

    def weight_hash(self) -> bytes:
        return self.video.weight_hash()

    def names_of(self, frame: int) -> tuple[str, ...]:
        return self._names[frame]

    def base_of(self, name: str) -> str:
        """The base name of a GoP latent (``y_0``, ``z_0`` stay; ``w_3`` → ``w``)."""
        return name if self._frame_of[name] == 0 else name.rsplit("_", 1)[0]

    def latent_shapes(self, height: int, width: int) -> dict[str, tuple[int, ...]]:
        i = self.iframe.latent_shapes(height, width)
        p = self.pframe.latent_shapes(height, width)
        out: dict[str, tuple[int, ...]] = {"y_0": tuple(i["y"]), "z_0": tuple(i["z"])}
        for t in range(1, self.frames):
            out.update({f"{n}_{t}": tuple(p[n]) for n in self.base})
        return out

    def encoder_parameters(self) -> list[nn.Parameter]:
        """The encoder side only (analysis and hyper-analysis transforms of both codecs): what online encoder
        updating adapts; the decoder never runs them."""
        mods = list(self.iframe.encoder_modules()) + list(self.pframe.encoder_modules())
        return [q for m in mods for q in m.parameters()]

    def with_copy(self) -> "GopCodec":
        """A GoP codec over a private copy of the video codec whose encoder parameters (only) take gradients:
        online encoder updating adapts it without touching the shared model. Its identity is the original's."""
        video = copy.deepcopy(self.video)
        video._hash = self.video.weight_hash()  # the decoder side is unchanged
        for q in video.parameters():
            q.requires_grad_(False)
        mine = GopCodec(video, self.frames)
        for q in mine.encoder_parameters():
            q.requires_grad_(True)
        return mine

    # ------------------------------------------------------------------ decoding with a memo
    @contextlib.contextmanager
    def caching_frozen(self, max_entries: int = 64):
        """While active, frames and first stages decoded from latents that are all hard-rounded and take no
        gradient (the frozen frames of a sequential solver) are kept across evaluation contexts, so each
        optimization step decodes only the frames it changes. The decoder's weights must not change
        meanwhile (bit allocation never changes them)."""
        self._frozen, self._frozen_max = {}, max_entries
        try:
            yield self
        finally:
            self._frozen = None

    def _get(self, memo: dict | None, key):
        if memo is not None and key in memo:
            return memo[key][0]
        if self._frozen is not None and key in self._frozen:
            return self._frozen[key][0]
        return None

    def _put(self, memo: dict | None, key, value, keep: tuple, relax: Relaxations, names: Sequence[str],
             output: Tensor) -> None:
        if memo is not None:
            memo[key] = (value, keep)  # keeps the keyed tensors alive: their ids cannot be reused
        if (self._frozen is not None and not output.requires_grad
                and all(getattr(relax[n], "is_hard", False) for n in names) and not any(t.requires_grad for t in keep)):
            if len(self._frozen) >= self._frozen_max:
                self._frozen.pop(next(iter(self._frozen)))
            self._frozen[key] = (value, keep)

    @staticmethod
    def _key(kind: str, t: int, latents: Mapping[str, Tensor], relax: Relaxations, names: Sequence[str]) -> tuple:
        return (kind, t) + tuple((id(latents[n]), latents[n]._version, id(relax[n])) for n in names)

    def _prefix(self, t: int) -> tuple[str, ...]:
        return tuple(n for f in range(t + 1) for n in self._names[f])

    def _frame(self, t: int, latents: Mapping[str, Tensor], relax: Relaxations, memo: dict | None):
        """Frame ``t`` decoded from the latents of frames ``0 … t``: ``(x̂_t, rates, relaxed values, scales)``."""
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
            m, mh, r, rh = self._names[t]
            _, _, br, brh = self.base
            motion = self._motion(t, latents, relax, memo)
            res = self.pframe.evaluate_residual(latents[r], latents[rh], {br: relax[r], brh: relax[rh]}, motion)
            out = (res.x_hat, {m: motion.bits, mh: motion.hyper_bits, r: res.bits, rh: res.hyper_bits},
                   {m: motion.latent, mh: motion.hyper, r: res.latent, rh: res.hyper}, {})
        self._put(memo, key, out, tuple(latents[n] for n in self._prefix(t)), relax, self._prefix(t), out[0])
        return out

    def _motion(self, t: int, latents: Mapping[str, Tensor], relax: Relaxations, memo: dict | None) -> MotionEvaluation:
        m, mh = self._names[t][:2]
        bm, bmh = self.base[:2]
        names = self._prefix(t - 1) + (m, mh)
        key = self._key("motion", t, latents, relax, names)
        hit = self._get(memo, key)
        if hit is not None:
            return hit
        ref = self._frame(t - 1, latents, relax, memo)[0]
        motion = self.pframe.evaluate_motion(latents[m], latents[mh], ref, {bm: relax[m], bmh: relax[mh]})
        self._put(memo, key, motion, tuple(latents[n] for n in names), relax, names, motion.prediction)
        return motion

    # ------------------------------------------------------------------ protocol
    def infer(self, name: str, x: Tensor, parents: Latents, relax: Relaxations | None = None,
              memo: dict | None = None) -> Tensor:
        """Amortized inference of one latent from the frames and its parents' *decoded* values (decoded under
        ``relax``; hard rounding for latents it does not name)."""
        if name not in self._frame_of:
            raise KeyError(f"unknown latent {name!r}; latents: {', '.join(self._frame_of)}")
        t = self._frame_of[name]
        relax = complete(relax, parents.names)
        memo = {} if memo is None else memo
        if name == "y_0":
            return self.iframe.analysis(x[:, 0])
        if name == "z_0":
            return self.iframe.hyper_analysis(parents["y_0"])
        m, mh, r, rh = self._names[t]
        if name == m:
            ref = self._frame(t - 1, parents, relax, memo)[0]
            return self.pframe.infer_motion(x[:, t], ref)[0]
        if name == r:
            return self.pframe.infer_residual(x[:, t], self._motion(t, parents, relax, memo))[0]
        if name == mh:
            return self.pframe.hyper_analysis(self.base[1], parents[m])
        return self.pframe.hyper_analysis(self.base[3], parents[r])

    def amortize(self, x: Tensor) -> Latents:
        """FAVI of the whole GoP: each frame's latents from the frame and the *hard* reconstruction of the
        previous frame (what the decoder will see); continuous, not rounded."""
        if x.dim() != 5 or x.shape[1] != self.frames:
            raise ValueError(f"a GoP of {self.frames} frames needs x of shape B×{self.frames}×3×H×W, got {tuple(x.shape)}")
        values: dict[str, Tensor] = {}
        memo: dict = {}
        hard_all = complete(None, [s.name for s in self._specs])
        for s in self._specs:
            values[s.name] = self.infer(s.name, x, Latents((p, values[p]) for p in s.parents), hard_all, memo)
        return Latents(values)

    def frames_in(self, names: Sequence[str]) -> int:
        """How many frames the latent names cover (they must be those of frames 0 … F−1, in order)."""
        f = 0
        while f < self.frames and all(n in names for n in self._names[f]):
            f += 1
        if f == 0 or tuple(names) != self._prefix(f - 1):
            raise ValueError(f"expected the latents of frames 0 … F−1 in order (a prefix of "
                             f"{', '.join(self._prefix(self.frames - 1))}), got {', '.join(names)}")
        return f

    def evaluate(self, latents: Latents, relax: Relaxations, memo: dict | None = None) -> Evaluation:
        """Decoder-side evaluation of frames ``0 … F−1`` (the frames whose latents are given)."""
        frames = self.frames_in(latents.names)
        missing = [n for n in latents.names if n not in relax]
        if missing:
            raise KeyError(f"no relaxation given for latents {', '.join(missing)}")
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

    def hard_evaluate(self, latents: Latents) -> Evaluation:
        return self.evaluate(latents, complete(None, latents.names))

    @torch.no_grad()
    def quantize(self, latents: Latents) -> Latents:
        """The hard values the coder writes (per frame: the image codec's and the P-frame codec's rule)."""
        q = self.iframe.quantize(Latents({"y": latents["y_0"], "z": latents["z_0"]}))
        out = {"y_0": q["y"], "z_0": q["z"]}
        for t in range(1, self.frames_in(latents.names)):
            names = self._names[t]
            p = self.pframe.quantize({b: latents[n] for b, n in zip(self.base, names)})
            out.update({n: p[b] for b, n in zip(self.base, names)})
        return Latents((n, out[n]) for n in latents.names)

    @torch.no_grad()
    def compress(self, latents: Latents) -> CodedLatents:
        """rANS strings of every latent (the image codec's coder for frame 0, the P-frame codec's after)."""
        frames = self.frames_in(latents.names)
        ci = self.iframe.compress(Latents({"y": latents["y_0"], "z": latents["z_0"]}))
        streams = {"y_0": list(ci.streams["y"]), "z_0": list(ci.streams["z"])}
        shapes = {"y_0": tuple(ci.shapes["y"]), "z_0": tuple(ci.shapes["z"])}
        for t in range(1, frames):
            names = self._names[t]
            coded = self.pframe.compress({b: latents[n] for b, n in zip(self.base, names)})
            for b, n in zip(self.base, names):
                streams[n] = list(coded[b])
                shapes[n] = tuple(int(s) for s in latents[n].shape[1:])
        return CodedLatents({n: streams[n] for n in latents.names}, {n: shapes[n] for n in latents.names})

    @torch.no_grad()
    def decompress(self, coded: CodedLatents) -> Latents:
        """The hard latents of the coded frames (those of frames 0 … F−1). A P-frame whose residual streams are
        absent (skipped whole) gets its motion latents only."""
        dtype = next(self.pframe.parameters()).dtype
        lat0 = self.iframe.decompress(CodedLatents({"y": coded.streams["y_0"], "z": coded.streams["z_0"]},
                                                   {"y": coded.shapes["y_0"], "z": coded.shapes["z_0"]}))
        out = {"y_0": lat0["y"].to(dtype), "z_0": lat0["z"].to(dtype)}
        t = 1
        while t < self.frames and self._names[t][0] in coded.streams:
            names = self._names[t]
            given = [(b, n) for b, n in zip(self.base, names) if n in coded.streams]
            try:
                p = self.pframe.decompress({b: coded.streams[n] for b, n in given},
                                           {b: tuple(coded.shapes[n]) for b, n in zip(self.base, names)}, dtype)
            except KeyError as e:
                raise ValueError(f"frame {t} lacks stream or shape {e.args[0]!r}") from None
            out.update({n: p[b] for b, n in given if b in p})
            t += 1
        return Latents((n, out[n]) for n in self._prefix(t - 1) if n in out)

    def reconstruct(self, latents: Latents) -> Tensor:
        """The decoder's frames ``B×F×3×H×W`` from hard latents (not clamped)."""
        return self.hard_evaluate(latents).x_hat


def complete(relax: Relaxations | None, names: Sequence[str]) -> dict[str, Relaxation]:
    """``relax`` with hard rounding for every name it does not give."""
    h = hard()
    out = {n: h for n in names}
    if relax:
        out.update(relax)
    return out


IFRAME_MODELS = ("rdopt-msh", "rdopt-scc")  # the embedded image models an embedded video codec's I-frames may use


def load_shipped(family: str, path, read_pframe: Callable[[str], PFrameCodec], *, quality: int | None,
                 from_checkpoint: bool, lmbda: float | None, device, trained_lmbda: Callable[[Mapping], float],
                 iframe_quality: Callable[[Mapping, float], int]) -> VideoCodec:
    """The shared part of the embedded video codecs' loaders: the P-frame weights file ``path`` read safely
    (``weights_only``; ``read_pframe(path)`` builds the P-frame codec), its ``meta`` giving the λ it was trained
    at (``trained_lmbda(meta)``, CompressAI's unit), the embedded image model of its I-frames (``meta["iframe_model"]``,
    one of :data:`IFRAME_MODELS`, default ``rdopt-msh``) and its quality (``iframe_quality(meta, λ)``); the codec frozen, in eval mode, on ``device``. ``lmbda`` overrides the λ the
    codec reports. A missing or unfitting file is a one-line :class:`ModelUnavailable`."""
    from ..image.loading import load_model, unreadable_reason
    from ..registry import ModelUnavailable

    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
        pframe = read_pframe(path)
    except FileNotFoundError:
        raise ModelUnavailable(f"no such checkpoint: {path}") from None
    except Exception as e:  # noqa: BLE001 - any unreadable or unfitting file is the same user error
        raise ModelUnavailable(f"{path} is not an {family} P-frame weights file: {unreadable_reason(e)}") from None
    meta = raw.get("meta", {}) if isinstance(raw, dict) else {}
    trained = trained_lmbda(meta)
    iframe_model = meta.get("iframe_model", "rdopt-msh")
    if iframe_model not in IFRAME_MODELS:
        raise ModelUnavailable(f"{path}: I-frame model {iframe_model!r} is not one of {', '.join(IFRAME_MODELS)}")
    iframe = load_model(iframe_model, quality=iframe_quality(meta, trained), device=device)
    codec = VideoCodec(iframe, pframe, family=family, quality=0 if from_checkpoint else (quality or 0),
                       lmbda=lmbda if lmbda is not None else trained)
    for p in codec.parameters():
        p.requires_grad_(False)
    return codec.to(device or "cpu").eval()


__all__ = ["KINDS", "VideoCodec", "GopCodec", "gop_names", "complete", "state_hash", "load_shipped"]
