"""The batch loader: seeded shuffling, uint8 data kept on the device, and batches ready for a model.

Each batch is `(x, y)`: x float32 (B, C, H, W) on the device, scaled to [0, 1], augmented, then
normalised with the data set's mean and std; y int64 (B,). The shuffle order of an epoch and the
augmentation draws of each batch are derived from (seed, epoch, batch), so `state_dict()` (seed,
epoch, batch position) is all the RNG state a resumed run needs to see the very same batches.
"""

from __future__ import annotations

import math

import numpy as np

from convlab import backend
from convlab.data.augment import Normalize, Transform, contains

_SHUFFLE, _AUGMENT = 0, 1  # stream tags in the seed sequences
_DEVICE_FRACTION = 0.5  # keep the data set on the GPU when it needs at most this share of free memory


def _namespace(device: str | None):
    if device is None:
        return backend.xp()
    if device == "cpu":
        return np
    if device in ("gpu", "cuda"):
        if not backend.gpu_available():
            raise backend.DeviceError("DataLoader: device 'gpu' was requested but no CUDA GPU is usable "
                                      "here; use device='cpu' or None")
        import cupy

        return cupy
    raise ValueError(f"DataLoader: device must be None, 'cpu' or 'gpu', got {device!r}")


def _fits_on_device(xp, nbytes: int) -> bool:
    if xp is np:
        return True
    free, _total = xp.cuda.runtime.memGetInfo()
    return nbytes <= _DEVICE_FRACTION * free


class DataLoader:
    """Iterate over `dataset` in batches of `batch_size`, as (x, y) arrays on `device`.

    dataset: an `ImageDataset` (uint8 `images` (N, C, H, W), `labels`, `mean`, `std`).
    shuffle: a new seeded order every epoch.  drop_last: skip the last, smaller batch.
    augment: a `Transform` applied to x in [0, 1], before normalisation.
    normalize: apply (x - dataset.mean) / dataset.std last (then `augment` must not normalise too).
    device: None (the backend's current device), "cpu" or "gpu".

    Iterating runs the current epoch from the current batch position and then moves to the next
    epoch, so a loop that stopped early picks up where it left off; `set_epoch(e)` restarts at the
    beginning of epoch e.
    """

    def __init__(self, dataset, batch_size: int, shuffle: bool = True, drop_last: bool = False,
                 augment: Transform | None = None, seed: int = 0, device: str | None = None,
                 normalize: bool = True):
        if int(batch_size) < 1:
            raise ValueError(f"DataLoader: batch_size must be at least 1, got {batch_size}")
        if augment is not None and not isinstance(augment, Transform):
            raise TypeError(f"DataLoader: augment must be a Transform (e.g. Compose([...])), got "
                            f"{type(augment).__name__}")
        if normalize and contains(augment, Normalize):
            raise ValueError("DataLoader: augment already contains Normalize and normalize=True would "
                             "normalise twice; drop one of them (normalize=False keeps yours)")
        self.dataset = dataset
        self.batch_size = int(batch_size)
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.augment = augment
        self.seed = int(seed)
        self.normalize = Normalize(dataset.mean, dataset.std) if normalize else None
        self.xp = _namespace(device)
        images = dataset.images
        self.on_device = _fits_on_device(self.xp, images.nbytes)
        self._images = self.xp.asarray(images) if self.on_device else images
        self._labels = self.xp.asarray(dataset.labels, dtype=self.xp.int64)
        self._epoch = 0
        self._batch = 0
        if len(self) == 0:
            hint = " with drop_last=True; use a smaller batch_size or drop_last=False" if drop_last else ""
            raise ValueError(f"DataLoader: {len(dataset)} samples make no batch of {self.batch_size}{hint}")

    def __len__(self) -> int:
        n = len(self.dataset)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    @property
    def epoch(self) -> int:
        """The epoch the next batch belongs to."""
        return self._epoch

    def set_epoch(self, epoch: int) -> None:
        """Start the next iteration at the beginning of `epoch`."""
        self._epoch, self._batch = int(epoch), 0

    def order(self, epoch: int | None = None) -> np.ndarray:
        """The sample order of `epoch` (default: the current one), a host int64 array."""
        n = len(self.dataset)
        if not self.shuffle:
            return np.arange(n)
        epoch = self._epoch if epoch is None else epoch
        return np.random.default_rng([self.seed, _SHUFFLE, epoch]).permutation(n)

    def __iter__(self):
        if self._batch >= len(self):
            self.set_epoch(self._epoch + 1)
        order = self.order()
        if self.on_device:
            order = self.xp.asarray(order)
        while self._batch < len(self):
            b = self._batch
            idx = order[b * self.batch_size:(b + 1) * self.batch_size]
            self._batch += 1
            yield self._make_batch(idx, b)
        self.set_epoch(self._epoch + 1)

    def _make_batch(self, idx, b: int):
        xp = self.xp
        if self.on_device:
            raw = xp.take(self._images, idx, axis=0)
            y = xp.take(self._labels, idx)
        else:
            raw = xp.asarray(np.take(self._images, idx, axis=0))
            y = self._labels[xp.asarray(idx)]
        x = raw.astype(xp.float32)
        x *= np.float32(1 / 255)  # (B, C, H, W) in [0, 1]
        if self.augment is not None:
            x = self.augment(x, np.random.default_rng([self.seed, _AUGMENT, self._epoch, b]))
        if self.normalize is not None:
            x = self.normalize(x)
        return x, y

    def state_dict(self) -> dict:
        """Where the loader is: seed, epoch and batch position (they fix every later order and draw)."""
        return {"seed": self.seed, "epoch": self._epoch, "batch": self._batch, "batch_size": self.batch_size,
                "num_samples": len(self.dataset), "shuffle": self.shuffle, "drop_last": self.drop_last}

    def load_state_dict(self, state: dict) -> None:
        """Resume from `state_dict()`: the next batch is the one that would have come next."""
        for key in ("batch_size", "num_samples", "drop_last", "shuffle"):
            mine = self.state_dict()[key]
            if key in state and state[key] != mine:
                raise ValueError(f"DataLoader: the saved state has {key}={state[key]!r} but this loader has "
                                 f"{mine!r}, so its batches would differ; build the loader as it was saved")
        self.seed = int(state["seed"])
        self._epoch = int(state["epoch"])
        self._batch = int(state["batch"])
