"""Cross-correlation: the course's worked examples, output sizes, and finite-difference gradients."""

import numpy as np
import pytest

from convlab import functional as F
from convlab import nn
from convlab.functional.conv import resolve_padding
from tests.gradcheck import check_op

# (N, C, H, W), O, kernel, stride, padding, dilation, groups, bias
CONV_CASES = {
    "plain 3x3": ((2, 3, 6, 6), 4, 3, 1, 0, 1, 1, True),
    "stride 2 padding 1": ((2, 2, 7, 7), 3, 3, 2, 1, 1, 1, True),
    "non-square kernel and input 7x9": ((1, 2, 7, 9), 3, (2, 3), 1, (1, 0), 1, 1, True),
    "dilation 2": ((2, 2, 7, 8), 2, 3, 1, 2, 2, 1, False),
    "groups 2": ((2, 4, 5, 6), 6, 3, 1, 1, 1, 2, True),
    "depthwise": ((2, 3, 6, 5), 3, 3, 1, 1, 1, 3, False),
    "depthwise multiplier 2 stride 2": ((1, 2, 7, 9), 4, 3, 2, 1, 1, 2, True),
    "strides (2, 3) dilation (2, 1)": ((2, 2, 9, 10), 3, (3, 2), (2, 3), (1, 2), (2, 1), 1, True),
    "same, even kernel, dilation 2": ((1, 2, 6, 7), 2, (2, 4), 1, "same", 2, 1, True),
    "valid, 1x1": ((3, 4, 3, 5), 2, 1, 1, "valid", 1, 1, True),
    "batch 1, kernel covers the input": ((1, 2, 4, 4), 3, 4, 1, 0, 1, 1, True),
    "stride larger than kernel": ((2, 2, 9, 9), 2, 2, 3, 0, 1, 1, True),
}


@pytest.mark.parametrize("name", CONV_CASES)
def test_conv2d_backward_matches_finite_differences(name, float64):
    x_shape, out_channels, kernel, stride, padding, dilation, groups, bias = CONV_CASES[name]
    rng = np.random.default_rng(len(name))
    kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
    x = rng.standard_normal(x_shape)
    w = rng.standard_normal((out_channels, x_shape[1] // groups, kh, kw))
    inputs = [x, w] + ([rng.standard_normal(out_channels)] if bias else [])

    def forward(x, w, b=None):
        return F.conv2d(x, w, b, stride, padding, dilation, groups)

    def backward(dy, cache):
        dx, dw, db = F.conv2d_backward(dy, cache)
        return (dx, dw, db) if bias else (dx, dw)

    check_op(forward, backward, inputs)


def test_conv2d_worked_example_cross_correlation():
    # The 3×3 input 0..8 cross-correlated with the 2×2 kernel [[0, 1], [2, 3]].
    x = np.arange(9.0).reshape(1, 1, 3, 3)
    k = np.array([[0.0, 1.0], [2.0, 3.0]]).reshape(1, 1, 2, 2)
    y, _ = F.conv2d(x, k)
    np.testing.assert_array_equal(y[0, 0], [[19.0, 25.0], [37.0, 43.0]])


def test_conv2d_worked_example_padding_1_stride_3_2():
    x = np.arange(9.0).reshape(1, 1, 3, 3)
    k = np.array([[0.0, 1.0], [2.0, 3.0]]).reshape(1, 1, 2, 2)
    y, _ = F.conv2d(x, k, stride=(3, 2), padding=1)
    np.testing.assert_array_equal(y[0, 0], [[0.0, 8.0], [6.0, 8.0]])


def test_conv2d_layer_worked_example_through_the_module():
    conv = nn.Conv2d(1, 1, 2, stride=(3, 2), padding=1, bias=False)
    conv.weight.data[...] = np.array([[0.0, 1.0], [2.0, 3.0]])
    y = conv(np.arange(9.0, dtype=np.float32).reshape(1, 1, 3, 3))
    np.testing.assert_array_equal(y[0, 0], [[0.0, 8.0], [6.0, 8.0]])


def test_bank_of_ten_5x5x3_filters_with_bias_has_760_parameters():
    conv = nn.Conv2d(3, 10, 5)
    assert conv.weight.shape == (10, 3, 5, 5)
    assert conv.bias.shape == (10,)
    assert conv.num_parameters() == 760


def test_multichannel_cross_correlation_sums_over_input_channels():
    # Two input channels: the output is the sum of the per-channel cross-correlations.
    x = np.stack([np.arange(9.0).reshape(3, 3), np.arange(1.0, 10.0).reshape(3, 3)])[None]
    k = np.stack([np.array([[0.0, 1.0], [2.0, 3.0]]), np.array([[1.0, 2.0], [3.0, 4.0]])])[None]
    y, _ = F.conv2d(x, k)
    np.testing.assert_array_equal(y[0, 0], [[56.0, 72.0], [104.0, 120.0]])


@pytest.mark.parametrize(
    "size, kernel, stride, padding, dilation, expected",
    [(32, 5, 1, 0, 1, 28), (28, 3, 1, 1, 1, 28), (7, 3, 2, 1, 1, 4), (224, 11, 4, 2, 1, 55),
     (9, 3, 1, 0, 2, 5), (3, 2, 3, 1, 1, 2)],
)
def test_conv_output_size_follows_floor_rule(size, kernel, stride, padding, dilation, expected):
    assert F.conv_output_size(size, kernel, stride, padding, dilation) == expected


@pytest.mark.parametrize("kernel, dilation, expected", [
    ((3, 3), (1, 1), (1, 1, 1, 1)),
    ((2, 4), (1, 1), (0, 1, 1, 2)),
    ((2, 2), (2, 3), (1, 1, 1, 2)),
])
def test_same_padding_puts_the_odd_cell_at_the_bottom_right(kernel, dilation, expected):
    assert resolve_padding("same", kernel, (1, 1), dilation) == expected


def test_same_padding_with_stride_is_rejected():
    with pytest.raises(ValueError, match=r"padding='same' needs stride 1, got stride \(2, 2\)"):
        nn.Conv2d(2, 2, 3, stride=2, padding="same")


def test_same_padding_keeps_the_spatial_size():
    x = np.random.default_rng(0).standard_normal((1, 2, 7, 10)).astype(np.float32)
    for kernel, dilation in [(2, 1), (4, 2), ((3, 2), (1, 3))]:
        conv = nn.Conv2d(2, 3, kernel, padding="same", dilation=dilation)
        assert conv(x).shape == (1, 3, 7, 10), (kernel, dilation)


def test_im2col_and_col2im_are_adjoint():
    # <im2col(x), c> == <x, col2im(c)>: col2im is the transpose of the gather, as backward needs.
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 7, 9, 3))  # (N, H, W, C)
    stride, dilation, kernel = (2, 1), (1, 2), (3, 2)
    ho = F.conv_output_size(7, 3, 2, 0, 1)
    wo = F.conv_output_size(9, 2, 1, 0, 2)
    cols = F.im2col(x, kernel, stride, dilation, (ho, wo))  # (N·Ho·Wo, kh·kw·C)
    assert cols.shape == (2 * ho * wo, 3 * 2 * 3)
    c = rng.standard_normal(cols.shape)
    back = F.col2im(c.reshape(2, ho, wo, 3, 2, 3), (7, 9), stride, dilation)
    assert np.isclose(np.sum(cols * c), np.sum(x * back), rtol=1e-12)


@pytest.mark.parametrize("name", ["plain 3x3", "depthwise", "groups 2", "valid, 1x1"])
def test_conv2d_backward_without_dx_gives_the_same_weight_gradients(name):
    x_shape, out_channels, kernel, stride, padding, dilation, groups, bias = CONV_CASES[name]
    rng = np.random.default_rng(0)
    kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
    x = rng.standard_normal(x_shape)
    w = rng.standard_normal((out_channels, x_shape[1] // groups, kh, kw))
    y, cache = F.conv2d(x, w, np.zeros(out_channels), stride, padding, dilation, groups)
    dy = rng.standard_normal(y.shape)
    _, dw, db = F.conv2d_backward(dy, cache)
    no_dx, dw_only, db_only = F.conv2d_backward(dy, cache, need_dx=False)
    assert no_dx is None
    np.testing.assert_allclose(dw_only, dw, rtol=1e-12)
    np.testing.assert_allclose(db_only, db, rtol=1e-12)
