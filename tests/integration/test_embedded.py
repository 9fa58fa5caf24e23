"""The shipped embedded models: loading, rate overhead, and SGA beating the amortized encoder."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from rdopt.codecs.image.loading import COMPRESSAI_LAMBDAS, EMBEDDED_QUALITIES, embedded_weights_path, load_model
from rdopt.data.sources import EVAL_NAMES, eval_image_paths


def crop_of(name: str, size: int, tmp_path):
    path = dict(zip(EVAL_NAMES, eval_image_paths()))[name]
    a = np.asarray(Image.open(path).convert("RGB"))
    i, j = (a.shape[0] - size) // 2, (a.shape[1] - size) // 2
    p = tmp_path / f"{name}_{size}.png"
    Image.fromarray(a[i : i + size, j : j + size]).save(p)
    return p


@pytest.mark.parametrize("q", EMBEDDED_QUALITIES)
def test_every_embedded_model_loads_with_its_lambda(q):
    m = load_model("rdopt-msh", q)
    assert m.model_id == f"rdopt-msh-q{q}" and m.lmbda == COMPRESSAI_LAMBDAS[q]
    assert embedded_weights_path(q).stat().st_size < 10_000_000  # float16; 4.4 MB at M=96, 9.0 MB at M=192
    assert len(m.net.gaussian_conditional.scale_table) == 256
    assert not any(p.requires_grad for p in m.parameters())


def test_real_rate_is_within_a_few_percent_of_the_estimate(cli, tmp_path):
    src = crop_of("astronaut", 256, tmp_path)
    code, out, err = cli("encode", src, "-o", tmp_path / "a.rdo", "--quality", "4", "--json")
    assert code == 0, err
    s = json.loads(out)
    assert s["bpp_payload"] == pytest.approx(s["bpp_estimated"], rel=0.03)
    assert s["psnr"] > 24


def test_sga_beats_amortized_and_stays_stock_decodable(cli, tmp_path):
    src = crop_of("coffee", 128, tmp_path)
    code, out, err = cli("encode", src, "-o", tmp_path / "a.rdo", "--model", "rdopt-msh", "--quality", "3", "--json")
    assert code == 0, err
    amort = json.loads(out)
    code, out, err = cli("encode", src, "-o", tmp_path / "s.rdo", "--model", "rdopt-msh", "--quality", "3", "--json",
                         "--method", "sga",
                         "--steps", "150", "--schedule", "budget", "--lr-decay", "cosine")
    assert code == 0, err
    sga = json.loads(out)
    assert sga["rd_cost"] < 0.97 * amort["rd_cost"], (amort["rd_cost"], sga["rd_cost"])
    # the stock CompressAI decoder of the same weights reads the optimized file
    from rdopt.api.image import decode_bytes
    from rdopt.coding.container import unpack

    data = (tmp_path / "s.rdo").read_bytes()
    f = unpack(data)
    model = load_model("rdopt-msh", 3)
    stock = model.net.decompress([[f.strings[0]], [f.strings[1]]], [2, 2])
    pix = stock["x_hat"][0].mul(255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    assert np.array_equal(pix, decode_bytes(data)[1])


def test_sga_beats_amortized_on_the_default_model(cli, tmp_path):
    """The default image model (rdopt-scc: a parallel context model) under SGA: a lower real R-D cost than its own
    amortized encoder, and the file decodes to the picture the encoder measured."""
    src = crop_of("coffee", 128, tmp_path)
    code, out, err = cli("encode", src, "-o", tmp_path / "a.rdo", "--quality", "3", "--json")
    assert code == 0, err
    amort = json.loads(out)
    assert amort["model"] == "rdopt-scc-q3"
    code, out, err = cli("encode", src, "-o", tmp_path / "s.rdo", "--quality", "3", "--json", "--method", "sga",
                         "--steps", "150", "--schedule", "budget", "--lr-decay", "cosine")
    assert code == 0, err
    sga = json.loads(out)
    assert sga["rd_cost"] < 0.97 * amort["rd_cost"], (amort["rd_cost"], sga["rd_cost"])
    assert cli("decode", tmp_path / "s.rdo", "-o", tmp_path / "s.png")[0] == 0
    from rdopt.metrics.quality import psnr

    ref = np.asarray(Image.open(src).convert("RGB"))
    assert psnr(np.asarray(Image.open(tmp_path / "s.png")), ref) == pytest.approx(sga["psnr"], abs=1e-6)
