"""Dense layer and flatten: finite-difference gradients and shapes."""

import numpy as np
import pytest

from convlab import functional as F
from tests.gradcheck import check_op


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("n, features_in, features_out", [(4, 5, 3), (1, 7, 2), (3, 1, 6)])
def test_linear_backward_matches_finite_differences(n, features_in, features_out, bias, float64):
    rng = np.random.default_rng(n + features_in)
    inputs = [rng.standard_normal((n, features_in)), rng.standard_normal((features_out, features_in))]
    if bias:
        inputs.append(rng.standard_normal(features_out))

    def forward(x, w, b=None):
        return F.linear(x, w, b)

    def backward(dy, cache):
        dx, dw, db = F.linear_backward(dy, cache)
        return (dx, dw, db) if bias else (dx, dw)

    check_op(forward, backward, inputs)


def test_linear_computes_x_times_weight_transposed_plus_bias():
    x = np.array([[1.0, 2.0]])
    w = np.array([[1.0, 0.0], [3.0, -1.0], [0.5, 0.5]])
    y, _ = F.linear(x, w, np.array([0.0, 1.0, -1.0]))
    np.testing.assert_array_equal(y, [[1.0, 2.0, 0.5]])


@pytest.mark.parametrize("start_dim", [1, 2])
def test_flatten_backward_matches_finite_differences(start_dim, float64):
    x = np.random.default_rng(0).standard_normal((2, 3, 4, 5))
    check_op(lambda x: F.flatten(x, start_dim), F.flatten_backward, [x])


def test_flatten_keeps_the_batch_axis_and_row_major_order():
    x = np.arange(24.0).reshape(2, 3, 2, 2)
    y, cache = F.flatten(x)
    assert y.shape == (2, 12)
    np.testing.assert_array_equal(y[1], np.arange(12.0, 24.0))
    assert F.flatten_backward(y, cache).shape == x.shape
