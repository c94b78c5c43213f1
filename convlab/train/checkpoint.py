"""HDF5 checkpoints: model weights under PyTorch names, optimiser and schedule state, RNG and loader
positions, counters, the metrics history and the run's configuration.

A checkpoint is written to a temporary file in the target's folder, flushed to disk and renamed over
the target, so a reader sees the old file or the new one, never half of one. Weight arrays carry
HDF5's Fletcher-32 checksum; a file that fails to open, lacks a part, or fails a checksum raises
`CheckpointError` instead of being trusted.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import h5py
import numpy as np

FORMAT = "convlab-checkpoint"
FORMAT_VERSION = 1
_REQUIRED = ("model", "state")


class CheckpointError(ValueError):
    """A checkpoint file is missing, truncated, corrupt or not a convlab checkpoint."""


def _write_array(group, name, value):
    value = np.asarray(value)
    if value.ndim and value.size:
        group.create_dataset(name, data=value, chunks=value.shape, fletcher32=True)
    else:
        group.create_dataset(name, data=value)


def _write_tree(group, tree: dict):
    """Nested dicts become groups, arrays datasets, anything else a JSON attribute."""
    for key, value in tree.items():
        key = str(key)
        if isinstance(value, dict) and any(isinstance(v, (dict, np.ndarray)) for v in value.values()):
            _write_tree(group.create_group(key), value)
        elif isinstance(value, np.ndarray):
            _write_array(group, key, value)
        else:
            group.attrs[key] = json.dumps(value, default=_json_default)


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (tuple, set)):
        return list(value)
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot store a {type(value).__name__} in a checkpoint")


def _read_tree(group) -> dict:
    out = {}
    for key, value in group.attrs.items():
        out[key] = json.loads(value)
    for key, item in group.items():
        out[key] = _read_tree(item) if isinstance(item, h5py.Group) else item[()]
    return out


def save_checkpoint(path, *, model_state: dict, model_name: str, model_options: dict, state: dict,
                    convlab_version: str) -> Path:
    """Write a checkpoint atomically to `path`.

    model_state: the model's state_dict (NumPy arrays, PyTorch names). state: everything else
    (optimizer, schedule, rng, loader, progress, history, config) as nested dicts of arrays and
    JSON-ready values.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as raw:
            with h5py.File(raw, "w") as f:
                f.attrs["format"] = FORMAT
                f.attrs["format_version"] = FORMAT_VERSION
                f.attrs["convlab_version"] = convlab_version
                f.attrs["model_name"] = model_name
                f.attrs["model_options"] = json.dumps(model_options, default=_json_default)
                weights = f.create_group("model")
                for name, value in model_state.items():
                    _write_array(weights, name, value)
                _write_tree(f.create_group("state"), state)
            raw.flush()
            os.fsync(raw.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes it private; give it a normal file's mode
        os.replace(tmp, path)
        _fsync_folder(path.parent)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def _fsync_folder(folder: Path):
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def read_checkpoint(path) -> dict:
    """Read and verify a checkpoint: {"model_name", "model_options", "convlab_version",
    "model_state" (name -> array), "state" (nested dict)}. Raises CheckpointError when it can't be
    trusted."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist" if not path.exists()
                              else f"checkpoint {path} is not a file")
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise CheckpointError(f"checkpoint {path} cannot be opened as HDF5 ({_short(e)}); the file is "
                              "truncated or corrupt") from e
    try:
        with f:
            if f.attrs.get("format") != FORMAT:
                raise CheckpointError(f"{path} is an HDF5 file but not a convlab checkpoint "
                                      f"(format attribute {f.attrs.get('format')!r})")
            version = int(f.attrs.get("format_version", -1))
            if version > FORMAT_VERSION:
                raise CheckpointError(f"checkpoint {path} has format version {version}; this convlab reads "
                                      f"up to {FORMAT_VERSION}, so upgrade convlab")
            missing = [k for k in _REQUIRED if k not in f]
            if missing:
                raise CheckpointError(f"checkpoint {path} lacks its {', '.join(missing)} part; the file is "
                                      "incomplete or corrupt")
            return {
                "model_name": str(f.attrs["model_name"]),
                "model_options": json.loads(f.attrs["model_options"]),
                "convlab_version": str(f.attrs.get("convlab_version", "?")),
                "model_state": {name: ds[()] for name, ds in f["model"].items()},
                "state": _read_tree(f["state"]),
            }
    except CheckpointError:
        raise
    except (OSError, KeyError, ValueError, json.JSONDecodeError) as e:
        raise CheckpointError(f"checkpoint {path} is corrupt: reading it failed ({_short(e)})") from e


def _short(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return (text[0] if text else type(e).__name__)[:200]
