"""LeNet-5 (LeCun et al., 1998): two convolution + subsampling stages and three dense layers.

6@5×5 → pool → 16@5×5 → pool → 120 → 84 → classes. On 28×28 images (MNIST) the first
convolution pads by 2 so the second stage sees the paper's 32×32 geometry; pass
`input_size=32` for the original unpadded layout. 61,706 parameters at 10 classes.
"""

from __future__ import annotations

from collections import OrderedDict

from .. import nn

_ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid}
_POOLINGS = {"max": nn.MaxPool2d, "avg": nn.AvgPool2d}


def lenet5(num_classes=10, in_channels=1, activation="relu", pooling="max", input_size=28):
    """LeNet-5. The 1998 network used tanh-like squashing and average subsampling
    (activation="tanh", pooling="avg"); the default is the modern ReLU / max-pool variant."""
    if activation not in _ACTIVATIONS:
        raise ValueError(f"lenet5: activation must be one of {sorted(_ACTIVATIONS)}, got {activation!r}")
    if pooling not in _POOLINGS:
        raise ValueError(f"lenet5: pooling must be one of {sorted(_POOLINGS)}, got {pooling!r}")
    if input_size not in (28, 32):
        raise ValueError(
            f"lenet5: input_size must be 28 (first convolution padded by 2) or 32 (unpadded), "
            f"got {input_size!r}"
        )
    act, pool = _ACTIVATIONS[activation], _POOLINGS[pooling]
    return nn.Sequential(OrderedDict(
        conv1=nn.Conv2d(in_channels, 6, 5, padding=2 if input_size == 28 else 0),  # (6, 28, 28)
        act1=act(),
        pool1=pool(2, stride=2),  # (6, 14, 14)
        conv2=nn.Conv2d(6, 16, 5),  # (16, 10, 10)
        act2=act(),
        pool2=pool(2, stride=2),  # (16, 5, 5)
        flatten=nn.Flatten(),  # (400,)
        fc1=nn.Linear(16 * 5 * 5, 120),
        act3=act(),
        fc2=nn.Linear(120, 84),
        act4=act(),
        fc3=nn.Linear(84, num_classes),
    ))
