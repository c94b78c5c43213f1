"""Softmax cross-entropy over class logits, mean over the batch, with optional label smoothing."""

from __future__ import annotations

from .. import kernels
from ..backend import get_array_module


def log_softmax(logits):
    """Stable log-softmax along the last axis."""
    xp = get_array_module(logits)
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - xp.log(xp.exp(shifted).sum(axis=-1, keepdims=True))


def softmax(logits):
    xp = get_array_module(logits)
    return xp.exp(log_softmax(logits))


def softmax_cross_entropy(logits, labels, label_smoothing=0.0):
    """logits (N, K), integer labels (N,) -> (scalar loss, cache).

    With smoothing ε the target is (1-ε)·onehot + ε/K, as in PyTorch's CrossEntropyLoss.
    """
    if kernels.accepts(logits):
        return kernels.softmax_cross_entropy(logits, labels, label_smoothing)
    xp = get_array_module(logits)
    n, k = logits.shape
    logp = log_softmax(logits)
    rows = xp.arange(n)
    nll = -logp[rows, labels]
    if label_smoothing:
        loss = ((1 - label_smoothing) * nll - label_smoothing * logp.mean(axis=1)).mean()
    else:
        loss = nll.mean()
    return loss, (logp, labels, label_smoothing)


def softmax_cross_entropy_backward(cache, dloss=1.0):
    """Gradient of the mean loss with respect to the logits: (softmax − target) / N."""
    if kernels.owns(cache):
        return kernels.softmax_cross_entropy_backward(cache, dloss)
    logp, labels, eps = cache
    xp = get_array_module(logp)
    n, k = logp.shape
    grad = xp.exp(logp)
    if eps:
        grad -= eps / k
    grad[xp.arange(n), labels] -= 1 - eps
    grad *= dloss / n
    return grad
