"""Max, average and global-average pooling with PyTorch's semantics, and their backward passes.

Windows are visited one kernel offset at a time (kh·kw strided views), so there is no loop over
the batch, the channels or the pixels.
"""

from __future__ import annotations

from ..backend import get_array_module
from .conv import _pair


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
        raise ValueError(
            f"{name}: padding {(ph, pw)} must be at most half the kernel size {(kh, kw)}"
        )
    n, c, h, w = x_shape
    ho = pool_output_size(h, kh, sh, ph, 1, ceil_mode)
    wo = pool_output_size(w, kw, sw, pw, 1, ceil_mode)
    if ho < 1 or wo < 1:
        raise ValueError(
            f"{name}: kernel {(kh, kw)} with padding {(ph, pw)} is larger than the input {(h, w)}"
        )
    # Extent of the padded buffer: every window must fit, ceil-mode windows included.
    hb = max(h + 2 * ph, (ho - 1) * sh + kh)
    wb = max(w + 2 * pw, (wo - 1) * sw + kw)
    return (kh, kw), (sh, sw), (ph, pw), (ho, wo), (hb, wb)


def _windows(xb, k, s, out):
    """Yield (i, j, view) for each kernel offset: view is (N, C, Ho, Wo)."""
    (kh, kw), (sh, sw), (ho, wo) = k, s, out
    for i in range(kh):
        for j in range(kw):
            yield i, j, xb[:, :, i:i + sh * (ho - 1) + 1:sh, j:j + sw * (wo - 1) + 1:sw]


def max_pool2d(x, kernel_size, stride=None, padding=0, ceil_mode=False):
    """Max pooling of x (N, C, H, W). Padding counts as -inf; ties go to the first offset."""
    xp = get_array_module(x)
    k, s, p, out, (hb, wb) = _geometry(x.shape, kernel_size, stride, padding, ceil_mode, "max_pool2d")
    n, c, h, w = x.shape
    xb = xp.full((n, c, hb, wb), -xp.inf, dtype=x.dtype)
    xb[:, :, p[0]:p[0] + h, p[1]:p[1] + w] = x
    y = None
    idx = xp.zeros((n, c) + out, dtype=xp.int8 if k[0] * k[1] < 128 else xp.int32)
    for i, j, v in _windows(xb, k, s, out):
        if y is None:
            y = v.copy()
            continue
        better = v > y
        xp.copyto(y, v, where=better)
        xp.copyto(idx, i * k[1] + j, where=better, casting="unsafe")
    return y, (idx, x.shape, k, s, p, out, (hb, wb))


def max_pool2d_backward(dy, cache):
    """Route each output gradient to the input position that won its window."""
    idx, x_shape, k, s, p, out, (hb, wb) = cache
    xp = get_array_module(dy)
    n, c, h, w = x_shape
    dxb = xp.zeros((n, c, hb, wb), dtype=dy.dtype)
    for i, j, v in _windows(dxb, k, s, out):
        v += xp.where(idx == i * k[1] + j, dy, 0)
    return dxb[:, :, p[0]:p[0] + h, p[1]:p[1] + w]


def avg_pool2d(x, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True):
    """Average pooling of x (N, C, H, W), with PyTorch's divisor rules at the borders."""
    xp = get_array_module(x)
    k, s, p, out, (hb, wb) = _geometry(x.shape, kernel_size, stride, padding, ceil_mode, "avg_pool2d")
    n, c, h, w = x.shape
    xb = xp.zeros((n, c, hb, wb), dtype=x.dtype)
    xb[:, :, p[0]:p[0] + h, p[1]:p[1] + w] = x
    # Divisor per output position: the window's cells inside the padded input (or the input).
    ones = xp.zeros((1, 1, hb, wb), dtype=x.dtype)
    if count_include_pad:
        ones[:, :, :h + 2 * p[0], :w + 2 * p[1]] = 1
    else:
        ones[:, :, p[0]:p[0] + h, p[1]:p[1] + w] = 1
    y = xp.zeros((n, c) + out, dtype=x.dtype)
    count = xp.zeros((1, 1) + out, dtype=x.dtype)
    for (_, _, v), (_, _, o) in zip(_windows(xb, k, s, out), _windows(ones, k, s, out)):
        y += v
        count += o
    y /= count
    return y, (count, x.shape, k, s, p, out, (hb, wb))


def avg_pool2d_backward(dy, cache):
    count, x_shape, k, s, p, out, (hb, wb) = cache
    xp = get_array_module(dy)
    n, c, h, w = x_shape
    g = dy / count
    dxb = xp.zeros((n, c, hb, wb), dtype=dy.dtype)
    for _, _, v in _windows(dxb, k, s, out):
        v += g
    return dxb[:, :, p[0]:p[0] + h, p[1]:p[1] + w]


def global_avg_pool2d(x):
    """Mean over the spatial axes: (N, C, H, W) -> (N, C)."""
    return x.mean(axis=(2, 3)), x.shape


def global_avg_pool2d_backward(dy, cache):
    xp = get_array_module(dy)
    n, c, h, w = cache
    return xp.broadcast_to((dy / (h * w))[:, :, None, None], (n, c, h, w)).copy()
