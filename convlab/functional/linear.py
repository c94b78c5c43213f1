"""Fully connected (dense) layer y = x Wᵀ + b, and flatten."""

from __future__ import annotations

import functools

import numpy as np

from .. import kernels
from ..backend import get_array_module
from ..parallel import num_threads, parallel_for


def _mm(a, b):
    """a @ b; on the GPU through `kernels.matmul`, which a CUDA graph can record."""
    if kernels.accepts(a, b):
        return kernels.matmul(a, b)
    return a @ b


def column_sum(a):
    """Sum of a (M, C) matrix down its columns, as a BLAS matrix-vector product (several times
    faster than a strided reduction when C is small)."""
    xp = get_array_module(a)
    ones = _ones(a.shape[0], a.dtype) if xp is np else xp.ones(a.shape[0], dtype=a.dtype)
    return _mm(ones, a)


@functools.lru_cache(maxsize=64)
def _ones(n, dtype):
    """A read-only vector of n ones, made once: column sums run per chunk on every step."""
    v = np.ones(n, dtype=dtype)
    v.flags.writeable = False
    return v


_THIN = 4096


def _block_rows(k, o):
    """Rows per block of a thin product (K·O ≤ 4096; None otherwise): about 32K values of its
    operands, the best of 64 to 4096 measured on (25, 6), (27, 16) and (27, 64)."""
    if k * o > _THIN:
        return None
    kb = 64
    while kb * 2 * (k + o) <= 1 << 15:
        kb *= 2
    return kb


def reduce_matmul(a, b):
    """a (K, M) @ b (M, O) for a long reduction axis M, as a weight gradient sums over pixels.

    OpenBLAS runs such a product at a fraction of its speed when the result is small (a first
    layer's 25×6 or 27×64), and does not scale across threads: (25, 25088) @ (25088, 6) took
    2.3 ms on 2 threads, 0.5 ms in blocks. M then goes in blocks (`_block_rows`), one batched
    GEMM, and the blocks' products are summed.
    """
    k, m = a.shape
    o = b.shape[1]
    kb = _block_rows(k, o)
    if kb is None or m < 2 * kb:
        return a @ b
    xp = get_array_module(a)
    nb = m // kb
    cut = nb * kb
    out = xp.matmul(a[:, :cut].reshape(k, nb, kb).transpose(1, 0, 2), b[:cut].reshape(nb, kb, o)).sum(axis=0)
    if cut < m:
        out += a[:, cut:] @ b[cut:]
    return out


def tall_matmul(a, b, out):
    """out (M, O) = a (M, K) @ b (K, O) for many rows M and a thin b (K·O ≤ 4096), in blocks of
    rows: OpenBLAS does (25088, 25) @ (25, 6) in blocks about 1.8× faster on 2 threads."""
    m, k = a.shape
    o = b.shape[1]
    kb = _block_rows(k, o)
    xp = get_array_module(a)
    if kb is None or m < 2 * kb:
        return xp.matmul(a, b, out=out)
    cut = m // kb * kb
    xp.matmul(a[:cut].reshape(m // kb, kb, k), b, out=out[:cut].reshape(m // kb, kb, o))
    if cut < m:
        xp.matmul(a[cut:], b, out=out[cut:])
    return out


def linear(x, weight, bias=None):
    """x (N, in), weight (out, in), bias (out,) -> y (N, out)."""
    y = _mm(x, weight.T)
    if bias is not None:
        y += bias
    return y, (x, weight, bias is not None)


# Multiply-adds in each of the backward's two products above which they run at once, one per
# thread: each is one long BLAS call (BLAS itself runs single-threaded under convlab).
_BOTH_AT_ONCE_MACS = 1 << 22


def linear_backward(dy, cache):
    """Gradients (dx, dweight, dbias)."""
    x, weight, has_bias = cache
    if type(dy) is np.ndarray and dy.shape[0] * weight.size >= _BOTH_AT_ONCE_MACS and num_threads() > 1:
        out = {}

        def task(s, e, t):
            if s == 0:
                out["dx"] = dy @ weight
            else:
                out["dw"] = dy.T @ x
                out["db"] = column_sum(dy) if has_bias else None

        parallel_for(2, 1, task)
        return out["dx"], out["dw"], out["db"]
    dx = _mm(dy, weight)
    dw = _mm(dy.T, x)
    db = column_sum(dy) if has_bias else None
    return dx, dw, db


def flatten(x, start_dim=1):
    """Collapse every axis from `start_dim` on: (N, C, H, W) -> (N, C·H·W)."""
    return x.reshape(x.shape[:start_dim] + (-1,)), x.shape


def flatten_backward(dy, cache):
    return dy.reshape(cache)
