"""The Gradient-flow panel: per-layer activation mean / std and gradient norm over time, and their latest
profile across depth — where the vanishing gradients of deep plain nets become visible."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PyQt6.QtWidgets import QGridLayout, QLabel, QVBoxLayout, QWidget

from convlab_gui import theme
from convlab_gui.live_data import LayerStatisticsSample, RunView


def _plot(title: str, y_label: str, x_label: str, log_y: bool = False) -> pg.PlotWidget:
    plot = pg.PlotWidget()
    plot.setMenuEnabled(False)
    plot.setTitle(title, color=theme.TEXT, size="10pt")
    plot.setLabel("left", y_label)
    plot.setLabel("bottom", x_label)
    plot.showGrid(x=True, y=True, alpha=0.15)
    theme.plain_axes(plot, minor_ticks=log_y)  # a log axis needs its minor ticks to label a short range
    plot.setLogMode(y=log_y)
    return plot


def depth_colours(count: int) -> list:
    """One colour per layer from viridis: dark purple for the first layer, yellow for the last."""
    return [theme.VIRIDIS.map(t, mode="qcolor") for t in np.linspace(0.0, 1.0, max(count, 1))][:count]


class GradientFlowPanel(QWidget):
    """Top: gradient norm and activation std of every layer over training steps (colour = depth).
    Bottom: the latest sample across depth — gradient norm per layer, and activation mean ± std."""

    title = "Gradient flow"

    def __init__(self, parent=None):
        super().__init__(parent)
        self.norm_history = _plot("Gradient norm per layer over time (log)", "‖∇W‖", "step", log_y=True)
        self.std_history = _plot("Activation std per layer over time", "std", "step")
        self.norm_profile = _plot("Gradient norm across depth (latest, log)", "‖∇W‖", "layer", log_y=True)
        self.activation_profile = _plot("Activations across depth (latest): mean ± std", "value", "layer")
        self.norm_profile_curve = self.norm_profile.plot(pen=theme.pen(0), symbol="o", symbolSize=6,
                                                         symbolBrush=theme.SERIES[0])
        self.mean_curve = self.activation_profile.plot(pen=theme.pen(1), symbol="o", symbolSize=6,
                                                       symbolBrush=theme.SERIES[1])
        self.std_band = pg.ErrorBarItem(x=np.zeros(0), y=np.zeros(0), height=np.zeros(0), beam=0.2,
                                        pen=theme.pen(1, 1.0, alpha=160))
        self.activation_profile.addItem(self.std_band)
        self.caption = QLabel("Statistics are sampled every few seconds while a run trains. "
                              "Colour marks depth: "
                              "purple = first layer, yellow = last. Gradients that shrink towards the first "
                              "layers are vanishing.")
        self.caption.setObjectName("caption")
        self.caption.setWordWrap(True)
        self._norm_curves: list = []
        self._std_curves: list = []
        self._layers: tuple[str, ...] = ()
        self._seen = (-1, -1)
        self.history: dict[str, np.ndarray] = {}

        grid = QGridLayout()
        grid.addWidget(self.norm_history, 0, 0)
        grid.addWidget(self.std_history, 0, 1)
        grid.addWidget(self.norm_profile, 1, 0)
        grid.addWidget(self.activation_profile, 1, 1)
        layout = QVBoxLayout(self)
        layout.addWidget(self.caption)
        layout.addLayout(grid, 1)

    def refresh(self, view: RunView) -> None:
        key = (view.run_id, len(view.layer_statistics))
        if key == self._seen or not view.layer_statistics:
            return
        self._seen = key
        self.show_samples(view.layer_statistics)

    def show_samples(self, samples: tuple[LayerStatisticsSample, ...]) -> None:
        latest = samples[-1]
        if latest.layers != self._layers:
            self._make_curves(latest.layers)
        usable = [s for s in samples if s.layers == self._layers]
        steps = np.array([s.step for s in usable], dtype=np.float64)
        norms = np.array([s.gradient_norm for s in usable], dtype=np.float64)  # (T, L)
        stds = np.array([s.activation_std for s in usable], dtype=np.float64)  # (T, L)
        self.history = {"step": steps, "gradient_norm": norms, "activation_std": stds}
        positive = np.where(norms > 0, norms, np.nan)  # log axes cannot draw zeros
        for i, (norm_curve, std_curve) in enumerate(zip(self._norm_curves, self._std_curves)):
            norm_curve.setData(steps, positive[:, i], connect="finite")
            std_curve.setData(steps, stds[:, i], connect="finite")
        depth = np.arange(len(self._layers), dtype=np.float64)
        latest_norm = np.asarray(latest.gradient_norm, dtype=np.float64)
        drawable = latest_norm > 0  # no gradients yet (an opened checkpoint): nothing to draw
        self.norm_profile_curve.setData(depth[drawable], latest_norm[drawable])
        mean = np.asarray(latest.activation_mean, dtype=np.float64)
        std = np.asarray(latest.activation_std, dtype=np.float64)
        self.mean_curve.setData(depth, mean)
        self.std_band.setData(x=depth, y=mean, height=2 * std)

    def _make_curves(self, layers: tuple[str, ...]) -> None:
        self.norm_history.clear()
        self.std_history.clear()
        colours = depth_colours(len(layers))
        self._norm_curves = [self.norm_history.plot(pen=pg.mkPen(c, width=1.5), name=n)
                             for n, c in zip(layers, colours)]
        self._std_curves = [self.std_history.plot(pen=pg.mkPen(c, width=1.5), name=n)
                            for n, c in zip(layers, colours)]
        self._layers = layers
        ticks = [[(i, name) for i, name in enumerate(layers)]] if len(layers) <= 12 else None
        for plot in (self.norm_profile, self.activation_profile):
            plot.getAxis("bottom").setTicks(ticks)
