"""The codec contract: checks every :class:`rdopt.core.types.LatentCodec` must pass.

Written as plain functions ``check_*(codec, x)`` that raise ``AssertionError`` with a message naming the
broken promise, so any test runner can call them; ``tests/unit/test_contract.py`` runs all of them over
rdopt's image adapter and the toy image and video codecs of the tests — add your adapter there (or call
:func:`check_all` from your own tests). ``x`` is a batch of at least two items, already padded to the
codec's ``pad_multiple`` (``B×3×H×W`` for an image, ``B×T×3×H×W`` for a video).

The checks use only the protocol and rdopt's own modules (relaxations, the graph builder, the container),
never a codec's internals.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..coding.codes import LATENT_KIND_CODES
from ..coding.container import MAX_NAME
from ..core.rd import rd_cost
from ..core.types import Evaluation, LatentCodec, Latents, frames_of, relax_all
from ..relax.rounding import hard, identity
from .codec_graph import Target, codec_graph


def _close(a: Tensor, b: Tensor, what: str, atol: float = 1e-5, rtol: float = 1e-5) -> None:
    assert a.shape == b.shape, f"{what}: shape {tuple(a.shape)} != {tuple(b.shape)}"
    assert torch.allclose(a, b, atol=atol, rtol=rtol), f"{what}: max difference {float((a - b).abs().max()):.3g}"


def _hard(codec: LatentCodec) -> dict:
    return relax_all(hard(), (s.name for s in codec.latents))


def check_identity(codec: LatentCodec, x: Tensor) -> None:
    """Family, quality, model id, weight hash, training λ and padding are there and stable."""
    assert isinstance(codec.family, str) and codec.family, "family must be a non-empty string"
    assert isinstance(codec.quality, int) and codec.quality >= 0, "quality must be an integer >= 0"
    mid = codec.model_id
    assert isinstance(mid, str) and 1 <= len(mid.encode("ascii")) <= 255, "model_id: 1-255 ASCII characters"
    h = codec.weight_hash()
    assert isinstance(h, bytes) and len(h) >= 8, "weight_hash() must give at least 8 bytes"
    assert codec.weight_hash() == h, "weight_hash() must be stable"
    assert float(codec.lmbda) > 0, "the training λ must be positive"
    assert isinstance(codec.pad_multiple, int) and codec.pad_multiple >= 1, "pad_multiple must be a positive int"


def check_latent_specs(codec: LatentCodec, x: Tensor) -> None:
    """Named latents in inference order: unique ASCII names, known kinds, parents earlier, frames in order."""
    specs = tuple(codec.latents)
    assert specs, "a codec has at least one latent"
    seen: list[str] = []
    last_frame = 0
    for s in specs:
        assert s.name not in seen, f"latent {s.name!r} declared twice"
        assert 1 <= len(s.name.encode("ascii")) <= MAX_NAME, f"latent name {s.name!r}: 1-{MAX_NAME} ASCII characters"
        assert s.kind in LATENT_KIND_CODES, f"latent {s.name!r}: unknown kind {s.kind!r}"
        missing = [p for p in s.parents if p not in seen]
        assert not missing, f"latent {s.name!r}: parents {missing} must come before it"
        assert s.frame >= last_frame, f"latent {s.name!r}: frames must not decrease"
        last_frame = s.frame
        seen.append(s.name)
    frames = sorted({s.frame for s in specs})
    assert frames == list(range(len(frames))), f"frames must be 0…F−1, got {frames}"


def check_amortize(codec: LatentCodec, x: Tensor) -> None:
    """``amortize`` gives every latent, in order, with the shapes ``latent_shapes`` promises, and equals
    the chain of ``infer`` calls from the parents."""
    with torch.no_grad():
        lat = codec.amortize(x)
    names = tuple(s.name for s in codec.latents)
    assert isinstance(lat, Latents), "amortize must return Latents"
    assert lat.names == names, f"amortize gives {lat.names}, the codec declares {names}"
    shapes = codec.latent_shapes(x.shape[-2], x.shape[-1])
    assert set(shapes) == set(names), f"latent_shapes names {sorted(shapes)} != {sorted(names)}"
    for n, t in lat.items():
        assert t.shape == (x.shape[0], *shapes[n]), f"latent {n!r}: shape {tuple(t.shape)} != (B, {shapes[n]})"
        assert bool(torch.isfinite(t).all()), f"latent {n!r}: non-finite amortized values"
    values: dict[str, Tensor] = {}
    with torch.no_grad():
        for s in codec.latents:
            try:
                values[s.name] = codec.infer(s.name, x, Latents((p, values[p]) for p in s.parents), _hard(codec))
            except KeyError as e:
                raise AssertionError(
                    f"infer({s.name!r}) reads a latent beyond its declared parents {s.parents} (KeyError: "
                    f"{e.args[0]}): declare every latent its encoder reads (a P-frame's encoder reads the decoded "
                    "reference: every latent of the earlier frames)") from None
            _close(values[s.name], lat[s.name], f"infer({s.name!r}) from its parents vs amortize")


def check_evaluate(codec: LatentCodec, x: Tensor) -> None:
    """Decoder-side evaluation: one finite non-negative rate per latent and item, ``x_hat`` shaped like
    ``x``, and one relaxation per latent — each latent's relaxation is applied to that latent."""
    with torch.no_grad():
        lat = codec.amortize(x)
        ev = codec.evaluate(lat, _hard(codec))
    assert isinstance(ev, Evaluation), "evaluate must return an Evaluation"
    assert ev.x_hat.shape == x.shape, f"x_hat shape {tuple(ev.x_hat.shape)} != x {tuple(x.shape)}"
    assert tuple(ev.rates) == lat.names, f"rates for {tuple(ev.rates)}, latents {lat.names}"
    for n, r in ev.rates.items():
        assert r.shape == (x.shape[0],), f"rate of {n!r}: shape {tuple(r.shape)}, want ({x.shape[0]},)"
        assert bool(torch.isfinite(r).all()) and bool((r >= 0).all()), f"rate of {n!r}: not finite and >= 0"
    for n, s in ev.scales.items():
        assert n in lat.names, f"scales reported for unknown latent {n!r}"
    # one relaxation per latent: the one given for a latent is applied to that latent's values, each value once (in
    # one call, or in several calls over disjoint parts — the passes of a context model that decodes in passes)
    for name in lat.names:
        seen: list[Tensor] = []

        def marker(v, offset):
            seen.append(v.detach().reshape(-1) if v.shape != lat[name].shape else v.detach())
            return hard()(v, offset)

        relax = _hard(codec)
        relax[name] = marker
        with torch.no_grad():
            codec.evaluate(lat, relax)
        assert seen, f"the relaxation given for {name!r} was never applied"
        values = lat[name].detach()
        assert sum(v.numel() for v in seen) == values.numel(), (
            f"the relaxation of {name!r} saw {sum(v.numel() for v in seen)} values in one evaluation, the latent has "
            f"{values.numel()}: relax each value once and reuse it (a stochastic relaxation would draw anew each time)")
        if len(seen) == 1:
            assert seen[0].shape == values.shape, f"the relaxation of {name!r} saw other values"
        else:  # passes: together they relax every value of the latent once
            assert torch.equal(torch.cat([v.reshape(-1) for v in seen]).sort().values, values.reshape(-1).sort().values), \
                f"the passes of the relaxation of {name!r} do not relax each value of the latent once"


def check_evaluate_is_differentiable(codec: LatentCodec, x: Tensor) -> None:
    """Under a differentiable relaxation every latent gets a finite, non-zero gradient of the R-D cost."""
    lat = codec.amortize(x).map(lambda t: t.detach().clone().requires_grad_(True))
    ev = codec.evaluate(lat, relax_all(identity(), lat.names))
    loss = ev.bits.sum() + ev.x_hat.pow(2).sum()
    grads = torch.autograd.grad(loss, list(lat.tensors), allow_unused=True)
    for n, g in zip(lat.names, grads):
        assert g is not None, f"latent {n!r} does not reach the evaluation"
        assert bool(torch.isfinite(g).all()) and float(g.abs().sum()) > 0, f"latent {n!r}: zero or non-finite gradient"


def check_quantize(codec: LatentCodec, x: Tensor) -> None:
    """``quantize`` is idempotent and its values are what the hard evaluation sees."""
    with torch.no_grad():
        lat = codec.amortize(x)
        q = codec.quantize(lat)
        assert q.names == lat.names, "quantize keeps the latent names"
        for n in q.names:
            _close(codec.quantize(q)[n], q[n], f"quantize is idempotent ({n!r})", atol=1e-6)
        a, b = codec.evaluate(lat, _hard(codec)), codec.evaluate(q, _hard(codec))
        _close(a.bits, b.bits, "hard evaluation of continuous vs quantized latents (bits)", atol=1e-3)
        _close(a.x_hat, b.x_hat, "hard evaluation of continuous vs quantized latents (x_hat)")


def check_coding_round_trip(codec: LatentCodec, x: Tensor) -> None:
    """``compress`` writes one named stream per latent and item; ``decompress`` gives the quantized
    latents back (per item too), and ``reconstruct`` of them is the hard evaluation's ``x_hat``."""
    with torch.no_grad():
        q = codec.quantize(codec.amortize(x))
        coded = codec.compress(q)
        names = q.names
        assert tuple(coded.streams) == names, f"streams {tuple(coded.streams)} != latents {names}"
        assert set(coded.shapes) == set(names), "one shape per stream"
        for n in names:
            assert len(coded.streams[n]) == x.shape[0], f"stream {n!r}: one string per item"
            assert all(isinstance(s, bytes) for s in coded.streams[n]), f"stream {n!r}: strings must be bytes"
        shapes = codec.latent_shapes(x.shape[-2], x.shape[-1])
        assert {n: tuple(s) for n, s in coded.shapes.items()} == {n: tuple(shapes[n]) for n in names}, \
            "coded shapes differ from latent_shapes"
        back = codec.decompress(coded)
        assert back.names == names, "decompress keeps the latent names"
        for n in names:
            _close(back[n], q[n], f"decompress(compress(q)) of {n!r}", atol=1e-4)
        one = codec.decompress(type(coded)({n: s[1:2] for n, s in coded.streams.items()}, coded.shapes))
        for n in names:
            _close(one[n], q[n][1:2], f"decoding item 1 alone ({n!r})", atol=1e-4)
        _close(codec.reconstruct(back), codec.evaluate(q, _hard(codec)).x_hat, "reconstruct vs hard evaluation",
               atol=1e-4)


def check_batch_independence(codec: LatentCodec, x: Tensor) -> None:
    """Items of a batch are independent problems: evaluating one alone gives its batch values."""
    with torch.no_grad():
        lat = codec.amortize(x)
        both = codec.evaluate(lat, _hard(codec))
        one = codec.evaluate(lat.select(1), _hard(codec))
    _close(one.bits, both.bits[1:2], "bits of item 1 alone vs in the batch", atol=1e-3)
    _close(one.x_hat, both.x_hat[1:2], "x_hat of item 1 alone vs in the batch")


def check_graph(codec: LatentCodec, x: Tensor) -> None:
    """The codec's latent graph: one node per latent with the declared parents, one term per frame, and
    at the amortized point its objective is the R-D cost of the hard evaluation."""
    graph = codec_graph(codec)
    assert graph.order == tuple(s.name for s in codec.latents), "graph nodes follow the codec's latents"
    for s in codec.latents:
        assert graph.parents(s.name) == s.parents, f"graph parents of {s.name!r}"
    groups = frames_of(codec.latents)
    assert len(graph.terms) == len(groups), "one R-D term per frame"
    target = Target(x, codec.lmbda)
    with torch.no_grad():
        values = graph.amortize(target)
        obj = graph.objective(graph.context(target, None), values.tensors)
        ev = codec.evaluate(codec.amortize(x), _hard(codec))
    if len(groups) == 1:
        _close(obj, rd_cost(ev, x, codec.lmbda).loss, "graph objective vs rd_cost", atol=1e-4)
    else:
        n = x.shape[-2] * x.shape[-1]
        want = ev.bits / n
        for f in range(len(groups)):
            want = want + codec.lmbda * 255.0**2 * (ev.x_hat[:, f] - x[:, f]).pow(2).flatten(1).mean(1)
        _close(obj, want, "graph objective vs Σ_frames R-D cost", atol=1e-4)


CHECKS = (check_identity, check_latent_specs, check_amortize, check_evaluate, check_evaluate_is_differentiable,
          check_quantize, check_coding_round_trip, check_batch_independence, check_graph)


def check_all(codec: LatentCodec, x: Tensor) -> None:
    for check in CHECKS:
        check(codec, x)


__all__ = ["CHECKS", "check_all", *(c.__name__ for c in CHECKS)]
