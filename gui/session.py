"""The training side of the app: one worker thread per run that owns the model, runs the `Trainer`, and
writes what the panels need into `LiveData`.

The worker is the only thread that touches the model. Trainer callbacks (which run in it, between steps)
record each step, take throttled snapshots (conv weights, feature maps of the chosen image, per-layer
statistics) and run the jobs the GUI queued (feature maps of a new image, evaluation, save now). Pausing
holds the worker inside its step callback, so it keeps serving those jobs while training waits; after the
run ends the worker stays alive to serve jobs until the next run starts or the app closes.
"""

from __future__ import annotations

import datetime
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from convlab import backend
from convlab.inspect import probes
from convlab.train import TrainConfig, load_checkpoint, make_trainer, metrics, resume
from convlab_gui.live_data import (
    FAILED,
    FINISHED,
    INSPECTING,
    LOADING,
    PAUSED,
    RUNNING,
    STOPPING,
    EvaluationResult,
    FeatureMapSnapshot,
    KernelSnapshot,
    LayerStatisticsSample,
    LiveData,
    Misclassified,
)

SNAPSHOT_INTERVAL_S = 2.0  # at most one kernel / feature-map / statistics snapshot this often ...
SNAPSHOT_BUDGET = 0.03  # ... and never more than this share of the training thread's time
STATISTICS_BATCH = 16  # test images in the forward pass that measures activation statistics
GALLERY_LIMIT = 64  # misclassified images kept for the gallery


def default_out_dir(config: TrainConfig) -> str:
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    return str(Path("runs") / f"{config.model}-{config.dataset}-{stamp}")


def normalise(images: np.ndarray, mean, std) -> np.ndarray:
    """uint8 images (N, C, H, W) to the float32 input a model trained on that data set expects."""
    mean = np.asarray(mean, np.float32)[:, None, None]
    std = np.asarray(std, np.float32)[:, None, None]
    return ((np.asarray(images, np.float32) / 255) - mean) / std


def evaluation_result(logits: np.ndarray, labels: np.ndarray, dataset, classes,
                      step: int) -> EvaluationResult:
    """Confusion matrix, per-class accuracy and the most confident mistakes from test-set logits (N, K)
    whose rows follow `dataset`'s order."""
    probabilities = metrics.softmax(logits)  # (N, K)
    predicted = probabilities.argmax(axis=1)
    k = probabilities.shape[1]
    confusion = metrics.confusion_matrix(labels, predicted, k)
    support = confusion.sum(axis=1)
    per_class = np.divide(np.diag(confusion), support, out=np.zeros(k), where=support > 0)
    wrong = np.flatnonzero(predicted != labels)
    confidence = probabilities[wrong, predicted[wrong]]
    order = wrong[np.argsort(-confidence, kind="stable")][:GALLERY_LIMIT]
    gallery = tuple(Misclassified(int(i), np.array(dataset.images[i]), int(labels[i]), int(predicted[i]),
                                  float(probabilities[i, predicted[i]])) for i in order)
    names = tuple(classes) if classes else tuple(str(i) for i in range(k))
    return EvaluationResult(names, confusion, per_class, float((predicted == labels).mean()), len(labels),
                            gallery, int(wrong.size), step)


@dataclass
class _Context:
    """What the worker thread works on: the trainer (None when inspecting a checkpoint), the model and
    the test split."""

    trainer: object | None
    model: object
    test_data: object
    classes: tuple[str, ...]
    step: int = 0


class RunWorker:
    """One run (or one opened checkpoint) in its own thread. `build()` runs first in that thread and
    returns the `_Context`; then the trainer runs (if any); then queued jobs are served until `shutdown()`."""

    def __init__(self, live: LiveData, build: Callable[[], _Context], snapshot_interval: float,
                 snapshot_budget: float):
        self.live = live
        self.build = build
        self.snapshot_interval = snapshot_interval
        self.snapshot_budget = snapshot_budget
        self.context: _Context | None = None
        self.jobs: queue.Queue = queue.Queue()
        self.thread = threading.Thread(target=self._main, name="convlab-training", daemon=True)
        self._pause = threading.Event()
        self._stop = threading.Event()
        self._shutdown = threading.Event()
        self._probe_image: np.ndarray | None = None
        self._statistics_batch: np.ndarray | None = None
        self._next_snapshot = 0.0
        self._statistics_due = False
        self._snapshot_cost = 0.0
        self._reported: set[int] = set()  # ids of exceptions already shown, so none is shown twice
        self._steps = 0
        self._rate = 0.0
        self._rate_valid = True
        self.trainer_finished = threading.Event()

    # -- control, from the GUI thread ------------------------------------------------------------------------
    def start(self) -> None:
        self.thread.start()

    def pause(self) -> None:
        self._pause.set()

    def resume(self) -> None:
        self._pause.clear()

    def stop(self) -> None:
        """End training before the next step; the trainer writes a checkpoint there (it has an out_dir)."""
        self._stop.set()
        self._pause.clear()
        trainer = self.context.trainer if self.context else None
        if trainer is not None:
            trainer.stop()
        if not self.trainer_finished.is_set():
            self.live.update_status(state=STOPPING)

    def shutdown(self, timeout: float | None = None) -> bool:
        """Stop training, stop serving jobs and wait for the thread; True when it ended within `timeout`."""
        self._shutdown.set()
        self.stop()
        self.thread.join(timeout)
        return not self.thread.is_alive()

    def submit(self, job: Callable[[_Context], None]) -> None:
        """Run `job(context)` in the worker thread: at the next step while training, else as soon as idle."""
        self.jobs.put(job)

    def request_feature_maps(self, image: np.ndarray) -> None:
        def job(context):
            self._probe_image = np.array(image, dtype=np.uint8)
            self._feature_maps(context)
        self.submit(job)

    def request_evaluation(self) -> None:
        def job(context):
            if context.trainer is not None:
                context.trainer.evaluate()
                evaluation = context.trainer.last_evaluation
                logits, labels = evaluation["logits"], evaluation["labels"]
            else:
                from convlab.data import DataLoader
                from convlab.train.trainer import predict

                logits, labels = predict(context.model, DataLoader(context.test_data, 250, shuffle=False))
            result = evaluation_result(logits, labels, context.test_data, context.classes, context.step)
            with self.live.lock:
                self.live.evaluation = result
        self.submit(job)

    def request_save(self, path: str | None = None) -> None:
        def job(context):
            if context.trainer is None:
                raise ValueError("Save now needs a training run; an opened checkpoint is already saved")
            context.trainer.save_checkpoint(path)
        self.submit(job)

    # -- the thread ----------------------------------------------------------------------------------------
    def _main(self) -> None:
        live = self.live
        try:
            live.update_status(state=LOADING, message="loading data and building the model…")
            context = self.context = self.build()
            images = context.test_data.images[:STATISTICS_BATCH]
            self._statistics_batch = normalise(images, context.test_data.mean, context.test_data.std)
            with live.lock:
                live.classes = tuple(context.classes)
                live.samples = context.test_data
            trainer = context.trainer
            if trainer is None:
                self._snapshot(context)
                live.update_status(state=INSPECTING, message="checkpoint opened")
            else:
                for event, handler in (("step", self._on_step), ("epoch", self._on_epoch),
                                       ("checkpoint", self._on_checkpoint), ("error", self._on_error),
                                       ("finished", self._on_finished)):
                    trainer.on(event, handler)
                context.step = trainer.step
                live.update_status(state=RUNNING, epochs=trainer.epochs, epoch=trainer.epoch,
                                   step=trainer.step, message="training")
                if not self._stop.is_set():
                    trainer.run()
                else:
                    live.update_status(state=FINISHED, finished_reason="stopped",
                                       message="stopped before it began")
        except Exception as e:  # noqa: BLE001 — every failure becomes a dialog, never a crash
            self._report(e)
            live.update_status(state=FAILED, message=_describe(e))
        finally:
            self.trainer_finished.set()
        if self.context is not None:
            self._serve_jobs_until(self._shutdown.is_set)

    def _serve_jobs_until(self, done: Callable[[], bool]) -> None:
        while not done():
            try:
                job = self.jobs.get(timeout=0.05)
            except queue.Empty:
                continue
            self._run_job(job)

    def _run_pending_jobs(self) -> None:
        while True:
            try:
                job = self.jobs.get_nowait()
            except queue.Empty:
                return
            self._run_job(job)

    def _run_job(self, job) -> None:
        try:
            job(self.context)
        except Exception as e:  # noqa: BLE001
            self._report(e)

    def _report(self, e: BaseException) -> None:
        if id(e) not in self._reported:
            self._reported.add(id(e))
            self.live.add_error(_describe(e))

    # -- trainer events (training thread) -------------------------------------------------------------------
    def _on_step(self, event: dict) -> None:
        live, context = self.live, self.context
        context.step = event["step"]
        self._steps += 1
        rate = event.get("images_per_sec") or 0.0
        if self._rate_valid:  # the first step after a pause timed the pause too
            self._rate = rate if self._rate == 0 else 0.9 * self._rate + 0.1 * rate
        self._rate_valid = True
        eta = None
        if self._rate > 0:
            remaining = max(event["epochs"] * event["batches"] - event["step"], 0)
            eta = remaining * context.trainer.train_loader.batch_size / self._rate
        live.add_step(event["step"], event["loss"], event["accuracy"], event["lr"])
        live.update_status(epoch=event["epoch"], epochs=event["epochs"], step=event["step"],
                           total_steps=event["epochs"] * event["batches"], images_per_sec=self._rate,
                           eta_seconds=eta)
        self._run_pending_jobs()
        self._periodic_snapshot(context)
        if self._pause.is_set() and not self._stop.is_set():
            self._hold(context)

    def _hold(self, context: _Context) -> None:
        """Pause: wait here, between two steps, serving jobs until resumed or stopped."""
        self.live.update_status(state=PAUSED, message="paused")
        self._snapshot(context)
        self._serve_jobs_until(lambda: not self._pause.is_set() or self._stop.is_set())
        self._rate_valid = False
        if not self._stop.is_set():
            self.live.update_status(state=RUNNING, message="training")

    def _on_epoch(self, event: dict) -> None:
        record = {k: v for k, v in event.items() if isinstance(v, (int, float)) or v is None}
        trainer, context = self.context.trainer, self.context
        result = None
        evaluation = trainer.last_evaluation
        if evaluation is not None and len(evaluation["labels"]) == len(context.test_data):
            result = evaluation_result(evaluation["logits"], evaluation["labels"], context.test_data,
                                       context.classes, event.get("step", context.step))
        with self.live.lock:
            self.live.epochs.append(record)
            if result is not None:
                self.live.evaluation = result
        if time.perf_counter() >= self._next_snapshot:
            self._snapshot(context)

    def _on_checkpoint(self, event: dict) -> None:
        self.live.update_status(checkpoint=event["path"], checkpoint_step=event["step"])

    def _on_error(self, event: dict) -> None:
        exception = event.get("exception")
        if exception is not None:
            self._reported.add(id(exception))
        self.live.add_error(event.get("message") or _describe(exception))

    def _on_finished(self, event: dict) -> None:
        reason = event["reason"]
        if reason in ("completed", "stopped"):
            self._snapshot(self.context)  # the panels end on the final weights
        state = FINISHED if reason in ("completed", "stopped") else FAILED
        message = {"completed": "finished", "stopped": "stopped"}.get(
            reason, f"{reason}: {event.get('message', '')}")
        self.live.update_status(state=state, finished_reason=reason, message=message)

    # -- snapshots (training thread) ------------------------------------------------------------------------
    def _snapshot(self, context: _Context, parts: tuple[str, ...] = ("weights", "statistics")) -> None:
        """Take snapshot `parts`: "weights" copies the conv weights and recomputes the chosen image's feature
        maps, "statistics" measures per-layer statistics. After the statistics, schedule the next snapshot so
        that snapshots stay within their share of the training thread's time."""
        started = time.perf_counter()
        if "weights" in parts:
            with self.live.lock:
                version = (self.live.kernels.version + 1) if self.live.kernels else 1
            layers = tuple((name, np.array(backend.to_numpy(conv.weight.data), dtype=np.float32))
                           for name, conv in probes.conv_layers(context.model))
            kernels = KernelSnapshot(layers, context.step, version)
            with self.live.lock:
                self.live.kernels = kernels
            self._feature_maps(context)
        if "statistics" in parts:
            statistics = self._layer_statistics(context)
            if statistics is not None:
                with self.live.lock:
                    self.live.layer_statistics.append(statistics)
        self._snapshot_cost += time.perf_counter() - started
        with self.live.lock:
            self.live.snapshot_seconds += time.perf_counter() - started
        if "statistics" in parts:
            self._next_snapshot = time.perf_counter() + max(self.snapshot_interval,
                                                            self._snapshot_cost / self.snapshot_budget)
            self._snapshot_cost = 0.0

    def _periodic_snapshot(self, context: _Context) -> None:
        """Between steps: the weights part now and the statistics part after the next step, so neither
        holds the training thread (and the interpreter lock the GUI needs) for long."""
        if self._statistics_due:
            self._statistics_due = False
            self._snapshot(context, ("statistics",))
        elif time.perf_counter() >= self._next_snapshot:
            self._snapshot(context, ("weights",))
            self._statistics_due = True

    def _layer_statistics(self, context: _Context) -> LayerStatisticsSample | None:
        rows = probes.layer_statistics(context.model, self._statistics_batch)
        rows = [r for r in rows if r["type"] in ("Conv2d", "Linear")]
        if not rows:
            return None

        def column(key):
            return np.array([np.nan if r[key] is None else r[key] for r in rows], dtype=np.float64)

        return LayerStatisticsSample(context.step, tuple(r["name"] for r in rows), column("activation_mean"),
                                     column("activation_std"), column("grad_norm"))

    def _feature_maps(self, context: _Context) -> None:
        image = self._probe_image
        if image is None:
            return
        data = context.test_data
        x = normalise(image[None], data.mean, data.std)  # (1, C, H, W)
        outputs = []
        handle = context.model.register_forward_hook(lambda module, inputs, output: outputs.append(output))
        try:
            maps = probes.feature_maps(context.model, x)
        finally:
            handle.remove()
        probabilities = metrics.softmax(backend.to_numpy(outputs[-1]))[0] if outputs else np.zeros(0)
        with self.live.lock:
            version = (self.live.feature_maps.version + 1) if self.live.feature_maps else 1
            self.live.feature_maps = FeatureMapSnapshot(image, tuple((name, m[0]) for name, m in maps),
                                                        probabilities, context.step, version)


def _describe(e: BaseException | None) -> str:
    if e is None:
        return "unknown error"
    if isinstance(e, MemoryError):
        return ("Out of memory: the model or batch does not fit. Use a smaller batch size, a smaller model "
                f"or a train subset. ({e})")
    return f"{type(e).__name__}: {e}"


class TrainingSession:
    """The app's handle on training: starts runs and checkpoint inspections, each in a `RunWorker`, and
    forwards control and requests to the current one. All methods are called from the GUI thread."""

    def __init__(self, live: LiveData | None = None, snapshot_interval: float = SNAPSHOT_INTERVAL_S,
                 snapshot_budget: float = SNAPSHOT_BUDGET):
        self.live = live or LiveData()
        self.snapshot_interval = snapshot_interval
        self.snapshot_budget = snapshot_budget
        self.worker: RunWorker | None = None

    @property
    def training(self) -> bool:
        """A run is loading, training, paused or stopping."""
        return self.worker is not None and not self.worker.trainer_finished.is_set() and \
            self.worker.thread.is_alive()

    def _launch(self, build, model_name: str, dataset_name: str) -> RunWorker:
        if self.worker is not None:
            self.worker.shutdown(timeout=30)
        self.live.reset(model_name, dataset_name)
        self.worker = RunWorker(self.live, build, self.snapshot_interval, self.snapshot_budget)
        self.worker.start()
        return self.worker

    def start(self, config: TrainConfig, train_data=None, test_data=None) -> RunWorker:
        """Train `config` (an out_dir is chosen when it has none, so stopping can save a checkpoint)."""
        if config.out_dir is None:
            config.out_dir = default_out_dir(config)

        def build():
            trainer = make_trainer(config, train_data=train_data, test_data=test_data)
            test = trainer.test_loader.dataset
            return _Context(trainer, trainer.model, test, tuple(trainer.class_names or test.classes))

        return self._launch(build, config.model or "", config.dataset or "")

    def continue_from(self, path: str, **overrides) -> RunWorker:
        """Resume the run saved in checkpoint `path` exactly where it stopped."""
        def build():
            trainer = resume(path, **overrides)
            test = trainer.test_loader.dataset
            with self.live.lock:
                self.live.epochs.extend(trainer.history)
                self.live.model_name, self.live.dataset_name = trainer.config.model, trainer.config.dataset
            return _Context(trainer, trainer.model, test, tuple(trainer.class_names or test.classes))

        return self._launch(build, "", "")

    def inspect(self, path: str, data_dir: str | None = None) -> RunWorker:
        """Open checkpoint `path` to look at (kernels, feature maps, evaluation) without training."""
        def build():
            from convlab import data

            model, info = load_checkpoint(path)
            config = info.get("config") or {}
            dataset = config.get("dataset")
            if not dataset:
                raise ValueError(f"checkpoint {path} does not name its data set, so there are no test images "
                                 "to inspect it with")
            root = data_dir or config.get("data_dir")
            test = data.get(dataset, "test", root=root, download=False)
            if config.get("test_subset") and config["test_subset"] < len(test):
                test = test.subset(config["test_subset"], seed=config.get("seed", 0))
            with self.live.lock:
                self.live.epochs.extend(info.get("history") or [])
                self.live.model_name, self.live.dataset_name = info.get("model_name", ""), dataset
            return _Context(None, model, test, tuple(info.get("class_names") or test.classes),
                            int(info.get("step") or 0))

        return self._launch(build, "", "")

    def pause(self) -> None:
        if self.worker is not None:
            self.worker.pause()

    def resume(self) -> None:
        if self.worker is not None:
            self.worker.resume()

    def stop(self) -> None:
        if self.worker is not None:
            self.worker.stop()

    def request_feature_maps(self, image: np.ndarray) -> None:
        if self.worker is not None:
            self.worker.request_feature_maps(image)

    def request_evaluation(self) -> None:
        if self.worker is not None:
            self.worker.request_evaluation()

    def save_now(self, path: str | None = None) -> None:
        if self.worker is not None:
            self.worker.request_save(path)

    def shutdown(self, timeout: float = 60.0) -> bool:
        """Stop any run (its trainer saves a checkpoint) and end the worker thread."""
        return self.worker.shutdown(timeout) if self.worker is not None else True
