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


# -- thin products in row blocks (the weight gradients and first-layer GEMMs of conv2d) --------
def test_block_rows_applies_only_to_thin_products():
    from convlab.functional.linear import _block_rows

    assert _block_rows(25, 6) == 1024  # LeNet's first layer: blocks of about 32K values
    assert _block_rows(27, 64) == 256
    assert _block_rows(128, 128) is None  # a square-ish product goes to BLAS whole


@pytest.mark.parametrize("k, m, o", [(25, 5000, 6), (27, 2048, 64), (25, 2047, 6), (128, 3000, 64), (3, 40, 2)])
def test_reduce_matmul_equals_the_plain_product(k, m, o):
    from convlab.functional.linear import reduce_matmul

    rng = np.random.default_rng(k + m + o)
    cols = rng.standard_normal((m, k))  # as conv2d passes it: a transposed view
    dy = rng.standard_normal((m, o))
    got = reduce_matmul(cols.T, dy)
    assert got.shape == (k, o)
    np.testing.assert_allclose(got, cols.T @ dy, rtol=1e-12, atol=1e-12 * np.sqrt(m))


@pytest.mark.parametrize("m, k, o", [(5000, 25, 6), (3000, 27, 64), (2047, 25, 6), (3000, 128, 64), (40, 3, 2)])
def test_tall_matmul_writes_the_plain_product(m, k, o):
    from convlab.functional.linear import tall_matmul

    rng = np.random.default_rng(m + k + o)
    a = rng.standard_normal((k, m)).T  # a transposed view, as the planar columns are
    b = rng.standard_normal((k, o))
    out = np.full((m, o), np.nan)
    assert tall_matmul(a, b, out) is out
    np.testing.assert_allclose(out, a @ b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("bias", [True, False])
def test_large_linear_backward_runs_both_products_at_once_and_equals_one_thread(bias, monkeypatch):
    """Above _BOTH_AT_ONCE_MACS, dx and (dw, db) run as two tasks of one parallel region: the
    same BLAS calls, so with two threads the gradients equal one thread's bit for bit, and match
    the plain products."""
    import importlib

    from convlab import parallel

    linear = importlib.import_module("convlab.functional.linear")
    saved = parallel.num_threads()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((128, 400)).astype(np.float32)
    w = rng.standard_normal((120, 400)).astype(np.float32)
    b = rng.standard_normal(120).astype(np.float32) if bias else None
    dy = rng.standard_normal((128, 120)).astype(np.float32)
    assert dy.shape[0] * w.size >= linear._BOTH_AT_ONCE_MACS
    _, cache = F.linear(x, w, b)
    regions = []
    real = linear.parallel_for

    def watched(n, grain, body):
        regions.append((n, grain))
        return real(n, grain, body)

    monkeypatch.setattr(linear, "parallel_for", watched)
    try:
        parallel.set_num_threads(1)
        one = F.linear_backward(dy, cache)
        assert regions == []
        parallel.set_num_threads(2)
        two = F.linear_backward(dy, cache)
        assert regions == [(2, 1)]
    finally:
        parallel.set_num_threads(saved)
    for got, want in zip(two, one):
        if want is None:
            assert got is None
        else:
            np.testing.assert_array_equal(got, want)
    np.testing.assert_allclose(two[0], dy @ w, rtol=1e-5)
    np.testing.assert_allclose(two[1], dy.T @ x, rtol=1e-5)
    if bias:
        np.testing.assert_allclose(two[2], dy.sum(axis=0), rtol=1e-4, atol=1e-4)
