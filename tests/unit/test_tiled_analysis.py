"""The bounded-memory amortized path for large images: tiled analysis (g_a) equal to the whole-image one, the
rate without synthesis, the measurements made tile by tile or band by band, and encode_tiled against the
whole-image encode."""

import numpy as np
import pytest
import torch
from torch import nn

from conftest import frozen, pattern_image, tiny_adapter
from rdopt.codecs.image import tiled
from rdopt.codecs.image.tiled import (ANALYSIS_HALO, PaddedPixels, analysis_halo, analysis_reach, analyze_tiled,
                                      fits_one_tile, synthesize_uint8)
from rdopt.data.images import to_batch
from rdopt.infer.options import SolverOptions
from rdopt.metrics.quality import ms_ssim, ms_ssim_banded, psnr, squared_error_sum


def _adapter(seed=0, n=8, m=12):
    from compressai.models import MeanScaleHyperprior

    from rdopt.codecs.image.hyperprior import HyperpriorAdapter

    torch.manual_seed(seed)
    net = MeanScaleHyperprior(N=n, M=m).eval()
    return HyperpriorAdapter(net, model_id="rdopt-msh-custom", lmbda=0.0067, quality=3).eval()


def test_the_reach_of_g_a_is_its_receptive_field():
    net = _adapter().net
    assert analysis_reach(net.g_a) == (16, 30, 30)  # 61 pixels: 16i − 30 … 16i + 30
    assert analysis_halo(net.g_a) == 2 <= ANALYSIS_HALO
    # a layer with an unknown reach, or a reach wider than the halo: not tiled
    assert analysis_reach(nn.Sequential(net.g_a[0], nn.Upsample(scale_factor=2))) is None
    wide = nn.Sequential(*[nn.Conv2d(3, 3, 9, stride=2, padding=4) for _ in range(4)])
    assert analysis_reach(wide) == (16, 60, 60) and analysis_halo(wide) is None


@pytest.mark.parametrize("tile", [1, 3, 4])
def test_tiled_analysis_equals_the_whole_image_in_float64(float64, tile):
    model = _adapter()
    x = torch.rand(2, 3, 157, 203, generator=torch.Generator().manual_seed(1))  # odd sizes: y is 10×13
    with torch.no_grad():
        whole = model.analysis(x)
    calls = []
    g_a = model.net.g_a
    model.net.g_a = nn.Sequential(*g_a)  # the same layers, counted
    model.net.g_a.register_forward_hook(lambda *a: calls.append(1))
    y = analyze_tiled(model, x, tile=tile)
    assert y.shape == whole.shape == (2, 12, 10, 13) and y.dtype == torch.float64
    assert len(calls) == -(-10 // tile) * -(-13 // tile) > 1  # more than one tile
    assert float((y - whole).abs().max()) < 1e-10


def test_a_halo_short_of_the_reach_differs(float64, monkeypatch):
    """The test above can fail: with one latent of context (16 pixels < 30) the tiles' borders are wrong."""
    model = _adapter()
    x = torch.rand(1, 3, 157, 203, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        whole = model.analysis(x)
    monkeypatch.setattr(tiled, "analysis_halo", lambda g_a: 1)
    assert float((analyze_tiled(model, x, tile=3) - whole).abs().max()) > 1e-3


def test_tiled_analysis_of_8_bit_pixels_equals_the_padded_batch():
    model = tiny_adapter()
    rgb = pattern_image(301, 389, seed=2)  # padded to 320×448: y 20×28
    px = PaddedPixels(rgb, model.pad_multiple)
    x = to_batch([rgb], model.pad_multiple)
    assert px.shape == tuple(x.shape)
    assert torch.equal(px.crop(0, 320, 0, 448), x)  # the same values, edge replication included
    assert torch.equal(px.crop(288, 320, 384, 448), x[..., 288:320, 384:448])
    with torch.no_grad():
        whole = model.analysis(x)
    y = analyze_tiled(model, px, tile=6)
    assert y.shape == whole.shape
    assert float((y - whole).abs().max()) < 1e-4


def test_an_input_of_one_tile_is_analysed_in_one_pass():
    model = tiny_adapter()
    x = torch.rand(1, 3, 64, 80)
    with torch.no_grad():
        assert torch.equal(analyze_tiled(model, x, tile=8), model.analysis(x))


def _scc(seed=0):
    """A small rdopt-scc grown from a random hyperprior, context terms away from zero as after training."""
    from rdopt.codecs.image.loading import fine_scale_table
    from rdopt.codecs.image.parallel import ParallelContextAdapter
    from rdopt.codecs.image.scc import grow_from_hyperprior

    base = tiny_adapter(seed)
    net = grow_from_hyperprior(base.net, groups=[2, 2, 4, 8], hidden=8, channel_hidden=8).eval()
    with torch.no_grad():
        for m in net.modules():
            if hasattr(m, "mlp"):
                m.mlp[-1].weight.normal_(0, 0.05, generator=torch.Generator().manual_seed(seed))
    net.update(scale_table=fine_scale_table(32), force=True)
    return frozen(ParallelContextAdapter(net, model_id="rdopt-scc-custom", lmbda=0.0067, quality=3))


MODELS = {"hyperprior": tiny_adapter, "rdopt-scc": _scc}


@pytest.mark.parametrize("kind", MODELS)
def test_the_rate_without_synthesis_is_the_hard_evaluation_s(kind):
    model = MODELS[kind]()
    x = to_batch([pattern_image(96, 128, seed=3)], model.pad_multiple)
    with torch.no_grad():
        hard = model.quantize(model.amortize(x))
        assert torch.equal(model.hard_bits(hard), model.hard_evaluate(hard).bits)


def test_tile_callback_sees_every_visible_pixel_once_before_rounding(monkeypatch):
    model = tiny_adapter()
    monkeypatch.setattr(tiled, "TILE", 2)  # 32-pixel tiles
    y_hat = torch.round(torch.randn(1, 16, 5, 7, generator=torch.Generator().manual_seed(0)) * 2)
    seen = np.zeros((70, 100), dtype=int)
    parts = []

    def on_tile(top, left, x):
        seen[top : top + x.shape[-2], left : left + x.shape[-1]] += 1
        parts.append((top, left, x.clone()))

    out = synthesize_uint8(model, y_hat, 70, 100, on_tile=on_tile)
    assert (seen == 1).all() and len(parts) == 3 * 4
    for top, left, x in parts:
        ref = x[0].clamp(0, 1).mul(255).round().to(torch.uint8).permute(1, 2, 0).numpy()
        assert np.array_equal(out[top : top + x.shape[-2], left : left + x.shape[-1]], ref)


@pytest.mark.parametrize("shape", [(161, 161), (170, 203), (333, 517)])
def test_banded_ms_ssim_is_pytorch_msssim_s(shape):
    h, w = shape
    a = pattern_image(h, w, seed=4)
    rng = np.random.default_rng(5)
    b = np.clip(a.astype(int) + rng.integers(-20, 21, a.shape), 0, 255).astype(np.uint8)
    ref = ms_ssim(a, b)
    for band in (3 * w * 16, 3 * w * 37, 1 << 22):  # bands of 16 and 37 rows (the minimum is 16), one band
        assert ms_ssim_banded(a, b, band_values=band) == pytest.approx(ref, abs=1e-12)
    assert ms_ssim_banded(a[:160], b[:160]) is None and ms_ssim(a[:160], b[:160]) is None


def test_squared_error_sum_gives_psnr_s_mean():
    a, b = pattern_image(517, 203, seed=6), pattern_image(517, 203, seed=7)
    mean = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    assert squared_error_sum(a, b, rows=50) / a.size == mean
    assert psnr(a, b) == pytest.approx(10 * np.log10(255.0**2 / mean), rel=1e-14)  # math.log10 vs np.log10: last bit


def test_only_large_amortized_mse_encodes_take_the_tiled_path():
    from rdopt.api.image import encodes_in_tiles
    from rdopt.core.rd import Distortion

    model = tiny_adapter()
    amortized, sga = SolverOptions(method="amortized", steps=0), SolverOptions(method="sga", steps=10)
    assert fits_one_tile(1024, 1024) and not fits_one_tile(1025, 64) and not fits_one_tile(64, 1025)
    assert not encodes_in_tiles(model, amortized, 1024, 1000)  # one tile: the whole-image path, unchanged
    assert encodes_in_tiles(model, amortized, 1025, 64)
    assert encodes_in_tiles(model, SolverOptions(method="sga", steps=0), 1025, 64)
    assert not encodes_in_tiles(model, sga, 1025, 64)
    assert not encodes_in_tiles(model, amortized, 1025, 64, distortion=Distortion(1.0))
    assert not encodes_in_tiles(model, amortized, 1025, 64, weight=torch.ones(1, 1, 1025, 64))
    assert not encodes_in_tiles(model, amortized, 1025, 64, torch.full((1, 1, 1025, 64), 0.01))


@pytest.mark.parametrize("kind,grayscale", [("hyperprior", False), ("hyperprior", True), ("rdopt-scc", False)])
def test_tiled_encode_reports_what_the_whole_image_encode_does(monkeypatch, capsys, kind, grayscale):
    """On an image over one tile the tiled path writes the same file as the whole-image path (up to
    floating-point summation order in g_a) and reports the same measurements, with bars over the tiles."""
    import rdopt.api.image as api
    from rdopt.data.images import LoadedImage

    model = MODELS[kind]()
    rgb = pattern_image(1100, 300, seed=8)
    if grayscale:
        rgb = np.repeat(rgb[..., 1:2], 3, axis=2)
    image = LoadedImage(rgb, grayscale, False, "L" if grayscale else "RGB")
    options = SolverOptions(method="amortized", steps=0, progress=True)
    assert api.encodes_in_tiles(model, options, 1100, 300)
    t = api.encode_image(model, image, options)
    err = capsys.readouterr().err
    assert "analysis:" in err and "decode:" in err  # progress over the tiles, on standard error
    monkeypatch.setattr(api, "encodes_in_tiles", lambda *a, **k: False)
    w = api.encode_image(model, image, SolverOptions(method="amortized", steps=0))
    assert capsys.readouterr().err == ""  # the library is quiet unless asked
    assert t.data == w.data and np.array_equal(t.pixels, w.pixels) and t.pixels.ndim == (2 if grayscale else 3)
    for k in ("file_bytes", "bpp", "bpp_payload", "bpp_estimated", "psnr", "rd_cost", "png_bytes",
              "method", "steps", "messages", "warnings"):
        assert getattr(t.stats, k) == getattr(w.stats, k), k
    # MS-SSIM in bands over the tiles vs over the whole image: the same sums in another order (last-bit differences
    # on some CPUs' vector kernels)
    assert t.stats.ms_ssim == pytest.approx(w.stats.ms_ssim, rel=1e-12)
    assert t.stats.rd_cost_estimated == pytest.approx(w.stats.rd_cost_estimated, rel=1e-6)
    assert t.stats.rd_cost_amortized_estimated == pytest.approx(w.stats.rd_cost_amortized_estimated, rel=1e-6)


def test_the_memory_check_budgets_the_tiled_encode_of_the_models_that_take_it(monkeypatch):
    """A 12-MP amortized encode fits 3 GB where it runs in tiles (the embedded models, the default one included, and
    CompressAI's hyperpriors), not on the whole-image path (an optimizing method, a raster-scan context model)."""
    from rdopt.api.image import encode_memory_check
    from rdopt.data.safeio import MemoryBudgetError

    monkeypatch.setenv("RDOPT_MEMORY_LIMIT", "3G")
    for model in (None, "rdopt-scc", "rdopt-msh", "mbt2018-mean"):
        encode_memory_check("amortized", model, tiled=True)(4000, 3000)
    for method, model, tiled_ in (("amortized", None, False), ("sga", "rdopt-scc", False),
                                  ("amortized", "mbt2018", True)):
        with pytest.raises(MemoryBudgetError, match="4000×3000"):
            encode_memory_check(method, model, tiled_)(4000, 3000)
