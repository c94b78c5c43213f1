"""SGD, Adam and AdamW follow torch.optim's updates step for step; the update is in place and its
state survives a state_dict round trip."""

import numpy as np
import pytest
import torch

from convlab.nn import Parameter
from convlab.optim import SGD, Adam, AdamW, clip_grad_norm

SHAPES = [(4, 3, 3, 3), (4,), (7, 5)]


def make_problem(seed, steps, dtype=np.float64):
    rng = np.random.default_rng(seed)
    weights = [rng.normal(size=s).astype(dtype) for s in SHAPES]
    grads = [[rng.normal(size=s).astype(dtype) for s in SHAPES] for _ in range(steps)]
    return weights, grads


def run_convlab(cls, kwargs, weights, grads, split_at=None):
    params = [Parameter(w.copy()) for w in weights]
    opt = cls(params, **kwargs)
    for t, step_grads in enumerate(grads):
        if split_at is not None and t == split_at:
            state = opt.state_dict()
            params = [Parameter(p.data.copy()) for p in params]
            opt = cls(params, **kwargs)
            opt.load_state_dict(state)
        for p, g in zip(params, step_grads):
            p.grad = g.copy()
        opt.step()
    return [p.data for p in params]


def run_torch(cls, kwargs, weights, grads):
    params = [torch.nn.Parameter(torch.tensor(w)) for w in weights]
    opt = cls(params, **kwargs)
    for step_grads in grads:
        for p, g in zip(params, step_grads):
            p.grad = torch.tensor(g)
        opt.step()
    return [p.detach().numpy() for p in params]


CASES = [
    (SGD, torch.optim.SGD, dict(lr=0.1)),
    (SGD, torch.optim.SGD, dict(lr=0.05, momentum=0.9)),
    (SGD, torch.optim.SGD, dict(lr=0.05, momentum=0.9, weight_decay=5e-4)),
    (SGD, torch.optim.SGD, dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-4)),
    (SGD, torch.optim.SGD, dict(lr=0.05, weight_decay=1e-2)),
    (Adam, torch.optim.Adam, dict(lr=1e-3)),
    (Adam, torch.optim.Adam, dict(lr=3e-3, betas=(0.8, 0.99), eps=1e-6, weight_decay=1e-2)),
    (AdamW, torch.optim.AdamW, dict(lr=1e-3)),
    (AdamW, torch.optim.AdamW, dict(lr=2e-3, betas=(0.85, 0.995), weight_decay=0.1)),
]
IDS = [f"{c.__name__}-{'-'.join(f'{k}={v}' for k, v in kw.items())}" for c, _, kw in CASES]


@pytest.mark.parametrize("ours, theirs, kwargs", CASES, ids=IDS)
def test_matches_torch_for_several_steps(ours, theirs, kwargs):
    weights, grads = make_problem(0, steps=6)
    got = run_convlab(ours, kwargs, weights, grads)
    want = run_torch(theirs, kwargs, weights, grads)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("ours, theirs, kwargs", CASES[2:4] + CASES[6:], ids=IDS[2:4] + IDS[6:])
def test_matches_torch_in_float32(ours, theirs, kwargs):
    weights, grads = make_problem(1, steps=5, dtype=np.float32)
    got = run_convlab(ours, kwargs, weights, grads)
    want = run_torch(theirs, kwargs, weights, grads)
    for g, w in zip(got, want):
        assert g.dtype == np.float32
        np.testing.assert_allclose(g, w, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("ours, _, kwargs", CASES, ids=IDS)
def test_state_dict_round_trip_continues_the_same_trajectory(ours, _, kwargs):
    weights, grads = make_problem(2, steps=6)
    straight = run_convlab(ours, kwargs, weights, grads)
    resumed = run_convlab(ours, kwargs, weights, grads, split_at=3)
    for a, b in zip(straight, resumed):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("cls, kwargs", [(SGD, dict(lr=0.1, momentum=0.9, weight_decay=1e-3)),
                                         (AdamW, dict(lr=1e-3))])
def test_step_updates_the_parameter_arrays_in_place(cls, kwargs):
    weights, grads = make_problem(3, steps=3, dtype=np.float32)
    params = [Parameter(w) for w in weights]
    arrays = [p.data for p in params]
    opt = cls(params, **kwargs)
    for step_grads in grads:
        for p, g in zip(params, step_grads):
            p.grad = g
        opt.step()
    assert all(p.data is a for p, a in zip(params, arrays))
    assert not np.array_equal(arrays[0], make_problem(3, steps=3, dtype=np.float32)[0][0])


def test_parameters_without_gradient_are_left_alone():
    frozen, trained = Parameter(np.ones(3)), Parameter(np.ones(3))
    trained.grad = np.ones(3)
    SGD([frozen, trained], lr=0.5).step()
    np.testing.assert_array_equal(frozen.data, np.ones(3))
    np.testing.assert_array_equal(trained.data, np.full(3, 0.5))


def test_zero_grad_resets_gradients_in_place():
    p = Parameter(np.ones(3))
    p.grad = g = np.full(3, 2.0)
    SGD([p], lr=0.1).zero_grad()
    assert p.grad is g and not g.any()


@pytest.mark.parametrize("kwargs, message", [
    (dict(lr=-1), "lr must be a finite number"),
    (dict(lr=0.1, momentum=-0.5), "momentum must be"),
    (dict(lr=0.1, nesterov=True), "Nesterov momentum needs momentum > 0"),
])
def test_sgd_rejects_bad_hyperparameters(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SGD([Parameter(np.ones(2))], **kwargs)


def test_optimizer_rejects_an_empty_parameter_list():
    with pytest.raises(ValueError, match="empty parameter list"):
        Adam([])


def test_load_state_dict_rejects_another_optimizers_state():
    p = Parameter(np.ones(2))
    with pytest.raises(ValueError, match="the state is for a SGD optimiser"):
        Adam([p]).load_state_dict(SGD([p], lr=0.1).state_dict())


@pytest.mark.parametrize("max_norm", [0.5, 3.0, 100.0])
def test_clip_grad_norm_matches_torch(max_norm):
    _, grads = make_problem(4, steps=1)
    params = [Parameter(np.zeros(s)) for s in SHAPES]
    for p, g in zip(params, grads[0]):
        p.grad = g.copy()
    tparams = [torch.nn.Parameter(torch.zeros(s, dtype=torch.float64)) for s in SHAPES]
    for p, g in zip(tparams, grads[0]):
        p.grad = torch.tensor(g)
    got = clip_grad_norm(params, max_norm)
    want = torch.nn.utils.clip_grad_norm_(tparams, max_norm)
    assert got == pytest.approx(float(want), rel=1e-12)
    for p, t in zip(params, tparams):
        np.testing.assert_allclose(p.grad, t.grad.numpy(), rtol=1e-12)


def test_clip_grad_norm_reports_a_non_finite_norm():
    p = Parameter(np.zeros(2))
    p.grad = np.array([1.0, np.inf])
    assert not np.isfinite(clip_grad_norm([p], 1.0))
