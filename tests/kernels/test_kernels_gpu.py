"""Each CUDA fast path agrees with its reference: the `functional` twin (or `convlab.optim`) run
with NumPy on the same inputs. Skipped without a usable GPU."""

import numpy as np
import pytest

from convlab import backend
from convlab import functional as F

pytestmark = pytest.mark.gpu

if not backend.gpu_available():
    pytest.skip("needs a CUDA GPU with CuPy", allow_module_level=True)

import cupy  # noqa: E402

from convlab import kernels  # noqa: E402

TOL = {np.float32: dict(rtol=2e-4, atol=2e-5), np.float64: dict(rtol=1e-10, atol=1e-12)}


@pytest.fixture(autouse=True)
def exact_matmuls():
    """Compare in true float32: TF32 stays off unless a test turns it on."""
    kernels.set_tf32(False)
    yield
    kernels.set_tf32(False)


def draw(shape, dtype, seed=0, scale=1.0):
    return (np.random.default_rng(seed).standard_normal(shape) * scale).astype(dtype)


def on_gpu(a, layout="nchw"):
    """Copy a host (N, C, H, W) array to the device with the given memory layout."""
    if layout == "channels_last":
        return cupy.ascontiguousarray(cupy.asarray(a).transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    if layout == "strided":  # every other column of a wider buffer: no dense layout
        wide = cupy.zeros(a.shape[:-1] + (2 * a.shape[-1],), dtype=a.dtype)
        wide[..., ::2] = cupy.asarray(a)
        return wide[..., ::2]
    return cupy.asarray(a)


def close(got, want, dtype, factor=1.0):
    tol = {k: v * factor for k, v in TOL[dtype].items()}
    np.testing.assert_allclose(cupy.asnumpy(got), want, **tol)


# -- convolution ---------------------------------------------------------------------------------

CONV_CASES = [
    # (N, C, H, W), (O, kh, kw), kwargs
    ((2, 3, 9, 9), (4, 3, 3), dict(stride=1, padding=1)),
    ((2, 5, 10, 7), (6, 3, 2), dict(stride=2, padding=(1, 0))),
    ((1, 4, 11, 11), (3, 3, 3), dict(stride=1, padding=2, dilation=2)),
    ((2, 4, 8, 8), (6, 3, 3), dict(padding=1, groups=2)),
    ((2, 6, 8, 8), (6, 3, 3), dict(stride=2, padding=1, groups=6)),  # depthwise
    ((3, 8, 6, 6), (5, 1, 1), dict()),  # pointwise
    ((2, 3, 7, 7), (4, 4, 4), dict(padding="same")),
    ((2, 40, 5, 5), (7, 3, 3), dict(padding=1)),  # more channels than threads per row
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("layout", ["nchw", "channels_last", "strided"])
@pytest.mark.parametrize("x_shape,w_spec,kw", CONV_CASES)
@pytest.mark.parametrize("bias", [True, False])
def test_conv2d_forward_and_backward_match_the_functional_twin(x_shape, w_spec, kw, layout, dtype, bias):
    o, kh, kwid = w_spec
    groups = kw.get("groups", 1)
    x = draw(x_shape, dtype, 1)
    w = draw((o, x_shape[1] // groups, kh, kwid), dtype, 2)
    b = draw((o,), dtype, 3) if bias else None
    y_ref, cache_ref = F.conv2d(x, w, b, **kw)
    dy = draw(y_ref.shape, dtype, 4)
    dx_ref, dw_ref, db_ref = F.conv2d_backward(dy, cache_ref)

    b_gpu = None if b is None else cupy.asarray(b)
    y, cache = kernels.conv2d(on_gpu(x, layout), cupy.asarray(w), b_gpu, **kw)
    assert kernels.layout.is_channels_last(y)
    close(y, y_ref, dtype)
    dx, dw, db = kernels.conv2d_backward(on_gpu(dy, "channels_last"), cache)
    close(dx, dx_ref, dtype)
    close(dw, dw_ref, dtype, factor=5)
    if bias:
        close(db, db_ref, dtype, factor=5)
    else:
        assert db is None


@pytest.fixture
def capturable_cublas(monkeypatch):
    """Route products to the cuBLAS path a CUDA graph records (`kernels.blas`), as inside a
    CapturedStep; under the CPU emulation of CUDA its cuBLAS call is the NumPy stand-in."""
    from convlab.kernels import blas

    if "cuda_on_cpu" in (getattr(cupy, "__file__", "") or ""):
        from tests.kernels.test_blas import numpy_cublas

        monkeypatch.setattr(blas, "gemm_call", numpy_cublas)
        monkeypatch.setattr(blas, "prepare", lambda: None)
    with blas.recording_graph():
        assert blas.recording()
        yield
    assert not blas.recording()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("x_shape,w_spec,kw", CONV_CASES)
def test_conv2d_and_linear_through_the_capturable_cublas_path_match_their_twins(
        x_shape, w_spec, kw, dtype, capturable_cublas):
    o, kh, kwid = w_spec
    groups = kw.get("groups", 1)
    x = draw(x_shape, dtype, 1)
    w = draw((o, x_shape[1] // groups, kh, kwid), dtype, 2)
    b = draw((o,), dtype, 3)
    y_ref, cache_ref = F.conv2d(x, w, b, **kw)
    dy = draw(y_ref.shape, dtype, 4)
    dx_ref, dw_ref, db_ref = F.conv2d_backward(dy, cache_ref)
    y, cache = kernels.conv2d(on_gpu(x, "channels_last"), cupy.asarray(w), cupy.asarray(b), **kw)
    close(y, y_ref, dtype)
    dx, dw, db = kernels.conv2d_backward(on_gpu(dy, "nchw"), cache)
    close(dx, dx_ref, dtype)
    close(dw, dw_ref, dtype, factor=5)
    close(db, db_ref, dtype, factor=5)
    # A dense layer on the flattened output, as a classifier head runs it.
    flat, lw, lb = y_ref.reshape(len(y_ref), -1), draw((5, y_ref[0].size), dtype, 5), draw((5,), dtype, 6)
    ly_ref, lcache_ref = F.linear(flat, lw, lb)
    ldy = draw(ly_ref.shape, dtype, 7)
    ly, lcache = F.linear(cupy.asarray(flat), cupy.asarray(lw), cupy.asarray(lb))
    close(ly, ly_ref, dtype)
    for got, want in zip(F.linear_backward(cupy.asarray(ldy), lcache), F.linear_backward(ldy, lcache_ref)):
        close(got, want, dtype, factor=5)


def test_conv2d_backward_accepts_a_gradient_in_any_layout():
    x, w = draw((2, 4, 6, 6), np.float64, 1), draw((3, 4, 3, 3), np.float64, 2)
    y_ref, cache_ref = F.conv2d(x, w, None, padding=1)
    dy = draw(y_ref.shape, np.float64, 3)
    dx_ref = F.conv2d_backward(dy, cache_ref)[0]
    _, cache = kernels.conv2d(cupy.asarray(x), cupy.asarray(w), None, padding=1)
    for layout in ("nchw", "strided"):
        close(kernels.conv2d_backward(on_gpu(dy, layout), cache)[0], dx_ref, np.float64)


@pytest.mark.parametrize("stride,dilation", [((1, 1), (1, 1)), ((2, 1), (1, 2)), ((3, 3), (2, 2))])
def test_im2col_and_col2im_match_their_twins(stride, dilation):
    x_pad = draw((2, 9, 10, 3), np.float64, 5)  # (N, Hp, Wp, C)
    k = (3, 2)
    ho = (9 - dilation[0] * (k[0] - 1) - 1) // stride[0] + 1
    wo = (10 - dilation[1] * (k[1] - 1) - 1) // stride[1] + 1
    cols_ref = F.im2col(x_pad, k, stride, dilation, (ho, wo))
    cols = kernels.im2col(cupy.asarray(x_pad), k, stride, dilation, (ho, wo))
    close(cols.reshape(-1), np.asarray(cols_ref).reshape(-1), np.float64)
    dcols = draw((2, ho, wo, k[0], k[1], 3), np.float64, 6)
    close(kernels.col2im(cupy.asarray(dcols), (9, 10), stride, dilation),
          F.col2im(dcols, (9, 10), stride, dilation), np.float64)


def test_tf32_matmuls_stay_within_a_tf32_error_and_switch_back_off():
    x, w = draw((8, 16, 12, 12), np.float32, 1), draw((32, 16, 3, 3), np.float32, 2)
    y_ref = F.conv2d(x.astype(np.float64), w.astype(np.float64), None, padding=1)[0]
    kernels.set_tf32(True)
    assert kernels.tf32_enabled()
    y = cupy.asnumpy(kernels.conv2d(cupy.asarray(x), cupy.asarray(w), None, padding=1)[0])
    err = np.linalg.norm(y - y_ref) / np.linalg.norm(y_ref)
    assert 1e-6 < err < 3e-3, f"relative error {err:.2e} is not that of TF32"
    kernels.set_tf32(False)
    assert not kernels.tf32_enabled()
    y = cupy.asnumpy(kernels.conv2d(cupy.asarray(x), cupy.asarray(w), None, padding=1)[0])
    assert np.linalg.norm(y - y_ref) / np.linalg.norm(y_ref) < 1e-5


# -- max pooling ---------------------------------------------------------------------------------

POOL_CASES = [
    ((2, 3, 8, 8), dict(kernel_size=2)),
    ((2, 3, 9, 7), dict(kernel_size=3, stride=2, padding=1)),
    ((1, 2, 10, 10), dict(kernel_size=3, stride=2, ceil_mode=True)),
    ((2, 4, 5, 6), dict(kernel_size=(2, 3), stride=1)),
]


@pytest.mark.parametrize("layout", ["nchw", "channels_last", "strided"])
@pytest.mark.parametrize("shape,kw", POOL_CASES)
@pytest.mark.parametrize("ties", [False, True])
def test_max_pool2d_and_its_backward_match_the_functional_twin(shape, kw, layout, ties):
    rng = np.random.default_rng(7)
    x = rng.integers(-2, 3, shape).astype(np.float32) if ties else draw(shape, np.float32, 7)
    y_ref, cache_ref = F.max_pool2d(x, **kw)
    dy = draw(y_ref.shape, np.float32, 8)
    dx_ref = F.max_pool2d_backward(dy, cache_ref)
    y, cache = kernels.max_pool2d(on_gpu(x, layout), **kw)
    np.testing.assert_array_equal(cupy.asnumpy(y), y_ref)
    close(kernels.max_pool2d_backward(on_gpu(dy, layout), cache), dx_ref, np.float32)


def test_max_pool2d_keeps_a_channels_last_input_channels_last():
    x = on_gpu(draw((2, 8, 6, 6), np.float32), "channels_last")
    y, _ = kernels.max_pool2d(x, 2)
    assert kernels.layout.is_channels_last(y)


# -- batch norm ----------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("layout", ["nchw", "channels_last", "strided"])
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("affine", [True, False])
def test_batch_norm_forward_backward_and_running_stats_match_the_twin(dtype, layout, training, affine):
    shape = (6, 5, 7, 3)
    x = draw(shape, dtype, 1, scale=2.0) + 3.0
    w, b = (draw((5,), dtype, 2), draw((5,), dtype, 3)) if affine else (None, None)
    rm, rv = draw((5,), dtype, 4), np.abs(draw((5,), dtype, 5)) + 0.5
    rm_ref, rv_ref = rm.copy(), rv.copy()
    y_ref, cache_ref = F.batch_norm(x, w, b, rm_ref, rv_ref, training=training, momentum=0.2, eps=1e-3)
    dy = draw(shape, dtype, 6)
    dx_ref, dw_ref, db_ref = F.batch_norm_backward(dy, cache_ref)

    g = (lambda a: None if a is None else cupy.asarray(a))
    rm_gpu, rv_gpu = cupy.asarray(rm), cupy.asarray(rv)
    y, cache = kernels.batch_norm(on_gpu(x, layout), g(w), g(b), rm_gpu, rv_gpu, training=training,
                                  momentum=0.2, eps=1e-3)
    close(y, y_ref, dtype, factor=10)
    close(rm_gpu, rm_ref, dtype, factor=10)
    close(rv_gpu, rv_ref, dtype, factor=10)
    dx, dw, db = kernels.batch_norm_backward(on_gpu(dy, layout), cache)
    close(dx, dx_ref, dtype, factor=10)
    if affine:
        close(dw, dw_ref, dtype, factor=10)
        close(db, db_ref, dtype, factor=10)
    else:
        assert dw is None and db is None


@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
def test_batch_norm_with_a_fused_relu_matches_the_twin(layout):
    shape = (4, 6, 5, 3)
    x, w, b = draw(shape, np.float64, 1), draw((6,), np.float64, 2), draw((6,), np.float64, 3)
    x[0, 0, 0, 0] = np.nan  # max(nan, 0) stays nan in both
    rm, rv = np.zeros(6), np.ones(6)
    y_ref, cache_ref = F.batch_norm(x, w, b, rm.copy(), rv.copy(), training=False, relu=True)
    dy = draw(shape, np.float64, 4)
    dx_ref, dw_ref, db_ref = F.batch_norm_backward(dy, cache_ref, relu_out=y_ref)
    y, cache = F.batch_norm(on_gpu(x, layout), cupy.asarray(w), cupy.asarray(b), cupy.asarray(rm),
                            cupy.asarray(rv), training=False, relu=True)
    assert (y_ref < 0).sum() == 0 and (y_ref == 0).sum() > 10
    np.testing.assert_array_equal(np.isnan(cupy.asnumpy(y)), np.isnan(y_ref))
    close(np.nan_to_num(cupy.asnumpy(y)), np.nan_to_num(y_ref), np.float64)
    dx, dw, db = F.batch_norm_backward(on_gpu(dy, layout), cache, relu_out=y)
    # (at the nan input the evaluation-mode dx is nan on the GPU, -0 on the CPU: x̂·0 there)
    close(np.nan_to_num(cupy.asnumpy(dx)), np.nan_to_num(dx_ref), np.float64)
    close(db, db_ref, np.float64)


def test_batch_norm_cumulative_average_and_1d_inputs_match_the_twin():
    x = draw((16, 9), np.float64, 1)
    rm, rv = np.zeros(9), np.ones(9)
    y_ref, _ = F.batch_norm(x, None, None, rm, rv, momentum=None, num_batches_tracked=3)
    rm_gpu, rv_gpu = cupy.zeros(9), cupy.ones(9)
    y, _ = kernels.batch_norm(cupy.asarray(x), None, None, rm_gpu, rv_gpu, momentum=None,
                              num_batches_tracked=3)
    close(y, y_ref, np.float64)
    close(rv_gpu, rv, np.float64)


def test_batch_norm_variance_survives_a_mean_ten_thousand_times_the_spread():
    x = (1e4 + draw((16, 3, 8, 8), np.float64, 1)).astype(np.float32)
    exact = x.astype(np.float64)
    mean, var = exact.mean(axis=(0, 2, 3), keepdims=True), exact.var(axis=(0, 2, 3), keepdims=True)
    y, _ = kernels.batch_norm(cupy.asarray(x), None, None, None, None, training=True)
    np.testing.assert_allclose(cupy.asnumpy(y), (exact - mean) / np.sqrt(var + 1e-5), rtol=1e-3, atol=1e-3)


def test_batch_norm_refuses_a_single_value_per_channel():
    with pytest.raises(ValueError, match="more than one value per channel"):
        kernels.batch_norm(cupy.zeros((1, 3)), None, None, None, None, training=True)


@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
def test_channel_sums_match_numpy(layout):
    a, b = draw((7, 6, 5, 4), np.float64, 1), draw((7, 6, 5, 4), np.float64, 2)
    s1, s2 = kernels.channel_sums(on_gpu(a, layout), on_gpu(b, layout))
    close(s1, a.sum(axis=(0, 2, 3)), np.float64)
    close(s2, (a * b).sum(axis=(0, 2, 3)), np.float64)
    close(kernels.channel_sums(cupy.asarray(a[:, :, 0, 0])), a[:, :, 0, 0].sum(axis=0), np.float64)


# -- softmax cross-entropy -----------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n,k", [(5, 10), (3, 1000), (40, 33)])
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_softmax_cross_entropy_matches_the_twin(dtype, n, k, smoothing):
    logits = draw((n, k), dtype, 1, scale=4.0)
    labels = np.random.default_rng(2).integers(0, k, n)
    loss_ref, cache_ref = F.softmax_cross_entropy(logits, labels, smoothing)
    grad_ref = F.softmax_cross_entropy_backward(cache_ref, 0.5)
    loss, cache = kernels.softmax_cross_entropy(cupy.asarray(logits), cupy.asarray(labels), smoothing)
    assert isinstance(loss, cupy.ndarray) and loss.shape == ()
    close(loss, loss_ref, dtype, factor=5)
    close(kernels.softmax_cross_entropy_backward(cache, 0.5), grad_ref, dtype)
    close(kernels.softmax_cross_entropy_backward(cache, cupy.asarray(0.5, dtype=dtype)), grad_ref, dtype)


def test_softmax_cross_entropy_reads_strided_logits_and_marks_bad_labels_nan():
    logits = draw((4, 6), np.float64, 1)
    loss_ref, _ = F.softmax_cross_entropy(logits, np.array([0, 1, 2, 3]))
    strided = cupy.asarray(np.asfortranarray(logits))
    close(kernels.softmax_cross_entropy(strided, cupy.array([0, 1, 2, 3]))[0], loss_ref, np.float64)
    bad, _ = kernels.softmax_cross_entropy(cupy.asarray(logits), cupy.array([0, 1, 2, 6]))
    assert np.isnan(float(bad))


# -- pointwise -----------------------------------------------------------------------------------

@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
def test_relu_and_its_backward_match_the_twin_and_keep_the_layout(layout):
    x, dy = draw((2, 3, 4, 5), np.float32, 1), draw((2, 3, 4, 5), np.float32, 2)
    y_ref, cache_ref = F.relu(x)
    y, cache = kernels.relu(on_gpu(x, layout))
    assert y.strides == on_gpu(x, layout).strides
    close(y, y_ref, np.float32)
    dx = kernels.relu_backward(on_gpu(dy, "nchw"), cache)
    assert dx.strides == y.strides
    close(dx, F.relu_backward(dy, cache_ref), np.float32)
    s = kernels.add(y, on_gpu(dy, "nchw"))
    assert s.strides == y.strides
    close(s, y_ref + dy, np.float32)


# -- optimisers ----------------------------------------------------------------------------------

def _parameters(dtype):
    from convlab.nn import Parameter

    shapes = [(5000,), (3, 3, 3, 3), (7,), (64, 129)]  # one spans two chunks, one three
    return [Parameter(draw(s, dtype, i)) for i, s in enumerate(shapes)]


def _run(optimizer_class, kwargs, fused, dtype, steps=3):
    """Weights after `steps` updates on the CPU reference and with the fused kernel."""
    ref = _parameters(dtype)
    gpu = _parameters(dtype)
    for p in gpu:
        p.data = cupy.asarray(p.data)
    opt_ref = optimizer_class(ref, **kwargs)
    states = [{} for _ in gpu]
    for step in range(1, steps + 1):
        for i, (a, b) in enumerate(zip(ref, gpu)):
            g = draw(a.shape, dtype, 100 * step + i)
            a.grad, b.grad = g, cupy.asarray(g)
        opt_ref.step()
        fused([p.data for p in gpu], [p.grad for p in gpu], states, step)
    return ref, gpu


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("momentum,nesterov,wd", [(0.0, False, 0.0), (0.9, False, 5e-4), (0.9, True, 1e-2)])
def test_fused_sgd_matches_convlab_optim_sgd(dtype, momentum, nesterov, wd):
    from convlab.optim import SGD

    kw = dict(lr=0.1, momentum=momentum, nesterov=nesterov, weight_decay=wd)
    ref, gpu = _run(SGD, kw, lambda w, g, s, t: kernels.sgd_step_(w, g, s, **kw), dtype)
    for a, b in zip(ref, gpu):
        close(b.data, a.data, dtype, factor=5)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("decoupled", [False, True])
def test_fused_adam_matches_convlab_optim_adam_and_adamw(dtype, decoupled):
    from convlab.optim import Adam, AdamW

    kw = dict(lr=1e-2, betas=(0.9, 0.99), eps=1e-8, weight_decay=0.05)
    ref, gpu = _run(AdamW if decoupled else Adam, kw,
                    lambda w, g, s, t: kernels.adam_step_(w, g, s, step=t, decoupled=decoupled, **kw), dtype)
    for a, b in zip(ref, gpu):
        close(b.data, a.data, dtype, factor=50)


@pytest.mark.parametrize("name", ["SGD", "Adam", "AdamW"])
def test_optimizers_use_the_fused_step_on_the_gpu_and_match_the_cpu(name, monkeypatch):
    import convlab.optim as optim

    kw = dict(SGD=dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-2),
              Adam=dict(lr=1e-2, weight_decay=0.05), AdamW=dict(lr=1e-2, weight_decay=0.05))[name]
    launches = {"step": 0, "zero": 0}
    fused_name = "sgd_step_" if name == "SGD" else "adam_step_"
    real_step, real_zero = getattr(kernels, fused_name), kernels.zero_

    def count(key, fn):
        def wrapper(*args, **kwargs):
            launches[key] += 1
            return fn(*args, **kwargs)
        return wrapper

    monkeypatch.setattr(kernels, fused_name, count("step", real_step))
    monkeypatch.setattr(kernels, "zero_", count("zero", real_zero))
    ref, gpu = _parameters(np.float32), _parameters(np.float32)
    for p in gpu:
        p.data = cupy.asarray(p.data)
    opt_ref, opt_gpu = getattr(optim, name)(ref, **kw), getattr(optim, name)(gpu, **kw)
    for step in range(1, 4):
        if step > 1:  # gradients accumulate into zeroed buffers, as in a training loop
            opt_ref.zero_grad()
            opt_gpu.zero_grad()
        for i, (a, b) in enumerate(zip(ref, gpu)):
            g = draw(a.shape, np.float32, 100 * step + i)
            if a.grad is None:
                a.grad, b.grad = g.copy(), cupy.asarray(g)
            else:
                a.grad += g
                b.grad += cupy.asarray(g)
        opt_ref.step()
        opt_gpu.step()
    assert launches == {"step": 3, "zero": 2}, launches
    for a, b in zip(ref, gpu):
        close(b.data, a.data, np.float32, factor=50)
    assert all(float(abs(p.grad).sum()) > 0 for p in gpu)
    opt_gpu.zero_grad()
    assert all(float(abs(p.grad).sum()) == 0 for p in gpu)


def test_fused_steps_read_the_learning_rate_stored_on_the_device():
    """As a recorded graph replays them: store=False keeps what store_hyper last wrote."""
    from convlab.kernels import optim as fused

    w, g = draw((5000,), np.float32, 1), draw((5000,), np.float32, 2)
    for stored_lr, passed_lr in ((0.1, 0.1), (0.1, 7.0)):
        hyper = fused.hyper_buffer()
        fused.store_hyper(hyper, stored_lr)
        got = cupy.asarray(w)
        kernels.sgd_step_([got], [cupy.asarray(g)], [{}], passed_lr, hyper=hyper, store=False)
        close(got, w - stored_lr * g, np.float32)
    # Momentum too: two steps with the stored (lr, momentum), whatever is passed.
    hyper = fused.hyper_buffer()
    got, state = cupy.asarray(w), {}
    for _ in range(2):
        fused.store_hyper(hyper, 0.1, 0.5)
        kernels.sgd_step_([got], [cupy.asarray(g)], [state], 3.0, momentum=0.99, hyper=hyper, store=False)
    close(got, w - 0.1 * g - 0.1 * (0.5 * g + g), np.float32)
    hyper = fused.hyper_buffer()
    fused.store_hyper(hyper, *fused.adam_hyper(0.01, (0.8, 0.99), 3))
    a = cupy.asarray(w)
    kernels.adam_step_([a], [cupy.asarray(g)], [{}], 5.0, (0.9, 0.99), 1e-8, 0.0, step=1, hyper=hyper,
                       store=False)
    b = cupy.asarray(w)
    kernels.adam_step_([b], [cupy.asarray(g)], [{}], 0.01, (0.8, 0.99), 1e-8, 0.0, step=3)
    close(a, cupy.asnumpy(b), np.float32)


def test_zero_clears_every_array_and_nothing_else():
    arrays = [cupy.ones(n, dtype=np.float32) for n in (1, 4096, 5000)] + [cupy.ones((3, 4))]
    keep = cupy.ones(10, dtype=np.float32)
    kernels.zero_(arrays)
    assert all(float(abs(a).sum()) == 0 for a in arrays)
    assert float(keep.sum()) == 10


# -- augmentation --------------------------------------------------------------------------------

def test_crop_flip_matches_a_per_sample_reference():
    x = draw((5, 3, 8, 9), np.float32, 1)
    top, left = np.array([-2, 0, 3, 1, -4]), np.array([0, -3, 2, 4, 1])
    flip = np.array([True, False, True, False, True])
    size, fill = (7, 6), -1.5
    want = np.full((5, 3) + size, fill, dtype=np.float32)
    for n in range(5):
        for i in range(size[0]):
            for j in range(size[1]):
                sy, sx = top[n] + i, left[n] + (size[1] - 1 - j if flip[n] else j)
                if 0 <= sy < 8 and 0 <= sx < 9:
                    want[n, :, i, j] = x[n, :, sy, sx]
    got = kernels.crop_flip(cupy.asarray(x), top, left, flip, size, fill)
    np.testing.assert_array_equal(cupy.asnumpy(got), want)


# -- no host synchronisation ---------------------------------------------------------------------

def test_a_forward_and_backward_through_every_kernel_never_waits_for_the_device():
    import cupyx

    x = cupy.asarray(draw((4, 3, 8, 8), np.float32))
    w = cupy.asarray(draw((8, 3, 3, 3), np.float32, 1))
    gamma, beta = cupy.ones(8, dtype=np.float32), cupy.zeros(8, dtype=np.float32)
    rm, rv = cupy.zeros(8, dtype=np.float32), cupy.ones(8, dtype=np.float32)
    fc = cupy.asarray(draw((10, 8 * 4 * 4), np.float32, 2))
    labels = cupy.asarray(np.arange(4) % 10)
    kernels.conv2d(x, w, None, padding=1)  # compile outside the check
    with cupyx.allow_synchronize(False):
        for _ in range(2):
            y, c1 = kernels.conv2d(x, w, None, padding=1)
            y, c2 = kernels.batch_norm(y, gamma, beta, rm, rv)
            y, c3 = kernels.relu(y)
            y, c4 = kernels.max_pool2d(y, 2)
            logits = y.reshape(4, -1) @ fc.T
            loss, c5 = kernels.softmax_cross_entropy(logits, labels)
            d = kernels.softmax_cross_entropy_backward(c5) @ fc
            d = kernels.max_pool2d_backward(d.reshape(y.shape), c4)
            d = kernels.relu_backward(d, c3)
            d, dg, db = kernels.batch_norm_backward(d, c2)
            dx, dw, _ = kernels.conv2d_backward(d, c1)
            kernels.sgd_step_([w, gamma, beta], [dw, dg, db], [{}, {}, {}], lr=0.1, momentum=0.9)
    assert np.isfinite(float(loss))


def test_every_forward_returns_a_cache_that_only_its_kernel_backward_claims():
    x = cupy.asarray(draw((2, 3, 6, 6), np.float32))
    caches = [
        kernels.conv2d(x, cupy.asarray(draw((4, 3, 3, 3), np.float32, 1)), None, padding=1)[1],
        kernels.max_pool2d(x, 2)[1],
        kernels.batch_norm(x, None, None, None, None)[1],
        kernels.softmax_cross_entropy(x.reshape(2, -1), cupy.asarray([0, 1]))[1],
    ]
    assert all(kernels.owns(c) for c in caches)
    assert not kernels.owns(F.max_pool2d(draw((2, 3, 6, 6), np.float32), 2)[1])
