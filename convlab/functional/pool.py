"""Max, average and global-average pooling with PyTorch's semantics, and their backward passes.

Pooling works on the channels-last view of the input (conv outputs are channels-last in
memory) and visits windows one kernel offset at a time (kh·kw strided views): no loop over the
batch, the channels or the pixels.
"""

from __future__ import annotations

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


def max_pool2d(x, kernel_size, stride=None, padding=0, ceil_mode=False):
    """Max pooling of x (N, C, H, W). Padding counts as -inf; ties go to the first offset."""
    if kernels.accepts(x):
        return kernels.max_pool2d(x, kernel_size, stride, padding, ceil_mode)
    xp = get_array_module(x)
    k, s, p, out, (hb, wb) = _geometry(x.shape, kernel_size, stride, padding, ceil_mode, "max_pool2d")
    n, c, h, w = x.shape
    xb = _padded_nhwc(x, p, hb, wb, -xp.inf)
    y = xp.empty((n,) + out + (c,), dtype=x.dtype)

    # Windows that tile a dense buffer with few channels: reduce the kernel's rows first, along
    # whole image rows (long runs), then its columns (runs of C). C=6: 0.43 -> 0.25 ms per 64 images.
    by_rows = (s == k and xb.shape[1:3] == (out[0] * k[0], out[1] * k[1]) and c <= 16
               and xb.flags.c_contiguous)

    def body(s_, e, t):
        yc = y[s_:e]
        if by_rows:
            rows = xb[s_:e].reshape(e - s_, out[0], k[0], wb * c)
            v = scratch(xp, (e - s_, out[0], wb * c), x.dtype, "poolrows")
            xp.copyto(v, rows[:, :, 0])
            for i in range(1, k[0]):
                xp.maximum(v, rows[:, :, i], out=v)
            cols = v.reshape(e - s_, out[0], out[1], k[1], c)
            yc[...] = cols[:, :, :, 0]
            for j in range(1, k[1]):
                xp.maximum(yc, cols[:, :, :, j], out=yc)
            return
        views = _offsets(xb[s_:e], k, s, out)
        yc[...] = next(views)
        for v in views:
            xp.maximum(yc, v, out=yc)

    parallel_for(n, grain_for(n, 4 * c * (hb * wb + 2 * out[0] * out[1])), body, xp)
    return y.transpose(0, 3, 1, 2), (xb, y, x.shape, k, s, p, out)


def max_pool2d_backward(dy, cache):
    """Route each output gradient to the first input position that holds its window's max."""
    if kernels.owns(cache):
        return kernels.max_pool2d_backward(dy, cache)
    xb, y, x_shape, k, s, p, out = cache
    xp = get_array_module(dy)
    n, c, h, w = x_shape
    dy_nhwc = dy.transpose(0, 2, 3, 1)
    # Windows that tile the buffer exactly write each input cell once: assign, no zeroing, no sum.
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
    # each a hand-over of the GIL between the two threads; fewer chunks, fewer calls (LeNet-5
    # training step, in-process A/B: 8.40 -> 8.27 and 8.38 -> 8.22 ms).
    parallel_for(n, grain_for(n, 4 * c * (xb.shape[1] * xb.shape[2] + 3 * out[0] * out[1]), target=1 << 22),
                 body, xp)
    return _crop_nchw(dxb, p, h, w)


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
