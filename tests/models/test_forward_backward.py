"""Every model in the zoo runs forward and backward on a batch of two at the smallest input it
allows, with the right output shape and a gradient for every parameter; and that input is
really the smallest (one pixel less breaks a fixed-size head; with global pooling, the last
feature map is down to 1×1). The big ImageNet models are in test_imagenet_models.py."""

import numpy as np
import pytest

from convlab import backend, models, nn
from convlab.inspect import summary

# Built once each, in test_imagenet_models.py.
BIG = {"alexnet", "vgg11", "vgg13", "vgg16", "vgg19", "vgg11_bn", "vgg13_bn", "vgg16_bn", "vgg19_bn",
       "resnet34", "resnet50", "densenet121", "googlenet"}
NUM_CLASSES = 3


def assert_trains_one_step(model, input_shape, num_classes):
    """Forward a batch of two, a cross-entropy loss, backward: shapes right, every gradient there."""
    x = backend.rng.normal(0, 1, (2,) + tuple(input_shape))
    labels = np.array([0, num_classes - 1])
    logits = model(x)
    assert logits.shape == (2, num_classes)
    assert np.isfinite(backend.to_numpy(logits)).all()
    criterion = nn.CrossEntropyLoss()
    assert np.isfinite(float(criterion(logits, labels)))
    model.zero_grad()
    dx = model.backward(criterion.backward())

    assert dx.shape == x.shape
    for name, p in model.named_parameters():
        assert p.grad is not None, f"{name} got no gradient"
        assert p.grad.shape == p.data.shape
        assert np.isfinite(backend.to_numpy(p.grad)).all(), f"{name} has a non-finite gradient"
    assert any(np.any(backend.to_numpy(p.grad) != 0) for p in model.parameters())


@pytest.mark.parametrize("name", [n for n in models.names() if n not in BIG])
def test_model_trains_one_step_at_its_smallest_input(name):
    model = models.get(name, num_classes=NUM_CLASSES)
    assert_trains_one_step(model, models.min_input_shape(name), NUM_CLASSES)


FIXED_HEAD = ["lenet5", "alexnet_cifar", "vgg11_cifar", "vgg8_bn_cifar", "nin", "densenet_bc_100_k12"]


@pytest.mark.parametrize("name", FIXED_HEAD)
def test_one_pixel_less_than_the_smallest_input_is_refused(name):
    c, h, w = models.min_input_shape(name)
    model = models.get(name, num_classes=NUM_CLASSES).eval()
    assert model(np.zeros((1, c, h, w), np.float32)).shape == (1, NUM_CLASSES)
    with pytest.raises(ValueError):
        model(np.zeros((1, c, h - 1, w - 1), np.float32))


GLOBAL_POOL = ["googlenet", "resnet18", "resnet34", "resnet50", "resnet20", "resnet110", "plain56",
               "se_resnet20", "densenet121", "mobilenet_v1", "mobilenet_v1_cifar", "vgg16_cifar"]


@pytest.mark.parametrize("name", GLOBAL_POOL)
def test_smallest_input_brings_the_last_feature_map_to_one_pixel(name):
    result = summary(models.get(name, num_classes=NUM_CLASSES), models.min_input_shape(name))
    spatial = [r.output_shape for r in result.rows if len(r.output_shape) == 3]
    assert spatial[-1][1:] == (1, 1)
    assert result.output_shape == (NUM_CLASSES,)
