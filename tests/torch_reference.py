"""PyTorch as the oracle: torch.nn twins of convlab's blocks (same structure, same names) and a
comparison that copies convlab's weights into the twin and checks outputs, gradients and buffers.

The twin computes in float64 from convlab's float32 weights and inputs, so the tolerance measures
convlab's own float32 rounding rather than the sum of two implementations' rounding.

Import this only after `pytest.importorskip("torch")`.
"""

from collections import OrderedDict

import numpy as np
import torch
import torch.nn.functional as TF
from torch import nn as tnn

from convlab import backend
from tests.agreement import AGREEMENT_TOL, assert_agrees, assert_same_state, run_convlab

torch.set_num_threads(1)  # the tensors here are tiny; extra threads only contend with the test runner


# -- twins of convlab's blocks ---------------------------------------------------------------
class BasicConv2d(tnn.Module):
    def __init__(self, in_channels, out_channels, batch_norm=True, eps=0.001, **conv_kwargs):
        super().__init__()
        self.conv = tnn.Conv2d(in_channels, out_channels, bias=not batch_norm, **conv_kwargs)
        self.bn = tnn.BatchNorm2d(out_channels, eps=eps) if batch_norm else None
        self.relu = tnn.ReLU()

    def forward(self, x):
        x = self.conv(x)
        return self.relu(self.bn(x) if self.bn is not None else x)


def zero_pad_shortcut(x, out_channels, stride):
    """He et al.'s option A: subsample, then zero channels split evenly before and after."""
    extra = out_channels - x.shape[1]
    return TF.pad(x[:, :, ::stride, ::stride], (0, 0, 0, 0, extra // 2, extra - extra // 2))


def projection_shortcut(in_channels, out_channels, stride):
    return tnn.Sequential(tnn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                          tnn.BatchNorm2d(out_channels))


class SqueezeExcite(tnn.Module):
    def __init__(self, channels, reduction=16):
        super().__init__()
        hidden = max(1, channels // reduction)
        self.fc1 = tnn.Linear(channels, hidden)
        self.fc2 = tnn.Linear(hidden, channels)

    def forward(self, x):
        s = torch.sigmoid(self.fc2(torch.relu(self.fc1(x.mean(dim=(2, 3))))))
        return x * s[:, :, None, None]


class _Residual(tnn.Module):
    def _init_shortcut(self, in_channels, out_channels, stride, shortcut, residual):
        self.residual, self.stride, self.out_channels = residual, stride, out_channels
        self.zero_pad = False
        if residual and (stride != 1 or in_channels != out_channels):
            if shortcut == "B":
                self.downsample = projection_shortcut(in_channels, out_channels, stride)
            else:
                self.zero_pad = True

    def _join(self, x, out):
        if not self.residual:
            return torch.relu(out)
        if hasattr(self, "downsample"):
            sc = self.downsample(x)
        elif self.zero_pad:
            sc = zero_pad_shortcut(x, self.out_channels, self.stride)
        else:
            sc = x
        return torch.relu(out + sc)


class BasicBlock(_Residual):
    def __init__(self, inplanes, planes, stride=1, shortcut="B", residual=True, se_reduction=None):
        super().__init__()
        self.conv1 = tnn.Conv2d(inplanes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = tnn.BatchNorm2d(planes)
        self.conv2 = tnn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = tnn.BatchNorm2d(planes)
        self.se = SqueezeExcite(planes, se_reduction) if se_reduction else None
        self._init_shortcut(inplanes, planes, stride, shortcut, residual)

    def forward(self, x):
        out = self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))
        if self.se is not None:
            out = self.se(out)
        return self._join(x, out)


class Bottleneck(_Residual):
    def __init__(self, inplanes, planes, stride=1, shortcut="B", residual=True, groups=1, base_width=64):
        super().__init__()
        width = int(planes * (base_width / 64.0)) * groups
        self.conv1 = tnn.Conv2d(inplanes, width, 1, bias=False)
        self.bn1 = tnn.BatchNorm2d(width)
        self.conv2 = tnn.Conv2d(width, width, 3, stride=stride, padding=1, groups=groups, bias=False)
        self.bn2 = tnn.BatchNorm2d(width)
        self.conv3 = tnn.Conv2d(width, planes * 4, 1, bias=False)
        self.bn3 = tnn.BatchNorm2d(planes * 4)
        self._init_shortcut(inplanes, planes * 4, stride, shortcut, residual)

    def forward(self, x):
        out = torch.relu(self.bn1(self.conv1(x)))
        out = torch.relu(self.bn2(self.conv2(out)))
        return self._join(x, self.bn3(self.conv3(out)))


class Concat(tnn.Module):
    def __init__(self, branches):
        super().__init__()
        for name, m in branches.items():
            self.add_module(name, m)

    def forward(self, x):
        return torch.cat([m(x) for m in self.children()], dim=1)


class Inception(Concat):
    def __init__(self, in_channels, ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5, pool_proj, batch_norm=True,
                 branch3_kernel_size=5):
        k = branch3_kernel_size

        def unit(cin, cout, **kw):
            return BasicConv2d(cin, cout, batch_norm=batch_norm, **kw)

        super().__init__(OrderedDict(
            branch1=unit(in_channels, ch1x1, kernel_size=1),
            branch2=tnn.Sequential(unit(in_channels, ch3x3red, kernel_size=1),
                                   unit(ch3x3red, ch3x3, kernel_size=3, padding=1)),
            branch3=tnn.Sequential(unit(in_channels, ch5x5red, kernel_size=1),
                                   unit(ch5x5red, ch5x5, kernel_size=k, padding=k // 2)),
            branch4=tnn.Sequential(tnn.MaxPool2d(3, stride=1, padding=1, ceil_mode=True),
                                   unit(in_channels, pool_proj, kernel_size=1)),
        ))


class DenseLayer(tnn.Module):
    def __init__(self, num_input_features, growth_rate, bn_size=4):
        super().__init__()
        self.norm1 = tnn.BatchNorm2d(num_input_features)
        self.relu1 = tnn.ReLU()
        self.conv1 = tnn.Conv2d(num_input_features, bn_size * growth_rate, 1, bias=False)
        self.norm2 = tnn.BatchNorm2d(bn_size * growth_rate)
        self.relu2 = tnn.ReLU()
        self.conv2 = tnn.Conv2d(bn_size * growth_rate, growth_rate, 3, padding=1, bias=False)

    def forward(self, x):
        new = self.conv1(self.relu1(self.norm1(x)))
        return torch.cat([x, self.conv2(self.relu2(self.norm2(new)))], dim=1)


def DenseBlock(num_layers, num_input_features, growth_rate, bn_size=4):
    return tnn.Sequential(OrderedDict(
        (f"denselayer{i + 1}", DenseLayer(num_input_features + i * growth_rate, growth_rate, bn_size))
        for i in range(num_layers)))


def Transition(num_input_features, num_output_features):
    return tnn.Sequential(OrderedDict(
        norm=tnn.BatchNorm2d(num_input_features), relu=tnn.ReLU(),
        conv=tnn.Conv2d(num_input_features, num_output_features, 1, bias=False),
        pool=tnn.AvgPool2d(2, stride=2)))


def NiNBlock(in_channels, out_channels, kernel_size, stride=1, padding=0):
    return tnn.Sequential(
        tnn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding), tnn.ReLU(),
        tnn.Conv2d(out_channels, out_channels, 1), tnn.ReLU(),
        tnn.Conv2d(out_channels, out_channels, 1), tnn.ReLU())


def DepthwiseSeparableConv(in_channels, out_channels, stride=1, kernel_size=3):
    return tnn.Sequential(OrderedDict(
        depthwise=tnn.Conv2d(in_channels, in_channels, kernel_size, stride=stride, padding=kernel_size // 2,
                             groups=in_channels, bias=False),
        bn1=tnn.BatchNorm2d(in_channels), relu1=tnn.ReLU(),
        pointwise=tnn.Conv2d(in_channels, out_channels, 1, bias=False),
        bn2=tnn.BatchNorm2d(out_channels), relu2=tnn.ReLU()))


# -- weights in, results out -----------------------------------------------------------------
def copy_into_torch(model, twin):
    """Load convlab's state_dict into the PyTorch twin (keys and shapes must match exactly).

    The twin then runs in float64, so it is an exact reference for convlab's float32 results.
    """
    twin.float()
    state = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in model.state_dict().items()}
    twin.load_state_dict(state, strict=True)
    twin.double()
    twin.train(model.training)
    return twin


def run_torch(twin, x, dy, device="cpu"):
    """Forward and backward through the twin on `device`: (y, dx, {name: grad}, state_dict after)."""
    twin.to(device)
    xt = torch.tensor(np.array(backend.to_numpy(x), dtype=np.float64), device=device, requires_grad=True)
    y = twin(xt)
    y.backward(torch.tensor(np.array(backend.to_numpy(dy), dtype=np.float64), device=device))
    grads = {name: p.grad.cpu() for name, p in twin.named_parameters()}
    return y.detach().cpu(), xt.grad.cpu(), grads, {k: v.cpu() for k, v in twin.state_dict().items()}


def assert_same_as_torch(model, twin, x, rng, what, tol=AGREEMENT_TOL, device="cpu"):
    """Copy weights into the twin, run both, and compare output, dx, every gradient and buffer.

    `x` may live on either convlab device; `device` is where the twin runs ("cpu" or "cuda").
    """
    copy_into_torch(model, twin)
    y, dy, dx, grads, state = run_convlab(model, x, rng)
    ty, tdx, tgrads, tstate = run_torch(twin, x, dy, device)
    assert_agrees(y, ty, f"{what}: output", tol)
    assert_agrees(dx, tdx, f"{what}: input gradient", tol)
    if sorted(grads) != sorted(tgrads):
        raise AssertionError(f"{what}: parameters {sorted(grads)} differ from PyTorch's {sorted(tgrads)}")
    for name, tgrad in tgrads.items():
        if grads[name] is None:
            raise AssertionError(f"{what}: parameter {name!r} got no gradient")
        assert_agrees(grads[name], tgrad, f"{what}: gradient of {name!r}", tol)
    assert_same_state(state, tstate, what, tol)
