"""Downloads: from a local HTTP server, verified by md5, written atomically, and clear when they fail."""

from __future__ import annotations

import os
import socket

import numpy as np
import pytest

from convlab.data import CIFAR10, MNIST, DataNotFoundError, DownloadError, download
from convlab.data.download import download_file, urls_for

from .conftest import md5


@pytest.fixture
def served_mnist(fake, http_server, monkeypatch):
    """Tiny MNIST files on the local server, with MNIST's expected md5s set to theirs."""
    files = {}
    for split, n in (("train", 20), ("test", 8)):
        http_server.files.update(served := fake.mnist_bytes(split, n))
        files[split] = tuple((name, md5(body)) for name, body in served.items())
    monkeypatch.setattr(MNIST, "files", files)
    return http_server


def test_missing_files_are_downloaded_verified_and_loaded(fake, served_mnist):
    ds = MNIST("train", fake.root)
    assert len(ds) == 20 and np.array_equal(ds.labels, np.arange(20) % 10)
    assert sorted(served_mnist.requests) == ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"]
    assert sorted(p.name for p in (fake.root / "mnist").iterdir()) == sorted(served_mnist.requests)


def test_present_files_are_not_downloaded_again(fake, served_mnist):
    MNIST("test", fake.root)
    MNIST("test", fake.root, cache=False)
    assert len(served_mnist.requests) == 2


def test_checksum_mismatch_saves_nothing_and_says_so(fake, served_mnist):
    served_mnist.files["t10k-labels-idx1-ubyte.gz"] = b"not what was published"
    mismatch = r"md5 [0-9a-f]{32} does not match the published checksum"
    with pytest.raises(DataNotFoundError, match=mismatch) as e:
        MNIST("test", fake.root)
    assert "t10k-labels-idx1-ubyte.gz" in str(e.value) and str(fake.root / "mnist") in str(e.value)
    assert sorted(p.name for p in (fake.root / "mnist").iterdir()) == ["t10k-images-idx3-ubyte.gz"]


def test_interrupted_download_leaves_no_partial_file(fake, served_mnist):
    served_mnist.truncated.add("t10k-images-idx3-ubyte.gz")
    with pytest.raises(DataNotFoundError, match=r"interrupted after \d+ of \d+ bytes"):
        MNIST("test", fake.root)
    assert not (fake.root / "mnist").exists() or not list((fake.root / "mnist").iterdir())


def test_offline_and_absent_says_where_to_put_which_files(fake, monkeypatch):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("CONVLAB_DOWNLOAD_URL", f"http://127.0.0.1:{port}/")
    with pytest.raises(DataNotFoundError) as e:
        MNIST("train", fake.root)
    msg = str(e.value)
    assert "train-images-idx3-ubyte.gz" in msg and "Put the official files" in msg
    assert str(fake.root / "mnist") in msg and "The download failed" in msg
    assert not (fake.root / "mnist").exists()


def test_cifar_downloads_the_binary_archive(fake, http_server, monkeypatch):
    body = fake.tar_gz(fake.cifar_members(False, "binary"))
    http_server.files["cifar-10-binary.tar.gz"] = body
    monkeypatch.setattr(CIFAR10, "download_archive", ("cifar-10-binary.tar.gz", md5(body)))
    ds = CIFAR10("test", fake.root)
    assert len(ds) == 4 and (fake.root / "cifar-10-binary.tar.gz").read_bytes() == body
    assert http_server.requests == ["cifar-10-binary.tar.gz"]


def test_download_file_with_progress_bar_and_missing_url(tmp_path, http_server, capsys):
    http_server.files["a.bin"] = b"x" * 300_000
    out = download_file([http_server.url + "nope.bin", http_server.url + "a.bin"], tmp_path / "a.bin",
                        md5(b"x" * 300_000), progress=True)
    assert out.read_bytes() == b"x" * 300_000 and "a.bin" in capsys.readouterr().err
    with pytest.raises(DownloadError, match="nope.bin: Not Found"):
        download_file([http_server.url + "nope.bin"], tmp_path / "b.bin", "0" * 32)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.bin"]


def test_download_url_override_replaces_official_mirrors(monkeypatch):
    official = ["https://example.org/base/"]
    assert urls_for("f.gz", official) == ["https://example.org/base/f.gz"]
    monkeypatch.setattr(download, "DOWNLOAD_URL", "http://127.0.0.1:9/x")
    assert urls_for("f.gz", official) == ["http://127.0.0.1:9/x/f.gz"]
    monkeypatch.setenv("CONVLAB_DOWNLOAD_URL", "http://127.0.0.1:8/")
    assert urls_for("f.gz", official) == ["http://127.0.0.1:8/f.gz"]


def test_nothing_is_downloaded_into_a_read_only_root(fake, served_mnist):
    os.chmod(fake.root, 0o555)
    try:
        with pytest.raises(DataNotFoundError, match="is read-only, so nothing can be downloaded into it"):
            MNIST("test", fake.root)
    finally:
        os.chmod(fake.root, 0o755)
    assert served_mnist.requests == [] and not (fake.root / "mnist").exists()
