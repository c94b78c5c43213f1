"""Fused batch normalisation, forward and backward: the GPU twin of `functional.batch_norm`.

Forward is three launches whatever the channel count: per-channel partial sums of (x − s) and
(x − s)² in double (s: the channel's first value), one fold that also yields 1/σ and updates
the running statistics in place, and one pass writing x̂ and y. Backward is the same shape:
partial Σdy and Σdy·x̂, a fold giving dweight, dbias and the two mean terms, and one pass for dx.
The cache, (x̂ in x's layout, 1/σ, weight, training, has_bias), is this module's own: pair
`batch_norm` with `batch_norm_backward` here.
"""

from __future__ import annotations

from .build import THREADS, KernelCache, blocks_for, f64, i32, i64, kernel, register
from .layout import channel_inner, same_layout, with_channel_layout
from .reduce import BLOCK_SUM_SOURCE, SUM_PRODUCT, SUM_SQ_SHIFTED, channel_partials

BATCH_NORM_SOURCE = register("batch_norm", BLOCK_SUM_SOURCE + r"""
__device__ __forceinline__ void fold(const double* partial, int parts, int channels, int c,
                                     double& s1, double& s2)
{
    s1 = 0.0; s2 = 0.0;
    for (int p = threadIdx.x; p < parts; p += blockDim.x) {
        s1 += partial[(long long)p * channels + c];
        s2 += partial[(long long)(parts + p) * channels + c];
    }
    block_sum2(s1, s2);
}

// Training statistics of channel c = blockIdx.x from the shifted partial sums: mean, 1/sqrt(var + eps)
// (biased variance, as used for normalising) and, when update != 0, the running averages
// (unbiased variance), r <- (1 - factor) r + factor v.
extern "C" __global__ void bn_forward_fold(
    const double* __restrict__ partial, int parts, int channels, const real_t* __restrict__ x,
    long long inner, double count, double eps, int update, double factor,
    real_t* running_mean, real_t* running_var, real_t* mean, real_t* inv_std)
{
    const int c = blockIdx.x;
    double s1, s2;
    fold(partial, parts, channels, c, s1, s2);
    if (threadIdx.x == 0) {
        const double shifted_mean = s1 / count;
        const double m = (double)x[(long long)c * inner] + shifted_mean;
        double var = s2 / count - shifted_mean * shifted_mean;
        if (var < 0.0) var = 0.0;
        mean[c] = (real_t)m;
        inv_std[c] = (real_t)(1.0 / sqrt(var + eps));
        if (update) {
            running_mean[c] = (real_t)((1.0 - factor) * (double)running_mean[c] + factor * m);
            running_var[c] = (real_t)((1.0 - factor) * (double)running_var[c]
                                      + factor * var * count / (count - 1.0));
        }
    }
}

// Evaluation: 1/sqrt(running_var + eps) per channel.
extern "C" __global__ void bn_eval_inv_std(const real_t* __restrict__ running_var, double eps,
                                           real_t* __restrict__ inv_std, int channels)
{
    const int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c < channels) inv_std[c] = (real_t)(1.0 / sqrt((double)running_var[c] + eps));
}

// x_hat = (x - mean) * inv_std and y = x_hat * weight + bias (then max(y, 0) when relu != 0),
// in x's own layout.
extern "C" __global__ void bn_forward_apply(
    const real_t* __restrict__ x, const real_t* __restrict__ mean, const real_t* __restrict__ inv_std,
    const real_t* __restrict__ weight, const real_t* __restrict__ bias,
    real_t* __restrict__ x_hat, real_t* __restrict__ y,
    long long total, int channels, long long inner, int has_weight, int has_bias, int relu)
{
    for (long long e = (long long)blockIdx.x * blockDim.x + threadIdx.x; e < total;
         e += (long long)gridDim.x * blockDim.x) {
        const int c = (int)((inner == 1 ? e : e / inner) % channels);
        const real_t xh = (x[e] - mean[c]) * inv_std[c];
        x_hat[e] = xh;
        real_t v = has_weight ? xh * weight[c] : xh;
        if (has_bias) v = v + bias[c];
        if (relu && v < (real_t)0) v = (real_t)0;  // NaN stays NaN, as in max(y, 0)
        y[e] = v;
    }
}

// Per channel: dbias = sum(dy), dweight = sum(dy * x_hat), and the coefficients of
// dx = (dy - a1 - x_hat * a2) * scale with scale = inv_std * weight; a1 = a2 = 0 in evaluation.
extern "C" __global__ void bn_backward_fold(
    const double* __restrict__ partial, int parts, int channels, double count, int training,
    const real_t* __restrict__ inv_std, const real_t* __restrict__ weight, int has_weight,
    real_t* dweight, real_t* dbias, real_t* a1, real_t* a2, real_t* scale)
{
    const int c = blockIdx.x;
    double s1, s2;
    fold(partial, parts, channels, c, s1, s2);
    if (threadIdx.x == 0) {
        dbias[c] = (real_t)s1;
        dweight[c] = (real_t)s2;
        a1[c] = training ? (real_t)(s1 / count) : (real_t)0;
        a2[c] = training ? (real_t)(s2 / count) : (real_t)0;
        scale[c] = has_weight ? inv_std[c] * weight[c] : inv_std[c];
    }
}

extern "C" __global__ void bn_backward_apply(
    const real_t* __restrict__ dy, const real_t* __restrict__ x_hat, const real_t* __restrict__ a1,
    const real_t* __restrict__ a2, const real_t* __restrict__ scale, real_t* __restrict__ dx,
    long long total, int channels, long long inner)
{
    for (long long e = (long long)blockIdx.x * blockDim.x + threadIdx.x; e < total;
         e += (long long)gridDim.x * blockDim.x) {
        const int c = (int)((inner == 1 ? e : e / inner) % channels);
        dx[e] = (dy[e] - a1[c] - x_hat[e] * a2[c]) * scale[c];
    }
}
""", ("bn_forward_fold", "bn_eval_inv_std", "bn_forward_apply", "bn_backward_fold", "bn_backward_apply"))


def _check(x, weight, bias, running_mean, running_var):
    for name, a in (("weight", weight), ("bias", bias), ("running_mean", running_mean),
                    ("running_var", running_var)):
        if a is not None and a.dtype != x.dtype:
            raise TypeError(
                f"batch_norm (CUDA): {name} has dtype {a.dtype} but the input has {x.dtype}; "
                "move the layer with .to(dtype=...) so they agree"
            )


def batch_norm(x, weight, bias, running_mean, running_var, training=True, momentum=0.1, eps=1e-5,
               num_batches_tracked=0, relu=False):
    """Normalise x per channel (the CUDA twin of `functional.batch_norm`); returns (y, cache).
    relu=True applies max(y, 0) in the same pass (the twin's fused ReLU)."""
    import cupy

    _check(x, weight, bias, running_mean, running_var)
    c = x.shape[1]
    count = x.size // c
    if training and count < 2:
        raise ValueError(
            f"batch_norm: training needs more than one value per channel, got input shape {x.shape}"
        )
    mean = cupy.empty(c, dtype=x.dtype)
    inv_std = cupy.empty(c, dtype=x.dtype)
    if training:
        partial, parts, x, _ = channel_partials(x, SUM_SQ_SHIFTED)
        update = running_mean is not None
        factor = (1.0 / max(num_batches_tracked, 1)) if momentum is None else momentum
        kernel("batch_norm", "bn_forward_fold", x.dtype)(
            (c,), (THREADS,),
            (partial, i32(parts), i32(c), x, i64(channel_inner(x)), f64(count), f64(eps), i32(update),
             f64(factor), running_mean if update else mean, running_var if update else inv_std,
             mean, inv_std))
    else:
        if running_mean is None:
            raise ValueError("batch_norm: evaluation mode needs running statistics, got running_mean=None")
        x = with_channel_layout(x)
        mean = running_mean
        kernel("batch_norm", "bn_eval_inv_std", x.dtype)(
            (blocks_for(c),), (THREADS,), (running_var, f64(eps), inv_std, i32(c)))
    x_hat = cupy.empty_like(x)
    y = cupy.empty_like(x)
    kernel("batch_norm", "bn_forward_apply", x.dtype)(
        (blocks_for(x.size),), (THREADS,),
        (x, mean, inv_std, mean if weight is None else weight, mean if bias is None else bias, x_hat, y,
         i64(x.size), i32(c), i64(channel_inner(x)), i32(weight is not None), i32(bias is not None),
         i32(bool(relu))))
    return y, KernelCache((x_hat, inv_std, weight, training, bias is not None))


def batch_norm_backward(dy, cache):
    """Gradients (dx, dweight, dbias), the CUDA twin of `functional.batch_norm_backward`."""
    import cupy

    x_hat, inv_std, weight, training, has_bias = cache
    c = dy.shape[1]
    count = dy.size // c
    partial, parts, dy, x_hat = channel_partials(same_layout(dy, x_hat), SUM_PRODUCT, x_hat)
    dweight = cupy.empty(c, dtype=dy.dtype)
    dbias = cupy.empty(c, dtype=dy.dtype)
    a1 = cupy.empty(c, dtype=dy.dtype)
    a2 = cupy.empty(c, dtype=dy.dtype)
    scale = cupy.empty(c, dtype=dy.dtype)
    kernel("batch_norm", "bn_backward_fold", dy.dtype)(
        (c,), (THREADS,),
        (partial, i32(parts), i32(c), f64(count), i32(bool(training)), inv_std,
         inv_std if weight is None else weight, i32(weight is not None), dweight, dbias, a1, a2, scale))
    dx = cupy.empty_like(x_hat)
    kernel("batch_norm", "bn_backward_apply", dy.dtype)(
        (blocks_for(dy.size),), (THREADS,),
        (dy, x_hat, a1, a2, scale, dx, i64(dy.size), i32(c), i64(channel_inner(x_hat))))
    return dx, (dweight if weight is not None else None), (dbias if has_bias else None)
