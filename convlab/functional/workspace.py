"""Scratch buffers reused across calls (per thread), so a training step does not reallocate
(and page-fault) its large temporaries, such as im2col columns, on every layer and step."""

from __future__ import annotations

import threading

_local = threading.local()


def scratch(xp, shape, dtype, slot="default"):
    """An uninitialised array of `shape` whose memory is reused by later calls on the same slot.

    The buffer grows to the largest size requested; the returned view is only valid until the
    next call with the same slot on this thread.
    """
    pool = getattr(_local, "pool", None)
    if pool is None:
        pool = _local.pool = {}
    size = 1
    for s in shape:
        size *= s
    key = (slot, xp.__name__, dtype)  # dtype objects hash fast; str(dtype) cost microseconds
    buf = pool.get(key)
    if buf is None or buf.size < size:
        buf = pool[key] = xp.empty(size, dtype=dtype)
    return buf[:size].reshape(shape)


def release():
    """Drop this thread's scratch buffers (e.g. after switching to a smaller model)."""
    _local.pool = {}
