"""Batch normalisation per channel over (N,) or (N, H, W), training and eval modes.

Feature maps are handled as a (rows, C) matrix: conv outputs are channels-last in memory, so
that view is free, and every per-channel statistic is a reduction down contiguous columns.
"""

from __future__ import annotations

from .. import kernels
from ..backend import get_array_module
from ..parallel import Sums, grain_for, parallel_for
from .linear import column_sum
from .workspace import scratch


def _rows(x):
    """(M, C) view of x (N, C) or (N, C, H, W) and a function mapping (M, C) back to x's shape."""
    if x.ndim == 2:
        return x, lambda r: r
    n, c, h, w = x.shape
    x_nhwc = x.transpose(0, 2, 3, 1)  # a view; contiguous when x is channels-last in memory
    xp = get_array_module(x)
    rows = x_nhwc.reshape(n * h * w, c) if x_nhwc.flags.c_contiguous else xp.ascontiguousarray(x_nhwc).reshape(
        n * h * w, c)
    return rows, lambda r: r.reshape(n, h, w, c).transpose(0, 3, 1, 2)


def _row_grain(m, c):
    return grain_for(m, 4 * 3 * c)


def batch_norm(x, weight, bias, running_mean, running_var, training=True, momentum=0.1, eps=1e-5,
               num_batches_tracked=0):
    """Normalise x per channel; in training, update the running statistics in place.

    momentum=None uses a cumulative average (PyTorch's convention), which needs
    `num_batches_tracked` (already incremented for this batch). Returns (y, cache).
    Rows are processed in chunks on convlab's threads: one pass for the means, one for the
    variances (two-pass, as exact as the whole-array formula) and one to normalise.
    """
    if kernels.accepts(x):
        return kernels.batch_norm(x, weight, bias, running_mean, running_var, training, momentum, eps,
                                  num_batches_tracked)
    xp = get_array_module(x)
    xr, back = _rows(x)
    m, c = xr.shape
    grain = _row_grain(m, c)
    if training:
        if m < 2:
            raise ValueError(
                f"batch_norm: training needs more than one value per channel, got input shape {x.shape}"
            )
        sums = Sums()
        parallel_for(m, grain, lambda s, e, t: sums.add(t, column_sum(xr[s:e])), xp)
        mean = sums.total()[0] / m
        sums = Sums()

        def square_dev(s, e, t):
            d = scratch(xp, (e - s, c), x.dtype, "bn")
            xp.subtract(xr[s:e], mean, out=d)
            sums.add(t, xp.einsum("mc,mc->c", d, d))

        parallel_for(m, grain, square_dev, xp)
        var = sums.total()[0] / m
        if running_mean is not None:
            f = (1.0 / max(num_batches_tracked, 1)) if momentum is None else momentum
            running_mean *= 1 - f
            running_mean += f * mean.astype(running_mean.dtype, copy=False)
            running_var *= 1 - f
            running_var += f * (var * (m / (m - 1))).astype(running_var.dtype, copy=False)
    else:
        mean, var = running_mean, running_var
    inv_std = (1.0 / xp.sqrt(var + eps)).astype(x.dtype, copy=False)
    mean = mean.astype(x.dtype, copy=False)
    xhat = xp.empty((m, c), dtype=x.dtype)
    y = xp.empty((m, c), dtype=x.dtype)

    def normalise(s, e, t):
        xh = xhat[s:e]
        xp.subtract(xr[s:e], mean, out=xh)
        xh *= inv_std
        if weight is None:
            y[s:e] = xh
        else:
            xp.multiply(xh, weight, out=y[s:e])
        if bias is not None:
            y[s:e] += bias

    parallel_for(m, grain, normalise, xp)
    return back(y), (xhat, inv_std, weight, training, bias is not None)


def batch_norm_backward(dy, cache):
    """Gradients (dx, dweight, dbias); in training the batch statistics are differentiated too."""
    if kernels.owns(cache):
        return kernels.batch_norm_backward(dy, cache)
    xhat, inv_std, weight, training, has_bias = cache
    xp = get_array_module(dy)
    dyr, back = _rows(dy)
    m, c = dyr.shape
    grain = _row_grain(m, c)
    sums = Sums()

    def reduce(s, e, t):
        d = scratch(xp, (e - s, c), dy.dtype, "bn")
        xp.multiply(dyr[s:e], xhat[s:e], out=d)
        sums.add(t, column_sum(dyr[s:e]), column_sum(d))

    parallel_for(m, grain, reduce, xp)
    sum_dy, sum_dy_xhat = sums.total()
    dbias = sum_dy if has_bias else None
    dweight = sum_dy_xhat if weight is not None else None
    scale = inv_std if weight is None else inv_std * weight  # (C,)
    dx = xp.empty((m, c), dtype=dy.dtype)
    # dx = scale · (dy − mean(dy) − x̂ · mean(dy · x̂)); in eval mode the statistics are constants
    k_xhat = -sum_dy_xhat / m * scale
    k_0 = sum_dy / m * scale

    def grad(s, e, t):
        out = dx[s:e]
        if not training:
            xp.multiply(dyr[s:e], scale, out=out)
            return
        d = scratch(xp, (e - s, c), dy.dtype, "bn")
        xp.multiply(xhat[s:e], k_xhat, out=out)
        xp.multiply(dyr[s:e], scale, out=d)
        out += d
        out -= k_0

    parallel_for(m, grain, grad, xp)
    return back(dx), dweight, dbias
