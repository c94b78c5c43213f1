"""Max pooling with argmax on the GPU: the twin of `functional.max_pool2d` and its backward.

Forward: one thread per output scans its window (padding counts as −inf; on ties the first offset
wins, as in the twin; a NaN wins its window, as in PyTorch) and keeps the winner's offset
i·kw + j. Backward gathers: each input pixel sums the output gradients of the windows it won,
which needs no atomics even when windows overlap. Outputs keep the input's layout (channels-last
or NCHW). The cache is this module's own: pair `max_pool2d` with `max_pool2d_backward` here.
"""

from __future__ import annotations

from .build import KernelCache, blocks_for, i32, i64, kernel, register
from .layout import element_strides, empty_channels_last, is_channels_last

POOL_SOURCE = register("pool", r"""
// Split flat index e of an (N, C, H, W) array into coordinates, for memory that is channels-last
// (channels_last != 0) or C-contiguous NCHW.
__device__ __forceinline__ void coordinates(long long e, int channels, int height, int width,
                                            int channels_last, int& n, int& c, int& h, int& w)
{
    if (channels_last) {
        c = (int)(e % channels); e /= channels;
        w = (int)(e % width); e /= width;
        h = (int)(e % height);
        n = (int)(e / height);
    } else {
        w = (int)(e % width); e /= width;
        h = (int)(e % height); e /= height;
        c = (int)(e % channels);
        n = (int)(e / channels);
    }
}

extern "C" __global__ void max_pool_forward(
    const real_t* __restrict__ x, real_t* __restrict__ y, int* __restrict__ argmax,
    long long total, int channels, int height, int width,
    long long xn, long long xc, long long xh, long long xw,
    int out_h, int out_w, int kh, int kw, int stride_h, int stride_w, int pad_h, int pad_w, int channels_last)
{
    for (long long e = (long long)blockIdx.x * blockDim.x + threadIdx.x; e < total;
         e += (long long)gridDim.x * blockDim.x) {
        int n, c, ho, wo;
        coordinates(e, channels, out_h, out_w, channels_last, n, c, ho, wo);
        const real_t* plane = x + (long long)n * xn + (long long)c * xc;
        const int h0 = ho * stride_h - pad_h, w0 = wo * stride_w - pad_w;
        real_t best = REAL_NEG_INF;
        int arg = 0;
        for (int i = 0; i < kh; ++i) {
            const int h = h0 + i;
            for (int j = 0; j < kw; ++j) {
                const int w = w0 + j;
                const real_t v = (h >= 0 && h < height && w >= 0 && w < width)
                                     ? plane[(long long)h * xh + (long long)w * xw] : REAL_NEG_INF;
                if ((i == 0 && j == 0) || v > best || v != v) {
                    best = v;
                    arg = i * kw + j;
                }
            }
        }
        y[e] = best;
        argmax[e] = arg;
    }
}

// dx[n, c, h, w] = sum of dy over the windows whose winning offset is (h + pad_h - ho*stride_h,
// w + pad_w - wo*stride_w). dy and argmax are read through their own element strides.
extern "C" __global__ void max_pool_backward(
    const real_t* __restrict__ dy, const int* __restrict__ argmax, real_t* __restrict__ dx,
    long long total, int channels, int height, int width,
    long long gn, long long gc, long long gh, long long gw,
    long long an, long long ac, long long ah, long long aw,
    int out_h, int out_w, int kh, int kw, int stride_h, int stride_w, int pad_h, int pad_w, int channels_last)
{
    for (long long e = (long long)blockIdx.x * blockDim.x + threadIdx.x; e < total;
         e += (long long)gridDim.x * blockDim.x) {
        int n, c, h, w;
        coordinates(e, channels, height, width, channels_last, n, c, h, w);
        const int hp = h + pad_h, wp = w + pad_w;
        const int ho_lo = hp < kh ? 0 : (hp - kh) / stride_h + 1, ho_hi = min(hp / stride_h, out_h - 1);
        const int wo_lo = wp < kw ? 0 : (wp - kw) / stride_w + 1, wo_hi = min(wp / stride_w, out_w - 1);
        real_t sum = (real_t)0;
        for (int ho = ho_lo; ho <= ho_hi; ++ho) {
            for (int wo = wo_lo; wo <= wo_hi; ++wo) {
                const int offset = (hp - ho * stride_h) * kw + (wp - wo * stride_w);
                const long long a = n * an + c * ac + ho * ah + wo * aw;
                if (argmax[a] == offset) sum += dy[n * gn + c * gc + ho * gh + wo * gw];
            }
        }
        dx[e] = sum;
    }
}
""", ("max_pool_forward", "max_pool_backward"))


def _empty_like_layout(xp, shape, dtype, channels_last):
    return empty_channels_last(xp, shape, dtype) if channels_last else xp.empty(shape, dtype=dtype)


def max_pool2d(x, kernel_size, stride=None, padding=0, ceil_mode=False):
    """Max pooling of x (N, C, H, W): the CUDA twin of `functional.max_pool2d`; returns (y, cache)."""
    import cupy

    from ..functional.pool import _geometry

    k, s, p, out, (hb, wb) = _geometry(x.shape, kernel_size, stride, padding, ceil_mode, "max_pool2d")
    n, c, h, w = x.shape
    last = is_channels_last(x)
    y = _empty_like_layout(cupy, (n, c) + out, x.dtype, last)
    argmax = _empty_like_layout(cupy, (n, c) + out, cupy.int32, last)
    xn, xc, xh, xw = element_strides(x)
    if y.size:
        kernel("pool", "max_pool_forward", x.dtype)(
            (blocks_for(y.size),), (256,),
            (x, y, argmax, i64(y.size), i32(c), i32(h), i32(w), i64(xn), i64(xc), i64(xh), i64(xw),
             i32(out[0]), i32(out[1]), i32(k[0]), i32(k[1]), i32(s[0]), i32(s[1]), i32(p[0]), i32(p[1]),
             i32(last)))
    return y, KernelCache((argmax, x.shape, k, s, p, out, (hb, wb)))


def max_pool2d_backward(dy, cache):
    """Route each output gradient to the input that won its window: the twin of
    `functional.max_pool2d_backward`."""
    import cupy

    argmax, x_shape, k, s, p, out, _ = cache
    n, c, h, w = x_shape
    last = is_channels_last(dy)
    dx = _empty_like_layout(cupy, x_shape, dy.dtype, last)
    gn, gc, gh, gw = element_strides(dy)
    an, ac, ah, aw = element_strides(argmax)
    if dx.size:
        kernel("pool", "max_pool_backward", dy.dtype)(
            (blocks_for(dx.size),), (256,),
            (dy, argmax, dx, i64(dx.size), i32(c), i32(h), i32(w), i64(gn), i64(gc), i64(gh), i64(gw),
             i64(an), i64(ac), i64(ah), i64(aw), i32(out[0]), i32(out[1]), i32(k[0]), i32(k[1]),
             i32(s[0]), i32(s[1]), i32(p[0]), i32(p[1]), i32(last)))
    return dx
