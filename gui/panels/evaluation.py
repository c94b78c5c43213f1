"""The Evaluation panel: the test set's confusion matrix as a heat map, per-class accuracy, and a gallery of
misclassified test images with their true and predicted labels."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PyQt6.QtCore import QSize, Qt, pyqtSignal
from PyQt6.QtGui import QIcon
from PyQt6.QtWidgets import (
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QListView,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from convlab_gui import theme
from convlab_gui.array_view import to_pixmap
from convlab_gui.live_data import EvaluationResult, RunView

GALLERY_SIZE = 64
MAX_ANNOTATED_CLASSES = 20  # print counts in the cells up to this many classes


class EvaluationPanel(QWidget):
    """Filled from an `EvaluationResult`; `evaluate_requested` asks the app to compute a fresh one."""

    title = "Evaluation"
    evaluate_requested = pyqtSignal()

    def __init__(self, parent=None):
        super().__init__(parent)
        self.result: EvaluationResult | None = None
        self.evaluate_button = QPushButton("Evaluate on the test set")
        self.evaluate_button.setObjectName("primary")
        self.evaluate_button.clicked.connect(self.evaluate_requested)
        self.summary = QLabel("Evaluate the current model to see where it goes wrong.")
        self.summary.setObjectName("heading")

        self.confusion_plot = pg.PlotWidget()
        self.confusion_plot.setMenuEnabled(False)
        self.confusion_plot.setTitle("Confusion matrix (colour: √ share of the row)", color=theme.TEXT,
                                     size="10pt")
        self.confusion_plot.setAspectLocked(True)
        self.confusion_plot.invertY(True)
        self.confusion_plot.setLabel("left", "true")
        self.confusion_plot.setLabel("bottom", "predicted")
        self.confusion_image = pg.ImageItem(axisOrder="row-major")
        self.confusion_plot.addItem(self.confusion_image)
        self._cell_labels: list[pg.TextItem] = []

        self.per_class_plot = pg.PlotWidget()
        self.per_class_plot.setMenuEnabled(False)
        self.per_class_plot.setTitle("Per-class accuracy (%)", color=theme.TEXT, size="10pt")
        self.per_class_plot.setXRange(0, 100)
        self.per_class_plot.showGrid(x=True, alpha=0.15)
        self.per_class_plot.invertY(True)
        theme.plain_axes(self.per_class_plot)
        self.per_class_bars = pg.BarGraphItem(x0=[], y=[], width=[], height=0.7, brush=theme.SERIES[0])
        self.per_class_plot.addItem(self.per_class_bars)

        self.gallery = QListWidget()
        self.gallery.setViewMode(QListView.ViewMode.IconMode)
        self.gallery.setIconSize(QSize(84, 84))
        self.gallery.setGridSize(QSize(120, 124))
        self.gallery.setResizeMode(QListView.ResizeMode.Adjust)
        self.gallery.setMovement(QListView.Movement.Static)
        self.gallery.setWordWrap(True)
        self.gallery_caption = QLabel("Misclassified test images (true → predicted)")
        self.gallery_caption.setObjectName("caption")

        header = QHBoxLayout()
        header.addWidget(self.summary, 1)
        header.addWidget(self.evaluate_button)
        grid = QGridLayout()
        grid.addWidget(self.confusion_plot, 0, 0)
        grid.addWidget(self.per_class_plot, 0, 1)
        gallery_box = QVBoxLayout()
        gallery_box.addWidget(self.gallery_caption)
        gallery_box.addWidget(self.gallery)
        grid.addLayout(gallery_box, 1, 0, 1, 2)
        grid.setRowStretch(0, 3)
        grid.setRowStretch(1, 2)
        layout = QVBoxLayout(self)
        layout.addLayout(header)
        layout.addLayout(grid, 1)

    def set_busy(self, busy: bool) -> None:
        self.evaluate_button.setEnabled(not busy)
        if busy:
            self.summary.setText("Evaluating…")

    def refresh(self, view: RunView) -> None:
        if view.evaluation is not None and view.evaluation is not self.result:
            self.show_result(view.evaluation)

    def show_result(self, result: EvaluationResult) -> None:
        self.result = result
        self.set_busy(False)
        classes = result.classes
        k = len(classes)
        self.summary.setText(f"Test accuracy {result.accuracy:.2%} on {result.count} images "
                             f"(step {result.step}); {result.misclassified_count} misclassified")

        confusion = result.confusion.astype(np.float64)
        rows = confusion.sum(axis=1, keepdims=True)
        fraction = np.divide(confusion, rows, out=np.zeros_like(confusion), where=rows > 0)
        shade = np.sqrt(fraction)
        self.confusion_image.setImage(theme.VIRIDIS.map(shade, mode="byte"), levels=(0, 255),
                                      autoLevels=False)
        self.confusion_image.setRect(-0.5, -0.5, k, k)
        for label in self._cell_labels:
            self.confusion_plot.removeItem(label)
        self._cell_labels = []
        if k <= MAX_ANNOTATED_CLASSES:
            for (i, j), count in np.ndenumerate(result.confusion):
                if count:
                    label = pg.TextItem(str(count), anchor=(0.5, 0.5),
                                        color="#000000" if shade[i, j] > 0.7 else "#ffffff")
                    label.setPos(j, i)
                    self.confusion_plot.addItem(label)
                    self._cell_labels.append(label)
        # Names down the side (room for "automobile"), indices along the bottom (columns are narrow).
        labelled = k <= MAX_ANNOTATED_CLASSES
        names = [list(enumerate(c if c == str(i) else f"{c} ({i})" for i, c in enumerate(classes)))] \
            if labelled else None
        indices = [[(i, str(i)) for i in range(k)]] if labelled else None
        width = 14 + 7 * max(len(name) for _, name in names[0]) if labelled else None
        self.confusion_plot.getAxis("left").setTicks(names)
        self.confusion_plot.getAxis("bottom").setTicks(indices)
        self.confusion_plot.autoRange(padding=0.01)
        self.per_class_bars.setOpts(x0=np.zeros(k), y=np.arange(k), width=result.per_class_accuracy * 100,
                                    height=0.7)
        self.per_class_plot.getAxis("left").setTicks(names)
        self.per_class_plot.setYRange(-0.6, k - 0.4)
        for plot in (self.confusion_plot, self.per_class_plot):
            plot.getAxis("left").setWidth(width)

        self.gallery.clear()
        for sample in result.misclassified[:GALLERY_SIZE]:
            image = sample.image
            icon = QIcon(to_pixmap(image, scale=max(1, 84 // image.shape[-1])))
            text = f"{classes[sample.true]} → {classes[sample.predicted]}\n{sample.probability:.0%}"
            item = QListWidgetItem(icon, text)
            item.setToolTip(f"test image #{sample.index}: true {classes[sample.true]}, predicted "
                            f"{classes[sample.predicted]} with probability {sample.probability:.1%}")
            item.setTextAlignment(Qt.AlignmentFlag.AlignHCenter)
            self.gallery.addItem(item)
        shown = min(GALLERY_SIZE, len(result.misclassified))
        self.gallery_caption.setText(f"Misclassified test images (true → predicted, confidence): {shown} of "
                                     f"{result.misclassified_count}, most confident mistakes first")
