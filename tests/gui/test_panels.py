"""The panels on their own: the kernel playground computes a cross-correlation, the digit canvas prepares
MNIST-style input, the run form round-trips a TrainConfig, and the helpers behind the plots are right."""

from __future__ import annotations

import numpy as np
import pytest

from convlab.data import ImageDataset
from convlab.train import TrainConfig
from convlab_gui.digit_canvas import DigitCanvas, mnist_style
from convlab_gui.panels.curves import Smoother
from convlab_gui.panels.feature_maps import tile_maps
from convlab_gui.panels.playground import PRESETS, PlaygroundPanel, apply_kernel
from convlab_gui.run_panel import RunPanel
from convlab_gui.session import evaluation_result
from tests.train.tiny_data import tiny_mnist

pytestmark = pytest.mark.gui


def cross_correlate(image: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """The textbook definition, one output pixel at a time: y[i, j] = Σ x_pad[i+u, j+v] k[u, v]."""
    padded = np.pad(image.astype(np.float64), 1)
    out = np.zeros(image.shape)
    for i in range(image.shape[0]):
        for j in range(image.shape[1]):
            out[i, j] = (padded[i:i + 3, j:j + 3] * kernel).sum()
    return out


@pytest.mark.parametrize("preset", ["edge detect", "sharpen", "Gaussian blur", "Sobel x (vertical edges)"])
def test_playground_output_is_the_cross_correlation_of_the_image(qtbot, preset):
    _, test = tiny_mnist(n_train=8, n_test=8)
    panel = PlaygroundPanel()
    qtbot.addWidget(panel)
    panel.set_samples(test)
    panel.index.setValue(3)
    panel.preset.setCurrentText(preset)
    np.testing.assert_allclose(panel.kernel(), PRESETS[preset], atol=1e-4)  # as shown, 4 decimals
    expected = cross_correlate(test.images[3, 0] / 255, panel.kernel())
    np.testing.assert_allclose(panel.output[0], expected, atol=1e-5)
    np.testing.assert_array_equal(panel.input_view.array, test.images[3, 0])


def test_typing_a_kernel_value_makes_it_custom_and_updates_the_output(qtbot):
    _, test = tiny_mnist(n_train=8, n_test=4)
    panel = PlaygroundPanel()
    qtbot.addWidget(panel)
    panel.set_samples(test)
    panel.preset.setCurrentText("identity")
    np.testing.assert_allclose(panel.output[0], test.images[0, 0] / 255, atol=1e-6)
    panel.cells[4].setValue(2.0)  # the centre weight, as a user would type it
    assert panel.preset.currentText() == "custom"
    np.testing.assert_allclose(panel.output[0], test.images[0, 0] / 255 * 2, atol=1e-6)
    with pytest.raises(ValueError, match="3×3"):
        panel.set_kernel(np.ones((2, 2)))


def test_playground_filters_each_colour_channel_alike():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (3, 8, 8), dtype=np.uint8)
    out = apply_kernel(image, PRESETS["Sobel y (horizontal edges)"])
    assert out.shape == (3, 8, 8)
    for c in range(3):
        expected = cross_correlate(image[c] / 255, PRESETS["Sobel y (horizontal edges)"])
        np.testing.assert_allclose(out[c], expected, atol=1e-5)


def test_a_drawn_digit_is_scaled_and_centred_like_mnist(qtbot):
    canvas = DigitCanvas()
    qtbot.addWidget(canvas)
    assert canvas.is_empty()
    canvas.stroke([(30, 20), (40, 200)])  # a long stroke near the left edge
    digit = canvas.digit()
    assert digit.shape == (1, 28, 28) and digit.dtype == np.uint8
    rows, cols = np.nonzero(digit[0] > 16)
    assert rows.max() - rows.min() + 1 <= 21, "the longer side is scaled to 20 pixels"
    mass = digit[0].astype(np.float64)
    cy = (mass.sum(axis=1) @ np.arange(28)) / mass.sum()
    cx = (mass.sum(axis=0) @ np.arange(28)) / mass.sum()
    assert abs(cy - 14) < 1.5 and abs(cx - 14) < 1.5, "the centre of mass sits in the middle"
    canvas.clear()
    assert canvas.is_empty() and not mnist_style(canvas.ink()).any()


def test_smoothing_is_a_debiased_moving_average_that_extends_incrementally():
    values = np.array([4.0, 2.0, 6.0, np.nan, 1.0])
    smoother = Smoother(0.5)
    first = smoother.update(values[:2])
    full = smoother.update(values)
    assert first[0] == 4.0, "debiasing makes the first value itself"
    assert full[1] == pytest.approx((0.5 * 0.5 * 4 + 0.5 * 2) / (1 - 0.25))
    assert np.isnan(full[3]) and np.isfinite(full[4])
    np.testing.assert_array_equal(full[:2], first)
    np.testing.assert_array_equal(Smoother(0.0).update(values[:3]), values[:3])


def test_feature_maps_are_tiled_near_square_each_scaled_to_unit_range():
    maps = np.stack([np.full((4, 4), 7.0), np.arange(16.0).reshape(4, 4), -np.arange(16.0).reshape(4, 4)])
    grid = tile_maps(maps)
    assert grid.shape == (2 * 5 - 1, 2 * 5 - 1)  # 3 tiles in a 2×2 grid with 1-pixel gaps
    assert np.isnan(grid[4]).all() and np.isnan(grid[:, 4]).all()
    np.testing.assert_array_equal(grid[:4, :4], 0.0)  # a constant map
    assert grid[:4, 5:].min() == 0.0 and grid[:4, 5:].max() == 1.0
    assert grid[5, 0] == 1.0, "the third map's largest value (-0) is at its top-left"


def test_evaluation_result_counts_mistakes_and_orders_them_by_confidence():
    labels = np.array([0, 1, 2, 2])
    logits = np.log(np.array([[0.8, 0.1, 0.1], [0.6, 0.3, 0.1], [0.1, 0.1, 0.8], [0.05, 0.9, 0.05]]))
    images = np.arange(4, dtype=np.uint8)[:, None, None, None] * np.ones((1, 1, 2, 2), np.uint8)
    data = ImageDataset(images, labels, ("a", "b", "c"), (0.5,), (0.5,))
    result = evaluation_result(logits, labels, data, data.classes, step=7)
    np.testing.assert_array_equal(result.confusion, [[1, 0, 0], [1, 0, 0], [0, 1, 1]])
    np.testing.assert_allclose(result.per_class_accuracy, [1.0, 0.0, 0.5])
    assert result.accuracy == 0.5 and result.misclassified_count == 2 and result.step == 7
    assert [m.index for m in result.misclassified] == [3, 1], "most confident mistake first"
    assert (result.misclassified[0].true, result.misclassified[0].predicted) == (2, 1)
    assert result.misclassified[0].probability == pytest.approx(0.9)
    np.testing.assert_array_equal(result.misclassified[0].image, images[3])


def test_the_run_form_round_trips_a_config(qtbot):
    panel = RunPanel()
    qtbot.addWidget(panel)
    config = TrainConfig(model="resnet20", dataset="cifar10", epochs=3, batch_size=128, optimizer="adam",
                         lr=1e-3, schedule="cosine", augment="crop+flip", device="cpu", data_dir="/data",
                         download=False, out_dir="/runs/x", train_subset=5000, test_subset=1000)
    panel.set_config(config)
    assert panel.config() == config
    panel.set_config(TrainConfig(model="lenet5", dataset="mnist"))
    left_open = panel.config()
    recipe_fields = (left_open.lr, left_open.optimizer, left_open.epochs, left_open.augment)
    assert recipe_fields == (None, None, None, None), "fields left at 'recipe' stay None for the recipe"
    panel.lr.setText("fast")
    with pytest.raises(ValueError, match="Learning rate must be a number"):
        panel.config()


def test_the_cuda_graph_option_is_offered_only_where_a_gpu_can_run_it(qtbot):
    from convlab import backend

    panel = RunPanel()
    qtbot.addWidget(panel)
    panel.device.setCurrentText("cpu")
    assert not panel.cuda_graph.isEnabled()
    panel.cuda_graph.setChecked(True)
    assert panel.config().cuda_graph is False, "a greyed-out option must not reach the config"
    panel.device.setCurrentText("gpu")
    assert panel.cuda_graph.isEnabled() == backend.gpu_available()
    if backend.gpu_available():
        assert panel.config().cuda_graph is True
