"""Multi-sample training objectives (rdopt.losses.multisample, MS-NIC): one sample is the ELBO bit for bit,
the bounds are ordered, the importance-weighted gradient is autograd of the log-mean-exp, DReG matches the
doubly-reparameterized formula computed by hand, and the CLI refuses bad combinations."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from conftest import pattern_image, tiny_adapter
from rdopt.core.rd import rd_cost
from rdopt.core.types import Latents
from rdopt.losses.multisample import ELBO, IWAE, MSDMS, MSMix, evaluate_grid, make_objective, weight_scale

LMBDA = 0.0067


def _model(trainable: bool = True, scale_only: bool = False):
    m = tiny_adapter(seed=1, scale_only=scale_only).double()
    for p in m.parameters():
        p.requires_grad_(trainable)
    return m


def _image(batch: int = 2, size: int = 64) -> torch.Tensor:
    xs = [torch.from_numpy(pattern_image(size, size, s)).permute(2, 0, 1).double() / 255 for s in range(batch)]
    return torch.stack(xs)


def _grads(model, loss) -> dict[str, torch.Tensor]:
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    gs = torch.autograd.grad(loss, [p for _, p in params], allow_unused=True)
    return {n: (g if g is not None else torch.zeros_like(p)) for (n, p), g in zip(params, gs)}


def _add(noise):
    return lambda v, offset: v + noise


# ------------------------------------------------------------------ one sample = the ELBO
@pytest.mark.parametrize("scale_only", [False, True])
def test_one_sample_is_the_elbo_bit_for_bit_values_and_gradients(float64, scale_only):
    model, x = _model(scale_only=scale_only), _image()
    ref = ELBO(LMBDA, scale_floor_weight=0.3)(model, x, torch.Generator().manual_seed(5))
    ref_grads = _grads(model, ref.loss.sum())
    objectives = [MSMix(LMBDA, samples=1, scale_floor_weight=0.3), MSDMS(LMBDA, samples=1, z_samples=1, scale_floor_weight=0.3),
                  MSMix(LMBDA, samples=1, estimator="dreg", scale_floor_weight=0.3),
                  make_objective("ms-dms", LMBDA, samples=1, z_samples=1, weights="bpp", scale_floor_weight=0.3)]
    for obj in objectives:
        c = obj(model, x, torch.Generator().manual_seed(5))
        assert torch.equal(c.loss, ref.loss) and torch.equal(c.bpp, ref.bpp) and torch.equal(c.mse, ref.mse), obj
        assert torch.equal(c.ess, torch.ones_like(c.ess))
        g = _grads(model, c.loss.sum())
        for n in ref_grads:
            assert torch.equal(g[n], ref_grads[n]), (obj, n)


def test_one_sample_without_direct_y_is_the_plain_two_level_vae(float64):
    """ELBO(direct_y=False) and IWAE(k=1): z = h_a(ỹ) from the noisy sample, noise of y drawn first —
    checked against the codec's own evaluate with that noise."""
    model, x = _model(), _image()
    gen = torch.Generator().manual_seed(9)
    y = model.analysis(x)
    u = torch.rand(y.shape, generator=gen, dtype=y.dtype) - 0.5
    z = model.hyper_analysis(y + u)
    v = torch.rand(z.shape, generator=gen, dtype=z.dtype) - 0.5
    ev = model.evaluate(Latents({"y": y, "z": z}), {"y": _add(u), "z": _add(v)})
    ref = rd_cost(ev, x, LMBDA)
    for obj in (ELBO(LMBDA, direct_y=False), IWAE(LMBDA, samples=1), make_objective("elbo", LMBDA, direct_y=False)):
        c = obj(model, x, torch.Generator().manual_seed(9))
        assert torch.allclose(c.loss, ref.loss, rtol=1e-13, atol=0) and torch.allclose(c.bpp, ref.bpp, rtol=1e-13)
    # and it is not the direct-y ELBO
    assert not torch.allclose(ELBO(LMBDA)(model, x, torch.Generator().manual_seed(9)).loss, ref.loss)


def test_the_grid_fast_path_equals_the_protocol_fallback(float64):
    model, x = _model(False), _image()
    lat = model.amortize(x)
    g = torch.Generator().manual_seed(2)
    yt = lat["y"][None] + torch.rand((3, *lat["y"].shape), generator=g) - 0.5
    zt = lat["z"][None] + torch.rand((2, *lat["z"].shape), generator=g) - 0.5

    class Protocol:  # the codec without evaluate_grid
        def __init__(self, m):
            self.m = m

        def evaluate(self, latents, relax):
            return self.m.evaluate(latents, relax)

    fast, slow = evaluate_grid(model, yt, zt), evaluate_grid(Protocol(model), yt, zt)
    assert fast.bits_y.shape == (3, 2, 2) and fast.bits_z.shape == (2, 2) and fast.x_hat.shape == (3, 2, 3, 64, 64)
    for a, b in ((fast.x_hat, slow.x_hat), (fast.bits_y, slow.bits_y), (fast.bits_z, slow.bits_z), (fast.scales, slow.scales)):
        assert torch.allclose(a, b, rtol=1e-12, atol=1e-12)
    # pair (i, j) is ỹ_i under p(· | z̃_j): evaluate one pair on its own
    ev = model.evaluate(Latents({"y": yt[2], "z": zt[1]}), {"y": lambda v, o: v, "z": lambda v, o: v})
    assert torch.allclose(fast.bits_y[2, 1], ev.rates["y"], rtol=1e-12) and torch.allclose(fast.bits_z[1], ev.rates["z"])


# ------------------------------------------------------------------ the value and gradient of the bound
def _hand_costs(model, x, seed, k, l, iwae=False):
    """Per-sample costs C (S×B) recomputed pair by pair through the codec's evaluate with the noise the
    objective draws (same generator order), kept in the autograd graph."""
    gen = torch.Generator().manual_seed(seed)
    costs = []
    if iwae:
        y = model.analysis(x)
        u = torch.rand((k, *y.shape), generator=gen, dtype=y.dtype) - 0.5
        zs = [model.hyper_analysis(y + u[i]) for i in range(k)]
        v = torch.rand((k * x.shape[0], *zs[0].shape[1:]), generator=gen, dtype=y.dtype).view(k, *zs[0].shape) - 0.5
        for i in range(k):
            ev = model.evaluate(Latents({"y": y, "z": zs[i]}), {"y": _add(u[i]), "z": _add(v[i])})
            costs.append(rd_cost(ev, x, LMBDA).loss)
        return torch.stack(costs)
    lat = model.amortize(x)
    v = torch.rand((1, *lat["z"].shape), generator=gen, dtype=x.dtype) - 0.5
    u = torch.rand((k, *lat["y"].shape), generator=gen, dtype=x.dtype) - 0.5
    v = torch.cat([v, torch.rand((l - 1, *lat["z"].shape), generator=gen, dtype=x.dtype) - 0.5])
    for i in range(k):
        for j in range(l):
            ev = model.evaluate(lat, {"y": _add(u[i]), "z": _add(v[j])})
            costs.append(rd_cost(ev, x, LMBDA).loss)
    return torch.stack(costs)


@pytest.mark.parametrize("weights", ["nats", "bpp"])
@pytest.mark.parametrize("kind,k,l", [("ms-mix", 4, 1), ("ms-dms", 3, 2), ("iwae", 3, 1)])
def test_importance_weighted_gradient_is_autograd_of_the_log_mean_exp(float64, kind, k, l, weights):
    model, x = _model(), _image()
    kw = {"z_samples": l} if kind == "ms-dms" else {}
    c = make_objective(kind, LMBDA, samples=k, weights=weights, **kw)(model, x, torch.Generator().manual_seed(4))
    got = _grads(model, c.loss.sum())
    costs = _hand_costs(model, x, 4, k, l, iwae=kind == "iwae")
    beta = weight_scale(weights, x.shape[-2] * x.shape[-1])
    bound = -(torch.logsumexp(-beta * costs, 0) - math.log(costs.shape[0])) / beta
    assert torch.allclose(c.loss, bound, rtol=1e-10, atol=0)
    assert torch.all(c.loss <= costs.mean(0) + 1e-12)  # Jensen, per realization
    assert torch.allclose(c.elbo, costs.mean(0), rtol=1e-12)
    want = _grads(model, bound.sum())
    big = max(float(w.abs().max()) for w in want.values())
    for n in want:
        assert torch.allclose(got[n], want[n], rtol=1e-7, atol=1e-9 * big), n
    # the weights are not trivially uniform or one-hot here (else the test says little)
    w = torch.softmax(-beta * costs.detach(), 0)
    assert float(w.max()) < 0.999 or weights == "nats"
    assert float(w.max()) > 1.0 / costs.shape[0] + 1e-6


def test_bounds_are_ordered_in_expectation(float64, tiny_model):
    """E[L_DMS(4,4)] ≥ E[L_MIX(4)] ≥ E[L_MIX(2)] ≥ ELBO (the paper's maximised form; rdopt's losses the other
    way) over 384 Monte Carlo draws on the trained tiny model (float64). The objectives draw from the same
    seeds (common random numbers: z̃_1, then the ỹ samples, then z̃_2..l, so the first samples coincide), and each
    expected gap must exceed 3 standard errors of the paired differences."""
    model = copy.deepcopy(tiny_model).double()  # the fixture is shared by the session
    x = _image(1).expand(48, -1, -1, -1).contiguous()  # 48 independent draws per call

    def draws(obj):
        with torch.no_grad():
            return torch.cat([obj(model, x, torch.Generator().manual_seed(100 + s)).loss for s in range(8)])

    elbo, mix2, mix4 = draws(ELBO(LMBDA)), draws(MSMix(LMBDA, samples=2)), draws(MSMix(LMBDA, samples=4))
    dms = draws(MSDMS(LMBDA, samples=4, z_samples=4))
    for worse, better in ((elbo, mix2), (mix2, mix4), (mix4, dms), (elbo, dms)):
        d = worse - better
        assert float(d.mean()) > 3 * float(d.std()) / math.sqrt(d.numel()), (float(d.mean()), float(d.std()))
    # the mean per-sample cost of a multi-sample objective is an unbiased ELBO estimate: no gap there
    with torch.no_grad():
        per_sample = torch.cat([MSMix(LMBDA, samples=4)(model, x, torch.Generator().manual_seed(100 + s)).elbo
                                for s in range(8)])
    d = elbo - per_sample
    assert abs(float(d.mean())) < 4 * float(d.std()) / math.sqrt(d.numel()) + 1e-12


# ------------------------------------------------------------------ DReG
def _inference(name: str) -> bool:
    return name.startswith("net.g_a.") or name.startswith("net.h_a.")


@pytest.mark.parametrize("kind", ["ms-mix", "iwae"])
def test_dreg_gradient_matches_the_doubly_reparameterized_formula_by_hand(float64, kind):
    """Inference parameters: Σ_i w̃_i² (∂C_i/∂h_i)(∂h_i/∂φ) through the IWAE latent h_i (MIX: ỹ_i, and the
    shared z̃ with w̃_i; IWAE: (ỹ_i, z̃_i)); generative parameters: Σ_i w̃_i ∇_θ C_i (pathwise)."""
    k, seed = 3, 8
    model, x = _model(), _image()
    obj = make_objective(kind, LMBDA, samples=k, estimator="dreg", weights="bpp")
    c = obj(model, x, torch.Generator().manual_seed(seed))
    got = _grads(model, c.loss.sum())
    pathwise = _grads(model, make_objective(kind, LMBDA, samples=k, weights="bpp")(model, x, torch.Generator().manual_seed(seed)).loss.sum())

    gen = torch.Generator().manual_seed(seed)
    params = dict((n, p) for n, p in model.named_parameters() if p.requires_grad)
    gen_params = {n: p for n, p in params.items() if not _inference(n)}
    inf_params = {n: p for n, p in params.items() if _inference(n)}
    if kind == "ms-mix":
        lat = model.amortize(x)
        y, z = lat["y"], lat["z"]
        v = torch.rand((1, *z.shape), generator=gen, dtype=x.dtype)[0] - 0.5
        u = torch.rand((k, *y.shape), generator=gen, dtype=x.dtype) - 0.5
        ys = [(y + u[i]).detach().requires_grad_() for i in range(k)]
        zt = (z + v).detach().requires_grad_()
        costs = [rd_cost(model.evaluate(Latents({"y": ys[i], "z": zt}), {"y": lambda a, o: a, "z": lambda a, o: a}), x, LMBDA).loss
                 for i in range(k)]
        w = torch.softmax(-torch.stack(costs).detach(), 0)  # β = 1 ("bpp")
        gy = [torch.autograd.grad(costs[i].sum(), ys[i], retain_graph=True)[0] for i in range(k)]
        gz = [torch.autograd.grad(costs[i].sum(), zt, retain_graph=True)[0] for i in range(k)]
        gtheta = [torch.autograd.grad((w[i] * costs[i]).sum(), list(gen_params.values()), retain_graph=True,
                                      allow_unused=True) for i in range(k)]
        wy = sum(w[i].view(-1, 1, 1, 1) ** 2 * gy[i] for i in range(k))
        wz = sum(w[i].view(-1, 1, 1, 1) * gz[i] for i in range(k))
        inf = torch.autograd.grad([y, z], list(inf_params.values()), grad_outputs=[wy, wz], allow_unused=True)
    else:
        y = model.analysis(x)
        u = torch.rand((k, *y.shape), generator=gen, dtype=x.dtype) - 0.5
        yt = [y + u[i] for i in range(k)]
        zs = [model.hyper_analysis(t) for t in yt]
        v = torch.rand((k * x.shape[0], *zs[0].shape[1:]), generator=gen, dtype=x.dtype).view(k, *zs[0].shape) - 0.5
        zt = [zs[i] + v[i] for i in range(k)]
        hy = [t.detach().requires_grad_() for t in yt]
        hz = [t.detach().requires_grad_() for t in zt]
        costs = [rd_cost(model.evaluate(Latents({"y": hy[i], "z": hz[i]}), {"y": lambda a, o: a, "z": lambda a, o: a}), x, LMBDA).loss
                 for i in range(k)]
        w = torch.softmax(-torch.stack(costs).detach(), 0)
        outs, grads_out = [], []
        for i in range(k):
            gyi, gzi = torch.autograd.grad(costs[i].sum(), [hy[i], hz[i]], retain_graph=True)
            wi2 = w[i].view(-1, 1, 1, 1) ** 2
            outs += [yt[i], zt[i]]
            grads_out += [wi2 * gyi, wi2 * gzi]
        gtheta = [torch.autograd.grad((w[i] * costs[i]).sum(), list(gen_params.values()), retain_graph=True,
                                      allow_unused=True) for i in range(k)]
        inf = torch.autograd.grad(outs, list(inf_params.values()), grad_outputs=grads_out, allow_unused=True)
    assert 0.05 < float(w.max()) < 0.95  # the weights matter in this case
    for (n, p), g in zip(inf_params.items(), inf):
        g = torch.zeros_like(p) if g is None else g
        assert torch.allclose(got[n], g, rtol=1e-7, atol=1e-12), n
    for idx, (n, p) in enumerate(gen_params.items()):
        want = sum(gtheta[i][idx] if gtheta[i][idx] is not None else torch.zeros_like(p) for i in range(k))
        assert torch.allclose(got[n], want, rtol=1e-7, atol=1e-12), n
        assert torch.allclose(got[n], pathwise[n], rtol=1e-10, atol=1e-14), n  # DReG scales the latents' gradient only
    # and the inference gradients differ from the pathwise ones (w̃² ≠ w̃)
    assert any(not torch.allclose(got[n], pathwise[n], rtol=1e-6) for n in inf_params)


# ------------------------------------------------------------------ configuration errors
@pytest.mark.parametrize("kwargs,message", [
    ({"name": "elbo", "samples": 4}, "single-sample"),
    ({"name": "elbo", "estimator": "dreg"}, "needs a multi-sample objective"),
    ({"name": "ms-dms", "estimator": "dreg"}, "independent samples"),
    ({"name": "ms-mix", "z_samples": 2}, "ms-dms only"),
    ({"name": "ms-mix", "direct_y": False}, "direct-y"),
    ({"name": "ms-dms", "direct_y": False}, "direct-y"),
    ({"name": "vae"}, "unknown objective"),
    ({"name": "ms-mix", "weights": "bits"}, "importance weights"),
])
def test_make_objective_refuses_bad_combinations(kwargs, message):
    with pytest.raises(ValueError, match=message):
        make_objective(lmbda=LMBDA, **kwargs)


def test_defaults_and_objects():
    assert make_objective("ms-mix", LMBDA).samples == 8
    d = make_objective("ms-dms", LMBDA)
    assert (d.samples, d.z_samples) == (4, 4)
    assert make_objective("iwae", LMBDA, direct_y=False).samples == 8
    assert make_objective("elbo", LMBDA) == ELBO(LMBDA)
    with pytest.raises(ValueError):
        MSMix(LMBDA, samples=0)


@pytest.mark.parametrize("args,message", [
    (["--samples", "4"], "single-sample"),
    (["--objective", "ms-dms", "--estimator", "dreg"], "independent samples"),
    (["--objective", "ms-mix", "--z-samples", "2"], "ms-dms only"),
    (["--objective", "ms-mix", "--no-direct-y"], "direct-y"),
    (["--estimator", "dreg"], "multi-sample"),
    (["--objective", "ms-mix", "--measure-snr", "1"], "at least 2"),
    (["--video", "--objective", "ms-mix"], "image options"),
])
def test_cli_refuses_bad_objective_combinations(cli, tmp_path, args, message):
    code, _, err = cli("train", "--out", tmp_path / "s.pt", "--steps", "1", "--quality", "2", *args)
    assert code == 2 and message in err, err
    assert not (tmp_path / "s.pt").exists()


# ------------------------------------------------------------------ gradient SNR
def test_gradient_snr_is_mean_over_std_per_scalar_then_averaged_per_group():
    from rdopt.training.snr import gradient_snr

    module = torch.nn.Module()
    module.a = torch.nn.Parameter(torch.zeros(2, dtype=torch.float64))
    module.b = torch.nn.Parameter(torch.zeros(1, dtype=torch.float64))
    # batch i has gradient (g_i, −2·g_i) for a and 5 for b (constant: no variance, left out)
    values = torch.tensor([1.0, 2.0, 4.0, -1.0], dtype=torch.float64)

    class Cost:
        def __call__(self, model, x, gen):
            from rdopt.core.rd import RDCost

            v = x.view(())
            loss = v * module.a[0] - 2 * v * module.a[1] + 5 * module.b[0]
            return RDCost(bpp=loss.detach(), mse=loss.detach(), loss=loss.view(1))

    groups = {"a": [("a", module.a)], "b": [("b", module.b)]}
    snr = gradient_snr(None, module, groups, {"c": Cost()}, [v.view(1) for v in values])
    want = float(values.mean().abs() / values.std())  # the same for both scalars of a (|−2| cancels)
    assert snr["c"]["a"] == pytest.approx(want, rel=1e-12)
    assert math.isnan(snr["c"]["b"])
    assert module.a.grad is None  # gradients are left cleared
    with pytest.raises(ValueError):
        gradient_snr(None, module, groups, {"c": Cost()}, [values[:1]])


def test_parameter_groups_cover_the_network_by_role():
    model = _model(False)
    groups = model.parameter_groups()
    assert set(groups) == {"y_inference", "y_generative", "z_inference", "z_generative", "z_prior"}
    named = {n for g in groups.values() for n, _ in g}
    every = {n for n, _ in model.net.named_parameters() if not n.endswith(".quantiles")}
    assert named == every and all(groups[g] for g in groups)
    assert all(n.startswith("h_a.") for n, _ in groups["z_inference"])
