"""Batch normalisation per channel over (N,) or (N, H, W), training and eval modes.

Feature maps are handled as a (rows, C) matrix: conv outputs are channels-last in memory, so
that view is free, and every per-channel statistic is a reduction down contiguous columns.
"""

from __future__ import annotations

from .. import kernels
from ..backend import get_array_module
from ..parallel import Sums, grain_for, parallel_for
from .activation import relu_inplace
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


class _Wide:
    """Rows of few channels seen r at a time, (M/r, r·C): NumPy broadcasts a per-channel vector
    over short rows slowly (C=16 runs at half speed), so vectors are tiled r times and column
    sums folded back to C."""

    def __init__(self, xp, m, c):
        self.xp, self.c, self.r = xp, c, 1
        while self.r * c < 256 and m % (2 * self.r) == 0:
            self.r *= 2

    def rows(self, a):
        return a.reshape(-1, self.r * self.c)

    def tile(self, v):
        return v if self.r == 1 else self.xp.tile(v, self.r)

    def fold(self, v):
        return v if v is None or self.r == 1 else v.reshape(self.r, self.c).sum(axis=0)


def batch_norm(x, weight, bias, running_mean, running_var, training=True, momentum=0.1, eps=1e-5,
               num_batches_tracked=0, relu=False):
    """Normalise x per channel; in training, update the running statistics in place.

    momentum=None uses a cumulative average (PyTorch's convention), which needs
    `num_batches_tracked` (already incremented for this batch). Returns (y, cache).
    Rows are processed in chunks on convlab's threads. Training takes one pass for the means and
    one for the variances (two-pass, as exact as the whole-array formula); then, in both modes,
    y = x·a + b per channel with a = weight/σ and b = bias − mean·a, as PyTorch's CPU kernel does.
    The cache keeps x (a view, like conv2d's), not x̂: backward rebuilds x − mean chunk by chunk.
    relu=True returns max(y, 0) from the same pass (a ReLU fused in); pass that y as `relu_out`
    to batch_norm_backward.
    """
    if kernels.accepts(x):
        return kernels.batch_norm(x, weight, bias, running_mean, running_var, training, momentum, eps,
                                  num_batches_tracked, relu=relu)
    xp = get_array_module(x)
    xr, back = _rows(x)
    m, c = xr.shape
    wide = _Wide(xp, m, c)
    xw = wide.rows(xr)
    mw, cw = xw.shape
    grain = _row_grain(mw, cw)
    if training:
        if m < 2:
            raise ValueError(
                f"batch_norm: training needs more than one value per channel, got input shape {x.shape}"
            )
        sums = Sums()
        parallel_for(mw, grain, lambda s, e, t: sums.add(t, column_sum(xw[s:e])), xp)
        mean = wide.fold(sums.total()[0]) / m
        mean_w = wide.tile(mean)
        sums = Sums()

        def square_dev(s, e, t):
            d = scratch(xp, (e - s, cw), x.dtype, "bn")
            xp.subtract(xw[s:e], mean_w, out=d)
            sums.add(t, xp.einsum("mc,mc->c", d, d))

        parallel_for(mw, grain, square_dev, xp)
        var = wide.fold(sums.total()[0]) / m
        if running_mean is not None:
            f = (1.0 / max(num_batches_tracked, 1)) if momentum is None else momentum
            running_mean *= 1 - f
            running_mean += f * mean.astype(running_mean.dtype, copy=False)
            running_var *= 1 - f
            running_var += f * (var * (m / (m - 1))).astype(running_var.dtype, copy=False)
    else:
        mean, var = running_mean, running_var
    mean = mean.astype(x.dtype, copy=False)
    inv_std = (1.0 / xp.sqrt(var + eps)).astype(x.dtype, copy=False)
    a = inv_std if weight is None else inv_std * weight
    b = -mean * a
    if bias is not None:
        b += bias
    a_w, b_w = wide.tile(a), wide.tile(b)
    y = xp.empty((mw, cw), dtype=x.dtype)

    def affine(s, e, t):
        xp.multiply(xw[s:e], a_w, out=y[s:e])
        y[s:e] += b_w
        if relu:
            relu_inplace(y[s:e])

    parallel_for(mw, grain, affine, xp)
    return back(y.reshape(m, c)), (xr, mean, inv_std, weight, training, bias is not None)


def batch_norm_backward(dy, cache, relu_out=None):
    """Gradients (dx, dweight, dbias); in training the batch statistics are differentiated too.

    relu_out is the y of a batch_norm(relu=True): dy is then the gradient at the ReLU's output,
    masked by y > 0 in each chunk as it is read.
    """
    if kernels.owns(cache):
        if relu_out is not None:
            dy = kernels.relu_backward(dy, relu_out)
        return kernels.batch_norm_backward(dy, cache)
    xr, mean, inv_std, weight, training, has_bias = cache
    xp = get_array_module(dy)
    dyr, back = _rows(dy)
    m, c = dyr.shape
    wide = _Wide(xp, m, c)
    dyw, xw, mean_w = wide.rows(dyr), wide.rows(xr), wide.tile(mean)
    yw = None if relu_out is None else wide.rows(_rows(relu_out)[0])
    mw, cw = dyw.shape
    grain = _row_grain(mw, cw)
    need_dev = training or weight is not None  # Σ dy·(x − mean), for the batch statistics or dweight
    sums = Sums()

    dx = xp.empty((mw, cw), dtype=dy.dtype)

    def reduce(s, e, t):
        # dy through the fused ReLU, if any: masked once, into dx's rows, which grad reads first
        g = dyw[s:e] if yw is None else xp.multiply(dyw[s:e], yw[s:e] > 0, out=dx[s:e])
        if not need_dev:
            sums.add(t, column_sum(g), None)
            return
        d = scratch(xp, (e - s, cw), dy.dtype, "bn")
        xp.subtract(xw[s:e], mean_w, out=d)
        d *= g
        sums.add(t, column_sum(g), column_sum(d))  # BLAS sums: partial sums, less rounding than einsum

    parallel_for(mw, grain, reduce, xp)
    sum_dy, sum_dy_dev = (wide.fold(v) for v in sums.total())
    sum_dy_xhat = None if sum_dy_dev is None else sum_dy_dev * inv_std  # Σ dy·x̂
    dbias = sum_dy if has_bias else None
    dweight = sum_dy_xhat if weight is not None else None
    scale = inv_std if weight is None else inv_std * weight  # (C,)
    scale_w = wide.tile(scale)
    if training:
        # dx = scale·(dy − mean(dy) − x̂·mean(dy·x̂)) = dy·scale + (x − mean)·k_x − k_0; x − mean is
        # formed first: folding mean·k_x into k_0 would cancel badly when |mean| ≫ σ
        k_x = wide.tile(-sum_dy_xhat / m * scale * inv_std)
        k_0 = wide.tile(sum_dy / m * scale)

    def grad(s, e, t):
        out = dx[s:e]
        g = dyw[s:e] if yw is None else out  # the masked dy from the first pass
        if not training:  # the statistics are constants
            xp.multiply(g, scale_w, out=out)
            return
        d = scratch(xp, (e - s, cw), dy.dtype, "bn")
        xp.multiply(g, scale_w, out=d)  # before out is overwritten: g may live there
        xp.subtract(xw[s:e], mean_w, out=out)
        out *= k_x
        out += d
        out -= k_0

    parallel_for(mw, grain, grad, xp)
    return back(dx.reshape(m, c)), dweight, dbias
