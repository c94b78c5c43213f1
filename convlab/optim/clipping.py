"""Gradient clipping by global norm (torch.nn.utils.clip_grad_norm_), and the global norm itself,
which the trainer also uses to notice a non-finite gradient."""

from __future__ import annotations

import math

import numpy as np

from .. import backend


def global_grad_norm(params) -> float:
    """The L2 norm of all gradients taken together, as a Python float (inf or nan when any is)."""
    total = 0.0
    with np.errstate(over="ignore", invalid="ignore"):  # a diverged gradient is reported, not warned about
        for p in params:
            g = p.grad
            if g is None:
                continue
            xp = backend.get_array_module(g)
            flat = g.reshape(-1)
            total += float(xp.dot(flat, flat)) if flat.flags.c_contiguous else float((g * g).sum())
    return math.sqrt(total) if total >= 0 else float("nan")


def clip_grad_norm(params, max_norm: float) -> float:
    """Scale all gradients in place so their global L2 norm is at most `max_norm`.

    Returns the norm before clipping. As in PyTorch the scale is max_norm / (norm + 1e-6), applied
    only when it is below 1. A non-finite norm leaves the gradients untouched (the caller decides
    what a diverged step means).
    """
    if not max_norm > 0:
        raise ValueError(f"clip_grad_norm: max_norm must be > 0, got {max_norm}")
    params = list(params)
    total = global_grad_norm(params)
    coef = max_norm / (total + 1e-6)
    if math.isfinite(total) and coef < 1:
        for p in params:
            if p.grad is not None:
                p.grad *= coef
    return total
