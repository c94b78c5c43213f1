"""`DigitCanvas`: draw a digit with the mouse and get it back as an MNIST-style 28×28 image (the ink's
bounding box scaled into 20×20 and centred by its centre of mass, as LeCun et al. prepared MNIST)."""

from __future__ import annotations

import numpy as np
from PyQt6.QtCore import QPointF, Qt, pyqtSignal
from PyQt6.QtGui import QColor, QImage, QPainter, QPen
from PyQt6.QtWidgets import QSizePolicy, QWidget

CANVAS_SIZE = 224


def mnist_style(ink: np.ndarray) -> np.ndarray:
    """Turn a large grey drawing (H, W) uint8, white ink on black, into a (1, 28, 28) uint8 MNIST image."""
    ink = np.asarray(ink, dtype=np.uint8)
    rows, cols = np.nonzero(ink > 16)
    out = np.zeros((28, 28), np.uint8)
    if rows.size == 0:
        return out[None]
    crop = np.ascontiguousarray(ink[rows.min():rows.max() + 1, cols.min():cols.max() + 1])
    h, w = crop.shape
    scale = 20 / max(h, w)
    new_h, new_w = max(1, round(h * scale)), max(1, round(w * scale))
    image = QImage(crop.data, w, h, w, QImage.Format.Format_Grayscale8)
    small = image.scaled(new_w, new_h, Qt.AspectRatioMode.IgnoreAspectRatio,
                         Qt.TransformationMode.SmoothTransformation)
    ptr = small.constBits()
    ptr.setsize(small.sizeInBytes())
    digit = np.frombuffer(ptr, np.uint8).reshape(new_h, small.bytesPerLine())[:, :new_w].astype(np.float64)
    mass = digit.sum()
    cy = (digit.sum(axis=1) @ np.arange(new_h)) / mass
    cx = (digit.sum(axis=0) @ np.arange(new_w)) / mass
    top, left = int(round(14 - cy)), int(round(14 - cx))
    top, left = min(max(top, 0), 28 - new_h), min(max(left, 0), 28 - new_w)
    out[top:top + new_h, left:left + new_w] = np.clip(digit, 0, 255).astype(np.uint8)
    return out[None]


class DigitCanvas(QWidget):
    """A black square to draw on with a thick white brush; `drawn` fires when a stroke ends."""

    drawn = pyqtSignal()

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setFixedSize(CANVAS_SIZE, CANVAS_SIZE)
        self.setSizePolicy(QSizePolicy.Policy.Fixed, QSizePolicy.Policy.Fixed)
        self.setCursor(Qt.CursorShape.CrossCursor)
        self.setToolTip("Draw a digit with the mouse")
        self._image = QImage(CANVAS_SIZE, CANVAS_SIZE, QImage.Format.Format_Grayscale8)
        self._last: QPointF | None = None
        self.clear()

    def clear(self) -> None:
        self._image.fill(0)
        self.update()

    def is_empty(self) -> bool:
        return not self.ink().any()

    def ink(self) -> np.ndarray:
        """The drawing as a (224, 224) uint8 array."""
        ptr = self._image.constBits()
        ptr.setsize(self._image.sizeInBytes())
        rows = np.frombuffer(ptr, np.uint8).reshape(CANVAS_SIZE, self._image.bytesPerLine())
        return rows[:, :CANVAS_SIZE].copy()

    def digit(self) -> np.ndarray:
        """The drawing prepared like MNIST: (1, 28, 28) uint8."""
        return mnist_style(self.ink())

    def stroke(self, points) -> None:
        """Draw a stroke through `points` (canvas pixel coordinates), as a mouse drag would."""
        painter = QPainter(self._image)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.setPen(QPen(QColor(255, 255, 255), 18, Qt.PenStyle.SolidLine, Qt.PenCapStyle.RoundCap,
                            Qt.PenJoinStyle.RoundJoin))
        points = [QPointF(*p) if not isinstance(p, QPointF) else p for p in points]
        if len(points) == 1:
            painter.drawPoint(points[0])
        for a, b in zip(points, points[1:]):
            painter.drawLine(a, b)
        painter.end()
        self.update()

    # -- Qt events ---------------------------------------------------------------------------------------
    def paintEvent(self, event):  # noqa: N802
        painter = QPainter(self)
        painter.drawImage(0, 0, self._image)
        painter.setPen(QPen(QColor("#414958")))
        painter.drawRect(0, 0, CANVAS_SIZE - 1, CANVAS_SIZE - 1)
        painter.end()

    def mousePressEvent(self, event):  # noqa: N802
        self._last = event.position()
        self.stroke([self._last])

    def mouseMoveEvent(self, event):  # noqa: N802
        if self._last is not None:
            point = event.position()
            self.stroke([self._last, point])
            self._last = point

    def mouseReleaseEvent(self, event):  # noqa: N802
        self._last = None
        self.drawn.emit()
