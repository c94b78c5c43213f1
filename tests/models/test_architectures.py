"""Each family's layout: torchvision's names for ResNet-18 (the other ImageNet models are in
test_imagenet_models.py), the documented options, GoogLeNet's auxiliary classifiers and the
reference initialisations."""

import math

import numpy as np
import pytest

from convlab import backend, models, nn

SLOW = pytest.mark.slow


def shapes(model):
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def test_resnet18_state_dict_has_torchvisions_keys_exactly():
    keys = set(models.get("resnet18").state_dict())
    norm_keys = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
    expected = {"conv1.weight", "fc.weight", "fc.bias"}
    expected |= {f"bn1.{s}" for s in norm_keys}
    for layer in range(1, 5):
        for block in range(2):
            prefix = f"layer{layer}.{block}"
            expected |= {f"{prefix}.conv1.weight", f"{prefix}.conv2.weight"}
            norms = ["bn1", "bn2"] + (["downsample.1"] if layer > 1 and block == 0 else [])
            for norm in norms:
                expected |= {f"{prefix}.{norm}.{s}" for s in norm_keys}
            if layer > 1 and block == 0:
                expected.add(f"{prefix}.downsample.0.weight")
    assert keys == expected


def test_lenet5_options_choose_the_1998_activation_and_pooling():
    model = models.get("lenet5", activation="tanh", pooling="avg")
    kinds = {type(m) for m in model.modules()}
    assert nn.Tanh in kinds and nn.AvgPool2d in kinds
    assert nn.ReLU not in kinds and nn.MaxPool2d not in kinds
    sigmoid = models.get("lenet5", activation="sigmoid")
    assert any(isinstance(m, nn.Sigmoid) for m in sigmoid.modules())
    with pytest.raises(ValueError, match="activation must be one of"):
        models.get("lenet5", activation="gelu")


def test_lenet5_takes_32_pixel_images_without_padding():
    model = models.get("lenet5", input_size=32).eval()
    assert model.conv1._pads == (0, 0, 0, 0)
    assert model(np.zeros((1, 1, 32, 32), np.float32)).shape == (1, 10)
    with pytest.raises(ValueError, match="expected 400"):
        model(np.zeros((1, 1, 28, 28), np.float32))
    with pytest.raises(ValueError, match="input_size must be 28"):
        models.get("lenet5", input_size=30)


def test_plain_networks_have_no_shortcuts_and_compute_something_else():
    resnet, plain = models.get("resnet20").eval(), models.get("plain20").eval()
    assert not any(name.endswith("downsample") for name, _ in plain.named_modules())
    plain.load_state_dict(resnet.state_dict())  # same parameters, same names
    x = backend.rng.normal(0, 1, (2, 3, 32, 32))
    assert not np.allclose(plain(x), resnet(x), atol=1e-3)


def test_se_resnet20_gates_every_block():
    model = models.get("se_resnet20")
    blocks = [m for m in model.modules() if isinstance(m, nn.BasicBlock)]
    assert len(blocks) == 9
    assert all(isinstance(b.se, nn.SqueezeExcite) for b in blocks)


def test_googlenet_branch3_kernel_option_gives_the_papers_5x5():
    model = models.get("googlenet", branch3_kernel_size=5)
    assert model.inception3a.branch3[1].conv.weight.shape == (32, 16, 5, 5)


def test_mobilenet_width_multiplier_thins_every_layer():
    half = models.get("mobilenet_v1", width_multiplier=0.5, num_classes=10)
    assert half.features[0].conv.weight.shape == (16, 3, 3, 3)
    assert half.classifier.weight.shape == (10, 512)
    assert half.num_parameters() < models.get("mobilenet_v1", num_classes=10).num_parameters() / 3


def test_mobilenet_cifar_keeps_the_resolution_in_its_stem():
    model = models.get("mobilenet_v1_cifar").eval()
    assert model.features[0].conv.stride == (1, 1)
    assert model(np.zeros((1, 3, 32, 32), np.float32)).shape == (1, 10)


@pytest.mark.slow
def test_googlenet_auxiliary_classifiers_run_in_training_and_take_their_gradients():
    model = models.get("googlenet", num_classes=5, aux_logits=True)
    assert {"aux1", "aux2"} <= dict(model.named_children()).keys()
    assert shapes(model)["aux1.fc1.weight"] == (1024, 2048)
    assert shapes(model)["aux2.conv.conv.weight"] == (128, 528, 1, 1)
    x = backend.rng.normal(0, 1, (2, 3, 224, 224))
    y = model(x)
    assert y.shape == (2, 5)
    assert [a.shape for a in model.aux_outputs] == [(2, 5), (2, 5)]

    dy = np.ones_like(y)
    model.backward(dy)  # the main head only: the auxiliary heads get nothing
    assert model.aux1.fc2.weight.grad is None
    main_only = model.conv1.conv.weight.grad.copy()

    model.zero_grad()  # the same forward again, now with the auxiliary heads' gradients
    aux_grads = tuple(np.ones_like(a) for a in model.aux_outputs)
    dx = model.backward(dy, aux_grads=aux_grads)
    assert dx.shape == x.shape
    assert model.aux1.fc2.weight.grad is not None and model.aux2.fc2.weight.grad is not None
    assert not np.allclose(model.conv1.conv.weight.grad, main_only)

    model.eval()
    model(x[:1])
    assert model.aux_outputs is None
    with pytest.raises(ValueError, match="ran no auxiliary classifier"):
        model.backward(np.ones((1, 5), np.float32), aux_grads=aux_grads)


def std_of(param):
    return float(np.std(backend.to_numpy(param.data)))


def test_resnets_start_like_torchvision():
    model = models.get("resnet20")
    conv = model.layer2[0].conv2  # 32 → 32, 3×3: Kaiming normal with fan_out = 32·9
    assert std_of(conv.weight) == pytest.approx(math.sqrt(2 / (32 * 9)), rel=0.05)
    bn = model.layer2[0].bn2
    assert np.all(bn.weight.data == 1) and np.all(bn.bias.data == 0)


def test_zero_init_residual_starts_every_block_as_the_identity():
    model = models.get("resnet18", zero_init_residual=True)
    assert all(np.all(b.bn2.weight.data == 0) for b in model.modules() if isinstance(b, nn.BasicBlock))


def test_vgg_and_googlenet_draw_their_reference_normals():
    vgg = models.get("vgg8_bn_cifar")
    assert std_of(vgg.classifier[0].weight) == pytest.approx(0.01, rel=0.05)
    assert np.all(vgg.classifier[0].bias.data == 0)
    assert std_of(vgg.features[0].weight) == pytest.approx(math.sqrt(2 / (32 * 9)), rel=0.1)
    googlenet = models.get("googlenet")
    assert std_of(googlenet.inception4a.branch2[1].conv.weight) == pytest.approx(0.01, rel=0.05)


def test_densenet_draws_kaiming_fan_in_convolutions_and_zero_dense_bias():
    model = models.get("densenet_bc_100_k12")
    conv = model.features.denseblock2.denselayer3.conv2  # 48 → 12, 3×3: fan_in = 48·9
    assert std_of(conv.weight) == pytest.approx(math.sqrt(2 / (48 * 9)), rel=0.05)
    assert np.all(model.classifier.bias.data == 0)
