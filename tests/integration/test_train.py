"""`rdopt train`: a few steps on a folder, resume, export, and the exported weights encode."""

import json

import torch
from PIL import Image

from conftest import pattern_image


def test_train_resume_export_and_use(cli, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    for s in range(2):
        Image.fromarray(pattern_image(80, 96, s)).save(data / f"t{s}.png")
    state, weights = tmp_path / "state.pt", tmp_path / "w.pt"
    common = ["train", "--out", state, "--data", data, "--channels", "16", "16", "--crop", "64", "--batch", "2",
              "--quality", "3", "--threads", "1"]
    code, out, err = cli(*common, "--steps", "3")
    assert code == 0, err
    assert torch.load(state, weights_only=True)["step"] == 3
    code, out, err = cli(*common, "--steps", "5", "--export", weights)
    assert code == 0, err
    summary = json.loads(out[out.index("{"):])
    assert summary["steps"] == 5
    log = [json.loads(l) for l in state.with_suffix(".log.jsonl").read_text().splitlines()]
    assert log[-1]["step"] == 5 and all(set(r) >= {"loss", "bpp", "psnr"} for r in log)
    src = tmp_path / "x.png"
    Image.fromarray(pattern_image(40, 40, 9)).save(src)
    code, out, err = cli("encode", src, "-o", tmp_path / "x.rdo", "--checkpoint", weights, "--json")
    assert code == 0, err
    assert cli("decode", tmp_path / "x.rdo", "-o", tmp_path / "y.png", "--checkpoint", weights)[0] == 0


def test_train_needs_a_rate_point(cli, tmp_path):
    code, _, err = cli("train", "--out", tmp_path / "s.pt", "--steps", "1")
    assert code == 2 and "--lmbda or --quality" in err
    code, _, err = cli("train", "--out", tmp_path / "s.pt", "--steps", "1", "--quality", "3", "--data", tmp_path)
    assert code == 2 and "no images found" in err
    code, _, err = cli("train", "--out", tmp_path / "s.pt", "--steps", "1", "--quality", "3", "--scales", "1", "2")
    assert code == 2 and "--scales must lie in (0, 1]" in err
    code, _, err = cli("train", "--out", tmp_path / "s.pt", "--steps", "1", "--quality", "3", "--data", tmp_path,
                       "--source-weights", "1", "1")
    assert code == 2 and "--source-weights applies to the embedded recipe" in err
    code, _, err = cli("train", "--out", tmp_path / "s.pt", "--steps", "1", "--quality", "3", "--source-weights", "0", "0")
    assert code == 2 and "not both zero" in err
    assert not (tmp_path / "s.pt").exists()
