"""Batch normalisation per channel over (N,) or (N, H, W), training and eval modes.

Feature maps are handled as a (rows, C) matrix: conv outputs are channels-last in memory, so
that view is free, and every per-channel statistic is a reduction down contiguous columns.
"""

from __future__ import annotations

from .. import kernels
from ..backend import get_array_module
from .linear import column_sum


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


def batch_norm(x, weight, bias, running_mean, running_var, training=True, momentum=0.1, eps=1e-5,
               num_batches_tracked=0):
    """Normalise x per channel; in training, update the running statistics in place.

    momentum=None uses a cumulative average (PyTorch's convention), which needs
    `num_batches_tracked` (already incremented for this batch). Returns (y, cache).
    """
    if kernels.accepts(x):
        return kernels.batch_norm(x, weight, bias, running_mean, running_var, training, momentum, eps,
                                  num_batches_tracked)
    xp = get_array_module(x)
    xr, back = _rows(x)
    m = xr.shape[0]
    if training:
        if m < 2:
            raise ValueError(
                f"batch_norm: training needs more than one value per channel, got input shape {x.shape}"
            )
        mean = column_sum(xr) / m
        xc = xr - mean  # (M, C)
        var = xp.einsum("mc,mc->c", xc, xc) / m
        if running_mean is not None:
            f = (1.0 / max(num_batches_tracked, 1)) if momentum is None else momentum
            running_mean *= 1 - f
            running_mean += f * mean.astype(running_mean.dtype, copy=False)
            running_var *= 1 - f
            running_var += f * (var * (m / (m - 1))).astype(running_var.dtype, copy=False)
    else:
        mean, var = running_mean, running_var
        xc = xr - mean
    inv_std = (1.0 / xp.sqrt(var + eps)).astype(x.dtype, copy=False)
    xhat = xc
    xhat *= inv_std  # in place: xc is ours
    if weight is None:
        y = xhat.copy() if bias is not None else xhat
    else:
        y = xhat * weight
    if bias is not None:
        y += bias
    return back(y), (xhat, inv_std, weight, training, bias is not None)


def batch_norm_backward(dy, cache):
    """Gradients (dx, dweight, dbias); in training the batch statistics are differentiated too."""
    if kernels.owns(cache):
        return kernels.batch_norm_backward(dy, cache)
    xhat, inv_std, weight, training, has_bias = cache
    xp = get_array_module(dy)
    dyr, back = _rows(dy)
    m = dyr.shape[0]
    sum_dy = column_sum(dyr)
    sum_dy_xhat = xp.einsum("mc,mc->c", dyr, xhat)
    dbias = sum_dy if has_bias else None
    dweight = sum_dy_xhat if weight is not None else None
    scale = inv_std if weight is None else inv_std * weight  # (C,)
    if not training:
        return back(dyr * scale), dweight, dbias
    # dx = scale · (dy − mean(dy) − x̂ · mean(dy · x̂)), as two fused passes over (M, C)
    dx = xhat * (-sum_dy_xhat / m * scale)
    dx += dyr * scale
    dx -= sum_dy / m * scale
    return back(dx), dweight, dbias
