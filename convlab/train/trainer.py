"""The training loop: `Trainer` runs epochs over a loader, evaluates after each, writes checkpoints and
emits events ("step", "epoch", "checkpoint", "error", "finished") that progress bars, logs and the GUI
subscribe to. `make_trainer(config)` builds a whole run from a `TrainConfig`; `resume(path)` picks one
up from its checkpoint, mid-epoch included, so that it ends exactly as an uninterrupted run would.

A run with an `out_dir` keeps its folder up to date: config.json, last.h5 (checkpoints),
metrics.jsonl / metrics.csv (one row per epoch) and, once completed, final.json (the test report).
"""

from __future__ import annotations

import json
import math
import threading
import time
from pathlib import Path

import numpy as np

from .. import backend
from .. import nn as cnn
from ..optim import (
    SGD,
    Adam,
    AdamW,
    ConstantLR,
    CosineLR,
    MultiStepLR,
    OneCycleLR,
    ReduceLROnPlateau,
    StepLR,
    clip_grad_norm,
    global_grad_norm,
)
from . import metrics
from .callbacks import FinalReport, MetricsLog
from .checkpoint import CheckpointError, read_checkpoint, save_checkpoint
from .config import TrainConfig, parse_augment, resolve_config

EVENTS = ("step", "epoch", "checkpoint", "error", "finished")
CHECKPOINT_NAME = "last.h5"


class TrainingDiverged(RuntimeError):
    """The loss or a gradient stopped being a finite number."""


def _version():
    from .. import __version__

    return __version__


class Trainer:
    """Runs `epochs` of training of `model` on `train_loader`, evaluating on `test_loader` (and
    `val_loader`) after each epoch.

    optimizer: a convlab.optim optimiser over the model's parameters. schedule: a per-step schedule
    (stepped after every optimiser step) or a `ReduceLROnPlateau` (stepped after every epoch with the
    validation accuracy, or the test accuracy when there is no validation split). out_dir: where
    checkpoints go (`last.h5`); None writes none. checkpoint_every: also checkpoint every N steps.
    log_every: read the loss and check for divergence every N steps (each read waits for the GPU).

    Thread safety: `pause()`, `resume()` and `stop()` may be called from any thread; they act between
    steps. Event callbacks run in the training thread.
    """

    def __init__(self, model, train_loader, test_loader, optimizer, schedule=None, criterion=None, *,
                 epochs=1, val_loader=None, out_dir=None, checkpoint_every=0, log_every=1,
                 clip_grad_norm=0.0, config: TrainConfig | None = None, model_name=None,
                 model_options=None, class_names=None, cuda_graph=False):
        self.model = model
        self._input_grad_skipped = False
        self.train_loader, self.test_loader, self.val_loader = train_loader, test_loader, val_loader
        self.optimizer = optimizer
        self.schedule = schedule if schedule is not None else ConstantLR(optimizer)
        self.criterion = criterion if criterion is not None else cnn.CrossEntropyLoss()
        self.epochs = int(epochs)
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.checkpoint_every = int(checkpoint_every)
        self.log_every = max(1, int(log_every))
        self.max_grad_norm = float(clip_grad_norm or 0.0)
        if cuda_graph and self.max_grad_norm:
            raise ValueError("Trainer: cuda_graph cannot be combined with clip_grad_norm (clipping reads "
                             "the gradient norm on the host inside the step)")
        if cuda_graph and not backend.gpu_available():
            raise backend.DeviceError("Trainer: cuda_graph=True needs a CUDA GPU with CuPy; none is usable here")
        self.cuda_graph = bool(cuda_graph)
        self.captured = None  # the CapturedStep that full-size batches replay (cuda_graph=True)
        self.config = config
        self.model_name = model_name
        self.model_options = dict(model_options or {})
        self.class_names = list(class_names) if class_names is not None else None
        self.params = list(model.parameters())

        self.epoch = 0  # epochs completed
        self.step = 0  # optimiser steps taken
        self.batch_in_epoch = 0  # batches of the current epoch already trained on
        self.history: list[dict] = []
        self.last_checkpoint: dict | None = None  # {"path", "epoch", "step"}
        # The last test pass: {"logits", "labels", "loss", "accuracy", "top5", "confusion_matrix"}.
        self.last_evaluation: dict | None = None
        self._reset_epoch_totals()

        self._handlers = {e: [] for e in EVENTS}
        self._running = threading.Event()
        self._running.set()
        self._stop = threading.Event()

    # -- events and control ------------------------------------------------------------------
    def on(self, event: str, callback):
        """Call `callback(payload: dict)` on every `event` (one of EVENTS); returns the callback."""
        if event not in self._handlers:
            raise ValueError(f"unknown event {event!r}; events are {', '.join(EVENTS)}")
        self._handlers[event].append(callback)
        return callback

    def off(self, event: str, callback):
        if callback in self._handlers.get(event, []):
            self._handlers[event].remove(callback)

    def _emit(self, event, payload):
        for callback in list(self._handlers[event]):
            callback(payload)

    def pause(self):
        """Hold before the next step until `resume()` or `stop()`."""
        self._running.clear()

    def resume(self):
        self._running.set()

    def stop(self):
        """End the run before the next step (a checkpoint is written there when out_dir is set)."""
        self._stop.set()
        self._running.set()

    @property
    def paused(self) -> bool:
        return not self._running.is_set()

    @property
    def steps_per_epoch(self) -> int:
        return len(self.train_loader)

    @property
    def checkpoint_path(self) -> Path | None:
        return self.out_dir / CHECKPOINT_NAME if self.out_dir is not None else None

    # -- the loop --------------------------------------------------------------------------
    def run(self) -> dict:
        """Train until `epochs` are done or `stop()`; returns the "finished" payload
        {reason: "completed"|"stopped"|"diverged"|"error", message, history, final}.

        Divergence does not raise: it ends the run with reason "diverged". Any other exception is
        reported as an "error" event and a "finished" event, then re-raised. A `stop()` that came
        before `run()` stops it before its first step; calling `run()` again continues.
        """
        try:
            if self.out_dir is not None and self.last_checkpoint is None:
                self.save_checkpoint()  # the starting point is the first good checkpoint
            while self.epoch < self.epochs:
                if not self._train_epoch():
                    if self.out_dir is not None:
                        self.save_checkpoint()
                    return self._finish("stopped", "stopped by request")
                self._end_epoch()
            return self._finish("completed", "")
        except TrainingDiverged as e:
            self._emit("error", {"message": str(e), "exception": e})
            return self._finish("diverged", str(e))
        except KeyboardInterrupt:
            # The step in flight may be half applied: keep the last checkpoint rather than write one.
            return self._finish("stopped", "interrupted")
        except Exception as e:
            self._emit("error", {"message": f"{type(e).__name__}: {e}", "exception": e})
            self._finish("error", f"{type(e).__name__}: {e}")
            raise
        finally:
            self._stop.clear()

    def _finish(self, reason, message):
        payload = {"reason": reason, "message": message, "history": list(self.history),
                   "final": dict(self.history[-1]) if self.history else {},
                   "checkpoint": dict(self.last_checkpoint) if self.last_checkpoint else None}
        self._emit("finished", payload)
        return payload

    # The current epoch's running sums. Loss and correct counts stay on the device (reading them waits
    # for the GPU); `epoch_totals()` reads them, so a checkpoint can be taken between any two steps.
    def _reset_epoch_totals(self, loss_sum=0.0, correct=0, seen=0, seconds=0.0):
        xp = getattr(self.train_loader, "xp", None) or backend.xp()
        self._loss_sum = xp.asarray(loss_sum, dtype=np.float64)
        self._correct = xp.asarray(correct, dtype=np.int64)
        self._seen, self._seconds = int(seen), float(seconds)
        self._clock = None  # perf_counter() when the epoch's clock last started

    def epoch_totals(self) -> dict:
        """The current epoch so far: summed loss, correct count, samples seen and training seconds."""
        seconds = self._seconds + (time.perf_counter() - self._clock if self._clock is not None else 0.0)
        return {"loss_sum": float(self._loss_sum), "correct": int(self._correct), "seen": self._seen,
                "seconds": seconds}

    def _train_epoch(self) -> bool:
        """Train on the rest of the current epoch; False when stopped before its end."""
        loader = self.train_loader
        if self.batch_in_epoch == 0:
            loader.set_epoch(self.epoch)
            self._reset_epoch_totals()
        if self.batch_in_epoch >= len(loader):
            return True
        self._clock = window_start = time.perf_counter()
        window_images = 0
        self.model.train()
        batches = iter(loader)
        try:
            while True:
                if not self._running.is_set():
                    self._pause_clock()
                    self._running.wait()
                    self._clock = window_start = time.perf_counter()
                    window_images = 0
                if self._stop.is_set():
                    return False
                try:
                    x, y = next(batches)
                except StopIteration:
                    break
                loss, batch_correct, grad_norm = self._train_step(x, y)
                n = int(y.shape[0])
                self._loss_sum += loss * n
                self._correct += batch_correct
                self._seen += n
                window_images += n
                if self.step % self.log_every == 0 or self.batch_in_epoch == len(loader):
                    now = time.perf_counter()
                    rate = window_images / max(now - window_start, 1e-9)
                    window_start, window_images = now, 0
                    self._emit("step", self._step_payload(loss, batch_correct, n, grad_norm, rate))
                if (self.checkpoint_every and self.step % self.checkpoint_every == 0
                        and self.batch_in_epoch < len(loader) and self.out_dir is not None):
                    self.save_checkpoint()
        finally:
            batches.close()
            self._pause_clock()
        return True

    def _pause_clock(self):
        if self._clock is not None:
            self._seconds += time.perf_counter() - self._clock
            self._clock = None

    def _train_step(self, x, y):
        """One forward, backward and update; returns (loss, correct count, grad norm or None).

        The loss and the divergence checks are read (a device sync) only on logging steps."""
        if not self._input_grad_skipped:  # the data needs no gradient: spare the first layer's dx
            self.model.skip_input_grad(x)
            self._input_grad_skipped = True
        next_step = self.step + 1
        read = next_step % self.log_every == 0 or self.batch_in_epoch + 1 == len(self.train_loader)
        loss = None
        if self.captured is not None and tuple(x.shape) == self.captured.x.shape:
            # cuda_graph: the whole step, update included, as one replay; the checks read what it left.
            loss, logits = self._replay(x, y)
        if loss is not None:
            grad_norm = global_grad_norm(self.params) if read else None
            if read:
                self._check_finite(next_step, loss, grad_norm)
        else:
            # (checked only while a recording is still to be made: it costs a pass over the parameters)
            recordable = self.cuda_graph and self.captured is None and all(p.grad is not None for p in self.params)
            logits = self.model(x)
            loss = self.criterion(logits, y)
            self.optimizer.zero_grad()
            self.model.backward(self.criterion.backward())
            grad_norm = None
            if self.max_grad_norm:
                grad_norm = clip_grad_norm(self.params, self.max_grad_norm)
            elif read:
                grad_norm = global_grad_norm(self.params)
            if read:
                self._check_finite(next_step, loss, grad_norm)
            self.optimizer.step()
            if recordable and len(x) == self.train_loader.batch_size:
                self._record_step(x, y)
        if not isinstance(self.schedule, ReduceLROnPlateau):
            self.schedule.step()
        self.step = next_step
        self.batch_in_epoch += 1
        correct = (logits.argmax(axis=1) == y).sum()
        return loss, correct, grad_norm

    def _check_finite(self, step, loss, grad_norm):
        value = float(loss)
        if not math.isfinite(value):
            raise TrainingDiverged(self._divergence_message(step, f"the loss is {value}"))
        if not math.isfinite(grad_norm):
            raise TrainingDiverged(self._divergence_message(step, f"the gradient norm is {grad_norm}"))

    def _record_step(self, x, y):
        """cuda_graph: record the step just taken (it ran eagerly with every gradient present, as a
        recording needs) for the next full-size batches to replay. The first step of a process
        and an epoch's smaller last batch run eagerly. If the step cannot be recorded (a host
        sync inside it, say), training goes on eagerly with a warning."""
        from .graph import CapturedStep, CaptureError

        try:
            self.captured = CapturedStep(self.model, self.criterion, self.optimizer, x, y, warmup=0, warmed=True)
        except CaptureError as exc:
            self._graph_off(exc)

    def _replay(self, x, y):
        """(loss, logits) of the recorded step on (x, y); (None, None) if it had to be recorded
        again and could not be (nothing ran: the caller takes the step eagerly)."""
        from .graph import CaptureError

        try:
            return self.captured(x, y), self.captured.logits
        except CaptureError as exc:
            self._graph_off(exc)
            return None, None

    def _graph_off(self, exc):
        import warnings

        self.cuda_graph, self.captured = False, None
        warnings.warn(f"cuda_graph is off for this run: {exc}", RuntimeWarning, stacklevel=3)

    def _divergence_message(self, step, what):
        where = f"training diverged at step {step} (epoch {self.epoch + 1}): {what}"
        if self.last_checkpoint:
            c = self.last_checkpoint
            return (f"{where}. The last good checkpoint is {c['path']} "
                    f"(epoch {c['epoch']}, step {c['step']}); "
                    "lower the learning rate (or add gradient clipping) and resume or restart from it")
        return f"{where}. No checkpoint was written (no output folder); lower the learning rate and restart"

    def _step_payload(self, loss, batch_correct, n, grad_norm, rate):
        remaining_steps = max(self.epochs * self.steps_per_epoch - self.step, 0)
        remaining_images = remaining_steps * self.train_loader.batch_size
        return {
            "epoch": self.epoch + 1, "epochs": self.epochs, "step": self.step,
            "batch": self.batch_in_epoch, "batches": self.steps_per_epoch,
            "loss": float(loss), "accuracy": int(batch_correct) / n, "lr": float(self.optimizer.lr),
            "grad_norm": None if grad_norm is None else float(grad_norm),
            "images_per_sec": rate, "eta_seconds": remaining_images / rate if rate > 0 else None,
        }

    def _end_epoch(self):
        t = self.epoch_totals()
        seen = max(t["seen"], 1)
        eval_start = time.perf_counter()
        test = self.evaluate(self.test_loader)
        record = {
            "epoch": self.epoch + 1, "step": self.step,
            "train_loss": t["loss_sum"] / seen, "train_accuracy": t["correct"] / seen,
            "test_loss": test["loss"], "test_accuracy": test["accuracy"], "test_top5": test["top5"],
        }
        if self.val_loader is not None:
            val = self.evaluate(self.val_loader, keep=False)
            record.update(val_loss=val["loss"], val_accuracy=val["accuracy"], val_top5=val["top5"])
        record["lr"] = float(self.optimizer.lr)
        record["seconds"] = t["seconds"]
        record["eval_seconds"] = time.perf_counter() - eval_start
        record["images_per_sec"] = t["seen"] / t["seconds"] if t["seconds"] > 0 else 0.0
        if isinstance(self.schedule, ReduceLROnPlateau):
            self.schedule.step(record.get("val_accuracy", record["test_accuracy"]))
        self.epoch += 1
        self.batch_in_epoch = 0
        self._reset_epoch_totals()
        self.history.append(record)
        self._emit("epoch", dict(record, confusion_matrix=test["confusion_matrix"]))
        if self.out_dir is not None:
            self.save_checkpoint()

    def evaluate(self, loader=None, keep=True) -> dict:
        """Loss, accuracy, top-5 and confusion matrix of the model on `loader` (default: the test
        loader), in eval mode. With `keep`, the logits and labels are kept in `last_evaluation`."""
        loader = loader if loader is not None else self.test_loader
        all_logits, all_labels = predict(self.model, loader)
        k = all_logits.shape[1]
        result = {
            "loss": metrics.cross_entropy(all_logits, all_labels),
            "accuracy": metrics.accuracy(all_logits, all_labels),
            "top5": metrics.topk_accuracy(all_logits, all_labels, 5),
            "confusion_matrix": metrics.confusion_matrix(all_labels, all_logits.argmax(axis=1), k),
        }
        if keep:
            self.last_evaluation = {"logits": all_logits, "labels": all_labels, **result}
        return result

    # -- checkpoints -----------------------------------------------------------------------
    def _weights_finite(self) -> bool:
        for a in list(p.data for p in self.params) + [b for _, b in self.model.named_buffers()]:
            if a.dtype.kind == "f" and not bool(backend.get_array_module(a).isfinite(a).all()):
                return False
        return True

    def state(self) -> dict:
        """Everything but the weights that a resumed run needs, as nested dicts of arrays and values."""
        return {
            "optimizer": self.optimizer.state_dict(),
            "schedule": self.schedule.state_dict(),
            "rng": backend.rng.get_state(),
            "loader": self.train_loader.state_dict(),
            "progress": {"epoch": self.epoch, "step": self.step, "batch_in_epoch": self.batch_in_epoch,
                         "totals": self.epoch_totals(), "epochs": self.epochs},
            "history": self.history,
            "config": self.config.to_dict() if self.config is not None else None,
            "class_names": self.class_names,
        }

    def save_checkpoint(self, path=None) -> Path:
        """Write the run's state to `path` (default out_dir/last.h5) atomically; refuses to store
        non-finite weights."""
        path = Path(path) if path is not None else self.checkpoint_path
        if path is None:
            raise ValueError("save_checkpoint: no path given and the trainer has no out_dir")
        if not self._weights_finite():
            raise TrainingDiverged(
                self._divergence_message(self.step, "the weights are no longer finite numbers"))
        save_checkpoint(path, model_state=self.model.state_dict(), model_name=self.model_name or "custom",
                        model_options=self.model_options, state=self.state(), convlab_version=_version())
        self.last_checkpoint = {"path": str(path), "epoch": self.epoch, "step": self.step}
        self._emit("checkpoint", dict(self.last_checkpoint))
        return path

    def restore(self, checkpoint: dict | str | Path):
        """Load the state of a checkpoint (a path or what `read_checkpoint` returned) into this trainer,
        which must have been built with the same configuration."""
        ckpt = read_checkpoint(checkpoint) if isinstance(checkpoint, (str, Path)) else checkpoint
        state = ckpt["state"]
        try:
            self.model.load_state_dict(ckpt["model_state"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.schedule.load_state_dict(state["schedule"])
            self.train_loader.load_state_dict(state["loader"])
            backend.rng.set_state(state["rng"])
            progress = state["progress"]
        except KeyError as e:
            raise CheckpointError(f"the checkpoint lacks {e.args[0]!r}; it is incomplete") from e
        self.epoch, self.step = int(progress["epoch"]), int(progress["step"])
        self.batch_in_epoch = int(progress["batch_in_epoch"])
        self._reset_epoch_totals(**progress["totals"])
        self.history = list(state.get("history") or [])
        if isinstance(checkpoint, (str, Path)):
            self.last_checkpoint = {"path": str(checkpoint), "epoch": self.epoch, "step": self.step}
        return self


def predict(model, loader):
    """(logits (N, K) float64, labels (N,)) of `model` in eval mode over all of `loader`, as NumPy
    arrays; the model's mode is restored afterwards."""
    was_training = model.training
    model.eval()
    logits, labels = [], []
    try:
        loader.set_epoch(0)
        for x, y in loader:
            logits.append(model(x))
            labels.append(y)
    finally:
        model.clear_cache()
        model.train(was_training)
    xp = loader.xp
    all_logits = backend.to_numpy(xp.concatenate(logits)).astype(np.float64)  # (N, K)
    return all_logits, backend.to_numpy(xp.concatenate(labels))


# -- building runs from a config ------------------------------------------------------------


def build_augment(spec, image_shape):
    """The data.Transform for an augmentation spec ("crop+flip") on images of shape (C, H, W)."""
    from .. import data

    parts = parse_augment(spec)
    _, h, _ = image_shape
    transforms = []
    for name in parts:
        if name == "crop":
            transforms.append(data.RandomCrop(h, padding=4 if h >= 32 else 2))
        elif name == "flip":
            transforms.append(data.RandomHorizontalFlip())
        elif name == "affine":
            transforms.append(data.RandomAffine(degrees=10, scale=(0.9, 1.1)))
        elif name == "cutout":
            transforms.append(data.Cutout(size=max(h // 4, 1)))
        elif name == "noise":
            transforms.append(data.GaussianNoise(0.05))
    return data.Compose(transforms) if transforms else None


def build_optimizer(config: TrainConfig, params):
    if config.optimizer == "sgd":
        return SGD(params, lr=config.lr, momentum=config.momentum,
                   nesterov=bool(config.nesterov) and config.momentum > 0, weight_decay=config.weight_decay)
    if config.optimizer == "adam":
        return Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    return AdamW(params, lr=config.lr, weight_decay=config.weight_decay)


def build_schedule(config: TrainConfig, optimizer, steps_per_epoch: int):
    total = config.epochs * steps_per_epoch
    if config.schedule == "constant":
        return ConstantLR(optimizer)
    if config.schedule == "step":
        return StepLR(optimizer, config.step_size * steps_per_epoch, config.gamma)
    if config.schedule == "multistep":
        return MultiStepLR(optimizer, [int(m) * steps_per_epoch for m in config.milestones], config.gamma)
    if config.schedule == "cosine":
        warmup = min(int(round(config.warmup_epochs * steps_per_epoch)), total - 1)
        return CosineLR(optimizer, total, warmup_steps=warmup)
    if config.schedule == "onecycle":
        momentum = config.momentum if config.optimizer == "sgd" else 0.9
        return OneCycleLR(optimizer, max_lr=config.lr, total_steps=total, pct_start=config.pct_start,
                          base_momentum=max(momentum - 0.1, 0.0), max_momentum=momentum)
    return ReduceLROnPlateau(optimizer, mode="max", factor=config.gamma, patience=config.patience)


def load_datasets(config: TrainConfig):
    """(train, validation or None, test) data sets for a resolved config (subsets and split applied)."""
    from .. import data

    train = data.get(config.dataset, "train", root=config.data_dir, download=config.download)
    test = data.get(config.dataset, "test", root=config.data_dir, download=config.download)
    return prepare_datasets(config, train, test)


def prepare_datasets(config: TrainConfig, train, test):
    if config.train_subset is not None and config.train_subset < len(train):
        train = train.subset(config.train_subset, seed=config.seed)
    if config.test_subset is not None and config.test_subset < len(test):
        test = test.subset(config.test_subset, seed=config.seed)
    val = None
    if config.val_fraction:
        train, val = train.split_validation(float(config.val_fraction), seed=config.seed)
    return train, val, test


def make_trainer(config: TrainConfig, *, train_data=None, test_data=None, model=None) -> Trainer:
    """Build the data loaders, model, optimiser and schedule a config describes.

    train_data / test_data: in-memory data sets (convlab.data.ImageDataset) to use instead of loading
    `config.dataset`; model: a ready model instead of `convlab.models.get(config.model)`.
    """
    from .. import data, models

    config = resolve_config(config)
    backend.use(config.device)
    backend.manual_seed(config.seed)
    if (train_data is None) != (test_data is None):
        raise ValueError("make_trainer: pass both train_data and test_data, or neither")
    if model is None:
        models.options(config.model)  # an unknown name fails here, before any data is read
    if train_data is None:
        train, val, test = load_datasets(config)
    else:
        train, val, test = prepare_datasets(config, train_data, test_data)
    model_options = {"num_classes": len(train.classes), "in_channels": int(train.images.shape[1]),
                     **config.model_options}
    if model is None:
        model = models.get(config.model, **model_options)
    augment = build_augment(config.augment, train.images.shape[1:])
    train_loader = data.DataLoader(train, config.batch_size, shuffle=True, augment=augment, seed=config.seed)
    test_loader = data.DataLoader(test, config.eval_batch_size, shuffle=False)
    val_loader = data.DataLoader(val, config.eval_batch_size, shuffle=False) if val is not None else None
    optimizer = build_optimizer(config, list(model.parameters()))
    schedule = build_schedule(config, optimizer, len(train_loader))
    criterion = cnn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
    trainer = Trainer(model, train_loader, test_loader, optimizer, schedule, criterion, epochs=config.epochs,
                      val_loader=val_loader, out_dir=config.out_dir, checkpoint_every=config.checkpoint_every,
                      log_every=config.log_every, clip_grad_norm=config.clip_grad_norm, config=config,
                      model_name=config.model, model_options=model_options, class_names=train.classes,
                      cuda_graph=config.cuda_graph)
    if config.out_dir is not None:
        # The run folder: config.json now; last.h5 at checkpoints; metrics logs per epoch; final.json.
        out = Path(config.out_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.json").write_text(json.dumps(config.to_dict(), indent=1))
        MetricsLog(trainer, out)
        FinalReport(trainer, out)
    return trainer


def resume(path, *, train_data=None, test_data=None, **overrides) -> Trainer:
    """A trainer that continues the run saved in checkpoint `path` from exactly where it stopped.

    overrides: TrainConfig fields to change (e.g. device, out_dir, data_dir); changing anything that
    shapes the run (batch size, epochs with a one-cycle schedule...) breaks exact continuation.
    """
    ckpt = read_checkpoint(path)
    stored = ckpt["state"].get("config")
    if not stored:
        raise CheckpointError(
            f"checkpoint {path} has no training configuration, so the run cannot be resumed")
    values = dict(stored, **overrides)
    config = TrainConfig.from_dict(values)
    trainer = make_trainer(config, train_data=train_data, test_data=test_data)
    progress = ckpt["state"]["progress"]
    saved_epochs = int(progress.get("epochs", trainer.epochs))
    if saved_epochs != trainer.epochs and trainer.config.schedule == "onecycle":
        raise ValueError("a one-cycle run cannot change its number of epochs when resumed")
    trainer.restore(ckpt)
    trainer.last_checkpoint = {"path": str(path), "epoch": trainer.epoch, "step": trainer.step}
    return trainer


def load_checkpoint(path):
    """(model, info) from a checkpoint: the model rebuilt from the zoo with the saved weights (in eval
    mode), and info = {model_name, model_options, config, history, epoch, step, class_names,
    convlab_version}."""
    from .. import models

    ckpt = read_checkpoint(path)
    name, options = ckpt["model_name"], ckpt["model_options"]
    try:
        model = models.get(name, **options)
    except ValueError as e:
        raise CheckpointError(f"checkpoint {path}: cannot rebuild model {name!r} ({e})") from e
    try:
        model.load_state_dict(ckpt["model_state"])
    except ValueError as e:
        raise CheckpointError(f"checkpoint {path}: the weights do not fit model {name!r} ({e})") from e
    model.eval()
    state = ckpt["state"]
    progress = state.get("progress", {})
    info = {
        "model_name": name, "model_options": options, "config": state.get("config"),
        "history": state.get("history") or [], "epoch": progress.get("epoch"), "step": progress.get("step"),
        "class_names": state.get("class_names"), "convlab_version": ckpt["convlab_version"],
    }
    return model, info
