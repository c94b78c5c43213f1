"""Probes into a network: the feature maps of every convolution for an input, a convolution's kernels
tiled into one image, and per-layer activation / weight / gradient statistics.

All results are NumPy arrays on the host, ready for matplotlib or pyqtgraph. Probing never changes the
model: its train/eval mode is restored and the forward hooks are removed afterwards.
"""

from __future__ import annotations

import math
from contextlib import contextmanager

import numpy as np

from .. import backend
from ..nn import Conv2d


def conv_layers(model) -> list[tuple[str, Conv2d]]:
    """Every Conv2d in the model with its dotted name, in forward (registration) order."""
    return [(name, m) for name, m in model.named_modules() if isinstance(m, Conv2d)]


@contextmanager
def _mode(model, training):
    was = model.training
    model.train(training)
    try:
        yield
    finally:
        model.train(was)


def _as_batch(x):
    x = backend.asarray(x)
    if x.ndim == 3:
        x = x[None]  # (1, C, H, W)
    if x.ndim != 4:
        raise ValueError(f"expected an image (C, H, W) or a batch (N, C, H, W), got shape {tuple(x.shape)}")
    return x.astype(backend.default_dtype(), copy=False)


def _hooked_forward(model, x, modules):
    """Run model(x) in eval mode, recording each module's output; returns {module name: output}."""
    outputs, handles = {}, []
    for name, m in modules:
        handles.append(m.register_forward_hook(
            lambda mod, inputs, out, name=name: outputs.__setitem__(name, out)))
    try:
        with _mode(model, False):
            model(_as_batch(x))
    finally:
        for h in handles:
            h.remove()
        model.clear_cache()
    return outputs


def feature_maps(model, x) -> list[tuple[str, np.ndarray]]:
    """The output (N, C, H, W) of every Conv2d for input `x` (an image (C, H, W) or a batch),
    computed in eval mode, as (layer name, NumPy array) in forward order."""
    layers = conv_layers(model)
    outputs = _hooked_forward(model, x, layers)
    return [(name, np.ascontiguousarray(backend.to_numpy(outputs[name])))
            for name, _ in layers if name in outputs]


def _normalise(tiles):
    """Scale each tile (first axis) to [0, 1] independently; a constant tile becomes 0.5."""
    flat = tiles.reshape(len(tiles), -1)
    lo, hi = flat.min(axis=1), flat.max(axis=1)
    span = np.where(hi > lo, hi - lo, 1.0)
    out = (flat - lo[:, None]) / span[:, None]
    out[hi <= lo] = 0.5
    return out.reshape(tiles.shape)


def tile_images(tiles, columns=None, padding=1, background=1.0) -> np.ndarray:
    """Lay out (T, h, w) or (T, h, w, 3) tiles in a grid of `columns` (default: near square),
    separated by `padding` pixels of `background`."""
    tiles = np.asarray(tiles, dtype=np.float64)
    count, h, w = tiles.shape[:3]
    columns = columns or math.ceil(math.sqrt(count))
    rows = math.ceil(count / columns)
    shape = (rows * (h + padding) + padding, columns * (w + padding) + padding) + tiles.shape[3:]
    grid = np.full(shape, background, dtype=np.float64)
    for i in range(count):
        r, c = divmod(i, columns)
        top, left = padding + r * (h + padding), padding + c * (w + padding)
        grid[top:top + h, left:left + w] = tiles[i]
    return grid


def kernel_grid(weight, padding=1, max_filters=64, max_channels=16, background=1.0) -> np.ndarray:
    """A convolution's kernels (out, in, kh, kw) as one image with values in [0, 1].

    With 3 input channels each filter is one RGB tile (result (H, W, 3)); with 1 input channel each
    filter is one grey tile; otherwise row o holds filter o's kernels for its first `max_channels`
    input channels (result (H, W)). Every tile is scaled to [0, 1] on its own; the gaps between tiles
    hold `background` (NaN marks them for a plot to colour).
    """
    w = np.asarray(backend.to_numpy(getattr(weight, "data", weight)), dtype=np.float64)
    if w.ndim != 4:
        raise ValueError(f"kernel_grid: expected a convolution weight (out, in, kh, kw), got shape {w.shape}")
    w = w[:max_filters]
    out_ch, in_ch = w.shape[:2]
    if in_ch == 3:
        return tile_images(_normalise(w.transpose(0, 2, 3, 1)), padding=padding, background=background)
    if in_ch == 1:
        return tile_images(_normalise(w[:, 0]), padding=padding, background=background)
    w = w[:, :max_channels]
    return tile_images(_normalise(w.reshape(-1, *w.shape[2:])), columns=w.shape[1], padding=padding,
                       background=background)


def feature_map_grid(maps, padding=1, max_maps=64, background=1.0) -> np.ndarray:
    """One sample's feature maps (C, H, W) tiled into a near-square grey image in [0, 1]."""
    maps = np.asarray(maps, dtype=np.float64)
    if maps.ndim == 4:
        maps = maps[0]
    return tile_images(_normalise(maps[:max_maps]), padding=padding, background=background)


def _norm(a):
    if a is None:
        return None
    a = backend.to_numpy(a).astype(np.float64).ravel()
    return float(np.sqrt(a @ a))


def layer_statistics(model, x=None) -> list[dict]:
    """Per layer that has parameters: its name and type, weight norm and gradient norm (None before any
    backward); with an input batch `x`, also the mean and standard deviation of its output (from one
    eval-mode forward pass).
    """
    layers = [(name, m) for name, m in model.named_modules() if name and m._parameters]
    outputs = _hooked_forward(model, x, layers) if x is not None else {}
    stats = []
    for name, m in layers:
        weight = m._parameters.get("weight")
        params = [p for p in m._parameters.values() if p is not None]
        grads = [p.grad for p in params if p.grad is not None]
        grad_norm = math.sqrt(sum(_norm(g) ** 2 for g in grads)) if grads else None
        out = outputs.get(name)
        out = None if out is None else backend.to_numpy(out).astype(np.float64)
        stats.append({
            "name": name,
            "type": type(m).__name__,
            "parameters": int(sum(p.size for p in params)),
            "weight_norm": _norm(weight.data) if weight is not None else None,
            "grad_norm": grad_norm,
            "activation_mean": None if out is None else float(out.mean()),
            "activation_std": None if out is None else float(out.std()),
        })
    return stats
