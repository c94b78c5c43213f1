"""Every model has the published number of parameters (at the published number of classes).

Sources: ResNet-18, torchvision's model documentation (the big ImageNet models are checked in
test_imagenet_models.py); CIFAR ResNets, He et al. 2016, Table 6 (0.27 M, 0.85 M, 1.7 M), exact
option-A counts as in akamaster/pytorch_resnet_cifar10; DenseNet-BC (k=12, depth 100), Huang et
al. 2017, Table 2 (0.8 M); MobileNet v1, Howard et al. 2017, Table 8 (4.2 M; 4,231,976 with
bias-free convolutions and batch norm). LeNet-5, ResNet-20 and ResNet-18 are also checked
against PyTorch twins in test_torch_reference.py.
"""

import pytest

from convlab import models

PUBLISHED = [
    ("lenet5", 10, 61_706),  # 156 + 2,416 + 48,120 + 10,164 + 850
    ("resnet18", 1000, 11_689_512),
    ("mobilenet_v1", 1000, 4_231_976),
    ("resnet20", 10, 269_722),
    ("resnet56", 10, 853_018),
    ("resnet110", 10, 1_727_962),
    ("densenet_bc_100_k12", 10, 769_162),
]


@pytest.mark.parametrize("name, num_classes, published", PUBLISHED)
def test_parameter_count_matches_the_published_figure(name, num_classes, published):
    assert models.get(name, num_classes=num_classes).num_parameters() == published


@pytest.mark.parametrize("name, millions", [("resnet20", 0.27), ("resnet56", 0.85), ("resnet110", 1.7),
                                            ("densenet_bc_100_k12", 0.8), ("mobilenet_v1", 4.2)])
def test_parameter_count_rounds_to_the_papers_figure(name, millions):
    decimals = len(str(millions).partition(".")[2])  # the paper's precision
    assert round(models.get(name).num_parameters() / 1e6, decimals) == millions


def test_lenet5_parameters_layer_by_layer():
    sizes = {k: v.size for k, v in models.get("lenet5").state_dict().items()}
    assert sizes["conv1.weight"] + sizes["conv1.bias"] == 156
    assert sizes["conv2.weight"] + sizes["conv2.bias"] == 2_416
    assert [sizes[f"fc{i}.weight"] + sizes[f"fc{i}.bias"] for i in (1, 2, 3)] == [48_120, 10_164, 850]


def test_plain_networks_have_as_many_parameters_as_option_a_resnets():
    # option A shortcuts are parameter-free, so removing them changes nothing in the count
    assert models.get("plain20").num_parameters() == models.get("resnet20").num_parameters()
    assert models.get("plain56").num_parameters() == models.get("resnet56").num_parameters()


def test_projection_shortcuts_add_two_convolutions_and_their_batch_norms():
    a = models.get("resnet20").num_parameters()
    b = models.get("resnet20", shortcut="B").num_parameters()
    assert b - a == (16 * 32 + 2 * 32) + (32 * 64 + 2 * 64)


def test_batch_norm_variants_add_two_parameters_per_channel():
    widths = 64 + 128 + 256 * 2 + 512 * 4  # vgg11's convolutions
    assert (models.get("vgg11_cifar").num_parameters() + 2 * widths
            == models.get("vgg11_bn_cifar").num_parameters())
