"""Stand-in for cupyx (see ../cupy/__init__.py): on the CPU nothing ever waits for a device."""

import contextlib


@contextlib.contextmanager
def allow_synchronize(allow):
    yield
