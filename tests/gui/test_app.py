"""The app as a whole without training: command-line options fill the Run panel, the model summary is one
click away, bad form input becomes a dialog, and the playground finds test images on its own."""

from __future__ import annotations

import pytest

from convlab_gui.app import build_parser, config_from_args

pytestmark = pytest.mark.gui


def test_command_line_options_describe_the_run(launch, tmp_path):
    argv = ["--model", "resnet20", "--dataset", "cifar10", "--epochs", "4", "--train-subset", "500",
            "--test-subset", "100", "--batch-size", "16", "--lr", "0.02", "--device", "cpu",
            "--data", "/d",
            "--out", str(tmp_path / "o"), "--no-download"]
    config = config_from_args(build_parser().parse_args(argv))
    assert (config.model, config.dataset, config.epochs, config.batch_size, config.lr, config.device) == \
        ("resnet20", "cifar10", 4, 16, 0.02, "cpu")
    data_fields = (config.train_subset, config.test_subset, config.data_dir, config.download)
    assert data_fields == (500, 100, "/d", False)
    window = launch(*argv)
    assert window.run_panel.config() == config
    assert window.session.worker is None, "without --autostart nothing runs"


def test_the_model_summary_is_one_click_away(qtbot, launch):
    window = launch()
    window.run_panel.model.setCurrentText("lenet5")
    window.run_panel.summary_button.click()
    qtbot.waitUntil(lambda: hasattr(window, "summary_dialog") and window.summary_dialog.isVisible())
    text = window.summary_text.toPlainText()
    assert "Total params: 61,706" in text and "conv1" in text


def test_a_bad_learning_rate_in_the_form_is_reported_not_started(qtbot, launch):
    window = launch()
    window.run_panel.lr.setText("fast please")
    window.run_panel.start_button.click()
    assert window.error_dialogs and "Learning rate" in window.error_dialogs[0].text()
    assert window.session.worker is None


def test_the_playground_loads_test_images_of_the_chosen_data_set(qtbot, launch, tiny_data_root):
    window = launch("--dataset", "mnist", "--data", str(tiny_data_root))
    window.tabs.setCurrentWidget(window.playground)
    qtbot.waitUntil(lambda: window.playground.output is not None, timeout=10_000)
    assert window.playground.output.shape == (1, 28, 28)
    assert window.playground.index.maximum() == 63


def test_the_app_makes_convlabs_workers_block_between_ops(launch):
    """The GUI thread needs a core while a run trains: no worker spins in the app."""
    from convlab import parallel

    parallel.set_spin(None)
    try:
        launch()
        assert parallel._state["spin"] is False
    finally:
        parallel.set_spin(None)
