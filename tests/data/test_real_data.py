"""The real data sets (from $CONVLAB_DATA) load with the official sizes, labels and bytes.

Run with CONVLAB_DATA pointing at a folder with mnist/ and cifar-10-batches-bin/ (as in
shared/datasets); Fashion-MNIST is checked where Debian's dataset-fashion-mnist is installed.
Parsed data is cached in a temporary folder, never in the data root.
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
import pytest

from convlab import data
from convlab.data import CIFAR10, MNIST, DataLoader, FashionMNIST
from convlab.data import datasets as datasets_module

pytestmark = pytest.mark.data

MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


@pytest.fixture(scope="module")
def root() -> Path:
    if not os.environ.get("CONVLAB_DATA"):
        pytest.skip("CONVLAB_DATA is not set; point it at a folder with the real data sets "
                    "(e.g. shared/datasets)")
    return Path(os.environ["CONVLAB_DATA"])


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("real-cache")


def _load(cls, split, root, cache, folder):
    if not (root / folder).is_dir():
        pytest.skip(f"{root / folder} is missing")
    return cls(split, root, download=False, cache=cache)


@pytest.fixture(scope="module")
def mnist(root, cache):
    return {s: _load(MNIST, s, root, cache, "mnist") for s in ("train", "test")}


@pytest.fixture(scope="module")
def cifar10(root, cache):
    return {s: _load(CIFAR10, s, root, cache, "cifar-10-batches-bin") for s in ("train", "test")}


def _channel_stats(images: np.ndarray):
    """Per-channel mean and std of images scaled to [0, 1], from byte histograms."""
    values = np.arange(256) / 255
    out = []
    for c in range(images.shape[1]):
        h = np.bincount(images[:, c].ravel(), minlength=256).astype(np.float64)
        m = (h * values).sum() / h.sum()
        out.append((m, np.sqrt((h * (values - m) ** 2).sum() / h.sum())))
    return out


def test_mnist_has_the_official_sizes_and_first_labels(mnist):
    train, test = mnist["train"], mnist["test"]
    assert train.images.shape == (60_000, 1, 28, 28) and test.images.shape == (10_000, 1, 28, 28)
    assert train.images.dtype == np.uint8 and train.labels.dtype == np.int64
    assert train.labels[:5].tolist() == [5, 0, 4, 1, 9] and test.labels[:5].tolist() == [7, 2, 1, 0, 4]


def test_mnist_per_class_counts_are_the_official_ones(mnist):
    assert np.bincount(mnist["train"].labels).tolist() == MNIST_TRAIN_COUNTS
    assert np.bincount(mnist["test"].labels).tolist() == MNIST_TEST_COUNTS


def test_mnist_images_are_the_bytes_of_the_idx_file(root, mnist):
    with gzip.open(root / "mnist" / "t10k-images-idx3-ubyte.gz") as f:
        raw = f.read(16 + 3 * 784)
    assert np.array_equal(mnist["test"].images[:3].reshape(-1), np.frombuffer(raw[16:], np.uint8))
    with gzip.open(root / "mnist" / "train-images-idx3-ubyte.gz") as f:
        f.seek(16 + 59_999 * 784)
        last = np.frombuffer(f.read(784), np.uint8)
    assert np.array_equal(mnist["train"].images[-1].reshape(-1), last)


def test_mnist_mean_and_std_constants_match_the_training_images(mnist):
    (m, s), = _channel_stats(mnist["train"].images)
    assert abs(m - mnist["train"].mean[0]) < 5e-4 and abs(s - mnist["train"].std[0]) < 5e-4


def test_mnist_second_load_comes_from_the_cache(root, cache, mnist, monkeypatch):
    monkeypatch.setattr(datasets_module, "parse_idx", lambda *a: pytest.fail("parsed again, cache unused"))
    again = MNIST("test", root, download=False, cache=cache)
    assert np.array_equal(again.images, mnist["test"].images)
    assert (cache / "mnist-test.h5").is_file()


def test_cifar10_has_the_official_sizes_and_class_balance(cifar10):
    train, test = cifar10["train"], cifar10["test"]
    assert train.images.shape == (50_000, 3, 32, 32) and test.images.shape == (10_000, 3, 32, 32)
    assert np.bincount(train.labels).tolist() == [5000] * 10
    assert np.bincount(test.labels).tolist() == [1000] * 10
    assert train.labels[:5].tolist() == [6, 9, 9, 4, 1] and test.labels[:5].tolist() == [3, 8, 8, 0, 6]


RECORDS = [("data_batch_1", "train", 0), ("data_batch_5", "train", 40_000), ("test_batch", "test", 0)]


@pytest.mark.parametrize("batch, split, first", RECORDS)
def test_cifar10_images_are_the_bytes_of_the_records(root, cifar10, batch, split, first):
    with gzip.open(root / "cifar-10-batches-bin" / f"{batch}.bin.gz") as f:
        raw = np.frombuffer(f.read(3 * 3073), np.uint8).reshape(3, 3073)
    ds = cifar10[split]
    assert ds.labels[first:first + 3].tolist() == raw[:, 0].tolist()
    assert np.array_equal(ds.images[first:first + 3], raw[:, 1:].reshape(3, 3, 32, 32))


def test_cifar10_mean_and_std_constants_match_the_training_images(cifar10):
    ds = cifar10["train"]
    for (m, s), mean, std in zip(_channel_stats(ds.images), ds.mean, ds.std):
        assert abs(m - mean) < 5e-4 and abs(s - std) < 5e-4


def test_cifar10_loader_serves_augmented_normalised_batches(cifar10):
    aug = data.Compose([data.RandomCrop(32, padding=4), data.RandomHorizontalFlip()])
    loader = DataLoader(cifar10["test"], 128, augment=aug, seed=0)
    x, y = next(iter(loader))
    assert x.shape == (128, 3, 32, 32) and x.dtype == np.float32 and y.dtype == np.int64
    assert len(loader) == 79 and -2.5 < float(x.min()) and float(x.max()) < 2.5


def test_fashion_mnist_from_the_debian_package(cache):
    folder = Path(FashionMNIST.system_dirs[0])
    if not folder.is_dir():
        pytest.skip(f"{folder} is missing (apt-get install dataset-fashion-mnist)")
    test = FashionMNIST("test", Path(cache) / "no-data-here", download=False, cache=cache)
    assert test.images.shape == (10_000, 1, 28, 28) and np.bincount(test.labels).tolist() == [1000] * 10
    assert test.labels[:5].tolist() == [9, 2, 1, 1, 6]
