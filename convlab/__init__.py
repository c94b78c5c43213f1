"""convlab: a convolutional-network lab on NumPy and CuPy, every backward pass written by hand.

    import convlab
    model = convlab.models.get("resnet20", num_classes=10)
    print(convlab.summary(model, (3, 32, 32)))
"""

from . import backend, data, functional, inspect, models, nn, optim, train
from .backend import manual_seed, to_numpy
from .inspect import summary

__version__ = "0.1.0"

__all__ = ["backend", "data", "functional", "inspect", "models", "nn", "optim", "train", "manual_seed",
           "summary", "to_numpy", "__version__"]
