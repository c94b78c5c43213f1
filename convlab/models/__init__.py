"""The model zoo: every classic network built from convlab layers and blocks, by name.

    model = convlab.models.get("resnet20", num_classes=10)
    convlab.models.names()                   # every name, in the zoo's (roughly historical) order
    convlab.models.default_input_shape("resnet18")   # (3, 224, 224)
    convlab.models.min_input_shape("resnet18")       # (3, 32, 32)

`num_classes` and `in_channels` default to each model's own data set (1000 classes for the
ImageNet layouts, 10 for the CIFAR and MNIST ones; 1 channel for LeNet-5 and NiN, 3 for the
rest). Other keyword options are the builder's (e.g. `lenet5(activation="tanh")`,
`googlenet(aux_logits=True)`); `options(name)` lists them.

The smallest input is the smallest square image the network accepts: for networks with a
fixed-size dense head, the one that brings the features to the size the head needs; for
networks ending in global average pooling, the one whose last feature map is 1×1 with every
downsampling stage halving a whole map (the total stride).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field

from .alexnet import alexnet, alexnet_cifar
from .densenet import densenet121, densenet_bc_100_k12
from .googlenet import GoogLeNet, googlenet
from .lenet import lenet5
from .mobilenet import mobilenet_v1
from .nin import nin
from .resnet import resnet_cifar, resnet_imagenet
from .vgg import vgg, vgg8_bn_cifar


@dataclass(frozen=True)
class _Entry:
    build: Callable
    about: str
    input_size: int | Callable  # default square input size, or a function of the options
    min_size: int | Callable  # smallest square input size, or a function of the options
    fixed: dict = field(default_factory=dict)  # builder arguments that the name pins down
    num_classes: int = 10
    in_channels: int = 3

    def size(self, which, options):
        value = self.input_size if which == "default" else self.min_size
        return value(options) if callable(value) else value


def _googlenet_min_size(options):
    # The auxiliary heads' 5×5/3 pool must turn inception4a's map into 4×4: inputs 223–270.
    return 223 if options.get("aux_logits") else 32


_ZOO = {
    "lenet5": _Entry(lenet5, "LeNet-5 (1998) for 28×28 digits: 2 conv + 3 dense, 61,706 parameters",
                     lambda o: o.get("input_size", 28), lambda o: o.get("input_size", 28), in_channels=1),
    "alexnet": _Entry(alexnet, "AlexNet, torchvision layout, 224×224", 224, 63, num_classes=1000),
    "alexnet_cifar": _Entry(alexnet_cifar, "AlexNet's five convolutions for 32×32 images", 32, 29),
}
for _depth in (11, 13, 16, 19):
    for _bn in (False, True):
        _suffix = "_bn" if _bn else ""
        _ZOO[f"vgg{_depth}{_suffix}"] = _Entry(
            vgg, f"VGG-{_depth}{' with batch norm' if _bn else ''}, torchvision layout, 224×224", 224, 32,
            fixed=dict(depth=_depth, batch_norm=_bn, layout="imagenet"), num_classes=1000)
for _depth in (11, 13, 16, 19):
    for _bn in (False, True):
        _suffix = "_bn" if _bn else ""
        _ZOO[f"vgg{_depth}{_suffix}_cifar"] = _Entry(
            vgg, f"VGG-{_depth}{' with batch norm' if _bn else ''} features, global pool, one dense layer; "
            "32×32", 32, 32, fixed=dict(depth=_depth, batch_norm=_bn, layout="cifar"))
_ZOO.update({
    "vgg8_bn_cifar": _Entry(vgg8_bn_cifar,
                            "small VGG with batch norm (6 conv + 2 dense) for quick CIFAR runs", 32, 32),
    "nin": _Entry(nin, "Network in Network (d2l layout): 1×1 convolutions, global average pooling",
                  224, 67, in_channels=1),
    "googlenet": _Entry(googlenet, "GoogLeNet / Inception v1, torchvision layout (aux_logits option)",
                        224, _googlenet_min_size, num_classes=1000),
    "resnet18": _Entry(resnet_imagenet, "ResNet-18, torchvision layout", 224, 32, dict(depth=18), 1000),
    "resnet34": _Entry(resnet_imagenet, "ResNet-34, torchvision layout", 224, 32, dict(depth=34), 1000),
    "resnet50": _Entry(resnet_imagenet, "ResNet-50 (bottleneck, v1.5), torchvision layout", 224, 32,
                       dict(depth=50), 1000),
})
for _depth in (20, 32, 44, 56, 110):
    _ZOO[f"resnet{_depth}"] = _Entry(resnet_cifar, f"CIFAR ResNet-{_depth} (He et al. 2016, shortcut A)",
                                     32, 4, dict(depth=_depth))
for _depth in (20, 56):
    _ZOO[f"plain{_depth}"] = _Entry(resnet_cifar, f"CIFAR plain-{_depth}: ResNet-{_depth} without shortcuts",
                                    32, 4, dict(depth=_depth, residual=False))
_ZOO.update({
    "se_resnet20": _Entry(resnet_cifar, "CIFAR ResNet-20 with squeeze-excite gates (reduction 16)", 32, 4,
                          dict(depth=20, se_reduction=16)),
    "densenet121": _Entry(densenet121, "DenseNet-121, torchvision layout", 224, 32, num_classes=1000),
    "densenet_bc_100_k12": _Entry(densenet_bc_100_k12, "CIFAR DenseNet-BC, depth 100, growth 12", 32, 4),
    "mobilenet_v1": _Entry(mobilenet_v1, "MobileNet v1: depthwise-separable convolutions, 224×224",
                           224, lambda o: 32 // (2 // o.get("stem_stride", 2)), num_classes=1000),
    "mobilenet_v1_cifar": _Entry(mobilenet_v1, "MobileNet v1 with a stride-1 stem, for 32×32 images",
                                 32, 16, dict(stem_stride=1)),
})
del _depth, _bn, _suffix


def names():
    """Every model name, in the zoo's order."""
    return list(_ZOO)


def _entry(name):
    if name not in _ZOO:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(_ZOO)}")
    return _ZOO[name]


def options(name):
    """The keyword options `get(name, ...)` accepts besides num_classes and in_channels,
    with their defaults."""
    entry = _entry(name)
    params = inspect.signature(entry.build).parameters
    return {k: p.default for k, p in params.items()
            if k not in entry.fixed and k not in ("num_classes", "in_channels")}


def _check_options(name, given):
    allowed = options(name)
    unknown = [k for k in given if k not in allowed]
    if unknown:
        raise ValueError(
            f"model {name!r} has no option {', '.join(map(repr, unknown))}; "
            f"its options are: {', '.join(allowed) or 'none'}"
        )


def describe(name):
    """A one-line description of the model."""
    return _entry(name).about


def get(name, num_classes=None, in_channels=None, **options):
    """Build the model `name` with fresh weights (drawn from convlab's seeded RNG)."""
    entry = _entry(name)
    _check_options(name, options)
    num_classes = entry.num_classes if num_classes is None else num_classes
    in_channels = entry.in_channels if in_channels is None else in_channels
    for arg, value in (("num_classes", num_classes), ("in_channels", in_channels)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"model {name!r}: {arg} must be a positive integer, got {value!r}")
    return entry.build(num_classes=num_classes, in_channels=in_channels, **entry.fixed, **options)


def default_input_shape(name, in_channels=None, **options):
    """(C, H, W) of the images the model was designed for."""
    entry = _entry(name)
    _check_options(name, options)
    size = entry.size("default", options)
    return (entry.in_channels if in_channels is None else in_channels, size, size)


def min_input_shape(name, in_channels=None, **options):
    """(C, H, W) of the smallest square input the model accepts (see the module docstring)."""
    entry = _entry(name)
    _check_options(name, options)
    size = entry.size("min", options)
    return (entry.in_channels if in_channels is None else in_channels, size, size)


__all__ = ["get", "names", "describe", "options", "default_input_shape", "min_input_shape", "GoogLeNet",
           "alexnet", "alexnet_cifar", "densenet121", "densenet_bc_100_k12", "googlenet", "lenet5",
           "mobilenet_v1", "nin", "resnet_cifar", "resnet_imagenet", "vgg", "vgg8_bn_cifar"]
