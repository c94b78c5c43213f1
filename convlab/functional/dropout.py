"""Inverted dropout: zero each unit with probability p and scale survivors by 1/(1-p)."""

from __future__ import annotations

from ..backend import get_array_module, rng


def dropout(x, p=0.5, training=True, generator=None):
    if not training or p == 0:
        return x, None
    if p >= 1:
        xp = get_array_module(x)
        return xp.zeros_like(x), xp.zeros_like(x)
    u = (generator or rng).random(x.shape, dtype=x.dtype)
    mask = (u >= p).astype(x.dtype) * (1.0 / (1.0 - p))
    return x * mask, mask


def dropout_backward(dy, cache):
    return dy if cache is None else dy * cache
