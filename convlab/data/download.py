"""Downloading official data files: a progress bar, a temporary file, and a rename only once the md5 matches.

`DOWNLOAD_URL` (or the environment variable `CONVLAB_DOWNLOAD_URL`) replaces every official base URL,
so tests and air-gapped sites can serve the same file names from a server of their own.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import tempfile
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from tqdm import tqdm

from convlab.data.errors import DownloadError

DOWNLOAD_URL: str | None = None
TIMEOUT_S = 60
_CHUNK = 1 << 20


def urls_for(filename: str, mirrors: Sequence[str]) -> list[str]:
    """The URLs to try for `filename`: the override base URL if one is set, else each official mirror."""
    override = os.environ.get("CONVLAB_DOWNLOAD_URL") or DOWNLOAD_URL
    bases = [override] if override else list(mirrors)
    return [base.rstrip("/") + "/" + filename for base in bases]


def md5_of(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _fetch(url: str, dest: Path, md5: str, progress: bool | None) -> None:
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=dest.name + ".", suffix=".part")
    try:
        digest = hashlib.md5(usedforsecurity=False)
        request = urllib.request.Request(url, headers={"User-Agent": "convlab"})
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            received = 0
            with tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=dest.name,
                      disable=None if progress is None else not progress, leave=False) as bar:
                try:
                    while chunk := response.read(_CHUNK):
                        out.write(chunk)
                        digest.update(chunk)
                        received += len(chunk)
                        bar.update(len(chunk))
                except http.client.IncompleteRead as e:
                    received += len(e.partial)
                    total = total or received + (e.expected or 0)
        if total is not None and received < total:
            raise DownloadError(f"{url}: the download was interrupted after {received} of {total} bytes; "
                                f"nothing was written to {dest}; try again")
        got = digest.hexdigest()
        if got != md5:
            raise DownloadError(f"{url}: md5 {got} does not match the published checksum {md5}; "
                                f"the file was not saved to {dest}")
        os.chmod(tmp, 0o644)  # mkstemp makes it private; the result is an ordinary file
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def download_file(urls: Sequence[str], dest: Path, md5: str, progress: bool | None = None) -> Path:
    """Download the first of `urls` that works to `dest`, verified against `md5`.

    The bytes go to a temporary file beside `dest`, which is renamed to `dest` only when the
    transfer is complete and its md5 equals `md5`; on any failure nothing is left behind.
    `progress`: show a tqdm bar (None: only when stderr is a terminal).
    """
    dest = Path(dest)
    made_folder = not dest.parent.exists()
    dest.parent.mkdir(parents=True, exist_ok=True)
    failures = []
    for url in urls:
        try:
            _fetch(url, dest, md5, progress)
            return dest
        except DownloadError as e:
            failures.append(str(e))
        except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
            reason = getattr(e, "reason", None) or e
            failures.append(f"{url}: {reason}")
    if made_folder:
        dest.parent.rmdir()
    raise DownloadError(f"could not download {dest.name}: " + "; ".join(failures))
