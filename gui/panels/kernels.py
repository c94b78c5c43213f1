"""The Kernels panel: the first conv layer's filters as an image grid (RGB for colour input, a diverging
colour map for grey), and any conv layer's filters for one input channel, refreshed as training runs."""

from __future__ import annotations

import numpy as np
from PyQt6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QSpinBox, QSplitter, QVBoxLayout, QWidget

from convlab.inspect import probes
from convlab_gui.array_view import ArrayView
from convlab_gui.live_data import KernelSnapshot, RunView


def signed_grid(kernels: np.ndarray) -> np.ndarray:
    """Kernels (T, kh, kw) tiled with their true values (so sign and size compare across filters) and NaN
    (transparent) gaps between tiles."""
    return probes.tile_images(np.asarray(kernels, np.float64), background=np.nan)


def _describe(name: str, weight: np.ndarray) -> str:
    o, i, kh, kw = weight.shape
    return f"{name}: {o} filters of {i}×{kh}×{kw}"


class KernelsPanel(QWidget):
    """Two kernel grids: the first layer's filters, and a chosen layer's filters for one input channel."""

    title = "Kernels"

    def __init__(self, parent=None):
        super().__init__(parent)
        self.first_caption = QLabel("Start a run or open a checkpoint to see the filters.")
        self.first_caption.setObjectName("heading")
        self.first_caption.setWordWrap(True)
        self.first_layer = ArrayView(colormap="diverging", colorbar=True)

        self.layer_choice = QComboBox()
        self.layer_choice.setMinimumContentsLength(18)
        self.channel_choice = QSpinBox()
        self.channel_choice.setPrefix("input channel ")
        self.layer_caption = QLabel()
        self.layer_caption.setObjectName("caption")
        self.layer_caption.setWordWrap(True)
        self.layer_view = ArrayView(colormap="diverging", colorbar=True)
        self.layer_choice.currentIndexChanged.connect(self._choice_changed)
        self.channel_choice.valueChanged.connect(self._draw_chosen_layer)

        top = QWidget()
        top_layout = QVBoxLayout(top)
        top_layout.addWidget(self.first_caption)
        top_layout.addWidget(self.first_layer, 1)
        bottom = QWidget()
        bottom_layout = QVBoxLayout(bottom)
        picker = QHBoxLayout()
        picker.addWidget(QLabel("Layer"))
        picker.addWidget(self.layer_choice)
        picker.addWidget(self.channel_choice)
        picker.addStretch(1)
        bottom_layout.addLayout(picker)
        bottom_layout.addWidget(self.layer_caption)
        bottom_layout.addWidget(self.layer_view, 1)
        splitter = QSplitter()
        splitter.addWidget(top)
        splitter.addWidget(bottom)
        layout = QVBoxLayout(self)
        layout.addWidget(splitter)
        self.snapshot: KernelSnapshot | None = None

    def refresh(self, view: RunView) -> None:
        if view.kernels is None or view.kernels is self.snapshot:
            return
        self.show_snapshot(view.kernels)

    def show_snapshot(self, snapshot: KernelSnapshot) -> None:
        names = [name for name, _ in snapshot.layers]
        if self.snapshot is None or names != [name for name, _ in self.snapshot.layers]:
            self.layer_choice.blockSignals(True)
            chosen = self.layer_choice.currentText()
            self.layer_choice.clear()
            self.layer_choice.addItems(names)
            if chosen in names:
                self.layer_choice.setCurrentText(chosen)
            self.layer_choice.blockSignals(False)
        self.snapshot = snapshot
        if not snapshot.layers:
            self.first_caption.setText("This model has no conv layers.")
            return
        name, weight = snapshot.layers[0]
        self.first_caption.setText(f"First layer — {_describe(name, weight)} (step {snapshot.step})")
        # Colour input: each filter as one RGB tile (scaled per filter); otherwise signed values.
        rgb = weight.shape[1] == 3
        self.first_layer.set_array(probes.kernel_grid(weight) if rgb else signed_grid(weight[:, 0]))
        self._choice_changed()

    def _choice_changed(self) -> None:
        if self.snapshot is None or not self.snapshot.layers:
            return
        weight = dict(self.snapshot.layers).get(self.layer_choice.currentText())
        if weight is None:
            return
        self.channel_choice.setRange(0, weight.shape[1] - 1)
        self._draw_chosen_layer()

    def _draw_chosen_layer(self) -> None:
        if self.snapshot is None:
            return
        name = self.layer_choice.currentText()
        weight = dict(self.snapshot.layers).get(name)
        if weight is None:
            return
        channel = min(self.channel_choice.value(), weight.shape[1] - 1)
        self.layer_caption.setText(f"{_describe(name, weight)}; showing input channel {channel}")
        self.layer_view.set_array(signed_grid(weight[:, channel]))

    def arrays(self) -> dict[str, np.ndarray | None]:
        """What the two grids show (for tests and export)."""
        return {"first_layer": self.first_layer.array, "chosen_layer": self.layer_view.array}
