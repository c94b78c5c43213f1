"""The array backend: one code path over NumPy (CPU) and CuPy (GPU).

Every engine module gets its array namespace from `xp()` (or `get_array_module(a)` for an
array it was handed), so the same code runs on either device.
"""

from __future__ import annotations

import os

import numpy as np

_VALID = ("auto", "cpu", "gpu")
_state = {"device": None, "xp": None, "dtype": np.float32}


class DeviceError(RuntimeError):
    """The requested device cannot be used on this machine."""


def gpu_available() -> bool:
    """True when CuPy imports and sees at least one CUDA device."""
    try:
        import cupy
    except Exception:
        return False
    try:
        return bool(cupy.cuda.is_available())
    except Exception:
        return False


def use(device: str = "auto") -> str:
    """Select the device: "cpu" (NumPy), "gpu" (CuPy) or "auto" (GPU when available).

    Returns the device actually chosen ("cpu" or "gpu").
    """
    if device not in _VALID:
        raise ValueError(f"device must be one of {_VALID}, got {device!r}")
    if device == "auto":
        device = "gpu" if gpu_available() else "cpu"
    if device == "gpu":
        if not gpu_available():
            raise DeviceError(
                "device 'gpu' was requested but no CUDA GPU is usable here "
                "(install the 'gpu' extra, e.g. cupy-cuda12x, on a machine with an NVIDIA GPU), "
                "or use device 'cpu' / 'auto'"
            )
        import cupy

        _state["xp"] = cupy
    else:
        _state["xp"] = np
    _state["device"] = device
    return device


def _ensure() -> None:
    if _state["xp"] is None:
        use(os.environ.get("CONVLAB_DEVICE", "auto").strip().lower() or "auto")


def xp():
    """The array namespace of the current device: `numpy` or `cupy`."""
    _ensure()
    return _state["xp"]


def device() -> str:
    """The current device: "cpu" or "gpu"."""
    _ensure()
    return _state["device"]


def get_array_module(a):
    """`numpy` or `cupy`, whichever owns array `a`."""
    if isinstance(a, np.ndarray) or np.isscalar(a):
        return np
    try:
        import cupy

        return cupy.get_array_module(a)
    except Exception:
        return np


def is_gpu_array(a) -> bool:
    return get_array_module(a) is not np


def to_numpy(a):
    """Copy an array to host memory as a NumPy array (a no-op for NumPy arrays)."""
    if isinstance(a, np.ndarray):
        return a
    if is_gpu_array(a):
        return a.get()
    return np.asarray(a)


def asarray(a, dtype=None):
    """Move `a` onto the current device (NumPy or CuPy array)."""
    return xp().asarray(a, dtype=dtype)


def default_dtype():
    """The default floating dtype (float32 unless changed by `set_default_dtype`)."""
    return _state["dtype"]


def set_default_dtype(dtype) -> None:
    dtype = np.dtype(dtype)
    if dtype not in (np.float32, np.float64, np.float16):
        raise ValueError(f"default dtype must be float16, float32 or float64, got {dtype}")
    _state["dtype"] = dtype.type


class _RNG:
    """A seeded random source that produces arrays on the current device.

    Parameter initialisation, dropout masks and augmentation draw from it, so one
    `manual_seed` makes a CPU run repeatable bit for bit.
    """

    def __init__(self, seed: int = 0):
        self.seed(seed)

    def seed(self, seed: int) -> None:
        self._np = np.random.default_rng(seed)
        self._seed = seed
        self._gpu = None

    def _device_generator(self):
        """A CuPy generator seeded from the host one, for large draws (dropout masks) on the GPU."""
        if self._gpu is None:
            import cupy

            self._gpu = cupy.random.default_rng(int(self._np.integers(2**63)))
        return self._gpu

    @property
    def numpy(self) -> np.random.Generator:
        return self._np

    def get_state(self) -> dict:
        return self._np.bit_generator.state

    def set_state(self, state: dict) -> None:
        self._np.bit_generator.state = state

    # Draws are made on the host (one generator, identical on both devices) and moved.
    def _float(self, dtype):
        return np.float32 if np.dtype(dtype or default_dtype()) == np.float32 else np.float64

    def uniform(self, low, high, size, dtype=None):
        dt = self._float(dtype)
        a = self._np.random(size, dtype=dt)
        a *= high - low
        a += low
        return asarray(a.astype(dtype or default_dtype(), copy=False))

    def normal(self, loc, scale, size, dtype=None):
        dt = self._float(dtype)
        a = self._np.standard_normal(size, dtype=dt)
        a *= scale
        a += loc
        return asarray(a.astype(dtype or default_dtype(), copy=False))

    def random(self, size, dtype=None):
        """Uniform [0, 1) draws on the current device (drawn there directly on the GPU)."""
        dt = self._float(dtype)
        if device() == "gpu":
            return self._device_generator().random(size, dtype=dt)
        return self._np.random(size, dtype=dt)

    def permutation(self, n):
        return self._np.permutation(n)

    def integers(self, low, high=None, size=None):
        return self._np.integers(low, high, size)


rng = _RNG(0)


def manual_seed(seed: int) -> None:
    """Seed convlab's random source (initialisation, dropout, shuffling, augmentation)."""
    rng.seed(int(seed))
