"""`rdopt train`: a few steps on a folder, resume, export, and the exported weights encode."""

import json
import math

import pytest
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
    assert code == 2 and "not all zero" in err
    code, _, err = cli("train", "--out", tmp_path / "s.pt", "--steps", "1", "--quality", "3", "--source-weights", "1", "1",
                       "--extra-data", tmp_path)
    assert code == 2 and "--source-weights needs 3 values" in err
    code, _, err = cli("train", "--out", tmp_path / "s.pt", "--steps", "1", "--quality", "3", "--data", tmp_path,
                       "--extra-data", tmp_path)
    assert code == 2 and "cannot be combined with --data" in err
    code, _, err = cli("train", "--out", tmp_path / "s.pt", "--steps", "1", "--quality", "3", "--color-augment", "1.5")
    assert code == 2 and "--color-augment is a probability" in err
    code, _, err = cli("train", "--out", tmp_path / "s.pt", "--steps", "1", "--quality", "3", "--scale-floor-weight", "-1")
    assert code == 2 and "--scale-floor-weight must be non-negative" in err
    assert not (tmp_path / "s.pt").exists()


def test_train_widens_an_initial_model_and_resumes(cli, tmp_path):
    from rdopt.codecs.image.loading import read_state_dict

    data = tmp_path / "data"
    data.mkdir()
    Image.fromarray(pattern_image(80, 96, 1)).save(data / "t.png")
    base = ["--data", data, "--crop", "64", "--batch", "2", "--quality", "5", "--threads", "1"]
    narrow = tmp_path / "narrow.pt"
    code, _, err = cli("train", "--out", tmp_path / "a.pt", "--channels", "16", "16", "--steps", "2", "--export", narrow, *base)
    assert code == 0, err
    wide = ["train", "--out", tmp_path / "b.pt", "--init", narrow, "--channels", "16", "24", *base]
    assert cli(*wide, "--steps", "2")[0] == 0
    code, _, err = cli(*wide, "--steps", "3", "--export", tmp_path / "wide.pt")  # resumes the widened state
    assert code == 0, err
    state = read_state_dict(tmp_path / "wide.pt")
    assert state["g_a.6.weight"].shape[0] == 24 and state["g_a.0.weight"].shape[0] == 16
    code, _, err = cli("train", "--out", tmp_path / "c.pt", "--init", narrow, "--channels", "16", "8", "--steps", "1", *base)
    assert code == 2 and "--channels: cannot narrow a model: it has N=16, M=16" in err
    assert not (tmp_path / "c.pt").exists()


def test_train_with_colour_augmentation_and_the_floor_penalty_logs_and_records_them(cli, tmp_path):

    data = tmp_path / "data"
    data.mkdir()
    Image.fromarray(pattern_image(80, 96, 2)).save(data / "t.png")
    out = tmp_path / "s.pt"
    code, _, err = cli("train", "--out", out, "--data", data, "--crop", "64", "--batch", "2", "--quality", "3",
                       "--channels", "16", "16", "--steps", "3", "--threads", "1", "--color-augment", "0.5",
                       "--scale-floor-weight", "0.1")
    assert code == 0, err
    state = torch.load(out, weights_only=True)
    config = json.loads(state["config"])
    assert config["color_augment"] == 0.5 and config["scale_floor_weight"] == 0.1
    log = [json.loads(line) for line in open(out.with_suffix(".log.jsonl"))]
    assert log[-1]["step"] == 3 and all(math.isfinite(r["loss"]) for r in log)


def test_train_video_is_the_same_loop_resumes_and_exports(cli, tmp_path):
    """`rdopt train --video` on a PNG-frame folder: pairs, resume into the same state, export; the export
    loads as a video codec; the log carries the P-frame and prediction PSNR."""
    from rdopt.api.video import load_video_codec
    
    frames = tmp_path / "clip"
    frames.mkdir()
    base = pattern_image(100, 120, 3)
    for k in range(4):
        Image.fromarray(base[k: k + 80, 2 * k: 2 * k + 96]).save(frames / f"frame_{k + 1:05d}.png")
    state, weights = tmp_path / "v.state.pt", tmp_path / "v.pt"
    common = ["train", "--video", "--quality", "2", "--out", state, "--data", frames, "--no-bigbuckbunny",
              "--crop", "64", "--batch", "1", "--frames", "3", "--threads", "1", "--synthetic-share", "0.5",
              "--prediction-weight", "1", "--prediction-steps", "1"]
    code, _, err = cli(*common, "--steps", "2")
    assert code == 0, err
    first = torch.load(state, weights_only=True)
    assert first["step"] == 2 and any(k.startswith("motion_analysis") for k in first["model"])
    code, out, err = cli(*common, "--steps", "3", "--export", weights)
    assert code == 0, err
    log = [json.loads(l) for l in state.with_suffix(".log.jsonl").read_text().splitlines()]
    assert log[-1]["step"] == 3 and all({"bpp", "psnr", "psnr_pred", "bpp_i"} <= set(r) for r in log)
    video = load_video_codec(checkpoint=weights)
    assert video.lmbda == pytest.approx(512.0 / 255**2)  # CompressAI's unit (the file stores DVC's)
    gop = video.gop(2)
    x = torch.rand(1, 2, 3, 64, 64)
    assert gop.reconstruct(gop.quantize(gop.amortize(x))).shape == x.shape


def test_train_video_errors(cli, tmp_path):
    base = ["train", "--video", "--out", tmp_path / "s.pt", "--steps", "1"]
    code, _, err = cli(*base, "--quality", "6")
    assert code == 2 and "--video --quality is one of 1, 2, 3, 4" in err
    code, _, err = cli(*base, "--quality", "2", "--crop", "96")
    assert code == 2 and "multiple of 64" in err
    code, _, err = cli(*base, "--quality", "2", "--frames", "1")
    assert code == 2 and "--frames ≥ 2" in err
    code, _, err = cli(*base, "--quality", "2", "--color-augment", "0.5")
    assert code == 2 and "image options" in err
    code, _, err = cli(*base, "--quality", "2", "--data", tmp_path / "nope")
    assert code == 2 and "no such file or folder" in err
    code, _, err = cli("train", "--out", tmp_path / "s.pt", "--steps", "1", "--quality", "3", "--frames", "4")
    assert code == 2 and "need --video" in err


def test_train_freeze_leaves_the_named_modules_untouched(cli, tmp_path):
    """``--freeze g_a g_s``: those parameters keep their initial values exactly, the rest trains; a name that
    matches no parameter is a one-line error before any step."""
    from rdopt.codecs.image.loading import read_state_dict

    data = tmp_path / "data"
    data.mkdir()
    Image.fromarray(pattern_image(80, 96, 1)).save(data / "t.png")
    common = ["train", "--data", data, "--channels", "16", "16", "--crop", "64", "--batch", "2", "--quality", "3",
              "--threads", "1", "--seed", "4"]
    w0 = tmp_path / "w0.pt"
    assert cli(*common, "--out", tmp_path / "s0.pt", "--steps", "1", "--export", w0)[0] == 0
    code, out, err = cli(*common, "--out", tmp_path / "frozen.pt", "--steps", "3", "--init", w0, "--freeze", "g_a", "g_s")
    assert code == 0, err
    start = read_state_dict(w0)
    end = torch.load(tmp_path / "frozen.pt", weights_only=True)["model"]
    frozen = [k for k in end if k.split(".")[0] in ("g_a", "g_s")]
    trained = [k for k in end if k.split(".")[0] in ("h_a", "h_s")]
    assert frozen and trained
    assert all(torch.equal(end[k], start[k].to(end[k].dtype)) for k in frozen)
    assert any(not torch.equal(end[k], start[k].to(end[k].dtype)) for k in trained)
    # resuming with other modules frozen would change the optimizer's parameter groups: a clear error
    code, _, err = cli(*common, "--out", tmp_path / "frozen.pt", "--steps", "4", "--init", w0)
    assert code == 2 and "resume it with the same modules frozen" in err
    code, _, err = cli(*common, "--out", tmp_path / "bad.pt", "--steps", "1", "--freeze", "g_x")
    assert code == 2 and "--freeze g_x: no parameter" in err
    assert not (tmp_path / "bad.pt").exists()
