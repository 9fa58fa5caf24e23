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


def test_color_augment_changes_colour_within_range_and_only_at_its_rate():
    rng = np.random.default_rng(0)
    a = rng.integers(60, 200, (48, 48, 3), dtype=np.uint8)
    plain = CropSampler([[a]], crop=16, seed=5, scales=(1.0,)).batch(300)
    jittered = CropSampler([[a]], crop=16, seed=5, scales=(1.0,), color_augment=0.5).batch(300)
    assert jittered.min() >= 0 and jittered.max() <= 1
    # a crop is either one of the plain crops' values (same positions, same draw) or colour-changed
    mean_rgb = jittered.mean(dim=(2, 3))
    changed = (mean_rgb - plain.mean(dim=(2, 3))).abs().max(1).values > 1e-3
    # the augmentation draws extra random numbers, so later crops move: compare the share on the colour statistics
    spread = mean_rgb.std(0).mean().item()
    assert spread > 2 * plain.mean(dim=(2, 3)).std(0).mean().item()
    assert changed.float().mean() > 0.3
    none = CropSampler([[a]], crop=16, seed=5, scales=(1.0,), color_augment=0.0).batch(300)
    assert torch.equal(none, plain)
    with pytest.raises(ValueError, match="probability"):
        CropSampler([[a]], crop=16, seed=5, scales=(1.0,), color_augment=1.5)


def test_color_jitter_reaches_saturated_clipped_and_monochrome_colours():
    from rdopt.training import ColorJitter

    rng = np.random.default_rng(1)
    grey_ramp = torch.linspace(0.2, 0.8, 32).repeat(3, 32, 1)  # colourless input
    jitter = ColorJitter()
    out = torch.stack([jitter(grey_ramp + 0.05 * torch.randn(3, 32, 32, generator=torch.Generator().manual_seed(i)), rng)
                       for i in range(200)])
    sat = (out.max(1).values - out.min(1).values).mean(dim=(1, 2))
    clipped = ((out == 0) | (out == 1)).float().mean(dim=(1, 2, 3))
    assert sat.max() > 0.25  # strongly coloured versions of a grey picture
    assert clipped.max() > 0.3  # and channel-clipped ones
    lum = out.mean(dim=(1, 2, 3))
    assert lum.min() < 0.2 and lum.max() > 0.7  # dark and bright exposures


def test_identity_jitter_keeps_the_grey_component_and_only_rotates_hue():
    from rdopt.training import ColorJitter

    one = (1.0, 1.0)
    c = 0.3 + 0.4 * torch.rand(3, 8, 8, dtype=torch.float64)
    jitter = ColorJitter(exposure=one, channel_gain=one, gamma=one, saturation=one)
    rotated = 0
    for seed in range(20):
        out = jitter(c, np.random.default_rng(seed))
        if torch.allclose(out, c, atol=1e-12):
            continue
        rotated += 1
        # a rotation about the grey axis keeps the mean of the channels and the distance from grey
        assert torch.allclose(out.mean(0), c.mean(0), atol=1e-9)
        assert torch.allclose((out - out.mean(0)).norm(dim=0), (c - c.mean(0)).norm(dim=0), atol=1e-9)
    assert 3 < rotated < 17  # the hue rotation is applied to about half of the crops
