"""Ready-made subscribers to a Trainer's events: a tqdm progress bar, the metrics log
(metrics.jsonl and metrics.csv), the final test report (final.json) and early stopping."""

from __future__ import annotations

import csv
import json
import math
import os
import sys
from pathlib import Path


class ProgressBar:
    """One tqdm bar per epoch on stderr showing loss, accuracy, images/s and tqdm's ETA; a line
    with the epoch's test metrics when it ends."""

    def __init__(self, trainer, stream=None, disable=False):
        from tqdm.auto import tqdm

        self._tqdm, self.trainer = tqdm, trainer
        self.stream = stream or sys.stderr
        self.disable = disable
        self.bar = None
        trainer.on("step", self.on_step)
        trainer.on("epoch", self.on_epoch)
        trainer.on("finished", self.on_finished)

    def on_step(self, e):
        if self.bar is None:
            self.bar = self._tqdm(total=e["batches"], initial=e["batch"] - 1, file=self.stream,
                                  desc=f"epoch {e['epoch']}/{e['epochs']}", unit="batch", leave=False,
                                  dynamic_ncols=True, disable=self.disable)
        self.bar.update(e["batch"] - self.bar.n)
        self.bar.set_postfix_str(f"loss {e['loss']:.4f} acc {e['accuracy']:.3f} lr {e['lr']:.2e} "
                                 f"{e['images_per_sec']:.0f} img/s", refresh=False)

    def _close(self):
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def on_epoch(self, e):
        self._close()
        if not self.disable:
            line = (f"epoch {e['epoch']}/{self.trainer.epochs}: train loss {e['train_loss']:.4f} "
                    f"acc {e['train_accuracy']:.4f} | test loss {e['test_loss']:.4f} "
                    f"acc {e['test_accuracy']:.4f}")
            if "val_accuracy" in e:
                line += f" | val acc {e['val_accuracy']:.4f}"
            line += f" | {e['seconds']:.1f}s, {e['images_per_sec']:.0f} img/s"
            print(line, file=self.stream, flush=True)

    def on_finished(self, e):
        self._close()


class MetricsLog:
    """Keeps `folder`/metrics.jsonl and `folder`/metrics.csv (pandas reads both) equal to the
    trainer's history, one row per epoch: both files are rewritten (atomically) at every epoch end,
    so a resumed run's log holds exactly its epochs."""

    def __init__(self, trainer, folder):
        self.trainer = trainer
        self.folder = Path(folder)
        self.jsonl, self.csv = self.folder / "metrics.jsonl", self.folder / "metrics.csv"
        trainer.on("epoch", self.on_epoch)

    @staticmethod
    def _clean(row):
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v)
                for k, v in row.items() if not hasattr(v, "shape")}

    def write(self):
        self.folder.mkdir(parents=True, exist_ok=True)
        rows = [self._clean(r) for r in self.trainer.history]
        for path, write in ((self.jsonl, self._write_jsonl), (self.csv, self._write_csv)):
            _write_atomically(path, lambda f, write=write: write(f, rows))

    @staticmethod
    def _write_jsonl(f, rows):
        for r in rows:
            f.write(json.dumps(r) + "\n")

    @staticmethod
    def _write_csv(f, rows):
        columns = []
        for r in rows:
            columns += [k for k in r if k not in columns]
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)

    def on_epoch(self, e):
        self.write()


class FinalReport:
    """When the run completes, writes `folder`/final.json: the last test evaluation's loss, accuracy,
    top-5, confusion matrix and per-class precision / recall / F1 / AUC."""

    NAME = "final.json"

    def __init__(self, trainer, folder):
        self.trainer, self.path = trainer, Path(folder) / self.NAME
        trainer.on("finished", self.on_finished)

    def on_finished(self, e):
        evaluation = self.trainer.last_evaluation
        if e["reason"] != "completed" or evaluation is None:
            return
        from . import metrics

        report = metrics.classification_report(evaluation["logits"], evaluation["labels"],
                                               class_names=self.trainer.class_names)
        report.update(class_names=self.trainer.class_names, epoch=self.trainer.epoch, step=self.trainer.step)
        text = json.dumps(_without_nan(report), indent=1)  # NaN (e.g. AUC of an absent class) → null
        _write_atomically(self.path, lambda f: f.write(text))


def _without_nan(value):
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _without_nan(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_without_nan(v) for v in value]
    return value


def _write_atomically(path: Path, write):
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", newline="") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class EarlyStopping:
    """Stop the run when `monitor` (default val_accuracy, else test_accuracy) has not improved by
    `min_delta` for `patience` epochs."""

    def __init__(self, trainer, patience=5, monitor=None, mode="max", min_delta=0.0):
        self.trainer, self.patience, self.monitor = trainer, int(patience), monitor
        self.sign = 1 if mode == "max" else -1
        self.min_delta = float(min_delta)
        self.best, self.bad_epochs = -math.inf, 0
        trainer.on("epoch", self.on_epoch)

    def on_epoch(self, e):
        key = self.monitor or ("val_accuracy" if "val_accuracy" in e else "test_accuracy")
        value = self.sign * e[key]
        if value > self.best + self.min_delta:
            self.best, self.bad_epochs = value, 0
        else:
            self.bad_epochs += 1
            if self.bad_epochs >= self.patience:
                self.trainer.stop()
