"""Export: a PNG of any panel (what is on screen, via QWidget.grab) and CSV files of the run's metrics."""

from __future__ import annotations

import csv
import re
from pathlib import Path

from PyQt6.QtWidgets import QWidget

from convlab_gui.live_data import RunView

STEP_COLUMNS = ("step", "loss", "accuracy", "lr")


def panel_png(widget: QWidget, path: str | Path) -> Path:
    """Save what `widget` shows as a PNG at `path`; raises OSError when it cannot be written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not widget.grab().save(str(path), "PNG"):
        raise OSError(f"could not write the PNG {path} (is the folder writable?)")
    return path


def file_name(title: str) -> str:
    """A panel title as a file name stem: "Feature maps" -> "feature-maps"."""
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")


def epoch_metrics_csv(view: RunView, path: str | Path) -> Path:
    """One row per epoch with every scalar the trainer reported (train/test/val loss, accuracy, lr...)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    columns: list[str] = []
    for record in view.epochs:
        columns += [key for key in record if key not in columns]
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns or ["epoch"])
        writer.writeheader()
        for record in view.epochs:
            writer.writerow({key: record.get(key, "") for key in columns})
    return path


def step_metrics_csv(view: RunView, path: str | Path) -> Path:
    """One row per logged training step: step, loss, batch accuracy, learning rate."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    steps = view.steps
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(STEP_COLUMNS)
        for step, loss, accuracy, lr in zip(steps.index, steps.loss, steps.accuracy, steps.lr):
            writer.writerow([int(step), float(loss), float(accuracy), float(lr)])
    return path
