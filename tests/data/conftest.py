"""Fixtures for the data tests: small official-format files written on the fly, and a local HTTP server.

Nothing here touches the network or the real data sets; every test gets its own data root and
cache dir, and the download base URL is cleared so a test can only reach the server it starts.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import pickle
import tarfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from convlab.data import download


@pytest.fixture(autouse=True)
def isolated_locations(tmp_path, monkeypatch):
    """A private cache dir, no CONVLAB_DATA and no download override, unless a test sets them."""
    monkeypatch.setenv("CONVLAB_CACHE", str(tmp_path / "user-cache"))
    monkeypatch.delenv("CONVLAB_DOWNLOAD_URL", raising=False)
    monkeypatch.setattr(download, "DOWNLOAD_URL", None)
    monkeypatch.setattr(download, "TIMEOUT_S", 5)


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


class FakeData:
    """Writes tiny data sets in the official formats, with known pixels and labels.

    Image i of a split has every pixel equal to (i * 7 + offset) % 256 except pixel (0, 0, 0), which
    holds its label, so tests can tell samples apart after shuffles and subsets.
    """

    def __init__(self, root: Path):
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    @staticmethod
    def images(n: int, shape: tuple[int, ...], offset: int = 0, labels=None) -> np.ndarray:
        x = ((np.arange(n) * 7 + offset) % 256).astype(np.uint8)[:, None, None, None] * np.ones(
            (1, *shape), np.uint8)
        if labels is not None:
            x[:, 0, 0, 0] = labels
        return x

    # --- IDX ---

    @staticmethod
    def idx(array: np.ndarray) -> bytes:
        header = bytes([0, 0, 8, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
        return header + np.ascontiguousarray(array, np.uint8).tobytes()

    def mnist_split(self, n: int, offset: int = 0, classes: int = 10):
        labels = (np.arange(n) % classes).astype(np.uint8)
        return self.images(n, (28, 28), offset, labels)[:, 0], labels

    def mnist_bytes(self, split: str = "train", n: int = 20) -> dict[str, bytes]:
        """{file name: gzipped IDX bytes} for one split."""
        images, labels = self.mnist_split(n, offset=0 if split == "train" else 100)
        prefix = "train" if split == "train" else "t10k"
        return {f"{prefix}-images-idx3-ubyte.gz": gzip.compress(self.idx(images)),
                f"{prefix}-labels-idx1-ubyte.gz": gzip.compress(self.idx(labels))}

    def write_mnist(self, folder: str = "mnist", gz: bool = True, n_train: int = 20, n_test: int = 8) -> Path:
        d = self.root / folder
        d.mkdir(parents=True, exist_ok=True)
        for split, n in (("train", n_train), ("test", n_test)):
            for name, data in self.mnist_bytes(split, n).items():
                if gz:
                    (d / name).write_bytes(data)
                else:
                    (d / name.removesuffix(".gz")).write_bytes(gzip.decompress(data))
        return d

    # --- CIFAR ---

    def cifar_batch(self, n: int, offset: int, classes: int, coarse: bool):
        fine = ((np.arange(n) + offset) % classes).astype(np.uint8)
        images = self.images(n, (3, 32, 32), offset, fine)
        return images, fine, (fine // 5).astype(np.uint8) if coarse else None

    def cifar_members(self, cifar100: bool, kind: str, n: int = 4) -> dict[str, bytes]:
        """{path inside the archive: bytes} for the official layout of CIFAR-10 or CIFAR-100."""
        classes = 100 if cifar100 else 10
        if cifar100:
            folder = "cifar-100-binary" if kind == "binary" else "cifar-100-python"
            names = {"train": "train", "test": "test"}
        else:
            folder = "cifar-10-batches-bin" if kind == "binary" else "cifar-10-batches-py"
            names = {f"data_batch_{i}": f"data_batch_{i}" for i in range(1, 6)} | {"test": "test_batch"}
        out = {}
        for i, name in enumerate(names.values()):
            images, fine, coarse = self.cifar_batch(n, offset=10 * i, classes=classes, coarse=cifar100)
            if kind == "binary":
                labels = np.stack([coarse, fine], 1) if cifar100 else fine[:, None]
                data = np.concatenate([labels, images.reshape(n, -1)], 1).tobytes()
                out[f"{folder}/{name}.bin"] = data
            else:
                batch = {b"data": images.reshape(n, -1)}
                if cifar100:
                    batch[b"fine_labels"], batch[b"coarse_labels"] = fine.tolist(), coarse.tolist()
                else:
                    batch[b"labels"] = fine.tolist()
                out[f"{folder}/{name}"] = pickle.dumps(batch, protocol=2)
        return out

    @staticmethod
    def tar_gz(members: dict[str, bytes]) -> bytes:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w:gz") as tar:
            for name, data in members.items():
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        return buf.getvalue()

    def write_cifar(self, cifar100: bool = False, kind: str = "binary", archive: bool = False,
                    gz: bool = False, n: int = 4) -> Path:
        members = self.cifar_members(cifar100, kind, n)
        if archive:
            name = ("cifar-100" if cifar100 else "cifar-10") + ("-binary" if kind == "binary" else "-python")
            path = self.root / f"{name}.tar.gz"
            path.write_bytes(self.tar_gz(members))
            return path
        for member, data in members.items():
            path = self.root / (member + ".gz" if gz else member)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(gzip.compress(data) if gz else data)
        return self.root / next(iter(members)).split("/")[0]


@pytest.fixture
def fake(tmp_path) -> FakeData:
    """A `FakeData` writing into a fresh data root, `fake.root`."""
    return FakeData(tmp_path / "data")


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        name = self.path.lstrip("/")
        self.server.requests.append(name)
        body = self.server.files.get(name)
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if name in self.server.truncated:  # promise the whole file, send half, hang up
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def http_server(monkeypatch):
    """A file server on 127.0.0.1 (ephemeral port), set as the download base URL.

    Put bytes in `server.files[name]`; names in `server.truncated` are cut off half-way.
    """
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.files, server.truncated, server.requests = {}, set(), []
    server.url = f"http://127.0.0.1:{server.server_address[1]}/"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    monkeypatch.setenv("CONVLAB_DOWNLOAD_URL", server.url)
    yield server
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)
