"""Pointwise nonlinearities: ReLU, leaky ReLU, sigmoid, tanh, and their backward passes."""

from __future__ import annotations

from .. import kernels
from ..backend import get_array_module


def relu(x):
    if kernels.accepts(x):
        return kernels.relu(x)
    xp = get_array_module(x)
    y = xp.maximum(x, 0)
    return y, y


def relu_backward(dy, cache):
    if kernels.accepts(dy, cache):
        return kernels.relu_backward(dy, cache)
    return dy * (cache > 0)


def leaky_relu(x, negative_slope=0.01):
    xp = get_array_module(x)
    mask = x > 0
    y = xp.where(mask, x, x * negative_slope).astype(x.dtype, copy=False)
    return y, (mask, negative_slope)


def leaky_relu_backward(dy, cache):
    xp = get_array_module(dy)
    mask, slope = cache
    return xp.where(mask, dy, dy * slope).astype(dy.dtype, copy=False)


def sigmoid(x):
    xp = get_array_module(x)
    # Stable for large |x|: exp of a non-positive number only.
    e = xp.exp(-xp.abs(x))
    y = xp.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype, copy=False)
    return y, y


def sigmoid_backward(dy, cache):
    y = cache
    return dy * y * (1 - y)


def tanh(x):
    xp = get_array_module(x)
    y = xp.tanh(x)
    return y, y


def tanh_backward(dy, cache):
    y = cache
    return dy * (1 - y * y)
