"""One launch updates every parameter: fused SGD and Adam/AdamW steps, and zeroing many arrays.

The arrays of a step are described to the kernel by device tables of pointers, sizes and chunks
(4096 elements each; block b handles chunk b). A table is built on the host once and reused while
the same arrays come back (the usual case: parameters, gradients and optimiser buffers live for
the whole run), so a step is one launch (two with the `store_hyper` that writes the learning rate
to the device) and no host-device traffic. The update rules are
`convlab.optim`'s (PyTorch's), which are the reference the tests compare with; the optimiser's
per-parameter state dicts are used as they are ("momentum_buffer", "exp_avg", "exp_avg_sq").
"""

from __future__ import annotations

import numpy as np

from .build import f64, i32, kernel, register

CHUNK = 4096
_TABLES: dict = {}
_MAX_TABLES = 16

OPTIM_SOURCE = register("optim", r"""
#define CHUNK 4096

// Chunk blockIdx.x of tensor chunk_tensor[b]: its element range.
__device__ __forceinline__ void chunk_range(const int* chunk_tensor, const long long* sizes, int& t,
                                            long long& begin, long long& end)
{
    const int b = blockIdx.x;
    t = chunk_tensor[2 * b];
    begin = (long long)chunk_tensor[2 * b + 1] * CHUNK;
    end = min(begin + CHUNK, sizes[t]);
}

// The values a schedule may change every step (the learning rate and momentum; Adam's bias
// corrections and beta1) come from device memory, hyper[], written by store_hyper just before:
// a recorded CUDA graph then replays with the values of each step.

extern "C" __global__ void store_hyper(double* hyper, double a, double b, double c, double d)
{
    if (threadIdx.x == 0) { hyper[0] = a; hyper[1] = b; hyper[2] = c; hyper[3] = d; }
}

// w <- w - lr * d with d = g + weight_decay * w, momentum buffer b <- momentum * b + d
// (b <- d where fresh[t] != 0) and d <- b, or d <- d + momentum * b with Nesterov;
// hyper = (lr, momentum); has_momentum says whether the buffers exist (momentum != 0).
extern "C" __global__ void sgd_update(
    const unsigned long long* __restrict__ weights, const unsigned long long* __restrict__ grads,
    const unsigned long long* __restrict__ buffers, const int* __restrict__ fresh,
    const long long* __restrict__ sizes, const int* __restrict__ chunk_tensor,
    const double* __restrict__ hyper, int has_momentum, double weight_decay, int nesterov)
{
    int t;
    long long begin, end;
    chunk_range(chunk_tensor, sizes, t, begin, end);
    real_t* w = (real_t*)weights[t];
    const real_t* g = (const real_t*)grads[t];
    real_t* buf = has_momentum ? (real_t*)buffers[t] : (real_t*)0;
    const bool first = has_momentum && fresh[t] != 0;
    const real_t lr_ = (real_t)hyper[0], m = (real_t)hyper[1], wd = (real_t)weight_decay;
    for (long long e = begin + threadIdx.x; e < end; e += blockDim.x) {
        real_t d = g[e];
        if (weight_decay != 0.0) d = w[e] * wd + d;
        if (buf) {
            const real_t b = first ? d : buf[e] * m + d;
            buf[e] = b;
            d = nesterov ? d + m * b : b;
        }
        w[e] = w[e] - lr_ * d;
    }
}

// Adam (decoupled == 0: L2 added to the gradient) or AdamW (decoupled: w <- w (1 - lr wd) first);
// hyper = (lr, bias_correction1 = 1 - beta1^t, bias_correction2_sqrt = sqrt(1 - beta2^t), beta1).
extern "C" __global__ void adam_update(
    const unsigned long long* __restrict__ weights, const unsigned long long* __restrict__ grads,
    const unsigned long long* __restrict__ exp_avgs, const unsigned long long* __restrict__ exp_avg_sqs,
    const long long* __restrict__ sizes, const int* __restrict__ chunk_tensor,
    const double* __restrict__ hyper, double beta2, double eps, double weight_decay, int decoupled)
{
    const double lr = hyper[0], bias_correction1 = hyper[1], bias_correction2_sqrt = hyper[2];
    const double beta1 = hyper[3];
    int t;
    long long begin, end;
    chunk_range(chunk_tensor, sizes, t, begin, end);
    real_t* w = (real_t*)weights[t];
    const real_t* g = (const real_t*)grads[t];
    real_t* m = (real_t*)exp_avgs[t];
    real_t* v = (real_t*)exp_avg_sqs[t];
    const real_t b1 = (real_t)beta1, b2 = (real_t)beta2, wd = (real_t)weight_decay;
    const real_t step_size = (real_t)(lr / bias_correction1), bc2 = (real_t)bias_correction2_sqrt;
    const real_t decay = (real_t)(1.0 - lr * weight_decay);
    for (long long e = begin + threadIdx.x; e < end; e += blockDim.x) {
        real_t we = w[e], ge = g[e];
        if (weight_decay != 0.0) {
            if (decoupled) we = we * decay;
            else ge = we * wd + ge;
        }
        const real_t me = m[e] + (ge - m[e]) * ((real_t)1 - b1);
        const real_t ve = v[e] * b2 + ge * ge * ((real_t)1 - b2);
        m[e] = me;
        v[e] = ve;
        w[e] = we - step_size * (me / (sqrt(ve) / bc2 + (real_t)eps));
    }
}

extern "C" __global__ void zero_arrays(const unsigned long long* __restrict__ arrays,
                                       const long long* __restrict__ sizes,
                                       const int* __restrict__ chunk_tensor)
{
    int t;
    long long begin, end;
    chunk_range(chunk_tensor, sizes, t, begin, end);
    real_t* a = (real_t*)arrays[t];
    for (long long e = begin + threadIdx.x; e < end; e += blockDim.x) a[e] = (real_t)0;
}
""", ("store_hyper", "sgd_update", "adam_update", "zero_arrays"))


def _table(columns, fresh=None):
    """Device tables for arrays given as columns (lists of equal length): pointers per column,
    sizes, fresh flags and the (tensor, chunk) list. Cached by pointers, sizes and flags."""
    import cupy

    first = columns[0]
    key = (tuple(tuple(a.data.ptr for a in col) for col in columns), tuple(a.size for a in first),
           None if fresh is None else tuple(fresh), cupy.cuda.Device().id)
    table = _TABLES.get(key)
    if table is not None:
        return table
    sizes = np.array([a.size for a in first], dtype=np.int64)
    chunks = [(t, k) for t, size in enumerate(sizes) for k in range(-(-int(size) // CHUNK))]
    table = (
        [cupy.asarray(np.array([a.data.ptr for a in col], dtype=np.uint64)) for col in columns],
        cupy.asarray(np.array(fresh if fresh is not None else [0] * len(first), dtype=np.int32)),
        cupy.asarray(sizes),
        cupy.asarray(np.array(chunks, dtype=np.int32).reshape(-1)),
        len(chunks),
    )
    if len(_TABLES) >= _MAX_TABLES:
        _TABLES.pop(next(iter(_TABLES)))
    _TABLES[key] = table
    return table


def _contiguous(g):
    import cupy

    return g if g.flags.c_contiguous else cupy.ascontiguousarray(g)


def _check_weights(name, weights, grads):
    for w, g in zip(weights, grads):
        if not w.flags.c_contiguous:
            raise ValueError(f"{name}: parameters must be C-contiguous arrays, got strides {w.strides}")
        if g.shape != w.shape or g.dtype != w.dtype:
            raise ValueError(
                f"{name}: a gradient of shape {g.shape} and dtype {g.dtype} does not match its "
                f"parameter ({w.shape}, {w.dtype})"
            )


def _by_dtype(*columns):
    """Split parallel lists into groups of one dtype (each group is one launch)."""
    groups: dict = {}
    for row in zip(*columns):
        groups.setdefault(row[0].dtype, []).append(row)
    return [(dtype, [list(col) for col in zip(*rows)]) for dtype, rows in groups.items()]


def hyper_buffer():
    """A device array for the values `store_hyper` writes (float64, room for three)."""
    import cupy

    return cupy.zeros(4, dtype=np.float64)


def store_hyper(hyper, *values):
    """Write up to four float64 values into `hyper` on the current stream (one tiny launch)."""
    a, b, c, d = (tuple(float(v) for v in values) + (0.0,) * 4)[:4]
    kernel("optim", "store_hyper", np.float32)((1,), (32,), (hyper, f64(a), f64(b), f64(c), f64(d)))


def _hyper(hyper, store, *values):
    """The device array the update kernel reads its learning rate from: `hyper` (written first
    unless store=False, as while a graph is recorded) or a fresh one."""
    if hyper is None:
        hyper = hyper_buffer()
        store = True
    if store:
        store_hyper(hyper, *values)
    return hyper


def sgd_step_(weights, grads, states, lr, momentum=0.0, nesterov=False, weight_decay=0.0, hyper=None,
              store=True):
    """One SGD step over every (weight, grad, state) in one launch per dtype, in place.

    `states` are the optimiser's per-parameter dicts; a missing "momentum_buffer" is created and
    set to the first direction, as `convlab.optim.SGD` does. The kernel reads `lr` from device
    memory: `hyper` (from `hyper_buffer`), where (lr, momentum) are stored first unless store=False
    (a CUDA graph being recorded: whoever replays it stores the step's values before each launch).
    """
    import cupy

    _check_weights("sgd_step_", weights, grads)
    grads = [_contiguous(g) for g in grads]
    fresh = []
    buffers = []
    for w, s in zip(weights, states):
        buf = s.get("momentum_buffer") if momentum else None
        fresh.append(int(momentum != 0 and buf is None))
        if momentum and buf is None:
            buf = s["momentum_buffer"] = cupy.empty_like(w)
        buffers.append(buf if buf is not None else w)
    hyper = _hyper(hyper, store, lr, momentum)
    for dtype, (ws, gs, bs, fr) in _by_dtype(weights, grads, buffers, fresh):
        (wp, gp, bp), fresh_dev, sizes, chunks, count = _table((ws, gs, bs), fr)
        kernel("optim", "sgd_update", dtype)(
            (count,), (256,),
            (wp, gp, bp, fresh_dev, sizes, chunks, hyper, i32(momentum != 0), f64(weight_decay),
             i32(bool(nesterov))))


def adam_hyper(lr, betas, step):
    """The values Adam's kernel reads from device memory: lr, the two bias corrections, beta1."""
    return lr, 1 - betas[0] ** step, float(np.sqrt(1 - betas[1] ** step)), betas[0]


def adam_step_(weights, grads, states, lr, betas, eps, weight_decay, step, decoupled=False, hyper=None,
               store=True):
    """One Adam (or AdamW, `decoupled=True`) step over every parameter, in place; `step` is the
    1-based step count. Missing "exp_avg" / "exp_avg_sq" states are created as zeros. `hyper` and
    `store` as in `sgd_step_`; the stored values are `adam_hyper(lr, betas, step)`."""
    import cupy

    _check_weights("adam_step_", weights, grads)
    grads = [_contiguous(g) for g in grads]
    avgs, sqs = [], []
    for w, s in zip(weights, states):
        if s.get("exp_avg") is None:
            s["exp_avg"] = cupy.zeros_like(w)
            s["exp_avg_sq"] = cupy.zeros_like(w)
        avgs.append(s["exp_avg"])
        sqs.append(s["exp_avg_sq"])
    beta2 = betas[1]
    hyper = _hyper(hyper, store, *adam_hyper(lr, betas, step))
    for dtype, (ws, gs, ms, vs) in _by_dtype(weights, grads, avgs, sqs):
        (wp, gp, mp, vp), _, sizes, chunks, count = _table((ws, gs, ms, vs))
        kernel("optim", "adam_update", dtype)(
            (count,), (256,),
            (wp, gp, mp, vp, sizes, chunks, hyper, f64(beta2), f64(eps), f64(weight_decay),
             i32(bool(decoupled))))


def zero_(arrays):
    """Set every array (C-contiguous, float32/float64) to zero: one launch per dtype."""
    arrays = [a for a in arrays if a is not None and a.size]
    for a in arrays:
        if not a.flags.c_contiguous:
            raise ValueError(f"zero_: arrays must be C-contiguous, got strides {a.strides}")
    for dtype, (col,) in _by_dtype(arrays):
        (ptrs,), _, sizes, chunks, count = _table((col,))
        kernel("optim", "zero_arrays", dtype)((count,), (256,), (ptrs, sizes, chunks))
