"""2-D cross-correlation ("convolution" in deep-learning usage) and its backward pass.

The input is padded and gathered into columns ordered channels-last, (N·Ho·Wo, kh·kw·C), so
im2col is one strided copy and the layer is one BLAS GEMM per group. Backward recomputes the
columns (cheaper than keeping them: they are kh·kw times the input) and sends the gradient
back one kernel offset at a time, GEMM then strided add, so there is no col2im scatter.
"""

from __future__ import annotations

from .. import kernels
from ..backend import get_array_module
from .linear import column_sum
from .workspace import scratch


def _pair(v, name):
    if isinstance(v, int):
        return (v, v)
    v = tuple(int(a) for a in v)
    if len(v) != 2:
        raise ValueError(f"{name} must be an int or a pair of ints, got {v!r}")
    return v


def conv_output_size(size, kernel, stride, padding, dilation):
    """Output length of a cross-correlation along one axis (floor rounding, as in PyTorch)."""
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def same_padding(kernel_size, dilation):
    """Per-axis padding for `padding="same"` at stride 1; returns (top, bottom, left, right)."""
    kh, kw = kernel_size
    dh, dw = dilation
    th, tw = dh * (kh - 1), dw * (kw - 1)
    return (th // 2, th - th // 2, tw // 2, tw - tw // 2)


def resolve_padding(padding, kernel_size, stride, dilation):
    """Normalise `padding` (int, pair, "valid" or "same") to (top, bottom, left, right)."""
    if isinstance(padding, str):
        if padding == "valid":
            return (0, 0, 0, 0)
        if padding == "same":
            if tuple(stride) != (1, 1):
                raise ValueError(f"padding='same' needs stride 1, got stride {tuple(stride)}")
            return same_padding(kernel_size, dilation)
        raise ValueError(f"padding must be an int, a pair, 'same' or 'valid', got {padding!r}")
    ph, pw = _pair(padding, "padding")
    return (ph, ph, pw, pw)


def _pad_nhwc(x_nhwc, pads, xp):
    pt, pb, pl, pr = pads
    if not any(pads):
        return x_nhwc
    n, h, w, c = x_nhwc.shape
    out = xp.empty((n, h + pt + pb, w + pl + pr, c), dtype=x_nhwc.dtype)
    # Zero only the border, then copy the interior once.
    out[:, :pt] = 0
    out[:, pt + h:] = 0
    out[:, pt:pt + h, :pl] = 0
    out[:, pt:pt + h, pl + w:] = 0
    out[:, pt:pt + h, pl:pl + w, :] = x_nhwc
    return out


def _windows(x_pad, kernel_size, stride, dilation, out_hw):
    """A (N, Ho, Wo, kh, kw, C) strided view of every window of a padded NHWC input (no copy)."""
    xp = get_array_module(x_pad)
    n, _, _, c = x_pad.shape
    sn, sh_, sw_, sc = x_pad.strides
    (kh, kw), (sh, sw), (dh, dw), (ho, wo) = kernel_size, stride, dilation, out_hw
    if xp.__name__ == "numpy":
        from numpy.lib.stride_tricks import as_strided
    else:
        from cupy.lib.stride_tricks import as_strided
    return as_strided(x_pad, (n, ho, wo, kh, kw, c), (sn, sh_ * sh, sw_ * sw, sh_ * dh, sw_ * dw, sc))


def im2col(x_pad, kernel_size, stride, dilation, out_hw, out=None):
    """Copy the windows of a padded NHWC input into (N·Ho·Wo, kh·kw·C) columns."""
    xp = get_array_module(x_pad)
    n, _, _, c = x_pad.shape
    (kh, kw), (ho, wo) = kernel_size, out_hw
    win = _windows(x_pad, kernel_size, stride, dilation, out_hw)
    if out is None:
        out = xp.empty((n, ho, wo, kh, kw, c), dtype=x_pad.dtype)
    else:
        out = out.reshape(n, ho, wo, kh, kw, c)
    xp.copyto(out, win)
    return out.reshape(n * ho * wo, kh * kw * c)


def col2im(dcols, padded_hw, stride, dilation):
    """Sum (N, Ho, Wo, kh, kw, C) column gradients back onto a padded NHWC input (the adjoint of
    im2col)."""
    xp = get_array_module(dcols)
    n, ho, wo, kh, kw, c = dcols.shape
    dx = xp.zeros((n, padded_hw[0], padded_hw[1], c), dtype=dcols.dtype)
    for i in range(kh):
        for j in range(kw):
            _offset_view(dx, i, j, stride, dilation, (ho, wo))[...] += dcols[:, :, :, i, j, :]
    return dx


def _offset_view(x_pad, i, j, stride, dilation, out_hw):
    """The (N, Ho, Wo, C) view of the padded input that kernel offset (i, j) sees."""
    (sh, sw), (dh, dw), (ho, wo) = stride, dilation, out_hw
    r, s = i * dh, j * dw
    return x_pad[:, r:r + sh * (ho - 1) + 1:sh, s:s + sw * (wo - 1) + 1:sw, :]


def _geometry(x_shape, w_shape, stride, padding, dilation):
    n, c, h, w = x_shape
    o, cg, kh, kw = w_shape
    pads = resolve_padding(padding, (kh, kw), stride, dilation)
    hp, wp = h + pads[0] + pads[1], w + pads[2] + pads[3]
    ho = (hp - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    wo = (wp - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    return pads, (hp, wp), (ho, wo)


def _is_pointwise(w_shape, pads, stride, groups):
    return w_shape[2:] == (1, 1) and not any(pads) and stride == (1, 1) and groups == 1


def _is_depthwise(x_shape, w_shape, groups):
    return groups > 1 and w_shape[1] == 1 and w_shape[0] == groups == x_shape[1]


def conv2d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """Cross-correlate x (N, C, H, W) with weight (O, C/groups, kh, kw); returns (y, cache).

    y is (N, O, Ho, Wo). Its memory is channels-last (a transposed view), which makes the next
    layer's im2col a plain strided copy; NumPy/CuPy elementwise ops keep that layout.
    """
    if kernels.accepts(x, weight):  # CuPy fast path; this function is its reference
        return kernels.conv2d(x, weight, bias, stride, padding, dilation, groups)
    xp = get_array_module(x)
    stride, dilation = _pair(stride, "stride"), _pair(dilation, "dilation")
    pads, _, (ho, wo) = _geometry(x.shape, weight.shape, stride, padding, dilation)
    n, c, h, w = x.shape
    o, cg, kh, kw = weight.shape
    m = n * ho * wo
    x_pad = _pad_nhwc(x.transpose(0, 2, 3, 1), pads, xp)  # (N, Hp, Wp, C)
    geom = ((kh, kw), stride, dilation, (ho, wo))
    if _is_pointwise(weight.shape, pads, stride, groups):
        y = x_pad.reshape(m, c) @ weight.reshape(o, c).T  # (M, O)
    elif _is_depthwise(x.shape, weight.shape, groups):
        y = xp.zeros((n, ho, wo, c), dtype=x.dtype)
        tmp = scratch(xp, (n, ho, wo, c), x.dtype, "dw")
        w_dw = weight.reshape(c, kh * kw)
        for k in range(kh * kw):
            xp.multiply(_offset_view(x_pad, k // kw, k % kw, stride, dilation, (ho, wo)), w_dw[:, k], out=tmp)
            y += tmp
        y = y.reshape(m, o)
    elif groups == 1:
        cols = im2col(x_pad, *geom, out=scratch(xp, (m * kh * kw * c,), x.dtype, "cols"))
        y = cols @ weight.transpose(2, 3, 1, 0).reshape(kh * kw * c, o)  # (M, O)
    else:
        og = o // groups
        cols = im2col(x_pad, *geom, out=scratch(xp, (m * kh * kw * c,), x.dtype, "cols"))
        cols_g = cols.reshape(m, kh * kw, groups, cg).transpose(2, 0, 1, 3).reshape(groups, m, kh * kw * cg)
        w_g = weight.reshape(groups, og, cg, kh, kw).transpose(0, 3, 4, 2, 1).reshape(groups, kh * kw * cg, og)
        y = xp.matmul(cols_g, w_g).transpose(1, 0, 2).reshape(m, o)  # (M, O)
    if bias is not None:
        y += bias
    y = y.reshape(n, ho, wo, o).transpose(0, 3, 1, 2)  # (N, O, Ho, Wo), channels-last memory
    cache = (x_pad, weight, x.shape, pads, stride, dilation, groups, bias is not None)
    return y, cache


def conv2d_backward(dy, cache, need_dx=True):
    """Gradients (dx, dweight, dbias) of conv2d; dbias is None when the layer has no bias.

    need_dx=False skips the input gradient (dx is None): the first layer of a network, whose
    input is the data, has no use for it.
    """
    if kernels.owns(cache):
        dx, dw, db = kernels.conv2d_backward(dy, cache)
        return (dx if need_dx else None), dw, db
    x_pad, weight, x_shape, pads, stride, dilation, groups, has_bias = cache
    xp = get_array_module(dy)
    n, c, h, w = x_shape
    o, cg, kh, kw = weight.shape
    _, ho, wo = dy.shape[1:]
    m = n * ho * wo
    hp, wp = x_pad.shape[1:3]
    geom = ((kh, kw), stride, dilation, (ho, wo))
    dy_nhwc = dy.transpose(0, 2, 3, 1)
    dy_mat = dy_nhwc.reshape(m, o)  # (M, O); free when dy is channels-last
    db = column_sum(dy_mat) if has_bias else None

    if _is_pointwise(weight.shape, pads, stride, groups):
        dw = (dy_mat.T @ x_pad.reshape(m, c)).reshape(o, c, 1, 1)
        if not need_dx:
            return None, dw, db
        dx = (dy_mat @ weight.reshape(o, c)).reshape(n, h, w, c).transpose(0, 3, 1, 2)
        return dx, dw, db

    dx_pad = xp.zeros((n, hp, wp, c), dtype=dy.dtype) if need_dx else None
    if _is_depthwise(x_shape, weight.shape, groups):
        w_dw = weight.reshape(c, kh * kw)
        dw = xp.empty((c, kh * kw), dtype=dy.dtype)
        tmp = scratch(xp, (n, ho, wo, c), dy.dtype, "dw")
        for k in range(kh * kw):
            xv = _offset_view(x_pad, k // kw, k % kw, stride, dilation, (ho, wo))
            xp.multiply(dy_nhwc, xv, out=tmp)
            dw[:, k] = column_sum(tmp.reshape(m, c))
            if not need_dx:
                continue
            xp.multiply(dy_nhwc, w_dw[:, k], out=tmp)
            _offset_view(dx_pad, k // kw, k % kw, stride, dilation, (ho, wo))[...] += tmp
        dw = dw.reshape(o, 1, kh, kw)
    elif groups == 1:
        cols = im2col(x_pad, *geom, out=scratch(xp, (m * kh * kw * c,), dy.dtype, "cols"))
        dw = (cols.T @ dy_mat).reshape(kh, kw, c, o).transpose(3, 2, 0, 1)  # (O, C, kh, kw)
        if not need_dx:
            return None, xp.ascontiguousarray(dw), db
        w_off = weight.transpose(2, 3, 0, 1).reshape(kh * kw, o, c)  # per offset: (O, C)
        tmp = scratch(xp, (m, c), dy.dtype, "dx")
        for k in range(kh * kw):
            xp.matmul(dy_mat, w_off[k], out=tmp)  # (M, C)
            _offset_view(dx_pad, k // kw, k % kw, stride, dilation, (ho, wo))[...] += tmp.reshape(n, ho, wo, c)
    else:
        og = o // groups
        cols = im2col(x_pad, *geom, out=scratch(xp, (m * kh * kw * c,), dy.dtype, "cols"))
        cols_g = cols.reshape(m, kh * kw, groups, cg).transpose(2, 0, 1, 3).reshape(groups, m, kh * kw * cg)
        dy_g = dy_mat.reshape(m, groups, og).transpose(1, 0, 2)  # (g, M, Og)
        dw = xp.matmul(cols_g.transpose(0, 2, 1), dy_g)  # (g, kh·kw·Cg, Og)
        dw = dw.reshape(groups, kh, kw, cg, og).transpose(0, 4, 3, 1, 2).reshape(o, cg, kh, kw)
        if not need_dx:
            return None, dw, db
        w_g = weight.reshape(groups, og, cg, kh * kw)
        for k in range(kh * kw):
            part = xp.matmul(dy_g, w_g[:, :, :, k])  # (g, M, Cg)
            _offset_view(dx_pad, k // kw, k % kw, stride, dilation, (ho, wo))[...] += (
                part.transpose(1, 0, 2).reshape(n, ho, wo, c))
    if not need_dx:
        return None, dw, db
    dx = dx_pad[:, pads[0]:pads[0] + h, pads[2]:pads[2] + w, :].transpose(0, 3, 1, 2)
    return dx, xp.ascontiguousarray(dw), db
