"""Hyper-parameter search: the trial list, and a tiny real search ranked by validation accuracy."""

import math

import pytest

from convlab.train import TrainConfig
from convlab.train.search import format_table, search, trial_configs

from .tiny_data import tiny_mnist


def test_grid_is_every_combination():
    grid = trial_configs({"lr": [0.1, 0.01], "batch_size": [32, 64, 128]})
    assert len(grid) == 6 and {"lr": 0.01, "batch_size": 128} in grid


def test_random_search_draws_distinct_seeded_trials():
    space = {"lr": [0.1, 0.03, 0.01, 0.003], "weight_decay": [0, 1e-4, 5e-4]}
    a = trial_configs(space, "random", trials=5, seed=1)
    assert len(a) == 5 and len({tuple(t.items()) for t in a}) == 5
    assert a == trial_configs(space, "random", trials=5, seed=1)
    assert a != trial_configs(space, "random", trials=5, seed=2)


def test_search_space_mistakes_are_named():
    with pytest.raises(ValueError, match="cannot search over dropout"):
        trial_configs({"dropout": [0.1]})
    with pytest.raises(ValueError, match="random search needs a positive number of trials"):
        trial_configs({"lr": [0.1]}, "random")


def test_search_trains_each_trial_and_ranks_by_validation_accuracy():
    train, test = tiny_mnist(n_train=160, n_test=32)
    base = TrainConfig(model="lenet5", dataset="mnist", epochs=3, batch_size=16, device="cpu",
                       schedule="onecycle")
    results = search(base, {"lr": [1e-5, 0.1]}, train_data=train, test_data=test)
    assert [r["lr"] for r in results] == [0.1, 1e-5]  # a rate of 1e-5 cannot learn in 27 steps
    assert results[0]["val_accuracy"] >= results[1]["val_accuracy"]
    assert results[0]["val_accuracy"] > 0.5 and results[1]["val_accuracy"] < 0.3
    assert all(r["status"] == "completed" and r["epochs"] == 3 for r in results)
    table = format_table(results, ["lr"])
    assert table.splitlines()[0].split()[:3] == ["rank", "trial", "lr"] and len(table.splitlines()) == 4
    assert all(math.isfinite(r["test_accuracy"]) for r in results)
