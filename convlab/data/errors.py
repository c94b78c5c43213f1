"""The exceptions and warnings of `convlab.data`: bad or missing data files, and a cache that was rebuilt.

Every message names the file it is about, what was expected there and what was found.
"""

from __future__ import annotations


class DataError(ValueError):
    """A data file is missing, truncated, corrupt or not the format it should be."""


class DataNotFoundError(DataError):
    """A data set's files are not where convlab looks, and they could not be downloaded."""


class DownloadError(DataError):
    """A download failed: no connection, an interrupted transfer, or a checksum mismatch."""


class CacheWarning(UserWarning):
    """A cache file could not be read or written; the data set was parsed from its sources instead."""
