"""The reference implementations' weight-initialisation recipes, applied to a built model.

Layers start with PyTorch's default (uniform ±1/√fan_in) and batch norm with weight 1, bias 0;
a family re-draws its convolutions and dense layers the way its reference code does.
"""

from __future__ import annotations

from .. import nn
from ..nn import init


def init_convolutions(model, scheme="kaiming_fan_out", std=None):
    """Re-draw every Conv2d weight and zero its bias.

    scheme: "kaiming_fan_out" (torchvision's ResNet, VGG, MobileNet), "kaiming_fan_in"
    (torchvision's DenseNet), "xavier_uniform" (d2l) or "normal" (GoogLeNet, with `std`).
    """
    for m in model.modules():
        if not isinstance(m, nn.Conv2d):
            continue
        if scheme == "kaiming_fan_out":
            init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif scheme == "kaiming_fan_in":
            init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
        elif scheme == "xavier_uniform":
            init.xavier_uniform_(m.weight)
        elif scheme == "normal":
            init.normal_(m.weight, 0.0, std)
        else:
            raise ValueError(
                "init_convolutions: scheme must be 'kaiming_fan_out', 'kaiming_fan_in', "
                f"'xavier_uniform' or 'normal', got {scheme!r}"
            )
        if m.bias is not None:
            init.zeros_(m.bias)


def init_linears(model, scheme="normal", std=0.01):
    """Zero every Linear bias and re-draw its weight: "normal" (with `std`), "xavier_uniform",
    or "default" to keep PyTorch's default draw (torchvision's DenseNet)."""
    for m in model.modules():
        if not isinstance(m, nn.Linear):
            continue
        if scheme == "default":
            pass
        elif scheme == "normal":
            init.normal_(m.weight, 0.0, std)
        elif scheme == "xavier_uniform":
            init.xavier_uniform_(m.weight)
        else:
            raise ValueError(
                f"init_linears: scheme must be 'default', 'normal' or 'xavier_uniform', got {scheme!r}")
        if m.bias is not None:
            init.zeros_(m.bias)
