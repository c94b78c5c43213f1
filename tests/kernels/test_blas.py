"""The row-major -> column-major mapping behind `kernels.matmul`'s capturable cuBLAS path, checked
on the CPU: `_product` drives a NumPy stand-in for cublasGemmStridedBatchedEx that reads the
operands exactly as cuBLAS would (column-major, through lda/ldb/ldc and batch strides, with
cuBLAS's own rules on leading dimensions), and must give a @ b for every layout it is handed.
The GPU test module runs the real cuBLAS call inside a recorded training step."""

import sys

import numpy as np
import pytest
from numpy.lib.stride_tricks import as_strided

from convlab.kernels import blas


def numpy_cublas(op_p, op_q, m, n, k, p, ldp, sp, q, ldq, sq, c, ldc, sc, batch):
    """C (m x n) = op(P) @ op(Q), column-major, as cublasGemmStridedBatchedEx computes it."""
    def stored(x, ld, stride, rows, cols):
        if ld < max(1, rows):
            raise AssertionError(f"cuBLAS would refuse ld={ld} for a stored {rows}x{cols} matrix")
        item = x.dtype.itemsize
        return as_strided(x, shape=(batch, rows, cols), strides=(stride * item, item, ld * item))

    pm = stored(p, ldp, sp, *((m, k) if op_p == blas.OP_N else (k, m)))
    qm = stored(q, ldq, sq, *((k, n) if op_q == blas.OP_N else (n, k)))
    cm = stored(c, ldc, sc, m, n)
    if op_p == blas.OP_T:
        pm = pm.transpose(0, 2, 1)
    if op_q == blas.OP_T:
        qm = qm.transpose(0, 2, 1)
    cm[...] = np.matmul(pm, qm)


@pytest.fixture
def numpy_as_cupy(monkeypatch):
    """`_product` allocates with `cupy`: let NumPy stand in for it."""
    monkeypatch.setitem(sys.modules, "cupy", np)


def layouts(shape, rng):
    """The same values as C-order, a transposed view, a slice of a wider buffer, and a batch
    broadcast where the shape allows."""
    a = rng.standard_normal(shape)
    out = [("C-order", a)]
    out.append(("transposed view", np.ascontiguousarray(np.swapaxes(a, -1, -2)).swapaxes(-1, -2)))
    wide = np.zeros(shape[:-1] + (shape[-1] + 3,))
    wide[..., : shape[-1]] = a
    out.append(("row padding", wide[..., : shape[-1]]))
    tall = np.zeros(shape[:-2] + (shape[-1], shape[-2] + 2))
    tall[..., : shape[-2]] = np.swapaxes(a, -1, -2)
    out.append(("transposed, padded", np.swapaxes(tall[..., : shape[-2]], -1, -2)))
    out.append(("every other column", np.repeat(a, 2, axis=-1)[..., ::2]))
    return out


SHAPES = [((5, 7), (7, 3)), ((1, 4), (4, 6)), ((6, 1), (1, 5)), ((4, 5), (5, 1)), ((3, 2, 5), (3, 5, 4)),
          ((3, 2, 5), (5, 4)), ((2, 6), (3, 6, 2)), ((9, 16), (16, 16))]


@pytest.mark.parametrize("a_shape,b_shape", SHAPES)
def test_product_matches_numpy_for_every_layout(a_shape, b_shape, numpy_as_cupy):
    rng = np.random.default_rng(len(a_shape) * 10 + a_shape[-1])
    for a_name, a in layouts(a_shape, rng):
        for b_name, b in layouts(b_shape, rng):
            got = blas._product(a, b, numpy_cublas)
            np.testing.assert_allclose(got, a @ b, rtol=1e-12, atol=1e-12, err_msg=f"{a_name} @ {b_name}")
            assert got.shape == (a @ b).shape


def test_product_takes_a_vector_on_the_left_and_refuses_mismatches(numpy_as_cupy):
    rng = np.random.default_rng(1)
    v, m = rng.standard_normal(7), rng.standard_normal((7, 3))
    np.testing.assert_allclose(blas._product(v, m, numpy_cublas), v @ m, rtol=1e-12)
    with pytest.raises(ValueError, match=r"shapes \(7, 3\) and \(7, 3\) do not multiply"):
        blas._product(m, m, numpy_cublas)
    with pytest.raises(TypeError, match="one dtype"):
        blas._product(m.T, m.astype(np.float32), numpy_cublas)


def test_describe_says_which_memory_needs_a_copy():
    a = np.zeros((1, 4, 6))
    assert blas._describe(a)[:2] == (blas.OP_N, 6)
    assert blas._describe(a.transpose(0, 2, 1))[:2] == (blas.OP_T, 6)
    assert blas._describe(np.zeros((1, 4, 12))[:, :, ::2]) is None  # neither rows nor columns dense
    assert blas._describe(np.broadcast_to(np.zeros((1, 1, 6)), (1, 4, 6))) is None  # zero row stride


def test_recording_is_per_thread_and_nests(monkeypatch):
    import threading

    monkeypatch.setattr(blas, "prepare", lambda: None)
    seen = []
    assert not blas.recording()
    with blas.recording_graph():
        with blas.recording_graph():
            assert blas.recording()
        assert blas.recording()
        other = threading.Thread(target=lambda: seen.append(blas.recording()))
        other.start()
        other.join()
    assert not blas.recording()
    assert seen == [False], "another thread's products must not take the recording's path"
