"""Batched augmentation: shapes and dtype kept, seeded, and each transform doing what its name says."""

from __future__ import annotations

import numpy as np
import pytest

from convlab import backend
from convlab.data import (
    Compose,
    Cutout,
    GaussianNoise,
    Normalize,
    RandomAffine,
    RandomCrop,
    RandomHorizontalFlip,
)


def batch(n=16, c=3, h=12, w=10, seed=0):
    return np.random.default_rng(seed).random((n, c, h, w), dtype=np.float32)


SHAPED = [  # (transform, output H x W for a 12 x 10 input)
    (RandomCrop(8, padding=2), (8, 8)), (RandomCrop((12, 10), padding=3), (12, 10)),
    (RandomHorizontalFlip(), (12, 10)), (RandomAffine(degrees=15, scale=(0.9, 1.1)), (12, 10)),
    (RandomAffine(10, interpolation="nearest"), (12, 10)), (GaussianNoise(0.1), (12, 10)),
    (Cutout(4), (12, 10)), (Normalize([0.5, 0.4, 0.3], [0.2, 0.2, 0.2]), (12, 10)),
    (Compose([RandomCrop(12, 2), RandomHorizontalFlip(), Cutout(3)]), (12, 12)),
]
ALL = [t for t, _ in SHAPED]
ALL_IDS = [repr(t) for t in ALL]
RANDOM = [t for t in ALL if not isinstance(t, Normalize)]


@pytest.mark.parametrize("t, hw", SHAPED, ids=ALL_IDS)
def test_transform_keeps_batch_channels_and_float32(t, hw):
    y = t(batch(), 0)
    assert y.shape == (16, 3, *hw) and y.dtype == np.float32


@pytest.mark.parametrize("t", ALL, ids=ALL_IDS)
def test_same_seed_same_output_and_input_untouched(t):
    x = batch()
    before = x.copy()
    assert np.array_equal(t(x, np.random.default_rng(5)), t(x, np.random.default_rng(5)))
    assert np.array_equal(x, before)


@pytest.mark.parametrize("t", RANDOM, ids=[repr(t) for t in RANDOM])
def test_different_seeds_give_different_output(t):
    x = batch()
    assert not np.array_equal(t(x, 1), t(x, 2))


def test_global_source_is_used_without_rng_and_follows_manual_seed():
    x = batch()
    backend.manual_seed(3)
    a = RandomCrop(8, 2)(x)
    backend.manual_seed(3)
    assert np.array_equal(a, RandomCrop(8, 2)(x))


def test_flip_with_p_one_mirrors_every_sample_and_p_zero_none():
    x = batch()
    assert np.array_equal(RandomHorizontalFlip(1.0)(x, 0), x[..., ::-1])
    assert np.array_equal(RandomHorizontalFlip(0.0)(x, 0), x)


def test_flip_mirrors_some_samples_and_keeps_the_rest():
    x = batch(n=64)
    y = RandomHorizontalFlip(0.5)(x, 0)
    flipped = np.array([np.array_equal(y[i], x[i, :, :, ::-1]) for i in range(64)])
    kept = np.array([np.array_equal(y[i], x[i]) for i in range(64)])
    assert np.all(flipped ^ kept) and 16 < flipped.sum() < 48


def test_crop_with_no_padding_to_full_size_is_identity():
    x = batch()
    assert np.array_equal(RandomCrop((12, 10), padding=0)(x, 0), x)


def test_crop_is_a_shifted_window_of_the_padded_image():
    x = batch(n=32)
    y = RandomCrop(12, padding=4, fill=-1.0)(x, 7)  # x is 12 x 10
    padded = np.pad(x, ((0, 0), (0, 0), (4, 4), (4, 4)), constant_values=-1.0)  # 20 x 18
    offsets = set()
    for i in range(32):
        matches = [(dy, dx) for dy in range(9) for dx in range(7)
                   if np.array_equal(y[i], padded[i, :, dy:dy + 12, dx:dx + 12])]
        assert matches, f"sample {i} is not a window of its padded image"
        offsets.add(matches[0])
    assert len(offsets) > 10


def test_affine_with_no_rotation_or_scaling_is_identity():
    x = batch()
    assert np.allclose(RandomAffine(0, (1.0, 1.0))(x, 0), x, atol=1e-6)


@pytest.mark.parametrize("interpolation", ["nearest", "bilinear"])
def test_affine_rotates_counter_clockwise(interpolation):
    x = batch(h=9, w=9)
    y = RandomAffine(degrees=(90, 90), interpolation=interpolation)(x, 0)
    assert np.allclose(y, np.rot90(x, 1, axes=(2, 3)), atol=1e-5)


def test_affine_zoom_out_fills_the_border():
    x = np.ones((2, 1, 11, 11), np.float32)
    y = RandomAffine(0, scale=(0.5, 0.5), interpolation="nearest", fill=0.0)(x, 0)
    assert np.all(y[:, :, 0] == 0) and np.all(y[:, :, 5, 5] == 1)


def test_bilinear_half_pixel_shift_averages_neighbours():
    """Scaling by 2 about the centre of a 2-pixel-wide ramp samples half-way between pixels."""
    x = np.array([[[[0.0, 1.0], [0.0, 1.0]]]], np.float32)
    y = RandomAffine(0, scale=(2.0, 2.0))(x, 0)
    assert np.allclose(y[0, 0, 0], [0.25, 0.75])


def test_noise_has_the_requested_spread_and_no_bias():
    x = np.zeros((64, 3, 16, 16), np.float32)
    y = GaussianNoise(0.1)(x, 0)
    assert abs(float(y.std()) - 0.1) < 0.005 and abs(float(y.mean())) < 0.005


def test_cutout_zeroes_one_square_per_sample():
    x = np.ones((64, 3, 16, 16), np.float32)
    y = Cutout(6)(x, 0)
    full_squares = 0
    for i in range(64):
        assert np.array_equal(y[i, 0], y[i, 2])  # all channels alike
        rows, cols = np.nonzero(y[i, 0] == 0)
        h, w = rows.max() - rows.min() + 1, cols.max() - cols.min() + 1
        assert h <= 6 and w <= 6 and len(rows) == h * w  # a filled rectangle, clipped at most to 6x6
        full_squares += (h, w) == (6, 6)
    assert full_squares > 20
    assert np.all((y == 0) | (y == 1))


def test_cutout_with_p_zero_changes_nothing():
    x = batch()
    assert np.array_equal(Cutout(4, p=0.0)(x, 0), x)


def test_normalize_matches_the_formula():
    x = batch()
    mean, std = np.array([0.5, 0.4, 0.3]), np.array([0.2, 0.25, 0.3])
    expected = (x - mean[None, :, None, None]) / std[None, :, None, None]
    assert np.allclose(Normalize(mean.tolist(), std.tolist())(x), expected, atol=1e-6)


def test_compose_applies_in_order_with_one_generator():
    x = batch()
    pipeline = Compose([RandomHorizontalFlip(1.0), Normalize([0.5] * 3, [0.5] * 3)])
    assert np.allclose(pipeline(x, 0), (x[..., ::-1] - 0.5) / 0.5)
    crop, flip = RandomCrop(8, 2), RandomHorizontalFlip()
    rng = np.random.default_rng(4)
    expected = flip(crop(x, rng), rng)
    assert np.array_equal(Compose([crop, flip])(x, 4), expected)


@pytest.mark.parametrize("bad", [np.zeros((3, 8, 8), np.float32), np.zeros((1, 3, 8, 8), np.uint8)],
                         ids=["3d", "uint8"])
def test_non_float_nchw_input_is_rejected_with_the_transform_name(bad):
    with pytest.raises(ValueError, match=r"RandomCrop: expected a float array \(N, C, H, W\)"):
        RandomCrop(4)(bad, 0)


def test_bad_parameters_are_rejected():
    with pytest.raises(ValueError, match="does not fit"):
        RandomCrop(20, padding=2)(batch(), 0)
    with pytest.raises(ValueError, match="interpolation"):
        RandomAffine(interpolation="cubic")
    with pytest.raises(ValueError, match=r"1 channel\(s\), but the batch has shape \(16, 3"):
        Normalize([0.5], [0.5])(batch(), 0)
