"""AlexNet (Krizhevsky et al., 2012) in torchvision's single-tower layout and names, and a
32×32 variant for CIFAR.

`alexnet`: features.0 … features.12, avgpool, classifier.0 … classifier.6; 61,100,840
parameters at 1000 classes. convlab's adaptive pool only divides evenly, so the input must
bring the features to 6×6 (any input ≥ 63 pixels; 224 is the usual size).
"""

from __future__ import annotations

from collections import OrderedDict

from .. import nn


def alexnet(num_classes=1000, in_channels=3, dropout=0.5):
    """torchvision's AlexNet: five convolutions, three max-pools, three dense layers."""
    features = nn.Sequential(
        nn.Conv2d(in_channels, 64, 11, stride=4, padding=2), nn.ReLU(),  # (64, 55, 55)
        nn.MaxPool2d(3, stride=2),  # (64, 27, 27)
        nn.Conv2d(64, 192, 5, padding=2), nn.ReLU(),
        nn.MaxPool2d(3, stride=2),  # (192, 13, 13)
        nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(),
        nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(),
        nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(),
        nn.MaxPool2d(3, stride=2),  # (256, 6, 6)
    )
    classifier = nn.Sequential(
        nn.Dropout(dropout), nn.Linear(256 * 6 * 6, 4096), nn.ReLU(),
        nn.Dropout(dropout), nn.Linear(4096, 4096), nn.ReLU(),
        nn.Linear(4096, num_classes),
    )
    return nn.Sequential(OrderedDict(
        features=features, avgpool=nn.AdaptiveAvgPool2d((6, 6)), flatten=nn.Flatten(), classifier=classifier,
    ))


def alexnet_cifar(num_classes=10, in_channels=3):
    """AlexNet's five convolutions shrunk to 32×32 images, one dense layer on the 256 features
    (the CIFAR AlexNet of bearpaw/pytorch-classification: 2.47 M parameters at 10 classes)."""
    features = nn.Sequential(
        nn.Conv2d(in_channels, 64, 11, stride=4, padding=5), nn.ReLU(),  # (64, 8, 8)
        nn.MaxPool2d(2, stride=2),  # (64, 4, 4)
        nn.Conv2d(64, 192, 5, padding=2), nn.ReLU(),
        nn.MaxPool2d(2, stride=2),  # (192, 2, 2)
        nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(),
        nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(),
        nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(),
        nn.MaxPool2d(2, stride=2),  # (256, 1, 1)
    )
    return nn.Sequential(OrderedDict(
        features=features, flatten=nn.Flatten(), classifier=nn.Linear(256, num_classes),
    ))
