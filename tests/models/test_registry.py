"""The registry: names, building by name, options, input shapes and the errors for bad requests."""

import pytest

from convlab import models, nn

REQUIRED_NAMES = [
    "lenet5", "alexnet", "alexnet_cifar",
    "vgg11", "vgg13", "vgg16", "vgg19", "vgg11_bn", "vgg13_bn", "vgg16_bn", "vgg19_bn",
    "vgg11_cifar", "vgg16_bn_cifar", "vgg8_bn_cifar",
    "nin", "googlenet", "resnet18", "resnet34", "resnet50",
    "resnet20", "resnet32", "resnet44", "resnet56", "resnet110", "plain20", "plain56",
    "densenet121", "densenet_bc_100_k12", "se_resnet20", "mobilenet_v1", "mobilenet_v1_cifar",
]


def test_names_list_every_family_of_the_zoo():
    assert set(REQUIRED_NAMES) <= set(models.names())
    assert len(models.names()) == len(set(models.names()))


def test_get_builds_a_convlab_module_with_the_requested_classes_and_channels():
    model = models.get("resnet20", num_classes=7, in_channels=1)
    assert isinstance(model, nn.Module)
    assert model.conv1.weight.shape == (16, 1, 3, 3)
    assert model.fc.weight.shape == (7, 64)


def test_each_model_defaults_to_its_own_data_set():
    assert models.get("lenet5").conv1.in_channels == 1
    assert models.get("lenet5").fc3.out_features == 10
    assert models.get("resnet18").fc.out_features == 1000
    assert models.get("resnet20").fc.out_features == 10


def test_unknown_name_is_a_value_error_listing_the_known_names():
    with pytest.raises(ValueError, match="unknown model 'resnet21'") as info:
        models.get("resnet21")
    for name in ("lenet5", "resnet20", "densenet121"):
        assert name in str(info.value)
    with pytest.raises(ValueError, match="known models"):
        models.default_input_shape("nope")


def test_unknown_option_is_a_value_error_naming_the_accepted_ones():
    with pytest.raises(ValueError, match=r"no option 'depth'.*activation") as info:
        models.get("lenet5", depth=3)
    assert "pooling" in str(info.value)
    # an argument the name pins down is not an option either
    with pytest.raises(ValueError, match="no option 'layout'"):
        models.get("vgg16_cifar", layout="imagenet")


@pytest.mark.parametrize("bad", [0, -3, 2.5, True, "10"])
def test_num_classes_must_be_a_positive_integer(bad):
    with pytest.raises(ValueError, match="num_classes must be a positive integer"):
        models.get("resnet20", num_classes=bad)


def test_options_lists_the_builder_keywords_with_defaults():
    assert models.options("lenet5") == {"activation": "relu", "pooling": "max", "input_size": 28}
    assert models.options("googlenet")["aux_logits"] is False
    assert "depth" not in models.options("resnet20")


def test_input_shapes_follow_the_data_set_and_the_options():
    assert models.default_input_shape("lenet5") == (1, 28, 28)
    assert models.default_input_shape("lenet5", input_size=32) == (1, 32, 32)
    assert models.default_input_shape("resnet20") == (3, 32, 32)
    assert models.default_input_shape("resnet18") == (3, 224, 224)
    assert models.default_input_shape("resnet18", in_channels=1) == (1, 224, 224)
    assert models.min_input_shape("resnet18") == (3, 32, 32)
    assert models.min_input_shape("googlenet") == (3, 32, 32)
    assert models.min_input_shape("googlenet", aux_logits=True) == (3, 223, 223)
    assert models.min_input_shape("mobilenet_v1", stem_stride=1) == (3, 16, 16)


def test_every_model_has_a_description():
    for name in models.names():
        assert models.describe(name).strip(), name
