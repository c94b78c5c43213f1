"""VGG (Simonyan & Zisserman, 2015): stacks of 3×3 convolutions between 2×2 max-pools.

Two layouts share one feature extractor:
* "imagenet": torchvision's layout and names (features.N, avgpool, classifier.0 … .6) —
  vgg16 has 138,357,544 parameters at 1000 classes. The dense head needs a 7×7 feature
  map, i.e. a 224×224 input (the adaptive pool accepts any size ≥ 32).
* "cifar": the same features, a global average pool and one Linear(512, classes); any
  multiple of 32 pixels (vgg16_cifar: 14.7 M parameters).

`vgg8_bn_cifar` is a small network for quick benchmarks and CPU training: six 3×3
conv + BN + ReLU layers (32, 32, M, 64, 64, M, 128, 128, M), then dense 2048 → 256 → classes
(eight weight layers, 0.82 M parameters at 10 classes; it needs 32×32 inputs).
"""

from __future__ import annotations

from collections import OrderedDict

from .. import nn
from .initialization import init_convolutions, init_linears

# torchvision's configurations: numbers are 3×3 conv widths, "M" a 2×2 max-pool.
CONFIGS = {
    11: [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    13: [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    16: [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    19: [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
         512, 512, 512, 512, "M"],
}


def make_features(config, in_channels, batch_norm):
    """Conv 3×3 (padding 1) [+ BN] + ReLU for each width, MaxPool2d(2) for each "M"."""
    layers, channels = [], in_channels
    for v in config:
        if v == "M":
            layers.append(nn.MaxPool2d(2, stride=2))
            continue
        layers.append(nn.Conv2d(channels, v, 3, padding=1))
        if batch_norm:
            layers.append(nn.BatchNorm2d(v))
        layers.append(nn.ReLU())
        channels = v
    return nn.Sequential(*layers), channels


def vgg(depth, batch_norm=False, layout="imagenet", num_classes=1000, in_channels=3, dropout=0.5):
    """VGG-11/13/16/19, with or without batch norm, in the ImageNet or CIFAR layout."""
    if depth not in CONFIGS:
        raise ValueError(f"vgg: depth must be one of {sorted(CONFIGS)}, got {depth!r}")
    features, channels = make_features(CONFIGS[depth], in_channels, batch_norm)
    if layout == "imagenet":
        model = nn.Sequential(OrderedDict(
            features=features,  # (512, 7, 7) at 224×224
            avgpool=nn.AdaptiveAvgPool2d((7, 7)),
            flatten=nn.Flatten(),
            classifier=nn.Sequential(
                nn.Linear(channels * 7 * 7, 4096), nn.ReLU(), nn.Dropout(dropout),
                nn.Linear(4096, 4096), nn.ReLU(), nn.Dropout(dropout),
                nn.Linear(4096, num_classes),
            ),
        ))
    elif layout == "cifar":
        model = nn.Sequential(OrderedDict(
            features=features,  # (512, 1, 1) at 32×32
            avgpool=nn.GlobalAvgPool2d(),
            classifier=nn.Linear(channels, num_classes),
        ))
    else:
        raise ValueError(f"vgg: layout must be 'imagenet' or 'cifar', got {layout!r}")
    init_convolutions(model, "kaiming_fan_out")
    init_linears(model, "normal", std=0.01)
    return model


def vgg8_bn_cifar(num_classes=10, in_channels=3, dropout=0.5):
    """A small VGG with batch norm for 32×32 images (see the module docstring)."""
    features, channels = make_features([32, 32, "M", 64, 64, "M", 128, 128, "M"], in_channels, True)
    model = nn.Sequential(OrderedDict(
        features=features,  # (128, 4, 4)
        flatten=nn.Flatten(),
        classifier=nn.Sequential(
            nn.Linear(channels * 4 * 4, 256), nn.ReLU(), nn.Dropout(dropout),
            nn.Linear(256, num_classes),
        ),
    ))
    init_convolutions(model, "kaiming_fan_out")
    init_linears(model, "normal", std=0.01)
    return model
