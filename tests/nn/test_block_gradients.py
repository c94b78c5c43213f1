"""Every layer with parameters and every block passes a float64 central finite-difference check of
its input gradient and of each parameter's gradient (relative error < 1e-6).

Batch norm runs in training mode unless a case says eval, so the differences perturb through the
batch statistics; the loss is sum(y · R) with a fixed random R.
"""

from collections import OrderedDict

import numpy as np
import pytest

from convlab import nn
from tests.gradcheck import check_module, randomize_batch_norm


def mini_net():
    return nn.Sequential(
        nn.Conv2d(2, 3, 3, padding=1, bias=False), nn.BatchNorm2d(3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(3, 4, (2, 3), stride=(1, 2)), nn.LeakyReLU(0.1), nn.AvgPool2d(2, ceil_mode=True),
        nn.Flatten(), nn.Linear(8, 5), nn.Tanh(), nn.Dropout(0.0), nn.Linear(5, 3), nn.Sigmoid(),
    )


# name: (module factory, input shape, mode)
CASES = {
    "Conv2d dilation 2 groups 2 stride (2, 1)": (
        lambda: nn.Conv2d(4, 6, (3, 2), stride=(2, 1), padding=(2, 1), dilation=2, groups=2), (2, 4, 7, 9),
        "train"),
    "Conv2d depthwise same": (lambda: nn.Conv2d(3, 3, 3, padding="same", groups=3), (1, 3, 5, 6), "train"),
    "Linear": (lambda: nn.Linear(6, 4), (3, 6), "train"),
    "BatchNorm2d train": (lambda: nn.BatchNorm2d(3), (2, 3, 4, 5), "train"),
    "BatchNorm2d eval": (lambda: nn.BatchNorm2d(3), (2, 3, 4, 5), "eval"),
    "BatchNorm1d train": (lambda: nn.BatchNorm1d(4), (5, 4), "train"),
    "BasicConv2d 3x3": (lambda: nn.BasicConv2d(3, 4, kernel_size=3, padding=1), (2, 3, 5, 6), "train"),
    "BasicConv2d no BN, (3, 2) kernel stride 2, 7x9": (
        lambda: nn.BasicConv2d(2, 3, batch_norm=False, kernel_size=(3, 2), stride=2), (1, 2, 7, 9), "train"),
    "BasicBlock identity shortcut": (lambda: nn.BasicBlock(4, 4), (2, 4, 5, 5), "train"),
    "BasicBlock shortcut B stride 2, 7x9": (lambda: nn.BasicBlock(3, 5, stride=2, shortcut="B"), (2, 3, 7, 9),
                                            "train"),
    "BasicBlock shortcut A stride 2, odd channel padding": (
        lambda: nn.BasicBlock(3, 6, stride=2, shortcut="A"), (1, 3, 7, 9), "train"),
    "BasicBlock residual=False": (lambda: nn.BasicBlock(3, 4, stride=2, residual=False), (2, 3, 6, 6),
                                  "train"),
    "BasicBlock squeeze-excite": (lambda: nn.BasicBlock(4, 4, se_reduction=2), (2, 4, 5, 5), "train"),
    "BasicBlock eval": (lambda: nn.BasicBlock(3, 4, stride=2, se_reduction=2), (2, 3, 5, 6), "eval"),
    "Bottleneck identity": (lambda: nn.Bottleneck(8, 2), (2, 8, 4, 5), "train"),
    "Bottleneck stride 2 groups 2 projection": (lambda: nn.Bottleneck(4, 2, stride=2, groups=2), (1, 4, 7, 9),
                                                "train"),
    "Bottleneck shortcut A": (lambda: nn.Bottleneck(4, 2, stride=2, shortcut="A"), (2, 4, 5, 5), "train"),
    "Concat": (lambda: nn.Concat(OrderedDict(
        conv=nn.Conv2d(3, 2, 3, padding=1), pool=nn.MaxPool2d(3, stride=1, padding=1),
        seq=nn.Sequential(nn.Conv2d(3, 2, 1), nn.Tanh()))), (2, 3, 4, 5), "train"),
    "Inception": (lambda: nn.Inception(4, 2, 2, 3, 2, 2, 2), (2, 4, 5, 6), "train"),
    "Inception without BN, 3x3 branch": (
        lambda: nn.Inception(3, 2, 2, 2, 2, 2, 2, batch_norm=False, branch3_kernel_size=3), (1, 3, 5, 4),
        "train"),
    "Inception eval": (lambda: nn.Inception(3, 2, 2, 2, 2, 2, 2), (2, 3, 4, 4), "eval"),
    "DenseLayer": (lambda: nn.DenseLayer(3, 2, bn_size=2), (2, 3, 4, 5), "train"),
    "DenseBlock": (lambda: nn.DenseBlock(2, 3, 2, bn_size=2), (2, 3, 4, 4), "train"),
    "Transition, 7x9": (lambda: nn.Transition(4, 3), (2, 4, 7, 9), "train"),
    "SqueezeExcite": (lambda: nn.SqueezeExcite(6, 2), (2, 6, 3, 4), "train"),
    "NiNBlock stride 2": (lambda: nn.NiNBlock(2, 3, 3, stride=2, padding=1), (1, 2, 7, 9), "train"),
    "DepthwiseSeparableConv stride 2": (lambda: nn.DepthwiseSeparableConv(3, 4, stride=2), (2, 3, 7, 9),
                                        "train"),
    "DepthwiseSeparableConv eval": (lambda: nn.DepthwiseSeparableConv(3, 4), (1, 3, 4, 5), "eval"),
    "Sequential mini-net": (mini_net, (2, 2, 8, 10), "train"),
}


@pytest.mark.parametrize("name", CASES)
def test_module_backward_matches_finite_differences(name, float64):
    make, shape, mode = CASES[name]
    rng = np.random.default_rng(len(name))
    model = make()
    randomize_batch_norm(model, rng)
    model.train(mode == "train")
    x = rng.standard_normal(shape)
    check_module(model, x, seed=len(name))
