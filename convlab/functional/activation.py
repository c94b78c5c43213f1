"""Pointwise nonlinearities: ReLU, leaky ReLU, sigmoid, tanh, and their backward passes."""

from __future__ import annotations

import numpy as np

from .. import kernels
from ..backend import get_array_module
from ..parallel import elementwise


def _zeros(n, dtype):
    """A shared read-only zero vector of at least n elements: NumPy's maximum against an array
    is about 3× faster than against the scalar 0."""
    z = _ZEROS.get(dtype)
    if z is None or z.size < n:
        z = np.zeros(max(n, 1 << 16), dtype=dtype)
        z.flags.writeable = False  # shared by every caller and thread
        _ZEROS[dtype] = z
    return z[:n]


_ZEROS = {}


def relu_inplace(a):
    """a = max(a, 0), in place: the pass of a ReLU fused into the layer before it. On the CPU
    against a zero array (see _zeros): in NumPy 2.4, 65 µs for 131K float32 values against the
    scalar 0, 18 µs against zeros."""
    xp = get_array_module(a)
    if xp is np and a.flags.c_contiguous:
        np.maximum(a, _zeros(a.size, a.dtype).reshape(a.shape), out=a)
    else:
        xp.maximum(a, 0, out=a)
    return a


def relu(x):
    if kernels.accepts(x):
        return kernels.relu(x)
    xp = get_array_module(x)
    y = xp.empty_like(x)  # same memory layout as x (channels-last stays channels-last)
    if not (xp is np and elementwise(lambda o, a: np.maximum(a, _zeros(a.size, a.dtype), out=o), y, x)):
        y = xp.maximum(x, 0)
    return y, y


def relu_backward(dy, cache):
    if kernels.accepts(dy, cache):
        return kernels.relu_backward(dy, cache)
    xp = get_array_module(dy)
    dx = xp.empty_like(cache)
    if xp is np and elementwise(lambda o, g, y: np.multiply(g, y > 0, out=o), dx, dy, cache):
        return dx
    return dy * (cache > 0)


def add(a, b):
    """a + b on convlab's threads when both share one dense layout (residual sums, gradient sums)."""
    xp = get_array_module(a)
    out = xp.empty_like(a)
    if xp is np and elementwise(lambda o, u, v: np.add(u, v, out=o), out, a, b):
        return out
    return a + b


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
