"""`rdopt eval images` (resume, torchrun sharding) and `rdopt report`."""

import json
import os
import subprocess
import sys

import pytest
from PIL import Image

from conftest import cut_solver_loop, pattern_image

ARGS = ["--methods", "amortized,sga,map", "--qualities", "3,5", "--steps", "12", "--t0", "4", "--decay", "0.1", "--quiet"]
TIMING = {"encode_seconds", "optimize_seconds", "decode_seconds", "unit_wall_seconds"}


@pytest.fixture
def image_dir(tmp_path):
    d = tmp_path / "imgs"
    d.mkdir()
    for s in range(3):
        Image.fromarray(pattern_image(48, 64, s + 20)).save(d / f"im{s}.png")
    return d


def strip(doc):
    return [{k: v for k, v in e.items() if k not in TIMING} for e in doc["entries"]]


def close(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x.keys() == y.keys()
        for k in x:
            if isinstance(x[k], float):
                assert x[k] == pytest.approx(y[k], rel=1e-4, abs=1e-6), k
            else:
                assert x[k] == y[k], k


def test_eval_resume_and_report(cli, image_dir, tmp_path, tiny_checkpoint):
    out = tmp_path / "res.json"
    code, _, err = cli("eval", "images", image_dir, "--out", out, "--checkpoint", tiny_checkpoint, "--trace", *ARGS)
    assert code == 0, err
    doc = json.loads(out.read_text())
    assert len(doc["entries"]) == 3 * 2 * 3
    # every entry's numbers come from its real bitstream: file size ⇔ bpp
    for e in doc["entries"]:
        assert e["bpp"] == pytest.approx(8 * e["file_bytes"] / (48 * 64))
        assert e["rd_cost_estimated"] <= e["rd_cost_amortized_estimated"] + 1e-6
        assert ("trace" in e) == (e["method"] != "amortized")
    # CompressAI-readable per-method files
    for m in ("amortized", "sga", "map"):
        curve = json.loads((tmp_path / f"res.{m}.json").read_text())
        assert curve["name"] == m and len(curve["results"]["bpp"]) == 2 and "psnr-rgb" in curve["results"]
    # resume: nothing is redone (the file is unchanged, timings included)
    before = out.read_text()
    assert cli("eval", "images", image_dir, "--out", out, "--checkpoint", tiny_checkpoint, "--trace", *ARGS)[0] == 0
    assert out.read_text() == before
    # an entry removed is redone, the others kept
    doc["entries"] = [e for e in doc["entries"] if e["key"] != "im1|q5|sga"]
    out.write_text(json.dumps(doc))
    assert cli("eval", "images", image_dir, "--out", out, "--checkpoint", tiny_checkpoint, "--trace", *ARGS)[0] == 0
    again = json.loads(out.read_text())
    assert len(again["entries"]) == 18
    close(strip(again), strip(json.loads(before)))
    # other optimization settings do not mix into the same file: one-line error, file untouched
    code, _, err = cli("eval", "images", image_dir, "--out", out, "--checkpoint", tiny_checkpoint, "--trace", *ARGS,
                       "--lr", "0.011")
    assert code != 0 and "other settings" in err and "lr" in err and len(err.strip().splitlines()) == 1
    assert json.loads(out.read_text())["entries"] == again["entries"]
    # report: table with BD rows and plots
    code, text, err = cli("report", out)
    assert code == 0, err
    assert "vs amortized" in text and "sga" in text and "map" in text
    assert (tmp_path / "res.rd.png").stat().st_size > 1000 and (tmp_path / "res.curves.png").stat().st_size > 1000
    code, text, _ = cli("report", out, "--json")
    rows = json.loads(text)
    assert {r["method"] for r in rows} == {"sga", "map"}


def test_eval_errors(cli, image_dir, tmp_path, tiny_checkpoint):
    out = tmp_path / "r.json"
    code, _, err = cli("eval", "images", image_dir, "--out", out, "--methods", "sga,bogus")
    assert code == 2 and "unknown method" in err
    code, _, err = cli("eval", "images", image_dir, "--out", out, "--qualities", "3,x")
    assert code == 2 and "integers" in err
    code, _, err = cli("eval", "images", image_dir, "--out", out, "--crop", "100", "--checkpoint", tiny_checkpoint)
    assert code == 2 and "smaller than the crop" in err
    out.write_text("{not json")
    code, _, err = cli("eval", "images", image_dir, "--out", out, "--checkpoint", tiny_checkpoint, *ARGS)
    assert code == 2 and "not valid JSON" in err
    code, _, err = cli("report", out)
    assert code == 2 and "not valid JSON" in err


def test_torchrun_two_processes_equal_one(cli, image_dir, tmp_path, tiny_checkpoint):
    one = tmp_path / "one.json"
    assert cli("eval", "images", image_dir, "--out", one, "--checkpoint", tiny_checkpoint, "--batch", "1", *ARGS)[0] == 0
    two = tmp_path / "two.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "rdopt", "eval",
         "images", str(image_dir), "--out", str(two), "--checkpoint", str(tiny_checkpoint), "--batch", "1", *ARGS],
        capture_output=True, text=True, timeout=600, env=env,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    a, b = json.loads(one.read_text()), json.loads(two.read_text())
    close(strip(a), strip(b))
    assert a["methods"].keys() == b["methods"].keys()
    assert not list(tmp_path.glob("two.part*"))


def test_drop_stale_keeps_the_qualities_whose_weights_did_not_change():
    from rdopt.eval.images import drop_stale

    doc = {"settings": {"lr": 0.1, "weights": {"2": "aa", "5": "bb"}},
           "entries": [{"key": "x|q2|sga", "quality": 2}, {"key": "x|q5|sga", "quality": 5}]}
    same, stale = drop_stale(doc, {"2": "aa", "5": "bb"})
    assert stale == [] and same is doc
    new, stale = drop_stale(doc, {"2": "aa", "5": "cc", "6": "dd"})
    assert stale == [5]
    assert [e["quality"] for e in new["entries"]] == [2]
    assert new["settings"] == {"lr": 0.1, "weights": {"2": "aa", "5": "cc"}}
    assert len(doc["entries"]) == 2  # the input is not modified


def test_eval_redo_stale_recomputes_entries_of_changed_weights(cli, image_dir, tmp_path, tiny_checkpoint):
    import shutil

    import torch

    ckpt = tmp_path / "w.pt"
    shutil.copy(tiny_checkpoint, ckpt)
    out = tmp_path / "res.json"
    args = ["eval", "images", image_dir, "--out", out, "--checkpoint", ckpt, "--methods", "amortized",
            "--qualities", "3,5", "--quiet"]
    assert cli(*args)[0] == 0
    before = json.loads(out.read_text())
    state = torch.load(ckpt, weights_only=True)
    state["g_s.6.bias"] = state["g_s.6.bias"] + 0.05  # other weights, same file name
    torch.save(state, ckpt)
    code, _, err = cli(*args)
    assert code == 2 and "weights of quality 3 changed" in err
    code, _, err = cli(*args, "--redo-stale")
    assert code == 0 and "weights changed for qualities 3, 5: recomputing" in err
    after = json.loads(out.read_text())
    assert len(after["entries"]) == len(before["entries"]) == 6
    assert after["settings"]["weights"] != before["settings"]["weights"]
    assert all(a["psnr"] != b["psnr"] for a, b in zip(after["entries"], before["entries"]))
    assert cli(*args)[0] == 0  # now consistent: a plain resume accepts the file


def test_eval_takes_one_checkpoint_per_quality(cli, image_dir, tmp_path, tiny_checkpoint):
    """``--checkpoint-of Q=PATH``: weights per quality (a model trained but not shipped); each quality's entries carry
    the hash of its own file's weights, and the run records which file each quality came from."""
    import torch

    from rdopt.codecs.image.loading import load_model

    other = tmp_path / "other.pt"
    state = torch.load(tiny_checkpoint, weights_only=True)
    state = {k: (v + 0.01 if k == "g_s.0.bias" else v) for k, v in state.items()}
    torch.save(state, other)
    out = tmp_path / "r.json"
    args = ["eval", "images", image_dir, "--out", out, "--methods", "amortized", "--qualities", "3,5", "--quiet"]
    code, _, err = cli(*args, "--checkpoint-of", f"3={tiny_checkpoint}", "--checkpoint-of", f"5={other}")
    assert code == 0, err
    doc = json.loads(out.read_text())
    hashes = {q: load_model(checkpoint=p).weight_hash().hex() for q, p in ((3, tiny_checkpoint), (5, other))}
    assert hashes[3] != hashes[5]
    assert doc["settings"]["weights"] == {str(q): h for q, h in hashes.items()}
    assert doc["settings"]["checkpoint"] == {"3": str(tiny_checkpoint), "5": str(other)}
    code, _, err = cli(*args, "--checkpoint", tiny_checkpoint, "--checkpoint-of", f"3={tiny_checkpoint}")
    assert code == 2 and "not both" in err


def test_an_interrupted_optimization_is_not_recorded(cli, image_dir, tmp_path, tiny_checkpoint, monkeypatch):
    out = tmp_path / "res.json"
    args = ["eval", "images", image_dir, "--out", out, "--checkpoint", tiny_checkpoint, "--methods", "amortized,sga",
            "--qualities", "3", "--steps", "12", "--quiet"]
    cut_solver_loop(monkeypatch, 0)  # Ctrl-C at the second step of the first SGA run
    code, _, err = cli(*args)
    assert code == 130 and "interrupted" in err
    kept = json.loads(out.read_text())["entries"] if out.exists() else []
    assert all(e["method"] == "amortized" for e in kept)
    monkeypatch.undo()
    code, _, err = cli(*args)
    assert code == 0, err
    doc = json.loads(out.read_text())
    sga = [e for e in doc["entries"] if e["method"] == "sga"]
    assert len(sga) == 3 and all(e["steps"] == 12 and not e["interrupted"] for e in sga)
