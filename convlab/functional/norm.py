"""Batch normalisation over (N,) or (N, H, W) per channel, training and eval modes."""

from __future__ import annotations

from ..backend import get_array_module


def _axes(x):
    return (0,) if x.ndim == 2 else (0, 2, 3)


def _per_channel(v, ndim):
    return v if ndim == 2 else v[:, None, None]


def batch_norm(x, weight, bias, running_mean, running_var, training=True, momentum=0.1, eps=1e-5,
               num_batches_tracked=0):
    """Normalise x per channel; in training, update the running statistics in place.

    momentum=None uses a cumulative average (PyTorch's convention), which needs
    `num_batches_tracked` (already incremented for this batch). Returns (y, cache).
    """
    xp = get_array_module(x)
    axes = _axes(x)
    if training:
        m = x.size // x.shape[1]
        if m < 2:
            raise ValueError(
                f"batch_norm: training needs more than one value per channel, got input shape {x.shape}"
            )
        mean = x.mean(axis=axes)
        xc = x - _per_channel(mean, x.ndim)
        var = (xc * xc).mean(axis=axes)
        if running_mean is not None:
            f = (1.0 / max(num_batches_tracked, 1)) if momentum is None else momentum
            running_mean *= 1 - f
            running_mean += f * mean.astype(running_mean.dtype, copy=False)
            running_var *= 1 - f
            running_var += f * (var * (m / (m - 1))).astype(running_var.dtype, copy=False)
    else:
        mean, var = running_mean, running_var
        xc = x - _per_channel(mean, x.ndim)
    inv_std = (1.0 / xp.sqrt(var + eps)).astype(x.dtype, copy=False)
    xhat = xc * _per_channel(inv_std, x.ndim)
    y = xhat if weight is None else xhat * _per_channel(weight, x.ndim)
    if bias is not None:
        y = y + _per_channel(bias, x.ndim)
    return y, (xhat, inv_std, weight, training, bias is not None)


def batch_norm_backward(dy, cache):
    """Gradients (dx, dweight, dbias); in training the batch statistics are differentiated too."""
    xhat, inv_std, weight, training, has_bias = cache
    axes = _axes(dy)
    nd = dy.ndim
    dbias = dy.sum(axis=axes) if has_bias else None
    dweight = (dy * xhat).sum(axis=axes) if weight is not None else None
    scale = inv_std if weight is None else inv_std * weight  # (C,)
    if not training:
        return dy * _per_channel(scale, nd), dweight, dbias
    m = dy.size // dy.shape[1]
    sum_dy = dbias if has_bias else dy.sum(axis=axes)
    sum_dy_xhat = dweight if weight is not None else (dy * xhat).sum(axis=axes)
    dx = (dy - _per_channel(sum_dy / m, nd) - xhat * _per_channel(sum_dy_xhat / m, nd)) * _per_channel(scale, nd)
    return dx, dweight, dbias
