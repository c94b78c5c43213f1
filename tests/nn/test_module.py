"""Module mechanics: PyTorch-compatible state_dicts, train/eval, gradient bookkeeping, hooks, dtype
moves, containers and skipping the data gradient."""

from collections import OrderedDict

import numpy as np
import pytest

from convlab import backend, nn


def random(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def small_net():
    return nn.Sequential(OrderedDict(
        conv=nn.Conv2d(2, 3, 3, padding=1), bn=nn.BatchNorm2d(3), relu=nn.ReLU(), pool=nn.MaxPool2d(2),
        flat=nn.Flatten(), drop=nn.Dropout(0.5), fc=nn.Linear(12, 4),
    ))


# -- state_dict ------------------------------------------------------------------------------
@pytest.mark.parametrize("make", [
    lambda lib: lib.Conv2d(3, 4, (3, 2), groups=1, bias=True),
    lambda lib: lib.Conv2d(4, 4, 3, groups=2, bias=False),
    lambda lib: lib.Linear(5, 3),
    lambda lib: lib.BatchNorm2d(4),
    lambda lib: lib.BatchNorm1d(3, affine=False),
    lambda lib: lib.BatchNorm2d(3, track_running_stats=False),
    lambda lib: lib.Sequential(lib.Conv2d(1, 2, 3), lib.BatchNorm2d(2), lib.ReLU(), lib.Flatten(),
                               lib.Linear(8, 2)),
], ids=["Conv2d", "Conv2d groups no bias", "Linear", "BatchNorm2d", "BatchNorm1d affine=False",
        "BatchNorm2d untracked", "Sequential"])
def test_state_dict_keys_shapes_and_dtypes_equal_pytorch(make):
    torch = pytest.importorskip("torch")
    ours, theirs = make(nn).state_dict(), make(torch.nn).state_dict()
    assert list(ours) == list(theirs)
    for key, value in theirs.items():
        assert ours[key].shape == tuple(value.shape), key
        assert str(ours[key].dtype) == str(value.dtype).removeprefix("torch."), key


def test_batch_norm_state_dict_holds_parameters_and_buffers():
    state = nn.BatchNorm2d(5).state_dict()
    assert list(state) == ["weight", "bias", "running_mean", "running_var", "num_batches_tracked"]
    assert [state[k].shape for k in state] == [(5,), (5,), (5,), (5,), ()]
    assert state["num_batches_tracked"].dtype == np.int64


def test_state_dict_returns_copies():
    conv = nn.Conv2d(1, 1, 3)
    state = conv.state_dict()
    state["weight"][...] = 123.0
    assert not np.any(conv.weight.data == 123.0)


def test_load_state_dict_round_trip_reproduces_outputs():
    source, target = small_net().eval(), small_net().eval()
    source.bn.running_mean[...] = [0.5, -0.2, 0.1]
    x = random(2, 2, 4, 4)
    target.load_state_dict(source.state_dict())
    np.testing.assert_array_equal(target(x), source(x))
    for key, value in source.state_dict().items():
        np.testing.assert_array_equal(target.state_dict()[key], value)


def test_load_state_dict_copies_so_later_edits_do_not_leak_in():
    conv = nn.Conv2d(1, 1, 3)
    state = conv.state_dict()
    conv.load_state_dict(state)
    state["weight"][...] = 7.0
    assert not np.any(conv.weight.data == 7.0)


# -- train / eval ----------------------------------------------------------------------------
def test_train_and_eval_set_the_mode_of_every_submodule():
    net = small_net()
    assert all(m.training for m in net.modules())
    assert net.eval() is net
    assert not any(m.training for m in net.modules())
    net.train()
    assert all(m.training for m in net.modules())


def test_dropout_drops_in_train_mode_and_is_the_identity_in_eval_mode():
    drop = nn.Dropout(0.5)
    x = np.ones((50, 40), dtype=np.float32)
    y = drop(x)
    assert 0.4 < np.mean(y == 0) < 0.6
    np.testing.assert_array_equal(drop.backward(x), y)
    drop.eval()
    np.testing.assert_array_equal(drop(x), x)
    np.testing.assert_array_equal(drop.backward(x), x)


def test_batch_norm_uses_batch_statistics_in_train_and_running_statistics_in_eval():
    bn = nn.BatchNorm2d(2, momentum=0.5)
    x = random(4, 2, 3, 3) * 3 + 1
    y = bn(x)
    np.testing.assert_allclose(y.mean(axis=(0, 2, 3)), 0, atol=1e-5)
    assert int(bn.num_batches_tracked) == 1
    np.testing.assert_allclose(bn.running_mean, 0.5 * x.mean(axis=(0, 2, 3)), rtol=1e-5)
    running_mean, running_var = bn.running_mean.copy(), bn.running_var.copy()
    bn.eval()
    y = bn(x)
    expected = (x - running_mean[:, None, None]) / np.sqrt(running_var[:, None, None] + bn.eps)
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(bn.running_mean, running_mean)
    assert int(bn.num_batches_tracked) == 1


def test_batch_norm_with_momentum_none_keeps_a_cumulative_average():
    bn = nn.BatchNorm1d(3, momentum=None)
    batches = [random(6, 3, seed=s) + s for s in range(4)]
    for x in batches:
        bn(x)
    np.testing.assert_allclose(bn.running_mean, np.mean([x.mean(axis=0) for x in batches], axis=0), rtol=1e-5)
    assert int(bn.num_batches_tracked) == 4


# -- gradients -------------------------------------------------------------------------------
def test_zero_grad_zeroes_every_gradient_in_place():
    net = small_net()
    out = net(random(2, 2, 4, 4))
    net.backward(np.ones_like(out))
    grads = {name: p.grad for name, p in net.named_parameters()}
    assert all(np.any(g != 0) for g in grads.values())
    net.zero_grad()
    for name, p in net.named_parameters():
        assert p.grad is grads[name], name
        assert not np.any(p.grad), name


def test_gradients_accumulate_over_two_backward_calls():
    net = small_net().eval()  # deterministic: no dropout mask, fixed BN statistics
    x1, x2 = random(2, 2, 4, 4, seed=1), random(2, 2, 4, 4, seed=2)
    dy1, dy2 = random(2, 4, seed=3), random(2, 4, seed=4)

    def grads_of(x, dy):
        net.zero_grad()
        net(x)
        net.backward(dy)
        return {name: p.grad.copy() for name, p in net.named_parameters()}

    g1, g2 = grads_of(x1, dy1), grads_of(x2, dy2)
    net.zero_grad()
    net(x1)
    net.backward(dy1)
    net(x2)
    net.backward(dy2)
    for name, p in net.named_parameters():
        np.testing.assert_allclose(p.grad, g1[name] + g2[name], rtol=1e-5, atol=1e-6, err_msg=name)


def test_a_parameter_that_does_not_require_grad_gets_none():
    linear = nn.Linear(3, 2)
    linear.bias.requires_grad = False
    linear(random(4, 3))
    linear.backward(random(4, 2))
    assert linear.bias.grad is None
    assert linear.weight.grad is not None
    assert linear.num_parameters(trainable_only=True) == 6
    assert linear.num_parameters() == 8


def test_skip_input_grad_drops_only_the_data_gradient():
    x, dy = random(2, 2, 4, 4), random(2, 4, seed=1)
    net = small_net().eval()
    net(x)
    net.backward(dy)
    reference = {name: p.grad.copy() for name, p in net.named_parameters()}
    state = net.state_dict()
    net.train()
    assert net.skip_input_grad(x) == ["conv"]
    assert all(m.training for m in net.modules())
    assert int(net.bn.num_batches_tracked) == 0, "the probe pass must not update running statistics"
    for key, value in state.items():
        np.testing.assert_array_equal(net.state_dict()[key], value)
    net.eval().zero_grad()
    net(x)
    assert net.backward(dy) is None
    for name, p in net.named_parameters():
        np.testing.assert_allclose(p.grad, reference[name], rtol=1e-6, err_msg=name)


# -- hooks -----------------------------------------------------------------------------------
def test_forward_hook_sees_module_inputs_and_output_until_removed():
    net = small_net()
    calls = []
    handle = net.conv.register_forward_hook(lambda m, inputs, out: calls.append((m, inputs, out)))
    x = random(1, 2, 4, 4)
    net(x)
    assert len(calls) == 1
    module, inputs, out = calls[0]
    assert module is net.conv
    assert inputs[0] is x
    assert out.shape == (1, 3, 4, 4)
    handle.remove()
    net(x)
    assert len(calls) == 1


def test_forward_hooks_run_in_registration_order_on_every_call():
    relu = nn.ReLU()
    order = []
    relu.register_forward_hook(lambda *a: order.append("first"))
    relu.register_forward_hook(lambda *a: order.append("second"))
    relu(random(2, 2))
    relu(random(2, 2))
    assert order == ["first", "second", "first", "second"]


# -- dtype ------------------------------------------------------------------------------------
def test_to_float64_casts_parameters_gradients_and_float_buffers():
    net = small_net()
    out = net(random(2, 2, 4, 4))
    net.backward(np.ones_like(out))
    assert net.to(dtype=np.float64) is net
    for name, p in net.named_parameters():
        assert p.data.dtype == np.float64 and p.grad.dtype == np.float64, name
    assert net.bn.running_mean.dtype == np.float64
    assert net.bn.num_batches_tracked.dtype == np.int64
    assert net(random(2, 2, 4, 4).astype(np.float64)).dtype == np.float64
    net.float()
    assert all(p.data.dtype == np.float32 for p in net.parameters())


def test_double_keeps_the_values():
    conv = nn.Conv2d(2, 2, 3)
    before = conv.weight.data.copy()
    conv.double()
    np.testing.assert_array_equal(conv.weight.data, before.astype(np.float64))


def test_default_dtype_decides_the_dtype_of_new_layers(float64):
    assert nn.Conv2d(1, 1, 1).weight.data.dtype == np.float64
    assert nn.BatchNorm2d(2).running_var.dtype == np.float64


def test_to_an_unknown_device_is_rejected():
    with pytest.raises(ValueError, match=r"device must be 'cpu' or 'gpu', got 'tpu'"):
        nn.Linear(1, 1).to("tpu")


def test_to_gpu_without_a_gpu_raises_device_error():
    if backend.gpu_available():
        pytest.skip("a GPU is available here")
    with pytest.raises(backend.DeviceError, match=r"model.to\('gpu'\): no CUDA GPU is usable here"):
        nn.Linear(1, 1).to("gpu")


# -- containers and traversal ------------------------------------------------------------------
def test_sequential_indexing_slicing_length_and_append():
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU())
    assert len(net) == 2 and isinstance(net[0], nn.Conv2d) and isinstance(net[-1], nn.ReLU)
    head = net[:1]
    assert isinstance(head, nn.Sequential) and head[0] is net[0]
    net.append(nn.Flatten())
    assert [name for name, _ in net.named_children()] == ["0", "1", "2"]
    assert net(random(1, 1, 4, 4)).shape == (1, 8)


def test_named_parameters_and_modules_use_dotted_pytorch_names():
    block = nn.BasicBlock(2, 4, stride=2)
    names = [name for name, _ in block.named_parameters()]
    assert names == ["conv1.weight", "bn1.weight", "bn1.bias", "conv2.weight", "bn2.weight", "bn2.bias",
                     "downsample.0.weight", "downsample.1.weight", "downsample.1.bias"]
    assert "downsample.1" in dict(block.named_modules())
    assert [name for name, _ in block.named_buffers()][:3] == ["bn1.running_mean", "bn1.running_var",
                                                               "bn1.num_batches_tracked"]


def test_reassigning_an_attribute_replaces_the_registration():
    net = nn.Sequential(OrderedDict(fc=nn.Linear(2, 2)))
    net.fc = nn.Identity()
    assert [name for name, _ in net.named_parameters()] == []
    net.extra = nn.Linear(2, 3)
    assert [name for name, _ in net.named_parameters()] == ["extra.weight", "extra.bias"]


def test_repr_lists_the_submodules():
    text = repr(nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.ReLU()))
    assert "(0): Conv2d(1, 2, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1))" in text
    assert "(1): ReLU()" in text


def test_default_initialisation_follows_pytorch_bounds():
    conv = nn.Conv2d(3, 64, 5)
    bound = 1 / np.sqrt(3 * 5 * 5)
    assert np.abs(conv.weight.data).max() <= bound
    assert np.abs(conv.bias.data).max() <= bound
    assert np.abs(conv.weight.data).max() > 0.9 * bound  # uniform, so the extremes are reached
