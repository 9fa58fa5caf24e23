"""Image SAVI on the tiny model: monotone guarantee, methods, batching, schedules."""

import pytest
import torch

from conftest import pattern_image
from rdopt.data.images import pad, to_tensor
from rdopt.infer.image import METHODS, SaviOptions, savi as graph_savi
from rdopt.models.graph import Target, codec_graph
from rdopt.rd import rd_cost


def savi(model, x, options, height, width, lmbda=None):
    """Image SAVI: the generic solver on the model's latent graph."""
    return graph_savi(codec_graph(model), Target(x, model.lmbda if lmbda is None else lmbda, height, width), options)


def true_cost(model, latents, x, h, w, lmbda=None):
    with torch.no_grad():
        return rd_cost(model.hard_evaluate(latents), x, model.lmbda if lmbda is None else lmbda, visible=(h, w)).loss


def batch(n=2, h=48, w=56):
    return torch.cat([pad(to_tensor(pattern_image(h, w, s)), 64) for s in range(n)]), h, w


@pytest.mark.parametrize("method", [m for m in METHODS if m != "amortized"])
def test_every_method_never_ends_worse_than_amortized(tiny_model, method):
    x, h, w = batch()
    r = savi(tiny_model, x, SaviOptions(method=method, steps=60, eval_every=5, progress=False, t0=20, decay=0.02),
             height=h, width=w)
    assert (r.final_loss <= r.initial_loss + 1e-6).all()
    # the reported loss is the true loss of the returned latents
    again = true_cost(tiny_model, r.latents, x, h, w)
    torch.testing.assert_close(again, r.final_loss, rtol=1e-5, atol=1e-5)


def test_sga_improves_the_true_rd_cost(tiny_model):
    x, h, w = batch()
    r = savi(tiny_model, x, SaviOptions(method="sga", steps=150, schedule="budget", progress=False), height=h, width=w)
    assert (r.final_loss < 0.97 * r.initial_loss).all(), (r.initial_loss, r.final_loss)


def test_batch_equals_single_for_a_deterministic_method(tiny_model):
    x, h, w = batch(2)
    opts = SaviOptions(method="danneal", steps=25, eval_every=5, progress=False, t0=0, decay=0.05)
    both = savi(tiny_model, x, opts, height=h, width=w)
    one = savi(tiny_model, x[1:], opts, height=h, width=w)
    torch.testing.assert_close(both.final_loss[1:], one.final_loss, rtol=1e-4, atol=1e-4)


def test_amortized_is_the_encoder_output(tiny_model):
    x, h, w = batch(1)
    r = savi(tiny_model, x, SaviOptions(method="amortized", steps=0, progress=False), height=h, width=w)
    assert r.loop is None and torch.equal(r.final_loss, r.initial_loss)
    torch.testing.assert_close(r.latents["y"], tiny_model.amortize(x)["y"])


def test_options_are_validated():
    with pytest.raises(ValueError, match="unknown method"):
        SaviOptions(method="sgd")
    with pytest.raises(ValueError):
        SaviOptions(lr=0)
    with pytest.raises(ValueError):
        SaviOptions(schedule="fast")
    with pytest.raises(ValueError):
        SaviOptions(steps=-1)
    with pytest.raises(ValueError, match="hold"):
        SaviOptions(hold=1.0)
    with pytest.raises(ValueError, match="tau_end"):
        SaviOptions(tau_end=0.6)
    t = SaviOptions(schedule="budget", steps=100, hold=0.5, tau_end=0.2).temperature()
    assert t(50) == 0.5 and t(100) == pytest.approx(0.2)


def test_trace_records_temperature_and_gap(tiny_model):
    x, h, w = batch(1)
    r = savi(tiny_model, x, SaviOptions(method="sga", steps=20, trace_every=5, progress=False), height=h, width=w)
    assert [t["step"] for t in r.loop.trace] == [5, 10, 15, 20]
    assert all("tau" in t and len(t["relaxed"]) == 1 for t in r.loop.trace)
