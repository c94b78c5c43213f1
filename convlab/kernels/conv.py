"""Convolution on the GPU: im2col and col2im kernels around cuBLAS GEMMs (the twin of `functional.conv`).

im2col reads the input in any layout and applies the padding itself (no padded copy); it writes
columns (groups, N·Ho·Wo, kh·kw·C/groups), which for one group is the twin's (N, Ho, Wo, kh, kw, C).
One block writes one output row (n, ho) of one group, a contiguous run of columns, so the writes
coalesce (the earlier kernel, a block per row and kernel offset, wrote runs of C values with
gaps: a third of ResNet-20's GPU time at batch 512 on an H100). col2im gathers instead of
scattering: each input pixel sums the column entries that saw it, so there are no atomics and
the result is deterministic. The cache keeps the input, not the columns (kh·kw times larger);
backward recomputes them.
"""

from __future__ import annotations

from .blas import matmul
from .build import THREADS, KernelCache, i32, i64, kernel, register
from .layout import element_strides
from .reduce import channel_sums

CONV_SOURCE = register("conv", r"""
__device__ __forceinline__ long long column_index(long long p, int ij, int c, int kk, int channels,
                                                  int group_channels, long long rows)
{
    if (group_channels == channels) return (p * kk + ij) * channels + c;
    const int g = c / group_channels, cc = c - g * group_channels;
    return ((long long)g * rows + p) * ((long long)kk * group_channels) + (long long)ij * group_channels + cc;
}

// cols[g, p, i, j, cc], p = (n*Ho + ho)*Wo + wo, c = g*Cg + cc; zero where the window reaches into
// the padding. x is read through its element strides (sn, sh, sw, sc) as (N, H, W, C).
// Grid: (N*Ho, groups). Block (row, g) writes the columns of output row `row` for group g, which
// are one contiguous run of Wo*kh*kw*Cg values, so consecutive threads write consecutive
// addresses. Each thread's position (wo, i, j, cc) in that run advances by the block size as a
// mixed-radix number (one carry per digit), so the loop does no division.
extern "C" __global__ void im2col(
    const real_t* __restrict__ x, real_t* __restrict__ cols,
    int height, int width, int channels, long long sn, long long sh, long long sw, long long sc,
    int out_h, int out_w, int kh, int kw, int stride_h, int stride_w, int pad_top, int pad_left,
    int dil_h, int dil_w, int group_channels, long long rows)
{
    const int row = blockIdx.x, g = blockIdx.y, cg = group_channels;
    const int n = row / out_h, ho = row - n * out_h;
    const long long inner = (long long)kh * kw * cg, span = (long long)out_w * inner;
    real_t* dst = cols + ((long long)g * rows + (long long)row * out_w) * inner;
    const real_t* src = x + (long long)n * sn + (long long)g * cg * sc;
    int t = threadIdx.x;
    int cc = t % cg; t /= cg;
    int j = t % kw; t /= kw;
    int i = t % kh;
    int wo = t / kh;
    t = blockDim.x;
    const int step_cc = t % cg; t /= cg;
    const int step_j = t % kw; t /= kw;
    const int step_i = t % kh;
    const int step_wo = t / kh;
    const int h0 = ho * stride_h - pad_top;
    for (long long e = threadIdx.x; e < span; e += blockDim.x) {
        const int h = h0 + i * dil_h;
        const int w = wo * stride_w - pad_left + j * dil_w;
        real_t v = (real_t)0;
        if (h >= 0 && h < height && w >= 0 && w < width)
            v = src[(long long)h * sh + (long long)w * sw + (long long)cc * sc];
        dst[e] = v;
        cc += step_cc;
        if (cc >= cg) { cc -= cg; ++j; }
        j += step_j;
        if (j >= kw) { j -= kw; ++i; }
        i += step_i;
        if (i >= kh) { i -= kh; ++wo; }
        wo += step_wo;
    }
}

// dx[n, h, w, c] (contiguous NHWC, the unpadded frame) = sum of the column entries that read
// input pixel (h, w): for each offset (i, j) with h + pad_top - i*dil_h = ho*stride_h, likewise w.
// Grid: N*H blocks, one per input row.
extern "C" __global__ void col2im(
    const real_t* __restrict__ cols, real_t* __restrict__ dx,
    int height, int width, int channels, int out_h, int out_w, int kh, int kw,
    int stride_h, int stride_w, int pad_top, int pad_left, int dil_h, int dil_w,
    int group_channels, long long rows)
{
    const int row = blockIdx.x;
    const int n = row / height, h = row - n * height;
    const int kk = kh * kw, span = width * channels;
    const int step_w = blockDim.x / channels, step_c = blockDim.x - step_w * channels;
    int w = threadIdx.x / channels, c = threadIdx.x - w * channels;
    for (int t = threadIdx.x; t < span; t += blockDim.x) {
        real_t sum = (real_t)0;
        for (int i = 0; i < kh; ++i) {
            const int hh = h + pad_top - i * dil_h;
            if (hh < 0) break;
            int ho = hh;
            if (stride_h != 1) {
                if (hh % stride_h) continue;
                ho = hh / stride_h;
            }
            if (ho >= out_h) continue;
            for (int j = 0; j < kw; ++j) {
                const int ww = w + pad_left - j * dil_w;
                if (ww < 0) break;
                int wo = ww;
                if (stride_w != 1) {
                    if (ww % stride_w) continue;
                    wo = ww / stride_w;
                }
                if (wo >= out_w) continue;
                const long long p = ((long long)n * out_h + ho) * out_w + wo;
                sum += cols[column_index(p, i * kw + j, c, kk, channels, group_channels, rows)];
            }
        }
        dx[((long long)row * width + w) * channels + c] = sum;
        c += step_c;
        w += step_w;
        if (c >= channels) { c -= channels; w += 1; }
    }
}
""", ("im2col", "col2im"))


def _block(span):
    """Threads per block for a row of `span` entries: a multiple of 32, at most THREADS."""
    return int(min(THREADS, max(32, -(-span // 32) * 32)))


def _launch_im2col(x_nhwc, pads, kernel_size, stride, dilation, out_hw, groups):
    """Columns (groups, N·Ho·Wo, kh·kw·C/groups) of an (N, H, W, C) view in any layout."""
    import cupy

    n, h, w, c = x_nhwc.shape
    (kh, kw), (sh, sw), (dh, dw), (ho, wo) = kernel_size, stride, dilation, out_hw
    rows = n * ho * wo
    cg = c // groups
    cols = cupy.empty((groups, rows, kh * kw * cg), dtype=x_nhwc.dtype)
    sn, s_h, s_w, s_c = element_strides(x_nhwc)
    if rows and cols.size:
        kernel("conv", "im2col", x_nhwc.dtype)(
            (n * ho, groups), (_block(wo * kh * kw * cg),),
            (x_nhwc, cols, i32(h), i32(w), i32(c), i64(sn), i64(s_h), i64(s_w), i64(s_c),
             i32(ho), i32(wo), i32(kh), i32(kw), i32(sh), i32(sw), i32(pads[0]), i32(pads[2]),
             i32(dh), i32(dw), i32(cg), i64(rows)))
    return cols


def _launch_col2im(cols, x_nhw_c, pads, kernel_size, stride, dilation, out_hw, groups):
    """dx (N, H, W, C), contiguous, from columns laid out as `_launch_im2col` writes them."""
    import cupy

    n, h, w, c = x_nhw_c
    (kh, kw), (sh, sw), (dh, dw), (ho, wo) = kernel_size, stride, dilation, out_hw
    dx = cupy.empty((n, h, w, c), dtype=cols.dtype)
    if dx.size:
        cols = cupy.ascontiguousarray(cols)
        kernel("conv", "col2im", cols.dtype)(
            (n * h,), (_block(w * c),),
            (cols, dx, i32(h), i32(w), i32(c), i32(ho), i32(wo), i32(kh), i32(kw), i32(sh), i32(sw),
             i32(pads[0]), i32(pads[2]), i32(dh), i32(dw), i32(c // groups), i64(n * ho * wo)))
    return dx


def im2col(x_pad, kernel_size, stride, dilation, out_hw, out=None):
    """Columns (N·Ho·Wo, kh·kw·C) of a padded NHWC input: the twin of `functional.im2col`."""
    n, _, _, c = x_pad.shape
    cols = _launch_im2col(x_pad, (0, 0, 0, 0), kernel_size, stride, dilation, out_hw, 1)[0]
    if out is not None:
        out = out.reshape(cols.shape)
        out[...] = cols
        return out
    return cols


def col2im(dcols, padded_hw, stride, dilation):
    """Sum (N, Ho, Wo, kh, kw, C) column gradients onto a padded NHWC input (twin of `functional.col2im`)."""
    n, ho, wo, kh, kw, c = dcols.shape
    cols = dcols.reshape(1, n * ho * wo, kh * kw * c)
    return _launch_col2im(cols, (n, padded_hw[0], padded_hw[1], c), (0, 0, 0, 0), (kh, kw), stride,
                          dilation, (ho, wo), 1)


def _geometry(x_shape, w_shape, stride, padding, dilation):
    from ..functional.conv import _pair, resolve_padding

    stride, dilation = _pair(stride, "stride"), _pair(dilation, "dilation")
    n, c, h, w = x_shape
    o, cg, kh, kw = w_shape
    pads = resolve_padding(padding, (kh, kw), stride, dilation)
    ho = (h + pads[0] + pads[1] - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    wo = (w + pads[2] + pads[3] - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    return stride, dilation, pads, (ho, wo)


def _weight_matrices(weight, groups):
    """(groups, kh·kw·Cg, Og): the weight as the right-hand side of the column GEMM."""
    o, cg, kh, kw = weight.shape
    og = o // groups
    return weight.reshape(groups, og, cg, kh, kw).transpose(0, 3, 4, 2, 1).reshape(groups, kh * kw * cg, og)


def _columns_are_input(x, w_shape, pads, stride, groups):
    """A 1×1, stride-1, unpadded, ungrouped convolution on channels-last input needs no im2col."""
    from .layout import is_channels_last

    return (w_shape[2:] == (1, 1) and not any(pads) and tuple(stride) == (1, 1) and groups == 1
            and is_channels_last(x))


def _columns(x, w_shape, pads, stride, dilation, out_hw, groups):
    n, c = x.shape[:2]
    if _columns_are_input(x, w_shape, pads, stride, groups):
        return x.transpose(0, 2, 3, 1).reshape(1, n * out_hw[0] * out_hw[1], c)
    return _launch_im2col(x.transpose(0, 2, 3, 1), pads, w_shape[2:], stride, dilation, out_hw, groups)


def conv2d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """Cross-correlate x (N, C, H, W) with weight (O, C/groups, kh, kw): the CUDA twin of
    `functional.conv2d`. Returns (y, cache); y is (N, O, Ho, Wo) with channels-last memory."""
    import cupy

    stride, dilation, pads, (ho, wo) = _geometry(x.shape, weight.shape, stride, padding, dilation)
    n = x.shape[0]
    o = weight.shape[0]
    m = n * ho * wo
    cols = _columns(x, weight.shape, pads, stride, dilation, (ho, wo), groups)  # (g, M, K)
    w_mats = _weight_matrices(weight, groups)  # (g, K, Og)
    if groups == 1:
        y = matmul(cols[0], w_mats[0])  # (M, O)
    else:
        y = cupy.ascontiguousarray(matmul(cols, w_mats).transpose(1, 0, 2)).reshape(m, o)  # (M, g·Og)
    del cols
    if bias is not None:
        y += bias
    y = y.reshape(n, ho, wo, o).transpose(0, 3, 1, 2)  # (N, O, Ho, Wo), channels-last memory
    cache = KernelCache((x, weight, pads, stride, dilation, groups, bias is not None, (ho, wo)))
    return y, cache


def conv2d_backward(dy, cache):
    """Gradients (dx, dweight, dbias) of `conv2d`; dbias is None when the layer has no bias."""
    import cupy

    x, weight, pads, stride, dilation, groups, has_bias, (ho, wo) = cache
    n, c, h, w = x.shape
    o, cg, kh, kw = weight.shape
    og = o // groups
    m = n * ho * wo
    dy_mat = dy.transpose(0, 2, 3, 1).reshape(m, o)  # (M, O); free when dy is channels-last
    db = channel_sums(dy_mat) if has_bias else None
    cols = _columns(x, weight.shape, pads, stride, dilation, (ho, wo), groups)  # (g, M, K)
    w_mats = _weight_matrices(weight, groups)  # (g, K, Og)
    if groups == 1:
        dw = matmul(cols[0].T, dy_mat)[None]  # (1, K, O)
        del cols
        dcols = matmul(dy_mat, w_mats[0].T)[None]  # (1, M, K)
    else:
        dy_g = dy_mat.reshape(m, groups, og).transpose(1, 0, 2)  # (g, M, Og)
        dw = matmul(cols.transpose(0, 2, 1), dy_g)  # (g, K, Og)
        del cols
        dcols = matmul(dy_g, w_mats.transpose(0, 2, 1))  # (g, M, K)
    dw = dw.reshape(groups, kh, kw, cg, og).transpose(0, 4, 3, 1, 2).reshape(o, cg, kh, kw)
    if _columns_are_input(x, weight.shape, pads, stride, groups):
        dx = dcols[0].reshape(n, h, w, c)
    else:
        dx = _launch_col2im(dcols, (n, h, w, c), pads, (kh, kw), stride, dilation, (ho, wo), groups)
    return dx.transpose(0, 3, 1, 2), cupy.ascontiguousarray(dw), db
