"""Target bitrate for video: ``rdopt encode CLIP --target-kbps K`` searches λ0 per GoP with the
GoP allocation inside; the file decodes with the stock decoder; the reported rates are the file's."""

import json
import math

import pytest

from video_fixtures import moving_clip, tiny_clip_and_checkpoint
from conftest import one_error_line

from rdopt.ratecontrol.video import (MAX_STEP, SPAN, RateRun, VideoRateController, VideoRateOptions, next_lambda)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    d = tmp_path_factory.mktemp("vrc")
    ckpt, clip = tiny_clip_and_checkpoint(d, 6)
    return {"dir": d, "ckpt": str(ckpt), "clip": str(clip)}


def test_next_lambda_steps_toward_the_budget_and_stays_in_the_bracket_and_span():
    lm = 512.0
    # one run above the budget: λ0 falls, by at most MAX_STEP
    nxt = next_lambda([RateRun(lm, 2000)], 1000.0, lm)
    assert lm / MAX_STEP - 1e-9 <= nxt < lm
    # one run below: λ0 rises
    assert next_lambda([RateRun(lm, 500)], 1000.0, lm) > lm
    # bracketed: the next point is strictly inside (lo, hi), away from both ends
    runs = [RateRun(100.0, 800), RateRun(400.0, 1300)]
    nxt = next_lambda(runs, 1000.0, lm)
    a, b = math.log(100.0), math.log(400.0)
    assert a + 0.1 * (b - a) - 1e-12 <= math.log(nxt) <= b - 0.1 * (b - a) + 1e-12
    # the secant point of an exactly log-linear size model hits the budget
    runs = [RateRun(100.0, 100.0 ** 0.5 * 50), RateRun(400.0, 400.0 ** 0.5 * 50)]
    assert next_lambda(runs, 800.0, lm) == pytest.approx(256.0, rel=1e-9)
    # bracketed with the secant point too close to an end: bisection in log λ0
    assert next_lambda([RateRun(100.0, 990), RateRun(400.0, 5000)], 1000.0, lm) == pytest.approx(200.0, rel=1e-9)
    # never outside the span of the model's λ
    assert next_lambda([RateRun(lm / SPAN, 5000)], 10.0, lm) == pytest.approx(lm / SPAN)
    assert next_lambda([RateRun(lm * SPAN, 10)], 1e9, lm) == pytest.approx(lm * SPAN)


def test_options_are_checked_and_amortized_is_refused():
    from rdopt.infer.options import SolverOptions

    for bad in (dict(kbps=0, fps=25), dict(kbps=10, fps=0), dict(kbps=10, fps=25, tolerance=1.5),
                dict(kbps=float("nan"), fps=25), dict(kbps=10, fps=25, max_runs=0)):
        with pytest.raises(ValueError):
            VideoRateOptions(**bad)
    assert VideoRateOptions(kbps=8, fps=25).gop_bytes(10) == pytest.approx(400.0)
    with pytest.raises(ValueError, match="optimizing"):
        VideoRateController(SolverOptions(solver="amortized"), VideoRateOptions(kbps=8, fps=25))


class _FakeGop:
    lmbda = 512.0 / 255**2


def _fake_solver(monkeypatch, size_of, interrupted=False):
    """The allocation replaced by a size model: the GoP chunk has ``size_of(λ0, frames)`` bytes."""
    import types

    import rdopt.ratecontrol.video as R

    def fake_allocate(codec, x, options, *, height, width, lmbda, report):
        return types.SimpleNamespace(latents=(lmbda * 255**2, x.shape[1]), interrupted=interrupted)

    monkeypatch.setattr(R, "allocate", fake_allocate)
    monkeypatch.setattr(R, "gop_chunk_bytes", lambda codec, q, first, **coding: int(size_of(*q)))


def test_search_meets_each_gop_budget_and_carries_the_balance(monkeypatch):
    import torch

    from rdopt.infer.options import SolverOptions

    _fake_solver(monkeypatch, lambda lm, t: 100 * t * (lm / 512.0) ** 0.5)  # 300 B per 3-frame GoP at λ0 = 512
    rate = VideoRateOptions(kbps=8 * 25 * 150 / 1000 * 1.0, fps=25)  # 150 B per frame: 450 B per 3-frame GoP
    ctl = VideoRateController(SolverOptions(solver="sequential"), rate)
    x = torch.zeros(1, 3, 3, 64, 64)
    for _ in range(3):
        ctl(_FakeGop(), x, 64, 64)
    r = ctl.records
    assert r[0].target_bytes == pytest.approx(450.0) and abs(r[0].bytes / 450 - 1) <= 0.03
    assert r[0].runs[0].lmbda == 512.0 / 255**2 and len(r[0].runs) > 1
    # the next GoP starts at the λ0 the previous one settled on, with the balance added to its budget
    assert r[1].runs[0].lmbda == r[0].lmbda
    assert r[1].target_bytes == pytest.approx(450.0 + (450.0 - r[0].bytes))
    assert r[2].target_bytes == pytest.approx(450.0 + (900.0 - r[0].bytes - r[1].bytes))
    s = ctl.summary()
    assert abs(s["kbps_gop_chunks"] / rate.kbps - 1) < 0.01 and len(s["gops"]) == 3
    assert len(ctl.summary(gops=2)["gops"]) == 2
    # a far-off GoP: its budget is clamped, the rest of the balance stays for later GoPs
    _fake_solver(monkeypatch, lambda lm, t: 2000.0)  # λ0 cannot change the size
    ctl = VideoRateController(SolverOptions(solver="sequential"), rate)
    ctl(_FakeGop(), x, 64, 64)
    ctl(_FakeGop(), x, 64, 64)
    assert ctl.records[1].target_bytes == pytest.approx(450.0 / 1.5)
    assert ctl._balance == pytest.approx(900.0 - 4000.0)


def test_ctrl_c_inside_the_solver_stops_the_search(monkeypatch):
    import torch

    from rdopt.infer.options import SolverOptions

    _fake_solver(monkeypatch, lambda lm, t: 1000.0, interrupted=True)
    ctl = VideoRateController(SolverOptions(solver="sequential"), VideoRateOptions(kbps=100, fps=25))
    with pytest.raises(KeyboardInterrupt):
        ctl(_FakeGop(), torch.zeros(1, 3, 3, 64, 64), 64, 64)
    assert ctl.records == []


def test_choose_quality_picks_the_embedded_quality_nearest_the_budget():
    from rdopt.ratecontrol.video import choose_quality

    clip = moving_clip(2, 64, 64)
    from rdopt.api.video import load_video_codec

    load = lambda q: load_video_codec(quality=q)  # noqa: E731
    q, sizes = choose_quality(clip, kbps=1.0, fps=25, qualities=[1, 2, 3, 4], load=load)
    assert sorted(sizes) == [1, 2, 3, 4] and sizes[1] < sizes[4]
    budget = lambda b: b * 8 / 1000 / (2 / 25)  # noqa: E731 - kbps of a 2-frame GoP of b bytes
    assert q == 1  # 1 kbit/s is below every quality: the smallest
    q, _ = choose_quality(clip, kbps=budget(sizes[3]), fps=25, qualities=[1, 2, 3, 4], load=load)
    assert q == 3


def test_cli_target_kbps_meets_the_rate_and_the_file_decodes(cli, setup, tmp_path):
    from rdopt.api.video import decode_video_frames
    from rdopt.api.video import load_video_codec
    from rdopt.data.video import read_frames

    out = tmp_path / "c.rdov"
    # the tiny codec at 60×90 makes ≈ 3.4 kB per 3-frame GoP at its own λ and ≈ 2.6 kB at λ/4: 200 kbit/s at 25 fps
    # (3000 bytes per GoP) lies inside its range
    code, text, err = cli("encode", setup["clip"], "-o", out, "--gop", "3", "--checkpoint", setup["ckpt"],
                          "--target-kbps", "200", "--steps-i", "20", "--steps-p", "8", "--lr", "0.1", "--json")
    assert code == 0, err
    d = json.loads(text)
    rc = d["rate_control"]
    assert d["method"] == "sequential"  # the default method with a target bitrate
    assert len(rc["gops"]) == 2 and rc["target_kbps"] == 200 and rc["fps"] == 25
    for g, gs in zip(rc["gops"], d["gops"]):
        assert g["bytes"] == gs["chunk_bytes"]  # the size the search measured is the chunk written
        assert abs(g["bytes"] / g["target_bytes"] - 1) <= 0.03 or len(g["runs"]) == 4
        assert g["error_percent"] == pytest.approx(100 * (g["bytes"] / g["nominal_bytes"] - 1))
    # the clip's bitrate is the file's, and it is within 5 % of the target
    assert rc["kbps"] == pytest.approx(8 * out.stat().st_size / 1000 / (6 / 25))
    assert abs(rc["error_percent"]) < 5
    # consecutive GoPs start from the λ0 the previous one settled on
    assert rc["gops"][1]["runs"][0]["lmbda"] == rc["gops"][0]["lmbda"]
    # the stock decoder reads it: the frames it reports
    frames = decode_video_frames(out, codec=load_video_codec(checkpoint=setup["ckpt"]))
    assert len(frames) == 6
    source = read_frames(setup["clip"])
    for f, src, fs in zip(frames, source, d["frame_stats"]):
        mse = float(((f.astype(float) - src.astype(float)) ** 2).mean())
        assert fs["psnr"] == pytest.approx(10 * math.log10(255**2 / mse), abs=1e-6)
    # a lower target gives a smaller file
    out2 = tmp_path / "c2.rdov"
    code, text2, err = cli("encode", setup["clip"], "-o", out2, "--gop", "3", "--checkpoint", setup["ckpt"],
                           "--target-kbps", "170", "--steps-i", "20", "--steps-p", "8", "--lr", "0.1", "--json")
    assert code == 0, err
    assert out2.stat().st_size < out.stat().st_size


def test_rate_control_argument_errors(cli, setup, tmp_path, png):
    out = tmp_path / "x.rdov"
    ck = setup["ckpt"]
    one_error_line(cli("encode", setup["clip"], "-o", out, "--checkpoint", ck, "--target-kbps", "100", "--method",
                       "amortized"), "needs an optimizing --method")
    one_error_line(cli("encode", setup["clip"], "-o", out, "--checkpoint", ck, "--fps", "30", "--method", "sequential"),
                   "--fps only applies with --target-kbps")
    one_error_line(cli("encode", setup["clip"], "-o", out, "--checkpoint", ck, "--target-kbps", "-3"),
                   "positive number of kbit/s")
    one_error_line(cli("encode", setup["clip"], "-o", out, "--checkpoint", ck, "--target-size", "2kB", "--method",
                       "sequential"), "videos take --target-kbps")
    one_error_line(cli("encode", png, "-o", tmp_path / "i.rdo", "--target-kbps", "100"), "--target-kbps")
    assert not out.exists() and not (tmp_path / "i.rdo").exists()
