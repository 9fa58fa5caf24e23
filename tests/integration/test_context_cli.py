"""`rdopt encode / decode / info` end to end with CompressAI's autoregressive context models (tiny random
mbt2018 and cheng2020-anchor checkpoints written in tmp_path; nothing downloaded)."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import one_error_line
from rdopt.metrics.quality import psnr


def _checkpoint(path, kind="mbt2018", seed=0):
    import rdopt.codecs  # noqa: F401 - CompressAI without its package __init__, as rdopt loads it
    from compressai.models import Cheng2020Anchor, JointAutoregressiveHierarchicalPriors

    torch.manual_seed(seed)
    net = (JointAutoregressiveHierarchicalPriors(N=16, M=16) if kind == "mbt2018" else Cheng2020Anchor(N=16)).eval()
    net.update(force=True)
    torch.save(net.state_dict(), path)
    return path


def test_sga_encode_decode_info(cli, png, tmp_path):
    ck = _checkpoint(tmp_path / "ck.pth")
    src = png(64, 64)
    rdo, dec = tmp_path / "x.rdo", tmp_path / "x.png"
    code, out, err = cli("encode", src, "-o", rdo, "--model", "mbt2018", "--checkpoint", ck, "--method", "sga",
                         "--steps", "20", "--lr", "0.05", "--json")
    assert code == 0, err
    stats = json.loads(out)
    assert stats["model"] == "mbt2018" and stats["method"] == "sga" and stats["steps"] == 20
    assert stats["rd_cost_estimated"] <= stats["rd_cost_amortized_estimated"]
    code, _, err = cli("decode", rdo, "-o", dec, "--checkpoint", ck)
    assert code == 0, err
    a, b = np.asarray(Image.open(src).convert("RGB")), np.asarray(Image.open(dec))
    assert psnr(b, a) == pytest.approx(stats["psnr"], abs=1e-9)
    code, out, _ = cli("info", rdo, "--json")
    info = json.loads(out)
    assert code == 0 and info["model"] == "mbt2018" and info["method"] == "sga"
    assert info["decode"]["order"] == "serial autoregressive" and info["decode"]["sequential_steps"] == 16
    code, out, _ = cli("info", rdo)
    assert code == 0 and "serial autoregressive" in out


def test_a_checkpoint_without_model_is_taken_for_its_architecture(cli, png, tmp_path):
    ck = _checkpoint(tmp_path / "cheng.pth", "cheng2020-anchor", seed=1)
    src = png(48, 64)
    rdo, dec = tmp_path / "c.rdo", tmp_path / "c.png"
    code, out, err = cli("encode", src, "-o", rdo, "--checkpoint", ck, "--json")
    assert code == 0, err
    stats = json.loads(out)
    assert stats["model"] == "cheng2020-anchor"
    code, _, err = cli("decode", rdo, "-o", dec, "--checkpoint", ck)
    assert code == 0, err
    assert psnr(np.asarray(Image.open(dec)), np.asarray(Image.open(src).convert("RGB"))) == pytest.approx(
        stats["psnr"], abs=1e-9)


def test_a_context_checkpoint_under_another_model_names_the_model(cli, png, tmp_path):
    ck = _checkpoint(tmp_path / "ck.pth")
    one_error_line(cli("encode", png(64, 64), "-o", tmp_path / "x.rdo", "--model", "mbt2018-mean", "--checkpoint", ck),
                   "pass --model mbt2018")
