"""A medium image (1600×1200, larger than one tile) encoded amortized by the CLI on the tiled path: decoded by
`rdopt decode` and by the stock CompressAI decoder, and the report is what the file measures."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import pattern_image


def test_a_medium_image_encodes_in_tiles_and_reports_what_its_file_measures(cli, tmp_path, monkeypatch):
    import rdopt.api.image as api
    from rdopt.codecs.image.loading import load_model
    from rdopt.coding.container import unpack
    from rdopt.metrics.quality import ms_ssim, psnr

    src, rdo, dec = tmp_path / "in.png", tmp_path / "a.rdo", tmp_path / "a.png"
    ref = pattern_image(1200, 1600, seed=3)
    Image.fromarray(ref).save(src)
    analyses = []
    real = api.analyze_tiled
    monkeypatch.setattr(api, "analyze_tiled", lambda *a, **k: analyses.append(1) or real(*a, **k))
    monkeypatch.setattr(api, "savi", lambda *a, **k: pytest.fail("the whole-image path ran"))

    code, out, err = cli("encode", src, "-o", rdo, "--model", "rdopt-msh", "--method", "amortized", "--json")
    assert code == 0, err
    report = json.loads(out)
    assert analyses == [1] and report["messages"] == [] and report["steps"] == 0
    # the same encode with the text report: progress bars over the tiles on standard error, the same file
    code, out, err = cli("encode", src, "-o", tmp_path / "b.rdo", "--model", "rdopt-msh", "--method", "amortized")
    assert code == 0, err
    assert "analysis:" in err and "decode:" in err and "tile" in err
    assert f"PSNR        {report['psnr']:.3f} dB" in out
    assert (tmp_path / "b.rdo").read_bytes() == rdo.read_bytes()

    # rdopt decode (tiled synthesis) of the file gives what the report measured
    code, _, err = cli("decode", rdo, "-o", dec)
    assert code == 0, err
    pixels = np.asarray(Image.open(dec).convert("RGB"))
    data = rdo.read_bytes()
    assert report["file_bytes"] == len(data) and report["bpp"] == 8 * len(data) / (1600 * 1200)
    assert report["psnr"] == psnr(pixels, ref)
    assert report["ms_ssim"] == pytest.approx(ms_ssim(pixels, ref), abs=1e-12)
    assert report["rd_cost"] == pytest.approx(report["bpp"] + report["lmbda"] * 255.0**2 * float(
        np.mean((pixels.astype(np.float64) - ref) ** 2)) / 255.0**2, rel=1e-12)
    assert report["bpp_estimated"] == pytest.approx(report["bpp_payload"], rel=0.05)
    assert report["rd_cost_estimated"] == pytest.approx(report["rd_cost"], rel=0.05)

    # the stock CompressAI decoder of the same weights reads the streams: the one-pass synthesis differs from
    # the tiled one only by floating-point summation order
    f = unpack(data)
    model = load_model("rdopt-msh", 3)
    with torch.no_grad():
        stock = model.net.decompress([[f.strings[0]], [f.strings[1]]], [19, 25])  # padded 1216×1600
    stock_pixels = stock["x_hat"][0, :, :1200, :1600].mul(255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    diff = np.abs(stock_pixels.astype(int) - pixels)
    assert diff.max() <= 1 and (diff != 0).mean() < 1e-4
