"""Each learning-rate schedule gives the same rates (and one-cycle the same momenta) as its
torch.optim.lr_scheduler counterpart, and resumes from its state_dict."""

import math

import numpy as np
import pytest
import torch
from torch.optim import lr_scheduler as T

from convlab.nn import Parameter
from convlab.optim import (
    SGD,
    Adam,
    CosineLR,
    MultiStepLR,
    OneCycleLR,
    ReduceLROnPlateau,
    StepLR,
)

STEPS = 40


def optimizers(lr=0.1, momentum=0.9, adam=False):
    if adam:
        return (Adam([Parameter(np.zeros(2))], lr=lr),
                torch.optim.Adam([torch.zeros(2, requires_grad=True)], lr=lr))
    return (SGD([Parameter(np.zeros(2))], lr=lr, momentum=momentum),
            torch.optim.SGD([torch.zeros(2, requires_grad=True)], lr=lr, momentum=momentum))


def trajectories(ours, theirs, t_opt, steps=STEPS, key="lr"):
    got, want = [ours.optimizer.lr], [t_opt.param_groups[0]["lr"]]
    for _ in range(steps):
        t_opt.step()
        ours.step()
        theirs.step()
        got.append(ours.optimizer.lr)
        want.append(t_opt.param_groups[0][key])
    return np.array(got), np.array(want)


def test_step_lr_matches_torch():
    opt, t_opt = optimizers()
    got, want = trajectories(StepLR(opt, 7, gamma=0.5), T.StepLR(t_opt, 7, gamma=0.5), t_opt)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-12)


def test_multi_step_lr_matches_torch():
    opt, t_opt = optimizers()
    got, want = trajectories(MultiStepLR(opt, [5, 12, 30]), T.MultiStepLR(t_opt, [5, 12, 30]), t_opt)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-12)
    assert got[-1] == pytest.approx(1e-4)


def test_cosine_without_warmup_matches_torch_cosine_annealing():
    opt, t_opt = optimizers()
    ours = CosineLR(opt, total_steps=STEPS, min_lr=1e-3)
    theirs = T.CosineAnnealingLR(t_opt, T_max=STEPS, eta_min=1e-3)
    got, want = trajectories(ours, theirs, t_opt)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-9)
    assert got[-1] == pytest.approx(1e-3)


def test_cosine_with_warmup_matches_torch_linear_then_cosine():
    opt, t_opt = optimizers()
    ours = CosineLR(opt, total_steps=STEPS, warmup_steps=6, warmup_start_factor=0.2)
    theirs = T.SequentialLR(t_opt, [T.LinearLR(t_opt, start_factor=0.2, total_iters=6),
                                    T.CosineAnnealingLR(t_opt, T_max=STEPS - 6)], milestones=[6])
    got, want = trajectories(ours, theirs, t_opt)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-9)
    assert got.max() == pytest.approx(0.1)


@pytest.mark.parametrize("adam", [False, True])
def test_one_cycle_matches_torch_in_rate_and_momentum(adam):
    opt, t_opt = optimizers(adam=adam)
    ours = OneCycleLR(opt, max_lr=0.4, total_steps=STEPS, pct_start=0.25)
    theirs = T.OneCycleLR(t_opt, max_lr=0.4, total_steps=STEPS, pct_start=0.25)
    lrs, momenta, want_lrs, want_momenta = [], [], [], []
    for _ in range(STEPS - 1):
        lrs.append(opt.lr)
        momenta.append(opt.betas[0] if adam else opt.momentum)
        want_lrs.append(t_opt.param_groups[0]["lr"])
        want_momenta.append(t_opt.param_groups[0]["betas"][0] if adam else t_opt.param_groups[0]["momentum"])
        t_opt.step()
        ours.step()
        theirs.step()
    np.testing.assert_allclose(lrs, want_lrs, rtol=1e-6)
    np.testing.assert_allclose(momenta, want_momenta, rtol=1e-6)
    assert max(lrs) == pytest.approx(0.4, rel=1e-2)


def test_one_cycle_refuses_to_step_past_its_total():
    opt, _ = optimizers()
    sched = OneCycleLR(opt, max_lr=0.1, total_steps=3)
    for _ in range(3):
        sched.step()
    with pytest.raises(ValueError, match="total_steps is 3"):
        sched.step()


@pytest.mark.parametrize("mode, kwargs", [
    ("max", dict(patience=2)),
    ("min", dict(patience=1, cooldown=2, factor=0.5)),
    ("max", dict(patience=0, threshold=0.05, threshold_mode="abs", min_lr=1e-3)),
])
def test_reduce_on_plateau_matches_torch(mode, kwargs):
    rng = np.random.default_rng(0)
    metrics = np.concatenate([np.linspace(0.1, 0.9, 5), 0.9 + rng.normal(0, 0.01, 25)])
    if mode == "min":
        metrics = 1 - metrics
    opt, t_opt = optimizers()
    ours = ReduceLROnPlateau(opt, mode=mode, **kwargs)
    theirs = T.ReduceLROnPlateau(t_opt, mode=mode, **kwargs)
    got, want = [], []
    for m in metrics:
        ours.step(m)
        theirs.step(m)
        got.append(opt.lr)
        want.append(t_opt.param_groups[0]["lr"])
    np.testing.assert_allclose(got, want, rtol=1e-6)
    assert min(got) < 0.1


@pytest.mark.parametrize("make", [
    lambda o: StepLR(o, 4),
    lambda o: MultiStepLR(o, [3, 9]),
    lambda o: CosineLR(o, total_steps=20, warmup_steps=3),
    lambda o: OneCycleLR(o, max_lr=1.0, total_steps=20),
])
def test_schedule_resumes_from_its_state_dict(make):
    opt, _ = optimizers()
    straight = make(opt)
    for _ in range(8):
        straight.step()
    state = straight.state_dict()
    rest = []
    for _ in range(8):
        straight.step()
        rest.append((opt.lr, opt.momentum))
    opt2, _ = optimizers()
    resumed = make(opt2)
    resumed.load_state_dict(state)
    resumed_rest = []
    for _ in range(8):
        resumed.step()
        resumed_rest.append((opt2.lr, opt2.momentum))
    assert rest == resumed_rest


def test_reduce_on_plateau_resumes_from_its_state_dict():
    opt, _ = optimizers()
    sched = ReduceLROnPlateau(opt, patience=1)
    for m in (0.5, 0.6, 0.6, 0.6):
        sched.step(m)
    opt2, _ = optimizers()
    resumed = ReduceLROnPlateau(opt2, patience=1).load_state_dict(sched.state_dict())
    for m in (0.6, 0.6):
        sched.step(m)
        resumed.step(m)
    assert opt.lr == opt2.lr == pytest.approx(1e-3)
    assert resumed.best == sched.best == 0.6


def test_lr_at_does_not_touch_the_optimizer():
    opt, _ = optimizers()
    sched = CosineLR(opt, total_steps=10)
    assert sched.lr_at(5) == pytest.approx(0.05)
    assert opt.lr == 0.1 and math.isclose(sched.lr_at(10), 0.0, abs_tol=1e-12)
