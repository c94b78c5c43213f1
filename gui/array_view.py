"""`ArrayView`: a NumPy image (grey with a colour map, or RGB) drawn by pyqtgraph, with the array kept for
inspection and export."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PyQt6.QtCore import Qt
from PyQt6.QtGui import QImage, QPixmap

from convlab_gui import theme


class ArrayView(pg.GraphicsLayoutWidget):
    """Shows a 2-D array through a colour map, or an (H, W, 3) array as RGB, at a locked aspect ratio.

    colormap: "viridis", "grey" or "diverging" (symmetric about zero).
    colorbar: draw the colour scale beside the image.
    """

    def __init__(self, title: str | None = None, colormap: str = "viridis", colorbar: bool = False,
                 parent=None):
        super().__init__(parent)
        self.array: np.ndarray | None = None
        self.colormap_name = colormap
        self.ci.setContentsMargins(2, 2, 2, 2)
        if title:
            self.addLabel(title, row=0, col=0, colspan=2, color=theme.MUTED)
        self.view = self.addViewBox(row=1, col=0, lockAspect=True, invertY=True, enableMouse=True)
        self.view.setMenuEnabled(False)
        self.image = pg.ImageItem(axisOrder="row-major")
        self.view.addItem(self.image)
        self.colorbar = None
        if colorbar:
            # A legend only: not linked to the image, whose lookup table would then apply to RGB data too.
            self.colorbar = pg.ColorBarItem(colorMap=self._colormap(), interactive=False, width=12)
            self.addItem(self.colorbar, row=1, col=1)

    def _colormap(self):
        return {"diverging": theme.DIVERGING, "grey": theme.GREY}.get(self.colormap_name, theme.VIRIDIS)

    def set_array(self, array, levels: tuple[float, float] | None = None) -> None:
        """Show `array`: (H, W) through the colour map, or (H, W, 3) as RGB (uint8, or floats in [0, 1]).

        levels: the values mapped to the ends of the colour map; by default the data range, made
        symmetric about zero for the diverging map. NaN pixels (tile separators) are drawn transparent.
        """
        array = np.asarray(array)
        if array.ndim == 3 and array.shape[-1] == 1:
            array = array[..., 0]
        if array.ndim == 3 and array.shape[-1] == 3:
            rgb = array if array.dtype == np.uint8 else (
                np.clip(np.nan_to_num(array), 0, 1) * 255).astype(np.uint8)
            self.image.setLookupTable(None, update=False)
            self.image.setImage(np.ascontiguousarray(rgb), levels=(0, 255), autoLevels=False)
            if self.colorbar is not None:
                self.colorbar.setVisible(False)
        elif array.ndim == 2:
            values = array.astype(np.float32)
            levels = levels if levels is not None else self.default_levels(values)
            self.image.setColorMap(self._colormap())
            self.image.setImage(values, levels=levels, autoLevels=False)
            if self.colorbar is not None:
                self.colorbar.setVisible(True)
                self.colorbar.setLevels(levels)
        else:
            raise ValueError(f"ArrayView: expected an (H, W) or (H, W, 3) array, got shape {array.shape}")
        self.array = array
        self.view.autoRange(padding=0.02)

    def default_levels(self, values: np.ndarray) -> tuple[float, float]:
        finite = values[np.isfinite(values)]
        if finite.size == 0:
            return (-1.0, 1.0)
        if self.colormap_name == "diverging":
            bound = float(np.abs(finite).max()) or 1.0
            return (-bound, bound)
        low, high = float(finite.min()), float(finite.max())
        return (low, high if high > low else low + 1.0)

    def clear(self) -> None:
        self.array = None
        self.image.clear()

    def sizeHint(self):  # noqa: N802 (Qt's name)
        hint = super().sizeHint()
        hint.setHeight(max(hint.height(), 160))
        return hint



def to_qimage(array: np.ndarray, colormap=None, levels: tuple[float, float] | None = None) -> QImage:
    """A QImage of `array`: (H, W) through `colormap` (default viridis; levels default to the data range),
    (H, W, 3) / (C=1|3, H, W) uint8 as grey or RGB. NaN pixels become transparent."""
    array = np.asarray(array)
    if array.ndim == 3 and array.shape[0] in (1, 3) and array.shape[-1] not in (1, 3):
        array = array.transpose(1, 2, 0)  # (C, H, W) -> (H, W, C)
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim == 2 and array.dtype == np.uint8 and colormap is None:
        rgba = np.repeat(array[..., None], 4, axis=2)
        rgba[..., 3] = 255
    elif array.ndim == 2:
        values = array.astype(np.float32)
        finite = values[np.isfinite(values)]
        low, high = levels if levels is not None else (
            (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0))
        scaled = np.clip((values - low) / ((high - low) or 1.0), 0, 1)
        rgba = (colormap or theme.VIRIDIS).map(np.nan_to_num(scaled), mode="byte")
        rgba[np.isnan(values)] = 0
    elif array.ndim == 3 and array.shape[-1] == 3:
        rgb = array if array.dtype == np.uint8 else (np.clip(array, 0, 1) * 255).astype(np.uint8)
        rgba = np.concatenate([rgb, np.full(rgb.shape[:2] + (1,), 255, np.uint8)], axis=2)
    else:
        raise ValueError(f"to_qimage: expected an (H, W) or (H, W, 3) array, got shape {array.shape}")
    rgba = np.ascontiguousarray(rgba, dtype=np.uint8)
    h, w = rgba.shape[:2]
    return QImage(rgba.data, w, h, 4 * w, QImage.Format.Format_RGBA8888).copy()


def to_pixmap(array: np.ndarray, scale: int = 1, colormap=None, levels=None) -> QPixmap:
    """`to_qimage` scaled up by an integer factor with nearest-neighbour pixels (crisp small images)."""
    image = to_qimage(array, colormap, levels)
    if scale != 1:
        image = image.scaled(image.width() * scale, image.height() * scale,
                             transformMode=Qt.TransformationMode.FastTransformation)
    return QPixmap.fromImage(image)
