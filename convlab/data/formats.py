"""Parsers for the official on-disk formats: IDX (MNIST, Fashion-MNIST) and CIFAR-10/100 (binary and python).

Each parser takes the file's bytes and the name of the file they came from, checks the bytes
against the format (magic number, sizes, label range) and returns NumPy arrays, or raises a
`DataError` that names the file and says what was wrong.
"""

from __future__ import annotations

import gzip
import io
import pickle
import tarfile
import zlib
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from convlab.data.errors import DataError

CIFAR_IMAGE_BYTES = 3 * 32 * 32
_GZIP_MAGIC = b"\x1f\x8b"


# --- reading bytes: plain files, gzip, tar archives ------------------------------------------------------


def gunzip(raw: bytes, source: str) -> bytes:
    """Decompress `raw` when it starts with the gzip magic bytes; plain bytes are returned unchanged."""
    if raw[:2] != _GZIP_MAGIC:
        return raw
    try:
        return gzip.decompress(raw)
    except EOFError as e:
        raise DataError(f"{source}: the gzip stream ends early ({e}); the file is truncated, "
                        "download or copy it again") from e
    except (OSError, zlib.error) as e:
        raise DataError(f"{source}: not a valid gzip file ({e}); download or copy it again") from e


def read_file(path: Path) -> bytes:
    """The bytes of `path`, decompressed when the file is gzipped (detected by its magic bytes)."""
    try:
        raw = Path(path).read_bytes()
    except OSError as e:
        raise DataError(f"{path}: cannot be read ({e.strerror or e})") from e
    return gunzip(raw, str(path))


def read_files(paths: Iterable[Path]) -> list[bytes]:
    """`read_file` over several files, decompressing in parallel (zlib releases the GIL)."""
    paths = list(paths)
    if len(paths) == 1:
        return [read_file(paths[0])]
    with ThreadPoolExecutor(max_workers=min(len(paths), 4)) as pool:
        return list(pool.map(read_file, paths))


def read_tar_members(archive: Path, names: Iterable[str]) -> dict[str, bytes]:
    """The bytes of the named members of a (gzipped) tar archive, read in one pass over it."""
    wanted = set(names)
    found: dict[str, bytes] = {}
    try:
        with tarfile.open(archive, "r:*") as tar:
            for member in tar:
                if member.name in wanted and member.isfile():
                    found[member.name] = tar.extractfile(member).read()
                    if len(found) == len(wanted):
                        break
    except (tarfile.TarError, EOFError, OSError, zlib.error) as e:
        raise DataError(f"{archive}: not a readable tar archive ({e}); the file is truncated or corrupt, "
                        "download it again") from e
    missing = sorted(wanted - found.keys())
    if missing:
        raise DataError(f"{archive}: the archive lacks {', '.join(missing)}; is it the official archive?")
    return {name: gunzip(found[name], f"{archive}:{name}") for name in names}


# --- IDX -----------------------------------------------------------------------------------------------


def parse_idx(raw: bytes, source: str, ndim: int) -> np.ndarray:
    """An IDX array of unsigned bytes with `ndim` dimensions (images: 3, labels: 1)."""
    expected_magic = 0x0800 + ndim
    if len(raw) < 4:
        raise DataError(f"{source}: {len(raw)} bytes is too short for an IDX file (expected a 4-byte magic "
                        f"number 0x{expected_magic:08x}); the file is truncated")
    magic = int.from_bytes(raw[:4], "big")
    if magic != expected_magic:
        raise DataError(f"{source}: wrong magic number 0x{magic:08x}, expected 0x{expected_magic:08x} "
                        f"(IDX, unsigned bytes, {ndim} dimension{'s' * (ndim > 1)}); is this the right file?")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{source}: the IDX header needs {header} bytes but the file has {len(raw)}; "
                        "the file is truncated")
    dims = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    expected = int(np.prod(dims))
    got = len(raw) - header
    if got != expected:
        what = "truncated" if got < expected else "longer than its header says"
        raise DataError(f"{source}: the header promises {expected} data bytes {dims} but the file holds "
                        f"{got}; the file is {what}")
    return np.frombuffer(raw, np.uint8, offset=header).reshape(dims).copy()


def check_labels(labels: np.ndarray, num_classes: int, source: str, what: str = "label") -> np.ndarray:
    """`labels` as int64, after checking each lies in 0..num_classes-1."""
    labels = labels.astype(np.int64)
    bad = np.flatnonzero((labels < 0) | (labels >= num_classes))
    if bad.size:
        i = int(bad[0])
        raise DataError(f"{source}: record {i} has {what} {int(labels[i])}, but there are {num_classes} "
                        f"classes (0..{num_classes - 1}); the file is corrupt or belongs to another data set")
    return labels


# --- CIFAR binary ---------------------------------------------------------------------------------------


def parse_cifar_binary(raw: bytes, source: str, label_bytes: int) -> tuple[np.ndarray, np.ndarray]:
    """CIFAR binary records: `label_bytes` label bytes then 3072 pixel bytes (R, G, B planes, 32x32 each).

    Returns images (N, 3, 32, 32) uint8 and labels (N, label_bytes) uint8, unchecked.
    """
    record = label_bytes + CIFAR_IMAGE_BYTES
    if len(raw) == 0:
        raise DataError(f"{source}: the file is empty; expected {record}-byte CIFAR records")
    if len(raw) % record:
        raise DataError(f"{source}: {len(raw)} bytes is not a whole number of {record}-byte records "
                        f"({label_bytes} label byte{'s' * (label_bytes > 1)} + {CIFAR_IMAGE_BYTES} pixel "
                        "bytes); the file is truncated or not this data set's binary version")
    records = np.frombuffer(raw, np.uint8).reshape(-1, record)
    images = np.ascontiguousarray(records[:, label_bytes:]).reshape(-1, 3, 32, 32)  # (N, C, H, W)
    return images, records[:, :label_bytes].copy()


# --- CIFAR python (pickles) -----------------------------------------------------------------------------


def _numpy_reconstructors() -> dict[tuple[str, str], object]:
    try:
        from numpy._core import multiarray, numeric
    except ImportError:  # numpy < 2
        from numpy.core import multiarray, numeric
    allowed = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype}
    for package in ("numpy.core", "numpy._core"):
        allowed[(f"{package}.multiarray", "_reconstruct")] = multiarray._reconstruct
        allowed[(f"{package}.multiarray", "scalar")] = multiarray.scalar
        if hasattr(numeric, "_frombuffer"):
            allowed[(f"{package}.numeric", "_frombuffer")] = numeric._frombuffer
    import codecs

    allowed[("_codecs", "encode")] = codecs.encode
    return allowed


class _CifarUnpickler(pickle.Unpickler):
    """An unpickler that builds only what the official CIFAR pickles hold: dicts, lists, bytes, arrays."""

    allowed = _numpy_reconstructors()

    def __init__(self, file, source: str):
        super().__init__(file, encoding="bytes")
        self.source = source

    def find_class(self, module, name):
        try:
            return self.allowed[(module, name)]
        except KeyError:
            raise DataError(f"{self.source}: the pickle asks for {module}.{name}, which an official CIFAR "
                            "file never does; refusing to load it") from None


def parse_cifar_pickle(raw: bytes, source: str, label_keys: tuple[str, ...]) -> tuple[np.ndarray, ...]:
    """A CIFAR python batch: images (N, 3, 32, 32) uint8 and one int array per key in `label_keys`."""
    try:
        batch = _CifarUnpickler(io.BytesIO(raw), source).load()
    except DataError:
        raise
    except Exception as e:
        raise DataError(f"{source}: not a readable CIFAR python batch ({type(e).__name__}: {e}); "
                        "the file is truncated or corrupt") from e
    if not isinstance(batch, dict):
        raise DataError(f"{source}: expected a pickled dict with b'data' and labels, got "
                        f"{type(batch).__name__}")

    def field(key: str):
        for k in (key.encode(), key):
            if k in batch:
                return batch[k]
        raise DataError(f"{source}: the batch has no '{key}' entry (keys: "
                        f"{sorted(k.decode() if isinstance(k, bytes) else k for k in batch)})")

    data = field("data")
    if not isinstance(data, np.ndarray) or data.ndim != 2 or data.shape[1] != CIFAR_IMAGE_BYTES:
        shape = getattr(data, "shape", type(data).__name__)
        raise DataError(f"{source}: 'data' should be an (N, {CIFAR_IMAGE_BYTES}) uint8 array, got {shape}")
    images = np.ascontiguousarray(data, dtype=np.uint8).reshape(-1, 3, 32, 32)  # (N, C, H, W)
    labels = []
    for key in label_keys:
        lab = np.asarray(field(key))
        if lab.shape != (len(images),):
            raise DataError(f"{source}: '{key}' has shape {lab.shape}, expected ({len(images)},) "
                            "to match 'data'")
        labels.append(lab)
    return (images, *labels)
