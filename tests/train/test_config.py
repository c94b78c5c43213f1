"""TrainConfig resolution: explicit values win over the preset, the preset over the model/data-set
recipe; presets hold the recipes they are named after; schedules in epochs become steps."""

import numpy as np
import pytest

from convlab.nn import Parameter
from convlab.optim import SGD
from convlab.train import PRESETS, TrainConfig, default_recipe, resolve_config
from convlab.train.trainer import build_schedule


def test_recipe_fills_what_the_config_leaves_open():
    c = resolve_config(TrainConfig(model="lenet5", dataset="mnist", lr=0.02))
    assert c.lr == 0.02
    assert (c.epochs, c.batch_size, c.optimizer, c.schedule) == (3, 128, "sgd", "onecycle")
    assert None not in (c.momentum, c.weight_decay, c.augment, c.label_smoothing, c.log_every)


def test_preset_values_sit_between_explicit_values_and_the_recipe():
    c = resolve_config(TrainConfig(preset="resnet20-he2016", epochs=2))
    assert (c.model, c.dataset, c.epochs) == ("resnet20", "cifar10", 2)
    assert c.milestones == [82, 123]


def test_the_he2016_preset_is_the_papers_recipe():
    he = PRESETS["resnet20-he2016"]
    assert (he["lr"], he["momentum"], he["weight_decay"], he["batch_size"]) == (0.1, 0.9, 1e-4, 128)
    assert (he["epochs"], he["schedule"], he["milestones"], he["gamma"]) == (164, "multistep", [82, 123], 0.1)
    assert he["augment"] == "crop+flip" and not he["nesterov"]


def test_models_without_batch_norm_get_a_gentler_rate():
    assert default_recipe("alexnet_cifar", "cifar10")["lr"] < default_recipe("resnet20", "cifar10")["lr"]


@pytest.mark.parametrize("overrides, message", [
    (dict(preset="nope"), "unknown preset 'nope'"),
    (dict(model=None), "a run needs a model and a data set"),
    (dict(schedule="multistep"), "milestones must be a list of epochs"),
    (dict(momentum=1.5), "momentum must be in"),
    (dict(device="tpu"), "device must be one of"),
    (dict(cuda_graph=True, device="cpu"), "cuda_graph must be false with device 'cpu'"),
    (dict(cuda_graph=True, device="gpu", clip_grad_norm=1.0), "cuda_graph must be false with clip_grad_norm"),
])
def test_bad_values_are_named(overrides, message):
    values = dict(model="lenet5", dataset="mnist")
    values.update(overrides)
    with pytest.raises(ValueError, match=message):
        resolve_config(TrainConfig(**values))


def test_epoch_milestones_become_step_milestones():
    config = resolve_config(TrainConfig(preset="resnet20-he2016"))
    optimizer = SGD([Parameter(np.zeros(1))], lr=config.lr, momentum=0.9)
    schedule = build_schedule(config, optimizer, steps_per_epoch=391)
    assert schedule.lr_at(82 * 391 - 1) == pytest.approx(0.1)
    assert schedule.lr_at(82 * 391) == pytest.approx(0.01)
    assert schedule.lr_at(123 * 391) == pytest.approx(0.001)


def test_config_round_trips_through_a_dict():
    c = resolve_config(TrainConfig(model="lenet5", dataset="mnist"))
    assert TrainConfig.from_dict(c.to_dict()) == c
    with pytest.raises(ValueError, match="unknown field"):
        TrainConfig.from_dict({"model": "lenet5", "learning_rate": 0.1})


def test_cuda_graph_without_a_gpu_is_a_clear_error_and_the_cli_flag_sets_it():
    import argparse

    from convlab import backend, cli, models, nn, optim
    from convlab.data import DataLoader
    from convlab.train import Trainer

    from .tiny_data import tiny_mnist

    parser = argparse.ArgumentParser()
    cli._add_run_options(parser)
    args = parser.parse_args(["--model", "lenet5", "--dataset", "mnist", "--cuda-graph", "--device", "gpu"])
    args.data, args.no_download, args.model_option = None, True, []
    assert cli._config_from_args(args).cuda_graph is True
    args = parser.parse_args(["--model", "lenet5", "--dataset", "mnist"])
    args.data, args.no_download, args.model_option = None, True, []
    assert cli._config_from_args(args).cuda_graph is False
    if backend.gpu_available():
        return  # the error below is for machines without a GPU
    train, _ = tiny_mnist(n_train=8, n_test=8)
    model = models.get("lenet5")
    with pytest.raises(backend.DeviceError, match="cuda_graph=True needs a CUDA GPU"):
        Trainer(model, DataLoader(train, 4), DataLoader(train, 4), optim.SGD(model.parameters()),
                criterion=nn.CrossEntropyLoss(), cuda_graph=True)
