"""2-D cross-correlation ("convolution" in deep-learning usage) and its backward pass.

The input is padded and gathered into columns ordered channels-last, (N·Ho·Wo, kh·kw·C), so
im2col is one strided copy and the layer is one BLAS GEMM per group. The batch runs in chunks
of a few images on convlab's threads, so a chunk's columns stay in cache between the copy and
the GEMM. Backward recomputes the columns (cheaper than keeping them: they are kh·kw times the
input); at stride 1 the input gradient is itself a correlation (of dy with the flipped kernel),
otherwise it goes back one kernel offset at a time, GEMM then strided add: no col2im scatter.
"""

from __future__ import annotations

import functools

import numpy as np
from numpy.lib.stride_tricks import as_strided as _np_as_strided

from .. import kernels
from ..backend import get_array_module
from ..parallel import Sums, grain_for, parallel_for
from .activation import relu_inplace
from .linear import column_sum, reduce_matmul, tall_matmul
from .workspace import scratch, zero_bordered


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


def _fast_view(xp, a):
    """Whether `_as_strided` builds its view of `a` with the ndarray constructor."""
    return xp is np and a.flags.c_contiguous


def _pad_nhwc(x_nhwc, pads, xp, slot="pad"):
    """x (N, H, W, C) with zeros around it, in this thread's buffer for `slot` and this geometry,
    whose border is already zero (see `zero_bordered`); x itself when there is no padding."""
    pt, pb, pl, pr = pads
    if not any(pads):
        return x_nhwc
    n, h, w, c = x_nhwc.shape
    out = zero_bordered(xp, (n, h + pt + pb, w + pl + pr, c), x_nhwc.dtype, slot, pads)
    out[:, pt:pt + h, pl:pl + w, :] = x_nhwc
    return out


def _as_strided(xp, a, shape, strides, offset=0):
    """A strided view of `a`'s memory, `offset` bytes in (an offset only for a C-contiguous
    NumPy array: see `_fast_view`).

    For a C-contiguous NumPy array the view is built by the ndarray constructor, which also
    checks that it stays inside `a` (0.7 µs, against 3 µs for as_strided: a LeNet-5 training
    step builds dozens, each holding the GIL the other thread waits for). Otherwise it is
    NumPy's or CuPy's as_strided, which checks nothing."""
    if _fast_view(xp, a):
        return np.ndarray(shape, a.dtype, a, offset, strides)
    if offset:
        raise ValueError("_as_strided: an offset needs a C-contiguous NumPy array")
    if xp is np:
        return _np_as_strided(a, shape, strides)
    from cupy.lib.stride_tricks import as_strided
    return as_strided(a, shape, strides)


def _windows(x_pad, kernel_size, stride, dilation, out_hw):
    """A (N, Ho, Wo, kh, kw, C) strided view of every window of a padded NHWC input (no copy)."""
    xp = get_array_module(x_pad)
    n, _, _, c = x_pad.shape
    sn, sh_, sw_, sc = x_pad.strides
    (kh, kw), (sh, sw), (dh, dw), (ho, wo) = kernel_size, stride, dilation, out_hw
    return _as_strided(xp, x_pad, (n, ho, wo, kh, kw, c), (sn, sh_ * sh, sw_ * sw, sh_ * dh, sw_ * dw, sc))


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


def row_expand(x_pad, kw, stride_w, dilation_w, wo, out, rows=None):
    """Expand a padded NHWC input along the kernel's width only: (N, Hp·Wo, kw·C), each row the
    kw·C values a window row sees. At stride 1 in height, the columns of kernel row i are then
    the contiguous slice of rows [i·dh·Wo, i·dh·Wo + Ho·Wo): a third of full im2col's copy for
    a 3×3 kernel, and kh GEMMs with K = kw·C instead of one with kh·kw·C.

    rows=(r0, r1) expands only the input rows r0 to r1 and leaves the others unwritten: the rows
    of padding above and below, which `_row_matmul` skips (LeNet's second layer pads dy by 4 rows
    top and bottom for its input gradient: 8 of 18 rows)."""
    xp = get_array_module(x_pad)
    n, hp, _, c = x_pad.shape
    r0, r1 = (0, hp) if rows is None else rows
    sn, sh_, sw_, sc = x_pad.strides
    dst = out.reshape(n, hp, wo, kw, c)[:, r0:r1]
    strides = (sn, sh_, sw_ * stride_w, sw_ * dilation_w, sc)
    if _fast_view(xp, x_pad):  # rows r0 on, as an offset into x_pad
        src = _as_strided(xp, x_pad, dst.shape, strides, offset=r0 * sh_)
    else:
        src = _as_strided(xp, x_pad[:, r0:r1], dst.shape, strides)
    xp.copyto(dst, src)
    return out.reshape(n, hp * wo, kw * c)


def _row_matmul(z, w_rows, dh, out_hw, out, tmp, pad_rows=(0, 0)):
    """out (N, Ho·Wo, O) = Σ_i z[:, kernel row i's slice] @ w_rows[i], for row-expanded z.

    pad_rows = (top, bottom): rows of zeros that z's input was padded with. Output rows whose
    kernel row i falls on them get nothing from it, so each GEMM skips them (a full correlation
    with a 5×5 kernel, LeNet's second layer backward, pads by 4: 29% of the rows). Those rows of
    z are never read, so callers leave them unwritten (`row_expand(rows=...)`)."""
    xp = get_array_module(z)
    ho, wo = out_hw
    kh = w_rows.shape[0]
    real = (ho - 1) + (kh - 1) * dh + 1 - pad_rows[0] - pad_rows[1]  # input rows that are data
    for i in range(kh):
        h0 = min(max(pad_rows[0] - i * dh, 0), ho)
        h1 = max(min(pad_rows[0] + real - i * dh, ho), h0)
        r = i * dh * wo
        zi = z[:, r + h0 * wo:r + h1 * wo]
        if i == 0:
            xp.matmul(zi, w_rows[0], out=out[:, h0 * wo:h1 * wo])
            out[:, :h0 * wo] = 0
            out[:, h1 * wo:] = 0
        elif h1 > h0:
            part = tmp[:, :(h1 - h0) * wo]
            xp.matmul(zi, w_rows[i], out=part)
            out[:, h0 * wo:h1 * wo] += part


def _by_rows(groups, stride, pointwise, w_shape):
    """Whether the row expansion applies and pays: one group, stride 1 in height, and few
    channels (kw·C ≤ 192, O ≤ 64; its kh - 1 extra passes over the output grow with O). Measured
    at batch 256, 3×3: C = O = 16 at 32×32 runs forward 10.6 ms (im2col 13.4), backward 20.5
    (24.6); C = O = 64 at 8×8, 6.7 (7.6) and 13.8 (14.6); C = 64 → O = 128 at 16×16 loses 3%."""
    o, c, _, kw = w_shape
    return groups == 1 and stride[0] == 1 and not pointwise and kw * c <= 192 and o <= 64


def _planar(x, weight, groups):
    """True when the columns are cheaper gathered plane by plane, (C·kh·kw, N·Ho·Wo): the input's
    rows are contiguous (NCHW data, or one channel) and a channels-last window row (kw·C values)
    is too short to copy fast, as in a network's first layer."""
    c, kw = x.shape[1], weight.shape[3]
    return groups == 1 and x.strides[3] == x.itemsize and c * kw < 16


def _planar_cols(xp, k, m, dtype, ones):
    """A (k, m) buffer for planar columns; with ones=True, (k + 1, m) whose last row is ones, kept
    from call to call (`zero_bordered`: only rows :k are written), so a layer with a bias gets it
    from the GEMM, forward and backward alike, instead of a pass over its output or a fill."""
    if not ones:
        return scratch(xp, (k, m), dtype, "cols")
    return zero_bordered(xp, (k + 1, m), dtype, "planar cols", "ones row", init=lambda b: b[k].fill(1))


def im2col_planar(x, pads, kernel_size, stride, dilation, out_hw, out):
    """Copy the windows of x (N, C, H, W), zero-padded by `pads`, into (C·kh·kw, N·Ho·Wo) columns:
    each row a shifted input plane, so the copy runs along image rows."""
    xp = get_array_module(x)
    n, c, h, w = x.shape
    pt, pb, pl, pr = pads
    if any(pads):
        xb = zero_bordered(xp, (n, c, h + pt + pb, w + pl + pr), x.dtype, "planar", pads)
        xb[:, :, pt:pt + h, pl:pl + w] = x
    else:
        xb = x
    (kh, kw), (sh, sw), (dh, dw), (ho, wo) = kernel_size, stride, dilation, out_hw
    sn, sc, sy, sx = xb.strides
    win = _as_strided(xp, xb, (c, kh, kw, n, ho, wo), (sc, sy * dh, sx * dw, sn, sy * sh, sx * sw))
    out = out.reshape(c, kh, kw, n, ho, wo)
    xp.copyto(out, win)
    return out.reshape(c * kh * kw, n * ho * wo)


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


_CHUNK_BYTES = 1 << 22


def _tiled_bias(bias, pixels, xp):
    """bias (O,) repeated over r pixels, r the largest divisor of `pixels` with r·O ≤ 2048, so
    adding it to (M, O) output rows, viewed as (M/r, r·O), runs along long rows: broadcasting
    the short (O,) row itself costs a loop per pixel (8× slower for LeNet's six channels)."""
    o = bias.shape[0]
    return xp.broadcast_to(bias, (_bias_repeats(o, pixels), o)).reshape(-1)  # np.tile, without its Python


@functools.lru_cache(maxsize=256)
def _bias_repeats(channels, pixels):
    return max(d for d in range(1, max(1, 2048 // channels) + 1) if pixels % d == 0)


def _chunk_grain(x_shape, w_shape, out_hw, rows=False):
    """Images per chunk: a chunk's columns, input and output take about 4 MiB. Smaller chunks
    fit L2 but pay more per-call overhead (Python, waking BLAS, handing the GIL between threads);
    4-8 MiB measured fastest here. rows: the row path's columns, kw·C per padded input row, a
    kh-th of im2col's (counting those as im2col's gave LeNet conv2 four chunks instead of two:
    in-process A/B, two threads, LeNet-5 training 8.34 -> 8.04 ms, ResNet-20 330 -> 314)."""
    n, c, h, w = x_shape
    o, cg, kh, kw = w_shape
    ho, wo = out_hw
    cols = (ho + kh - 1) * wo * kw * c if rows else ho * wo * kh * kw * c
    per_image = 4 * (cols + ho * wo * o + h * w * c)
    return grain_for(n, per_image, target=_CHUNK_BYTES)


def conv2d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, relu=False):
    """Cross-correlate x (N, C, H, W) with weight (O, C/groups, kh, kw); returns (y, cache).

    y is (N, O, Ho, Wo). Its memory is channels-last (a transposed view), which makes the next
    layer's im2col a plain strided copy; NumPy/CuPy elementwise ops keep that layout. The batch
    is split into chunks of a few images that run on convlab's threads (`convlab.parallel`).
    The cache keeps a view of x, not a copy: x must not change before the backward pass.
    relu=True returns max(y, 0), applied to each chunk while it is in cache (a ReLU fused in:
    one pass over the output fewer); pass that y as `relu_out` to conv2d_backward.
    """
    if kernels.accepts(x, weight):  # CuPy fast path; this function is its reference
        y, cache = kernels.conv2d(x, weight, bias, stride, padding, dilation, groups)
        return (kernels.relu(y)[0] if relu else y), cache
    xp = get_array_module(x)
    stride, dilation = _pair(stride, "stride"), _pair(dilation, "dilation")
    pads, _, (ho, wo) = _geometry(x.shape, weight.shape, stride, padding, dilation)
    n, c, h, w = x.shape
    o, cg, kh, kw = weight.shape
    x_nhwc = x.transpose(0, 2, 3, 1)
    geom = ((kh, kw), stride, dilation, (ho, wo))
    y = xp.empty((n * ho * wo, o), dtype=x.dtype)
    pointwise = _is_pointwise(weight.shape, pads, stride, groups)
    planar = not pointwise and _planar(x, weight, groups)
    by_rows = not pointwise and not planar and _by_rows(groups, stride, False, weight.shape)
    if pointwise:
        w_mat = weight.reshape(o, c).T

        def body(s, e, t):
            xp.matmul(x_nhwc[s:e].reshape(-1, c), w_mat, out=y[s * ho * wo:e * ho * wo])
    elif planar:
        k = c * kh * kw
        w_mat = weight.reshape(o, k).T
        if bias is not None:  # the bias as the weights of the columns' row of ones
            w_mat = xp.concatenate([w_mat, bias[None].astype(w_mat.dtype)])

        def body(s, e, t):
            buf = _planar_cols(xp, k, (e - s) * ho * wo, x.dtype, ones=bias is not None)
            im2col_planar(x[s:e], pads, *geom, out=buf[:k])
            tall_matmul(buf.T, w_mat, out=y[s * ho * wo:e * ho * wo])
    elif _is_depthwise(x.shape, weight.shape, groups):
        w_dw = xp.ascontiguousarray(weight[:, 0].transpose(1, 2, 0))  # (kh, kw, C)

        def body(s, e, t):
            x_pad = _pad_nhwc(x_nhwc[s:e], pads, xp)
            yc = y[s * ho * wo:e * ho * wo].reshape(e - s, ho, wo, c)
            yc[...] = xp.einsum("nhwijc,ijc->nhwc", _windows(x_pad, (kh, kw), stride, dilation, (ho, wo)), w_dw)
    else:
        og = o // groups
        w_g = weight.reshape(groups, og, cg, kh, kw).transpose(0, 3, 4, 2, 1).reshape(groups, kh * kw * cg, og)

        def body(s, e, t):
            m = (e - s) * ho * wo
            if by_rows:
                # _row_matmul skips the padding rows, so they are not expanded
                x_pad = _pad_nhwc(x_nhwc[s:e], pads, xp)
                z = row_expand(x_pad, kw, stride[1], dilation[1], wo,
                               out=scratch(xp, ((e - s) * x_pad.shape[1] * wo * kw * c,), x.dtype, "cols"),
                               rows=(pads[0], pads[0] + h))
                _row_matmul(z, w_g[0].reshape(kh, kw * c, o), dilation[0], (ho, wo),
                            out=y[s * ho * wo:e * ho * wo].reshape(e - s, ho * wo, o),
                            tmp=scratch(xp, (e - s, ho * wo, o), x.dtype, "rowtmp"), pad_rows=pads[:2])
                return
            x_pad = _pad_nhwc(x_nhwc[s:e], pads, xp)
            cols = im2col(x_pad, *geom, out=scratch(xp, (m * kh * kw * c,), x.dtype, "cols"))
            yc = y[s * ho * wo:e * ho * wo]
            if groups == 1:
                xp.matmul(cols, w_g[0], out=yc)
                return
            cols_g = cols.reshape(m, kh * kw, groups, cg).transpose(2, 0, 1, 3).reshape(groups, m, kh * kw * cg)
            yc[...] = xp.matmul(cols_g, w_g).transpose(1, 0, 2).reshape(m, o)

    bias_rows = None if bias is None or planar else _tiled_bias(bias, ho * wo, xp)

    def run(s, e, t):
        body(s, e, t)
        yc = y[s * ho * wo:e * ho * wo]
        if bias_rows is not None:
            yc.reshape(-1, bias_rows.shape[0])[...] += bias_rows
        if relu:
            relu_inplace(yc)

    parallel_for(n, _chunk_grain(x.shape, weight.shape, (ho, wo), by_rows), run, xp)
    y = y.reshape(n, ho, wo, o).transpose(0, 3, 1, 2)  # (N, O, Ho, Wo), channels-last memory
    cache = (x, weight, pads, stride, dilation, groups, bias is not None)
    return y, cache


def conv2d_backward(dy, cache, need_dx=True, relu_out=None):
    """Gradients (dx, dweight, dbias) of conv2d; dbias is None when the layer has no bias.

    need_dx=False skips the input gradient (dx is None): the first layer of a network, whose
    input is the data, has no use for it. relu_out is the y of a conv2d(relu=True): dy is then
    the gradient at the ReLU's output, masked by y > 0 chunk by chunk. Each chunk recomputes its
    columns (cheaper than keeping them: they are kh·kw times the input). At stride 1, dx is the
    correlation of dy, padded, with the flipped kernel: one im2col and one GEMM. Otherwise it
    goes back one kernel offset at a time, a GEMM then a strided add into the chunk's padded
    gradient. Neither scatters (col2im).
    """
    if kernels.owns(cache):
        if relu_out is not None:
            dy = kernels.relu_backward(dy, relu_out)
        dx, dw, db = kernels.conv2d_backward(dy, cache)
        return (dx if need_dx else None), dw, db
    x, weight, pads, stride, dilation, groups, has_bias = cache
    x_nhwc = x.transpose(0, 2, 3, 1)
    xp = get_array_module(dy)
    n, h, w, c = x_nhwc.shape
    o, cg, kh, kw = weight.shape
    _, ho, wo = dy.shape[1:]
    geom = ((kh, kw), stride, dilation, (ho, wo))
    dy_nhwc = dy.transpose(0, 2, 3, 1)
    mask_nhwc = None if relu_out is None else relu_out.transpose(0, 2, 3, 1)
    dx = xp.empty((n, h, w, c), dtype=dy.dtype) if need_dx else None
    sums = Sums()
    pointwise = _is_pointwise(weight.shape, pads, stride, groups)
    depthwise = _is_depthwise((n, c, h, w), weight.shape, groups)
    planar = not pointwise and _planar(x, weight, groups)
    by_rows = _by_rows(groups, stride, pointwise, weight.shape) and not depthwise
    og = o // groups
    w_off = weight.reshape(groups, og, cg, kh * kw).transpose(3, 0, 1, 2)  # per offset: (g, Og, Cg)
    # padding of dy that turns dx into a correlation (stride 1, padding within the kernel's reach)
    t_pads = ((kh - 1) * dilation[0] - pads[0], (kh - 1) * dilation[0] - pads[1],
              (kw - 1) * dilation[1] - pads[2], (kw - 1) * dilation[1] - pads[3])
    w_flip = dw_flip = None
    if need_dx and groups == 1 and not pointwise and stride == (1, 1) and min(t_pads) >= 0:
        w_flip = xp.ascontiguousarray(weight[:, :, ::-1, ::-1].transpose(2, 3, 0, 1)).reshape(kh * kw * o, c)
    if need_dx and depthwise and stride == (1, 1) and min(t_pads) >= 0:
        dw_flip = xp.ascontiguousarray(weight[:, 0, ::-1, ::-1].transpose(1, 2, 0))  # (kh, kw, C)

    def body(s, e, t):
        m = (e - s) * ho * wo
        dyc = dy_nhwc[s:e].reshape(m, o)  # free when dy is channels-last
        if mask_nhwc is not None:  # the fused ReLU's backward
            dyc = xp.multiply(dyc, mask_nhwc[s:e].reshape(m, o) > 0, out=scratch(xp, (m, o), dy.dtype, "relu"))
        db = column_sum(dyc) if has_bias and not planar else None
        if pointwise:
            xc = x_nhwc[s:e].reshape(m, c)
            sums.add(t, reduce_matmul(dyc.T, xc), db)
            if need_dx:
                xp.matmul(dyc, weight.reshape(o, c), out=dx[s:e].reshape(m, c))
            return
        if need_dx and w_flip is None and dw_flip is None:
            padded = (e - s, h + pads[0] + pads[1], w + pads[2] + pads[3], c)
            dx_pad = scratch(xp, padded, dy.dtype, "dxpad") if any(pads) else dx[s:e]
            dx_pad[...] = 0
        if planar:
            # the row of ones under the columns makes the bias gradient the product's last row
            k = c * kh * kw
            buf = _planar_cols(xp, k, m, dy.dtype, ones=has_bias)
            im2col_planar(x[s:e], pads, *geom, out=buf[:k])
            grads = reduce_matmul(buf, dyc)  # (C·kh·kw [+ 1], O)
            sums.add(t, grads[:k], grads[k] if has_bias else None)
        elif depthwise:
            x_pad = _pad_nhwc(x_nhwc[s:e], pads, xp)
            dy4 = dyc.reshape(e - s, ho, wo, c)
            # Σ over the chunk's pixels of dy · window, every offset in one pass over dy (no
            # product array per offset: 4.6× faster than a multiply and a column sum per offset)
            dw = xp.einsum("nhwc,nhwijc->ijc", dy4, _windows(x_pad, (kh, kw), stride, dilation, (ho, wo)))
            if dw_flip is not None:  # stride 1: dx correlates dy, padded, with the flipped kernel
                dy_pad = _pad_nhwc(dy4, t_pads, xp, "dypad")
                dx[s:e] = xp.einsum("nhwijc,ijc->nhwc", _windows(dy_pad, (kh, kw), (1, 1), dilation, (h, w)), dw_flip)
            elif need_dx:
                tmp = scratch(xp, (e - s, ho, wo, c), dy.dtype, "dw")
                for k in range(kh * kw):
                    xp.multiply(dy4, w_off[k, :, 0, 0], out=tmp)
                    _offset_view(dx_pad, k // kw, k % kw, stride, dilation, (ho, wo))[...] += tmp
            sums.add(t, dw.reshape(kh * kw, c), db)
        elif by_rows:
            x_pad = _pad_nhwc(x_nhwc[s:e], pads, xp)
            z = row_expand(x_pad, kw, stride[1], dilation[1], wo,
                           out=scratch(xp, ((e - s) * x_pad.shape[1] * wo * kw * c,), dy.dtype, "cols"))
            # every kernel row's slice of z as one (kh, N, kw·C, Ho·Wo) view: one batched product
            sn, sr, sk = z.strides
            z_rows = _as_strided(xp, z, (kh, e - s, kw * c, ho * wo), (dilation[0] * wo * sr, sn, sk, sr))
            dw_rows = xp.matmul(z_rows, dyc.reshape(1, e - s, ho * wo, o)).sum(axis=1)  # (kh, kw·C, O)
            sums.add(t, dw_rows.reshape(kh * kw * c, o), db)
        else:
            x_pad = _pad_nhwc(x_nhwc[s:e], pads, xp)
            cols = im2col(x_pad, *geom, out=scratch(xp, (m * kh * kw * c,), dy.dtype, "cols"))
            if groups == 1:
                sums.add(t, reduce_matmul(cols.T, dyc), db)  # (kh·kw·C, O)
            else:
                cols_g = cols.reshape(m, kh * kw, groups, cg).transpose(2, 0, 1, 3).reshape(groups, m, kh * kw * cg)
                sums.add(t, xp.matmul(cols_g.transpose(0, 2, 1), dyc.reshape(m, groups, og).transpose(1, 0, 2)), db)
        if need_dx and w_flip is not None:
            # Stride 1: dx is the full correlation of dy with the flipped kernel, one GEMM
            # _row_matmul skips dy's padding rows, so they are not expanded
            dy_pad = _pad_nhwc(dyc.reshape(e - s, ho, wo, o), t_pads, xp, "dypad")
            z = row_expand(dy_pad, kw, 1, dilation[1], w,
                           out=scratch(xp, ((e - s) * dy_pad.shape[1] * w * kw * o,), dy.dtype, "cols"),
                           rows=(t_pads[0], t_pads[0] + ho))
            _row_matmul(z, w_flip.reshape(kh, kw * o, c), dilation[0], (h, w),
                        out=dx[s:e].reshape(e - s, h * w, c), tmp=scratch(xp, (e - s, h * w, c), dy.dtype, "rowtmp"),
                        pad_rows=t_pads[:2])
            return
        if need_dx and not depthwise:
            dy_g = dyc.reshape(m, groups, og).transpose(1, 0, 2)  # (g, M, Og)
            tmp = scratch(xp, (groups, m, cg), dy.dtype, "dx")
            for k in range(kh * kw):
                xp.matmul(dy_g, w_off[k], out=tmp)  # (g, M, Cg)
                part = tmp[0] if groups == 1 else tmp.transpose(1, 0, 2)
                _offset_view(dx_pad, k // kw, k % kw, stride, dilation, (ho, wo))[...] += (
                    part.reshape(e - s, ho, wo, c))
        if need_dx and any(pads) and dw_flip is None:
            dx[s:e] = dx_pad[:, pads[0]:pads[0] + h, pads[2]:pads[2] + w, :]

    parallel_for(n, _chunk_grain((n, c, h, w), weight.shape, (ho, wo), by_rows and not planar), body, xp)
    dw, db = sums.total()
    if pointwise:
        dw = dw.reshape(o, c, 1, 1)
    elif depthwise:
        dw = dw.T.reshape(o, 1, kh, kw)
    elif planar:
        dw = dw.T.reshape(o, c, kh, kw)
    elif groups == 1:
        dw = dw.reshape(kh, kw, c, o).transpose(3, 2, 0, 1)  # (O, C, kh, kw)
    else:
        dw = dw.reshape(groups, kh, kw, cg, og).transpose(0, 4, 3, 1, 2).reshape(o, cg, kh, kw)
    return (None if dx is None else dx.transpose(0, 3, 1, 2)), xp.ascontiguousarray(dw), db
