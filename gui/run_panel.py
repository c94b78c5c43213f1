"""The Run panel: the form that describes a training run (data set, model, optimiser, schedule, ...) and the
buttons that start, pause, resume and stop it, open a checkpoint and save one now."""

from __future__ import annotations

from PyQt6.QtCore import pyqtSignal
from PyQt6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

import convlab.data
import convlab.models
from convlab.train import TrainConfig
from convlab.train.config import AUGMENTATIONS, DEVICES, OPTIMIZERS, SCHEDULES

RECIPE = "recipe"  # the choice that leaves a field None, so the model/data-set recipe decides
AUGMENT_CHOICES = (RECIPE, "none", "crop+flip", "flip", "crop", "crop+flip+cutout", *[
    a for a in AUGMENTATIONS if a not in ("none", "crop", "flip")])


def _recipe_combo(choices) -> QComboBox:
    combo = QComboBox()
    combo.addItems([RECIPE, *choices] if choices[0] != RECIPE else list(choices))
    return combo


def _count_spin(maximum: int, recipe_text: str = RECIPE) -> QSpinBox:
    """A spin box whose 0 reads as `recipe_text` (and means "let the recipe decide")."""
    spin = QSpinBox()
    spin.setRange(0, maximum)
    spin.setSpecialValueText(recipe_text)
    return spin


class RunPanel(QWidget):
    """The run form. Signals carry the user's intent; the main window decides what happens."""

    start_requested = pyqtSignal()
    pause_requested = pyqtSignal()
    resume_requested = pyqtSignal()
    stop_requested = pyqtSignal()
    open_checkpoint_requested = pyqtSignal(str)
    continue_checkpoint_requested = pyqtSignal(str)
    save_requested = pyqtSignal()
    summary_requested = pyqtSignal()

    def __init__(self, parent=None):
        super().__init__(parent)
        self.dataset = QComboBox()
        self.dataset.addItems(convlab.data.names())
        self.data_dir = QLineEdit()
        self.data_dir.setPlaceholderText(str(convlab.data.data_root()))
        browse = QToolButton()
        browse.setText("…")
        browse.setToolTip("Choose the data folder")
        browse.clicked.connect(self._browse_data)
        data_row = QHBoxLayout()
        data_row.addWidget(self.data_dir, 1)
        data_row.addWidget(browse)
        self.download = QCheckBox("download if missing")
        self.download.setChecked(True)

        self.model = QComboBox()
        self.model.addItems(convlab.models.names())
        self.model.setCurrentText("lenet5")
        self.summary_button = QToolButton()
        self.summary_button.setText("Summary")
        self.summary_button.setToolTip("Layer-by-layer summary: output shapes, parameters, FLOPs")
        self.summary_button.clicked.connect(self.summary_requested)
        model_row = QHBoxLayout()
        model_row.addWidget(self.model, 1)
        model_row.addWidget(self.summary_button)

        self.optimizer = _recipe_combo(OPTIMIZERS)
        self.lr = QLineEdit()
        self.lr.setPlaceholderText(RECIPE)
        self.lr.setToolTip("Learning rate, e.g. 0.05 or 1e-3; empty: the recipe's value")
        self.schedule = _recipe_combo(SCHEDULES)
        self.batch_size = _count_spin(4096)
        self.epochs = _count_spin(1000)
        self.augment = QComboBox()
        self.augment.setEditable(True)
        self.augment.addItems(AUGMENT_CHOICES)
        self.augment.setToolTip("Augmentations joined by '+', e.g. crop+flip")
        self.device = QComboBox()
        self.device.addItems(DEVICES)
        self.cuda_graph = QCheckBox("record the step as a CUDA graph")
        self.cuda_graph.setToolTip(
            "On the GPU: record the whole training step once and replay it, one launch a step "
            "(several times faster for small models). Needs a CUDA GPU with CuPy.")
        self.device.currentTextChanged.connect(self._update_cuda_graph)
        self._update_cuda_graph()
        self.train_subset = _count_spin(10_000_000, "all")
        self.train_subset.setSingleStep(1000)
        self.test_subset = _count_spin(10_000_000, "all")
        self.test_subset.setSingleStep(1000)
        self.out_dir = QLineEdit()
        self.out_dir.setPlaceholderText("runs/<model>-<dataset>-<time>")

        data_box = QGroupBox("Data and model")
        data_form = QFormLayout(data_box)
        data_form.addRow("Data set", self.dataset)
        data_form.addRow("Data folder", data_row)
        data_form.addRow("", self.download)
        data_form.addRow("Model", model_row)
        data_form.addRow("Train subset", self.train_subset)
        data_form.addRow("Test subset", self.test_subset)
        training_box = QGroupBox("Training")
        training_form = QFormLayout(training_box)
        training_form.addRow("Optimiser", self.optimizer)
        training_form.addRow("Learning rate", self.lr)
        training_form.addRow("Schedule", self.schedule)
        training_form.addRow("Batch size", self.batch_size)
        training_form.addRow("Epochs", self.epochs)
        training_form.addRow("Augmentation", self.augment)
        training_form.addRow("Device", self.device)
        training_form.addRow("", self.cuda_graph)
        training_form.addRow("Output folder", self.out_dir)

        self.start_button = QPushButton("Start")
        self.start_button.setObjectName("primary")
        self.pause_button = QPushButton("Pause")
        self.resume_button = QPushButton("Resume")
        self.stop_button = QPushButton("Stop")
        self.open_button = QPushButton("Open checkpoint…")
        self.continue_button = QPushButton("Continue training…")
        self.continue_button.setToolTip("Open a checkpoint and train on from where it stopped")
        self.save_button = QPushButton("Save now")
        self.start_button.clicked.connect(self.start_requested)
        self.pause_button.clicked.connect(self.pause_requested)
        self.resume_button.clicked.connect(self.resume_requested)
        self.stop_button.clicked.connect(self.stop_requested)
        self.save_button.clicked.connect(self.save_requested)
        self.open_button.clicked.connect(lambda: self._choose_checkpoint(self.open_checkpoint_requested))
        self.continue_button.clicked.connect(
            lambda: self._choose_checkpoint(self.continue_checkpoint_requested))
        buttons = QGridLayout()
        buttons.addWidget(self.start_button, 0, 0, 1, 2)
        buttons.addWidget(self.pause_button, 1, 0)
        buttons.addWidget(self.resume_button, 1, 1)
        buttons.addWidget(self.stop_button, 2, 0)
        buttons.addWidget(self.save_button, 2, 1)
        buttons.addWidget(self.open_button, 3, 0)
        buttons.addWidget(self.continue_button, 3, 1)

        layout = QVBoxLayout(self)
        layout.addWidget(data_box)
        layout.addWidget(training_box)
        layout.addLayout(buttons)
        layout.addStretch(1)
        self.set_running(False, paused=False)

    # -- the form <-> a TrainConfig ------------------------------------------------------------------------
    def config(self) -> TrainConfig:
        """The run the form describes; fields left at "recipe" are None (the trainer's recipe fills them)."""
        lr_text = self.lr.text().strip()
        try:
            lr = float(lr_text) if lr_text else None
        except ValueError:
            raise ValueError(f"Learning rate must be a number such as 0.05 or 1e-3, got {lr_text!r}") \
                from None
        augment = self.augment.currentText().strip()
        return TrainConfig(
            model=self.model.currentText(), dataset=self.dataset.currentText(),
            epochs=self.epochs.value() or None, batch_size=self.batch_size.value() or None,
            optimizer=None if self.optimizer.currentText() == RECIPE else self.optimizer.currentText(),
            lr=lr, schedule=None if self.schedule.currentText() == RECIPE else self.schedule.currentText(),
            augment=None if augment in (RECIPE, "") else augment, device=self.device.currentText(),
            cuda_graph=self.cuda_graph.isEnabled() and self.cuda_graph.isChecked(),
            data_dir=self.data_dir.text().strip() or None, download=self.download.isChecked(),
            out_dir=self.out_dir.text().strip() or None,
            train_subset=self.train_subset.value() or None, test_subset=self.test_subset.value() or None,
        )

    def set_config(self, config: TrainConfig) -> None:
        """Fill the form from `config` (None fields show as "recipe")."""
        if config.dataset:
            self.dataset.setCurrentText(config.dataset)
        if config.model:
            self.model.setCurrentText(config.model)
        self.data_dir.setText(config.data_dir or "")
        self.download.setChecked(bool(config.download))
        self.optimizer.setCurrentText(config.optimizer or RECIPE)
        self.lr.setText("" if config.lr is None else f"{config.lr:g}")
        self.schedule.setCurrentText(config.schedule or RECIPE)
        self.batch_size.setValue(config.batch_size or 0)
        self.epochs.setValue(config.epochs or 0)
        self.augment.setCurrentText(config.augment or RECIPE)
        self.device.setCurrentText(config.device or "auto")
        self.cuda_graph.setChecked(bool(config.cuda_graph))
        self.train_subset.setValue(config.train_subset or 0)
        self.test_subset.setValue(config.test_subset or 0)
        self.out_dir.setText(config.out_dir or "")

    def _update_cuda_graph(self) -> None:
        """The CUDA-graph option applies on a GPU only: greyed out for the CPU or without one."""
        from convlab import backend

        usable = self.device.currentText() != "cpu" and backend.gpu_available()
        self.cuda_graph.setEnabled(usable)
        if not usable:
            self.cuda_graph.setToolTip("Needs a CUDA GPU with CuPy and a device other than cpu")

    def set_running(self, running: bool, paused: bool) -> None:
        """Enable the buttons that make sense: Start when idle, Pause / Stop while training, and so on."""
        self.start_button.setEnabled(not running)
        self.pause_button.setEnabled(running and not paused)
        self.resume_button.setEnabled(running and paused)
        self.stop_button.setEnabled(running)
        self.open_button.setEnabled(not running)
        self.continue_button.setEnabled(not running)

    def set_can_save(self, can_save: bool) -> None:
        self.save_button.setEnabled(can_save)

    def _browse_data(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Data folder", self.data_dir.text() or
                                                  str(convlab.data.data_root()))
        if folder:
            self.data_dir.setText(folder)

    def _choose_checkpoint(self, signal) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open checkpoint", "runs",
                                              "Checkpoints (*.h5 *.hdf5);;All files (*)")
        if path:
            signal.emit(path)
