"""The HDF5 cache of parsed data sets: one file per data set and split, rebuilt when its sources change.

A cache file holds the arrays (images, labels, ...) as datasets and, as attributes, the class names
and a fingerprint of every source file (path, size, mtime, md5). It is trusted only while the
sources match that fingerprint: same size and mtime, or, when only the mtime moved, the same md5.
Files are written to a temporary name and renamed, so a reader never sees half a cache; one that
cannot be read is reported with a `CacheWarning` and rebuilt.
"""

from __future__ import annotations

import json
import os
import tempfile
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import h5py
import numpy as np

from convlab.data.download import md5_of
from convlab.data.errors import CacheWarning
from convlab.data.locations import is_writable

FORMAT_VERSION = 1


def fingerprint(paths: Sequence[Path]) -> list[dict]:
    """Path, size, mtime and md5 of each source file."""
    out = []
    for p in paths:
        st = os.stat(p)
        out.append({"path": str(Path(p).resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns,
                    "md5": md5_of(p)})
    return out


def _sources_unchanged(recorded: list[dict], paths: Sequence[Path]) -> bool:
    if [r["path"] for r in recorded] != [str(Path(p).resolve()) for p in paths]:
        return False
    for r, p in zip(recorded, paths):
        st = os.stat(p)
        if st.st_size != r["size"]:
            return False
        if st.st_mtime_ns != r["mtime_ns"] and md5_of(p) != r["md5"]:
            return False
    return True


def _read(path: Path, classes: Sequence[str]) -> dict[str, np.ndarray]:
    with h5py.File(path, "r") as f:
        if f.attrs.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"format version {f.attrs.get('format_version')}, expected {FORMAT_VERSION}")
        if json.loads(f.attrs["classes"]) != list(classes):
            raise ValueError("its class names differ from this data set's")
        arrays = {name: f[name][()] for name in f.keys()}
    images, labels = arrays.get("images"), arrays.get("labels")
    if images is None or labels is None or images.ndim != 4 or images.dtype != np.uint8:
        raise ValueError("it lacks a uint8 (N, C, H, W) 'images' array")
    if any(a.shape[0] != len(images) for a in arrays.values()):
        raise ValueError("its arrays have different lengths")
    return arrays


def _write(folder: Path, name: str, arrays: dict[str, np.ndarray], classes: Sequence[str],
           sources: list[dict]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=name + ".", suffix=".h5.tmp")
    os.close(fd)
    try:
        with h5py.File(tmp, "w") as f:
            for key, a in arrays.items():
                f.create_dataset(key, data=a)
            f.attrs["format_version"] = FORMAT_VERSION
            f.attrs["classes"] = json.dumps(list(classes))
            f.attrs["sources"] = json.dumps(sources)
        os.chmod(tmp, 0o644)  # mkstemp makes it private; the result is an ordinary file
        final = folder / f"{name}.h5"
        os.replace(tmp, final)
        return final
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def load_or_build(name: str, folders: Sequence[Path], sources: Sequence[Path], classes: Sequence[str],
                  build: Callable[[], dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """The arrays of data set `name` (e.g. "mnist-train"), from the cache if it is fresh, else built.

    `folders`: where the cache may live, in order of preference; the first one that holds a fresh
    cache is read, and a rebuilt cache is written to the first writable one.
    `sources`: the files the arrays are parsed from; `build()` parses them.
    """
    for folder in folders:
        path = Path(folder) / f"{name}.h5"
        if not path.is_file():
            continue
        try:
            with h5py.File(path, "r") as f:
                recorded = json.loads(f.attrs["sources"])
            if not _sources_unchanged(recorded, sources):
                continue
            return _read(path, classes)
        except Exception as e:
            warnings.warn(f"{path}: the cache file is unreadable or corrupt ({type(e).__name__}: {e}); "
                          "parsing the source files again and rewriting it", CacheWarning, stacklevel=3)
    arrays = build()
    recorded = fingerprint(sources)
    reasons = []
    for folder in map(Path, folders):
        if not is_writable(folder):
            reasons.append(f"{folder} is read-only")
            continue
        try:
            _write(folder, name, arrays, classes, recorded)
            return arrays
        except OSError as e:
            reasons.append(f"writing {folder / name}.h5 failed ({e})")
    warnings.warn(f"could not write the cache for {name}: {'; '.join(reasons)}; it will be parsed again next "
                  "time (set CONVLAB_CACHE to a writable folder)", CacheWarning, stacklevel=3)
    return arrays
