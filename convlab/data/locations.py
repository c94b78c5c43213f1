"""Where data sets live: the data root (argument, `CONVLAB_DATA`, the repository's `datasets/`, or a
user cache dir) and the cache dir for parsed data when the root cannot be written.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

_REPO = Path(__file__).resolve().parents[2]


def cache_dir() -> Path:
    """`$CONVLAB_CACHE`, else `$XDG_CACHE_HOME/convlab`, else `~/.cache/convlab`."""
    if os.environ.get("CONVLAB_CACHE"):
        return Path(os.environ["CONVLAB_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "convlab"


def data_root(root: str | os.PathLike | None = None) -> Path:
    """The folder data sets are read from and downloaded to.

    In order: `root`; `$CONVLAB_DATA`; the repository's `datasets/` folder when convlab runs from a
    checkout; otherwise (installed from a wheel) `cache_dir()`.
    """
    if root is not None:
        return Path(root).expanduser()
    if os.environ.get("CONVLAB_DATA"):
        return Path(os.environ["CONVLAB_DATA"]).expanduser()
    if (_REPO / "pyproject.toml").is_file() and (_REPO / "datasets").is_dir():
        return _REPO / "datasets"
    return cache_dir()


def is_writable(folder: Path) -> bool:
    """True when files can be created in `folder`, or in the folder that would hold it if it is missing.

    Permission bits are honoured even for root, who could otherwise write into a folder that was
    shared read-only (the real data sets in CI).
    """
    folder = Path(folder).absolute()
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        mode = folder.stat().st_mode
    except OSError:
        return False
    if not stat.S_ISDIR(mode) or not os.access(folder, os.W_OK):
        return False
    return not (hasattr(os, "geteuid") and os.geteuid() == 0 and not stat.S_IMODE(mode) & 0o222)
