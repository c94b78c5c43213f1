"""Scratch buffers reused across calls (per thread), so a training step does not reallocate
(and page-fault) its large temporaries, such as im2col columns, on every layer and step.

Activations and gradients are fresh arrays each step. glibc hands blocks of 32 MiB and more
straight back to the OS when they are freed, and trims the heap's free top, so each step faulted
those pages in again: about 3,000 page faults per ResNet-20 training step at batch 128, 5-9% of
its time (PyTorch's step took 20,000-30,000). On import, convlab asks glibc to keep freed memory
for reuse (`keep_freed_memory`); CONVLAB_KEEP_FREED_MEMORY=0 leaves the allocator alone. The
setting is the process's, so it applies to everything else in it too (PyTorch's step in
`scripts/bench` gains 11-13% from it).
"""

from __future__ import annotations

import collections
import ctypes
import math
import os
import sys
import threading

_local = threading.local()

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters (malloc.h)


def keep_freed_memory(limit=1 << 30):
    """Have glibc serve blocks under `limit` bytes from its heap and keep freed memory for reuse
    instead of returning it to the OS. True when the allocator took the setting (Linux with
    glibc); False elsewhere, or when $CONVLAB_KEEP_FREED_MEMORY is 0."""
    if os.environ.get("CONVLAB_KEEP_FREED_MEMORY", "1").strip() == "0" or not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the C library already loaded (find_library costs 15 ms)
    except (OSError, AttributeError):  # another C library (musl has no mallopt)
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, limit)) and bool(mallopt(_M_TRIM_THRESHOLD, limit))


KEEPS_FREED_MEMORY = keep_freed_memory()


def scratch(xp, shape, dtype, slot="default"):
    """An uninitialised array of `shape` whose memory is reused by later calls on the same slot.

    The buffer grows to the largest size requested; the returned view is only valid until the
    next call with the same slot on this thread.
    """
    try:
        pool = _local.pool
    except AttributeError:
        pool = _local.pool = {}
    size = math.prod(shape)
    key = (slot, xp, dtype)  # dtype objects hash fast; str(dtype) cost microseconds
    buf = pool.get(key)
    if buf is None or buf.size < size:
        buf = pool[key] = xp.empty(size, dtype=dtype)
    return buf[:size].reshape(shape)


_BORDERED_KEEP = 16  # zero-bordered buffers kept per thread, the least recently used dropped first


def zero_bordered(xp, shape, dtype, slot, border, init=None):
    """A reused buffer of `shape` that is zero wherever its callers do not write: a padded input
    whose padding (`border`, e.g. the pads) stays zero from one call to the next.

    Each (slot, shape, dtype, border) gets its own buffer, made with zeros; callers write only
    its interior, so padding a chunk costs one copy instead of a fill per border strip as well
    (four short calls per chunk, each a GIL hand-over when two threads run chunks). The valid
    view lasts until this thread's next call with the same key. init(buf), when given, runs once on
    a new buffer: what it writes outside the interior stays too (a row of ones, say)."""
    try:
        pool = _local.bordered
    except AttributeError:
        pool = _local.bordered = collections.OrderedDict()
    key = (slot, xp, dtype, shape, border)
    buf = pool.get(key)
    if buf is None:
        buf = pool[key] = xp.zeros(shape, dtype=dtype)
        if init is not None:
            init(buf)
        if len(pool) > _BORDERED_KEEP:
            pool.popitem(last=False)
    else:
        pool.move_to_end(key)
    return buf


def release():
    """Drop this thread's scratch buffers (e.g. after switching to a smaller model)."""
    _local.pool = {}
    _local.bordered = collections.OrderedDict()
