"""Max, average and global-average pooling: PyTorch's border rules and finite-difference gradients."""

import numpy as np
import pytest

from convlab import functional as F
from tests.gradcheck import check_op

# (N, C, H, W), kernel, stride, padding, ceil_mode
POOL_CASES = {
    "2x2 stride 2": ((2, 3, 6, 6), 2, None, 0, False),
    "3x3 stride 2 padding 1": ((2, 2, 7, 7), 3, 2, 1, False),
    "ceil mode, odd input": ((1, 2, 7, 9), 2, 2, 0, True),
    "ceil mode with padding": ((2, 2, 8, 6), 3, 2, 1, True),
    "non-square kernel (2, 3) stride (1, 2)": ((2, 2, 7, 9), (2, 3), (1, 2), (1, 1), False),
    "overlapping 3x3 stride 1 padding 1": ((1, 3, 5, 4), 3, 1, 1, False),
    "stride larger than kernel": ((2, 1, 9, 9), 2, 3, 0, True),
}


def well_separated(shape, seed):
    """Values 0.1 apart in random order: no ties and no kinks within the finite-difference step."""
    rng = np.random.default_rng(seed)
    return rng.permutation(np.prod(shape)).reshape(shape) * 0.1 - 1.0


@pytest.mark.parametrize("name", POOL_CASES)
def test_max_pool2d_backward_matches_finite_differences(name, float64):
    shape, kernel, stride, padding, ceil_mode = POOL_CASES[name]
    x = well_separated(shape, seed=len(name))
    check_op(lambda x: F.max_pool2d(x, kernel, stride, padding, ceil_mode), F.max_pool2d_backward, [x])


@pytest.mark.parametrize("count_include_pad", [True, False])
@pytest.mark.parametrize("name", POOL_CASES)
def test_avg_pool2d_backward_matches_finite_differences(name, count_include_pad, float64):
    shape, kernel, stride, padding, ceil_mode = POOL_CASES[name]
    x = np.random.default_rng(len(name)).standard_normal(shape)
    check_op(lambda x: F.avg_pool2d(x, kernel, stride, padding, ceil_mode, count_include_pad),
             F.avg_pool2d_backward, [x])


def test_global_avg_pool2d_backward_matches_finite_differences(float64):
    x = np.random.default_rng(0).standard_normal((2, 3, 5, 7))
    check_op(F.global_avg_pool2d, F.global_avg_pool2d_backward, [x])


def test_global_avg_pool2d_is_the_mean_of_each_feature_map():
    x = np.arange(24.0).reshape(2, 3, 2, 2)
    y, _ = F.global_avg_pool2d(x)
    np.testing.assert_array_equal(y, x.reshape(2, 3, 4).mean(axis=2))


def test_max_pool2d_picks_the_window_maximum():
    x = np.array([[1.0, 3.0, 2.0, 0.0], [4.0, 0.0, 1.0, 5.0], [7.0, 2.0, 9.0, 1.0], [0.0, 8.0, 3.0, 6.0]])
    y, cache = F.max_pool2d(x[None, None], 2)
    np.testing.assert_array_equal(y[0, 0], [[4.0, 5.0], [8.0, 9.0]])
    dx = F.max_pool2d_backward(np.ones((1, 1, 2, 2)), cache)[0, 0]
    np.testing.assert_array_equal(dx, (x == 4) | (x == 5) | (x == 8) | (x == 9))


def test_max_pool2d_ties_send_the_gradient_to_the_first_position_only():
    x = np.ones((1, 1, 2, 2))
    y, cache = F.max_pool2d(x, 2)
    dx = F.max_pool2d_backward(np.full((1, 1, 1, 1), 3.0), cache)
    np.testing.assert_array_equal(dx[0, 0], [[3.0, 0.0], [0.0, 0.0]])


def test_max_pool2d_padding_never_wins_even_against_negative_inputs():
    x = -np.arange(1.0, 10.0).reshape(1, 1, 3, 3)
    y, _ = F.max_pool2d(x, 3, stride=1, padding=1)
    assert y.max() == -1.0
    np.testing.assert_array_equal(y[0, 0, 0], [-1.0, -1.0, -2.0])


def test_avg_pool2d_divisor_counts_padding_only_when_asked():
    x = np.ones((1, 1, 2, 2))
    with_pad, _ = F.avg_pool2d(x, 2, stride=2, padding=1, count_include_pad=True)
    without_pad, _ = F.avg_pool2d(x, 2, stride=2, padding=1, count_include_pad=False)
    np.testing.assert_array_equal(with_pad[0, 0], np.full((2, 2), 0.25))
    np.testing.assert_array_equal(without_pad[0, 0], np.ones((2, 2)))


def test_avg_pool2d_ceil_mode_window_divides_by_the_cells_inside_the_padded_input():
    # 3 columns, kernel 2, stride 2, ceil mode: the last window covers one real column only.
    x = np.array([[[[2.0, 4.0, 6.0], [2.0, 4.0, 6.0]]]])
    y, _ = F.avg_pool2d(x, 2, stride=2, ceil_mode=True)
    np.testing.assert_array_equal(y[0, 0], [[3.0, 6.0]])


@pytest.mark.parametrize("size, kernel, stride, padding, ceil_mode, expected", [
    (7, 2, 2, 0, False, 3), (7, 2, 2, 0, True, 4), (6, 3, 2, 1, True, 4), (5, 2, 2, 1, True, 3),
    (8, 3, 3, 1, True, 3), (32, 3, 2, 0, True, 16),
])
def test_pool_output_size_ceil_mode_keeps_the_last_window_inside(size, kernel, stride, padding, ceil_mode,
                                                                  expected):
    assert F.pool_output_size(size, kernel, stride, padding, 1, ceil_mode) == expected


@pytest.mark.parametrize("layout", ["NCHW", "channels-last"])
@pytest.mark.parametrize("kernel, stride", [(2, None), (3, 2)])
def test_max_pool2d_takes_an_empty_batch(layout, kernel, stride):
    x = np.zeros((0, 6, 8, 8), np.float32)
    if layout == "channels-last":
        x = np.ascontiguousarray(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    y, cache = F.max_pool2d(x, kernel, stride)
    out = 4 if kernel == 2 else 3
    assert y.shape == (0, 6, out, out)
    assert F.max_pool2d_backward(np.zeros(y.shape, np.float32), cache).shape == x.shape
