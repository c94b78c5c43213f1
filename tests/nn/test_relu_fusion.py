"""A ReLU after a Conv2d or BatchNorm is applied by that layer in the pass that writes its output
(Sequential and the blocks arrange it): same values and gradients as running them one by one, and
never when a hook watches either output."""

import numpy as np
import pytest

from convlab import nn
from tests.gradcheck import check_module


def _unfuse(model):
    for m in model.modules():
        if m.fuses_relu:
            m.fuses_relu = False  # an instance attribute hides the class's
    return model


def _run(model, x, seed=1):
    y = model(x)
    dy = np.random.default_rng(seed).standard_normal(y.shape)
    model.zero_grad()
    dx = model.backward(dy)
    return y, dx, {name: p.grad.copy() for name, p in model.named_parameters()}


def _twins(make, seed=0):
    """Two copies of one model (same weights and buffers), the second with fusion switched off."""
    fused, plain = make(), make()
    for m in (fused, plain):
        for i, p in enumerate(m.parameters()):
            p.data[...] = np.random.default_rng(seed + i).standard_normal(p.data.shape)
    return fused, _unfuse(plain)


def _assert_same(a, b):
    ya, dxa, ga = a
    yb, dxb, gb = b
    np.testing.assert_allclose(ya, yb, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dxa, dxb, rtol=1e-12, atol=1e-12)
    assert ga.keys() == gb.keys()
    for name in ga:
        np.testing.assert_allclose(ga[name], gb[name], rtol=1e-12, atol=1e-12, err_msg=name)


def _net():
    return nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Flatten(), nn.Linear(8 * 4 * 4, 5), nn.ReLU(), nn.Linear(5, 3),
    )


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_sequential_fuses_conv_and_batch_norm_relus_with_the_same_results(mode, float64):
    fused, plain = _twins(_net)
    for m in (fused, plain):
        m.train(mode == "train")
    x = np.random.default_rng(2).standard_normal((4, 3, 8, 8))
    got = _run(fused, x)
    relus = [m for m in fused if isinstance(m, nn.ReLU)]
    assert [r._absorbed for r in relus] == [True, True, False]  # the Linear's ReLU runs on its own
    assert fused[0]._relu_out is not None and fused[4]._relu_out is not None
    assert not any(r._absorbed for r in plain if isinstance(r, nn.ReLU))
    _assert_same(got, _run(plain, x))


def test_a_hook_on_the_layer_or_its_relu_keeps_them_apart(float64):
    fused, plain = _twins(_net)
    x = np.random.default_rng(3).standard_normal((4, 3, 8, 8))
    seen = {}
    fused[0].register_forward_hook(lambda m, inputs, y: seen.setdefault("conv", y.copy()))
    fused[5].register_forward_hook(lambda m, inputs, y: seen.setdefault("relu", (inputs[0].copy(), y.copy())))
    got = _run(fused, x)
    assert (seen["conv"] < 0).any()  # the probe sees the convolution's own output, before the ReLU
    pre, post = seen["relu"]
    np.testing.assert_array_equal(post, np.maximum(pre, 0))
    assert not fused[1]._absorbed and not fused[5]._absorbed
    assert fused[0]._relu_out is None and fused[4]._relu_out is None
    _assert_same(got, _run(plain, x))


def test_a_relu_called_on_its_own_after_being_absorbed_runs_again(float64):
    fused, _ = _twins(_net)
    x = np.random.default_rng(4).standard_normal((2, 3, 8, 8))
    fused(x)
    relu = fused[1]
    assert relu._absorbed
    z = np.random.default_rng(5).standard_normal((2, 6, 8, 8))
    out = relu(z)
    np.testing.assert_array_equal(out, np.maximum(z, 0))
    dz = np.ones_like(z)
    np.testing.assert_array_equal(relu.backward(dz), (z > 0).astype(float))


BLOCKS = {
    "BasicConv2d with BN": lambda: nn.BasicConv2d(3, 6, kernel_size=3, padding=1),
    "BasicConv2d without BN": lambda: nn.BasicConv2d(3, 6, batch_norm=False, kernel_size=3, padding=1),
    "BasicBlock": lambda: nn.BasicBlock(3, 6, stride=2),
    "Bottleneck": lambda: nn.Bottleneck(8, 2),
}


@pytest.mark.parametrize("name", BLOCKS)
def test_blocks_fuse_with_the_same_results(name, float64):
    fused, plain = _twins(BLOCKS[name])
    c = 8 if name == "Bottleneck" else 3
    x = np.random.default_rng(6).standard_normal((3, c, 6, 6))
    got = _run(fused, x)
    assert any(getattr(m, "_absorbed", False) for m in fused.modules())
    _assert_same(got, _run(plain, x))


@pytest.mark.parametrize("name", BLOCKS)
def test_fused_blocks_match_finite_differences(name, float64):
    block = BLOCKS[name]()
    c = 8 if name == "Bottleneck" else 3
    x = np.random.default_rng(7).standard_normal((2, c, 4, 4))
    check_module(block, x)
    assert any(getattr(m, "_absorbed", False) for m in block.modules())


def test_clear_cache_drops_a_fused_relus_output(float64):
    fused, _ = _twins(_net)
    fused(np.random.default_rng(8).standard_normal((2, 3, 8, 8)))
    assert fused[0]._relu_out is not None
    fused.clear_cache()
    assert fused[0]._relu_out is None and fused[4]._relu_out is None


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_batch_norm_1d_fuses_its_relu_too(mode, float64):
    def make():
        return nn.Sequential(nn.Linear(6, 5), nn.BatchNorm1d(5), nn.ReLU(), nn.Linear(5, 2))

    fused, plain = _twins(make)
    for m in (fused, plain):
        m.train(mode == "train")
    x = np.random.default_rng(9).standard_normal((7, 6))
    got = _run(fused, x)
    assert fused[2]._absorbed and fused[1]._relu_out is not None
    _assert_same(got, _run(plain, x))


def test_a_subclass_with_its_own_forward_is_not_fused(float64):
    class ScaledConv(nn.Conv2d):
        def forward(self, x):  # no relu parameter: Sequential must call it plainly
            return 2.0 * super().forward(x)

    conv = ScaledConv(3, 4, 3, padding=1)
    relu = nn.ReLU()
    model = nn.Sequential(conv, relu)
    assert not conv.fuses_relu and nn.Conv2d.fuses_relu
    x = np.random.default_rng(10).standard_normal((2, 3, 5, 5))
    y = model(x)
    assert not relu._absorbed
    np.testing.assert_allclose(y, np.maximum(2.0 * nn.Conv2d.forward(conv, x), 0))


def test_a_relu_subclass_with_its_own_forward_is_not_absorbed(float64):
    class ReLU6(nn.ReLU):
        def forward(self, x):
            return np.minimum(super().forward(x), 6.0)

    conv = nn.Conv2d(3, 4, 3, padding=1)
    conv.weight.data[...] = 5.0  # outputs well above 6
    model = nn.Sequential(conv, ReLU6())
    x = np.abs(np.random.default_rng(11).standard_normal((2, 3, 5, 5)))
    y = model(x)
    assert y.max() == 6.0 and conv._relu_out is None
