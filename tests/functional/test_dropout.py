"""Inverted dropout: a fixed mask under a fixed seed, its gradient, and its statistics."""

import numpy as np
import pytest

from convlab import backend
from convlab import functional as F
from tests.gradcheck import check_op


@pytest.mark.parametrize("p", [0.2, 0.5, 0.9])
def test_dropout_backward_matches_finite_differences_with_a_fixed_mask(p, float64):
    x = np.random.default_rng(0).standard_normal((3, 4, 5))

    def forward(x):
        backend.manual_seed(7)  # the same mask on every call
        return F.dropout(x, p, training=True)

    check_op(forward, F.dropout_backward, [x])


def test_dropout_zeroes_about_p_and_scales_survivors_by_one_over_one_minus_p():
    x = np.ones((200, 500), dtype=np.float32)
    y, mask = F.dropout(x, 0.3, training=True)
    dropped = np.mean(y == 0)
    assert abs(dropped - 0.3) < 0.01
    np.testing.assert_allclose(y[y != 0], 1 / 0.7, rtol=1e-6)
    np.testing.assert_array_equal(F.dropout_backward(np.ones_like(x), mask), y)


def test_dropout_is_the_identity_in_eval_and_at_p_zero():
    x = np.random.default_rng(0).standard_normal((4, 6))
    for y, cache in (F.dropout(x, 0.5, training=False), F.dropout(x, 0.0, training=True)):
        np.testing.assert_array_equal(y, x)
        np.testing.assert_array_equal(F.dropout_backward(x, cache), x)


def test_dropout_p_one_drops_everything():
    x = np.ones((3, 3))
    y, cache = F.dropout(x, 1.0)
    np.testing.assert_array_equal(y, 0)
    np.testing.assert_array_equal(F.dropout_backward(x, cache), 0)


def test_dropout_mask_is_reproducible_under_manual_seed():
    x = np.ones((10, 10), dtype=np.float32)
    backend.manual_seed(123)
    a, _ = F.dropout(x, 0.5)
    backend.manual_seed(123)
    b, _ = F.dropout(x, 0.5)
    c, _ = F.dropout(x, 0.5)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(b, c)
