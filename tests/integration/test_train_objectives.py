"""`rdopt train --objective …`: a multi-sample run logs the bound and the first sample's bpp/PSNR and
records its options; --measure-snr writes the gradient SNR per parameter group with and without direct-y."""

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import pattern_image, training_photos_folder


def _data(tmp_path):
    return training_photos_folder(tmp_path)


def test_train_ms_mix_two_steps_logs_the_bound_and_the_first_sample(cli, tmp_path):
    out = tmp_path / "s.pt"
    code, stdout, err = cli("train", "--out", out, "--data", _data(tmp_path), "--channels", "16", "16", "--crop", "64",
                            "--batch", "2", "--quality", "3", "--threads", "1", "--steps", "2", "--log-every", "1",
                            "--objective", "ms-mix", "--samples", "4")
    assert code == 0, err
    summary = json.loads(stdout[stdout.index("{"):])
    assert summary["steps"] == 2 and summary["config"]["objective"] == "ms-mix" and summary["config"]["samples"] == 4
    state = torch.load(out, weights_only=True)
    assert state["step"] == 2 and json.loads(state["config"])["objective"] == "ms-mix"
    log = [json.loads(line) for line in out.with_suffix(".log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2]
    for r in log:
        assert set(r) >= {"loss", "bpp", "psnr", "elbo", "ess"}
        assert math.isfinite(r["loss"]) and r["loss"] <= r["elbo"] + 1e-6  # the bound is below the mean sample cost
        assert 1.0 <= r["ess"] <= 4.0 + 1e-9


def test_train_measure_snr_reports_every_parameter_group_with_and_without_direct_y(cli, tmp_path):
    out = tmp_path / "s.pt"
    code, stdout, err = cli("train", "--out", out, "--data", _data(tmp_path), "--channels", "16", "16", "--crop", "64",
                            "--batch", "2", "--quality", "3", "--threads", "1", "--steps", "1",
                            "--objective", "ms-dms", "--samples", "2", "--z-samples", "2", "--measure-snr", "3")
    assert code == 0, err
    snr = json.loads(stdout[stdout.index("{"):])["snr"]
    groups = {"y_inference", "y_generative", "z_inference", "z_generative", "z_prior"}
    assert set(snr) == {"elbo", "elbo-no-direct-y", "ms-dms"}
    for label, per_group in snr.items():
        assert set(per_group) == groups and all(v > 0 and math.isfinite(v) for v in per_group.values()), label
    assert snr["elbo"]["z_inference"] != snr["elbo-no-direct-y"]["z_inference"]  # different estimators
    log = [json.loads(line) for line in out.with_suffix(".log.jsonl").read_text().splitlines()]
    assert log[-1]["snr"] == snr and log[-1]["snr_batches"] == 3


def test_stats_reports_variance_cov_and_bpp_of_y_and_z(cli, tmp_path, tiny_checkpoint):
    from rdopt.codecs.image.loading import load_model
    from rdopt.data.images import pad, to_tensor

    paths = []
    for s, (h, w) in enumerate([(64, 64), (80, 96)]):
        paths.append(tmp_path / f"i{s}.png")
        Image.fromarray(pattern_image(h, w, s)).save(paths[-1])
    out = tmp_path / "stats.json"
    code, stdout, err = cli("stats", *paths, "--checkpoint", tiny_checkpoint, "--out", out, "--threads", "1")
    assert code == 0, err
    assert "y_hat" in stdout and "bpp" in stdout
    report = json.loads(out.read_text())
    assert report["images"] == 2 and set(report["latents"]) == {"y", "y_hat", "z", "z_hat"}
    # independently: per-channel variance over images and positions, averaged over channels; bpp per image
    model = load_model("rdopt-msh", 3, checkpoint=tiny_checkpoint)
    ys, bpp_y, bpp_z = [], 0.0, 0.0
    with torch.no_grad():
        for p in paths:
            rgb = np.asarray(Image.open(p).convert("RGB"))
            lat = model.amortize(pad(to_tensor(rgb), 64))
            hard = model.quantize(lat)
            ev = model.hard_evaluate(hard)
            ys.append(hard["y"].double().transpose(0, 1).flatten(1))
            bpp_y += float(ev.rates["y"]) / rgb.shape[0] / rgb.shape[1] / 2
            bpp_z += float(ev.rates["z"]) / rgb.shape[0] / rgb.shape[1] / 2
    v = torch.cat(ys, 1)
    var = v.var(1, unbiased=False)
    assert report["latents"]["y_hat"]["variance"] == pytest.approx(float(var.mean()), rel=1e-9)
    mean = v.mean(1)
    ok = mean.abs() > 1e-12
    assert report["latents"]["y_hat"]["cov"] == pytest.approx(float((var.sqrt()[ok] / mean.abs()[ok]).mean()), rel=1e-9)
    assert report["bpp"]["y"] == pytest.approx(bpp_y, rel=1e-9) and report["bpp"]["z"] == pytest.approx(bpp_z, rel=1e-9)
    assert report["latents"]["y_hat"]["dead_channels"] == int((var <= 1e-12).sum())
