"""Max, average and global-average pooling with PyTorch's semantics, and their backward passes.

Pooling works on the channels-last view of the input (conv outputs are channels-last in
memory) and visits windows one kernel offset at a time (kh·kw strided views): no loop over the
batch, the channels or the pixels. Max pooling whose windows tile a dense buffer with short
runs (the 2×2/2 after a convolution with few channels, or NCHW planes) works on the buffer's
flat memory instead, where each strided view would loop over runs of a few values.
"""

from __future__ import annotations

import numpy as np

from .. import kernels
from ..backend import get_array_module
from ..parallel import grain_for, parallel_for
from .conv import _pair
from .workspace import scratch


def pool_output_size(size, kernel, stride, padding, dilation=1, ceil_mode=False):
    """Output length along one axis, PyTorch's rule (a ceil-mode window must start inside)."""
    eff = dilation * (kernel - 1) + 1
    num = size + 2 * padding - eff
    out = (-(-num // stride) if ceil_mode else num // stride) + 1
    if ceil_mode and (out - 1) * stride >= size + padding:
        out -= 1
    return out


def _geometry(x_shape, kernel_size, stride, padding, ceil_mode, name):
    kh, kw = _pair(kernel_size, "kernel_size")
    sh, sw = _pair(stride if stride is not None else (kh, kw), "stride")
    ph, pw = _pair(padding, "padding")
    if ph > kh // 2 or pw > kw // 2:
        raise ValueError(f"{name}: padding {(ph, pw)} must be at most half the kernel size {(kh, kw)}")
    n, c, h, w = x_shape
    ho = pool_output_size(h, kh, sh, ph, 1, ceil_mode)
    wo = pool_output_size(w, kw, sw, pw, 1, ceil_mode)
    if ho < 1 or wo < 1:
        raise ValueError(f"{name}: kernel {(kh, kw)} with padding {(ph, pw)} is larger than the input {(h, w)}")
    # Extent of the padded buffer: every window must fit, ceil-mode windows included.
    hb = max(h + 2 * ph, (ho - 1) * sh + kh)
    wb = max(w + 2 * pw, (wo - 1) * sw + kw)
    return (kh, kw), (sh, sw), (ph, pw), (ho, wo), (hb, wb)


def _offsets(xb, k, s, out):
    """Yield each kernel offset's (N, Ho, Wo, C) view of a padded NHWC buffer."""
    (kh, kw), (sh, sw), (ho, wo) = k, s, out
    for i in range(kh):
        for j in range(kw):
            yield xb[:, i:i + sh * (ho - 1) + 1:sh, j:j + sw * (wo - 1) + 1:sw, :]


def _padded_nhwc(x, p, hb, wb, fill):
    """x as an (N, Hb, Wb, C) buffer with `fill` around it (a view when nothing is added)."""
    xp = get_array_module(x)
    n, c, h, w = x.shape
    x_nhwc = x.transpose(0, 2, 3, 1)
    if p == (0, 0) and hb <= h and wb <= w:
        return x_nhwc
    xb = xp.full((n, hb, wb, c), fill, dtype=x.dtype)
    xb[:, p[0]:p[0] + h, p[1]:p[1] + w, :] = x_nhwc
    return xb


def _crop_nchw(dxb, p, h, w):
    return dxb[:, p[0]:p[0] + h, p[1]:p[1] + w, :].transpose(0, 3, 1, 2)


def _dense_windows(x, xb):
    """The pooled buffer as a C-contiguous (M, Hb, Wb, c) array, or None: channels-last memory
    gives (N, Hb, Wb, C); a C-contiguous NCHW input gives (N·C, H, W, 1), one plane an item."""
    if xb.flags.c_contiguous:
        return xb, False
    if x.flags.c_contiguous:  # then xb is x's own channels-last view: padding makes a dense copy
        n, c, h, w = x.shape
        return x.reshape(n * c, h, w, 1), True
    return None


def _starts(buf, k, out, c, row=0):
    """The windows' first positions in image row `row` of each window, for a flat (M·Hb·Wb·c)
    buffer of tiling windows: an (M, Ho, Wo, c) view."""
    return buf.reshape(-1, out[0], k[0], out[1], k[1], c)[:, :, row, :, 0, :]


def _copy_runs(dst, src):
    """dst[...] = src for (..., c) arrays whose last axis is contiguous in both: with NumPy,
    each run of c values moves as one element (a void view), not as a loop of its own."""
    xp = get_array_module(dst)
    item = dst.shape[-1] * dst.itemsize
    if (xp is not np or dst.shape[-1] == 1 or dst.strides[-1] != dst.itemsize
            or src.strides[-1] != src.itemsize or src.dtype != dst.dtype):
        dst[...] = src
        return
    void = np.dtype(f"V{item}")
    dst.view(void)[..., 0] = src.view(void)[..., 0]


def _running_max(src, dst, shift, count):
    """dst[p] = max(src[p], src[p + shift], ..., src[p + (count-1)·shift]) for flat arrays,
    where all exist (dst's last (count-1)·shift values are left unwritten)."""
    xp = get_array_module(src)
    if count == 1:
        xp.copyto(dst, src)
    for i in range(1, count):
        cut = src.size - i * shift
        xp.maximum(src[:cut] if i == 1 else dst[:cut], src[i * shift:], out=dst[:cut])


def _first_max_wins(candidates, tag, wins=None):
    """For candidates v_0, v_1, ... (arrays of one shape, or flat ones that shorten), the masks
    w_i = v_i > max(v_0..v_i-1), i >= 1 (into `wins` when given): the first maximum is the last
    candidate whose mask is set, v_0 if none is."""
    xp = get_array_module(candidates[0])
    best, into, wins = candidates[0], wins, []
    for i, v in enumerate(candidates[1:], 1):
        w = scratch(xp, v.shape, bool, f"{tag}{i}") if into is None else into[i - 1]
        xp.greater(v, best[..., :v.shape[-1]], out=w)
        wins.append(w)
        if i < len(candidates) - 1:
            nxt = scratch(xp, v.shape, v.dtype, f"{tag}best{i % 2}")
            xp.maximum(best[..., :v.shape[-1]], v, out=nxt)
            best = nxt
    return wins


def _route_across(d, f, c, kw):
    """Horizontal routing on flat memory: d (zero away from window-start columns) moves from each
    window-start column p to the first maximum of f[p], f[p + c], ..., f[p + (kw-1)·c]."""
    xp = get_array_module(d)
    size = d.size
    wins = _first_max_wins([f[i * c:] for i in range(kw)], "poolcol")
    parts = []
    for i in range(kw - 1, 0, -1):
        cut = size - i * c
        part = scratch(xp, (cut,), d.dtype, f"poolpart{i}")
        xp.multiply(d[:cut], wins[i - 1], out=part)
        d[:cut] -= part
        parts.append((i, part))
    for i, part in parts:
        d[i * c:] += part  # zero there before: those are not window-start columns


def max_pool2d(x, kernel_size, stride=None, padding=0, ceil_mode=False):
    """Max pooling of x (N, C, H, W). Padding counts as -inf; ties go to the first offset."""
    if kernels.accepts(x):
        return kernels.max_pool2d(x, kernel_size, stride, padding, ceil_mode)
    xp = get_array_module(x)
    k, s, p, out, (hb, wb) = _geometry(x.shape, kernel_size, stride, padding, ceil_mode, "max_pool2d")
    n, c, h, w = x.shape
    xb = _padded_nhwc(x, p, hb, wb, -xp.inf)
    dense = _dense_windows(x, xb) if s == k and (hb, wb) == (out[0] * k[0], out[1] * k[1]) else None
    if dense is not None and dense[0].shape[-1] <= TILED_MAX_RUN:
        return _max_pool_tiled(x, dense, k, p, out)
    y = xp.empty((n,) + out + (c,), dtype=x.dtype)

    def body(s_, e, t):
        yc = y[s_:e]
        views = _offsets(xb[s_:e], k, s, out)
        yc[...] = next(views)
        for v in views:
            xp.maximum(yc, v, out=yc)

    parallel_for(n, grain_for(n, 4 * c * (hb * wb + 2 * out[0] * out[1])), body, xp)
    return y.transpose(0, 3, 1, 2), ("offsets", xb, y, x.shape, k, s, p, out)


def _max_pool_tiled(x, dense, k, p, out):
    """Windows that tile a dense buffer. Each image row's maxima over the windows' columns come
    from whole-buffer ops on flat memory (candidates c apart: long contiguous runs, not one run
    of c values per window); the kh rows of every window are then gathered, each run of c values
    at once, and compared whole. The backward keeps which row won (kh - 1 masks of y's size).
    LeNet-5's first pool (C = 6, batch 128), against the per-offset path in one process: forward
    0.44 -> 0.38 ms on one thread (level on two), backward 1.84 -> 0.96 ms (1.15 -> 0.62 on two)."""
    xp = get_array_module(x)
    xd, planes = dense
    m, c = xd.shape[0], xd.shape[-1]
    y = xp.empty((m,) + out + (c,), dtype=x.dtype)
    down = xp.empty((k[0] - 1, m) + out + (c,), dtype=bool)  # row a beat rows 0..a-1

    def body(s_, e, t):
        f = xd[s_:e].reshape(-1)
        rowmax = scratch(xp, f.shape, x.dtype, "poolrowmax")
        _running_max(f, rowmax, c, k[1])
        rows = scratch(xp, (k[0],) + y[s_:e].shape, x.dtype, "poolrows")
        for a in range(k[0]):
            _copy_runs(rows[a], _starts(rowmax, k, out, c, row=a))
        _first_max_wins(list(rows), "poolrow", wins=list(down[:, s_:e]))
        yc = y[s_:e]
        if k[0] == 1:
            xp.copyto(yc, rows[0])
        else:  # pairwise from the first two rows: no copy of row 0 first (20 µs against 30 here)
            xp.maximum(rows[0], rows[1], out=yc)
        for a in range(2, k[0]):
            xp.maximum(yc, rows[a], out=yc)

    parallel_for(m, _tiled_grain(m, xd), body, xp)
    n, ch = x.shape[:2]
    y = y.reshape(n, ch, *out) if planes else y.transpose(0, 3, 1, 2)
    return y, ("tiled", xd, down, planes, x.shape, k, p, out)


# The tiled path takes runs of at most this many values (channels-last C, or 1 for NCHW planes).
# Longer runs already make the per-offset views fast: with 2 threads, at batch 128, C = 16 at
# 32x32 ran backward in 2.6 ms tiled against 3.3 per offset; C = 24 at 16x16, 0.65 against 0.53.
TILED_MAX_RUN = 16
# Below this many bytes a tiled pool runs as one chunk on the calling thread.
TILED_MIN_PARALLEL_BYTES = 8 << 20


def _tiled_grain(m, xd):
    """Images (or planes) per chunk on the tiled path: a few whole-buffer ops bound by memory,
    so at most one chunk per thread, and none split off below TILED_MIN_PARALLEL_BYTES (waking a
    thread and handing it the GIL for each op cost more than it saved: LeNet-5's second pool at
    batch 128, 3 MiB, took 0.20 ms backward on one thread and 0.32 ms split over two; its first,
    9 MiB, 0.94 ms on one and 0.71 ms on two)."""
    per_item = 4 * xd.itemsize * (xd.size // max(m, 1))  # input, row maxima, gradient, scratch
    if m * per_item < TILED_MIN_PARALLEL_BYTES:
        return m
    return grain_for(m, per_item, target=1 << 40)


def max_pool2d_backward(dy, cache):
    """Route each output gradient to the first input position that holds its window's max."""
    if kernels.owns(cache):
        return kernels.max_pool2d_backward(dy, cache)
    if cache[0] == "tiled":
        return _max_pool_tiled_backward(dy, cache)
    _, xb, y, x_shape, k, s, p, out = cache
    xp = get_array_module(dy)
    n, c, h, w = x_shape
    dy_nhwc = dy.transpose(0, 2, 3, 1)
    # Windows that tile the buffer exactly (long runs: see TILED_MAX_RUN) write each input cell
    # once: assign, no zeroing, no sum.
    tiled = s == k and all(o * kk == b for o, kk, b in zip(out, k, xb.shape[1:3]))
    dxb = xp.empty(xb.shape, dtype=dy.dtype) if tiled else xp.zeros(xb.shape, dtype=dy.dtype)
    last = k[0] * k[1] - 1

    def body(s_, e, t):
        shape = (e - s_,) + out + (c,)
        open_ = scratch(xp, shape, bool, "open")  # windows whose max is not claimed yet
        hit = scratch(xp, shape, bool, "hit")
        part = None if tiled else scratch(xp, shape, dy.dtype, "part")
        g, yc = dy_nhwc[s_:e], y[s_:e]
        for i, (v, d) in enumerate(zip(_offsets(xb[s_:e], k, s, out), _offsets(dxb[s_:e], k, s, out))):
            xp.equal(v, yc, out=hit)
            if i:
                hit &= open_
            if i < last:
                if i:
                    xp.greater(open_, hit, out=open_)  # open and not hit
                else:
                    xp.logical_not(hit, out=open_)
            if tiled:
                xp.multiply(g, hit, out=d)
            else:
                xp.multiply(g, hit, out=part)
                d += part

    # Chunks of about 4 MiB, twice the forward's: a chunk makes 4 NumPy calls per kernel offset,
    # each a hand-over of the GIL between the two threads; fewer chunks, fewer calls.
    parallel_for(n, grain_for(n, 4 * c * (xb.shape[1] * xb.shape[2] + 3 * out[0] * out[1]), target=1 << 22),
                 body, xp)
    return _crop_nchw(dxb, p, h, w)


def _max_pool_tiled_backward(dy, cache):
    """The tiled windows' backward: each window's gradient goes to the row that won (the masks
    the forward kept), is scattered to that row's window start, then moves across, on flat
    memory, to the first maximum of that row's window columns."""
    _, xd, down, planes, x_shape, k, p, out = cache
    xp = get_array_module(dy)
    m, c = xd.shape[0], xd.shape[-1]
    g_items = dy.reshape(m, *out, 1) if planes else dy.transpose(0, 2, 3, 1)
    dx = xp.empty(xd.shape, dtype=dy.dtype)

    def body(s_, e, t):
        f, d = xd[s_:e].reshape(-1), dx[s_:e].reshape(-1)
        d.fill(0)
        rem = g_items[s_:e]  # what no lower row has claimed yet
        for a in range(k[0] - 1, 0, -1):  # the last row that beat all rows above it claims the gradient
            part = scratch(xp, rem.shape, dy.dtype, f"poolrowpart{a % 2}")
            xp.multiply(rem, down[a - 1, s_:e], out=part)
            rem = xp.subtract(rem, part, out=scratch(xp, rem.shape, dy.dtype, f"poolrowrem{a % 2}"))
            _copy_runs(_starts(d, k, out, c, row=a), part)
        _copy_runs(_starts(d, k, out, c), rem)
        _route_across(d, f, c, k[1])

    parallel_for(m, _tiled_grain(m, xd), body, xp)
    if planes:
        return dx.reshape(x_shape)
    return _crop_nchw(dx, p, *x_shape[2:])


def avg_pool2d(x, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True):
    """Average pooling of x (N, C, H, W), with PyTorch's divisor rules at the borders."""
    xp = get_array_module(x)
    k, s, p, out, (hb, wb) = _geometry(x.shape, kernel_size, stride, padding, ceil_mode, "avg_pool2d")
    n, c, h, w = x.shape
    xb = _padded_nhwc(x, p, hb, wb, 0)
    # Divisor per output position: the window's cells inside the padded input (or the input).
    ones = xp.zeros((1, hb, wb, 1), dtype=x.dtype)
    if count_include_pad:
        ones[:, :h + 2 * p[0], :w + 2 * p[1]] = 1
    else:
        ones[:, p[0]:p[0] + h, p[1]:p[1] + w] = 1
    y = xp.zeros((n,) + out + (c,), dtype=x.dtype)
    count = xp.zeros((1,) + out + (1,), dtype=x.dtype)
    for v, o in zip(_offsets(xb, k, s, out), _offsets(ones, k, s, out)):
        y += v
        count += o
    y /= count
    return y.transpose(0, 3, 1, 2), (count, x.shape, k, s, p, out, (hb, wb))


def avg_pool2d_backward(dy, cache):
    count, x_shape, k, s, p, out, (hb, wb) = cache
    xp = get_array_module(dy)
    n, c, h, w = x_shape
    g = dy.transpose(0, 2, 3, 1) / count
    dxb = xp.zeros((n, hb, wb, c), dtype=dy.dtype)
    for d in _offsets(dxb, k, s, out):
        d += g
    return _crop_nchw(dxb, p, h, w)


def _adaptive_weights(xp, size, out, dtype):
    """(out, size) averaging matrix with PyTorch's bins: [floor(i·size/out), ceil((i+1)·size/out))."""
    a = xp.zeros((out, size), dtype=dtype)
    for i in range(out):  # one row per output bin (a handful)
        start, end = (i * size) // out, -((-(i + 1) * size) // out)
        a[i, start:end] = 1.0 / (end - start)
    return a


def adaptive_avg_pool2d(x, output_size):
    """Average x (N, C, H, W) over PyTorch's adaptive bins to (N, C, oh, ow), any sizes."""
    xp = get_array_module(x)
    oh, ow = _pair(output_size, "output_size")
    _, _, h, w = x.shape
    if h % oh == 0 and w % ow == 0:
        k = (h // oh, w // ow)
        y, cache = avg_pool2d(x, k, k)
        return y, ("even", cache)
    ah, aw = _adaptive_weights(xp, h, oh, x.dtype), _adaptive_weights(xp, w, ow, x.dtype)
    y = xp.einsum("ih,nchw,jw->ncij", ah, x, aw, optimize=True)
    return y, ("bins", (ah, aw))


def adaptive_avg_pool2d_backward(dy, cache):
    kind, c = cache
    if kind == "even":
        return avg_pool2d_backward(dy, c)
    xp = get_array_module(dy)
    ah, aw = c
    return xp.einsum("ih,ncij,jw->nchw", ah, dy, aw, optimize=True)


def global_avg_pool2d(x):
    """Mean over the spatial axes: (N, C, H, W) -> (N, C)."""
    return x.mean(axis=(2, 3)), x.shape


def global_avg_pool2d_backward(dy, cache):
    xp = get_array_module(dy)
    n, c, h, w = cache
    dx = xp.empty((n, h, w, c), dtype=dy.dtype)  # channels-last, like the conv outputs
    dx[...] = (dy / (h * w))[:, None, None, :]
    return dx.transpose(0, 3, 1, 2)
