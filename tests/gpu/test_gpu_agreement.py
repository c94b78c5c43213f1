"""On a CUDA GPU, every layer and block computes what it computes on the CPU: the same weights and
inputs run through CuPy and through NumPy give the same output, input gradient, parameter
gradients and buffers (float32, norm-relative error < 1e-4), with convlab's CUDA fast paths on and
off; a few are also checked against PyTorch on the GPU.

Skipped (at collection) where CuPy is missing or sees no GPU. Runs from a plain checkout, without
installing convlab: `PYTHONPATH=. python -m pytest tests/gpu`.
"""

import contextlib
import copy

import numpy as np
import pytest

pytest.importorskip("cupy", reason="the GPU tests need CuPy")

from convlab import backend, nn  # noqa: E402

if not backend.gpu_available():
    pytest.skip("CuPy is installed but sees no usable CUDA GPU", allow_module_level=True)

import cupy  # noqa: E402

from tests.agreement import (  # noqa: E402
    AGREEMENT_TOL,  # noqa: E402
    BLOCK_CASES,
    LAYER_CASES,
    assert_agrees,
    batch_norm_case,
    conv2d_case,
    max_pool2d_case,
    normal,
    upstream_gradient,
)
from tests.gradcheck import randomize_batch_norm, relative_error  # noqa: E402

pytestmark = pytest.mark.gpu

SEEDS = range(12)


@contextlib.contextmanager
def kernels_set(enabled):
    """convlab's CUDA fast paths on or off and float32 products without TF32; afterwards both as
    they were, and the CPU as the device."""
    from convlab import kernels

    was_enabled, was_tf32 = kernels.enabled(), kernels.tf32_enabled()
    kernels.enable(enabled)
    kernels.set_tf32(False)
    try:
        yield
    finally:
        kernels.enable(was_enabled)
        kernels.set_tf32(was_tf32)
        backend.use("cpu")


@pytest.fixture(params=["fast paths", "functional on CuPy"])
def gpu(request):
    """Run on the GPU, with convlab's CUDA fast paths on or off, and float32 products without TF32."""
    with kernels_set(request.param == "fast paths"):
        yield request.param


def on_gpu_like(a, reference):
    """Copy host array `a` to the GPU with the memory layout (C-order or channels-last) of `reference`."""
    if a.ndim == 4 and not reference.flags.c_contiguous:
        return cupy.ascontiguousarray(cupy.asarray(a).transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    return cupy.asarray(a)


def forward_backward(model, x, dy):
    """One pass: (output, input gradient, {name: parameter gradient}, state_dict afterwards)."""
    for p in model.parameters():
        p.grad = None
    y = model(x)
    dx = model.backward(dy)
    return y, dx, {name: p.grad for name, p in model.named_parameters()}, model.state_dict()


def float64_pass(model, x, dy):
    """The same pass in float64 on the CPU (the exact answer the float32 passes round): {key: array}."""
    saved = backend.default_dtype()
    backend.set_default_dtype(np.float64)
    try:
        model.double()
        y = model(np.asarray(x, np.float64))
        dx = model.backward(np.asarray(backend.to_numpy(dy), np.float64))
        out = {"output": y, "input gradient": dx}
        out.update({f"gradient of {name!r}": p.grad for name, p in model.named_parameters()})
        out.update({f"{name} after the pass": v for name, v in model.state_dict().items()})
        return out
    finally:
        backend.set_default_dtype(saved)


class Agreement:
    """GPU float32 against CPU float32: norm-relative error < AGREEMENT_TOL. Where a quantity misses
    that, the case may be ill-conditioned (a chain through batch norm over 3 samples, say, where
    the CPU's own float32 answer is 5.7e-5 off the float64 one): then both are measured against the
    float64 pass, and the GPU must be within max(AGREEMENT_TOL, 10 x the CPU's error) of it."""

    def __init__(self, cpu_model, x, dy, what):
        """`cpu_model`: an untouched copy of the CPU model as it was before the pass."""
        self.model64, self.x, self.dy, self.what, self.exact = cpu_model, x, dy, what, None

    def check(self, actual, expected, key):
        err = relative_error(actual, expected)
        if err < AGREEMENT_TOL:
            return
        if self.exact is None:
            self.exact = float64_pass(self.model64, self.x, self.dy)
        exact = self.exact[key]
        cpu_err, gpu_err = relative_error(expected, exact), relative_error(actual, exact)
        bound = max(AGREEMENT_TOL, 10 * cpu_err)
        if not gpu_err < bound:
            raise AssertionError(
                f"{self.what}: {key}: relative error {err:.2e} against the CPU exceeds {AGREEMENT_TOL:.0e}; "
                f"against float64 the GPU is {gpu_err:.2e} off, the CPU {cpu_err:.2e} (bound {bound:.2e})")


def assert_same_pass(cpu_model, gpu_model, x, rng, what):
    """Run one pass of each model on the same input and dy (drawn from `rng`); compare every result."""
    backend.use("cpu")
    model64 = copy.deepcopy(cpu_model)
    y = cpu_model(x)
    dy = upstream_gradient(y.shape, rng, y)
    agreement = Agreement(model64, x, dy, what)
    dx = cpu_model.backward(dy)
    grads = {name: p.grad for name, p in cpu_model.named_parameters()}
    state = cpu_model.state_dict()
    backend.use("gpu")
    gy, gdx, ggrads, gstate = forward_backward(gpu_model, cupy.asarray(x), on_gpu_like(dy, dy))
    backend.use("cpu")
    assert isinstance(gy, cupy.ndarray), f"{what}: the GPU model returned {type(gy).__name__}"
    agreement.check(gy, y, "output")
    agreement.check(gdx, dx, "input gradient")
    for name, grad in grads.items():
        agreement.check(ggrads[name], grad, f"gradient of {name!r}")
    assert list(gstate) == list(state), f"{what}: state_dict keys differ between devices"
    for name, value in state.items():
        agreement.check(gstate[name], value, f"{name} after the pass")


def assert_gpu_matches_cpu(model, x, rng, what):
    """A copy of `model` on the GPU does what `model` does on the CPU, for one pass."""
    gpu_model = copy.deepcopy(model).to("gpu")
    for p in model.parameters():
        p.grad = None
    assert_same_pass(model, gpu_model, x, rng, what)


@pytest.mark.parametrize("layer", LAYER_CASES)
def test_layer_on_gpu_matches_numpy(layer, gpu):
    for seed in SEEDS:
        rng = np.random.default_rng(seed)
        backend.use("cpu")
        backend.manual_seed(seed)
        case = LAYER_CASES[layer](rng)
        assert_gpu_matches_cpu(case.model, case.x, rng, f"{gpu}, seed {seed}, {case.what}")


@pytest.mark.parametrize("block", BLOCK_CASES)
def test_block_on_gpu_matches_numpy(block, gpu):
    for seed in SEEDS:
        rng = np.random.default_rng(seed)
        backend.use("cpu")
        backend.manual_seed(seed)
        case = BLOCK_CASES[block](rng)
        randomize_batch_norm(case.model, rng)
        what = f"{gpu}, seed {seed}, {case.what} on {case.x.shape}"
        if rng.random() < 0.3:
            case.model.eval()
            what += " in eval mode"
        assert_gpu_matches_cpu(case.model, case.x, rng, what)


def test_batch_norm_on_gpu_matches_numpy_over_training_passes_then_eval(gpu):
    for seed in SEEDS:
        rng = np.random.default_rng(seed)
        backend.use("cpu")
        case = batch_norm_case(rng)
        randomize_batch_norm(case.model, rng)
        gpu_model = copy.deepcopy(case.model).to("gpu")
        for step, mode in enumerate(["train", "train", "train", "eval"]):
            case.model.train(mode == "train")
            gpu_model.train(mode == "train")
            for p in case.model.parameters():
                p.grad = None
            x = case.x if step == 0 else normal(rng, case.x.shape, 2.0) + np.float32(rng.normal())
            what = f"{gpu}, seed {seed}, {case.what}, pass {step + 1}"
            assert_same_pass(case.model, gpu_model, x, rng, what)


def test_cross_entropy_on_gpu_matches_numpy(gpu):
    for seed in SEEDS:
        rng = np.random.default_rng(seed)
        n, k = int(rng.integers(1, 9)), int(rng.integers(2, 11))
        smoothing = 0.0 if seed % 4 == 0 else float(rng.uniform(0.0, 0.5))
        logits = normal(rng, (n, k), scale=3.0)
        labels = rng.integers(0, k, n)
        what = f"{gpu}, seed {seed}, CrossEntropyLoss(label_smoothing={smoothing}) on {logits.shape}"
        backend.use("cpu")
        criterion = nn.CrossEntropyLoss(smoothing)
        loss, dlogits = criterion(logits, labels), criterion.backward(1.5)
        backend.use("gpu")
        gloss = criterion(cupy.asarray(logits), cupy.asarray(labels))
        gdlogits = criterion.backward(1.5)
        assert_agrees(gloss, loss, f"{what}: loss")
        assert_agrees(gdlogits, dlogits, f"{what}: gradient of the logits")
        backend.use("cpu")


def test_dropout_on_gpu_drops_about_p_and_backward_reuses_the_mask(gpu):
    backend.use("gpu")
    drop = nn.Dropout(0.3)
    x = cupy.ones((256, 256), dtype=cupy.float32)
    y = drop(x)
    dropped = float((y == 0).mean())
    assert abs(dropped - 0.3) < 0.01
    cupy.testing.assert_allclose(y[y != 0], 1 / 0.7, rtol=1e-6)
    cupy.testing.assert_array_equal(drop.backward(x), y)


def test_dropout_on_gpu_is_repeatable_under_manual_seed(gpu):
    backend.use("gpu")
    x = cupy.ones((64, 64), dtype=cupy.float32)
    backend.manual_seed(5)
    a = nn.Dropout(0.5)(x)
    backend.manual_seed(5)
    b = nn.Dropout(0.5)(x)
    cupy.testing.assert_array_equal(a, b)


def test_model_moves_to_gpu_and_back_without_changing_its_state():
    backend.use("cpu")
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU())
    before = model.state_dict()
    model.to("gpu")
    assert all(isinstance(p.data, cupy.ndarray) for p in model.parameters())
    assert isinstance(model[1].running_mean, cupy.ndarray)
    model.to("cpu")
    assert all(isinstance(p.data, np.ndarray) for p in model.parameters())
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(value, before[key])


# -- against PyTorch on the GPU ----------------------------------------------------------------
@pytest.fixture
def torch_cuda():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("PyTorch cannot use CUDA here")
    return torch


TORCH_CASES = {
    "Conv2d": conv2d_case,
    "MaxPool2d": max_pool2d_case,
    "BatchNorm": batch_norm_case,
    "BasicBlock": BLOCK_CASES["BasicBlock"],
    "Bottleneck": BLOCK_CASES["Bottleneck"],
    "Inception": BLOCK_CASES["Inception"],
    "DepthwiseSeparableConv": BLOCK_CASES["DepthwiseSeparableConv"],
}


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")
@pytest.mark.parametrize("name", TORCH_CASES)
def test_gpu_matches_pytorch_on_cuda(name, gpu, torch_cuda):
    from tests.torch_reference import assert_same_as_torch

    for seed in range(10):
        rng = np.random.default_rng(seed)
        backend.use("cpu")
        backend.manual_seed(seed)
        case = TORCH_CASES[name](rng)
        randomize_batch_norm(case.model, rng)
        backend.use("gpu")
        case.model.to("gpu")
        assert_same_as_torch(case.model, case.twin(), cupy.asarray(case.x), rng,
                             f"{gpu}, seed {seed}, {case.what} on {case.x.shape}", device="cuda")
        backend.use("cpu")


# -- a training step recorded as a CUDA graph ---------------------------------------------------
def _small_net_and_data(seed, optimizer="SGD"):
    from convlab import optim

    backend.use("gpu")
    backend.manual_seed(seed)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Conv2d(8, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
                          nn.GlobalAvgPool2d(), nn.Linear(8, 5))
    if optimizer == "SGD":
        opt = optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-3)
    else:
        opt = optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.05)
    rng = np.random.default_rng(seed)
    batches = [(cupy.asarray(normal(rng, (6, 3, 8, 8))), cupy.asarray(rng.integers(0, 5, 6))) for _ in range(9)]
    return model, nn.CrossEntropyLoss(), opt, batches


@pytest.fixture
def fast_paths():
    with kernels_set(True):
        yield


def _schedule(i, opt):
    """A learning rate and a momentum (β₁ for Adam) that change every step, as one-cycle moves
    them, read from the device; and (at step 7) a weight-decay change, which a recording fixes."""
    opt.lr *= 0.8
    if hasattr(opt, "momentum"):
        opt.momentum = 0.9 - 0.02 * i
    else:
        opt.betas = (0.9 - 0.02 * i, opt.betas[1])
    if i == 7:
        opt.weight_decay *= 2


@pytest.mark.parametrize("optimizer", ["SGD", "AdamW"])
def test_captured_step_replays_what_eager_steps_compute(optimizer, fast_paths):
    from convlab.train.graph import CapturedStep

    # The captured run: two eager warm-up steps on batch 0, then replays of batches 2..8.
    model, criterion, opt, batches = _small_net_and_data(0, optimizer)
    step = CapturedStep(model, criterion, opt, *batches[0], warmup=2)
    assert step.captures == 1 and opt.step_count == 2
    replayed, logits = [], []
    for i, (x, y) in enumerate(batches[2:], start=2):
        _schedule(i, opt)
        replayed.append(float(step(x, y)))
        logits.append(cupy.asnumpy(step.logits))
        if i == 4:  # the default pool lets go of its free blocks; new arrays may land there
            cupy.get_default_memory_pool().free_all_blocks()
            junk = [cupy.full(n, np.nan, dtype=np.float32) for n in (64, 4096, 1 << 16, 1 << 20)]
    # New rates and momenta every step are read from the device; only the weight decay records again.
    assert step.captures == 2
    del junk
    assert opt.step_count == 9
    # The same sequence, eagerly, from the same start.
    ref, criterion, ref_opt, batches = _small_net_and_data(0, optimizer)
    want, want_logits = [], []
    for i, (x, y) in enumerate([batches[0], batches[0]] + batches[2:]):
        if i >= 2:
            _schedule(i, ref_opt)
        out = ref(x)
        loss = criterion(out, y)
        ref_opt.zero_grad()
        ref.backward(criterion.backward())
        ref_opt.step()
        want.append(float(loss))
        want_logits.append(cupy.asnumpy(out))
    np.testing.assert_allclose(replayed, want[2:], rtol=2e-5)
    np.testing.assert_allclose(np.stack(logits), np.stack(want_logits[2:]), rtol=1e-4, atol=1e-5)
    assert len(set(np.round(replayed, 6))) == len(replayed), "every replay must train on its own batch"
    got = model.state_dict()
    for k, v in ref.state_dict().items():
        np.testing.assert_allclose(cupy.asnumpy(got[k]), cupy.asnumpy(v), rtol=1e-4, atol=1e-6, err_msg=k)


def test_captured_step_refuses_bad_shapes_and_the_functional_path(fast_paths):
    from convlab import kernels, optim
    from convlab.train.graph import CapturedStep, CaptureError

    model, criterion, _, batches = _small_net_and_data(1)
    opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    step = CapturedStep(model, criterion, opt, *batches[0], warmup=1)
    assert opt.step_count == 2, "a first step without gradients is not enough to record from"
    with pytest.raises(ValueError, match=r"x must have the recorded shape \(6, 3, 8, 8\)"):
        step(batches[0][0][:3], batches[0][1])
    kernels.enable(False)
    with pytest.raises(CaptureError, match="needs convlab's CUDA fast paths"):
        CapturedStep(model, criterion, optim.SGD(model.parameters(), lr=0.1), *batches[0])
