"""The big ImageNet-layout models, each built once (at 1000 classes): torchvision's parameter
count, torchvision's state_dict names and shapes, and one training step at the smallest input.

Published counts: torchvision's model documentation (the sum of its parameters' sizes).
All marked slow: they run in CI's slow step.
"""

import numpy as np
import pytest

from convlab import backend, models
from tests.models.test_forward_backward import BIG, assert_trains_one_step

pytestmark = pytest.mark.slow

VGG_LAST_CONV = {"vgg11": 18, "vgg13": 22, "vgg16": 28, "vgg19": 34,
                 "vgg11_bn": 25, "vgg13_bn": 31, "vgg16_bn": 40, "vgg19_bn": 49}


def vgg_keys(name):
    keys = {"features.0.weight": (64, 3, 3, 3), f"features.{VGG_LAST_CONV[name]}.weight": (512, 512, 3, 3),
            "classifier.0.weight": (4096, 512 * 7 * 7), "classifier.3.weight": (4096, 4096),
            "classifier.6.weight": (1000, 4096)}
    if name.endswith("_bn"):
        keys[f"features.{VGG_LAST_CONV[name] + 1}.running_var"] = (512,)
    return keys


# name: (published parameter count, some torchvision state_dict keys with their shapes)
TORCHVISION = {
    "alexnet": (61_100_840, {"features.0.weight": (64, 3, 11, 11), "features.10.bias": (256,),
                             "classifier.1.weight": (4096, 9216), "classifier.6.weight": (1000, 4096)}),
    "vgg11": (132_863_336, vgg_keys("vgg11")),
    "vgg11_bn": (132_868_840, vgg_keys("vgg11_bn")),
    "vgg13": (133_047_848, vgg_keys("vgg13")),
    "vgg13_bn": (133_053_736, vgg_keys("vgg13_bn")),
    "vgg16": (138_357_544, vgg_keys("vgg16")),
    "vgg16_bn": (138_365_992, vgg_keys("vgg16_bn")),
    "vgg19": (143_667_240, vgg_keys("vgg19")),
    "vgg19_bn": (143_678_248, vgg_keys("vgg19_bn")),
    "resnet34": (21_797_672, {"conv1.weight": (64, 3, 7, 7), "layer3.5.conv2.weight": (256, 256, 3, 3),
                              "layer4.0.downsample.0.weight": (512, 256, 1, 1), "fc.weight": (1000, 512)}),
    "resnet50": (25_557_032, {"layer1.0.downsample.0.weight": (256, 64, 1, 1),
                              "layer2.0.conv2.weight": (128, 128, 3, 3),  # v1.5: the 3×3 strides
                              "layer4.2.conv3.weight": (2048, 512, 1, 1),
                              "layer4.2.bn3.num_batches_tracked": (), "fc.weight": (1000, 2048)}),
    "densenet121": (7_978_856, {"features.conv0.weight": (64, 3, 7, 7),
                                "features.denseblock1.denselayer1.norm1.weight": (64,),
                                "features.denseblock4.denselayer16.conv2.weight": (32, 128, 3, 3),
                                "features.transition3.conv.weight": (512, 1024, 1, 1),
                                "features.norm5.weight": (1024,), "classifier.weight": (1000, 1024)}),
    "googlenet": (6_624_904, {"conv1.conv.weight": (64, 3, 7, 7), "conv1.bn.running_mean": (64,),
                              "inception3a.branch2.1.conv.weight": (128, 96, 3, 3),
                              "inception3a.branch3.1.conv.weight": (32, 16, 3, 3),  # torchvision's 3×3
                              "inception5b.branch4.1.bn.weight": (128,), "fc.weight": (1000, 1024)}),
}


def test_the_big_models_are_exactly_the_ones_covered_here():
    assert set(TORCHVISION) == BIG


@pytest.fixture(scope="module", params=sorted(TORCHVISION))
def imagenet(request):
    """(name, model at 1000 classes): built once per name for all the tests below, on the CPU
    in float32 like every test (module fixtures start before conftest's per-test reset)."""
    saved = dict(backend._state)
    backend.use("cpu")
    backend.set_default_dtype(np.float32)
    backend.manual_seed(0)
    model = models.get(request.param)
    backend._state.update(saved)
    return request.param, model


def test_parameter_count_matches_torchvision(imagenet):
    name, model = imagenet
    assert model.num_parameters() == TORCHVISION[name][0]


def test_state_dict_uses_torchvisions_names_and_shapes(imagenet):
    name, model = imagenet
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    for key, shape in TORCHVISION[name][1].items():
        assert shapes.get(key) == shape, key
    assert sum(int(np.prod(s)) for k, s in shapes.items() if "running" not in k and "num_batches" not in k) \
        == TORCHVISION[name][0]


def test_trains_one_step_at_its_smallest_input(imagenet):
    name, model = imagenet
    assert_trains_one_step(model, models.min_input_shape(name), 1000)
