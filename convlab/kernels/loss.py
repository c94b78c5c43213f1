"""Fused softmax cross-entropy on the GPU: the twin of `functional.softmax_cross_entropy` and its backward.

Forward: one warp per row computes the row maximum, log-sum-exp, the log-probabilities (kept for
backward, as the twin keeps them) and the row's loss, smoothing included; the batch mean is one
more reduction. Nothing is read back to the host: the loss stays a 0-d device array. A label
outside [0, K) makes its row's loss NaN instead of reading out of bounds.
"""

from __future__ import annotations

import numbers

from .build import KernelCache, blocks_for, f64, i32, i64, kernel, register

LOSS_SOURCE = register("loss", r"""
__device__ __forceinline__ real_t nan_max(real_t a, real_t b)
{
    return (b > a || b != b) ? b : a;  // NaN wins, as in numpy.max
}

// Warp w handles row w of logits (read through element strides (sn, sk)); writes logp (N, K)
// contiguous and row_loss[w] = (1 - eps) * (-logp[label]) - eps * mean(logp).
extern "C" __global__ void softmax_xent_forward(
    const real_t* __restrict__ logits, const long long* __restrict__ labels, real_t* __restrict__ logp,
    real_t* __restrict__ row_loss, int rows, int classes, long long sn, long long sk, double smoothing)
{
    const int row = (int)(((long long)blockIdx.x * blockDim.x + threadIdx.x) >> 5);
    const int lane = threadIdx.x & 31;
    if (row >= rows) return;
    const real_t* z = logits + (long long)row * sn;
    real_t m = REAL_NEG_INF;
    for (int k = lane; k < classes; k += 32) m = nan_max(m, z[(long long)k * sk]);
    for (int offset = 16; offset > 0; offset >>= 1) m = nan_max(m, __shfl_xor_sync(0xffffffffu, m, offset));
    real_t sum = (real_t)0;
    for (int k = lane; k < classes; k += 32) sum += exp(z[(long long)k * sk] - m);
    for (int offset = 16; offset > 0; offset >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, offset);
    const real_t lse = log(sum);
    real_t* out = logp + (long long)row * classes;
    real_t total = (real_t)0;
    for (int k = lane; k < classes; k += 32) {
        const real_t v = (z[(long long)k * sk] - m) - lse;
        out[k] = v;
        total += v;
    }
    for (int offset = 16; offset > 0; offset >>= 1) total += __shfl_xor_sync(0xffffffffu, total, offset);
    if (lane == 0) {
        const long long label = labels[row];
        real_t loss;
        if (label < 0 || label >= classes) {
            loss = (real_t)__int_as_float(0x7fc00000);
        } else {
            const real_t nll = -((z[label * sk] - m) - lse);
            loss = smoothing != 0.0
                ? (real_t)((1.0 - smoothing) * (double)nll - smoothing * (double)(total / (real_t)classes))
                : nll;
        }
        row_loss[row] = loss;
    }
}

// grad = (exp(logp) - eps / K - (1 - eps) * [k == label]) * scale, over the contiguous (N, K) logp.
extern "C" __global__ void softmax_xent_backward(
    const real_t* __restrict__ logp, const long long* __restrict__ labels, real_t* __restrict__ grad,
    long long total, int classes, double smoothing, double scale)
{
    for (long long e = (long long)blockIdx.x * blockDim.x + threadIdx.x; e < total;
         e += (long long)gridDim.x * blockDim.x) {
        const long long row = e / classes;
        const int k = (int)(e - row * classes);
        real_t g = exp(logp[e]);
        if (smoothing != 0.0) g -= (real_t)(smoothing / classes);
        if (labels[row] == k) g -= (real_t)(1.0 - smoothing);
        grad[e] = g * (real_t)scale;
    }
}
""", ("softmax_xent_forward", "softmax_xent_backward"))


def _labels(labels):
    import cupy

    labels = cupy.asarray(labels)
    if labels.dtype != cupy.int64 or not labels.flags.c_contiguous:
        labels = cupy.ascontiguousarray(labels, dtype=cupy.int64)
    return labels


def softmax_cross_entropy(logits, labels, label_smoothing=0.0):
    """logits (N, K), integer labels (N,) -> (0-d loss, cache): the CUDA twin of
    `functional.softmax_cross_entropy`. The cache is (logp, labels, label_smoothing)."""
    import cupy

    n, k = logits.shape
    labels = _labels(labels)
    logp = cupy.empty((n, k), dtype=logits.dtype)
    row_loss = cupy.empty(n, dtype=logits.dtype)
    sn, sk = (s // logits.itemsize for s in logits.strides)
    if n:
        kernel("loss", "softmax_xent_forward", logits.dtype)(
            (blocks_for(n * 32),), (256,),
            (logits, labels, logp, row_loss, i32(n), i32(k), i64(sn), i64(sk), f64(label_smoothing)))
    return row_loss.mean(), KernelCache((logp, labels, label_smoothing))


def softmax_cross_entropy_backward(cache, dloss=1.0):
    """Gradient of the mean loss with respect to the logits, (softmax − target)·dloss / N."""
    import cupy

    logp, labels, eps = cache
    logp = cupy.ascontiguousarray(logp)
    labels = _labels(labels)
    n, k = logp.shape
    device_scale = not isinstance(dloss, numbers.Real)
    grad = cupy.empty_like(logp)
    if grad.size:
        kernel("loss", "softmax_xent_backward", logp.dtype)(
            (blocks_for(grad.size),), (256,),
            (logp, labels, grad, i64(grad.size), i32(k), f64(eps),
             f64((1.0 if device_scale else float(dloss)) / n)))
    if device_scale:
        grad *= cupy.asarray(dloss, dtype=grad.dtype)
    return grad
