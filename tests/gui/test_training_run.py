"""The app trains a model while staying responsive: curves fill, kernels and feature maps show arrays of the
right shapes, pause / resume / stop work, errors become dialogs, and closing the window saves a checkpoint."""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path

import numpy as np
import pytest
from PyQt6.QtCore import QTimer

from convlab.train import load_checkpoint
from convlab_gui.live_data import FAILED, FINISHED, PAUSED, RUNNING

pytestmark = pytest.mark.gui

TINY_RUN = ("--model", "lenet5", "--dataset", "mnist", "--batch-size", "32", "--no-download")


def steps_of(window) -> int:
    return window.session.live.view().steps.count


def every_panel_repainted(window):
    """Repaint all panels now (the timer repaints only the one on show)."""
    window.refresh(all_panels=True)
    return window


def wait_for_finish(qtbot, window, timeout_s: float = 60) -> str:
    with qtbot.waitSignal(window.run_finished, timeout=int(timeout_s * 1000)) as blocker:
        pass
    return blocker.args[0]


def test_a_short_run_fills_every_panel(qtbot, launch, tiny_data_root, tmp_path):
    window = launch(*TINY_RUN, "--epochs", "2", "--data", str(tiny_data_root), "--autostart")
    assert wait_for_finish(qtbot, window) == "completed"
    qtbot.waitUntil(lambda: every_panel_repainted(window).kernels.snapshot is not None
                    and window.feature_maps.snapshot is not None)
    view = window.session.live.view()
    assert view.status.state == FINISHED

    # Curves: one point per step (256 images / 32 = 8 steps per epoch), one per epoch.
    curves = window.curves.curve_data()
    assert len(curves["loss_raw"]) == len(curves["loss_smoothed"]) == len(curves["lr"]) == 16
    assert len(curves["train_loss"]) == len(curves["test_loss"]) == len(curves["test_accuracy"]) == 2
    assert np.all(np.isfinite(curves["loss_raw"]))

    # Kernels: LeNet-5's conv1 is (6, 1, 5, 5): six 5×5 tiles in a 2×3 grid with 1-pixel gaps.
    layers = dict(window.kernels.snapshot.layers)
    assert layers["conv1"].shape == (6, 1, 5, 5) and layers["conv2"].shape == (16, 6, 5, 5)
    assert window.kernels.arrays()["first_layer"].shape == (13, 19)
    window.kernels.layer_choice.setCurrentText("conv2")
    window.kernels.channel_choice.setValue(5)
    assert window.kernels.arrays()["chosen_layer"].shape == (4 * 6 + 1, 4 * 6 + 1)  # 16 tiles, 4×4

    # Feature maps of the first test image: every conv layer, and class probabilities summing to 1.
    maps = window.feature_maps.layer_arrays
    assert list(maps) == ["conv1", "conv2"]
    assert maps["conv1"].shape == (6, 28, 28) and maps["conv2"].shape == (16, 10, 10)
    probabilities = window.feature_maps.snapshot.probabilities
    assert probabilities.shape == (10,) and probabilities.sum() == pytest.approx(1.0, abs=1e-6)
    assert len(window.feature_maps.top_k) == 5

    # Evaluation after the last epoch: a 10×10 confusion matrix over the 64 test images.
    result = window.evaluation.result
    assert result is not None and result.confusion.shape == (10, 10) and result.confusion.sum() == 64
    assert result.accuracy == pytest.approx(view.epochs[-1]["test_accuracy"])
    assert window.evaluation.gallery.count() == min(result.misclassified_count, 64)

    # Gradient flow: conv1, conv2, fc1..fc3 with a positive gradient norm per sample.
    history = window.gradient_flow.history
    assert history["gradient_norm"].shape[1] == 5
    assert np.all(history["gradient_norm"][-1] > 0)

    # Export: a non-empty PNG per panel and the metrics as CSV.
    pngs = window.export_panels(tmp_path / "shots")
    assert {p.name for p in pngs} >= {"curves.png", "kernels.png", "feature-maps.png", "evaluation.png",
                                       "gradient-flow.png", "kernel-playground.png"}
    assert all(p.stat().st_size > 1000 for p in pngs)
    epochs_csv, steps_csv = window.export_metrics(tmp_path / "csv")
    assert len(epochs_csv.read_text().splitlines()) == 1 + 2
    assert len(steps_csv.read_text().splitlines()) == 1 + 16


def test_pause_resume_and_stop(qtbot, launch, tiny_data_root, tmp_path):
    window = launch(*TINY_RUN, "--epochs", "200", "--data", str(tiny_data_root), "--autostart")
    qtbot.waitUntil(lambda: steps_of(window) >= 3, timeout=30_000)

    window.run_panel.pause_button.click()
    qtbot.waitUntil(lambda: window.session.live.view().status.state == PAUSED, timeout=10_000)
    window.refresh()
    assert window.run_panel.resume_button.isEnabled() and not window.run_panel.pause_button.isEnabled()
    paused_at = steps_of(window)
    qtbot.wait(600)
    assert steps_of(window) == paused_at, "no step may run while paused"

    # While paused, the worker still answers: a drawn digit gets its feature maps.
    window.tabs.setCurrentWidget(window.feature_maps)
    before = window.session.live.view().feature_maps
    window.feature_maps.canvas.stroke([(110, 40), (112, 120), (110, 190)])
    window.feature_maps.choose_drawing()
    qtbot.waitUntil(lambda: window.session.live.view().feature_maps is not before, timeout=10_000)
    drawn = window.session.live.view().feature_maps
    assert drawn.image.shape == (1, 28, 28) and drawn.image.max() > 200

    # "Save now" while paused writes a checkpoint at the paused step. The run may already have written
    # one at an epoch's end (8 steps an epoch here), so the test removes it first: only the save brings
    # it back.
    checkpoint = Path(window.session.live.view().status.checkpoint)
    assert window.session.live.view().status.checkpoint_step <= paused_at
    checkpoint.unlink()
    window.run_panel.save_button.click()
    qtbot.waitUntil(lambda: checkpoint.exists()
                    and window.session.live.view().status.checkpoint_step == paused_at, timeout=10_000)
    _, info = load_checkpoint(checkpoint)
    assert info["step"] == paused_at

    window.run_panel.resume_button.click()
    qtbot.waitUntil(lambda: steps_of(window) >= paused_at + 3, timeout=30_000)
    assert window.session.live.view().status.state == RUNNING

    window.run_panel.stop_button.click()
    assert wait_for_finish(qtbot, window) == "stopped"
    view = window.session.live.view()
    checkpoint = Path(view.status.checkpoint)
    _, info = load_checkpoint(checkpoint)
    assert info["step"] == view.status.step, "stopping saves a checkpoint at the step it stopped"


def test_closing_the_window_during_training_stops_cleanly_and_saves(qtbot, launch, tiny_data_root, tmp_path):
    out = tmp_path / "closed-run"
    window = launch(*TINY_RUN, "--epochs", "200", "--data", str(tiny_data_root), "--autostart",
                    "--out", str(out))
    qtbot.waitUntil(lambda: steps_of(window) >= 3, timeout=30_000)
    window.close()
    assert not window.session.worker.thread.is_alive()
    _, info = load_checkpoint(out / "last.h5")
    assert info["step"] >= 3
    assert info["step"] == window.session.live.view().status.step


def test_a_bad_setting_brings_up_an_error_dialog(qtbot, launch, tiny_data_root):
    window = launch(*TINY_RUN, "--epochs", "1", "--augment", "sparkle", "--data", str(tiny_data_root),
                    "--autostart")
    qtbot.waitUntil(lambda: bool(window.error_dialogs), timeout=20_000)
    assert "sparkle" in window.error_dialogs[0].text()
    assert window.session.live.view().status.state == FAILED


def test_a_bad_data_directory_brings_up_an_error_dialog(qtbot, launch, tmp_path):
    empty = tmp_path / "no-data-here"
    empty.mkdir()
    window = launch(*TINY_RUN, "--epochs", "1", "--data", str(empty), "--autostart")
    qtbot.waitUntil(lambda: bool(window.error_dialogs), timeout=20_000)
    dialog = window.error_dialogs[0]
    assert "not found" in dialog.text() and str(empty) in dialog.text()
    assert not dialog.isModal(), "errors must not block the window"
    assert window.session.live.view().status.state == FAILED
    dialog.close()
    qtbot.waitUntil(lambda: not window.error_dialogs)
    window.refresh()
    assert window.run_panel.start_button.isEnabled(), "after a failed run the user can start another"


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the engine's NaNs on the way to divergence
def test_divergence_is_reported_not_raised(qtbot, launch, tiny_data_root):
    window = launch(*TINY_RUN, "--epochs", "3", "--lr", "1e6", "--data", str(tiny_data_root), "--autostart")
    assert wait_for_finish(qtbot, window) == "diverged"
    window.refresh()
    assert window.error_dialogs and "diverged" in window.error_dialogs[0].text()
    assert "failed" in window.state_label.text()


def test_event_loop_stays_responsive_while_training(qtbot, launch, tiny_data_root, record_property):
    """A 20 ms single-shot timer fires late by the time the event loop was blocked; measure it repeatedly
    while training (and repainting) runs."""
    window = launch(*TINY_RUN, "--epochs", "200", "--data", str(tiny_data_root), "--autostart")
    qtbot.waitUntil(lambda: steps_of(window) >= 2, timeout=30_000)
    lateness_ms = []

    def probe():
        scheduled = time.perf_counter()
        QTimer.singleShot(20, lambda: lateness_ms.append((time.perf_counter() - scheduled) * 1000 - 20))

    for count in range(1, 61):
        probe()
        qtbot.waitUntil(lambda count=count: len(lateness_ms) >= count, timeout=5_000)
    steps_during = steps_of(window)
    window.session.stop()
    lateness_ms.sort()
    median, worst = statistics.median(lateness_ms), lateness_ms[-1]
    p95 = lateness_ms[int(0.95 * len(lateness_ms))]
    record_property("event_loop_lateness_ms", f"median {median:.1f}, p95 {p95:.1f}, max {worst:.1f}")
    print(f"\nevent-loop lateness while training: median {median:.1f} ms, p95 {p95:.1f} ms, "
          f"max {worst:.1f} ms ({steps_during} steps trained)")
    assert steps_during > 2, "training must have progressed during the measurement"
    assert median < 100
    assert p95 < 250  # generous: the CI machine may be loaded


def test_opening_a_checkpoint_shows_its_kernels_and_evaluates(qtbot, launch, tiny_data_root, tmp_path):
    out = tmp_path / "trained"
    first = launch(*TINY_RUN, "--epochs", "1", "--data", str(tiny_data_root), "--autostart",
                   "--out", str(out))
    assert wait_for_finish(qtbot, first) == "completed"
    trained = dict(first.session.live.view().kernels.layers)["conv1"]
    first.close()

    window = launch("--checkpoint", str(out / "last.h5"), "--data", str(tiny_data_root))
    qtbot.waitUntil(lambda: every_panel_repainted(window).kernels.snapshot is not None, timeout=20_000)
    assert np.array_equal(dict(window.kernels.snapshot.layers)["conv1"], trained)
    # The status label repaints on the GUI timer, possibly a tick after the kernels panel.
    qtbot.waitUntil(lambda: "inspecting" in window.state_label.text(), timeout=10_000)
    window.evaluation.evaluate_button.click()
    qtbot.waitUntil(lambda: every_panel_repainted(window).evaluation.result is not None, timeout=20_000)
    assert window.evaluation.result.confusion.sum() == 64
    assert not window.error_dialogs


@pytest.mark.data
def test_lenet5_on_real_mnist(qtbot, launch, tmp_path):
    if not os.environ.get("CONVLAB_DATA"):
        pytest.skip("CONVLAB_DATA is not set; point it at a folder with mnist/ to run this test")
    window = launch("--model", "lenet5", "--dataset", "mnist", "--epochs", "1", "--train-subset", "2000",
                    "--test-subset", "500", "--data", os.environ["CONVLAB_DATA"], "--no-download",
                    "--autostart")
    qtbot.waitUntil(lambda: bool(window.session.live.view().epochs), timeout=90_000)
    assert wait_for_finish(qtbot, window, 30) == "completed"
    qtbot.waitUntil(lambda: every_panel_repainted(window).feature_maps.snapshot is not None)
    epoch = window.session.live.view().epochs[0]
    assert epoch["test_accuracy"] > 0.5, "a LeNet-5 epoch on 2,000 real digits learns something"
    assert window.feature_maps.layer_arrays["conv1"].shape == (6, 28, 28)
    assert window.kernels.arrays()["first_layer"].shape == (13, 19)
    assert window.evaluation.result.confusion.sum() == 500


def test_a_stopped_run_continues_from_its_checkpoint_to_the_end(qtbot, launch, tiny_data_root, tmp_path):
    out = tmp_path / "continued"
    first = launch(*TINY_RUN, "--epochs", "2", "--data", str(tiny_data_root), "--autostart", "--out", str(out))
    qtbot.waitUntil(lambda: steps_of(first) >= 3, timeout=30_000)
    first.run_panel.stop_button.click()
    assert wait_for_finish(qtbot, first) == "stopped"
    stopped_at = first.session.live.view().status.step
    first.close()

    window = launch("--continue", str(out / "last.h5"))
    assert wait_for_finish(qtbot, window) == "completed"
    view = window.session.live.view()
    assert view.status.step == 16, "the continued run ends where an uninterrupted one would (2 × 8 steps)"
    assert view.steps.index[0] == stopped_at + 1, "training picks up at the step after the checkpoint"
    assert [e["epoch"] for e in view.epochs] == [1, 2]
