"""Shared fixtures: every test starts on the CPU in float32 with convlab's RNG at seed 0.

Tests that need a GPU (tests/gpu) switch to it themselves and are skipped without one.
"""

import numpy as np
import pytest

from convlab import backend


@pytest.fixture(autouse=True)
def clean_backend():
    """Run each test on the CPU, float32, seed 0; afterwards restore the backend as it was."""
    saved_state = dict(backend._state)
    backend.use("cpu")
    backend.set_default_dtype(np.float32)
    backend.manual_seed(0)
    yield
    backend._state.update(saved_state)


@pytest.fixture
def float64():
    """Build and run in float64 (for finite-difference gradient checks)."""
    backend.set_default_dtype(np.float64)
    yield np.float64
