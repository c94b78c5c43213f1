"""Matrix products through cuBLAS that a CUDA graph can record.

CuPy refuses to call cuBLAS while a stream is being captured ("calling cuBLAS API during stream
capture is currently unsupported": its wrapper checks before every call), although cuBLAS itself
supports capture given a workspace of its own. So while `recording()` is on (set by
`convlab.train.graph.CapturedStep` around a capture), `matmul` calls cuBLAS directly through
ctypes: its own handle, its own 32 MiB workspace, `cublasGemmEx` / `cublasGemmStridedBatchedEx`
on the current stream, TF32 when `kernels.set_tf32(True)`. Otherwise `matmul` is `cupy.matmul`.

Row-major products map onto column-major cuBLAS as Cᵀ = Bᵀ·Aᵀ: a row-major operand is its own
transpose in column-major terms (op N), a column-major one (a transposed view) is op T; anything
else is copied first. `_describe` and `_product` hold that mapping; the tests run them against a
NumPy stand-in for cuBLAS on the CPU (tests/kernels), and against CuPy on a GPU.
"""

from __future__ import annotations

import contextlib
import ctypes
import threading

import numpy as np

OP_N, OP_T = 0, 1
CUDA_R_32F, CUDA_R_64F = 0, 1
COMPUTE_32F, COMPUTE_32F_FAST_TF32, COMPUTE_64F = 68, 77, 70
GEMM_DEFAULT = -1
WORKSPACE_BYTES = 32 << 20

_state = {"cublas": None}
_local = threading.local()  # a recording is made by one thread; others keep CuPy's matmul


def recording() -> bool:
    """True while this thread records a CUDA graph through `recording_graph`."""
    return getattr(_local, "depth", 0) > 0


@contextlib.contextmanager
def recording_graph():
    """Route this thread's `matmul` to the capturable cuBLAS path for the duration (nestable)."""
    prepare()
    _local.depth = getattr(_local, "depth", 0) + 1
    try:
        yield
    finally:
        _local.depth -= 1


def matmul(a, b):
    """a @ b for CuPy arrays (2-D, or 3-D batches of the same count; a 1-D `a` is a row)."""
    if not recording():
        import cupy

        return cupy.matmul(a, b)
    return _product(a, b, gemm_call)


# -- the row-major -> column-major mapping ------------------------------------------------------

def _describe(x):
    """(op, ld, batch stride) for a (batch, R, C) operand whose column-major reading is needed
    as a (C, R) matrix (op N: row-major memory) or as its transpose (op T: column-major memory);
    None when the memory is neither (then the caller copies). Strides are in elements."""
    item = x.dtype.itemsize
    sb, sr, sc = (s // item for s in x.strides)
    r, c = x.shape[1:]
    if sc == 1 or c == 1:
        ld = sr if r > 1 else max(c, 1)
        if ld >= max(c, 1):
            return OP_N, ld, sb
    if sr == 1 or r == 1:
        ld = sc if c > 1 else max(r, 1)
        if ld >= max(r, 1):
            return OP_T, ld, sb
    return None


def _product(a, b, call):
    """a @ b through `call` (a cublasGemmStridedBatchedEx-like function, see gemm_call)."""
    import cupy

    vector = a.ndim == 1
    if vector:
        a = a[None]
    batched = a.ndim == 3 or b.ndim == 3
    a3 = a if a.ndim == 3 else a[None]
    b3 = b if b.ndim == 3 else b[None]
    batch = max(a3.shape[0], b3.shape[0])
    if a3.shape[0] not in (1, batch) or b3.shape[0] not in (1, batch) or a3.shape[2] != b3.shape[1]:
        raise ValueError(f"matmul: shapes {a.shape} and {b.shape} do not multiply")
    if a.dtype != b.dtype:
        raise TypeError(f"matmul: both operands must have one dtype, got {a.dtype} and {b.dtype}")
    m, k = a3.shape[1:]
    n = b3.shape[2]
    out = cupy.empty((batch, m, n), dtype=a.dtype)
    if out.size:
        if k == 0:
            out[...] = 0
        else:
            pa, pb = _describe(a3), _describe(b3)
            if pa is None:
                a3 = cupy.ascontiguousarray(a3)
                pa = _describe(a3)
            if pb is None:
                b3 = cupy.ascontiguousarray(b3)
                pb = _describe(b3)
            (op_a, lda, sa), (op_b, ldb, sb) = pa, pb
            if a3.shape[0] == 1:
                sa = 0
            if b3.shape[0] == 1:
                sb = 0
            # Column-major: out^T (n x m) = op(B-memory) (n x k) @ op(A-memory) (k x m).
            call(op_b, op_a, n, m, k, b3, ldb, sb, a3, lda, sa, out, n, m * n, batch)
    if not batched:
        out = out[0]
    return out[0] if vector else out


# -- cuBLAS through ctypes -----------------------------------------------------------------------

class _Cublas:
    """A cuBLAS handle of our own with its own workspace; the stream is set per call. Only a
    thread that is recording uses it (the GUI trains in a worker thread)."""

    def __init__(self):
        import cupy

        cupy.cuda.device.get_cublas_handle()  # makes CuPy load libcublas
        self.lib = _load_library()
        handle = ctypes.c_void_p()
        _check(self.lib.cublasCreate_v2(ctypes.byref(handle)), "cublasCreate")
        self.handle = handle
        self.workspace = cupy.empty(WORKSPACE_BYTES, dtype=np.uint8)
        self.stream = None
        for name in ("cublasGemmEx", "cublasGemmStridedBatchedEx"):
            getattr(self.lib, name).restype = ctypes.c_int

    def use_stream(self, stream_ptr):
        if stream_ptr != self.stream:
            _check(self.lib.cublasSetStream_v2(self.handle, ctypes.c_void_p(stream_ptr)), "cublasSetStream")
            # Setting the stream resets the workspace to cuBLAS's own pool: give ours back.
            _check(self.lib.cublasSetWorkspace_v2(self.handle, ctypes.c_void_p(self.workspace.data.ptr),
                                                  ctypes.c_size_t(WORKSPACE_BYTES)), "cublasSetWorkspace")
            self.stream = stream_ptr


def _load_library():
    with open("/proc/self/maps") as maps:
        paths = sorted({line.split()[-1] for line in maps if "/libcublas.so" in line})
    for path in paths + ["libcublas.so.13", "libcublas.so.12", "libcublas.so"]:
        try:
            return ctypes.CDLL(path)
        except OSError:
            continue
    raise RuntimeError("convlab.kernels.blas: cannot find the libcublas that CuPy uses")


def _check(status, what):
    if status != 0:
        raise RuntimeError(f"convlab.kernels.blas: {what} failed with cuBLAS status {status}")


def prepare():
    """Create the handle and workspace now (outside any capture)."""
    if _state["cublas"] is None:
        _state["cublas"] = _Cublas()
    return _state["cublas"]


def gemm_call(op_p, op_q, m, n, k, p, ldp, sp, q, ldq, sq, c, ldc, sc, batch):
    """Column-major C (m x n, ld ldc) = op(P) (m x k) @ op(Q) (k x n), `batch` times with element
    strides sp, sq, sc between the matrices: cublasGemm(StridedBatched)Ex on the current stream."""
    import cupy

    from . import tf32_enabled

    blas = prepare()
    blas.use_stream(cupy.cuda.get_current_stream().ptr)
    if c.dtype == np.float64:
        dtype, compute, scalar = CUDA_R_64F, COMPUTE_64F, ctypes.c_double
    else:
        dtype, scalar = CUDA_R_32F, ctypes.c_float
        compute = COMPUTE_32F_FAST_TF32 if tf32_enabled() else COMPUTE_32F
    one, zero = scalar(1.0), scalar(0.0)
    i = ctypes.c_int
    ptr = ctypes.c_void_p
    if batch == 1:
        status = blas.lib.cublasGemmEx(
            blas.handle, i(op_p), i(op_q), i(m), i(n), i(k), ctypes.byref(one), ptr(p.data.ptr), i(dtype), i(ldp),
            ptr(q.data.ptr), i(dtype), i(ldq), ctypes.byref(zero), ptr(c.data.ptr), i(dtype), i(ldc), i(compute),
            i(GEMM_DEFAULT))
    else:
        ll = ctypes.c_longlong
        status = blas.lib.cublasGemmStridedBatchedEx(
            blas.handle, i(op_p), i(op_q), i(m), i(n), i(k), ctypes.byref(one), ptr(p.data.ptr), i(dtype), i(ldp),
            ll(sp), ptr(q.data.ptr), i(dtype), i(ldq), ll(sq), ctypes.byref(zero), ptr(c.data.ptr), i(dtype),
            i(ldc), ll(sc), i(batch), i(compute), i(GEMM_DEFAULT))
    _check(status, "cublasGemmEx")
