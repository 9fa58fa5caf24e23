"""Region-of-interest masks and the weighted SAVI objective."""

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import pattern_image
from rdopt.data.masks import MaskError, load_mask, roi_weight_map


def _save(tmp_path, a, name="m.png", mode=None):
    p = tmp_path / name
    (Image.fromarray(a, mode=mode) if mode else Image.fromarray(a)).save(p)
    return p


def test_grey_masks_of_every_kind_load(tmp_path):
    m = np.zeros((20, 30), np.uint8)
    m[5:15, 10:20] = 255
    m[0, 0] = 128
    got, notes = load_mask(_save(tmp_path, m), 30, 20)
    assert got.shape == (20, 30) and got.dtype == np.float32 and notes == []
    assert got[10, 15] == 1.0 and got[19, 29] == 0.0 and got[0, 0] == pytest.approx(128 / 255)
    # the same grey image saved as RGB, as opaque RGBA, as a bilevel image and as 16 bits
    assert np.array_equal(load_mask(_save(tmp_path, np.repeat(m[..., None], 3, 2), "rgb.png"), 30, 20)[0], got)
    rgba = np.concatenate([np.repeat(m[..., None], 3, 2), np.full((20, 30, 1), 255, np.uint8)], 2)
    assert np.array_equal(load_mask(_save(tmp_path, rgba, "rgba.png"), 30, 20)[0], got)
    Image.fromarray(m > 127).save(tmp_path / "bw.png")
    assert load_mask(tmp_path / "bw.png", 30, 20)[0][10, 15] == 1.0
    Image.fromarray(m.astype(np.uint16) * 257).save(tmp_path / "m16.png")
    assert np.allclose(load_mask(tmp_path / "m16.png", 30, 20)[0], got, atol=1e-6)


def test_mask_is_resized_when_the_aspect_ratio_matches(tmp_path):
    m = np.zeros((40, 60), np.uint8)
    m[:20] = 255
    got, notes = load_mask(_save(tmp_path, m), 30, 20)  # half size: bilinear
    assert got.shape == (20, 30) and "resized from 60×40" in notes[0] and "bilinear" in notes[0]
    assert got[:9].min() == 1.0 and got[11:].max() == 0.0 and 0 <= got.min() and got.max() <= 1
    big = np.kron(m, np.ones((4, 4), np.uint8))  # 240×160 → 30×20: box filter
    got, notes = load_mask(_save(tmp_path, big, "big.png"), 30, 20)
    assert "box" in notes[0] and got[:10].min() == 1.0 and got[10:].max() == 0.0


@pytest.mark.parametrize("case,pattern", [
    ("colour", "colour image"), ("alpha", "transparent"), ("aspect", "aspect ratios differ"),
    ("black", "marks nothing"), ("text", "not an image"), ("missing", "no such file"), ("float", "floating-point"),
])
def test_bad_masks_are_refused_with_a_reason(tmp_path, case, pattern):
    p = tmp_path / "bad.png"
    if case == "colour":
        Image.fromarray(pattern_image(20, 30)).save(p)
    elif case == "alpha":
        a = np.full((20, 30, 4), 255, np.uint8)
        a[0, 0, 3] = 0
        Image.fromarray(a).save(p)
    elif case == "aspect":
        Image.fromarray(np.full((20, 20), 255, np.uint8)).save(p)
    elif case == "black":
        Image.fromarray(np.zeros((20, 30), np.uint8)).save(p)
    elif case == "text":
        p.write_text("not a mask")
    elif case == "float":
        p = tmp_path / "bad.tif"
        Image.fromarray(np.ones((20, 30), np.float32)).save(p)
    with pytest.raises(MaskError, match=pattern):
        load_mask(p, 30, 20)


def test_weight_map():
    m = np.array([[0.0, 0.5, 1.0]], np.float32)
    assert np.array_equal(roi_weight_map(m, 5.0), np.array([[1.0, 3.0, 5.0]], np.float32))
    assert np.array_equal(roi_weight_map(m, 1.0), np.ones((1, 3), np.float32))  # exactly ones
    for bad in (0.0, -1.0, float("nan"), 1e9):
        with pytest.raises(MaskError):
            roi_weight_map(m, bad)


def test_roi_weight_one_is_the_plain_encode_bit_for_bit(tiny_model):
    """A weight map of ones (a mask with --roi-weight 1) gives the same file as no map, with the same seed."""
    from rdopt.api.image import encode_image
    from rdopt.data.images import LoadedImage
    from rdopt.infer.options import SolverOptions

    img = LoadedImage(pattern_image(48, 56), False, False, "RGB")
    mask = np.zeros((48, 56), np.float32)
    mask[10:30, 5:40] = 1.0
    mask[0:5] = 0.5
    opts = SolverOptions(method="sga", steps=40, progress=False, seed=3)
    plain = encode_image(tiny_model, img, opts)
    ones = encode_image(tiny_model, img, opts, weight=torch.from_numpy(roi_weight_map(mask, 1.0)))
    assert ones.data == plain.data and np.array_equal(ones.pixels, plain.pixels)
    assert ones.stats.rd_cost_estimated == plain.stats.rd_cost_estimated
    heavy = encode_image(tiny_model, img, opts, weight=torch.from_numpy(roi_weight_map(mask, 50.0)))
    assert heavy.data != plain.data and heavy.stats.weighted


def test_roi_weight_sharpens_the_region(tiny_model):
    """A large weight inside the mask lowers the error there relative to the plain encode."""
    from rdopt.api.image import encode_image
    from rdopt.data.images import LoadedImage
    from rdopt.infer.options import SolverOptions

    a = pattern_image(64, 64, seed=5)
    img = LoadedImage(a, False, False, "RGB")
    mask = np.zeros((64, 64), np.float32)
    mask[16:48, 16:48] = 1.0
    opts = SolverOptions(method="sga", steps=120, progress=False)
    plain = encode_image(tiny_model, img, opts)
    roi = encode_image(tiny_model, img, opts, weight=torch.from_numpy(roi_weight_map(mask, 30.0)))

    def mse_in(px):
        d = (px.astype(np.float64) - a.astype(np.float64)) ** 2
        return d[mask > 0].mean()

    assert mse_in(roi.pixels) < mse_in(plain.pixels)
