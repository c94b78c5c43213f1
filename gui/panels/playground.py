"""The Kernel playground: cross-correlate a data-set image with a hand-set 3×3 kernel (edge detect, sharpen,
Gaussian blur, Sobel, or typed-in values) through `convlab.functional.conv2d`, and see what comes out."""

from __future__ import annotations

import numpy as np
from PyQt6.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from convlab import functional as F
from convlab_gui.array_view import ArrayView

PRESETS: dict[str, np.ndarray] = {
    "identity": np.array([[0, 0, 0], [0, 1, 0], [0, 0, 0]]),
    "edge detect": np.array([[-1, -1, -1], [-1, 8, -1], [-1, -1, -1]]),
    "edge detect (4-neighbour)": np.array([[0, -1, 0], [-1, 4, -1], [0, -1, 0]]),
    "sharpen": np.array([[0, -1, 0], [-1, 5, -1], [0, -1, 0]]),
    "Gaussian blur": np.array([[1, 2, 1], [2, 4, 2], [1, 2, 1]]) / 16,
    "box blur": np.ones((3, 3)) / 9,
    "Sobel x (vertical edges)": np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]]),
    "Sobel y (horizontal edges)": np.array([[-1, -2, -1], [0, 0, 0], [1, 2, 1]]),
    "emboss": np.array([[-2, -1, 0], [-1, 1, 1], [0, 1, 2]]),
}


def apply_kernel(image: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Cross-correlate each channel of `image` (C, H, W) uint8, scaled to [0, 1], with the same 3×3 `kernel`
    (zero padding 1, so the output keeps H×W): a depthwise conv2d with C groups. Returns (C, H, W) float32."""
    c = image.shape[0]
    x = np.asarray(image, np.float32)[None] / 255  # (1, C, H, W); NumPy arrays keep conv2d on the CPU
    weight = np.broadcast_to(np.asarray(kernel, np.float32), (c, 1, 3, 3)).copy()  # (C, 1, 3, 3)
    y, _ = F.conv2d(x, weight, None, stride=1, padding=1, groups=c)  # (1, C, H, W)
    return np.ascontiguousarray(y[0])


class PlaygroundPanel(QWidget):
    """A 3×3 grid of values (or a preset), an image from the test split, and input / output side by side."""

    title = "Kernel playground"

    def __init__(self, parent=None):
        super().__init__(parent)
        self.samples = None
        self.output: np.ndarray | None = None

        self.preset = QComboBox()
        self.preset.addItems([*PRESETS, "custom"])
        self.preset.currentTextChanged.connect(self._preset_chosen)
        self.cells = []
        grid = QGridLayout()
        for r in range(3):
            for c in range(3):
                cell = QDoubleSpinBox()
                cell.setRange(-99, 99)
                cell.setDecimals(4)
                cell.setSingleStep(0.25)
                cell.setMinimumWidth(78)
                cell.valueChanged.connect(self._cell_edited)
                grid.addWidget(cell, r, c)
                self.cells.append(cell)
        self.index = QSpinBox()
        self.index.setPrefix("test image #")
        self.index.setKeyboardTracking(False)
        self.index.valueChanged.connect(self.update_output)
        random_button = QPushButton("Random image")
        random_button.clicked.connect(self._random_image)
        self.caption = QLabel("Load a data set (pick one in the Run panel) to try kernels on its images.")
        self.caption.setObjectName("caption")
        self.caption.setWordWrap(True)

        kernel_box = QGroupBox("3×3 kernel")
        kernel_layout = QVBoxLayout(kernel_box)
        kernel_layout.addWidget(self.preset)
        kernel_layout.addLayout(grid)
        image_box = QGroupBox("Image")
        image_layout = QVBoxLayout(image_box)
        image_layout.addWidget(self.index)
        image_layout.addWidget(random_button)
        controls = QVBoxLayout()
        controls.addWidget(kernel_box)
        controls.addWidget(image_box)
        controls.addWidget(self.caption)
        controls.addStretch(1)
        controls_widget = QWidget()
        controls_widget.setLayout(controls)
        controls_widget.setFixedWidth(300)

        self.input_view = ArrayView("input", colormap="grey")
        self.output_view = ArrayView("output: blue negative, red positive", colormap="diverging",
                                     colorbar=True)
        views = QHBoxLayout()
        views.addWidget(self.input_view, 1)
        views.addWidget(self.output_view, 1)
        layout = QHBoxLayout(self)
        layout.addWidget(controls_widget)
        layout.addLayout(views, 1)
        self._setting_preset = False
        self._preset_chosen("edge detect")
        self.preset.setCurrentText("edge detect")

    def refresh(self, view) -> None:
        """Nothing here follows the run: the playground changes only when its user does."""

    def kernel(self) -> np.ndarray:
        return np.array([cell.value() for cell in self.cells], dtype=np.float32).reshape(3, 3)

    def set_kernel(self, values) -> None:
        """Type `values` (3×3) into the grid, as a user would."""
        values = np.asarray(values, dtype=np.float64)
        if values.shape != (3, 3):
            raise ValueError(f"kernel playground: a kernel must be 3×3, got shape {values.shape}")
        self._setting_preset = True
        for cell, value in zip(self.cells, values.ravel()):
            cell.setValue(float(value))
        self._setting_preset = False
        self.update_output()

    def _preset_chosen(self, name: str) -> None:
        if name in PRESETS:
            self.set_kernel(PRESETS[name])

    def _cell_edited(self) -> None:
        if not self._setting_preset:
            self.preset.blockSignals(True)
            self.preset.setCurrentText("custom")
            self.preset.blockSignals(False)
            self.update_output()

    def set_samples(self, samples) -> None:
        self.samples = samples
        if samples is not None:
            self.index.setRange(0, len(samples) - 1)
            self.update_output()

    def _random_image(self) -> None:
        if self.samples is not None:
            self.index.setValue(int(np.random.default_rng().integers(len(self.samples))))

    def update_output(self) -> None:
        if self.samples is None:
            return
        image, label = self.samples[self.index.value()]
        self.output = apply_kernel(image, self.kernel())
        self.caption.setText(f"{self.samples.name} test image {self.index.value()} "
                             f"({self.samples.classes[label]}), {image.shape[1]}×{image.shape[2]}; "
                             "zero padding 1, stride 1")
        if image.shape[0] == 3:
            self.input_view.set_array(image.transpose(1, 2, 0))
            # Colour output: channels kept, centred on mid-grey so signed responses stay visible.
            bound = float(np.abs(self.output).max()) or 1.0
            self.output_view.set_array((self.output.transpose(1, 2, 0) / bound + 1) / 2)
        else:
            self.input_view.set_array(image[0])
            self.output_view.set_array(self.output[0])
