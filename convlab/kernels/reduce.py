"""Per-channel sums over every axis but the channel axis, accumulated in double, in two launches.

The first launch writes partial sums, (P, C) of them; a second (here `channel_sums`, or batch
norm's own finalisers) folds the P partials of each channel. Two layouts are read in place:
channels-last (channel = e % C; each thread of a grid of P·C threads keeps one channel, so reads
are coalesced) and planar NCHW (one block per (n, c) plane of H·W values).

Modes: SUM (Σa), SUM_SQ_SHIFTED (Σ(a−s), Σ(a−s)² with s the channel's first value, so a variance
from them does not cancel catastrophically), SUM_PRODUCT (Σa, Σa·b).
"""

from __future__ import annotations

from .build import THREADS, blocks_for, i32, i64, kernel, register
from .layout import channel_inner, same_layout, with_channel_layout

SUM, SUM_SQ_SHIFTED, SUM_PRODUCT = 0, 1, 2

# Threads of the channels-last partial pass: enough to fill a large GPU several times over.
_PARTIAL_THREADS = 1 << 17

BLOCK_SUM_SOURCE = r"""
// Block-wide sum of two doubles; the result is valid in thread 0. blockDim.x is a multiple of 32.
__device__ __forceinline__ void block_sum2(double& s1, double& s2)
{
    __shared__ double shared1[32], shared2[32];
    for (int offset = 16; offset > 0; offset >>= 1) {
        s1 += __shfl_down_sync(0xffffffffu, s1, offset);
        s2 += __shfl_down_sync(0xffffffffu, s2, offset);
    }
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    if (lane == 0) { shared1[warp] = s1; shared2[warp] = s2; }
    __syncthreads();
    const int warps = blockDim.x >> 5;
    s1 = lane < warps ? shared1[lane] : 0.0;
    s2 = lane < warps ? shared2[lane] : 0.0;
    if (warp == 0) {
        for (int offset = 16; offset > 0; offset >>= 1) {
            s1 += __shfl_down_sync(0xffffffffu, s1, offset);
            s2 += __shfl_down_sync(0xffffffffu, s2, offset);
        }
    }
    __syncthreads();
}

"""

CHANNEL_SUMS_SOURCE = register("channel_sums", BLOCK_SUM_SOURCE + r"""
__device__ __forceinline__ void accumulate(int mode, real_t a, real_t b, real_t shift, double& s1, double& s2)
{
    if (mode == 1) {
        const double d = (double)a - (double)shift;
        s1 += d;
        s2 += d * d;
    } else if (mode == 2) {
        s1 += (double)a;
        s2 += (double)a * (double)b;
    } else {
        s1 += (double)a;
    }
}

// Channels-last: thread t (of P*C) sums elements t, t + P*C, ... which all belong to channel t % C.
// partial[t] and partial[P*C + t] receive the two sums, i.e. two (P, C) arrays.
extern "C" __global__ void channel_partials_last(
    const real_t* __restrict__ a, const real_t* __restrict__ b, double* __restrict__ partial,
    long long total, int channels, int threads_total, int mode)
{
    const int t = blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= threads_total) return;
    const real_t shift = mode == 1 ? a[t % channels] : (real_t)0;
    double s1 = 0.0, s2 = 0.0;
    for (long long e = t; e < total; e += threads_total)
        accumulate(mode, a[e], mode == 2 ? b[e] : (real_t)0, shift, s1, s2);
    partial[t] = s1;
    partial[threads_total + t] = s2;
}

// Planar NCHW: block r sums plane r = n*C + c (inner values); partial[r] and partial[rows + r].
extern "C" __global__ void channel_partials_planar(
    const real_t* __restrict__ a, const real_t* __restrict__ b, double* __restrict__ partial,
    int rows, int channels, long long inner, int mode)
{
    const int r = blockIdx.x;
    const long long base = (long long)r * inner;
    const real_t shift = mode == 1 ? a[(long long)(r % channels) * inner] : (real_t)0;
    double s1 = 0.0, s2 = 0.0;
    for (long long k = threadIdx.x; k < inner; k += blockDim.x)
        accumulate(mode, a[base + k], mode == 2 ? b[base + k] : (real_t)0, shift, s1, s2);
    block_sum2(s1, s2);
    if (threadIdx.x == 0) {
        partial[r] = s1;
        partial[rows + r] = s2;
    }
}

// Fold the (P, C) partials: block c writes channel c's sums (out2 only when two != 0).
extern "C" __global__ void channel_sums_finalize(
    const double* __restrict__ partial, int parts, int channels, real_t* out1, real_t* out2, int two)
{
    const int c = blockIdx.x;
    double s1 = 0.0, s2 = 0.0;
    for (int p = threadIdx.x; p < parts; p += blockDim.x) {
        s1 += partial[(long long)p * channels + c];
        if (two) s2 += partial[(long long)(parts + p) * channels + c];
    }
    block_sum2(s1, s2);
    if (threadIdx.x == 0) {
        out1[c] = (real_t)s1;
        if (two) out2[c] = (real_t)s2;
    }
}
""", ("channel_partials_last", "channel_partials_planar", "channel_sums_finalize"))

def channel_partials(a, mode, b=None):
    """Launch the partial pass over `a` (and `b`, same shape) -> (partial, P, a, b).

    `a` is read in place when it is channels-last or planar, else copied to channels-last; `b`
    is brought to `a`'s layout. `partial` holds two (P, C) float64 arrays back to back.
    """
    import cupy

    a = with_channel_layout(a)
    inner = channel_inner(a)
    b = a if b is None else same_layout(b, a)
    c = a.shape[1]
    total = a.size
    if inner == 1:
        rows = total // c
        parts = max(1, min(rows, _PARTIAL_THREADS // c))
        threads_total = parts * c
        partial = cupy.empty(2 * threads_total, dtype=cupy.float64)
        kernel("channel_sums", "channel_partials_last", a.dtype)(
            (blocks_for(threads_total, THREADS, cap=1 << 30),), (THREADS,),
            (a, b, partial, i64(total), i32(c), i32(threads_total), i32(mode)))
    else:
        parts = a.shape[0]
        rows = parts * c
        partial = cupy.empty(2 * rows, dtype=cupy.float64)
        kernel("channel_sums", "channel_partials_planar", a.dtype)(
            (rows,), (THREADS,), (a, b, partial, i32(rows), i32(c), i64(inner), i32(mode)))
    return partial, parts, a, b


def channel_sums(a, b=None):
    """Per-channel Σa (and Σa·b when `b` is given) over every axis but axis 1, in a's dtype."""
    import cupy

    mode = SUM if b is None else SUM_PRODUCT
    partial, parts, a, _ = channel_partials(a, mode, b)
    c = a.shape[1]
    out1 = cupy.empty(c, dtype=a.dtype)
    out2 = cupy.empty(c, dtype=a.dtype) if b is not None else out1
    kernel("channel_sums", "channel_sums_finalize", a.dtype)(
        (c,), (THREADS,), (partial, i32(parts), i32(c), out1, out2, i32(b is not None)))
    return out1 if b is None else (out1, out2)
