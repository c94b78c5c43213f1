"""The GPU agreement tests, run on the CPU: the kernels' CUDA sources are compiled as C++ against a
CPU emulation of CUDA (tests/kernels/cuda_on_cpu) and driven through a NumPy stand-in for CuPy, so
the kernels' indexing, reductions and launch arithmetic are checked against their twins on every
machine. Covers every kernel on a representative subset of test_kernels_gpu.py (float64 for the
GEMM-based ones); TF32 and real device synchronisation need the GPU itself. About a minute (g++
compiles each source once per dtype; the libraries are cached in the temp folder), hence `slow`."""

import os
import shutil
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))

SUBSET = " or ".join([
    "(conv2d_forward_and_backward and float64 and True)",
    "conv2d_backward_accepts", "im2col_and_col2im", "max_pool2d", "(batch_norm and float64)",
    "batch_norm_cumulative", "batch_norm_with_a_fused_relu", "batch_norm_variance", "batch_norm_refuses",
    "channel_sums",
    "softmax_cross_entropy", "relu", "fused_sgd", "fused_adam", "optimizers_use_the_fused", "zero_clears",
    "crop_flip", "never_waits", "capturable_cublas_path", "learning_rate_stored",
    "every_forward_returns",
])


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("g++") is None, reason="needs g++ (C++20) to run CUDA sources on the CPU")
def test_kernels_agree_with_their_twins_when_run_on_the_cpu():
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.path.join(HERE, "cuda_on_cpu"), ROOT]))
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", os.path.join(HERE, "test_kernels_gpu.py"), "-q",
         "-p", "no:cacheprovider", "-o", "addopts=", "-k", SUBSET],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)
    summary = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    assert " passed" in summary and "skipped" not in summary, summary
