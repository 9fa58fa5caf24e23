"""`rdopt eval video` (resumable, one GoP per unit, sharded by RANK/WORLD_SIZE) and `rdopt report` on its
results: tiny random-weight P-frame checkpoints (one per quality, I-frames of qualities 2-5), 5 frames of
90×60, GoP 3, a few SAVI steps."""

import json

import pytest

from conftest import cut_solver_loop
from video_fixtures import moving_clip, tiny_video_checkpoint


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from rdopt.data.video import write_video

    d = tmp_path_factory.mktemp("veval")
    clip = d / "clip.y4m"
    write_video(clip, moving_clip(5, 60, 90))
    ck = [tiny_video_checkpoint(d / f"q{q}.pt", seed=q, lmbda=256.0 * 2 ** (q - 1), iframe_quality=q + 1)
          for q in (1, 2, 3, 4)]
    return d, clip, ck


def _args(setup, out, methods="amortized,sequential", extra=()):
    d, clip, ck = setup
    a = ["eval", "video", clip, "--methods", methods, "--out", out, "--gop", "3", "--steps-i", "4", "--steps-p", "2", "--crop", "80x56",
         "--quiet", "--threads", "1"]
    for q, p in enumerate(ck, start=1):
        a += ["--checkpoint", f"{q}={p}"]
    return a + list(extra)


def test_eval_video_summary_resume_shards_and_report(cli, setup, tmp_path, monkeypatch):
    out = tmp_path / "r.json"
    # two "ranks" share the units; the last one to finish writes the summary
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    code, text, err = cli(*_args(setup, out))
    assert code == 0, err
    assert "this rank is done" in text and not out.exists()
    monkeypatch.setenv("RANK", "0")
    code, text, err = cli(*_args(setup, out))
    assert code == 0, err
    doc = json.loads(out.read_text())
    assert doc["format"] == "rdopt-eval-video-1"
    rows = doc["rows"]
    assert len(rows) == 2 * 4 and all(r["frames"] == 5 and r["gops"] == 2 for r in rows)
    for r in rows:
        assert len(r["profile"]) == 3 and r["cost"] <= r["cost_amortized"] + 1e-9
        if r["method"] == "amortized":
            assert r["bitrate_error"] == 0
    bd = {b["method"]: b for b in doc["bd_vs_amortized"]}
    assert set(bd) == {"sequential"}
    units = list((tmp_path / "r.json.units").glob("rank*.jsonl"))
    assert {p.name for p in units} == {"rank0.jsonl", "rank1.jsonl"}
    recs = [json.loads(l) for p in units for l in p.read_text().splitlines()]
    assert len(recs) == 16 and all(len(r["frames"]) in (3, 2) for r in recs)
    seq = [r for r in recs if r["method"] == "sequential" and len(r["frames"]) == 3][0]
    assert [s["nodes"][0] for s in seq["stages"]] == ["y_0", "w_1", "y_1", "w_2", "y_2"]
    # resume: everything is done, nothing is recomputed; other settings are refused
    before = {p.name: p.read_text() for p in units}
    code, text, err = cli(*_args(setup, out))
    assert code == 0 and {p.name: p.read_text() for p in units} == before
    code, _, err = cli(*_args(setup, out, extra=["--lr", "0.01"]))
    assert code == 2 and "other settings" in err
    # report: tables and plots (R-D with anchors, per-frame profiles, cost vs SAVI stage)
    anchors = tmp_path / "anchors.json"
    anchors.write_text(json.dumps({"sweeps": {"x264": [{"bpp": 0.1, "psnr": 30.0, "preset": "medium"},
                                                       {"bpp": 0.2, "psnr": 33.0, "preset": "medium"}]}}))
    code, text, err = cli("report", out, "--anchors", anchors)
    assert code == 0, err
    assert "BD-BR" in text and (tmp_path / "r.rd.png").is_file() and (tmp_path / "r.stages.png").is_file()
    assert (tmp_path / "r.q1.frames.png").is_file()


def test_eval_video_errors(cli, setup, tmp_path):
    d, clip, ck = setup
    code, _, err = cli("eval", "video", clip, "--methods", "sga", "--out", tmp_path / "x.json")
    assert code == 2 and "unknown method(s) sga" in err
    code, _, err = cli("eval", "video", clip, "--qualities", "5", "--out", tmp_path / "x.json")
    assert code == 2 and "qualities must be in 1..4" in err
    code, _, err = cli("eval", "video", clip, "--checkpoint", "1=nope.pt", "--out", tmp_path / "x.json")
    assert code == 2 and "Q=PATH" in err
    code, _, err = cli("eval", "video", clip, "--methods", "exact", "--out", tmp_path / "x.json")
    assert code == 2 and "--gop 2" in err


def test_an_interrupted_unit_is_not_recorded_and_resumes_after_its_finished_stages(cli, setup, tmp_path, monkeypatch):
    whole = tmp_path / "whole.json"
    args = dict(methods="sequential", extra=["--qualities", "2"])
    assert cli(*_args(setup, whole, **args))[0] == 0
    want = {json.loads(l)["key"]: json.loads(l) for l in (tmp_path / "whole.json.units" / "rank0.jsonl").read_text().splitlines()}

    out = tmp_path / "r.json"
    cut_solver_loop(monkeypatch, 3)  # Ctrl-C in the fourth stage of the first GoP
    code, _, err = cli(*_args(setup, out, **args))
    assert code == 130 and "interrupted" in err and not out.exists()
    folder = tmp_path / "r.json.units"
    assert (folder / "rank0.jsonl").read_text() == ""  # the cut GoP is no result of sequential
    assert [p.name for p in folder.glob("*.stages.pt")] == ["clip.y4m.q2.sequential.g0.stages.pt"]
    monkeypatch.undo()
    code, _, err = cli(*_args(setup, out, **args))
    assert code == 0, err
    got = {json.loads(l)["key"]: json.loads(l) for l in (folder / "rank0.jsonl").read_text().splitlines()}
    assert set(got) == set(want) and not list(folder.glob("*.stages.pt"))
    for k in want:
        assert got[k]["bytes"] == want[k]["bytes"] and got[k]["cost"] == want[k]["cost"]
        assert [s["nodes"] for s in got[k]["stages"]] == [s["nodes"] for s in want[k]["stages"]]


def test_a_run_started_before_tight_padding_resumes_only_where_no_coded_size_changed(cli, setup, tmp_path):
    import torch

    from rdopt.codecs.video.video2 import ConditionalResidualCoder, MotionCoder, Video2PFrameCodec

    d, clip, ck = setup
    torch.manual_seed(0)
    v2 = tmp_path / "v2.pt"
    Video2PFrameCodec(MotionCoder(channels=16, latent=8, hyper=8), ConditionalResidualCoder(16, 16, 8)).save_shipped(
        v2, meta={"lmbda": 0.013, "iframe_quality": 2})

    def run(out, codec, ckpt):
        return cli("eval", "video", clip, "--codec", codec, "--methods", "amortized", "--qualities", "1", "--checkpoint",
                   f"1={ckpt}", "--out", out, "--gop", "3", "--crop", "80x56", "--quiet", "--threads", "1")

    def as_legacy(out):  # the stamp of a run started before the padding setting existed
        stamp = out.with_name(out.name + ".units") / "settings.json"
        s = json.loads(stamp.read_text())
        assert s.pop("padding") == "codec"
        stamp.write_text(json.dumps(s))

    for codec, ckpt, moved in (("rdopt-video2", v2, True), ("rdopt-video", ck[0], False)):
        out = tmp_path / f"{codec}.json"
        code, _, err = run(out, codec, ckpt)
        assert code == 0, err
        as_legacy(out)
        code, _, err = run(out, codec, ckpt)
        if moved:  # 80×56 was coded at 128×64, rdopt-video2 now codes it at 80×64
            assert code == 2 and "now pads them to 16" in err and "use another --out" in err
        else:  # rdopt-video pads to 64 as it always did: the run resumes
            assert code == 0, err
