"""GoP bit allocation: every method keeps or lowers the true GoP cost, stages and budgets
follow the latent kinds, windowed with C = GoP equals sequential, exact on the codec's DAG equals
autograd through the unrolled nested descent, BAO on a subset leaves the rest untouched."""

import pytest
import torch

from rdopt.infer.allocation import (METHODS, allocate, chosen_nodes, frame_lambda_scales, latent_stages,
                              stage_budgets)
from rdopt.infer.codec_graph import Target, codec_graph
from rdopt.infer.dag import exact_gradient
from rdopt.infer.options import SolverOptions

from conftest import cut_solver_loop
from test_dag_solvers import unrolled_gradient
from toy_codecs import ToyVideoCodec, smooth_frames
from video_fixtures import tiny_frames, tiny_video_codec

FAST = dict(steps=12, steps_p=6, oeu_steps=4, eval_every=3, exact_steps=1)


@pytest.fixture(scope="module")
def gop3():
    return tiny_video_codec(torch.float64, quality=2).gop(3), tiny_frames(b=1, t=3, dtype=torch.float64)


def test_stages_budgets_and_chosen_latents(gop3):
    g, _ = gop3
    assert latent_stages(g) == ((0, 2), (2, 4), (4, 6), (6, 8), (8, 10))  # y0 | w1 | y1 | w2 | y2
    opts = SolverOptions(solver="sequential", steps=50, steps_p=7, latents="y")
    assert stage_budgets(g, opts) == [50, 0, 7, 0, 7]
    assert stage_budgets(g, SolverOptions(solver="sequential", steps=50, steps_p=7, latents="w")) == [50, 7, 0, 7, 0]
    assert chosen_nodes(g, opts) == ["y_0", "z_0", "y_1", "z_y_1", "y_2", "z_y_2"]


def test_lambda_domain_rule():
    s = frame_lambda_scales(6)
    assert s[0] == pytest.approx(2 ** (1 / 3)) and s[4] == pytest.approx(1.0)
    assert s[1] == s[3] == pytest.approx(2 ** (-2 / 3)) and s[2] == pytest.approx(2 ** (-1 / 3)) and s[5] == s[1]


@pytest.mark.parametrize("method", [m for m in METHODS if m != "exact"])
def test_every_method_keeps_or_lowers_the_true_gop_cost(gop3, method):
    g, x = gop3
    a = allocate(g, x, SolverOptions(solver=method, **FAST))
    assert float(a.objective) <= float(a.amortized_objective) + 1e-9
    assert len(a.frames[0]) == 3 and [r.kind for r in a.frames[0]] == ["I", "P", "P"]
    assert all(r.bytes > 0 and r.bpp == pytest.approx(8 * r.bytes / (64 * 64)) for r in a.frames[0])
    assert set(a.frames[0][1].bits_estimated) == {"w_1", "z_w_1", "y_1", "z_y_1"}
    assert torch.equal(g.quantize(a.latents)["y_1"], a.latents["y_1"])  # hard latents


def test_sequential_lowers_the_cost_of_a_toy_gop():
    codec = ToyVideoCodec(seed=0)
    x = smooth_frames(batch=2)
    a = allocate(codec, x, SolverOptions(solver="sequential", steps=60, steps_p=60, lr=0.05, eval_every=5),
                 lmbda=codec.lmbda)
    assert bool((a.objective < a.amortized_objective - 1e-6).all()) and not bool(a.fell_back.any())


def test_windowed_with_the_whole_gop_equals_sequential(gop3):
    g, x = gop3
    seq = allocate(g, x, SolverOptions(solver="sequential", **FAST))
    win = allocate(g, x, SolverOptions(solver="windowed", window=2, **FAST))
    for n in seq.latents.names:
        torch.testing.assert_close(win.latents[n], seq.latents[n], rtol=0, atol=0)


def test_bao_on_residual_latents_leaves_the_motion_latents_at_their_amortized_values(gop3):
    g, x = gop3
    a = allocate(g, x, SolverOptions(solver="bao", latents="y", steps_bao=6, eval_every=3))
    amort = g.quantize(g.amortize(x))
    if not bool(a.fell_back.any()):
        for n in ("w_1", "z_w_1", "w_2", "z_w_2"):
            torch.testing.assert_close(a.latents[n], amort[n], rtol=0, atol=0)


def test_exact_is_refused_for_long_gops_and_matches_unrolled_autograd_on_the_codec_dag(gop3):
    g, x = gop3
    with pytest.raises(ValueError, match="refused for a GoP of 3 frames"):
        allocate(g, x, SolverOptions(solver="exact"))
    codec = ToyVideoCodec(seed=1)
    xt = smooth_frames(batch=1)
    graph = codec_graph(codec, unit="bits")
    target = Target(xt, codec.lmbda)
    prefix = [graph.amortize(target).tensors[0]]
    K, lr = 1, 1e-3
    got = exact_gradient(graph, target, prefix, K, lr)
    ref_value, ref_grads = unrolled_gradient(graph, target, prefix, K, lr)
    torch.testing.assert_close(got.value, ref_value, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(got.grads[0], ref_grads[0], rtol=1e-7, atol=1e-9)
    small = allocate(codec, xt, SolverOptions(solver="exact", exact_steps=1, exact_lr=1e-3),
                     lmbda=codec.lmbda)
    assert float(small.objective) <= float(small.amortized_objective) + 1e-9



def test_exact_whose_nested_descent_diverges_falls_back_instead_of_crashing(monkeypatch):
    """Plain descent with too large a step diverged inside the nested solves, the motion flow became NaN and
    PyTorch's CPU grid_sample backward crashed on it. A step of 1 makes the tiny codec's nested descent diverge
    the same way: the run must end with the amortized values, not a crash."""
    import rdopt.codecs.video.dvc as dvc

    nan_flows = []

    def counting_warp(ref, flow, _warp=dvc.warp):
        nan_flows.append(bool(torch.isnan(flow).any()))
        return _warp(ref, flow)

    monkeypatch.setattr(dvc, "warp", counting_warp)
    g = tiny_video_codec(torch.float64, quality=2).gop(2)
    a = allocate(g, tiny_frames(b=1, t=2, dtype=torch.float64),
                 SolverOptions(solver="exact", exact_steps=1, exact_lr=1.0), report=False)
    assert any(nan_flows)  # the path that crashed was taken
    assert bool(torch.isfinite(a.objective).all()) and float(a.objective) <= float(a.amortized_objective) + 1e-9

def test_oeu_needs_encoders_and_adapts_a_private_copy(gop3):
    g, x = gop3
    with pytest.raises(ValueError, match="exposes its encoders"):
        allocate(ToyVideoCodec(), smooth_frames(batch=1), SolverOptions(solver="oeu", oeu_steps=1))
    before = {k: v.clone() for k, v in g.video.state_dict().items()}
    allocate(g, x, SolverOptions(solver="oeu", oeu_steps=3, eval_every=1, oeu_lr=1e-2))
    assert all(torch.equal(before[k], v) for k, v in g.video.state_dict().items())


def test_options_are_validated():
    with pytest.raises(ValueError, match="unknown solver 'magic'"):
        SolverOptions(solver="magic")
    with pytest.raises(ValueError, match="latents is one of"):
        SolverOptions(solver="sequential", latents="z")


def test_stages_that_are_not_optimized_keep_a_p_frame_temperature(gop3):
    """With --latents y the motion stages have no steps, but they are re-inferred (and relaxed) inside the
    objective of the stages before them: their SGA temperature follows a P-frame budget instead of one step
    (a temperature annealed to ~1e-12 made PyTorch's backward crash on the real codec)."""
    from rdopt.infer.allocation import _sga_schedules

    g, _ = gop3
    opts = SolverOptions(solver="sequential", latents="y", steps=50, steps_p=12)
    stages, budgets = latent_stages(g), stage_budgets(g, opts)
    scheds = _sga_schedules(g, budgets, stages, opts, torch.Generator().manual_seed(0))
    probe = torch.full((1, 4), 0.3, dtype=torch.float64)
    for name in ("w_1", "z_w_1", "y_1"):
        relax = scheds[name](11)  # the last step of a P-frame stage
        assert torch.isfinite(relax(probe.requires_grad_(True), torch.zeros_like(probe))).all()
    from rdopt.relax.schedules import fitted_to_budget

    assert fitted_to_budget(12)(11) >= 0.05 - 1e-12  # what a 0-budget stage now follows


@pytest.mark.parametrize("method", ["sequential", "lambda-domain"])
def test_a_stage_file_resumes_an_interrupted_solve_to_the_uninterrupted_result(gop3, method, tmp_path, monkeypatch):
    g, x = gop3
    opts = SolverOptions(solver=method, **FAST)  # SGA: the noise generator's state is part of what resumes
    whole = allocate(g, x, opts)
    f = tmp_path / "gop.stages.pt"
    with monkeypatch.context() as m:
        cut_solver_loop(m, 3)
        cut = allocate(g, x, opts, stage_file=f)
    assert cut.interrupted and f.is_file()
    saved = torch.load(f, weights_only=True)
    assert len(saved["records"]) == 3 and len(saved["frozen"]) == 6  # y0,z0 | w1,zw1 | y1,zy1 finished
    calls = cut_solver_loop(monkeypatch, -1)  # count the loops of the resumed call
    again = allocate(g, x, opts, stage_file=f)
    assert len(calls) == 2 and not again.interrupted  # only the two stages left ran
    for n in whole.latents.names:
        torch.testing.assert_close(again.latents[n], whole.latents[n], rtol=0, atol=0)
    assert [r["nodes"] for r in again.stages] == [r["nodes"] for r in whole.stages]
    assert float(again.objective) == float(whole.objective)


def test_a_stage_file_of_another_problem_or_unreadable_is_refused(gop3, tmp_path, monkeypatch):
    g, x = gop3
    opts = SolverOptions(solver="sequential", **FAST)
    f = tmp_path / "gop.stages.pt"
    with monkeypatch.context() as m:
        cut_solver_loop(m, 2)
        allocate(g, x, opts, stage_file=f)
    with pytest.raises(ValueError, match="another problem"):
        allocate(g, x, SolverOptions(solver="sequential", **{**FAST, "steps_p": 5}), stage_file=f)
    with pytest.raises(ValueError, match="another problem"):
        allocate(g, x * 0.5, opts, stage_file=f)
    with pytest.raises(ValueError, match="another problem"):
        allocate(g, x, opts, lmbda=0.5, stage_file=f)
    f.write_bytes(f.read_bytes()[:100])
    with pytest.raises(ValueError, match="unreadable"):
        allocate(g, x, opts, stage_file=f)
    from rdopt.infer import dag

    amort = g.amortize(x)
    with pytest.raises(ValueError, match="whole stages"):
        dag.sequential(codec_graph(g), Target(x, g.lmbda, 64, 64), 2, 0.01, stages=latent_stages(g),
                       resume=[amort["y_0"]])


@pytest.mark.parametrize("method", ["sequential", "bao"])
def test_a_stage_cut_mid_way_resumes_from_its_snapshot_to_the_uninterrupted_result(gop3, method, tmp_path, monkeypatch):
    """Within a stage the loop's state (latents, Adam's moments, best so far) and the noise generator's are saved
    (here at every evaluation, every 3 steps); a run cut at step 8 of its first stage resumes after step 6 and ends
    exactly where the uninterrupted run does."""
    import rdopt.infer.allocation as allocation
    import rdopt.infer.dag as dag_module

    g, x = gop3
    opts = SolverOptions(solver=method, **FAST)
    whole = allocate(g, x, opts)
    monkeypatch.setattr(allocation, "SNAPSHOT_SECONDS", 0.0)
    real = dag_module.optimize
    f = tmp_path / "gop.stages.pt"

    def cut_at_step_8(params0, relaxed, true, steps, lr, **kw):
        def cut(params, step):
            if step == 7:  # the relaxed objective of step 8 (0-based index 7)
                raise KeyboardInterrupt
            return relaxed(params, step)
        return real(params0, cut, true, steps, lr, **kw)

    with monkeypatch.context() as m:
        m.setattr(dag_module, "optimize", cut_at_step_8)
        cut = allocate(g, x, opts, stage_file=f)
    assert cut.interrupted
    saved = torch.load(f, weights_only=True)
    assert saved["partial"]["stage"] == 0 and saved["partial"]["loop"]["step"] == 6 and saved["frozen"] == []
    starts = []

    def watch(params0, relaxed, true, steps, lr, **kw):
        starts.append(None if kw.get("resume") is None else kw["resume"]["step"])
        return real(params0, relaxed, true, steps, lr, **kw)

    monkeypatch.setattr(dag_module, "optimize", watch)
    again = allocate(g, x, opts, stage_file=f)
    assert starts[0] == 6 and all(s is None for s in starts[1:]) and not again.interrupted
    for n in whole.latents.names:
        torch.testing.assert_close(again.latents[n], whole.latents[n], rtol=0, atol=0)
    assert float(again.objective) == float(whole.objective)
    assert [(r["nodes"], r["before"], r["after"], r["steps"]) for r in again.stages] == \
        [(r["nodes"], r["before"], r["after"], r["steps"]) for r in whole.stages]
    if method == "sequential":  # the stage file now holds the finished stages, no partial one
        saved = torch.load(f, weights_only=True)
        assert saved["partial"] is None and len(saved["records"]) == len(whole.stages)


def test_a_snapshot_of_another_stage_is_refused(gop3):
    from rdopt.infer import dag

    g, x = gop3
    amort = g.amortize(x)
    with pytest.raises(ValueError, match="first stage to run is 1"):
        dag.sequential(codec_graph(g), Target(x, g.lmbda, 64, 64), 2, 0.01, stages=latent_stages(g),
                       resume=[amort["y_0"], amort["z_0"]], partial={"stage": 2, "loop": {}})


def test_a_loop_resumes_without_changing_the_state_it_was_given():
    """The saved state is read, not written: two resumes from one state end alike; a control hook refuses to resume."""
    from rdopt.infer.loop import optimize

    target = torch.tensor([[0.3, -1.2], [2.0, 0.5]], dtype=torch.float64)
    states = []

    def relaxed(params, step):
        return (params[0] - target).pow(2).sum(1)

    def true(params):
        return (params[0].round() - target).pow(2).sum(1)

    x0 = [torch.zeros(2, 2, dtype=torch.float64)]
    whole = optimize(x0, relaxed, true, 9, 0.1, eval_every=2, snapshot=states.append)
    state = states[1]  # after step 4
    kept = {k: v.clone() for k, v in state.items() if isinstance(v, torch.Tensor)}
    kept.update({f"adam {k}": v.clone() for k, v in state["optimizer"]["state"][0].items()})
    a = optimize(x0, relaxed, true, 9, 0.1, eval_every=2, resume=state)
    b = optimize(x0, relaxed, true, 9, 0.1, eval_every=2, resume=state)
    assert all(torch.equal(state[k] if not k.startswith("adam") else state["optimizer"]["state"][0][k[5:]], v)
               for k, v in kept.items())
    for r in (a, b):
        assert torch.equal(r.params[0], whole.params[0]) and torch.equal(r.best_loss, whole.best_loss)
        assert r.steps_run == 9 and r.evaluations == whole.evaluations
    with pytest.raises(ValueError, match="control hook cannot resume"):
        optimize(x0, relaxed, true, 9, 0.1, resume=state, control=lambda step, p: False)
