"""Layout-preserving pointwise operations: ReLU forward/backward and the residual sum.

CuPy's elementwise operations allocate C-contiguous results, which would turn a convolution's
channels-last output into NCHW and make the next layer read across strides. These keep the
layout of the activation they follow, and fuse ReLU's backward into one pass.
"""

from __future__ import annotations

import functools

RELU_BACKWARD_OPERATION = "dx = dy * (T)(y > (T)0)"


@functools.cache
def _relu_backward_kernel():
    import cupy

    return cupy.ElementwiseKernel("T dy, T y", "T dx", RELU_BACKWARD_OPERATION, "convlab_relu_backward")


def relu(x):
    """max(x, 0) in x's layout: the twin of `functional.relu`; returns (y, cache = y)."""
    import cupy

    y = cupy.empty_like(x)
    cupy.maximum(x, 0, out=y)
    return y, y


def relu_backward(dy, cache):
    """dy · [y > 0] in one pass, laid out like y: the twin of `functional.relu_backward`."""
    import cupy

    dx = cupy.empty_like(cache)
    _relu_backward_kernel()(dy, cache, dx)
    return dx


def add(a, b):
    """a + b (same shape) laid out like `a`."""
    import cupy

    out = cupy.empty_like(a)
    cupy.add(a, b, out=out)
    return out
