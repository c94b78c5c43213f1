"""Central finite differences, the reference every hand-written backward pass is checked against.

A scalar loss L = sum(y · R), with a fixed random R, turns any output into one number whose
gradient with respect to y is R, so `backward(R)` must equal the numerical dL/dx and dL/dθ.
"""

import numpy as np

from convlab import backend, nn

EPS = 1e-6
GRAD_TOL = 1e-6  # float64 relative error allowed between analytic and numerical gradients


def relative_error(actual, expected):
    """‖actual − expected‖ / ‖expected‖ over the whole array (a norm-relative error), in float64 on
    the host, for NumPy or CuPy arrays."""
    actual = np.asarray(backend.to_numpy(actual), dtype=np.float64)
    expected = np.asarray(backend.to_numpy(expected), dtype=np.float64)
    if actual.shape != expected.shape:
        raise AssertionError(f"shape {actual.shape} differs from the reference's {expected.shape}")
    return float(np.linalg.norm(actual - expected) / max(np.linalg.norm(expected), 1e-30))


def numerical_gradient(loss, array, eps=EPS):
    """dloss/darray by central differences, perturbing `array` in place one element at a time."""
    if not array.flags.c_contiguous:
        raise ValueError("numerical_gradient needs a C-contiguous array to perturb in place")
    flat = array.reshape(-1)  # a view: writes reach the array the loss reads
    grad = np.empty(flat.size)
    for i in range(flat.size):
        original = flat[i]
        flat[i] = original + eps
        plus = loss()
        flat[i] = original - eps
        minus = loss()
        flat[i] = original
        grad[i] = (plus - minus) / (2 * eps)
    return grad.reshape(array.shape)


def assert_gradient_close(analytic, numerical, what, tol=GRAD_TOL):
    err = relative_error(analytic, numerical)
    if not err < tol:
        raise AssertionError(f"{what}: relative error {err:.2e} between backward and finite differences "
                             f"exceeds {tol:.0e}")


def check_op(forward, backward, inputs, seed=0, tol=GRAD_TOL):
    """Finite-difference check of a functional pair.

    `forward(*inputs) -> (y, cache)`; `backward(dy, cache)` returns one gradient per input
    (a tuple, or a single array for one input). Every input is perturbed and checked.
    """
    y, cache = forward(*inputs)
    upstream = np.random.default_rng(seed).standard_normal(np.shape(y))
    grads = backward(upstream, cache)
    if not isinstance(grads, tuple):
        grads = (grads,)

    def loss():
        return float(np.sum(forward(*inputs)[0] * upstream))

    for k, (array, grad) in enumerate(zip(inputs, grads)):
        assert_gradient_close(grad, numerical_gradient(loss, array), f"input {k}", tol)


def check_module(module, x, seed=0, tol=GRAD_TOL):
    """Finite-difference check of a module's dx and of every parameter's accumulated gradient."""
    y = module(x)
    upstream = np.random.default_rng(seed).standard_normal(y.shape)
    for p in module.parameters():
        p.grad = None
    dx = module.backward(upstream)
    analytic = {}
    for name, p in module.named_parameters():
        if p.grad is None:
            raise AssertionError(f"{type(module).__name__} parameter {name!r} got no gradient from backward")
        analytic[name] = p.grad.copy()

    def loss():
        return float(np.sum(module(x) * upstream))

    assert_gradient_close(dx, numerical_gradient(loss, x), f"{type(module).__name__} dx", tol)
    for name, p in module.named_parameters():
        assert_gradient_close(analytic[name], numerical_gradient(loss, p.data),
                              f"{type(module).__name__} parameter {name!r}", tol)


def randomize_batch_norm(model, rng):
    """Give every batch norm non-trivial affine parameters and running statistics, so eval-mode
    checks and buffer comparisons test something."""
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d | nn.BatchNorm1d):
            c = m.num_features
            state = {}
            if m.affine:
                state["weight"] = rng.uniform(0.5, 1.5, c)
                state["bias"] = rng.normal(0.0, 0.3, c)
            if m.track_running_stats:
                state["running_mean"] = rng.normal(0.0, 0.3, c)
                state["running_var"] = rng.uniform(0.5, 2.0, c)
                state["num_batches_tracked"] = np.array(rng.integers(0, 5), dtype=np.int64)
            m.load_state_dict(state)
