"""A GoP of the video codec as a latent codec / latent DAG: the contract suite, the graph's
amortized values equal the codec's plain encode, gradients of a late frame reach y_0, and the memo
decodes each frame once per evaluation without changing any value. Tiny random-weight models, 64×64."""

import pytest
import torch

from rdopt.codecs.video.gop import gop_names
from rdopt.infer.codec_graph import Target, codec_graph
from rdopt.infer.contract import check_all
from rdopt.relax.rounding import hard, identity

from video_fixtures import tiny_frames as _frames, tiny_video_codec as _codec


def _gop(frames=3, dtype=torch.float64):
    return _codec(dtype, quality=2).gop(frames)


def test_names_and_parents():
    assert gop_names(("w", "z_w", "y", "z_y"), 2) == (("y_0", "z_0"), ("w_1", "z_w_1", "y_1", "z_y_1"))
    g = _gop(3)
    specs = {s.name: s for s in g.latents}
    assert specs["w_2"].parents == ("y_0", "z_0", "w_1", "z_w_1", "y_1", "z_y_1")
    assert specs["y_2"].parents[-2:] == ("w_2", "z_w_2") and specs["z_y_2"].parents == ("y_2",)
    assert [s.frame for s in g.latents] == [0, 0, 1, 1, 1, 1, 2, 2, 2, 2]
    assert g.lmbda == pytest.approx(512.0 / 255**2) and g.model_id == "rdopt-video-q2"


def test_contract_suite_float64():
    check_all(_gop(3), _frames(b=2, t=3, dtype=torch.float64))


def test_graph_amortized_values_equal_the_plain_encode():
    g = _gop(3)
    x = _frames(b=1, t=3, dtype=torch.float64)
    values = codec_graph(g).amortize(Target(x, g.lmbda))
    q = g.quantize(values)
    # the plain encoder, frame by frame through the P-frame protocol against the decoder's hard reference
    it, p = g.video.iframe, g.video.pframe
    rnd = {n: hard() for n in p.names}
    with torch.no_grad():
        lat0 = it.quantize(it.amortize(x[:, 0]))
        ref = it.hard_evaluate(lat0).x_hat
        plain, recs = {"y_0": lat0["y"], "z_0": lat0["z"]}, [ref]
        for t in range(1, 3):
            w, zw = p.infer_motion(x[:, t], ref)
            y, zy = p.infer_residual(x[:, t], p.evaluate_motion(w, zw, ref, rnd))
            lat = p.quantize({"w": w, "z_w": zw, "y": y, "z_y": zy})
            ref = p.evaluate_residual(lat["y"], lat["z_y"], rnd, p.evaluate_motion(lat["w"], lat["z_w"], ref, rnd)).x_hat
            plain.update({f"{n}_{t}": v for n, v in lat.items()})
            recs.append(ref)
    for n, v in plain.items():
        torch.testing.assert_close(q[n], v, rtol=0, atol=1e-9)
    torch.testing.assert_close(g.reconstruct(q), torch.stack(recs, 1), rtol=0, atol=1e-9)


def test_gradient_of_the_last_frame_term_reaches_y0_through_the_references():
    g = _gop(3)
    x = _frames(b=1, t=3, dtype=torch.float64)
    graph = codec_graph(g)
    target = Target(x, g.lmbda)
    values = [v.clone().requires_grad_(True) for v in graph.amortize(target).tensors]
    ctx = graph.context(target, identity())
    last = graph.term_indices(graph.window(graph.index("w_2"), 0))
    cost = graph.objective(ctx, values, last).sum()
    gy0, gw1 = torch.autograd.grad(cost, [values[graph.index("y_0")], values[graph.index("w_1")]])
    assert float(gy0.abs().sum()) > 0 and float(gw1.abs().sum()) > 0
    # and through the re-inferred descendants: complete() from y_0 alone, then the last frame's cost
    y0 = values[0].detach().clone().requires_grad_(True)
    ctx = graph.context(target, identity())
    full = graph.complete(ctx, [y0])
    g_re, = torch.autograd.grad(graph.objective(ctx, full, last).sum(), [y0])
    assert float(g_re.abs().sum()) > 0 and not torch.allclose(g_re, gy0)


def test_memo_decodes_each_frame_once_and_changes_nothing(monkeypatch):
    g = _gop(4)
    x = _frames(b=1, t=4, dtype=torch.float64)
    graph = codec_graph(g)
    target = Target(x, g.lmbda)
    values = list(graph.amortize(target).tensors)
    calls = {"n": 0}
    original = g.pframe.evaluate_residual

    def counting(*a, **k):
        calls["n"] += 1
        return original(*a, **k)

    monkeypatch.setattr(g.pframe, "evaluate_residual", counting)
    with torch.no_grad():
        with_memo = graph.objective(graph.context(target, identity()), values)
    assert calls["n"] == 3  # one residual decode per P-frame for all four terms
    calls["n"] = 0
    monkeypatch.setattr(g, "supports_memo", False)
    with torch.no_grad():
        without = graph.objective(graph.context(target, identity()), values)
    assert calls["n"] == 1 + 2 + 3  # each term decodes its prefix again
    torch.testing.assert_close(with_memo, without, rtol=0, atol=0)


def test_memo_is_not_stale_after_an_in_place_update():
    g = _gop(2)
    x = _frames(b=1, t=2, dtype=torch.float64)
    lat = g.amortize(x)
    relax = {n: identity() for n in lat.names}
    memo: dict = {}
    a = g.evaluate(lat, relax, memo=memo).x_hat.clone()
    with torch.no_grad():
        lat["y_0"].add_(0.7)  # in place, as an optimizer step does
    b = g.evaluate(lat, relax, memo=memo).x_hat
    c = g.evaluate(lat, relax).x_hat
    assert not torch.allclose(a, b)
    torch.testing.assert_close(b, c, rtol=0, atol=0)


def test_evaluate_refuses_a_non_prefix():
    g = _gop(3)
    lat = g.amortize(_frames(b=1, t=3, dtype=torch.float64))
    with pytest.raises(ValueError, match="frames 0"):
        g.evaluate(lat.subset([n for n in lat.names if not n.endswith("_1")]) if hasattr(lat, "subset")
                   else type(lat)((n, lat[n]) for n in lat.names if not n.endswith("_1")), {n: hard() for n in lat.names})


def test_shipped_pframe_weights_load_as_a_video_codec(tmp_path):
    from rdopt.codecs.image.loading import ModelUnavailable
    from rdopt.api.video import load_video_codec

    codec = _codec(torch.float32)
    path = tmp_path / "p.pt"
    codec.pframe.save_shipped(path, meta={"lmbda": 512.0, "iframe_quality": 2})
    video = load_video_codec(checkpoint=path)
    assert video.lmbda == pytest.approx(512.0 / 255**2) and video.iframe.quality == 2 and video.model_id == "rdopt-video-custom"
    assert all(p.dtype == torch.float32 for p in video.pframe.parameters())
    for name, p in video.pframe.named_parameters():  # float16-rounded values, tables from them
        torch.testing.assert_close(p, codec.pframe.get_parameter(name).half().float(), rtol=0, atol=0)
    gop = video.gop(2)
    assert gop.lmbda == pytest.approx(512.0 / 255**2)
    with pytest.raises(ModelUnavailable, match="no such checkpoint"):
        load_video_codec(checkpoint=tmp_path / "missing.pt")
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ModelUnavailable, match="is not an rdopt-video P-frame weights file"):
        load_video_codec("rdopt-video", checkpoint=tmp_path / "bad.pt")
    with pytest.raises(ModelUnavailable, match="is not an rdopt-video2 P-frame weights file"):  # no family: the default
        load_video_codec(checkpoint=tmp_path / "bad.pt")
    with pytest.raises(ModelUnavailable, match="qualities 1-4"):
        load_video_codec(quality=7)


def test_frozen_frames_are_decoded_once_across_steps_and_change_nothing(monkeypatch):
    """A sequential solver's frozen frames (hard, no gradient) are decoded once while caching_frozen is
    active; the solution is the same as without the cache."""
    from rdopt.infer.allocation import allocate
    from rdopt.infer.options import SolverOptions

    g = _gop(3)
    x = _frames(b=1, t=3, dtype=torch.float64)
    opts = SolverOptions(solver="sequential", steps=3, steps_p=3, eval_every=2)
    calls = {"n": 0}
    original = g.iframe.evaluate

    def counting(*a, **k):
        calls["n"] += 1
        return original(*a, **k)

    monkeypatch.setattr(g.iframe, "evaluate", counting)
    cached = allocate(g, x, opts)
    n_cached = calls["n"]
    calls["n"] = 0
    import contextlib

    monkeypatch.setattr(g, "caching_frozen", lambda *a, **k: contextlib.nullcontext())
    plain = allocate(g, x, opts)
    assert n_cached < calls["n"]
    for n in plain.latents.names:
        torch.testing.assert_close(cached.latents[n], plain.latents[n], rtol=0, atol=0)
    assert all(p.requires_grad for p in g.video.pframe.parameters())  # restored after solving


def test_sequential_gradient_through_re_inferred_descendants_matches_finite_differences():
    """The gradient sequential SAVI uses for y_0 — the GoP cost with every later latent re-inferred by the
    encoders from y_0 — agrees with a central finite difference along a random direction (float64)."""
    g = _gop(3)
    x = _frames(b=1, t=3, dtype=torch.float64)
    graph = codec_graph(g)
    target = Target(x, g.lmbda)
    y0 = graph.amortize(target).tensors[0].clone()

    def cost(v):
        ctx = graph.context(target, identity())
        return graph.objective(ctx, graph.complete(ctx, [v])).sum()

    leaf = y0.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(cost(leaf), [leaf])
    d = torch.randn(y0.shape, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    eps = 1e-5
    with torch.no_grad():
        fd = (cost(y0 + eps * d) - cost(y0 - eps * d)) / (2 * eps)
    assert float((grad * d).sum()) == pytest.approx(float(fd), rel=1e-5, abs=1e-8)
