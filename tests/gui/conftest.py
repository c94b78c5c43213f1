"""Fixtures for the GUI tests: an offscreen Qt platform, tiny MNIST-format data in a temporary folder, and a
`launch` fixture that opens the app with command-line options and closes it (stopping its worker) after.
"""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")  # before Qt is imported

import pytest

pytest.importorskip("PyQt6.QtWidgets", reason="the GUI tests need PyQt6 (pip install -e '.[gui]')")
pytest.importorskip("pyqtgraph", reason="the GUI tests need pyqtgraph (pip install -e '.[gui]')")

from tests.train.tiny_data import write_idx_mnist  # noqa: E402


@pytest.fixture(scope="session")
def tiny_data_root(tmp_path_factory):
    """A data root holding mnist/ with 256 train and 64 test learnable 28×28 images (official IDX files)."""
    return write_idx_mnist(tmp_path_factory.mktemp("gui-data"), n_train=256, n_test=64)


@pytest.fixture
def launch(qtbot, tmp_path):
    """launch(*options) -> MainWindow: the app as `convlab-gui OPTIONS` would open it (shown, offscreen).
    Checkpoints go to tmp_path/run unless --out is given. Every window is closed after the test."""
    from convlab_gui.app import create_window

    windows = []

    def open_window(*options: str):
        argv = list(options)
        if "--out" not in argv:
            argv += ["--out", str(tmp_path / "run")]
        window = create_window(argv)
        qtbot.addWidget(window)
        window.show()
        windows.append(window)
        return window

    yield open_window
    for window in windows:
        window.close()
        assert not window.session.worker or not window.session.worker.thread.is_alive(), \
            "closing the window must end the training thread"
    from convlab import parallel

    parallel.set_spin(None)  # the app turned spinning off for the process: back to the default
