"""2-D cross-correlation ("convolution" in deep-learning usage) and its backward pass.

The input is padded and gathered into columns ordered channels-last, (N·Ho·Wo, kh·kw·C), so
im2col is kh·kw contiguous slice copies and the whole layer is one BLAS GEMM per group.
"""

from __future__ import annotations

from ..backend import get_array_module


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
    out = xp.zeros((n, h + pt + pb, w + pl + pr, c), dtype=x_nhwc.dtype)
    out[:, pt:pt + h, pl:pl + w, :] = x_nhwc
    return out


def im2col(x_nhwc, kernel_size, stride, dilation, out_hw):
    """Gather sliding windows of a padded NHWC input into (N, Ho, Wo, kh, kw, C) columns."""
    xp = get_array_module(x_nhwc)
    n, _, _, c = x_nhwc.shape
    kh, kw = kernel_size
    sh, sw = stride
    dh, dw = dilation
    ho, wo = out_hw
    cols = xp.empty((n, ho, wo, kh, kw, c), dtype=x_nhwc.dtype)
    for i in range(kh):
        for j in range(kw):
            r, s = i * dh, j * dw
            cols[:, :, :, i, j, :] = x_nhwc[:, r:r + sh * (ho - 1) + 1:sh, s:s + sw * (wo - 1) + 1:sw, :]
    return cols


def col2im(dcols, padded_hw, stride, dilation):
    """Sum (N, Ho, Wo, kh, kw, C) column gradients back onto the padded NHWC input."""
    xp = get_array_module(dcols)
    n, ho, wo, kh, kw, c = dcols.shape
    sh, sw = stride
    dh, dw = dilation
    hp, wp = padded_hw
    dx = xp.zeros((n, hp, wp, c), dtype=dcols.dtype)
    # One strided add per kernel offset: no scatter-add, no loop over pixels.
    for i in range(kh):
        for j in range(kw):
            r, s = i * dh, j * dw
            dx[:, r:r + sh * (ho - 1) + 1:sh, s:s + sw * (wo - 1) + 1:sw, :] += dcols[:, :, :, i, j, :]
    return dx


def conv2d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """Cross-correlate x (N, C, H, W) with weight (O, C/groups, kh, kw); returns (y, cache).

    y is (N, O, Ho, Wo). Its memory is channels-last (a transposed view), which makes the next
    layer's im2col a cheap copy; NumPy/CuPy elementwise ops keep that layout.
    """
    xp = get_array_module(x)
    stride, dilation = _pair(stride, "stride"), _pair(dilation, "dilation")
    o, cg, kh, kw = weight.shape
    pads = resolve_padding(padding, (kh, kw), stride, dilation)
    n, c, h, w = x.shape
    hp, wp = h + pads[0] + pads[1], w + pads[2] + pads[3]
    ho = (hp - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    wo = (wp - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    x_pad = _pad_nhwc(x.transpose(0, 2, 3, 1), pads, xp)  # (N, Hp, Wp, C)
    cols = im2col(x_pad, (kh, kw), stride, dilation, (ho, wo))  # (N, Ho, Wo, kh, kw, C)
    m = n * ho * wo
    if groups == 1:
        w_mat = weight.transpose(2, 3, 1, 0).reshape(kh * kw * c, o)  # (kh·kw·C, O)
        y = cols.reshape(m, kh * kw * c) @ w_mat  # (M, O)
    else:
        og = o // groups
        cols_g = cols.reshape(m, kh * kw, groups, cg).transpose(2, 0, 1, 3).reshape(groups, m, kh * kw * cg)
        w_g = weight.reshape(groups, og, cg, kh, kw).transpose(0, 3, 4, 2, 1).reshape(groups, kh * kw * cg, og)
        y = xp.matmul(cols_g, w_g).transpose(1, 0, 2).reshape(m, o)  # (M, O)
        w_mat = w_g
    if bias is not None:
        y += bias
    y = y.reshape(n, ho, wo, o).transpose(0, 3, 1, 2)  # (N, O, Ho, Wo), channels-last memory
    cache = (cols, w_mat, x.shape, weight.shape, pads, stride, dilation, groups, bias is not None)
    return y, cache


def conv2d_backward(dy, cache):
    """Gradients (dx, dweight, dbias) of conv2d; dbias is None when the layer has no bias."""
    cols, w_mat, x_shape, w_shape, pads, stride, dilation, groups, has_bias = cache
    xp = get_array_module(dy)
    n, c, h, w = x_shape
    o, cg, kh, kw = w_shape
    _, ho, wo, _, _, _ = cols.shape
    m = n * ho * wo
    dy_mat = dy.transpose(0, 2, 3, 1).reshape(m, o)  # (M, O); free when dy is channels-last
    db = dy_mat.sum(axis=0) if has_bias else None
    if groups == 1:
        cols_mat = cols.reshape(m, kh * kw * c)
        dw = (cols_mat.T @ dy_mat).reshape(kh, kw, c, o).transpose(3, 2, 0, 1)  # (O, C, kh, kw)
        dcols = dy_mat @ w_mat.T  # (M, kh·kw·C)
    else:
        og = o // groups
        cols_g = cols.reshape(m, kh * kw, groups, cg).transpose(2, 0, 1, 3).reshape(groups, m, kh * kw * cg)
        dy_g = dy_mat.reshape(m, groups, og).transpose(1, 0, 2)  # (g, M, Og)
        dw = xp.matmul(cols_g.transpose(0, 2, 1), dy_g)  # (g, kh·kw·Cg, Og)
        dw = dw.reshape(groups, kh, kw, cg, og).transpose(0, 4, 3, 1, 2).reshape(o, cg, kh, kw)
        dcols = xp.matmul(dy_g, w_mat.transpose(0, 2, 1))  # (g, M, kh·kw·Cg)
        dcols = dcols.reshape(groups, m, kh * kw, cg).transpose(1, 2, 0, 3)  # (M, kh·kw, g, Cg)
    dcols = dcols.reshape(n, ho, wo, kh, kw, c)
    hp, wp = h + pads[0] + pads[1], w + pads[2] + pads[3]
    dx_pad = col2im(dcols, (hp, wp), stride, dilation)  # (N, Hp, Wp, C)
    dx = dx_pad[:, pads[0]:pads[0] + h, pads[2]:pads[2] + w, :].transpose(0, 3, 1, 2)
    return dx, xp.ascontiguousarray(dw), db
