"""The Feature-maps panel: pick a test image (or draw a digit for MNIST-like data) and see every conv layer's
activation maps for it, with the model's top-k predictions and their probabilities."""

from __future__ import annotations

import math

import numpy as np
import pyqtgraph as pg
from PyQt6.QtCore import Qt, pyqtSignal
from PyQt6.QtWidgets import (
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QScrollArea,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from convlab_gui import theme
from convlab_gui.array_view import to_pixmap
from convlab_gui.digit_canvas import DigitCanvas
from convlab_gui.live_data import FeatureMapSnapshot, RunView

TOP_K = 5
MAX_MAPS = 256  # tiles per layer; wider layers show their first MAX_MAPS channels
MAX_ROW_HEIGHT = 300  # on-screen pixels one layer's tile grid may take
MAX_SCALE = 10


def tile_maps(maps: np.ndarray, max_maps: int = MAX_MAPS) -> np.ndarray:
    """Tile (C, H, W) maps into one near-square (rows·(H+1)-1, cols·(W+1)-1) array, each map scaled to
    [0, 1] on its own (so weak channels stay visible), with NaN one-pixel gaps between tiles."""
    maps = np.nan_to_num(np.asarray(maps, dtype=np.float32)[:max_maps], nan=0.0, posinf=0.0, neginf=0.0)
    c, h, w = maps.shape
    cols = math.ceil(math.sqrt(c * h / w))  # near-square overall
    cols = max(1, min(cols, c))
    rows = math.ceil(c / cols)
    low = maps.min(axis=(1, 2), keepdims=True)
    span = maps.max(axis=(1, 2), keepdims=True) - low
    scaled = np.where(span > 0, (maps - low) / np.where(span > 0, span, 1), 0.0)
    grid = np.full((rows * (h + 1) - 1, cols * (w + 1) - 1), np.nan, np.float32)
    for k in range(c):
        r, q = divmod(k, cols)
        grid[r * (h + 1):r * (h + 1) + h, q * (w + 1):q * (w + 1) + w] = scaled[k]
    return grid


class FeatureMapsPanel(QWidget):
    """Left: the input (a test image by index, or a drawing) and the top-k predictions. Right: one tiled
    grid of activation maps per conv layer, in network order."""

    title = "Feature maps"
    image_chosen = pyqtSignal(object)  # (C, H, W) uint8: compute the feature maps of this image

    def __init__(self, parent=None):
        super().__init__(parent)
        self.samples = None  # the test split (an ImageDataset) images are picked from
        self.snapshot: FeatureMapSnapshot | None = None
        self.layer_arrays: dict[str, np.ndarray] = {}
        self._rows: dict[str, tuple[QLabel, QLabel]] = {}

        self.index = QSpinBox()
        self.index.setPrefix("test image #")
        self.index.setKeyboardTracking(False)
        self.index.valueChanged.connect(self.choose_test_image)
        self.random_button = QPushButton("Random")
        self.random_button.clicked.connect(self._random_image)
        self.sample_caption = QLabel()
        self.sample_caption.setObjectName("caption")

        self.canvas = DigitCanvas()
        self.canvas.drawn.connect(self.choose_drawing)
        clear = QPushButton("Clear")
        clear.clicked.connect(self.canvas.clear)
        self.canvas_box = QGroupBox("Draw a digit")
        canvas_layout = QVBoxLayout(self.canvas_box)
        canvas_layout.addWidget(self.canvas, 0, Qt.AlignmentFlag.AlignHCenter)
        canvas_layout.addWidget(clear)
        self.canvas_box.setVisible(False)

        self.input_label = QLabel()
        self.input_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.input_label.setMinimumSize(112, 112)
        self.predictions = pg.PlotWidget()
        self.predictions.setMenuEnabled(False)
        self.predictions.setMouseEnabled(False, False)
        self.predictions.setTitle(f"Top-{TOP_K} predictions", color=theme.TEXT, size="10pt")
        self.predictions.setXRange(0, 1)
        self.predictions.setLabel("bottom", "probability")
        self.predictions.setMinimumHeight(170)
        theme.plain_axes(self.predictions)
        self.bars = pg.BarGraphItem(x0=[], y=[], height=0.7, width=[], brush=theme.SERIES[0])
        self.predictions.addItem(self.bars)
        self.predictions.getViewBox().invertY(True)
        self.predictions.getAxis("left").setTicks([[]])  # the names sit beside the bars
        self._bar_labels: list[pg.TextItem] = []
        self.top_k: list[tuple[str, float]] = []

        picker = QGroupBox("Input")
        picker_layout = QGridLayout(picker)
        picker_layout.addWidget(self.index, 0, 0)
        picker_layout.addWidget(self.random_button, 0, 1)
        picker_layout.addWidget(self.sample_caption, 1, 0, 1, 2)
        picker_layout.addWidget(self.input_label, 2, 0, 1, 2)
        left = QVBoxLayout()
        left.addWidget(picker)
        left.addWidget(self.canvas_box)
        left.addWidget(self.predictions)
        left.addStretch(1)
        left_widget = QWidget()
        left_widget.setLayout(left)
        left_widget.setFixedWidth(300)

        self.maps_container = QWidget()
        self.maps_layout = QVBoxLayout(self.maps_container)
        self.maps_layout.addStretch(1)
        self.placeholder = QLabel("Start a run (or open a checkpoint) to see the feature maps of an image.")
        self.placeholder.setObjectName("caption")
        self.maps_layout.insertWidget(0, self.placeholder)
        self.scroll = QScrollArea()
        self.scroll.setWidgetResizable(True)
        self.scroll.setWidget(self.maps_container)

        layout = QHBoxLayout(self)
        layout.addWidget(left_widget)
        layout.addWidget(self.scroll, 1)

    # -- choosing the input --------------------------------------------------------------------------------
    def set_samples(self, samples) -> None:
        """Use `samples` (an ImageDataset's test split, or None) as the images to pick from."""
        self.samples = samples
        if samples is None:
            self.sample_caption.setText("No test images loaded.")
            return
        self.index.blockSignals(True)
        self.index.setRange(0, len(samples) - 1)
        self.index.blockSignals(False)
        c, h, w = samples.shape
        self.canvas_box.setVisible(c == 1 and (h, w) == (28, 28))
        self.choose_test_image(self.index.value())

    def choose_test_image(self, index: int) -> None:
        if self.samples is None:
            return
        image, label = self.samples[index]
        self.sample_caption.setText(f"label: {self.samples.classes[label]}")
        self._choose(image)

    def choose_drawing(self) -> None:
        if self.canvas.is_empty():
            return
        self.sample_caption.setText("your drawing")
        self._choose(self.canvas.digit())

    def _random_image(self) -> None:
        if self.samples is not None:
            self.index.setValue(int(np.random.default_rng().integers(len(self.samples))))

    def _choose(self, image: np.ndarray) -> None:
        self.input_label.setPixmap(to_pixmap(image, scale=max(1, 112 // image.shape[-1])))
        self.image_chosen.emit(np.ascontiguousarray(image))

    # -- drawing the maps ----------------------------------------------------------------------------------
    def refresh(self, view: RunView) -> None:
        if view.feature_maps is None or view.feature_maps is self.snapshot:
            return
        self.show_snapshot(view.feature_maps, view.classes)

    def show_snapshot(self, snapshot: FeatureMapSnapshot, classes) -> None:
        self.snapshot = snapshot
        self.placeholder.setVisible(not snapshot.maps)
        names = [name for name, _ in snapshot.maps]
        if names != list(self._rows):
            self._rebuild_rows(names)
        self.layer_arrays = {name: maps for name, maps in snapshot.maps}
        self._grids = {name: tile_maps(maps) for name, maps in snapshot.maps}
        for name, maps in snapshot.maps:
            c, h, w = maps.shape
            shown = f" (first {MAX_MAPS})" if c > MAX_MAPS else ""
            self._rows[name][0].setText(f"<b>{name}</b> &nbsp; {c} maps of {h}×{w}{shown}")
        self._draw_grids()
        self._show_predictions(snapshot.probabilities, classes)

    def _draw_grids(self) -> None:
        """Draw each layer's tile grid as large as the scroll area's width allows (whole-pixel zoom)."""
        width = max(self.scroll.viewport().width() - 24, 100)
        for name, grid in getattr(self, "_grids", {}).items():
            scale = max(1, min(MAX_SCALE, width // grid.shape[1], MAX_ROW_HEIGHT // grid.shape[0]))
            self._rows[name][1].setPixmap(to_pixmap(grid, scale=scale))

    def resizeEvent(self, event):  # noqa: N802
        super().resizeEvent(event)
        self._draw_grids()

    def _rebuild_rows(self, names) -> None:
        for caption, picture in self._rows.values():
            caption.deleteLater()
            picture.deleteLater()
        self._rows = {}
        for name in names:
            caption, picture = QLabel(), QLabel()
            picture.setAlignment(Qt.AlignmentFlag.AlignLeft)
            self.maps_layout.insertWidget(self.maps_layout.count() - 1, caption)
            self.maps_layout.insertWidget(self.maps_layout.count() - 1, picture)
            self._rows[name] = (caption, picture)

    def _show_predictions(self, probabilities: np.ndarray, classes) -> None:
        probabilities = np.asarray(probabilities, dtype=np.float64)
        k = min(TOP_K, probabilities.size)
        order = np.argsort(-probabilities)[:k]
        names = [classes[i] if i < len(classes) else str(i) for i in order]
        self.top_k = [(name, float(probabilities[i])) for name, i in zip(names, order)]
        self.bars.setOpts(x0=np.zeros(k), y=np.arange(k), width=probabilities[order], height=0.7)
        self.predictions.setYRange(-0.6, k - 0.4)
        for label in self._bar_labels:
            self.predictions.removeItem(label)
        self._bar_labels = []
        for row, (name, p) in enumerate(self.top_k):
            # The class name and probability beside the bar (inside it when the bar is long).
            inside = p > 0.6
            label = pg.TextItem(f"{name}  {p:.1%}", color="#0b1a29" if inside else theme.TEXT,
                                anchor=(1 if inside else 0, 0.5))
            label.setPos(p - 0.01 if inside else p + 0.01, row)
            self.predictions.addItem(label)
            self._bar_labels.append(label)
