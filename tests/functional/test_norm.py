"""Batch normalisation: gradients through the batch statistics, eval mode, and running statistics."""

import numpy as np
import pytest

from convlab import functional as F
from tests.gradcheck import check_op

SHAPES = {"(N, C)": (5, 3), "(N, C, H, W)": (2, 3, 4, 5), "batch 1, 7x9 maps": (1, 2, 7, 9)}


@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("shape_name", SHAPES)
def test_batch_norm_training_backward_differentiates_through_batch_statistics(shape_name, affine, float64):
    shape = SHAPES[shape_name]
    rng = np.random.default_rng(3)
    c = shape[1]
    x = rng.standard_normal(shape) * 2.0 + 0.5
    inputs = [x] + ([rng.uniform(0.5, 1.5, c), rng.standard_normal(c)] if affine else [])

    def forward(x, weight=None, bias=None):
        return F.batch_norm(x, weight, bias, None, None, training=True, eps=1e-5)

    def backward(dy, cache):
        dx, dw, db = F.batch_norm_backward(dy, cache)
        return (dx, dw, db) if affine else (dx,)

    check_op(forward, backward, inputs)


@pytest.mark.parametrize("shape_name", SHAPES)
def test_batch_norm_eval_backward_uses_fixed_statistics(shape_name, float64):
    shape = SHAPES[shape_name]
    rng = np.random.default_rng(4)
    c = shape[1]
    running_mean, running_var = rng.standard_normal(c), rng.uniform(0.5, 2.0, c)
    inputs = [rng.standard_normal(shape), rng.uniform(0.5, 1.5, c), rng.standard_normal(c)]

    def forward(x, weight, bias):
        return F.batch_norm(x, weight, bias, running_mean, running_var, training=False)

    check_op(forward, F.batch_norm_backward, inputs)


def test_batch_norm_training_output_has_zero_mean_unit_variance_per_channel():
    x = np.random.default_rng(0).standard_normal((8, 3, 4, 4)) * 5 + 2
    y, _ = F.batch_norm(x, None, None, None, None, training=True, eps=0.0)
    np.testing.assert_allclose(y.mean(axis=(0, 2, 3)), 0.0, atol=1e-12)
    np.testing.assert_allclose(y.var(axis=(0, 2, 3)), 1.0, rtol=1e-12)


@pytest.mark.parametrize("threads", [1, 2])
def test_batch_norm_float32_statistics_survive_a_mean_far_above_the_spread(threads, monkeypatch):
    """Mean 10⁴, spread 1: E[x²] − E[x]² in float32 would lose every digit. The variance must hold
    to float32 precision against the float64 variance of the same values, chunked or not."""
    from convlab import parallel
    from convlab.functional import norm
    parallel_threads = parallel.num_threads()
    try:
        parallel.set_num_threads(threads)
        monkeypatch.setattr(parallel, "_MIN_PARALLEL_BYTES", 0)
        monkeypatch.setattr(norm, "_row_grain", lambda m, c: max(1, m // 7))  # uneven chunks
        rng = np.random.default_rng(0)
        x = (1e4 + rng.standard_normal((16, 3, 8, 8)) * np.array([1.0, 0.1, 3.0])[:, None, None]).astype(np.float32)
        running_mean, running_var = np.zeros(3, np.float32), np.zeros(3, np.float32)
        F.batch_norm(x, None, None, running_mean, running_var, training=True, momentum=1.0)
        x64 = x.astype(np.float64)
        m = x.size // 3
        np.testing.assert_allclose(running_mean, x64.mean(axis=(0, 2, 3)), rtol=1e-6)
        np.testing.assert_allclose(running_var, x64.var(axis=(0, 2, 3)) * m / (m - 1), rtol=1e-3)
    finally:
        parallel.set_num_threads(parallel_threads)


def test_batch_norm_updates_running_statistics_with_unbiased_variance():
    x = np.random.default_rng(0).standard_normal((4, 2, 3, 3))
    running_mean, running_var = np.zeros(2), np.ones(2)
    F.batch_norm(x, None, None, running_mean, running_var, training=True, momentum=0.25)
    m = 4 * 3 * 3
    np.testing.assert_allclose(running_mean, 0.25 * x.mean(axis=(0, 2, 3)), rtol=1e-12)
    np.testing.assert_allclose(running_var, 0.75 + 0.25 * x.var(axis=(0, 2, 3)) * m / (m - 1), rtol=1e-12)


def test_batch_norm_training_needs_more_than_one_value_per_channel():
    with pytest.raises(ValueError, match=r"batch_norm: training needs more than one value per channel, "
                                         r"got input shape \(1, 4\)"):
        F.batch_norm(np.ones((1, 4)), None, None, None, None, training=True)
