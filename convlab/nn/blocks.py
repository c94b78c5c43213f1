"""The building blocks of the classic convnets: residual (basic, bottleneck), dense block and
transition, inception, squeeze-excite, NiN and depthwise-separable convolution.

Each block's backward is written out by hand beside its forward, following the data flow:
a residual sum sends the same gradient down both paths; a concatenation splits it by channel.
"""

from __future__ import annotations

from collections import OrderedDict

from .. import backend
from .. import functional as F
from .layers import (
    AvgPool2d,
    BatchNorm2d,
    Conv2d,
    Dropout,
    GlobalAvgPool2d,
    Linear,
    MaxPool2d,
    ReLU,
    Sigmoid,
)
from .module import Module, Sequential, then_relu


def _sum_grads(a, b):
    """Add two gradient contributions; None (a layer fed by the data itself) means not needed."""
    if a is None or b is None:
        return None
    return F.add(a, b)


class BasicConv2d(Module):
    """Convolution (no bias) → batch norm → ReLU, with torchvision's names `conv`, `bn`.

    With batch_norm=False the convolution has a bias and there is no `bn`.
    """

    def __init__(self, in_channels, out_channels, batch_norm=True, eps=0.001, **conv_kwargs):
        super().__init__()
        self.conv = Conv2d(in_channels, out_channels, bias=not batch_norm, **conv_kwargs)
        if batch_norm:
            self.bn = BatchNorm2d(out_channels, eps=eps)
        self.relu = ReLU()

    def forward(self, x):
        if "bn" in self._modules:
            return then_relu(self.bn, self.relu, self.conv(x))
        return then_relu(self.conv, self.relu, x)

    def backward(self, dy):
        dy = self.relu.backward(dy)
        if "bn" in self._modules:
            dy = self.bn.backward(dy)
        return self.conv.backward(dy)


class _ZeroPadShortcut(Module):
    """He et al.'s option A: subsample by the stride and pad the new channels with zeros."""

    def __init__(self, in_channels, out_channels, stride):
        super().__init__()
        self.in_channels, self.out_channels, self.stride = in_channels, out_channels, stride
        extra = out_channels - in_channels
        self.lo, self.hi = extra // 2, extra - extra // 2

    def forward(self, x):
        xp = backend.get_array_module(x)
        s = self.stride
        sub = x[:, :, ::s, ::s]
        n, c, h, w = sub.shape
        # channels-last memory, like every conv output, so the residual sum streams both operands
        out = xp.zeros((n, h, w, self.out_channels), dtype=x.dtype).transpose(0, 3, 1, 2)
        out[:, self.lo:self.lo + c] = sub
        self._cache = x.shape
        return out

    def backward(self, dy):
        xp = backend.get_array_module(dy)
        shape = self._need_cache()
        n, c, h, w = shape
        dx = xp.zeros((n, h, w, c), dtype=dy.dtype).transpose(0, 3, 1, 2)  # channels-last, as above
        s = self.stride
        dx[:, :, ::s, ::s] = dy[:, self.lo:self.lo + shape[1]]
        return dx


def _shortcut(kind, in_channels, out_channels, stride):
    """The shortcut module for a residual block; None means the identity."""
    if kind in (None, "none"):
        return None
    if stride == 1 and in_channels == out_channels:
        return None
    if kind == "A":
        if out_channels < in_channels:
            raise ValueError(f"shortcut 'A' cannot reduce channels ({in_channels} -> {out_channels})")
        return _ZeroPadShortcut(in_channels, out_channels, stride)
    if kind == "B":
        return Sequential(Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                          BatchNorm2d(out_channels))
    raise ValueError(f"shortcut must be 'A' (zero padding), 'B' (projection) or 'none', got {kind!r}")


class _Residual(Module):
    """Shared plumbing: out = relu(body(x) + shortcut(x)); `residual=False` drops the sum."""

    def _init_shortcut(self, in_channels, out_channels, stride, shortcut, downsample, residual):
        self.residual = residual
        self.relu_out = ReLU()
        if not residual:
            return
        if downsample is None:
            downsample = _shortcut(shortcut, in_channels, out_channels, stride)
        if downsample is None and (stride != 1 or in_channels != out_channels):
            raise ValueError(
                f"{type(self).__name__}: the shape changes ({in_channels}→{out_channels} channels, "
                f"stride {stride}) so the shortcut must be 'A' or 'B', not {shortcut!r}"
            )
        if downsample is not None:
            self.downsample = downsample

    def _join(self, x, out):
        if not self.residual:
            return self.relu_out(out)
        sc = self.downsample(x) if "downsample" in self._modules else x
        return self.relu_out(F.add(out, sc))

    def _split(self, dy):
        """Gradient at the sum, and the shortcut path's dx (None for a plain block)."""
        d = self.relu_out.backward(dy)
        if not self.residual:
            return d, None
        return d, (self.downsample.backward(d) if "downsample" in self._modules else d)


class BasicBlock(_Residual):
    """Two 3×3 convolutions with batch norm and a shortcut (torchvision's names and layout).

    shortcut: "B" projects with a 1×1 conv + BN when the shape changes, "A" pads with zeros;
    residual=False gives the "plain" block of the degradation experiment; se_reduction adds
    a squeeze-excite gate before the sum.
    """

    expansion = 1

    def __init__(self, inplanes, planes, stride=1, downsample=None, shortcut="B", residual=True,
                 se_reduction=None):
        super().__init__()
        self.conv1 = Conv2d(inplanes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = BatchNorm2d(planes)
        self.relu = ReLU()
        self.conv2 = Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = BatchNorm2d(planes)
        if se_reduction:
            self.se = SqueezeExcite(planes, se_reduction)
        self._init_shortcut(inplanes, planes, stride, shortcut, downsample, residual)

    def forward(self, x):
        out = then_relu(self.bn1, self.relu, self.conv1(x))
        out = self.bn2(self.conv2(out))
        if "se" in self._modules:
            out = self.se(out)
        return self._join(x, out)

    def backward(self, dy):
        d, dx_short = self._split(dy)
        if "se" in self._modules:
            d = self.se.backward(d)
        d = self.conv1.backward(self.bn1.backward(self.relu.backward(self.conv2.backward(self.bn2.backward(d)))))
        return d if not self.residual else _sum_grads(d, dx_short)


class Bottleneck(_Residual):
    """1×1 reduce → 3×3 (strided) → 1×1 expand ×4, with a shortcut (torchvision's ResNet v1.5)."""

    expansion = 4

    def __init__(self, inplanes, planes, stride=1, downsample=None, shortcut="B", residual=True,
                 groups=1, base_width=64):
        super().__init__()
        width = int(planes * (base_width / 64.0)) * groups
        self.conv1 = Conv2d(inplanes, width, 1, bias=False)
        self.bn1 = BatchNorm2d(width)
        self.relu1 = ReLU()
        self.conv2 = Conv2d(width, width, 3, stride=stride, padding=1, groups=groups, bias=False)
        self.bn2 = BatchNorm2d(width)
        self.relu2 = ReLU()
        self.conv3 = Conv2d(width, planes * self.expansion, 1, bias=False)
        self.bn3 = BatchNorm2d(planes * self.expansion)
        self._init_shortcut(inplanes, planes * self.expansion, stride, shortcut, downsample, residual)

    def forward(self, x):
        out = then_relu(self.bn1, self.relu1, self.conv1(x))
        out = then_relu(self.bn2, self.relu2, self.conv2(out))
        return self._join(x, self.bn3(self.conv3(out)))

    def backward(self, dy):
        d, dx_short = self._split(dy)
        d = self.relu2.backward(self.conv3.backward(self.bn3.backward(d)))
        d = self.relu1.backward(self.conv2.backward(self.bn2.backward(d)))
        d = self.conv1.backward(self.bn1.backward(d))
        return d if not self.residual else _sum_grads(d, dx_short)


class Concat(Module):
    """Run several branches on the same input and concatenate their outputs along channels."""

    def __init__(self, branches):
        super().__init__()
        for name, m in branches.items():
            self.add_module(name, m)

    def forward(self, x):
        xp = backend.get_array_module(x)
        outs = [m(x) for m in self._modules.values()]
        sizes = {name: o.shape[2:] for name, o in zip(self._modules, outs)}
        if len(set(sizes.values())) > 1:
            raise ValueError(
                f"{type(self).__name__}: every branch must keep the same spatial size to be "
                f"concatenated, got {sizes} for input {tuple(x.shape)}"
            )
        self._cache = [o.shape[1] for o in outs]
        return xp.concatenate(outs, axis=1)

    def backward(self, dy):
        widths = self._need_cache()
        dx, start = None, 0
        for m, c in zip(self._modules.values(), widths):
            g = m.backward(dy[:, start:start + c])
            dx = g if start == 0 else _sum_grads(dx, g)
            start += c
        return dx


class Inception(Concat):
    """GoogLeNet's inception block: 1×1 | 1×1→3×3 | 1×1→5×5 | 3×3 max-pool→1×1, concatenated.

    Branch names follow torchvision (branch1..branch4). torchvision's GoogLeNet uses a 3×3
    kernel in branch3; the paper's 5×5 is the default here (branch3_kernel_size).
    """

    def __init__(self, in_channels, ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5, pool_proj,
                 batch_norm=True, branch3_kernel_size=5):
        k = branch3_kernel_size

        def unit(cin, cout, **kw):
            return BasicConv2d(cin, cout, batch_norm=batch_norm, **kw)

        super().__init__(OrderedDict(
            branch1=unit(in_channels, ch1x1, kernel_size=1),
            branch2=Sequential(unit(in_channels, ch3x3red, kernel_size=1),
                               unit(ch3x3red, ch3x3, kernel_size=3, padding=1)),
            branch3=Sequential(unit(in_channels, ch5x5red, kernel_size=1),
                               unit(ch5x5red, ch5x5, kernel_size=k, padding=k // 2)),
            branch4=Sequential(MaxPool2d(3, stride=1, padding=1, ceil_mode=True),
                               unit(in_channels, pool_proj, kernel_size=1)),
        ))
        self.out_channels = ch1x1 + ch3x3 + ch5x5 + pool_proj


class DenseLayer(Module):
    """BN → ReLU → 1×1 conv (bn_size·k) → BN → ReLU → 3×3 conv (k), output concatenated to the
    input (torchvision's names: norm1, relu1, conv1, norm2, relu2, conv2)."""

    def __init__(self, num_input_features, growth_rate, bn_size=4, drop_rate=0.0):
        super().__init__()
        self.norm1 = BatchNorm2d(num_input_features)
        self.relu1 = ReLU()
        self.conv1 = Conv2d(num_input_features, bn_size * growth_rate, 1, bias=False)
        self.norm2 = BatchNorm2d(bn_size * growth_rate)
        self.relu2 = ReLU()
        self.conv2 = Conv2d(bn_size * growth_rate, growth_rate, 3, padding=1, bias=False)
        if drop_rate > 0:
            self.dropout = Dropout(drop_rate)
        self.num_input_features = num_input_features

    def forward(self, x):
        xp = backend.get_array_module(x)
        new = self.conv1(self.relu1(self.norm1(x)))
        new = self.conv2(self.relu2(self.norm2(new)))
        if "dropout" in self._modules:
            new = self.dropout(new)
        self._cache = True
        return xp.concatenate([x, new], axis=1)

    def backward(self, dy):
        self._need_cache()
        c = self.num_input_features
        d = dy[:, c:]
        if "dropout" in self._modules:
            d = self.dropout.backward(d)
        d = self.norm2.backward(self.relu2.backward(self.conv2.backward(d)))
        d = self.norm1.backward(self.relu1.backward(self.conv1.backward(d)))
        return _sum_grads(dy[:, :c], d)


class DenseBlock(Sequential):
    """`num_layers` dense layers; each sees the concatenation of all earlier feature maps."""

    def __init__(self, num_layers, num_input_features, growth_rate, bn_size=4, drop_rate=0.0):
        super().__init__(OrderedDict(
            (f"denselayer{i + 1}",
             DenseLayer(num_input_features + i * growth_rate, growth_rate, bn_size, drop_rate))
            for i in range(num_layers)
        ))
        self.out_channels = num_input_features + num_layers * growth_rate


class Transition(Sequential):
    """Between dense blocks: BN → ReLU → 1×1 conv → 2×2 average pool (norm, relu, conv, pool)."""

    def __init__(self, num_input_features, num_output_features):
        super().__init__(OrderedDict(
            norm=BatchNorm2d(num_input_features),
            relu=ReLU(),
            conv=Conv2d(num_input_features, num_output_features, 1, bias=False),
            pool=AvgPool2d(2, stride=2),
        ))


class SqueezeExcite(Module):
    """Channel gate: s = σ(W2·relu(W1·mean_hw(x))); out = x · s (names fc1, fc2)."""

    def __init__(self, channels, reduction=16):
        super().__init__()
        hidden = max(1, channels // reduction)
        self.pool = GlobalAvgPool2d()
        self.fc1 = Linear(channels, hidden)
        self.relu = ReLU()
        self.fc2 = Linear(hidden, channels)
        self.gate = Sigmoid()

    def forward(self, x):
        s = self.gate(self.fc2(self.relu(self.fc1(self.pool(x)))))  # (N, C)
        self._cache = (x, s)
        return x * s[:, :, None, None]

    def backward(self, dy):
        x, s = self._need_cache()
        ds = (dy * x).sum(axis=(2, 3))  # (N, C)
        d_pool = self.fc1.backward(self.relu.backward(self.fc2.backward(self.gate.backward(ds))))
        return dy * s[:, :, None, None] + self.pool.backward(d_pool)


class NiNBlock(Sequential):
    """Network in Network: a k×k convolution followed by two 1×1 convolutions, each with ReLU."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0):
        super().__init__(
            Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding), ReLU(),
            Conv2d(out_channels, out_channels, 1), ReLU(),
            Conv2d(out_channels, out_channels, 1), ReLU(),
        )


class DepthwiseSeparableConv(Sequential):
    """MobileNet's unit: 3×3 depthwise conv → BN → ReLU → 1×1 pointwise conv → BN → ReLU."""

    def __init__(self, in_channels, out_channels, stride=1, kernel_size=3):
        super().__init__(OrderedDict(
            depthwise=Conv2d(in_channels, in_channels, kernel_size, stride=stride,
                             padding=kernel_size // 2, groups=in_channels, bias=False),
            bn1=BatchNorm2d(in_channels),
            relu1=ReLU(),
            pointwise=Conv2d(in_channels, out_channels, 1, bias=False),
            bn2=BatchNorm2d(out_channels),
            relu2=ReLU(),
        ))
