"""`rdopt train --objective …`: a multi-sample run logs the bound and the first sample's bpp/PSNR and
records its options; --measure-snr writes the gradient SNR per parameter group with and without direct-y."""

import json
import math

import torch
from PIL import Image

from conftest import pattern_image


def _data(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    for s in range(2):
        Image.fromarray(pattern_image(80, 96, s)).save(data / f"t{s}.png")
    return data


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
