"""Pointwise nonlinearities: values and finite-difference gradients."""

import numpy as np
import pytest

from convlab import functional as F
from tests.gradcheck import check_op


def away_from_zero(shape, seed):
    """Random values at least 0.05 from the kink at zero."""
    x = np.random.default_rng(seed).standard_normal(shape)
    return np.where(x >= 0, x + 0.05, x - 0.05)


@pytest.mark.parametrize("shape", [(3, 4), (2, 3, 7, 9), (1, 1, 1, 5)])
def test_relu_backward_matches_finite_differences(shape, float64):
    check_op(F.relu, F.relu_backward, [away_from_zero(shape, 0)])


@pytest.mark.parametrize("slope", [0.01, 0.2, 1.5])
def test_leaky_relu_backward_matches_finite_differences(slope, float64):
    check_op(lambda x: F.leaky_relu(x, slope), F.leaky_relu_backward, [away_from_zero((2, 3, 4, 5), 1)])


@pytest.mark.parametrize("op", ["sigmoid", "tanh"])
def test_smooth_activation_backward_matches_finite_differences(op, float64):
    x = np.random.default_rng(2).standard_normal((2, 3, 5, 4)) * 3
    check_op(getattr(F, op), getattr(F, f"{op}_backward"), [x])


def test_relu_zeroes_negatives_and_keeps_positives():
    y, _ = F.relu(np.array([-2.0, -0.0, 0.5, 3.0]))
    np.testing.assert_array_equal(y, [0.0, 0.0, 0.5, 3.0])


def test_leaky_relu_scales_negatives_by_the_slope():
    y, _ = F.leaky_relu(np.array([-2.0, 4.0]), 0.1)
    np.testing.assert_allclose(y, [-0.2, 4.0])


def test_sigmoid_is_finite_and_saturates_for_huge_inputs():
    x = np.array([-1000.0, -50.0, 0.0, 50.0, 1000.0], dtype=np.float32)
    with np.errstate(over="raise"):
        y, _ = F.sigmoid(x)
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, [0.0, 1.0 / (1.0 + np.exp(50.0)), 0.5, 1.0, 1.0], atol=1e-30, rtol=1e-6)


def test_activations_keep_float32():
    x = np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32)
    for op in (F.relu, F.sigmoid, F.tanh, F.leaky_relu):
        y, cache = op(x)
        assert y.dtype == np.float32, op.__name__
        assert getattr(F, f"{op.__name__}_backward")(np.ones_like(y), cache).dtype == np.float32, op.__name__
