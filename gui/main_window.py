"""The main window: the Run panel in a dock, the analysis panels in tabs, throughput and ETA in the status
bar, and a 10 Hz timer that repaints everything from the latest `LiveData` view (never from the worker)."""

from __future__ import annotations

import time
from pathlib import Path

from PyQt6.QtCore import Qt, QTimer, pyqtSignal
from PyQt6.QtGui import QAction, QFont, QKeySequence
from PyQt6.QtWidgets import (
    QApplication,
    QDialog,
    QDockWidget,
    QFileDialog,
    QLabel,
    QMainWindow,
    QMessageBox,
    QPlainTextEdit,
    QScrollArea,
    QTabWidget,
    QVBoxLayout,
)

import convlab.data
import convlab.models
from convlab import parallel
from convlab.inspect import summary
from convlab.train import TrainConfig
from convlab_gui import export
from convlab_gui.live_data import FAILED, FINISHED, INSPECTING, LOADING, PAUSED, RUNNING, STOPPING, RunView
from convlab_gui.panels.curves import CurvesPanel
from convlab_gui.panels.evaluation import EvaluationPanel
from convlab_gui.panels.feature_maps import FeatureMapsPanel
from convlab_gui.panels.gradient_flow import GradientFlowPanel
from convlab_gui.panels.kernels import KernelsPanel
from convlab_gui.panels.playground import PlaygroundPanel
from convlab_gui.run_panel import RunPanel
from convlab_gui.session import TrainingSession

REFRESH_HZ = 10
STATE_LABELS = {
    "idle": ("idle", "#8a93a3"), LOADING: ("loading", "#fce566"), RUNNING: ("training", "#7bd88f"),
    PAUSED: ("paused", "#fce566"), STOPPING: ("stopping", "#ff9f43"), FINISHED: ("finished", "#4fb3ff"),
    FAILED: ("failed", "#fc618d"), INSPECTING: ("inspecting checkpoint", "#c39ac9"),
}


def format_duration(seconds: float | None) -> str:
    if seconds is None or seconds != seconds or seconds == float("inf"):
        return "–"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h {minutes:02d}m" if hours else (f"{minutes}m {secs:02d}s" if minutes else f"{secs}s")


class MainWindow(QMainWindow):
    """The app. `session` runs training; panels are repainted by `refresh()` on a timer."""

    run_finished = pyqtSignal(str)  # the reason ("completed", "stopped", "diverged", "error"), once per run

    def __init__(self, session: TrainingSession | None = None, refresh_hz: float = REFRESH_HZ):
        super().__init__()
        # convlab's CPU workers block between ops here instead of spinning: the GUI thread needs a
        # core while a run trains (spinning doubled the event loop's p95 lateness, 15 -> 30 ms, in
        # scripts/bench_gui, and did not make the app's runs faster)
        parallel.set_spin(False)
        self.setWindowTitle("convlab — training lab")
        self.resize(1500, 920)
        self.session = session or TrainingSession()
        self.error_dialogs: list[QMessageBox] = []
        self.samples = None  # the ImageDataset the image pickers use
        self._samples_key: tuple | None = None
        self._announced_run: int | None = None

        self.run_panel = RunPanel()
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(self.run_panel)
        scroll.setMinimumWidth(330)
        self.run_dock = QDockWidget("Run", self)
        self.run_dock.setObjectName("run-dock")
        self.run_dock.setWidget(scroll)
        self.run_dock.setFeatures(QDockWidget.DockWidgetFeature.DockWidgetMovable |
                                  QDockWidget.DockWidgetFeature.DockWidgetFloatable)
        self.addDockWidget(Qt.DockWidgetArea.LeftDockWidgetArea, self.run_dock)

        self.curves = CurvesPanel()
        self.kernels = KernelsPanel()
        self.feature_maps = FeatureMapsPanel()
        self.evaluation = EvaluationPanel()
        self.gradient_flow = GradientFlowPanel()
        self.playground = PlaygroundPanel()
        self.panels = [self.curves, self.kernels, self.feature_maps, self.evaluation, self.gradient_flow,
                       self.playground]
        self.tabs = QTabWidget()
        self.tabs.setDocumentMode(True)
        for panel in self.panels:
            self.tabs.addTab(panel, panel.title)
        self.tabs.currentChanged.connect(self._tab_changed)
        self.setCentralWidget(self.tabs)

        self.state_label = QLabel()
        self.progress_label = QLabel()
        self.speed_label = QLabel()
        self.eta_label = QLabel()
        mono = QFont("DejaVu Sans Mono")
        mono.setStyleHint(QFont.StyleHint.Monospace)
        for label in (self.progress_label, self.speed_label, self.eta_label):
            label.setFont(mono)
        bar = self.statusBar()
        bar.addPermanentWidget(self.progress_label)
        bar.addPermanentWidget(self.speed_label)
        bar.addPermanentWidget(self.eta_label)
        bar.addPermanentWidget(self.state_label)

        self._connect()
        self._make_menus()
        self.timer = QTimer(self)
        self.timer.setInterval(int(1000 / refresh_hz))
        self.timer.timeout.connect(self.refresh)
        self.timer.start()
        self.refresh()

    # -- wiring -------------------------------------------------------------------------------------------
    def _connect(self) -> None:
        rp = self.run_panel
        rp.start_requested.connect(self.start_run)
        rp.pause_requested.connect(self.session.pause)
        rp.resume_requested.connect(self.session.resume)
        rp.stop_requested.connect(self.session.stop)
        rp.save_requested.connect(self.save_now)
        rp.open_checkpoint_requested.connect(self.open_checkpoint)
        rp.continue_checkpoint_requested.connect(self.continue_checkpoint)
        rp.summary_requested.connect(self.show_summary)
        rp.dataset.currentTextChanged.connect(self._form_dataset_changed)
        self.feature_maps.image_chosen.connect(self.session.request_feature_maps)
        self.evaluation.evaluate_requested.connect(self.evaluate)

    def _make_menus(self) -> None:
        def action(menu, text, slot, shortcut=None):
            act = QAction(text, self)
            act.triggered.connect(slot)
            if shortcut:
                act.setShortcut(QKeySequence(shortcut))
            menu.addAction(act)
            return act

        file_menu = self.menuBar().addMenu("&File")
        action(file_menu, "Open checkpoint…", self.run_panel.open_button.click, "Ctrl+O")
        action(file_menu, "Save checkpoint now", self.save_now, "Ctrl+S")
        file_menu.addSeparator()
        action(file_menu, "Export this panel as PNG…", self._export_current_panel, "Ctrl+E")
        action(file_menu, "Export all panels as PNGs…", self._export_all_panels)
        action(file_menu, "Export metrics as CSV…", self._export_metrics)
        file_menu.addSeparator()
        action(file_menu, "Quit", self.close, "Ctrl+Q")
        run_menu = self.menuBar().addMenu("&Run")
        action(run_menu, "Start", self.start_run, "Ctrl+R")
        action(run_menu, "Pause", self.session.pause, "Ctrl+P")
        action(run_menu, "Resume", self.session.resume, "Ctrl+Shift+P")
        action(run_menu, "Stop", self.session.stop, "Ctrl+.")
        action(run_menu, "Evaluate on the test set", self.evaluate)
        view_menu = self.menuBar().addMenu("&View")
        view_menu.addAction(self.run_dock.toggleViewAction())
        for index, panel in enumerate(self.panels):
            action(view_menu, panel.title, lambda _=False, i=index: self.tabs.setCurrentIndex(i),
                   f"Ctrl+{index + 1}")

    # -- actions ------------------------------------------------------------------------------------------
    def start_run(self, config: TrainConfig | None = None, train_data=None, test_data=None) -> None:
        """Start training `config` (default: what the Run panel says)."""
        if self.session.training:
            self.show_error("A run is already in progress; stop it before starting another.")
            return
        try:
            config = config if isinstance(config, TrainConfig) else self.run_panel.config()
        except ValueError as e:
            self.show_error(str(e))
            return
        self.session.start(config, train_data=train_data, test_data=test_data)
        self.run_panel.set_running(True, paused=False)
        self.statusBar().showMessage(f"Starting {config.model} on {config.dataset}…", 5000)

    def open_checkpoint(self, path: str) -> None:
        if self.session.training:
            self.show_error("Stop the current run before opening a checkpoint.")
            return
        self.session.inspect(path, data_dir=self.run_panel.data_dir.text().strip() or None)
        self.statusBar().showMessage(f"Opening {path}…", 5000)

    def continue_checkpoint(self, path: str) -> None:
        if self.session.training:
            self.show_error("Stop the current run before continuing another.")
            return
        data_dir = self.run_panel.data_dir.text().strip()
        self.session.continue_from(path, **({"data_dir": data_dir} if data_dir else {}))
        self.run_panel.set_running(True, paused=False)
        self.statusBar().showMessage(f"Continuing the run in {path}…", 5000)

    def save_now(self) -> None:
        self.session.save_now()
        self.statusBar().showMessage("Saving a checkpoint…", 3000)

    def evaluate(self) -> None:
        if self.session.worker is None:
            self.show_error("Start a run or open a checkpoint first: there is no model to evaluate.")
            return
        self.evaluation.set_busy(True)
        self.session.request_evaluation()

    def show_summary(self) -> None:
        name = self.run_panel.model.currentText()
        try:
            model = convlab.models.get(name)
            table = str(summary(model, convlab.models.default_input_shape(name)))
        except Exception as e:  # noqa: BLE001
            self.show_error(f"Could not summarise {name}: {type(e).__name__}: {e}")
            return
        dialog = QDialog(self)
        dialog.setWindowTitle(f"{name} — {convlab.models.describe(name)}")
        text = QPlainTextEdit(table)
        text.setReadOnly(True)
        text.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
        text.setFont(QFont("DejaVu Sans Mono", 9))
        layout = QVBoxLayout(dialog)
        layout.addWidget(text)
        dialog.resize(900, 620)
        dialog.setModal(False)
        dialog.show()
        self.summary_dialog, self.summary_text = dialog, text

    def show_error(self, message: str) -> QMessageBox:
        """A non-blocking error dialog (tests find it in `error_dialogs`) and a status-bar message."""
        box = QMessageBox(QMessageBox.Icon.Critical, "convlab", message, QMessageBox.StandardButton.Ok, self)
        box.setWindowModality(Qt.WindowModality.NonModal)
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        box.finished.connect(lambda _=0, b=box: b in self.error_dialogs and self.error_dialogs.remove(b))
        box.show()
        self.error_dialogs.append(box)
        self.statusBar().showMessage(message.splitlines()[0][:200], 15000)
        return box

    # -- exports ------------------------------------------------------------------------------------------
    def export_panels(self, folder: str | Path) -> list[Path]:
        """A PNG of every panel (each shown in turn so it is laid out) and the run panel, into `folder`."""
        folder = Path(folder)
        current = self.tabs.currentIndex()
        paths = []
        for index, panel in enumerate(self.panels):
            self.tabs.setCurrentIndex(index)
            self.refresh(all_panels=True)
            QApplication.processEvents()  # lay the shown tab out before grabbing it
            paths.append(export.panel_png(panel, folder / f"{export.file_name(panel.title)}.png"))
        self.tabs.setCurrentIndex(current)
        paths.append(export.panel_png(self.run_panel, folder / "run-panel.png"))
        paths.append(export.panel_png(self, folder / "window.png"))
        return paths

    def export_metrics(self, folder: str | Path) -> list[Path]:
        view = self.session.live.view()
        folder = Path(folder)
        return [export.epoch_metrics_csv(view, folder / "metrics-epochs.csv"),
                export.step_metrics_csv(view, folder / "metrics-steps.csv")]

    def _export_current_panel(self) -> None:
        panel = self.tabs.currentWidget()
        path, _ = QFileDialog.getSaveFileName(self, "Export panel", f"{export.file_name(panel.title)}.png",
                                              "PNG (*.png)")
        if path:
            self._try(lambda: export.panel_png(panel, path), f"Saved {path}")

    def _export_all_panels(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Export all panels into")
        if folder:
            self._try(lambda: self.export_panels(folder), f"Saved the panels in {folder}")

    def _export_metrics(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Export metrics CSV into")
        if folder:
            self._try(lambda: self.export_metrics(folder),
                      f"Saved metrics-epochs.csv and metrics-steps.csv in {folder}")

    def _try(self, work, done_message: str) -> None:
        try:
            work()
        except OSError as e:
            self.show_error(str(e))
        else:
            self.statusBar().showMessage(done_message, 5000)

    # -- the repaint timer ----------------------------------------------------------------------------------
    def refresh(self, all_panels: bool = False) -> None:
        """Repaint from the latest view of the run (GUI thread, on the timer): the status bar and the panel on
        show (hidden panels catch up when shown), or with `all_panels` every panel, at once."""
        view = self.session.live.view()
        for message in self.session.live.take_errors():
            self.show_error(message)
        self._update_status(view)
        if view.samples is not None and view.samples is not self.samples:
            self._use_samples(view.samples, ("run", view.run_id))
        elif self.samples is None and self.tabs.currentWidget() is self.playground:
            self._load_samples_for_form()
        shown = self.tabs.currentWidget()
        for panel in self.panels:
            if panel is self.curves:
                self.curves.refresh(view, throttle=not all_panels)
            elif all_panels or panel is shown:
                panel.refresh(view)

    def _update_status(self, view: RunView) -> None:
        status = view.status
        title = "convlab — training lab" + (f" — {view.model_name} on {view.dataset_name}"
                                            if view.model_name and view.dataset_name else "")
        if title != self.windowTitle():
            self.setWindowTitle(title)
        text, colour = STATE_LABELS.get(status.state, (status.state, "#8a93a3"))
        self.state_label.setText(f"<span style='color:{colour}'>●</span> {text}")
        if status.state in (RUNNING, PAUSED, STOPPING, FINISHED) and status.epochs:
            self.progress_label.setText(f"epoch {status.epoch}/{status.epochs}  step {status.step}")
            self.speed_label.setText(f"{status.images_per_sec:,.0f} img/s")
            self.eta_label.setText(f"ETA {format_duration(status.eta_seconds)}"
                                   if status.state in (RUNNING, PAUSED) else "")
        else:
            shows_message = status.state in (LOADING, FAILED, INSPECTING)
            self.progress_label.setText(status.message if shows_message else "")
            self.speed_label.setText("")
            self.eta_label.setText("")
        training = status.state in (LOADING, RUNNING, PAUSED, STOPPING)
        self.run_panel.set_running(training, paused=status.state == PAUSED)
        self.run_panel.set_can_save(status.state in (RUNNING, PAUSED, FINISHED))
        if status.state in (FINISHED, FAILED) and self._announced_run != view.run_id:
            self._announced_run = view.run_id
            reason = status.finished_reason or "error"
            if status.state == FINISHED:
                self.statusBar().showMessage(f"Run {reason}" + (f"; checkpoint {status.checkpoint}"
                                                                if status.checkpoint else ""), 15000)
            self.run_finished.emit(reason)

    def _use_samples(self, samples, key) -> None:
        self.samples, self._samples_key = samples, key
        self.feature_maps.set_samples(samples)
        self.playground.set_samples(samples)

    def _load_samples_for_form(self) -> None:
        """Without a run, let the playground use the test split of the data set the Run panel names."""
        if self.session.worker is not None and self._samples_key and self._samples_key[0] == "run":
            return
        name = self.run_panel.dataset.currentText()
        root = self.run_panel.data_dir.text().strip() or None
        key = ("form", name, root)
        if key == self._samples_key:
            return
        self._samples_key = key
        try:
            samples = convlab.data.get(name, "test", root=root, download=False)
        except Exception as e:  # noqa: BLE001
            self.playground.caption.setText(f"No {name} test images here: {e}")
            return
        self.samples = samples
        self.playground.set_samples(samples)

    def _form_dataset_changed(self) -> None:
        if self._samples_key and self._samples_key[0] == "form":
            self.samples = None  # stale: the playground loads the new data set when it is next shown
            if self.tabs.currentWidget() is self.playground:
                self._load_samples_for_form()

    def _tab_changed(self, index: int) -> None:
        if self.tabs.widget(index) is self.playground and self.samples is None:
            self._load_samples_for_form()
        self.refresh()

    # -- closing --------------------------------------------------------------------------------------------
    def closeEvent(self, event):  # noqa: N802
        """Stop a run cleanly (its trainer writes a checkpoint) before the window goes."""
        if self.session.training:
            self.statusBar().showMessage("Stopping the run and saving a checkpoint…")
            self.repaint()
        self.timer.stop()
        started = time.monotonic()
        if not self.session.shutdown(timeout=120):
            self.statusBar().showMessage("The training thread did not stop in time.")
        self.shutdown_seconds = time.monotonic() - started
        for box in list(self.error_dialogs):
            box.close()
        super().closeEvent(event)
