"""Softmax cross-entropy (with and without label smoothing), log-softmax and softmax."""

import numpy as np
import pytest

from convlab import functional as F
from tests.gradcheck import check_op


@pytest.mark.parametrize("label_smoothing", [0.0, 0.1, 0.4])
@pytest.mark.parametrize("n, k", [(5, 4), (1, 3), (8, 10)])
def test_softmax_cross_entropy_backward_matches_finite_differences(n, k, label_smoothing, float64):
    rng = np.random.default_rng(n * k)
    logits = rng.standard_normal((n, k)) * 2
    labels = rng.integers(0, k, n)
    check_op(lambda z: F.softmax_cross_entropy(z, labels, label_smoothing),
             lambda dloss, cache: F.softmax_cross_entropy_backward(cache, float(dloss)), [logits])


def test_cross_entropy_of_uniform_logits_is_log_k():
    loss, _ = F.softmax_cross_entropy(np.zeros((3, 7)), np.array([0, 3, 6]))
    assert np.isclose(loss, np.log(7), rtol=1e-12)


def test_label_smoothing_mixes_one_hot_with_uniform_target():
    rng = np.random.default_rng(0)
    logits, labels, eps = rng.standard_normal((4, 5)), np.array([1, 0, 4, 2]), 0.2
    target = np.full((4, 5), eps / 5)
    target[np.arange(4), labels] += 1 - eps
    logp = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    loss, _ = F.softmax_cross_entropy(logits, labels, eps)
    assert np.isclose(loss, -(target * logp).sum(axis=1).mean(), rtol=1e-12)


def test_cross_entropy_is_stable_for_huge_logits():
    logits = np.array([[1000.0, 0.0, -1000.0]], dtype=np.float32)
    with np.errstate(over="raise", invalid="raise"):
        loss, cache = F.softmax_cross_entropy(logits, np.array([0]))
        grad = F.softmax_cross_entropy_backward(cache)
    assert loss == 0.0
    assert np.all(np.isfinite(grad))


def test_softmax_rows_sum_to_one_and_log_softmax_is_its_log():
    z = np.random.default_rng(1).standard_normal((3, 6)) * 10
    np.testing.assert_allclose(F.softmax(z).sum(axis=1), 1.0, rtol=1e-12)
    np.testing.assert_allclose(np.exp(F.log_softmax(z)), F.softmax(z), rtol=1e-12)


def test_backward_scales_with_the_upstream_gradient():
    rng = np.random.default_rng(2)
    _, cache = F.softmax_cross_entropy(rng.standard_normal((4, 3)), np.array([0, 1, 2, 0]))
    np.testing.assert_allclose(F.softmax_cross_entropy_backward(cache, 2.5),
                               2.5 * F.softmax_cross_entropy_backward(cache), rtol=1e-12)
