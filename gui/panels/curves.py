"""The Curves panel: training loss per step (raw and smoothed), loss and accuracy per epoch, learning rate."""

from __future__ import annotations

import time

import numpy as np
import pyqtgraph as pg
from PyQt6.QtCore import Qt
from PyQt6.QtWidgets import QGridLayout, QHBoxLayout, QLabel, QSlider, QVBoxLayout, QWidget

from convlab_gui import theme
from convlab_gui.live_data import RunView

STEP_PLOT_INTERVAL_S = 0.25


class Smoother:
    """Exponential moving average with debiasing (TensorBoard's smoothing), extended incrementally.

    `update(values)` smooths only the values it has not seen (the series only grows), so a long run
    costs the GUI thread the same per refresh as a short one. Non-finite values stay non-finite.
    """

    def __init__(self, weight: float):
        self.weight = float(weight)
        self.smoothed: list[float] = []
        self._running = 0.0
        self._correction = 1.0

    def update(self, values) -> np.ndarray:
        w = self.weight
        for v in values[len(self.smoothed):]:
            v = float(v)
            if not np.isfinite(v):
                self.smoothed.append(float("nan"))
                continue
            if w <= 0:
                self.smoothed.append(v)
                continue
            self._running = w * self._running + (1 - w) * v
            self._correction *= w
            self.smoothed.append(self._running / (1 - self._correction))
        return np.asarray(self.smoothed)


def _plot(title: str, y_label: str, x_label: str, legend_at_bottom: bool = False) -> pg.PlotWidget:
    plot = pg.PlotWidget()
    plot.setTitle(title, color=theme.TEXT, size="11pt")
    plot.setLabel("left", y_label)
    plot.setLabel("bottom", x_label)
    plot.showGrid(x=True, y=True, alpha=0.15)
    theme.plain_axes(plot)
    plot.addLegend(offset=(-10, -10 if legend_at_bottom else 10), labelTextColor=theme.TEXT,
                   brush=pg.mkBrush(30, 33, 39, 200))
    plot.setMenuEnabled(False)
    return plot


def _nice_ceiling(value: float) -> int:
    """The smallest of 1, 2, 5, 10, 20, 50, ... that is ≥ value."""
    magnitude = 10 ** int(np.floor(np.log10(max(value, 1))))
    for factor in (1, 2, 5, 10):
        if factor * magnitude >= value:
            return int(factor * magnitude)
    return int(10 * magnitude)


def _fit_y(plot: pg.PlotWidget, values: np.ndarray) -> None:
    """Set the y range to hold `values`, changing it only when they leave it or fill under half of it."""
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return
    low, high = float(finite.min()), float(finite.max())
    span = (high - low) or abs(high) or 1.0
    (shown_low, shown_high) = plot.getViewBox().viewRange()[1]
    fits = shown_low <= low and high <= shown_high
    if not fits or (high - low) < 0.5 * (shown_high - shown_low):
        plot.setYRange(low - 0.08 * span, high + 0.08 * span, padding=0)


def _list_in_legend(plot: pg.PlotWidget, curve, label: str, listed: bool) -> None:
    """Keep `curve` in the plot's legend only while it has data (no "validation" entry without a split)."""
    legend = plot.getPlotItem().legend
    present = any(sample.item is curve for sample, _ in legend.items)
    if listed and not present:
        legend.addItem(curve, label)
    elif present and not listed:
        legend.removeItem(curve)


class CurvesPanel(QWidget):
    """Four plots fed from the run's step and epoch history; repainted by `refresh` only when data changed."""

    title = "Curves"

    def __init__(self, parent=None):
        super().__init__(parent)
        self.step_plot = _plot("Training loss per step", "loss", "step")
        self.raw_loss = self.step_plot.plot(name="raw", pen=theme.pen(0, 1.0, alpha=70))
        self.smoothed_loss = self.step_plot.plot(name="smoothed", pen=theme.pen(0, 2.2))

        self.epoch_loss_plot = _plot("Loss per epoch", "loss", "epoch")
        self.epoch_accuracy_plot = _plot("Accuracy per epoch", "accuracy (%)", "epoch", legend_at_bottom=True)
        symbol = {"symbol": "o", "symbolSize": 7}
        self.train_loss = self.epoch_loss_plot.plot(pen=theme.pen(0), symbolBrush=theme.SERIES[0],
                                                    **symbol)
        self.val_loss = self.epoch_loss_plot.plot(pen=theme.pen(1),
                                                  symbolBrush=theme.SERIES[1], **symbol)
        self.test_loss = self.epoch_loss_plot.plot(pen=theme.pen(2), symbolBrush=theme.SERIES[2],
                                                   **symbol)
        self.train_accuracy = self.epoch_accuracy_plot.plot(pen=theme.pen(0),
                                                            symbolBrush=theme.SERIES[0], **symbol)
        self.val_accuracy = self.epoch_accuracy_plot.plot(pen=theme.pen(1),
                                                          symbolBrush=theme.SERIES[1], **symbol)
        self.test_accuracy = self.epoch_accuracy_plot.plot(pen=theme.pen(2),
                                                           symbolBrush=theme.SERIES[2], **symbol)

        self.lr_plot = _plot("Learning rate", "lr", "step")
        self.lr_plot.getPlotItem().legend.setVisible(False)  # one curve: the title says it
        self.lr_curve = self.lr_plot.plot(pen=theme.pen(3))
        for curve in (self.raw_loss, self.smoothed_loss, self.lr_curve):  # long runs: draw what shows
            curve.setClipToView(True)
            curve.setDownsampling(auto=True, method="peak")

        self.smoothing = QSlider(Qt.Orientation.Horizontal)
        self.smoothing.setRange(0, 99)
        self.smoothing.setValue(90)
        self.smoothing.setMaximumWidth(240)
        self.smoothing_label = QLabel()
        self.smoothing.valueChanged.connect(self._smoothing_changed)
        self._smoothing_changed()

        controls = QHBoxLayout()
        controls.addWidget(QLabel("Smoothing"))
        controls.addWidget(self.smoothing)
        controls.addWidget(self.smoothing_label)
        controls.addStretch(1)

        grid = QGridLayout()
        grid.addWidget(self.step_plot, 0, 0)
        grid.addWidget(self.lr_plot, 0, 1)
        grid.addWidget(self.epoch_loss_plot, 1, 0)
        grid.addWidget(self.epoch_accuracy_plot, 1, 1)
        layout = QVBoxLayout(self)
        layout.addLayout(controls)
        layout.addLayout(grid, 1)
        self._seen = (-1, -1)
        self._run_id = -1
        self._steps_drawn_at = 0.0

    @property
    def smoothing_weight(self) -> float:
        return self.smoothing.value() / 100

    def _smoothing_changed(self) -> None:
        self.smoothing_label.setText(f"{self.smoothing_weight:.2f}")
        self._smoother = Smoother(self.smoothing_weight)
        self._seen = (-1, -1)

    def refresh(self, view: RunView, throttle: bool = True) -> None:
        """Redraw from `view`: the step plots when new steps came (with `throttle`, at most every
        STEP_PLOT_INTERVAL_S, since a repaint of the live plots is the GUI's main cost), the epoch plots
        when an epoch ended."""
        if view.run_id != self._run_id:
            self._run_id = view.run_id
            self._smoother = Smoother(self.smoothing_weight)
            self._seen = (-1, -1)
        steps_seen, epochs_seen = self._seen
        now = time.monotonic()
        due = not throttle or now - self._steps_drawn_at >= STEP_PLOT_INTERVAL_S
        if view.steps.count != steps_seen and due:
            self._steps_drawn_at = now
            self._draw_steps(view)
            steps_seen = view.steps.count
        if len(view.epochs) != epochs_seen:
            self._draw_epochs(view)
        self._seen = (steps_seen, len(view.epochs))

    def _draw_steps(self, view: RunView) -> None:
        steps = view.steps
        x = steps.index
        smoothed = self._smoother.update(steps.loss)
        self.raw_loss.setData(x, steps.loss)
        self.smoothed_loss.setData(x, smoothed)
        self.lr_curve.setData(x, steps.lr)
        # Ranges that move only in jumps: an axis that changes on every step is repainted on every step,
        # which is most of what a live plot costs.
        last = int(x[-1]) if len(x) else 1
        end = _nice_ceiling(1.2 * last)
        if view.status.total_steps >= last:
            end = min(end, view.status.total_steps)
        for plot in (self.step_plot, self.lr_plot):
            plot.setXRange(0, end, padding=0.02)
        _fit_y(self.step_plot, steps.loss)
        _fit_y(self.lr_plot, steps.lr)

    def _draw_epochs(self, view: RunView) -> None:
        epochs = [e["epoch"] for e in view.epochs]
        loss, accuracy = self.epoch_loss_plot, self.epoch_accuracy_plot
        for plot, curve, key, label, scale in (
            (loss, self.train_loss, "train_loss", "train", 1),
            (loss, self.val_loss, "val_loss", "validation", 1),
            (loss, self.test_loss, "test_loss", "test", 1),
            (accuracy, self.train_accuracy, "train_accuracy", "train", 100),
            (accuracy, self.val_accuracy, "val_accuracy", "validation", 100),
            (accuracy, self.test_accuracy, "test_accuracy", "test", 100),
        ):
            points = [(e, r[key] * scale) for e, r in zip(epochs, view.epochs) if r.get(key) is not None]
            curve.setData([e for e, _ in points], [v for _, v in points])
            curve.setVisible(bool(points))
            _list_in_legend(plot, curve, label, bool(points))
        spacing = max(1, int(np.ceil(len(epochs) / 10)))  # whole epochs on the axis
        for plot in (loss, accuracy):
            plot.getAxis("bottom").setTickSpacing(major=spacing, minor=spacing)

    def curve_data(self) -> dict[str, np.ndarray]:
        """The arrays each curve currently draws, by name (for tests and CSV export)."""
        names = {"loss_raw": self.raw_loss, "loss_smoothed": self.smoothed_loss, "lr": self.lr_curve,
                 "train_loss": self.train_loss, "val_loss": self.val_loss, "test_loss": self.test_loss,
                 "train_accuracy": self.train_accuracy, "val_accuracy": self.val_accuracy,
                 "test_accuracy": self.test_accuracy}
        out = {}
        for name, item in names.items():
            _, y = item.getData()
            out[name] = np.asarray([] if y is None else y)
        return out
