"""CuPy-only fast paths for the hot operations, each the twin of a `functional` (or `optim`) operation.

Every function here takes CuPy arrays and has the signature and semantics of its reference, which
the tests compare it with: `conv2d`/`conv2d_backward`,
`im2col`/`col2im`, `max_pool2d`/`max_pool2d_backward`, `batch_norm`/`batch_norm_backward`,
`softmax_cross_entropy`/`softmax_cross_entropy_backward`, `relu`/`relu_backward`; plus fused
optimiser steps (`sgd_step_`, `adam_step_`), `zero_`, `crop_flip` (augmentation) and per-channel
sums. A forward dispatches on `accepts(x)`; its cache is the kernel's own (a `KernelCache`), so the
backward dispatches on `owns(cache)`. Importing this package never imports CuPy.
"""

from __future__ import annotations

import numpy as np

from .activation import add, relu, relu_backward
from .augment import crop_flip
from .blas import matmul
from .build import KernelCache
from .conv import col2im, conv2d, conv2d_backward, im2col
from .loss import softmax_cross_entropy, softmax_cross_entropy_backward
from .norm import batch_norm, batch_norm_backward
from .optim import adam_step_, sgd_step_, zero_
from .pool import max_pool2d, max_pool2d_backward
from .reduce import channel_sums

_FAST_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
_state = {"enabled": True}


def accepts(*arrays) -> bool:
    """True when the fast paths should handle these arrays: all CuPy, float32 or float64, and the
    kernels not switched off with `enable(False)`."""
    if not _state["enabled"]:
        return False
    for a in arrays:
        if type(a) is np.ndarray:  # the common CPU case, answered before any string work
            return False
        if type(a).__module__.split(".")[0] != "cupy" or a.dtype not in _FAST_DTYPES:
            return False
    return True


def owns(cache) -> bool:
    """True when `cache` came from a fast-path forward, so the fast-path backward must read it."""
    return isinstance(cache, KernelCache)


def enable(on: bool = True) -> None:
    """Switch the fast paths on or off (off: the `functional` code runs on CuPy arrays instead)."""
    _state["enabled"] = bool(on)


def enabled() -> bool:
    return _state["enabled"]


def set_tf32(on: bool) -> None:
    """Let float32 matrix products (convolution and dense GEMMs) use TF32 tensor cores (10-bit
    mantissa inputs, float32 accumulation): several times the GEMM rate on Ampere and later, at
    about 1e-3 relative error. PyTorch allows TF32 for cuDNN convolutions by default."""
    import cupy._core._routines_linalg as linalg

    linalg.set_compute_type(np.float32, linalg.COMPUTE_TYPE_TF32 if on else linalg.COMPUTE_TYPE_DEFAULT)


def tf32_enabled() -> bool:
    import cupy._core._routines_linalg as linalg

    return linalg.get_compute_type(np.float32) == linalg.COMPUTE_TYPE_TF32


__all__ = [
    "accepts", "owns", "KernelCache", "enable", "enabled", "set_tf32", "tf32_enabled",
    "conv2d", "conv2d_backward", "im2col", "col2im",
    "max_pool2d", "max_pool2d_backward",
    "batch_norm", "batch_norm_backward",
    "softmax_cross_entropy", "softmax_cross_entropy_backward",
    "relu", "relu_backward", "add", "matmul",
    "sgd_step_", "adam_step_", "zero_", "crop_flip", "channel_sums",
]
