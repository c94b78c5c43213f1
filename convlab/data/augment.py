"""Batched data augmentation on the backend's arrays: crops, flips, affine warps, noise, cutout, normalising.

Every transform takes a float batch (N, C, H, W), NumPy or CuPy, and returns a new one on the same
device, with no Python loop over samples or pixels: per-sample parameters are drawn on the host
from a seeded `numpy.random.Generator`, moved to the device as small arrays, and applied with
vectorised index arithmetic and gathers. Call a transform as `t(x, rng)` where `rng` is a
Generator, an int seed, or None (convlab's global seeded source, `backend.rng`). The same seed
gives the same output on the same device.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from convlab import backend


def as_generator(rng: np.random.Generator | int | None) -> np.random.Generator:
    """A NumPy Generator from a Generator, a seed, or None (convlab's global source)."""
    if rng is None:
        return backend.rng.numpy
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, (int, np.integer)):
        return np.random.default_rng(int(rng))
    raise TypeError(f"rng must be a numpy.random.Generator, an int seed or None, got {type(rng).__name__}")


def _pair(v, what: str) -> tuple[float, float]:
    if isinstance(v, (int, float)):
        return float(v), float(v)
    if len(v) != 2:
        raise ValueError(f"{what} must be a number or a pair, got {v!r}")
    return float(v[0]), float(v[1])


def _gather(x, ys, xs):
    """x[n, c, ys[n, i, j], xs[n, i, j]] for every n, c: (N, C, H, W) and (N, h, w) indices -> (N, C, h, w).

    `ys` and `xs` broadcast against each other and must lie inside the image; one flat `take`, the
    same on NumPy and CuPy.
    """
    xp = backend.get_array_module(x)
    N, C, H, W = x.shape
    base = (xp.arange(N * C, dtype=xp.int64) * (H * W)).reshape(N, C, 1, 1)
    flat = (ys * W + xs).astype(xp.int64)[:, None]  # (N, 1, h, w)
    return xp.take(x.reshape(-1), base + flat)


class Transform:
    """A batched, seeded transform of float images (N, C, H, W)."""

    def __call__(self, x, rng: np.random.Generator | int | None = None):
        xp = backend.get_array_module(x)
        if getattr(x, "ndim", None) != 4 or not np.issubdtype(x.dtype, np.floating):
            raise ValueError(f"{type(self).__name__}: expected a float array (N, C, H, W), got "
                             f"{getattr(x, 'dtype', type(x).__name__)} {getattr(x, 'shape', '')}")
        return self.apply(x, xp, as_generator(rng))

    def apply(self, x, xp, rng: np.random.Generator):
        raise NotImplementedError


@dataclass(frozen=True)
class Compose(Transform):
    """Apply `transforms` in order, all drawing from the one generator."""

    transforms: Sequence[Transform] = field(default_factory=tuple)

    def apply(self, x, xp, rng):
        for t in self.transforms:
            x = t(x, rng)
        return x


@dataclass(frozen=True)
class RandomCrop(Transform):
    """Pad each side by `padding` (with `fill`), then cut a `size` window at a random offset per sample."""

    size: int | tuple[int, int]
    padding: int = 0
    fill: float = 0.0

    def apply(self, x, xp, rng):
        N, C, H, W = x.shape
        th, tw = (self.size, self.size) if isinstance(self.size, int) else self.size
        p = self.padding
        if th > H + 2 * p or tw > W + 2 * p:
            raise ValueError(f"RandomCrop: a {th}x{tw} crop does not fit a {H}x{W} image padded by {p}")
        oy = xp.asarray(rng.integers(0, H + 2 * p - th + 1, N))  # window offsets in the padded image
        ox = xp.asarray(rng.integers(0, W + 2 * p - tw + 1, N))
        if p:
            x = xp.pad(x, ((0, 0), (0, 0), (p, p), (p, p)), constant_values=self.fill)
        # A view of every window of every sample, (N, oy, ox, C, th, tw), then one gather of the
        # N chosen windows: no index array the size of the batch.
        sN, sC, sH, sW = x.strides
        windows = xp.lib.stride_tricks.as_strided(
            x, (N, x.shape[2] - th + 1, x.shape[3] - tw + 1, C, th, tw), (sN, sH, sW, sC, sH, sW))
        return windows[xp.arange(N), oy, ox]  # (N, C, th, tw)


@dataclass(frozen=True)
class RandomHorizontalFlip(Transform):
    """Mirror each sample left-right with probability `p`."""

    p: float = 0.5

    def apply(self, x, xp, rng):
        flip = xp.asarray(rng.random(len(x)) < self.p)
        return xp.where(flip[:, None, None, None], x[..., ::-1], x)


@dataclass(frozen=True)
class RandomAffine(Transform):
    """Rotate by a random angle and scale by a random factor about the image centre, per sample.

    degrees: d (angles in [-d, d]) or (lo, hi); positive turns the content counter-clockwise.
    scale: (lo, hi) zoom factor (> 1 enlarges the content). Pixels from outside the image get `fill`.
    interpolation: "bilinear" or "nearest".
    """

    degrees: float | tuple[float, float] = 10.0
    scale: tuple[float, float] = (1.0, 1.0)
    interpolation: str = "bilinear"
    fill: float = 0.0

    def __post_init__(self):
        if self.interpolation not in ("bilinear", "nearest"):
            raise ValueError(f"RandomAffine: interpolation must be 'bilinear' or 'nearest', "
                             f"got {self.interpolation!r}")
        if min(_pair(self.scale, "scale")) <= 0:
            raise ValueError(f"RandomAffine: scale factors must be positive, got {self.scale!r}")

    def apply(self, x, xp, rng):
        N, C, H, W = x.shape
        d = _pair(self.degrees, "degrees")
        lo, hi = (-abs(d[0]), abs(d[0])) if isinstance(self.degrees, (int, float)) else d
        angle = np.deg2rad(rng.uniform(lo, hi, N))
        zoom = rng.uniform(*_pair(self.scale, "scale"), N)
        # Inverse map, output -> source: rotate by -angle and shrink by the zoom, about the centre.
        cos = xp.asarray(np.cos(angle) / zoom, dtype=xp.float32)[:, None, None]
        sin = xp.asarray(np.sin(angle) / zoom, dtype=xp.float32)[:, None, None]
        cy, cx = (H - 1) / 2, (W - 1) / 2
        dy = (xp.arange(H, dtype=xp.float32) - cy)[None, :, None]  # (1, H, 1)
        dx = (xp.arange(W, dtype=xp.float32) - cx)[None, None, :]  # (1, 1, W)
        sx = cx + dx * cos - dy * sin  # (N, H, W)
        sy = cy + dx * sin + dy * cos
        fill = xp.asarray(self.fill, dtype=x.dtype)
        if self.interpolation == "nearest":
            return self._sample(x, xp, xp.rint(sy).astype(xp.int64), xp.rint(sx).astype(xp.int64), fill)
        y0, x0 = xp.floor(sy), xp.floor(sx)
        wy, wx = (sy - y0).astype(x.dtype)[:, None], (sx - x0).astype(x.dtype)[:, None]  # (N, 1, H, W)
        y0, x0 = y0.astype(xp.int64), x0.astype(xp.int64)
        at = lambda dy, dx: self._sample(x, xp, y0 + dy, x0 + dx, fill)  # (N, C, H, W)
        top = at(0, 0) * (1 - wx) + at(0, 1) * wx
        bottom = at(1, 0) * (1 - wx) + at(1, 1) * wx
        return top * (1 - wy) + bottom * wy

    @staticmethod
    def _sample(x, xp, ys, xs, fill):
        """x at integer source coordinates (N, H, W); `fill` where they fall outside the image."""
        H, W = x.shape[2:]
        inside = (ys >= 0) & (ys < H) & (xs >= 0) & (xs < W)
        v = _gather(x, xp.clip(ys, 0, H - 1), xp.clip(xs, 0, W - 1))
        return xp.where(inside[:, None], v, fill)


@dataclass(frozen=True)
class GaussianNoise(Transform):
    """Add N(0, std^2) noise to every value (drawn on the device from a seed taken from `rng`)."""

    std: float = 0.05

    def apply(self, x, xp, rng):
        device_rng = xp.random.default_rng(int(rng.integers(2**63)))
        noise = device_rng.standard_normal(x.shape, dtype=xp.float32).astype(x.dtype, copy=False)
        return x + noise * self.std


@dataclass(frozen=True)
class Cutout(Transform):
    """Set a `size` x `size` square at a random centre to `fill`, per sample with probability `p`.

    As in DeVries & Taylor (2017) the centre may lie near an edge, so the square can be clipped.
    """

    size: int = 8
    p: float = 1.0
    fill: float = 0.0

    def apply(self, x, xp, rng):
        N, C, H, W = x.shape
        top = rng.integers(0, H, N) - self.size // 2
        left = rng.integers(0, W, N) - self.size // 2
        on = rng.random(N) < self.p
        top, left, on = xp.asarray(top)[:, None], xp.asarray(left)[:, None], xp.asarray(on)[:, None, None]
        rows = (xp.arange(H) >= top) & (xp.arange(H) < top + self.size)  # (N, H)
        cols = (xp.arange(W) >= left) & (xp.arange(W) < left + self.size)  # (N, W)
        mask = rows[:, :, None] & cols[:, None, :] & on  # (N, H, W)
        return xp.where(mask[:, None], xp.asarray(self.fill, dtype=x.dtype), x)


@dataclass(frozen=True)
class Normalize(Transform):
    """(x - mean) / std per channel; `mean` and `std` have one value per channel."""

    mean: Sequence[float]
    std: Sequence[float]

    def __post_init__(self):
        if len(self.mean) != len(self.std) or min(self.std) <= 0:
            raise ValueError(f"Normalize: mean and std need one value per channel and std > 0, got "
                             f"mean={self.mean!r}, std={self.std!r}")

    def apply(self, x, xp, rng):
        if x.shape[1] != len(self.mean):
            raise ValueError(f"Normalize: has mean and std for {len(self.mean)} channel(s), but the batch "
                             f"has shape {x.shape}")
        mean = xp.asarray(self.mean, dtype=x.dtype).reshape(1, -1, 1, 1)
        inv_std = xp.asarray(1.0 / np.asarray(self.std), dtype=x.dtype).reshape(1, -1, 1, 1)
        return (x - mean) * inv_std


def contains(transform: Transform | None, kind: type) -> bool:
    """True when `transform` is, or (inside a Compose) includes, a transform of type `kind`."""
    if transform is None:
        return False
    if isinstance(transform, Compose):
        return any(contains(t, kind) for t in transform.transforms)
    return isinstance(transform, kind)


__all__ = ["Compose", "Cutout", "GaussianNoise", "Normalize", "RandomAffine", "RandomCrop",
           "RandomHorizontalFlip", "Transform", "as_generator"]
