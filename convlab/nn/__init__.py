"""Layers and blocks with hand-written backward passes, PyTorch's names and shapes."""

from . import init
from .blocks import (
    BasicBlock,
    BasicConv2d,
    Bottleneck,
    Concat,
    DenseBlock,
    DenseLayer,
    DepthwiseSeparableConv,
    Inception,
    NiNBlock,
    SqueezeExcite,
    Transition,
)
from .layers import (
    AdaptiveAvgPool2d,
    AvgPool2d,
    BatchNorm1d,
    BatchNorm2d,
    Conv2d,
    CrossEntropyLoss,
    Dropout,
    Flatten,
    GlobalAvgPool2d,
    Identity,
    LeakyReLU,
    Linear,
    MaxPool2d,
    ReLU,
    Sigmoid,
    Tanh,
)
from .module import Module, Parameter, Sequential

__all__ = [name for name in dir() if not name.startswith("_")]
