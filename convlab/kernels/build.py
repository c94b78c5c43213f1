"""Compile the fast paths' CUDA sources with CuPy (NVRTC), once per source and dtype, and launch them.

Each kernel module keeps its CUDA source as a module-level string and registers it here under a
name with the kernels it defines, so tests can compile every source with nvcc on a machine
without a GPU. A source is written against `real_t` (float or double), which the preamble
defines; reductions accumulate in double whatever `real_t` is.
"""

from __future__ import annotations

import functools

import numpy as np

REAL_TYPES = {np.dtype(np.float32): "float", np.dtype(np.float64): "double"}

# name -> (CUDA source, names of its __global__ functions)
SOURCES: dict[str, tuple[str, tuple[str, ...]]] = {}

THREADS = 256


class KernelCache(tuple):
    """The cache a fast-path forward returns: a tuple that says which backward must read it."""


def register(name: str, source: str, kernels) -> str:
    """Record a CUDA source (for the compile tests) and return it unchanged."""
    SOURCES[name] = (source, tuple(kernels))
    return source


def preamble(real: str) -> str:
    """The lines put before every source: the element type and a portable -inf."""
    return (
        f"typedef {real} real_t;\n"
        "#define REAL_NEG_INF (-(real_t)__int_as_float(0x7f800000))\n"
    )


def real_type(dtype) -> str:
    real = REAL_TYPES.get(np.dtype(dtype))
    if real is None:
        raise TypeError(
            f"convlab.kernels: the CUDA fast paths take float32 or float64 arrays, got {np.dtype(dtype)}"
        )
    return real


@functools.cache
def _module(name: str, real: str, device_id: int):
    import cupy

    source, _ = SOURCES[name]
    return cupy.RawModule(code=preamble(real) + source)


def kernel(name: str, function: str, dtype):
    """The compiled `function` of source `name` for arrays of `dtype`, on the current device."""
    import cupy

    return _module(name, real_type(dtype), cupy.cuda.Device().id).get_function(function)


def blocks_for(total: int, threads: int = THREADS, cap: int = 65535 * 8) -> int:
    """Blocks for a grid-stride loop over `total` items (at least one, at most `cap`)."""
    return max(1, min(cap, -(-int(total) // threads)))


def i32(v) -> np.int32:
    return np.int32(v)


def i64(v) -> np.int64:
    return np.int64(v)


def f64(v) -> np.float64:
    return np.float64(v)
