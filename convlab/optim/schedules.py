"""Learning-rate schedules: step, multi-step, cosine with linear warm-up, one-cycle and
reduce-on-plateau, each matching its torch.optim.lr_scheduler counterpart.

A schedule owns an optimiser and sets its `lr` (and, for one-cycle, its momentum). Call `step()`
once per optimiser step (or per epoch, if the schedule was built in epochs);
`ReduceLROnPlateau.step(metric)` takes the validation metric once per epoch. `lr_at(t)` gives the
rate after `t` steps without touching the optimiser (what the GUI plots).
"""

from __future__ import annotations

import math


def _check_positive_int(schedule, **values):
    for name, value in values.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{schedule}: {name} must be a positive integer, got {value!r}")


class Schedule:
    """Base class: remembers the optimiser's starting `lr` as `base_lr` and counts steps."""

    def __init__(self, optimizer):
        self.optimizer = optimizer
        self.base_lr = float(optimizer.lr)
        self.last_step = 0
        self._apply(0)

    def lr_at(self, step: int) -> float:
        raise NotImplementedError

    def _apply(self, step):
        self.optimizer.lr = self.lr_at(step)

    def step(self):
        self.last_step += 1
        self._apply(self.last_step)

    @property
    def lr(self) -> float:
        return self.optimizer.lr

    def state_dict(self) -> dict:
        return {"type": type(self).__name__, "base_lr": self.base_lr, "last_step": self.last_step}

    def load_state_dict(self, state: dict):
        if state.get("type") != type(self).__name__:
            raise ValueError(
                f"{type(self).__name__}.load_state_dict: the state is for a {state.get('type')} schedule"
            )
        self.base_lr = float(state["base_lr"])
        self.last_step = int(state["last_step"])
        self._apply(self.last_step)
        return self

    def __repr__(self):
        return f"{type(self).__name__}(base_lr={self.base_lr}, last_step={self.last_step})"


class ConstantLR(Schedule):
    """No schedule: the learning rate stays at its starting value."""

    def lr_at(self, step):
        return self.base_lr


class StepLR(Schedule):
    """Multiply the rate by `gamma` every `step_size` steps (torch StepLR)."""

    def __init__(self, optimizer, step_size, gamma=0.1):
        _check_positive_int("StepLR", step_size=step_size)
        self.step_size, self.gamma = step_size, float(gamma)
        super().__init__(optimizer)

    def lr_at(self, step):
        return self.base_lr * self.gamma ** (step // self.step_size)


class MultiStepLR(Schedule):
    """Multiply the rate by `gamma` at each milestone (torch MultiStepLR); the course's
    "divide by 10 at epochs 82 and 123" is MultiStepLR(opt, [82, 123]) stepped per epoch."""

    def __init__(self, optimizer, milestones, gamma=0.1):
        milestones = sorted(int(m) for m in milestones)
        if not milestones or milestones[0] < 1:
            raise ValueError(f"MultiStepLR: milestones must be positive step numbers, got {milestones}")
        self.milestones, self.gamma = milestones, float(gamma)
        super().__init__(optimizer)

    def lr_at(self, step):
        passed = sum(1 for m in self.milestones if step >= m)
        return self.base_lr * self.gamma**passed


class CosineLR(Schedule):
    """Linear warm-up from `warmup_start_factor`·base_lr over `warmup_steps`, then half a cosine
    from base_lr down to `min_lr` at `total_steps` (torch LinearLR then CosineAnnealingLR)."""

    def __init__(self, optimizer, total_steps, warmup_steps=0, min_lr=0.0, warmup_start_factor=0.1):
        _check_positive_int("CosineLR", total_steps=total_steps)
        if not 0 <= warmup_steps < total_steps:
            raise ValueError(
                f"CosineLR: warmup_steps must be in [0, total_steps={total_steps}), got {warmup_steps}"
            )
        self.total_steps, self.warmup_steps = total_steps, int(warmup_steps)
        self.min_lr, self.warmup_start_factor = float(min_lr), float(warmup_start_factor)
        super().__init__(optimizer)

    def lr_at(self, step):
        if step < self.warmup_steps:
            f = self.warmup_start_factor
            return self.base_lr * (f + (1 - f) * step / self.warmup_steps)
        span = self.total_steps - self.warmup_steps
        t = min(step - self.warmup_steps, span)
        return self.min_lr + (self.base_lr - self.min_lr) * (1 + math.cos(math.pi * t / span)) / 2


class OneCycleLR(Schedule):
    """Smith's one-cycle policy as torch OneCycleLR (two phases, cosine annealing): the rate rises
    from max_lr/div_factor to `max_lr` over the first `pct_start` of `total_steps`, then falls to
    max_lr/(div_factor·final_div_factor); momentum (SGD's momentum or Adam's β₁) moves the other way
    between `max_momentum` and `base_momentum` when `cycle_momentum`."""

    def __init__(self, optimizer, max_lr, total_steps, pct_start=0.3, div_factor=25.0,
                 final_div_factor=1e4, cycle_momentum=True, base_momentum=0.85, max_momentum=0.95):
        _check_positive_int("OneCycleLR", total_steps=total_steps)
        if not 0 < pct_start < 1:
            raise ValueError(f"OneCycleLR: pct_start must be in (0, 1), got {pct_start}")
        self.max_lr, self.total_steps, self.pct_start = float(max_lr), total_steps, float(pct_start)
        self.div_factor, self.final_div_factor = float(div_factor), float(final_div_factor)
        self.initial_lr = self.max_lr / self.div_factor
        self.min_lr = self.initial_lr / self.final_div_factor
        self.cycle_momentum = bool(cycle_momentum) and self._momentum_name(optimizer) is not None
        self.base_momentum, self.max_momentum = float(base_momentum), float(max_momentum)
        self._phase_end = (self.pct_start * total_steps - 1, total_steps - 1)
        super().__init__(optimizer)

    @staticmethod
    def _momentum_name(optimizer):
        if getattr(optimizer, "betas", None) is not None:
            return "betas"
        if getattr(optimizer, "momentum", 0):
            return "momentum"
        return None

    @staticmethod
    def _anneal(start, end, pct):
        return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1)

    def _position(self, step):
        if step > self.total_steps:
            raise ValueError(
                f"OneCycleLR: stepped {step} times but total_steps is {self.total_steps}; "
                "build the schedule with the run's real number of steps"
            )
        rising_end, falling_end = self._phase_end
        if step <= rising_end:
            return 0, step / rising_end
        return 1, (step - rising_end) / (falling_end - rising_end)

    def lr_at(self, step):
        phase, pct = self._position(step)
        if phase == 0:
            return self._anneal(self.initial_lr, self.max_lr, pct)
        return self._anneal(self.max_lr, self.min_lr, pct)

    def momentum_at(self, step):
        phase, pct = self._position(step)
        if phase == 0:
            return self._anneal(self.max_momentum, self.base_momentum, pct)
        return self._anneal(self.base_momentum, self.max_momentum, pct)

    def _apply(self, step):
        super()._apply(step)
        if self.cycle_momentum:
            m = self.momentum_at(step)
            if self._momentum_name(self.optimizer) == "betas":
                self.optimizer.betas = (m, self.optimizer.betas[1])
            else:
                self.optimizer.momentum = m


class ReduceLROnPlateau:
    """Divide the rate by 1/`factor` when a metric has not improved for `patience` epochs
    (torch ReduceLROnPlateau; mode "max" for an accuracy, "min" for a loss)."""

    def __init__(self, optimizer, mode="max", factor=0.1, patience=10, threshold=1e-4,
                 threshold_mode="rel", cooldown=0, min_lr=0.0, eps=1e-8):
        if mode not in ("min", "max"):
            raise ValueError(f"ReduceLROnPlateau: mode must be 'min' or 'max', got {mode!r}")
        if threshold_mode not in ("rel", "abs"):
            raise ValueError(
                f"ReduceLROnPlateau: threshold_mode must be 'rel' or 'abs', got {threshold_mode!r}")
        if not 0 < factor < 1:
            raise ValueError(f"ReduceLROnPlateau: factor must be in (0, 1), got {factor}")
        self.optimizer = optimizer
        self.mode, self.factor, self.patience = mode, float(factor), int(patience)
        self.threshold, self.threshold_mode = float(threshold), threshold_mode
        self.cooldown, self.min_lr, self.eps = int(cooldown), float(min_lr), float(eps)
        self.base_lr = float(optimizer.lr)
        self.best = -math.inf if mode == "max" else math.inf
        self.num_bad_epochs = 0
        self.cooldown_counter = 0
        self.last_step = 0

    def _is_better(self, value):
        rel = self.threshold_mode == "rel"
        if self.mode == "max":
            return value > (self.best * (1 + self.threshold) if rel else self.best + self.threshold)
        return value < (self.best * (1 - self.threshold) if rel else self.best - self.threshold)

    def step(self, metric):
        value = float(metric)
        self.last_step += 1
        if self._is_better(value):
            self.best, self.num_bad_epochs = value, 0
        else:
            self.num_bad_epochs += 1
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.num_bad_epochs = 0
        if self.num_bad_epochs > self.patience:
            old = self.optimizer.lr
            new = max(old * self.factor, self.min_lr)
            if old - new > self.eps:
                self.optimizer.lr = new
            self.cooldown_counter = self.cooldown
            self.num_bad_epochs = 0

    @property
    def lr(self) -> float:
        return self.optimizer.lr

    _fields = ("base_lr", "best", "num_bad_epochs", "cooldown_counter", "last_step")

    def state_dict(self) -> dict:
        state = {"type": "ReduceLROnPlateau", "lr": self.optimizer.lr}
        state.update({k: getattr(self, k) for k in self._fields})
        return state

    def load_state_dict(self, state: dict):
        if state.get("type") != "ReduceLROnPlateau":
            raise ValueError(
                f"ReduceLROnPlateau.load_state_dict: the state is for a {state.get('type')} schedule")
        for k in self._fields:
            setattr(self, k, type(getattr(self, k))(state[k]))
        self.optimizer.lr = float(state["lr"])
        return self

    def __repr__(self):
        return f"ReduceLROnPlateau(mode={self.mode!r}, factor={self.factor}, patience={self.patience})"
