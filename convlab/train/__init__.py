"""Training: the `Trainer` loop and its events, `TrainConfig` with recipes and presets, metrics,
HDF5 checkpoints, callbacks (progress bar, metrics log, early stopping) and hyper-parameter search.

    from convlab.train import TrainConfig, make_trainer
    trainer = make_trainer(TrainConfig(model="lenet5", dataset="mnist", out_dir="runs/lenet5"))
    trainer.on("epoch", lambda e: print(e["epoch"], e["test_accuracy"]))
    result = trainer.run()
"""

from . import metrics
from .callbacks import EarlyStopping, MetricsLog, ProgressBar
from .checkpoint import CheckpointError, read_checkpoint, save_checkpoint
from .config import PRESETS, TrainConfig, default_recipe, resolve_config
from .trainer import EVENTS, Trainer, TrainingDiverged, load_checkpoint, make_trainer, resume

__all__ = [
    "EVENTS", "PRESETS", "CheckpointError", "EarlyStopping", "MetricsLog", "ProgressBar", "TrainConfig",
    "Trainer", "TrainingDiverged", "default_recipe", "load_checkpoint", "make_trainer", "metrics",
    "read_checkpoint", "resolve_config", "resume", "save_checkpoint",
]
