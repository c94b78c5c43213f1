"""Network in Network (Lin et al., 2014), d2l's layout: NiN blocks (a k×k convolution then two
1×1 convolutions acting as a per-pixel MLP) and global average pooling instead of dense layers.

The last NiN block outputs one map per class; averaging each map gives the logits. Built for
224×224 inputs (d2l resizes Fashion-MNIST); the smallest input is 67×67.
"""

from __future__ import annotations

from .. import nn
from .initialization import init_convolutions


def nin(num_classes=10, in_channels=1, dropout=0.5):
    """d2l's NiN: 96@11×11/4, 256@5×5, 384@3×3 blocks with 3×3/2 max-pools, then a class block."""
    model = nn.Sequential(
        nn.NiNBlock(in_channels, 96, kernel_size=11, stride=4, padding=0),  # (96, 54, 54)
        nn.MaxPool2d(3, stride=2),  # (96, 26, 26)
        nn.NiNBlock(96, 256, kernel_size=5, stride=1, padding=2),
        nn.MaxPool2d(3, stride=2),  # (256, 12, 12)
        nn.NiNBlock(256, 384, kernel_size=3, stride=1, padding=1),
        nn.MaxPool2d(3, stride=2),  # (384, 5, 5)
        nn.Dropout(dropout),
        nn.NiNBlock(384, num_classes, kernel_size=3, stride=1, padding=1),  # (classes, 5, 5)
        nn.GlobalAvgPool2d(),  # (classes,)
    )
    init_convolutions(model, "xavier_uniform")
    return model
