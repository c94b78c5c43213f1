"""A NumPy-backed stand-in for the few CuPy features convlab's kernels use, for testing them on a
machine without a GPU. Arrays are NumPy arrays of a `cupy.ndarray` subclass; `RawModule` compiles
a CUDA source as C++ with g++ against ../cuda_on_cpu.h and launches its kernels through ctypes.
Fresh arrays are filled with NaN (or 77 for integers), so an element a kernel fails to write shows.
Only tests put this folder on sys.path (tests/kernels/test_kernels_on_cpu.py)."""

import ctypes
import hashlib
import os
import re
import subprocess
import tempfile
import types

import numpy as np
from numpy import float32, float64, int8, int32, int64, uint8, uint64  # noqa: F401

HEADER = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "cuda_on_cpu.h")
BUILD = os.path.join(tempfile.gettempdir(), "convlab-cuda-on-cpu")
_C_TYPES = {"int": ctypes.c_int, "long long": ctypes.c_longlong, "double": ctypes.c_double,
            "float": ctypes.c_float}


class ndarray(np.ndarray):
    @property
    def data(self):
        return types.SimpleNamespace(ptr=self.ctypes.data)


ndarray.__module__ = "cupy"


def _device(a):
    return a.view(ndarray) if isinstance(a, np.ndarray) else a


def _poisoned(a):
    a[...] = np.nan if a.dtype.kind in "fc" else 77
    return _device(a)


def asarray(a, dtype=None):
    return _device(np.asarray(a, dtype=dtype) if isinstance(a, ndarray) else np.array(a, dtype=dtype))


def array(a, dtype=None):
    return _device(np.array(a, dtype=dtype))


def asnumpy(a):
    return np.array(a).view(np.ndarray)


def empty(shape, dtype=float64):
    return _poisoned(np.empty(shape, dtype=dtype))


def empty_like(a, dtype=None):
    return _poisoned(np.empty_like(a, dtype=dtype))


def zeros(*args, **kwargs):
    return _device(np.zeros(*args, **kwargs))


def ones(*args, **kwargs):
    return _device(np.ones(*args, **kwargs))


def zeros_like(*args, **kwargs):
    return _device(np.zeros_like(*args, **kwargs))


def ascontiguousarray(a, dtype=None):
    return _device(np.ascontiguousarray(a, dtype=dtype))


def matmul(*args, **kwargs):
    return _device(np.matmul(*args, **kwargs))


maximum, add = np.maximum, np.add


class _Device:
    id = 0

    def __init__(self, *args):
        pass

    def synchronize(self):
        pass


cuda = types.SimpleNamespace(is_available=lambda: True, Device=_Device)


def _c_type(declaration):
    declaration = declaration.replace("__restrict__", "").replace("const", "").strip()
    if "*" in declaration:
        return ctypes.c_void_p
    return _C_TYPES[" ".join(declaration.split()[:-1])]


class RawModule:
    def __init__(self, code, options=()):
        signatures = re.findall(r'extern "C" __global__ void (\w+)\(([^)]*)\)', code, re.S)
        threaded = "__syncthreads" in code or "__shfl" in code
        self.argtypes, launchers = {}, []
        for name, params in signatures:
            params = [p.strip() for p in params.split(",")]
            self.argtypes[name] = [_c_type(p) for p in params]
            names = ", ".join(p.split()[-1] for p in params)
            launchers.append(
                f'extern "C" void launch_{name}(unsigned gx, unsigned gy, unsigned bx, {", ".join(params)}) '
                f'{{ run_grid(gx, gy, bx, {str(threaded).lower()}, [&] {{ {name}({names}); }}); }}')
        source = (f'#include "{HEADER}"\n' + code.replace('extern "C" __global__', "static") + "\n"
                  + "\n".join(launchers) + "\n")
        os.makedirs(BUILD, exist_ok=True)
        key = hashlib.sha1((source + open(HEADER).read()).encode()).hexdigest()[:20]
        library = os.path.join(BUILD, f"{key}.so")
        if not os.path.exists(library):
            cpp = os.path.join(BUILD, f"{key}.cpp")
            with open(cpp, "w") as f:
                f.write(source)
            subprocess.run(["g++", "-std=c++20", "-O1", "-fPIC", "-shared", "-pthread", "-w", cpp, "-o",
                            library + ".tmp"], check=True)
            os.replace(library + ".tmp", library)
        self.library = ctypes.CDLL(library)

    def get_function(self, name):
        fn = getattr(self.library, f"launch_{name}")
        fn.argtypes = [ctypes.c_uint] * 3 + self.argtypes[name]

        def launch(grid, block, args):
            grid = tuple(grid) + (1,) * (2 - len(grid))
            values = [a.ctypes.data if isinstance(a, np.ndarray) else a.item() if hasattr(a, "item") else a
                      for a in args]
            fn(int(grid[0]), int(grid[1]), int(block[0]), *values)

        return launch


class ElementwiseKernel:
    """Runs `operation` once per element of the (C-ordered) output, inputs broadcast to its shape."""

    def __init__(self, in_params, out_params, operation, name="kernel", **kwargs):
        self.inputs = [p.split()[-1] for p in in_params.split(",")]
        self.outputs = [p.split()[-1] for p in out_params.split(",")]
        self.operation = operation
        self.compiled = {}

    def __call__(self, *args):
        ins, outs = args[:len(self.inputs)], args[len(self.inputs):]
        dtype = np.asarray(ins[0]).dtype
        real = {np.dtype(np.float32): "float", np.dtype(np.float64): "double"}[dtype]
        if real not in self.compiled:
            params = ", ".join([f"const T* {n}_" for n in self.inputs] + [f"T* {n}_" for n in self.outputs])
            body = "; ".join([f"const T {n} = {n}_[e]" for n in self.inputs]
                             + [f"T& {n} = {n}_[e]" for n in self.outputs])
            code = (f"typedef {real} T;\n"
                    f'extern "C" __global__ void elementwise({params}, long long n) '
                    f"{{ for (long long e = 0; e < n; ++e) {{ {body}; {self.operation}; }} }}")
            self.compiled[real] = RawModule(code).get_function("elementwise")
        shape = outs[0].shape
        c_ins = [np.ascontiguousarray(np.broadcast_to(a, shape)) for a in ins]
        c_outs = [np.empty(shape, dtype=dtype) for _ in outs]
        self.compiled[real]((1,), (1,), c_ins + c_outs + [np.int64(int(np.prod(shape)))])
        for out, value in zip(outs, c_outs):
            out[...] = value
        return outs[0] if len(outs) == 1 else tuple(outs)
