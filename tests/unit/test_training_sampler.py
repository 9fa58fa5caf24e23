"""The training crop sampler: source weights, downscaling levels, flips, errors."""

import numpy as np
import pytest
import torch

from rdopt.training import CropSampler


def _const(h, w, value):
    return np.full((h, w, 3), value, dtype=np.uint8)


def test_source_weights_set_the_share_of_crops():
    # Group 0 has 9 images of value 10, group 1 one image of value 200: by image count group 1 gets
    # 10 % of the crops; with weights (0.5, 0.5) it gets half.
    groups = [[_const(40, 40, 10) for _ in range(9)], [_const(40, 40, 200)]]
    by_count = CropSampler(groups, crop=16, seed=0, scales=(1.0,)).batch(2000)
    share = (by_count[:, 0, 0, 0] > 0.5).float().mean().item()
    assert abs(share - 0.1) < 0.03
    balanced = CropSampler(groups, crop=16, seed=0, scales=(1.0,), weights=(0.5, 0.5)).batch(2000)
    share = (balanced[:, 0, 0, 0] > 0.5).float().mean().item()
    assert abs(share - 0.5) < 0.04
    only_second = CropSampler(groups, crop=16, seed=0, scales=(1.0,), weights=(0.0, 1.0)).batch(50)
    assert torch.all(only_second > 0.5)


def test_downscaled_levels_are_area_averages_and_skip_too_small_images():
    # A 2×2 checkerboard of 0/255 pixels averages to mid-gray at scale 0.5 (area downscaling).
    a = np.zeros((64, 64, 3), dtype=np.uint8)
    a[::2, ::2] = 255
    a[1::2, 1::2] = 255
    s = CropSampler([[a]], crop=16, seed=1, scales=(1.0, 0.5, 0.25))
    levels = s.groups[0][0]
    assert [tuple(t.shape[1:]) for t in levels] == [(64, 64), (32, 32), (16, 16)]
    assert torch.allclose(levels[1], torch.full_like(levels[1], 0.5))
    # 0.25 of 40 px is 10 px < 16: that level is left out for this image.
    s = CropSampler([[_const(40, 40, 0)]], crop=16, seed=1, scales=(1.0, 0.25))
    assert len(s.groups[0][0]) == 1
    crops = CropSampler([[a]], crop=16, seed=2, scales=(1.0, 0.5)).batch(200)
    gray = torch.isclose(crops, torch.tensor(0.5)).all(dim=(1, 2, 3)).float().mean().item()
    assert 0.35 < gray < 0.65  # about half the crops come from the downscaled level


def test_flips_and_shapes():
    ramp = np.tile(np.arange(32, dtype=np.uint8)[None, :, None], (32, 1, 3)) * 8
    crops = CropSampler([[ramp]], crop=32, seed=3, scales=(1.0,)).batch(100)
    assert crops.shape == (100, 3, 32, 32)
    increasing = (crops[:, 0, 0, -1] > crops[:, 0, 0, 0]).float().mean().item()
    assert 0.3 < increasing < 0.7


def test_errors():
    with pytest.raises(ValueError, match="at least 16"):
        CropSampler([[_const(8, 8, 0)]], crop=16, seed=0)
    with pytest.raises(ValueError, match="one non-negative weight"):
        CropSampler([[_const(20, 20, 0)], [_const(20, 20, 0)]], crop=16, seed=0, weights=(1.0,))
    with pytest.raises(ValueError, match="no image of at least"):
        CropSampler([[_const(20, 20, 0)], [_const(8, 8, 0)]], crop=16, seed=0, weights=(0.5, 0.5))
    with pytest.raises(ValueError, match="scales"):
        CropSampler([[_const(20, 20, 0)]], crop=16, seed=0, scales=(2.0,))
