"""The data set classes find every official layout, parse it to NCHW uint8, and explain what is missing."""

from __future__ import annotations

import gzip

import numpy as np
import pytest

from convlab import data
from convlab.data import CIFAR10, CIFAR100, MNIST, DataError, DataNotFoundError, FashionMNIST, ImageDataset
from convlab.data.datasets import _REGISTRY

from .conftest import FakeData

# --- MNIST-style -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("gz", [True, False], ids=["gzipped", "raw"])
def test_mnist_reads_idx_files_gzipped_or_raw(fake, gz):
    fake.write_mnist(gz=gz)
    train, test = MNIST("train", fake.root, download=False), MNIST("test", fake.root, download=False)
    images, labels = fake.mnist_split(20)
    assert train.images.shape == (20, 1, 28, 28) and train.images.dtype == np.uint8
    assert np.array_equal(train.images[:, 0], images) and np.array_equal(train.labels, labels)
    assert train.labels.dtype == np.int64 and len(test) == 8 and test.split == "test"
    assert train.classes == tuple("0123456789") and train.mean == (0.1307,) and train.std == (0.3081,)


def test_fashion_mnist_reads_its_own_folder(fake):
    fake.write_mnist("fashion-mnist")
    ds = FashionMNIST("test", fake.root, download=False)
    assert len(ds) == 8 and ds.classes[0] == "T-shirt/top" and ds.classes[9] == "Ankle boot"


def test_fashion_mnist_falls_back_to_the_debian_folder(fake, tmp_path, monkeypatch):
    system = FakeData(tmp_path / "usr-share").write_mnist("fashion-mnist", n_train=12)
    monkeypatch.setattr(FashionMNIST, "system_dirs", (str(system),))
    ds = FashionMNIST("train", fake.root, download=False)
    assert len(ds) == 12


def test_data_root_comes_from_convlab_data_when_root_is_not_given(fake, monkeypatch):
    fake.write_mnist()
    monkeypatch.setenv("CONVLAB_DATA", str(fake.root))
    assert len(MNIST("train", download=False)) == 20


def test_images_and_labels_of_different_lengths_are_reported(fake):
    d = fake.write_mnist()
    (d / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(FakeData.idx(np.zeros(19, np.uint8))))
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte\.gz holds 20 images but .* 19 labels"):
        MNIST("train", fake.root, download=False)


def test_mnist_label_out_of_range_names_the_labels_file(fake):
    d = fake.write_mnist()
    labels = np.zeros(20, np.uint8)
    labels[3] = 10
    (d / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(FakeData.idx(labels)))
    with pytest.raises(DataError, match=r"train-labels-idx1-ubyte\.gz: record 3 has label 10"):
        MNIST("train", fake.root, download=False)


def test_a_truncated_mnist_file_is_a_data_error_naming_it(fake):
    d = fake.write_mnist()
    path = d / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-30])
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte\.gz"):
        MNIST("test", fake.root, download=False)


def test_missing_mnist_says_which_files_to_put_where(fake):
    with pytest.raises(DataNotFoundError) as err:
        MNIST("train", fake.root, download=False)
    msg = str(err.value)
    assert "train-images-idx3-ubyte.gz" in msg and "train-labels-idx1-ubyte.gz" in msg
    assert str(fake.root / "mnist") in msg and "ossci-datasets.s3.amazonaws.com/mnist/" in msg
    assert "CONVLAB_DATA" in msg and "download=False" in msg


def test_an_empty_data_set_folder_is_called_empty(fake):
    (fake.root / "mnist").mkdir()
    with pytest.raises(DataNotFoundError, match=r"mnist \(the folder exists but is empty\)"):
        MNIST("test", fake.root, download=False)


def test_unknown_split_is_rejected():
    with pytest.raises(ValueError, match="split must be one of .*'train', 'test'.*split_validation"):
        MNIST("val")


# --- CIFAR -----------------------------------------------------------------------------------------------

LAYOUTS = [
    dict(kind="binary"), dict(kind="binary", gz=True), dict(kind="python"),
    dict(kind="binary", archive=True), dict(kind="python", archive=True),
]
LAYOUT_IDS = ["bin", "bin.gz", "python", "binary-archive", "python-archive"]


@pytest.mark.parametrize("layout", LAYOUTS, ids=LAYOUT_IDS)
def test_cifar10_reads_every_official_layout(fake, layout):
    fake.write_cifar(**layout)
    train, test = CIFAR10("train", fake.root, download=False), CIFAR10("test", fake.root, download=False)
    assert train.images.shape == (20, 3, 32, 32) and test.images.shape == (4, 3, 32, 32)
    expected = np.concatenate([fake.cifar_batch(4, 10 * i, 10, False)[0] for i in range(5)])
    assert np.array_equal(train.images, expected)
    assert train.labels.tolist() == [(j + 10 * i) % 10 for i in range(5) for j in range(4)]
    assert np.array_equal(test.labels, fake.cifar_batch(4, 50, 10, False)[1])
    assert train.coarse_labels is None and train.classes[0] == "airplane" and len(train.mean) == 3


@pytest.mark.parametrize("layout", LAYOUTS, ids=LAYOUT_IDS)
def test_cifar100_reads_fine_and_coarse_labels_from_every_layout(fake, layout):
    fake.write_cifar(cifar100=True, **layout)
    train = CIFAR100("train", fake.root, download=False)
    images, fine, coarse = fake.cifar_batch(4, 0, 100, True)
    assert np.array_equal(train.images, images) and np.array_equal(train.labels, fine)
    assert np.array_equal(train.coarse_labels, coarse)
    assert len(train.classes) == 100 and len(train.coarse_classes) == 20 and train.classes[-1] == "worm"


def test_cifar100_record_is_coarse_then_fine(fake):
    """The binary version stores the coarse label first; labels must be the second byte."""
    members = fake.cifar_members(True, "binary", 4)
    raw = bytearray(members["cifar-100-binary/train.bin"])
    raw[0], raw[1] = 19, 77  # record 0: coarse 19, fine 77
    (fake.root / "cifar-100-binary").mkdir(parents=True)
    (fake.root / "cifar-100-binary/train.bin").write_bytes(bytes(raw))
    ds = CIFAR100("train", fake.root, download=False)
    assert ds.labels[0] == 77 and ds.coarse_labels[0] == 19


def test_an_extracted_folder_is_preferred_to_an_archive(fake):
    fake.write_cifar(kind="python", archive=True)
    d = fake.write_cifar(kind="binary")
    raw = bytearray((d / "test_batch.bin").read_bytes())
    raw[0] = 9
    (d / "test_batch.bin").write_bytes(bytes(raw))
    assert CIFAR10("test", fake.root, download=False).labels[0] == 9


def test_cifar_batch_with_wrong_record_size_is_named(fake):
    d = fake.write_cifar()
    (d / "data_batch_3.bin").write_bytes((d / "data_batch_3.bin").read_bytes()[:-1])
    with pytest.raises(DataError, match=r"data_batch_3\.bin: .*not a whole number of 3073-byte records"):
        CIFAR10("train", fake.root, download=False)


def test_cifar_label_out_of_range_is_named(fake):
    d = fake.write_cifar()
    raw = bytearray((d / "test_batch.bin").read_bytes())
    raw[3073] = 10
    (d / "test_batch.bin").write_bytes(bytes(raw))
    with pytest.raises(DataError, match=r"test_batch\.bin: record 1 has label 10"):
        CIFAR10("test", fake.root, download=False)


def test_archive_missing_a_batch_is_named(fake):
    members = fake.cifar_members(False, "binary")
    del members["cifar-10-batches-bin/data_batch_4.bin"]
    (fake.root / "cifar-10-binary.tar.gz").write_bytes(FakeData.tar_gz(members))
    with pytest.raises(DataError, match=r"cifar-10-binary\.tar\.gz: the archive lacks .*data_batch_4\.bin"):
        CIFAR10("train", fake.root, download=False)


def test_a_partly_extracted_cifar_folder_lists_the_missing_batches(fake):
    d = fake.write_cifar()
    (d / "data_batch_2.bin").unlink()
    with pytest.raises(DataNotFoundError, match=r"cifar-10-batches-bin/.*lacks data_batch_2\.bin") as err:
        CIFAR10("train", fake.root, download=False)
    assert "cifar-10-binary.tar.gz" in str(err.value) and "www.cs.toronto.edu/~kriz/" in str(err.value)


def test_an_empty_cifar_folder_is_not_mistaken_for_data(fake):
    (fake.root / "cifar-10-batches-bin").mkdir(parents=True)
    with pytest.raises(DataNotFoundError, match="lacks test_batch.bin"):
        CIFAR10("test", fake.root, download=False)


# --- registry, subsets, validation ------------------------------------------------------------------------


def test_registry_lists_the_four_data_sets():
    assert data.names() == ["mnist", "fashion-mnist", "cifar10", "cifar100"]
    assert set(_REGISTRY.values()) == {MNIST, FashionMNIST, CIFAR10, CIFAR100}


@pytest.mark.parametrize("name", ["fashion-mnist", "fashion_mnist", "Fashion-MNIST"])
def test_get_accepts_names_and_aliases(fake, name):
    fake.write_mnist("fashion-mnist")
    ds = data.get(name, "test", fake.root, download=False)
    assert isinstance(ds, FashionMNIST) and len(ds) == 8


def test_get_rejects_unknown_names():
    with pytest.raises(ValueError, match="unknown data set 'imagenet'.*'cifar10'"):
        data.get("imagenet")


def small_dataset(n=50) -> ImageDataset:
    labels = np.arange(n) % 10
    return ImageDataset(FakeData.images(n, (1, 4, 4), labels=labels), labels, list("0123456789"),
                        [0.5], [0.25], name="toy")


def test_subset_without_seed_is_the_first_n():
    sub = small_dataset().subset(7)
    assert len(sub) == 7 and sub.indices.tolist() == list(range(7)) and sub.labels.tolist() == list(range(7))


def test_subset_with_seed_is_random_reproducible_and_matches_its_samples():
    ds = small_dataset()
    a, b, c = ds.subset(10, seed=1), ds.subset(10, seed=1), ds.subset(10, seed=2)
    assert a.indices.tolist() == b.indices.tolist() != c.indices.tolist()
    assert np.array_equal(a.images, ds.images[a.indices]) and np.array_equal(a.labels, ds.labels[a.indices])
    assert a.mean == ds.mean and a.classes == ds.classes


def test_subset_larger_than_the_data_set_is_rejected():
    with pytest.raises(ValueError, match="subset size must be 1..50, got 51"):
        small_dataset().subset(51)


@pytest.mark.parametrize("val, n_val", [(0.2, 10), (13, 13)])
def test_split_validation_is_disjoint_complete_and_seeded(val, n_val):
    ds = small_dataset()
    train, valid = ds.split_validation(val, seed=3)
    assert len(valid) == n_val and len(train) == 50 - n_val and valid.split == "val"
    assert sorted(train.indices.tolist() + valid.indices.tolist()) == list(range(50))
    again, _ = ds.split_validation(val, seed=3)
    other, _ = ds.split_validation(val, seed=4)
    assert again.indices.tolist() == train.indices.tolist() != other.indices.tolist()


def test_subset_of_a_subset_keeps_indices_into_the_original():
    ds = small_dataset()
    train, _ = ds.split_validation(0.5, seed=0)
    sub = train.subset(5, seed=0)
    assert np.array_equal(sub.labels, ds.labels[sub.indices])


@pytest.mark.parametrize("val", [0.0, 1.0, 0, 50])
def test_split_validation_rejects_empty_parts(val):
    with pytest.raises(ValueError, match="validation size"):
        small_dataset().split_validation(val)


def test_cifar100_subset_keeps_coarse_labels(fake):
    fake.write_cifar(cifar100=True)
    ds = CIFAR100("train", fake.root, download=False)
    sub = ds.subset(2, seed=0)
    assert np.array_equal(sub.coarse_labels, ds.coarse_labels[sub.indices])


def test_getitem_returns_image_and_label():
    ds = small_dataset()
    image, label = ds[13]
    assert image.shape == (1, 4, 4) and label == 3
