"""Hyper-parameter search: grid or random choices over a small space (learning rate, weight decay,
batch size, augmentation...), each trial a full training run scored on a seeded validation split
carved from the training data."""

from __future__ import annotations

import dataclasses
import itertools
import math
import time

import numpy as np

from .config import TrainConfig
from .trainer import make_trainer

SEARCHABLE = ("lr", "weight_decay", "batch_size", "augment", "momentum", "optimizer", "label_smoothing",
              "schedule", "epochs")


def trial_configs(space: dict, mode="grid", trials=None, seed=0) -> list[dict]:
    """The hyper-parameter choices to try: every combination ("grid"), or `trials` distinct ones
    drawn at random with `seed` ("random")."""
    unknown = [k for k in space if k not in SEARCHABLE]
    if unknown:
        raise ValueError(f"cannot search over {', '.join(unknown)}; searchable: {', '.join(SEARCHABLE)}")
    empty = [k for k, v in space.items() if not len(v)]
    if empty:
        raise ValueError(f"the search space gives no values for {', '.join(empty)}")
    keys = list(space)
    grid = [dict(zip(keys, values)) for values in itertools.product(*(space[k] for k in keys))]
    if mode == "grid":
        return grid
    if mode != "random":
        raise ValueError(f"search mode must be 'grid' or 'random', got {mode!r}")
    if trials is None or trials < 1:
        raise ValueError(f"random search needs a positive number of trials, got {trials!r}")
    picks = np.random.default_rng(seed).permutation(len(grid))[:trials]
    return [grid[i] for i in sorted(picks)]


def search(base: TrainConfig, space: dict, mode="grid", trials=None, seed=0, on_trial=None,
           make_callbacks=None, train_data=None, test_data=None) -> list[dict]:
    """Train one run per choice in the space and return their results, best validation accuracy
    first. Each result holds the choices, best/final val accuracy, final test accuracy, train loss,
    seconds and how the run ended.

    base: the shared settings; val_fraction defaults to 0.1 when base has none. on_trial(i, n,
    result) is called after each trial; make_callbacks(trainer) may attach progress bars.
    """
    choices = trial_configs(space, mode, trials, seed)
    val_fraction = base.val_fraction or 0.1
    results = []
    for i, choice in enumerate(choices, 1):
        out_dir = f"{base.out_dir}/trial-{i:03d}" if base.out_dir else None
        config = dataclasses.replace(base, val_fraction=val_fraction, out_dir=out_dir, **choice)
        trainer = make_trainer(config, train_data=train_data, test_data=test_data)
        if make_callbacks is not None:
            make_callbacks(trainer)
        started = time.perf_counter()
        outcome = trainer.run()
        history = trainer.history
        val = [r["val_accuracy"] for r in history]
        result = {
            "trial": i, **choice,
            "val_accuracy": max(val) if val else math.nan,
            "final_val_accuracy": val[-1] if val else math.nan,
            "test_accuracy": history[-1]["test_accuracy"] if history else math.nan,
            "train_loss": history[-1]["train_loss"] if history else math.nan,
            "epochs": len(history), "seconds": time.perf_counter() - started, "status": outcome["reason"],
        }
        results.append(result)
        if on_trial is not None:
            on_trial(i, len(choices), result)
    return sorted(results, key=lambda r: -r["val_accuracy"] if math.isfinite(r["val_accuracy"]) else math.inf)


def format_table(results: list[dict], keys: list[str]) -> str:
    """A plain-text table of search results: rank, the searched keys, then the scores."""
    columns = ["rank", "trial", *keys, "val_acc", "test_acc", "train_loss", "epochs", "seconds", "status"]
    rows = []
    for rank, r in enumerate(results, 1):
        rows.append([str(rank), str(r["trial"]), *(str(r[k]) for k in keys),
                     f"{100 * r['val_accuracy']:.2f}%", f"{100 * r['test_accuracy']:.2f}%",
                     f"{r['train_loss']:.4f}", str(r["epochs"]), f"{r['seconds']:.1f}", r["status"]])
    widths = [max(len(c), *(len(row[i]) for row in rows)) if rows else len(c) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths)),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths)) for row in rows]
    return "\n".join(lines)
