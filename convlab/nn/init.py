"""Weight initialisers (PyTorch's names and formulas), drawing from convlab's seeded RNG."""

from __future__ import annotations

import math

from .. import backend


def _fans(shape):
    fan_in = shape[1] * math.prod(shape[2:]) if len(shape) > 1 else shape[0]
    fan_out = shape[0] * math.prod(shape[2:]) if len(shape) > 1 else shape[0]
    return fan_in, fan_out


def _gain(nonlinearity, a=0.0):
    if nonlinearity in ("linear", "conv2d", "sigmoid"):
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        return math.sqrt(2.0 / (1 + a * a))
    raise ValueError(f"unknown nonlinearity {nonlinearity!r}")


def _set(p, a):
    p.data = a.astype(p.data.dtype, copy=False) if hasattr(p, "data") else a
    return p


def uniform_(p, low=0.0, high=1.0):
    return _set(p, backend.rng.uniform(low, high, p.data.shape, dtype=p.data.dtype))


def normal_(p, mean=0.0, std=1.0):
    return _set(p, backend.rng.normal(mean, std, p.data.shape, dtype=p.data.dtype))


def constant_(p, value):
    p.data[...] = value
    return p


def zeros_(p):
    return constant_(p, 0)


def ones_(p):
    return constant_(p, 1)


def kaiming_uniform_(p, a=0.0, mode="fan_in", nonlinearity="leaky_relu"):
    fan_in, fan_out = _fans(p.data.shape)
    std = _gain(nonlinearity, a) / math.sqrt(fan_in if mode == "fan_in" else fan_out)
    bound = math.sqrt(3.0) * std
    return uniform_(p, -bound, bound)


def kaiming_normal_(p, a=0.0, mode="fan_in", nonlinearity="leaky_relu"):
    fan_in, fan_out = _fans(p.data.shape)
    std = _gain(nonlinearity, a) / math.sqrt(fan_in if mode == "fan_in" else fan_out)
    return normal_(p, 0.0, std)


def xavier_uniform_(p, gain=1.0):
    fan_in, fan_out = _fans(p.data.shape)
    bound = gain * math.sqrt(6.0 / (fan_in + fan_out))
    return uniform_(p, -bound, bound)


def xavier_normal_(p, gain=1.0):
    fan_in, fan_out = _fans(p.data.shape)
    return normal_(p, 0.0, gain * math.sqrt(2.0 / (fan_in + fan_out)))


def default_init_(weight, bias=None):
    """PyTorch's default for Conv2d and Linear: U(-1/√fan_in, 1/√fan_in) for weight and bias."""
    kaiming_uniform_(weight, a=math.sqrt(5))
    if bias is not None:
        bound = 1 / math.sqrt(_fans(weight.data.shape)[0])
        uniform_(bias, -bound, bound)
