"""convlab: a convolutional-network lab on NumPy and CuPy, every backward pass written by hand."""

from . import backend, functional, nn
from .backend import manual_seed, to_numpy

__version__ = "0.1.0"

__all__ = ["backend", "functional", "nn", "manual_seed", "to_numpy", "__version__"]
