"""Memory layouts of (N, C, H, W) and (N, C) arrays as the kernels see them.

Convolutions produce channels-last memory (an (N, H, W, C) buffer viewed as NCHW); CuPy's own
elementwise operations return C-contiguous NCHW. The per-channel kernels work on either without
a copy: element e of the buffer belongs to channel (e // inner) % C, with inner = 1 for
channels-last and H·W for planar NCHW.
"""

from __future__ import annotations


def element_strides(a) -> tuple[int, ...]:
    """Strides in elements rather than bytes."""
    return tuple(s // a.itemsize for s in a.strides)


def is_channels_last(a) -> bool:
    """True when channels are the innermost axis of a dense buffer: NHWC memory, or C-contiguous (N, C)."""
    if a.ndim == 2:
        return a.flags.c_contiguous
    if a.ndim != 4:
        return False
    n, c, h, w = a.shape
    sn, sc, sh, sw = element_strides(a)
    return ((c == 1 or sc == 1) and (w == 1 or sw == c) and (h == 1 or sh == w * c)
            and (n == 1 or sn == h * w * c))


def channel_inner(a):
    """`inner` for the flat channel index (1 channels-last, H·W planar), or None for another layout."""
    if is_channels_last(a):
        return 1
    if a.ndim == 4 and a.flags.c_contiguous:
        return a.shape[2] * a.shape[3]
    return None


def empty_channels_last(xp, shape, dtype):
    """An uninitialised (N, C, H, W) array whose memory is (N, H, W, C); (N, C) stays C-contiguous."""
    if len(shape) == 2:
        return xp.empty(shape, dtype=dtype)
    n, c, h, w = shape
    return xp.empty((n, h, w, c), dtype=dtype).transpose(0, 3, 1, 2)


def with_channel_layout(a):
    """`a` itself when a per-channel kernel can read it directly, else a channels-last copy."""
    if channel_inner(a) is not None:
        return a
    import cupy

    out = empty_channels_last(cupy, a.shape, a.dtype)
    out[...] = a
    return out


def same_layout(a, like):
    """`a` in the memory layout of `like` (same shape): itself when the strides already agree."""
    if a.strides == like.strides:
        return a
    import cupy

    out = cupy.empty_like(like)
    out[...] = a
    return out
