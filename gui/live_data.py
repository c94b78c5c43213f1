"""The run's latest state, shared between the training thread (which writes it from trainer events) and the
GUI thread (which reads a consistent copy, `RunView`, on its repaint timer). Nothing here touches a widget.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import numpy as np

# Run states, in the order a run normally passes through them.
IDLE, LOADING, RUNNING, PAUSED, STOPPING, FINISHED, FAILED, INSPECTING = (
    "idle", "loading", "running", "paused", "stopping", "finished", "failed", "inspecting")


class GrowingArray:
    """An append-only float64 series with amortised O(1) appends; `copy()` is one memcpy."""

    def __init__(self, capacity: int = 1024):
        self._data = np.empty(capacity, dtype=np.float64)
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def append(self, value) -> None:
        if self._size == len(self._data):
            self._data = np.concatenate([self._data, np.empty_like(self._data)])
        self._data[self._size] = np.nan if value is None else value
        self._size += 1

    def clear(self) -> None:
        self._size = 0

    def copy(self) -> np.ndarray:
        return self._data[:self._size].copy()


@dataclass(frozen=True)
class StepSeries:
    """Per-step history as arrays: global step index, loss, batch accuracy and learning rate."""

    index: np.ndarray  # float64, so every series shares one buffer type
    loss: np.ndarray
    accuracy: np.ndarray
    lr: np.ndarray

    @property
    def count(self) -> int:
        return len(self.index)


@dataclass(frozen=True)
class KernelSnapshot:
    """Copies of every conv layer's weights (host arrays), taken at `step`."""

    layers: tuple[tuple[str, np.ndarray], ...]  # (name, weight (O, I, kh, kw))
    step: int
    version: int


@dataclass(frozen=True)
class FeatureMapSnapshot:
    """Every conv layer's activation maps for one input image, and the model's class probabilities."""

    image: np.ndarray  # (C, H, W) uint8, the input as the user picked or drew it
    maps: tuple[tuple[str, np.ndarray], ...]  # (layer name, (C, H, W) float32)
    probabilities: np.ndarray  # (num_classes,)
    step: int
    version: int


@dataclass(frozen=True)
class LayerStatisticsSample:
    """Per-layer activation mean / std and gradient norm at one moment of training."""

    step: int
    layers: tuple[str, ...]
    activation_mean: np.ndarray
    activation_std: np.ndarray
    gradient_norm: np.ndarray


@dataclass(frozen=True)
class Misclassified:
    """One test image the model got wrong."""

    index: int  # position in the test split
    image: np.ndarray  # (C, H, W) uint8
    true: int
    predicted: int
    probability: float  # the model's probability for `predicted`


@dataclass(frozen=True)
class EvaluationResult:
    """The model's performance on the test split at `step`."""

    classes: tuple[str, ...]
    confusion: np.ndarray  # (K, K) counts, rows true, columns predicted
    per_class_accuracy: np.ndarray  # (K,) recall of each class
    accuracy: float
    count: int
    misclassified: tuple[Misclassified, ...]  # most confident mistakes first, at most a gallery's worth
    misclassified_count: int
    step: int


@dataclass
class RunStatus:
    state: str = IDLE
    epoch: int = 0
    epochs: int = 0
    step: int = 0
    total_steps: int = 0
    images_per_sec: float = 0.0
    eta_seconds: float | None = None
    message: str = ""
    finished_reason: str | None = None
    checkpoint: str | None = None
    checkpoint_step: int | None = None


@dataclass(frozen=True)
class RunView:
    """A consistent copy of `LiveData` for one repaint; its arrays are never written after it is made."""

    run_id: int
    status: RunStatus
    steps: StepSeries
    epochs: tuple[dict, ...]
    kernels: KernelSnapshot | None
    feature_maps: FeatureMapSnapshot | None
    layer_statistics: tuple[LayerStatisticsSample, ...]
    evaluation: EvaluationResult | None
    samples: object | None  # the run's test split (an ImageDataset); its arrays are never written
    classes: tuple[str, ...]
    model_name: str
    dataset_name: str


@dataclass
class LiveData:
    """Lock-protected latest state of a run. Writers: trainer callbacks; reader: `view()` on the GUI timer."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    run_id: int = 0
    status: RunStatus = field(default_factory=RunStatus)
    step_index: GrowingArray = field(default_factory=GrowingArray)
    step_loss: GrowingArray = field(default_factory=GrowingArray)
    step_accuracy: GrowingArray = field(default_factory=GrowingArray)
    step_lr: GrowingArray = field(default_factory=GrowingArray)
    epochs: list = field(default_factory=list)
    kernels: KernelSnapshot | None = None
    feature_maps: FeatureMapSnapshot | None = None
    layer_statistics: list = field(default_factory=list)
    evaluation: EvaluationResult | None = None
    samples: object | None = None
    classes: tuple = ()
    model_name: str = ""
    dataset_name: str = ""
    errors: list = field(default_factory=list)  # messages the GUI has not shown yet
    snapshot_seconds: float = 0.0  # time the training thread spent on kernel / feature-map snapshots

    def reset(self, model_name: str = "", dataset_name: str = "") -> None:
        """Forget the previous run (called from the GUI thread before a new run starts)."""
        with self.lock:
            self.run_id += 1
            self.status = RunStatus()
            for series in (self.step_index, self.step_loss, self.step_accuracy, self.step_lr, self.epochs,
                           self.layer_statistics):
                series.clear()
            self.kernels = self.feature_maps = self.evaluation = self.samples = None
            self.classes = ()
            self.model_name, self.dataset_name = model_name, dataset_name
            self.snapshot_seconds = 0.0

    def update_status(self, **changes) -> None:
        with self.lock:
            for name, value in changes.items():
                setattr(self.status, name, value)

    def add_step(self, index: int, loss, accuracy, lr) -> None:
        with self.lock:
            self.step_index.append(index)
            self.step_loss.append(loss)
            self.step_accuracy.append(accuracy)
            self.step_lr.append(lr)

    def add_error(self, message: str) -> None:
        with self.lock:
            self.errors.append(message)

    def take_errors(self) -> list[str]:
        """The error messages not yet shown, emptied (GUI thread)."""
        with self.lock:
            errors, self.errors = self.errors, []
        return errors

    def view(self) -> RunView:
        with self.lock:
            steps = StepSeries(self.step_index.copy(), self.step_loss.copy(), self.step_accuracy.copy(),
                               self.step_lr.copy())
            return RunView(self.run_id, RunStatus(**vars(self.status)), steps, tuple(self.epochs),
                           self.kernels, self.feature_maps, tuple(self.layer_statistics), self.evaluation,
                           self.samples, self.classes, self.model_name, self.dataset_name)
