"""One options type for image SAVI, GoP allocation and bits-back BBVI: per-task defaults, the reading of
``solver`` by each task, what each GoP method reads, and that every field a solver reads changes its result."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from rdopt.infer.allocation import allocate, stage_budgets
from rdopt.infer.options import GOP_READS, GOP_SOLVERS, IMAGE_SOLVERS, SolverOptions, ignored_by

from toy_codecs import ToyVideoCodec, smooth_frames
from video_fixtures import tiny_frames, tiny_video_codec


def test_task_defaults_fill_only_what_is_unset():
    o = SolverOptions()
    assert o.lr is None and o.window is None
    assert (o.image().lr, o.image().window) == (5e-3, 1)  # paper 003 S3
    assert (o.gop().lr, o.gop().window) == (1e-3, 2)  # paper 001 §5, App. A.7
    given = SolverOptions(lr=0.02, window=0)
    assert (given.image().lr, given.gop().lr, given.gop().window) == (0.02, 0.02, 0)
    assert SolverOptions().method_lr == 5e-3 and SolverOptions(method="ste").method_lr == 1e-4


def test_each_task_reads_solver_its_own_way():
    assert SolverOptions().gop().solver == "bao"  # the joint update of all latents is BAO
    assert SolverOptions(method="amortized").gop().solver == "amortized"
    assert not SolverOptions(solver="amortized").optimizes
    for s in IMAGE_SOLVERS:
        assert SolverOptions(solver=s).image().solver == s
    for s in set(GOP_SOLVERS) - set(IMAGE_SOLVERS):
        with pytest.raises(ValueError, match="is a GoP allocation method"):
            SolverOptions(solver=s).image()


@pytest.mark.parametrize("bad, match", [
    (dict(method="magic"), "unknown method"), (dict(solver="magic"), "unknown solver"),
    (dict(steps=-1), "steps must be"), (dict(steps_p=True), "steps_p must be"), (dict(lr=0.0), "lr must be > 0"),
    (dict(bbvi_lr=1.5), "BBVI learning rate"), (dict(window=-1), "window must be"), (dict(latents="z"), "latents"),
    (dict(hold=1.0), "budget schedule"), (dict(exact_lr=-1.0), "exact_lr"),
])
def test_bad_settings_are_refused_at_construction(bad, match):
    with pytest.raises(ValueError, match=match):
        SolverOptions(**bad)


def test_recorded_settings_keep_the_keys_of_image_results_files():
    """Results files written before the one options type compare these keys on resume."""
    assert set(SolverOptions().recorded()) == {"solver", "steps", "lr", "ste_lr", "schedule", "tau0", "decay", "t0",
                                               "hold", "tau_end", "lr_decay", "window", "eval_every", "seed"}
    assert SolverOptions().recorded()["lr"] == 5e-3


def test_what_each_gop_method_reads():
    assert set(GOP_READS) == set(GOP_SOLVERS)
    assert ignored_by("exact", ["steps", "exact_steps"]) == ["steps"]
    assert ignored_by("sequential", ["window", "lr"]) == ["window"]
    assert ignored_by("windowed", ["window"]) == [] and ignored_by("joint", ["steps_bao"]) == []
    assert ignored_by("oeu", ["lr", "oeu_lr"]) == ["lr"]


@pytest.fixture(scope="module")
def gop3():
    return tiny_video_codec(torch.float64, quality=2).gop(3), tiny_frames(b=1, t=3, dtype=torch.float64)


@pytest.mark.parametrize("field, a, b", [("steps", 30, 9), ("steps_p", 20, 6), ("lr", 5e-2, 1e-2), ("seed", 0, 1),
                                          ("tau0", 0.5, 0.2), ("method", "sga", "noise"), ("latents", "yw", "w")])
def test_every_field_sequential_reads_changes_its_result(field, a, b):
    g, x = ToyVideoCodec(), smooth_frames(batch=1)
    base = dict(solver="sequential", steps=30, steps_p=20, lr=5e-2, eval_every=1)
    runs = [allocate(g, x, SolverOptions(**{**base, field: v}), report=False) for v in (a, b)]
    r = [[(st["steps"], st["after"]) for st in run.stages] for run in runs]  # the solver's own record
    assert r[0] != r[1], field


def test_unread_fields_change_nothing(gop3):
    g, x = gop3
    base = SolverOptions(solver="sequential", steps=4, steps_p=2, lr=1e-2, eval_every=1)
    r0 = allocate(g, x, base, report=False)
    r1 = allocate(g, x, dataclasses.replace(base, oeu_steps=7, exact_lr=0.5, bbvi_steps=3, window=5), report=False)
    assert torch.equal(r0.objective, r1.objective)
    assert [st["after"] for st in r0.stages] == [st["after"] for st in r1.stages]
    assert stage_budgets(g, base) == [4, 2, 2, 2, 2]


def test_allocate_defaults_to_the_sequential_method_and_reads_joint_as_bao(gop3):
    g, x = gop3
    fast = SolverOptions(steps=3, steps_p=2, eval_every=1)
    assert allocate(g, x, fast, report=False).method == "bao"
    assert allocate(g, x, dataclasses.replace(fast, method="amortized"), report=False).method == "amortized"
