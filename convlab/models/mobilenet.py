"""MobileNet v1 (Howard et al., 2017): a strided 3×3 convolution, then thirteen depthwise-
separable units (3×3 depthwise conv + BN + ReLU, 1×1 pointwise conv + BN + ReLU), global
average pooling and a dense layer. Convolutions have no bias (BN follows each);
4,231,976 parameters at 1000 classes.

Names: features.0 (conv, bn, relu), features.1 … features.13 (depthwise, bn1, relu1, pointwise,
bn2, relu2), avgpool, classifier. `width_multiplier` (the paper's α) thins every layer;
`mobilenet_v1_cifar` is the same network with a stride-1 stem, for 32×32 images.
"""

from __future__ import annotations

from collections import OrderedDict

from .. import nn
from .initialization import init_convolutions, init_linears

# (output channels, stride) of the thirteen depthwise-separable units.
_UNITS = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2),
          (512, 1), (512, 1), (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1)]


def mobilenet_v1(num_classes=1000, in_channels=3, width_multiplier=1.0, stem_stride=2):
    """MobileNet v1; stem_stride=1 keeps the resolution of small (CIFAR) images."""
    if not 0 < width_multiplier <= 4:
        raise ValueError(f"mobilenet_v1: width_multiplier must be in (0, 4], got {width_multiplier!r}")
    if stem_stride not in (1, 2):
        raise ValueError(f"mobilenet_v1: stem_stride must be 1 or 2, got {stem_stride!r}")

    def width(c):
        return max(8, int(c * width_multiplier))

    channels = width(32)
    layers = [nn.Sequential(OrderedDict(
        conv=nn.Conv2d(in_channels, channels, 3, stride=stem_stride, padding=1, bias=False),
        bn=nn.BatchNorm2d(channels),
        relu=nn.ReLU(),
    ))]
    for out, stride in _UNITS:
        layers.append(nn.DepthwiseSeparableConv(channels, width(out), stride=stride))
        channels = width(out)
    model = nn.Sequential(OrderedDict(
        features=nn.Sequential(*layers),  # (1024·α, 7, 7) at 224×224
        avgpool=nn.GlobalAvgPool2d(),
        classifier=nn.Linear(channels, num_classes),
    ))
    init_convolutions(model, "kaiming_fan_out")
    init_linears(model, "normal", std=0.01)
    return model
