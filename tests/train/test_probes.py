"""Inspection probes: feature maps of every convolution, kernels tiled into an image, and per-layer
statistics, all without changing the model."""

from collections import OrderedDict

import numpy as np
import pytest

from convlab import models, nn
from convlab.inspect import conv_layers, feature_maps, kernel_grid, layer_statistics
from convlab.inspect.probes import feature_map_grid, tile_images


@pytest.fixture
def lenet():
    return models.get("lenet5")


def test_conv_layers_lists_every_convolution_in_forward_order(lenet):
    assert [name for name, _ in conv_layers(lenet)] == ["conv1", "conv2"]
    resnet = models.get("resnet20")
    assert len(conv_layers(resnet)) == 19  # 1 stem + 9 blocks × 2 (shortcut A has no convolution)


def test_feature_maps_are_each_convolutions_output(lenet):
    x = np.random.default_rng(0).normal(size=(1, 28, 28)).astype(np.float32)
    maps = feature_maps(lenet, x)
    assert [(name, m.shape) for name, m in maps] == [("conv1", (1, 6, 28, 28)), ("conv2", (1, 16, 10, 10))]
    lenet.eval()
    direct = lenet.conv1(x[None])
    np.testing.assert_allclose(maps[0][1], direct, rtol=1e-6)
    h = lenet.pool1(lenet.act1(direct))
    np.testing.assert_allclose(maps[1][1], lenet.conv2(h), rtol=1e-5, atol=1e-6)


def test_probing_restores_training_mode_and_removes_hooks(lenet):
    lenet.train()
    feature_maps(lenet, np.zeros((2, 1, 28, 28), np.float32))
    assert lenet.training and all(m.training for m in lenet.modules())
    assert not any(m._forward_hooks for m in lenet.modules())


def test_kernel_grid_of_grey_filters_tiles_each_filter_scaled_to_unit_range():
    conv = nn.Conv2d(1, 6, 5)
    grid = kernel_grid(conv.weight)
    assert grid.shape == (2 * 6 + 1, 3 * 6 + 1)  # 2 rows × 3 columns of 5-pixel tiles, 1-pixel borders
    first = grid[1:6, 1:6]
    w = conv.weight.data[0, 0]
    np.testing.assert_allclose(first, (w - w.min()) / (w.max() - w.min()), rtol=1e-6)
    assert grid.min() == 0 and grid.max() == 1


def test_kernel_grid_of_rgb_filters_is_a_colour_image():
    grid = kernel_grid(nn.Conv2d(3, 16, 3).weight)
    assert grid.shape == (4 * 4 + 1, 4 * 4 + 1, 3)


def test_kernel_grid_of_a_deeper_layer_puts_one_filter_per_row():
    grid = kernel_grid(nn.Conv2d(6, 4, 3).weight)
    assert grid.shape == (4 * 4 + 1, 6 * 4 + 1)


def test_kernel_grid_rejects_a_non_convolution_weight():
    with pytest.raises(ValueError, match=r"expected a convolution weight \(out, in, kh, kw\)"):
        kernel_grid(np.zeros((3, 4)))


def test_tiles_and_feature_map_grid_shapes():
    assert tile_images(np.zeros((5, 2, 3)), columns=2, padding=1).shape == (3 * 3 + 1, 2 * 4 + 1)
    assert feature_map_grid(np.random.default_rng(0).normal(size=(1, 16, 10, 10))).shape == (45, 45)


def test_layer_statistics_report_weights_gradients_and_activations():
    model = nn.Sequential(OrderedDict(conv=nn.Conv2d(1, 2, 3), relu=nn.ReLU(), flat=nn.Flatten(),
                                      fc=nn.Linear(2 * 4 * 4, 3)))
    x = np.random.default_rng(1).normal(size=(4, 1, 6, 6)).astype(np.float32)
    before = layer_statistics(model)
    assert [s["name"] for s in before] == ["conv", "fc"] and before[0]["grad_norm"] is None
    y = model(x)
    model.backward(np.ones_like(y))
    stats = {s["name"]: s for s in layer_statistics(model, x)}
    g = np.concatenate([model.fc.weight.grad.ravel(), model.fc.bias.grad.ravel()])
    assert stats["fc"]["grad_norm"] == pytest.approx(np.linalg.norm(g), rel=1e-5)
    assert stats["conv"]["weight_norm"] == pytest.approx(np.linalg.norm(model.conv.weight.data), rel=1e-5)
    assert stats["fc"]["activation_mean"] == pytest.approx(float(y.mean()), rel=1e-5)
    assert stats["conv"]["parameters"] == 2 * 9 + 2
