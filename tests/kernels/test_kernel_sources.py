"""What can be checked of the GPU path without a GPU: every CUDA source compiles (nvcc, to PTX for
sm_90, warnings as errors) and defines the kernels it registers; the package imports without CuPy
and declines NumPy arrays; the device-check and benchmark scripts parse, and the benchmark's
harness runs end to end on the CPU."""

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from convlab import kernels
from convlab.kernels import activation
from convlab.kernels.build import REAL_TYPES, SOURCES, preamble

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NVCC = shutil.which("nvcc")
needs_nvcc = pytest.mark.skipif(NVCC is None, reason="nvcc (the CUDA compiler) is not installed")


def compile_to_ptx(source, tmp_path, name):
    """Compile a CUDA source to PTX with nvcc; returns the PTX text (fails the test on any warning)."""
    cu, ptx = tmp_path / f"{name}.cu", tmp_path / f"{name}.ptx"
    cu.write_text(source)
    proc = subprocess.run([NVCC, "--ptx", "-arch=sm_90", "-Werror", "all-warnings", "-x", "cu", str(cu),
                           "-o", str(ptx)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"nvcc rejected {name}:\n{proc.stderr}"
    return ptx.read_text()


def test_every_kernel_module_registers_its_source():
    assert set(SOURCES) == {"augment", "batch_norm", "channel_sums", "conv", "loss", "optim", "pool"}
    for name, (source, functions) in SOURCES.items():
        assert functions, name
        for fn in functions:
            assert f'extern "C" __global__ void {fn}(' in source, f"{name} does not define {fn}"


@needs_nvcc
@pytest.mark.parametrize("real", sorted(set(REAL_TYPES.values())))
@pytest.mark.parametrize("name", sorted(SOURCES))
def test_cuda_source_compiles_to_ptx_and_defines_its_kernels(name, real, tmp_path):
    source, functions = SOURCES[name]
    ptx = compile_to_ptx(preamble(real) + source, tmp_path, f"{name}_{real}")
    for fn in functions:
        assert f".entry {fn}(" in ptx, f"{fn} is missing from the PTX of {name}"


@needs_nvcc
def test_relu_backward_elementwise_operation_compiles(tmp_path):
    body = activation.RELU_BACKWARD_OPERATION
    source = (
        "template <typename T> __global__ void relu_backward(const T* dy_, const T* y_, T* dx_, int n) {\n"
        "  int i = blockIdx.x * blockDim.x + threadIdx.x; if (i >= n) return;\n"
        f"  const T dy = dy_[i]; const T y = y_[i]; T& dx = dx_[i]; {body};\n"
        "}\n"
        "template __global__ void relu_backward<float>(const float*, const float*, float*, int);\n"
        "template __global__ void relu_backward<double>(const double*, const double*, double*, int);\n"
    )
    assert "relu_backward" in compile_to_ptx(source, tmp_path, "relu_backward")


def test_importing_the_kernels_does_not_import_cupy():
    code = "import sys, convlab.kernels; sys.exit('cupy' in sys.modules)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert proc.returncode == 0, proc.stderr or "importing convlab.kernels imported cupy"


def test_the_fast_paths_decline_numpy_arrays_and_can_be_switched_off():
    a = np.zeros((2, 3), dtype=np.float32)
    assert not kernels.accepts(a)
    kernels.enable(False)
    try:
        assert not kernels.enabled()
    finally:
        kernels.enable(True)
    assert kernels.enabled()


def test_only_a_kernel_cache_is_claimed_by_the_kernel_backwards():
    assert kernels.owns(kernels.KernelCache((1, 2)))
    assert not kernels.owns((1, 2))


def test_an_unsupported_dtype_is_refused_with_a_message():
    from convlab.kernels.build import real_type

    assert real_type(np.float32) == "float" and real_type(np.float64) == "double"
    with pytest.raises(TypeError, match="float32 or float64"):
        real_type(np.float16)


def test_device_check_and_benchmark_scripts_parse():
    proc = subprocess.run(["bash", "-n", os.path.join(ROOT, "scripts", "device-check")],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    for script in ("bench_gpu.py", "profile_gpu.py"):
        proc = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", script), "--help"],
                              capture_output=True, text=True, cwd=ROOT, timeout=120)
        assert proc.returncode == 0 and "usage:" in proc.stdout, proc.stderr


def test_benchmark_dry_run_trains_both_frameworks_one_step_on_the_cpu(tmp_path):
    pytest.importorskip("torch")
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "bench_gpu.py"), "--dry-run",
                           "--out", str(tmp_path)], capture_output=True, text=True, timeout=240, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    table = (tmp_path / "bench_gpu.txt").read_text()
    for model, params in (("lenet5", 61706), ("resnet20", 269722)):
        assert f"{params}/{params}" in next(line for line in table.splitlines() if line.startswith(model))
    assert "errors:" not in table
