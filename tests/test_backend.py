"""The array backend: device selection, the CONVLAB_DEVICE override, conversions, dtype and seeding."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from convlab import backend, nn

REPO = Path(__file__).resolve().parents[1]


def run_python(code, **env):
    """Run `code` in a fresh interpreter (so the backend's global state starts unset)."""
    environ = {k: v for k, v in os.environ.items() if k != "CONVLAB_DEVICE"}
    environ["PYTHONPATH"] = os.pathsep.join([str(REPO), environ.get("PYTHONPATH", "")])
    environ.update(env)
    return subprocess.run([sys.executable, "-c", code], env=environ, capture_output=True, text=True,
                          timeout=60)


def test_cpu_gives_numpy():
    assert backend.use("cpu") == "cpu"
    assert backend.xp() is np
    assert backend.device() == "cpu"
    assert isinstance(backend.asarray([1, 2]), np.ndarray)


def test_auto_picks_the_gpu_only_when_one_is_usable():
    chosen = backend.use("auto")
    assert chosen == ("gpu" if backend.gpu_available() else "cpu")
    if chosen == "cpu":
        assert backend.xp() is np


def test_gpu_without_a_gpu_raises_device_error_with_advice():
    if backend.gpu_available():
        pytest.skip("a GPU is available here")
    message = r"device 'gpu' was requested but no CUDA GPU is usable here.*use device 'cpu' / 'auto'"
    with pytest.raises(backend.DeviceError, match=message):
        backend.use("gpu")
    assert backend.device() == "cpu", "a failed switch must leave the current device alone"


def test_unknown_device_name_is_a_value_error():
    with pytest.raises(ValueError, match=r"device must be one of \('auto', 'cpu', 'gpu'\), got 'cuda'"):
        backend.use("cuda")


def test_device_error_is_a_runtime_error():
    assert issubclass(backend.DeviceError, RuntimeError)


def test_convlab_device_environment_variable_sets_the_first_device():
    done = run_python("from convlab import backend; print(backend.device(), backend.xp().__name__)",
                      CONVLAB_DEVICE="cpu")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["cpu", "numpy"]


def test_convlab_device_environment_variable_is_case_and_space_insensitive():
    done = run_python("from convlab import backend; print(backend.device())", CONVLAB_DEVICE="  CPU ")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "cpu"


def test_convlab_device_gpu_without_a_gpu_fails_on_first_use():
    if backend.gpu_available():
        pytest.skip("a GPU is available here")
    done = run_python("from convlab import backend; backend.xp()", CONVLAB_DEVICE="gpu")
    assert done.returncode != 0
    assert "DeviceError: device 'gpu' was requested but no CUDA GPU is usable here" in done.stderr


def test_convlab_device_with_an_unknown_name_fails_with_value_error():
    done = run_python("from convlab import backend; backend.xp()", CONVLAB_DEVICE="tpu")
    assert done.returncode != 0
    assert "ValueError: device must be one of ('auto', 'cpu', 'gpu'), got 'tpu'" in done.stderr


def test_explicit_use_overrides_the_environment_variable():
    done = run_python("from convlab import backend; backend.use('cpu'); print(backend.device())",
                      CONVLAB_DEVICE="gpu")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "cpu"


def test_to_numpy_and_asarray_round_trip():
    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    on_device = backend.asarray(a)
    back = backend.to_numpy(on_device)
    assert isinstance(back, np.ndarray)
    np.testing.assert_array_equal(back, a)
    assert backend.to_numpy(a) is a
    np.testing.assert_array_equal(backend.to_numpy([1, 2]), [1, 2])


def test_asarray_casts_to_the_requested_dtype():
    assert backend.asarray([1, 2, 3], dtype=np.float64).dtype == np.float64
    assert backend.asarray(np.zeros(2, dtype=np.float64), dtype=np.float32).dtype == np.float32


def test_get_array_module_of_numpy_arrays_and_scalars_is_numpy():
    assert backend.get_array_module(np.zeros(2)) is np
    assert backend.get_array_module(3.0) is np
    assert not backend.is_gpu_array(np.zeros(2))


def test_default_dtype_is_float32_and_can_be_changed():
    assert backend.default_dtype() is np.float32
    assert nn.Linear(2, 2).weight.data.dtype == np.float32
    backend.set_default_dtype("float64")
    assert backend.default_dtype() is np.float64
    assert nn.Linear(2, 2).weight.data.dtype == np.float64


def test_default_dtype_must_be_a_float_type():
    with pytest.raises(ValueError, match=r"default dtype must be float16, float32 or float64, got int32"):
        backend.set_default_dtype(np.int32)


def test_manual_seed_makes_initialisation_repeatable():
    backend.manual_seed(42)
    first = nn.Conv2d(3, 4, 3).state_dict()
    backend.manual_seed(42)
    second = nn.Conv2d(3, 4, 3).state_dict()
    third = nn.Conv2d(3, 4, 3).state_dict()
    for key in first:
        np.testing.assert_array_equal(first[key], second[key])
    assert not np.array_equal(second["weight"], third["weight"])


def test_rng_state_can_be_saved_and_restored():
    backend.manual_seed(1)
    state = backend.rng.get_state()
    a = backend.rng.normal(0.0, 1.0, (5,))
    backend.rng.set_state(state)
    np.testing.assert_array_equal(backend.rng.normal(0.0, 1.0, (5,)), a)


def test_rng_draws_use_the_default_dtype_on_the_current_device():
    for draw in (backend.rng.uniform(0, 1, (3,)), backend.rng.normal(0, 1, (3,)), backend.rng.random((3,))):
        assert isinstance(draw, np.ndarray) and draw.dtype == np.float32
