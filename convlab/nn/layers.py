"""The layers: convolution, dense, pooling, batch norm, activations, dropout, flatten."""

from __future__ import annotations

import numpy as np

from .. import backend
from .. import functional as F
from ..functional.conv import _pair, resolve_padding
from . import init
from .module import Module, Parameter


def _empty(*shape):
    return backend.xp().zeros(shape, dtype=backend.default_dtype())


def _name(layer):
    """A layer's name for an error message: `layer` is the name or a function that makes it (the
    checks run on every forward, and formatting a Conv2d's description costs microseconds)."""
    return layer() if callable(layer) else layer


def _check_rank(layer, x, ndim, what):
    if getattr(x, "ndim", None) != ndim:
        raise ValueError(
            f"{_name(layer)}: expected a {ndim}-D input {what}, got shape {tuple(getattr(x, 'shape', ()))}"
        )


def _check_channels(layer, x, channels, axis=1):
    if x.shape[axis] != channels:
        raise ValueError(
            f"{_name(layer)}: expected {channels} input channels (axis {axis}), got {x.shape[axis]} "
            f"in input of shape {tuple(x.shape)}"
        )


class Conv2d(Module):
    """2-D cross-correlation with stride, padding (int, pair, "same", "valid"), dilation, groups."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1,
                 groups=1, bias=True):
        super().__init__()
        if in_channels % groups or out_channels % groups:
            raise ValueError(
                f"Conv2d: in_channels ({in_channels}) and out_channels ({out_channels}) "
                f"must both be divisible by groups ({groups})"
            )
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size = _pair(kernel_size, "kernel_size")
        self.stride = _pair(stride, "stride")
        self.dilation = _pair(dilation, "dilation")
        self.padding = padding if isinstance(padding, str) else _pair(padding, "padding")
        self._pads = resolve_padding(self.padding, self.kernel_size, self.stride, self.dilation)
        self.groups = groups
        self.input_grad = True  # set False on a network's first layer (see Module.skip_input_grad)
        self.weight = Parameter(_empty(out_channels, in_channels // groups, *self.kernel_size))
        self.bias = Parameter(_empty(out_channels)) if bias else None
        init.default_init_(self.weight, self.bias)

    def extra_repr(self):
        s = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}"
        if self.padding not in ((0, 0), "valid"):
            s += f", padding={self.padding}"
        if self.dilation != (1, 1):
            s += f", dilation={self.dilation}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        return s + ("" if self.bias is not None else ", bias=False")

    def _describe(self):
        return f"Conv2d({self.extra_repr()})"

    def output_shape(self, in_shape):
        c, h, w = in_shape
        pt, pb, pl, pr = self._pads
        (kh, kw), (sh, sw), (dh, dw) = self.kernel_size, self.stride, self.dilation
        return (self.out_channels, (h + pt + pb - dh * (kh - 1) - 1) // sh + 1,
                (w + pl + pr - dw * (kw - 1) - 1) // sw + 1)

    fuses_relu = True  # see Module.fuses_relu
    _relu_out = None  # the output, when forward applied a ReLU

    def forward(self, x, relu=False):
        _check_rank(self._describe, x, 4, "(N, C, H, W)")
        _check_channels(self._describe, x, self.in_channels)
        _, ho, wo = self.output_shape(x.shape[1:])
        if ho < 1 or wo < 1:
            raise ValueError(
                f"{self._describe()}: the kernel (dilated extent "
                f"{tuple(d * (k - 1) + 1 for d, k in zip(self.dilation, self.kernel_size))}) is larger "
                f"than the padded input {tuple(x.shape[2:])} + padding {self._pads}"
            )
        y, self._cache = F.conv2d(x, self.weight.data, None if self.bias is None else self.bias.data,
                                  self.stride, self.padding, self.dilation, self.groups, relu=relu)
        self._relu_out = y if relu else None
        return y

    def backward(self, dy):
        dx, dw, db = F.conv2d_backward(dy, self._need_cache(), need_dx=self.input_grad, relu_out=self._relu_out)
        self.weight.accumulate(dw)
        if self.bias is not None:
            self.bias.accumulate(db)
        return dx


class Linear(Module):
    """Dense layer y = x Wᵀ + b with weight (out_features, in_features)."""

    def __init__(self, in_features, out_features, bias=True):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.weight = Parameter(_empty(out_features, in_features))
        self.bias = Parameter(_empty(out_features)) if bias else None
        init.default_init_(self.weight, self.bias)

    def extra_repr(self):
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"

    def _describe(self):
        return f"Linear({self.extra_repr()})"

    def forward(self, x):
        _check_rank(self._describe, x, 2, "(N, features)")
        _check_channels(self._describe, x, self.in_features)
        y, self._cache = F.linear(x, self.weight.data, None if self.bias is None else self.bias.data)
        return y

    def backward(self, dy):
        dx, dw, db = F.linear_backward(dy, self._need_cache())
        self.weight.accumulate(dw)
        if self.bias is not None:
            self.bias.accumulate(db)
        return dx


class MaxPool2d(Module):
    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False):
        super().__init__()
        self.kernel_size = _pair(kernel_size, "kernel_size")
        self.stride = _pair(stride, "stride") if stride is not None else self.kernel_size
        self.padding = _pair(padding, "padding")
        self.ceil_mode = ceil_mode

    def extra_repr(self):
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}" + (
            ", ceil_mode=True" if self.ceil_mode else "")

    def _describe(self):
        return f"MaxPool2d({self.extra_repr()})"

    def forward(self, x):
        _check_rank(self._describe, x, 4, "(N, C, H, W)")
        y, self._cache = F.max_pool2d(x, self.kernel_size, self.stride, self.padding, self.ceil_mode)
        return y

    def backward(self, dy):
        return F.max_pool2d_backward(dy, self._need_cache())


class AvgPool2d(Module):
    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True):
        super().__init__()
        self.kernel_size = _pair(kernel_size, "kernel_size")
        self.stride = _pair(stride, "stride") if stride is not None else self.kernel_size
        self.padding = _pair(padding, "padding")
        self.ceil_mode = ceil_mode
        self.count_include_pad = count_include_pad

    def extra_repr(self):
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"

    def _describe(self):
        return f"AvgPool2d({self.extra_repr()})"

    def forward(self, x):
        _check_rank(self._describe, x, 4, "(N, C, H, W)")
        y, self._cache = F.avg_pool2d(x, self.kernel_size, self.stride, self.padding, self.ceil_mode,
                                      self.count_include_pad)
        return y

    def backward(self, dy):
        return F.avg_pool2d_backward(dy, self._need_cache())


class GlobalAvgPool2d(Module):
    """Mean over each feature map: (N, C, H, W) -> (N, C)."""

    def forward(self, x):
        _check_rank("GlobalAvgPool2d", x, 4, "(N, C, H, W)")
        y, self._cache = F.global_avg_pool2d(x)
        return y

    def backward(self, dy):
        return F.global_avg_pool2d_backward(dy, self._need_cache())


class AdaptiveAvgPool2d(Module):
    """PyTorch's adaptive average pooling: (N, C, H, W) -> (N, C, oh, ow) for any sizes."""

    def __init__(self, output_size):
        super().__init__()
        self.output_size = _pair(output_size, "output_size")

    def extra_repr(self):
        return f"output_size={self.output_size}"

    def forward(self, x):
        _check_rank(f"AdaptiveAvgPool2d({self.output_size})", x, 4, "(N, C, H, W)")
        y, self._cache = F.adaptive_avg_pool2d(x, self.output_size)
        return y

    def backward(self, dy):
        return F.adaptive_avg_pool2d_backward(dy, self._need_cache())


class _BatchNorm(Module):
    _ndim = None

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True, track_running_stats=True):
        super().__init__()
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        self.affine, self.track_running_stats = affine, track_running_stats
        xp = backend.xp()
        dt = backend.default_dtype()
        if affine:
            self.weight = Parameter(xp.ones(num_features, dtype=dt))
            self.bias = Parameter(xp.zeros(num_features, dtype=dt))
        else:
            self.weight = self.bias = None
        if track_running_stats:
            self.register_buffer("running_mean", xp.zeros(num_features, dtype=dt))
            self.register_buffer("running_var", xp.ones(num_features, dtype=dt))
            self.register_buffer("num_batches_tracked", xp.zeros((), dtype=np.int64))
        else:
            self.running_mean = self.running_var = self.num_batches_tracked = None

    def extra_repr(self):
        return f"{self.num_features}, eps={self.eps}, momentum={self.momentum}"

    fuses_relu = True  # see Module.fuses_relu
    _relu_out = None  # the output, when forward applied a ReLU

    def _describe(self):
        return f"{type(self).__name__}({self.num_features})"

    def forward(self, x, relu=False):
        _check_rank(self._describe, x, self._ndim, "(N, C, H, W)" if self._ndim == 4 else "(N, C)")
        _check_channels(self._describe, x, self.num_features)
        use_batch = self.training or not self.track_running_stats
        counting = self.training and self.track_running_stats
        tracked = int(self.num_batches_tracked) + 1 if counting and self.momentum is None else 0
        try:
            y, self._cache = F.batch_norm(
                x, None if self.weight is None else self.weight.data,
                None if self.bias is None else self.bias.data,
                self.running_mean, self.running_var, training=use_batch, momentum=self.momentum, eps=self.eps,
                num_batches_tracked=tracked, relu=relu)
        except ValueError as e:
            raise ValueError(f"{self._describe()}: {e}") from None
        if counting:
            self.num_batches_tracked += 1
        self._relu_out = y if relu else None
        return y

    def backward(self, dy):
        dx, dw, db = F.batch_norm_backward(dy, self._need_cache(), relu_out=self._relu_out)
        if self.affine:
            self.weight.accumulate(dw)
            self.bias.accumulate(db)
        return dx


class BatchNorm1d(_BatchNorm):
    """Batch norm over (N, C) features."""

    _ndim = 2


class BatchNorm2d(_BatchNorm):
    """Batch norm over (N, C, H, W) feature maps, per channel."""

    _ndim = 4


class _Pointwise(Module):
    _fn = None
    _bwd = None

    def forward(self, x):
        y, self._cache = type(self)._fn(x)
        return y

    def backward(self, dy):
        return type(self)._bwd(dy, self._need_cache())


class ReLU(_Pointwise):
    """max(x, 0). When the layer before it applied it already (see Module.fuses_relu), its
    forward did not run and its backward passes dy through: that layer masks it."""

    _fn, _bwd = staticmethod(F.relu), staticmethod(F.relu_backward)
    absorbable = True

    def __init__(self, inplace=False):
        super().__init__()
        self._absorbed = False

    def forward(self, x):
        self._absorbed = False
        return super().forward(x)

    def backward(self, dy):
        return dy if self._absorbed else super().backward(dy)


class Sigmoid(_Pointwise):
    _fn, _bwd = staticmethod(F.sigmoid), staticmethod(F.sigmoid_backward)


class Tanh(_Pointwise):
    _fn, _bwd = staticmethod(F.tanh), staticmethod(F.tanh_backward)


class LeakyReLU(Module):
    def __init__(self, negative_slope=0.01, inplace=False):
        super().__init__()
        self.negative_slope = negative_slope

    def extra_repr(self):
        return f"negative_slope={self.negative_slope}"

    def forward(self, x):
        y, self._cache = F.leaky_relu(x, self.negative_slope)
        return y

    def backward(self, dy):
        return F.leaky_relu_backward(dy, self._need_cache())


class Dropout(Module):
    """Inverted dropout: active in train() mode, the identity in eval()."""

    def __init__(self, p=0.5, inplace=False):
        super().__init__()
        if not 0 <= p <= 1:
            raise ValueError(f"Dropout: p must be in [0, 1], got {p}")
        self.p = p

    def extra_repr(self):
        return f"p={self.p}"

    def forward(self, x):
        y, mask = F.dropout(x, self.p, self.training)
        self._cache = ("mask", mask)
        return y

    def backward(self, dy):
        return F.dropout_backward(dy, self._need_cache()[1])


class Flatten(Module):
    def __init__(self, start_dim=1):
        super().__init__()
        self.start_dim = start_dim

    def forward(self, x):
        y, self._cache = F.flatten(x, self.start_dim)
        return y

    def backward(self, dy):
        return F.flatten_backward(dy, self._need_cache())


class Identity(Module):
    def forward(self, x):
        self._cache = True
        return x

    def backward(self, dy):
        return dy


class CrossEntropyLoss(Module):
    """Softmax cross-entropy, mean over the batch: `forward(logits, labels) -> loss`,
    `backward() -> dlogits`."""

    def __init__(self, label_smoothing=0.0):
        super().__init__()
        if not 0 <= label_smoothing < 1:
            raise ValueError(f"CrossEntropyLoss: label_smoothing must be in [0, 1), got {label_smoothing}")
        self.label_smoothing = label_smoothing

    def forward(self, logits, labels):
        _check_rank("CrossEntropyLoss", logits, 2, "of logits (N, classes)")
        xp = backend.get_array_module(logits)
        labels = xp.asarray(labels)
        if labels.shape != (logits.shape[0],):
            raise ValueError(
                f"CrossEntropyLoss: expected labels of shape ({logits.shape[0]},), got {tuple(labels.shape)}"
            )
        if labels.dtype.kind not in "iu":
            raise ValueError(f"CrossEntropyLoss: labels must be integers, got dtype {labels.dtype}")
        k = logits.shape[1]
        if xp is np and labels.size and (labels.min() < 0 or labels.max() >= k):
            raise ValueError(
                f"CrossEntropyLoss: labels must lie in [0, {k - 1}] for {k} classes, "
                f"got values from {labels.min()} to {labels.max()}"
            )
        loss, self._cache = F.softmax_cross_entropy(logits, labels, self.label_smoothing)
        return loss

    def backward(self, dloss=1.0):
        return F.softmax_cross_entropy_backward(self._need_cache(), dloss)
