"""Residual networks (He et al., 2016): torchvision's ImageNet ResNets, the CIFAR ResNets of the
paper's section 4.2, their "plain" twins without shortcuts, and a squeeze-excite ResNet-20.

ImageNet (`resnet18/34/50`): torchvision's names — conv1, bn1, relu, maxpool, layer1 … layer4,
avgpool, fc — so a torchvision state_dict loads directly; 11,689,512 / 21,797,672 /
25,557,032 parameters at 1000 classes. Global average pooling lets any input of 32 pixels or
more through.

CIFAR (`resnet20/32/44/56/110`, depth 6n+2): a 3×3 conv with 16 channels, three stages of n
basic blocks with 16, 32 and 64 channels (stride 2 between stages), global average pooling
and a dense layer. The default shortcut is the paper's option A (subsample, zero-pad the new
channels: no parameters); resnet20 has 269,722 parameters, resnet56 853,018, resnet110
1,727,962. `plain20` / `plain56` drop the shortcuts (the degradation experiment);
`se_resnet20` adds a squeeze-excite gate (Hu et al., 2018) to every block.

Weights start as in torchvision: Kaiming-normal (fan_out, ReLU) convolutions, BN weight 1 and
bias 0, PyTorch's default for the dense layer.
"""

from __future__ import annotations

from collections import OrderedDict

from .. import nn
from .initialization import init_convolutions

# ImageNet depths: (block, blocks per stage)
_IMAGENET = {18: (nn.BasicBlock, (2, 2, 2, 2)), 34: (nn.BasicBlock, (3, 4, 6, 3)),
             50: (nn.Bottleneck, (3, 4, 6, 3))}


def _stage(block, inplanes, planes, blocks, stride, **block_kwargs):
    """`blocks` residual blocks; the first changes the width and/or strides."""
    layers = [block(inplanes, planes, stride=stride, **block_kwargs)]
    for _ in range(1, blocks):
        layers.append(block(planes * block.expansion, planes, **block_kwargs))
    return nn.Sequential(*layers)


def _zero_init_last_norm(model):
    """Start every residual branch at zero (Goyal et al.), so each block is the identity."""
    for m in model.modules():
        if isinstance(m, nn.Bottleneck):
            nn.init.zeros_(m.bn3.weight)
        elif isinstance(m, nn.BasicBlock):
            nn.init.zeros_(m.bn2.weight)


def resnet_imagenet(depth, num_classes=1000, in_channels=3, zero_init_residual=False):
    """torchvision's ResNet-18/34/50 (v1.5: the bottleneck strides in its 3×3 convolution)."""
    if depth not in _IMAGENET:
        raise ValueError(f"resnet_imagenet: depth must be one of {sorted(_IMAGENET)}, got {depth!r}")
    block, counts = _IMAGENET[depth]
    stages, inplanes = OrderedDict(), 64
    for i, (planes, blocks) in enumerate(zip((64, 128, 256, 512), counts)):
        stages[f"layer{i + 1}"] = _stage(block, inplanes, planes, blocks, stride=1 if i == 0 else 2)
        inplanes = planes * block.expansion
    model = nn.Sequential(OrderedDict(
        conv1=nn.Conv2d(in_channels, 64, 7, stride=2, padding=3, bias=False),  # (64, 112, 112)
        bn1=nn.BatchNorm2d(64),
        relu=nn.ReLU(),
        maxpool=nn.MaxPool2d(3, stride=2, padding=1),  # (64, 56, 56)
        **stages,  # (512·expansion, 7, 7)
        avgpool=nn.GlobalAvgPool2d(),
        fc=nn.Linear(inplanes, num_classes),
    ))
    init_convolutions(model, "kaiming_fan_out")
    if zero_init_residual:
        _zero_init_last_norm(model)
    return model


def resnet_cifar(depth, num_classes=10, in_channels=3, shortcut="A", residual=True, se_reduction=None):
    """He et al.'s CIFAR ResNet of depth 6n+2 (names conv1, bn1, relu, layer1-3, avgpool, fc).

    shortcut: "A" (zero-padding, parameter-free) or "B" (1×1 projection) where the shape
    changes; residual=False gives the plain network; se_reduction adds squeeze-excite gates.
    """
    if (depth - 2) % 6 or depth < 8:
        raise ValueError(
            f"resnet_cifar: depth must be 6n+2 with n ≥ 1 (20, 32, 44, 56, 110, …), got {depth!r}")
    n = (depth - 2) // 6
    kwargs = dict(shortcut=shortcut, residual=residual, se_reduction=se_reduction)
    model = nn.Sequential(OrderedDict(
        conv1=nn.Conv2d(in_channels, 16, 3, padding=1, bias=False),  # (16, 32, 32)
        bn1=nn.BatchNorm2d(16),
        relu=nn.ReLU(),
        layer1=_stage(nn.BasicBlock, 16, 16, n, stride=1, **kwargs),  # (16, 32, 32)
        layer2=_stage(nn.BasicBlock, 16, 32, n, stride=2, **kwargs),  # (32, 16, 16)
        layer3=_stage(nn.BasicBlock, 32, 64, n, stride=2, **kwargs),  # (64, 8, 8)
        avgpool=nn.GlobalAvgPool2d(),  # (64,)
        fc=nn.Linear(64, num_classes),
    ))
    init_convolutions(model, "kaiming_fan_out")
    return model
