"""The HDF5 cache: written once, read after that, rebuilt when sources change, never trusted when corrupt."""

from __future__ import annotations

import json
import os
import warnings

import h5py
import numpy as np
import pytest

from convlab.data import CIFAR10, MNIST, CacheWarning
from convlab.data import datasets as datasets_module


@pytest.fixture
def count_parses(monkeypatch):
    """Counts calls to the IDX parser, i.e. loads that did not come from the cache."""
    calls = []
    real = datasets_module.parse_idx

    def counting(*args, **kwargs):
        calls.append(args[1])
        return real(*args, **kwargs)

    monkeypatch.setattr(datasets_module, "parse_idx", counting)
    return calls


def test_first_load_writes_one_cache_file_with_arrays_classes_and_source_checksums(fake):
    d = fake.write_mnist()
    ds = MNIST("train", fake.root, download=False)
    path = fake.root / "mnist-train.h5"
    with h5py.File(path, "r") as f:
        assert np.array_equal(f["images"][()], ds.images) and np.array_equal(f["labels"][()], ds.labels)
        assert json.loads(f.attrs["classes"]) == list("0123456789")
        sources = json.loads(f.attrs["sources"])
    assert [s["path"] for s in sources] == [str((d / "train-images-idx3-ubyte.gz").resolve()),
                                            str((d / "train-labels-idx1-ubyte.gz").resolve())]
    assert all(len(s["md5"]) == 32 and s["size"] > 0 for s in sources)
    assert not list(fake.root.glob("*.tmp"))


def test_second_load_reads_the_cache_not_the_sources(fake, count_parses):
    fake.write_mnist()
    first = MNIST("train", fake.root, download=False)
    assert len(count_parses) == 2
    second = MNIST("train", fake.root, download=False)
    assert len(count_parses) == 2
    assert np.array_equal(first.images, second.images) and np.array_equal(first.labels, second.labels)


def test_changed_source_rebuilds_the_cache(fake, count_parses):
    d = fake.write_mnist()
    MNIST("test", fake.root, download=False)
    labels = np.full(8, 3, np.uint8)
    (d / "t10k-labels-idx1-ubyte.gz").write_bytes(fake.idx(labels))  # now raw IDX of the same length
    ds = MNIST("test", fake.root, download=False)
    assert len(count_parses) == 4 and ds.labels.tolist() == [3] * 8
    assert MNIST("test", fake.root, download=False).labels.tolist() == [3] * 8 and len(count_parses) == 4


def test_same_size_different_content_is_caught_by_md5(fake, count_parses):
    d = fake.write_mnist(gz=False)
    MNIST("test", fake.root, download=False)
    path = d / "t10k-labels-idx1-ubyte"
    raw = bytearray(path.read_bytes())
    raw[-1] = 0 if raw[-1] else 1
    stat = path.stat()
    path.write_bytes(bytes(raw))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    ds = MNIST("test", fake.root, download=False)
    assert len(count_parses) == 4 and ds.labels[-1] == raw[-1]


def test_touching_a_source_without_changing_it_keeps_the_cache(fake, count_parses):
    d = fake.write_mnist()
    MNIST("test", fake.root, download=False)
    os.utime(d / "t10k-images-idx3-ubyte.gz", ns=(0, 10**18))
    MNIST("test", fake.root, download=False)
    assert len(count_parses) == 2


def test_switching_to_another_layout_rebuilds(fake):
    fake.write_cifar(kind="python", archive=True)
    assert CIFAR10("test", fake.root, download=False).labels[0] == 0
    d = fake.write_cifar(kind="binary")
    raw = bytearray((d / "test_batch.bin").read_bytes())
    raw[0] = 6
    (d / "test_batch.bin").write_bytes(bytes(raw))
    assert CIFAR10("test", fake.root, download=False).labels[0] == 6


def test_corrupt_cache_warns_and_is_rebuilt(fake, count_parses):
    fake.write_mnist()
    MNIST("train", fake.root, download=False)
    path = fake.root / "mnist-train.h5"
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.warns(CacheWarning, match=r"mnist-train\.h5.*corrupt.*rewriting"):
        ds = MNIST("train", fake.root, download=False)
    assert len(count_parses) == 4 and len(ds) == 20
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        MNIST("train", fake.root, download=False)
    assert len(count_parses) == 4


def test_cache_with_mangled_arrays_is_not_trusted(fake):
    fake.write_mnist()
    MNIST("test", fake.root, download=False)
    with h5py.File(fake.root / "mnist-test.h5", "r+") as f:
        del f["labels"]
        f["labels"] = np.zeros(3, np.int64)
    with pytest.warns(CacheWarning, match="different lengths"):
        assert len(MNIST("test", fake.root, download=False).labels) == 8


def test_read_only_root_caches_in_convlab_cache(fake, tmp_path, monkeypatch):
    fake.write_mnist()
    cache = tmp_path / "elsewhere"
    monkeypatch.setenv("CONVLAB_CACHE", str(cache))
    os.chmod(fake.root, 0o555)
    try:
        MNIST("test", fake.root, download=False)
        assert not (fake.root / "mnist-test.h5").exists()
        assert (cache / "mnist-test.h5").is_file()
    finally:
        os.chmod(fake.root, 0o755)


def test_cache_false_writes_nothing(fake):
    fake.write_mnist()
    MNIST("test", fake.root, download=False, cache=False)
    assert not list(fake.root.rglob("*.h5"))


def test_cache_can_be_sent_to_a_folder(fake, tmp_path):
    fake.write_mnist()
    MNIST("test", fake.root, download=False, cache=tmp_path / "mine")
    assert (tmp_path / "mine" / "mnist-test.h5").is_file() and not (fake.root / "mnist-test.h5").exists()


def test_a_failed_cache_write_leaves_no_temporary_file(fake, monkeypatch):
    fake.write_mnist()

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(h5py.File, "create_dataset", broken, raising=False)
    monkeypatch.setattr(h5py.Group, "create_dataset", broken)
    with pytest.warns(CacheWarning, match=r"could not write the cache for mnist-test: writing .*disk full"):
        ds = MNIST("test", fake.root, download=False, cache=fake.root / "c")
    assert len(ds) == 8 and not list((fake.root / "c").iterdir())
