"""A state_dict made in PyTorch loads into the zoo's model of the same architecture and gives the
same logits (eval mode, float32, within 1e-4): LeNet-5, the CIFAR ResNet-20 with option-A
shortcuts, and torchvision's ResNet-18 layout. The PyTorch models are written here from torch.nn
(torchvision is not a dependency), with the shared block twins of tests/torch_reference.py; their
parameter counts double as a check of the published figures.
"""

from collections import OrderedDict

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from torch import nn as tnn  # noqa: E402

from convlab import models  # noqa: E402
from tests import torch_reference as twins  # noqa: E402

LOGIT_TOL = 1e-4


def torch_lenet5(activation=tnn.ReLU, pooling=tnn.MaxPool2d):
    return tnn.Sequential(OrderedDict(
        conv1=tnn.Conv2d(1, 6, 5, padding=2), act1=activation(), pool1=pooling(2, 2),
        conv2=tnn.Conv2d(6, 16, 5), act2=activation(), pool2=pooling(2, 2),
        flatten=tnn.Flatten(),
        fc1=tnn.Linear(400, 120), act3=activation(), fc2=tnn.Linear(120, 84), act4=activation(),
        fc3=tnn.Linear(84, 10),
    ))


def torch_stage(inplanes, planes, blocks, stride, shortcut):
    layers = [twins.BasicBlock(inplanes, planes, stride, shortcut=shortcut)]
    layers += [twins.BasicBlock(planes, planes, shortcut=shortcut) for _ in range(blocks - 1)]
    return tnn.Sequential(*layers)


def torch_resnet20_option_a(num_classes=10):
    """He et al.'s CIFAR ResNet-20: 3×3 conv 16, three stages of 3 blocks, zero-padding shortcuts."""
    return tnn.Sequential(OrderedDict(
        conv1=tnn.Conv2d(3, 16, 3, padding=1, bias=False), bn1=tnn.BatchNorm2d(16), relu=tnn.ReLU(),
        layer1=torch_stage(16, 16, 3, 1, "A"), layer2=torch_stage(16, 32, 3, 2, "A"),
        layer3=torch_stage(32, 64, 3, 2, "A"),
        avgpool=tnn.AdaptiveAvgPool2d(1), flatten=tnn.Flatten(), fc=tnn.Linear(64, num_classes),
    ))


def torch_resnet18(num_classes=1000):
    """torchvision's ResNet-18: the same modules, names and forward."""
    return tnn.Sequential(OrderedDict(
        conv1=tnn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False), bn1=tnn.BatchNorm2d(64), relu=tnn.ReLU(),
        maxpool=tnn.MaxPool2d(3, stride=2, padding=1),
        layer1=torch_stage(64, 64, 2, 1, "B"), layer2=torch_stage(64, 128, 2, 2, "B"),
        layer3=torch_stage(128, 256, 2, 2, "B"), layer4=torch_stage(256, 512, 2, 2, "B"),
        avgpool=tnn.AdaptiveAvgPool2d(1), flatten=tnn.Flatten(), fc=tnn.Linear(512, num_classes),
    ))


def randomize_torch_batch_norm(twin, generator):
    """Non-trivial affine parameters and running statistics, so eval mode really uses them."""
    with torch.no_grad():
        for m in twin.modules():
            if isinstance(m, tnn.BatchNorm2d):
                c = m.num_features
                m.weight.uniform_(0.5, 1.5, generator=generator)
                m.bias.normal_(0.0, 0.3, generator=generator)
                m.running_mean.normal_(0.0, 0.3, generator=generator)
                m.running_var.uniform_(0.5, 2.0, generator=generator)
                m.num_batches_tracked.fill_(int(torch.randint(0, 5, (1,), generator=generator)))
                assert m.weight.shape == (c,)


def assert_same_logits(model, twin, input_shape, seed=0):
    state = {k: v.detach().numpy().copy() for k, v in twin.state_dict().items()}
    model.load_state_dict(state, strict=True)
    model.eval()
    twin.eval()
    x = np.random.default_rng(seed).standard_normal((3,) + input_shape).astype(np.float32)
    ours = np.asarray(model(x))
    with torch.no_grad():
        theirs = twin(torch.from_numpy(x)).numpy()
    assert ours.shape == theirs.shape
    assert np.max(np.abs(ours - theirs)) < LOGIT_TOL
    assert np.std(theirs) > 1e-2  # the logits are not trivially alike


def torch_count(twin):
    return sum(p.numel() for p in twin.parameters())


@pytest.mark.parametrize("activation, pooling", [("relu", "max"), ("tanh", "avg"), ("sigmoid", "max")])
def test_lenet5_loads_a_pytorch_state_dict_and_gives_the_same_logits(activation, pooling):
    torch.manual_seed(0)
    acts = {"relu": tnn.ReLU, "tanh": tnn.Tanh, "sigmoid": tnn.Sigmoid}
    pools = {"max": tnn.MaxPool2d, "avg": tnn.AvgPool2d}
    twin = torch_lenet5(acts[activation], pools[pooling])
    model = models.get("lenet5", activation=activation, pooling=pooling)
    assert torch_count(twin) == model.num_parameters() == 61_706
    assert_same_logits(model, twin, (1, 28, 28))


def test_resnet20_with_option_a_shortcuts_loads_a_pytorch_state_dict_and_gives_the_same_logits():
    torch.manual_seed(0)
    twin = torch_resnet20_option_a()
    randomize_torch_batch_norm(twin, torch.Generator().manual_seed(1))
    model = models.get("resnet20")
    assert torch_count(twin) == model.num_parameters() == 269_722
    assert_same_logits(model, twin, (3, 32, 32))


def test_resnet18_loads_a_pytorch_state_dict_with_torchvisions_names_and_gives_the_same_logits():
    torch.manual_seed(0)
    twin = torch_resnet18()
    randomize_torch_batch_norm(twin, torch.Generator().manual_seed(1))
    model = models.get("resnet18")
    assert torch_count(twin) == model.num_parameters() == 11_689_512
    assert_same_logits(model, twin, (3, 64, 64))  # 2×2 maps before the global pool
