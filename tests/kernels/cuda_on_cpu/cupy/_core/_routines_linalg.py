"""Stand-in for CuPy's GEMM compute-type switch; NumPy has no TF32, so the setting changes nothing."""

COMPUTE_TYPE_DEFAULT, COMPUTE_TYPE_TF32 = 1, 7
_compute_types = {}


def set_compute_type(dtype, compute_type):
    _compute_types[str(dtype)] = compute_type


def get_compute_type(dtype):
    return _compute_types.get(str(dtype), COMPUTE_TYPE_DEFAULT)
