"""Every layer agrees with its torch.nn counterpart on 50 seeded random configurations.

Weights go from convlab to PyTorch through `state_dict`; the output, the input gradient, every
parameter gradient and every buffer must match in float32 to a norm-relative error of 1e-4.
"""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from torch import nn as tnn  # noqa: E402

from convlab import backend, nn  # noqa: E402
from tests.agreement import (  # noqa: E402
    LAYER_CASES,
    assert_agrees,
    assert_same_state,
    batch_norm_case,
    normal,
    randint,
    run_convlab,
)
from tests.gradcheck import randomize_batch_norm  # noqa: E402
from tests.torch_reference import assert_same_as_torch, copy_into_torch, run_torch  # noqa: E402

SEEDS = range(50)


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")
@pytest.mark.parametrize("layer", LAYER_CASES)
def test_layer_matches_pytorch_on_random_configurations(layer):
    for seed in SEEDS:
        rng = np.random.default_rng(seed)
        backend.manual_seed(seed)
        case = LAYER_CASES[layer](rng)
        assert_same_as_torch(case.model, case.twin(), case.x, rng, f"seed {seed}, {case.what}")


def test_batch_norm_matches_pytorch_over_training_passes_then_eval():
    for seed in SEEDS:
        rng = np.random.default_rng(seed)
        case = batch_norm_case(rng)
        model, twin = case.model, case.twin()
        randomize_batch_norm(model, rng)
        copy_into_torch(model, twin)
        for step, mode in enumerate(["train", "train", "train", "eval"]):
            model.train(mode == "train")
            twin.train(mode == "train")
            scale = float(rng.uniform(0.5, 3.0))
            x = case.x if step == 0 else normal(rng, case.x.shape, scale) + np.float32(rng.normal())
            for p in twin.parameters():
                p.grad = None
            label = f"seed {seed}, {case.what}, pass {step + 1} ({mode})"
            y, dy, dx, grads, state = run_convlab(model, x, rng)
            ty, tdx, tgrads, tstate = run_torch(twin, x, dy)
            assert_agrees(y, ty, f"{label}: output")
            assert_agrees(dx, tdx, f"{label}: input gradient")
            for name, tgrad in tgrads.items():
                assert_agrees(grads[name], tgrad, f"{label}: gradient of {name!r}")
            assert_same_state(state, tstate, label)


def test_cross_entropy_loss_matches_pytorch_with_label_smoothing():
    for seed in SEEDS:
        rng = np.random.default_rng(seed)
        n, k = randint(rng, 1, 8), randint(rng, 2, 10)
        smoothing = 0.0 if seed % 5 == 0 else float(rng.uniform(0.0, 0.5))
        logits = normal(rng, (n, k), scale=float(rng.choice([0.1, 1.0, 10.0])))
        labels = rng.integers(0, k, n)
        dloss = float(rng.uniform(0.5, 2.0))
        what = f"seed {seed}, CrossEntropyLoss(label_smoothing={smoothing}) on logits {logits.shape}"
        criterion = nn.CrossEntropyLoss(label_smoothing=smoothing)
        loss = criterion(logits, labels)
        dlogits = criterion.backward(dloss)
        tlogits = torch.from_numpy(logits.astype(np.float64)).requires_grad_(True)
        tloss = tnn.CrossEntropyLoss(label_smoothing=smoothing)(tlogits, torch.from_numpy(labels))
        tloss.backward(torch.tensor(dloss, dtype=torch.float64))
        assert np.ndim(loss) == 0, f"{what}: the loss should be a 0-d array, got shape {np.shape(loss)}"
        assert_agrees(loss, tloss, f"{what}: loss")
        assert_agrees(dlogits, tlogits.grad, f"{what}: gradient of the logits")


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")
@pytest.mark.parametrize("kernel, dilation", [(2, 1), (4, 1), ((2, 4), (2, 1)), (3, 2), ((1, 2), 3)])
def test_same_padding_with_even_kernels_and_dilation_matches_pytorch(kernel, dilation):
    rng = np.random.default_rng(0)
    x = normal(rng, (2, 3, 6, 7))
    assert_same_as_torch(nn.Conv2d(3, 4, kernel, padding="same", dilation=dilation),
                         tnn.Conv2d(3, 4, kernel, padding="same", dilation=dilation), x, rng,
                         f"Conv2d(kernel={kernel}, dilation={dilation}, padding='same')")


@pytest.mark.parametrize("size", [(7, 9), (6, 6), (5, 8), (13, 14)])
@pytest.mark.parametrize("kernel, stride, padding", [(2, 2, 0), (3, 2, 0), (3, 2, 1), (3, 3, 1), (2, 3, 1)])
def test_ceil_mode_max_pool_matches_pytorch(size, kernel, stride, padding):
    rng = np.random.default_rng(1)
    x = normal(rng, (2, 2) + size)
    kw = dict(kernel_size=kernel, stride=stride, padding=padding, ceil_mode=True)
    assert_same_as_torch(nn.MaxPool2d(**kw), tnn.MaxPool2d(**kw), x, rng, f"MaxPool2d({kw}) on {x.shape}")


def test_max_pool_ties_route_the_gradient_like_pytorch():
    rng = np.random.default_rng(2)
    x = rng.integers(0, 3, (2, 3, 6, 7)).astype(np.float32)  # many equal values in each window
    kw = dict(kernel_size=3, stride=2, padding=1, ceil_mode=True)
    assert_same_as_torch(nn.MaxPool2d(**kw), tnn.MaxPool2d(**kw), x, rng, f"MaxPool2d({kw}) with ties")
