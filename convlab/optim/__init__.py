"""Optimisers (SGD, Adam, AdamW), learning-rate schedules and gradient clipping, with PyTorch's
update rules and `state_dict` / `load_state_dict` for checkpoints."""

from .clipping import clip_grad_norm, global_grad_norm
from .optimizers import SGD, Adam, AdamW, Optimizer
from .schedules import (
    ConstantLR,
    CosineLR,
    MultiStepLR,
    OneCycleLR,
    ReduceLROnPlateau,
    Schedule,
    StepLR,
)

__all__ = [
    "Optimizer", "SGD", "Adam", "AdamW",
    "Schedule", "ConstantLR", "StepLR", "MultiStepLR", "CosineLR", "OneCycleLR", "ReduceLROnPlateau",
    "clip_grad_norm", "global_grad_norm",
]
