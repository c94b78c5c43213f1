"""Tiny, learnable data sets for training tests: an in-memory ImageDataset and the same images
written as MNIST IDX files (so the command line can load them with --data)."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np

from convlab.data import ImageDataset


def digit_images(n, seed, size=28):
    """`n` images of 10 classes that a small network separates quickly: each class is a bright bar
    at its own position and angle, with noise."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n)
    yy, xx = np.mgrid[0:size, 0:size]
    images = rng.integers(0, 60, (n, size, size)).astype(np.float64)
    for k in range(10):
        angle = np.pi * k / 10
        offset = (k % 3 - 1) * 4
        distance = np.abs((xx - size / 2) * np.sin(angle) - (yy - size / 2) * np.cos(angle) - offset)
        images[labels == k] += 180 * (distance < 2.5)
    return np.clip(images, 0, 255).astype(np.uint8)[:, None], labels.astype(np.int64)


def tiny_mnist(n_train=256, n_test=64, seed=0):
    """(train, test) ImageDatasets shaped like MNIST (1×28×28, 10 classes)."""
    classes = tuple(str(d) for d in range(10))
    x, y = digit_images(n_train, seed)
    xt, yt = digit_images(n_test, seed + 1)
    return (ImageDataset(x, y, classes, (0.2,), (0.3,), name="mnist", split="train"),
            ImageDataset(xt, yt, classes, (0.2,), (0.3,), name="mnist", split="test"))


def _idx(array, ndim):
    header = struct.pack(">I", 0x0800 + ndim) + b"".join(struct.pack(">I", d) for d in array.shape)
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def write_idx_mnist(root, n_train=256, n_test=64, seed=0) -> Path:
    """Write the tiny data set as gzipped IDX files in `root`/mnist/ (the official file names)."""
    folder = Path(root) / "mnist"
    folder.mkdir(parents=True, exist_ok=True)
    train, test = tiny_mnist(n_train, n_test, seed)
    for prefix, ds in (("train", train), ("t10k", test)):
        (folder / f"{prefix}-images-idx3-ubyte.gz").write_bytes(gzip.compress(_idx(ds.images[:, 0], 3)))
        (folder / f"{prefix}-labels-idx1-ubyte.gz").write_bytes(gzip.compress(_idx(ds.labels, 1)))
    return Path(root)
