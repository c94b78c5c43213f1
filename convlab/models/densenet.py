"""Densely connected networks (Huang et al., 2017): each layer of a dense block sees the
concatenation of all earlier feature maps; transitions halve the width and the resolution.

`densenet121`: torchvision's layout and names (features.conv0, features.norm0, …,
features.denseblock1.denselayer1.norm1, …, features.transition1, …, features.norm5,
classifier); growth 32, blocks (6, 12, 24, 16), 7,978,856 parameters at 1000 classes.
`densenet_bc_100_k12`: the paper's CIFAR DenseNet-BC (depth 100, growth 12, compression
0.5): a 3×3 stem with 24 channels and three dense blocks of 16 bottleneck layers; 769,162
parameters at 10 classes.
"""

from __future__ import annotations

from collections import OrderedDict

from .. import nn
from .initialization import init_convolutions, init_linears


def densenet(growth_rate, block_config, num_init_features, stem="imagenet", bn_size=4, compression=0.5,
             drop_rate=0.0, num_classes=1000, in_channels=3):
    """A DenseNet: stem, dense blocks with transitions between them, BN, ReLU, global pool, dense.

    stem: "imagenet" (7×7/2 conv, BN, ReLU, 3×3/2 max-pool) or "cifar" (one 3×3 conv).
    """
    if stem == "imagenet":
        layers = OrderedDict(
            conv0=nn.Conv2d(in_channels, num_init_features, 7, stride=2, padding=3, bias=False),
            norm0=nn.BatchNorm2d(num_init_features),
            relu0=nn.ReLU(),
            pool0=nn.MaxPool2d(3, stride=2, padding=1),
        )
    elif stem == "cifar":
        layers = OrderedDict(conv0=nn.Conv2d(in_channels, num_init_features, 3, padding=1, bias=False))
    else:
        raise ValueError(f"densenet: stem must be 'imagenet' or 'cifar', got {stem!r}")
    features = num_init_features
    for i, num_layers in enumerate(block_config):
        block = nn.DenseBlock(num_layers, features, growth_rate, bn_size, drop_rate)
        layers[f"denseblock{i + 1}"] = block
        features = block.out_channels
        if i != len(block_config) - 1:
            out = int(features * compression)
            layers[f"transition{i + 1}"] = nn.Transition(features, out)
            features = out
    layers["norm5"] = nn.BatchNorm2d(features)  # torchvision's name, whatever the block count
    model = nn.Sequential(OrderedDict(
        features=nn.Sequential(layers),
        relu=nn.ReLU(),
        avgpool=nn.GlobalAvgPool2d(),
        classifier=nn.Linear(features, num_classes),
    ))
    init_convolutions(model, "kaiming_fan_in")
    init_linears(model, "default")
    return model


def densenet121(num_classes=1000, in_channels=3, drop_rate=0.0):
    return densenet(32, (6, 12, 24, 16), 64, stem="imagenet", drop_rate=drop_rate,
                    num_classes=num_classes, in_channels=in_channels)


def densenet_bc_100_k12(num_classes=10, in_channels=3, drop_rate=0.0):
    return densenet(12, (16, 16, 16), 2 * 12, stem="cifar", drop_rate=drop_rate,
                    num_classes=num_classes, in_channels=in_channels)
