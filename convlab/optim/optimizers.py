"""Gradient-descent optimisers with PyTorch's update rules: SGD (momentum, Nesterov, weight decay),
Adam and AdamW.

Each update runs in place on `p.data` through the array namespace's `out=` arguments, with scratch
buffers allocated once per parameter on the first step, so a step allocates nothing on either device.
On the GPU (CuPy arrays, fast paths on) a step is instead one fused launch over every parameter
(`kernels.sgd_step_` / `kernels.adam_step_`, which the tests hold to the rules here), and
`zero_grad` one launch: per-parameter elementwise calls cost ~10 µs of launch each, hundreds a step.
"""

from __future__ import annotations

import math

import numpy as np

from .. import backend, kernels


def _as_parameter_list(params, optimizer_name):
    params = list(params)
    if not params:
        raise ValueError(f"{optimizer_name}: got an empty parameter list; pass model.parameters()")
    for p in params:
        if not hasattr(p, "data") or not hasattr(p, "grad"):
            raise ValueError(
                f"{optimizer_name}: expected Parameters (with .data and .grad), got {type(p).__name__}"
            )
    return params


def _check_non_negative(optimizer_name, **values):
    for name, value in values.items():
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
            raise ValueError(f"{optimizer_name}: {name} must be a finite number ≥ 0, got {value!r}")


def _fusable(weights, grads):
    """True when one fused kernel can update these: CuPy arrays, fast paths on, C-contiguous
    parameters with gradients of the same shape and dtype."""
    return (kernels.accepts(*weights, *grads) and all(w.flags.c_contiguous for w in weights)
            and all(g.shape == w.shape and g.dtype == w.dtype for w, g in zip(weights, grads)))


def _device_of(a):
    return getattr(a.device, "id", a.device)


def zero_grads(params):
    """Zero every existing `.grad` in place: one launch on the GPU, else one fill per gradient."""
    grads = [p.grad for p in params if p.grad is not None]
    if grads and kernels.accepts(*grads) and all(g.flags.c_contiguous for g in grads):
        kernels.zero_(grads)
        return
    for g in grads:
        g[...] = 0


class Optimizer:
    """The shared part: the parameter list, the learning rate `lr`, per-parameter state and
    `zero_grad`, `state_dict`, `load_state_dict`.

    `hyperparameters` names the attributes a schedule or a checkpoint may read and set
    (`lr`, `momentum`, ...).
    """

    hyperparameters: tuple[str, ...] = ("lr",)

    def __init__(self, params, lr):
        self.params = _as_parameter_list(params, type(self).__name__)
        _check_non_negative(type(self).__name__, lr=lr)
        self.lr = float(lr)
        self.step_count = 0
        self.fused = False  # whether the last step ran as one fused GPU launch
        self._hyper = None  # its device array of per-step values (see store_device_hyperparameters)
        # One dict per parameter, in parameter order: named arrays (momentum buffers, moments).
        self.state: list[dict] = [{} for _ in self.params]

    def zero_grad(self):
        """Set every gradient to zero in place (the buffers are kept for the next backward)."""
        zero_grads(self.params)

    def step(self):
        """Apply one update to every parameter that has a gradient."""
        self.step_count += 1
        live = [(p, state) for p, state in zip(self.params, self.state)
                if p.grad is not None and getattr(p, "requires_grad", True)]
        if not live:
            return
        weights, grads = [p.data for p, _ in live], [p.grad for p, _ in live]
        self.fused = _fusable(weights, grads)
        if self.fused:
            if self._hyper is None or _device_of(self._hyper) != _device_of(weights[0]):
                self._hyper = kernels.optim.hyper_buffer()
            # While a CUDA graph records this step, the values are stored before each replay
            # (store_device_hyperparameters), not baked into the recording.
            self._fused_update(weights, grads, [state for _, state in live], store=not kernels.blas.recording())
            return
        for p, state in live:
            self._update(p.data, p.grad, state)

    def device_hyperparameters(self):
        """The values the fused kernel reads from device memory this step (the step count
        already advanced): those a schedule may change every step."""
        return (self.lr,)

    def recorded_hyperparameters(self):
        """The values a recording of the fused step fixes (a change must record it again)."""
        return {}

    def store_device_hyperparameters(self):
        """Write `device_hyperparameters()` to the device, on the current stream: what a
        replayed CUDA graph of a step (convlab.train.graph) does before each launch."""
        if self._hyper is not None:
            kernels.optim.store_hyper(self._hyper, *self.device_hyperparameters())

    def _update(self, w, g, state):
        raise NotImplementedError

    def _fused_update(self, weights, grads, states, store):
        """The same update for all parameters at once, on the GPU (see the module docstring)."""
        raise NotImplementedError

    def _scratch(self, state, name, like):
        buf = state.get(name)
        if buf is None or buf.shape != like.shape or buf.dtype != like.dtype:
            buf = state[name] = backend.get_array_module(like).empty_like(like)
        return buf

    # -- state ----------------------------------------------------------------------------
    _persistent: tuple[str, ...] = ()  # names in `state` that carry information between steps

    def state_dict(self) -> dict:
        """Hyper-parameters, the step counter and per-parameter buffers (as NumPy copies)."""
        return {
            "type": type(self).__name__,
            "hyperparameters": {name: getattr(self, name) for name in self.hyperparameters},
            "step_count": self.step_count,
            "state": {
                str(i): {k: np.array(backend.to_numpy(v)) for k, v in s.items() if k in self._persistent}
                for i, s in enumerate(self.state)
            },
        }

    def load_state_dict(self, state: dict):
        """Restore what `state_dict` returned; buffers move to each parameter's device and dtype."""
        kind = state.get("type")
        if kind != type(self).__name__:
            raise ValueError(f"{type(self).__name__}.load_state_dict: the state is for a {kind} optimiser")
        per_param = state.get("state", {})
        if any(int(i) >= len(self.params) for i in per_param):
            raise ValueError(
                f"{type(self).__name__}.load_state_dict: the state has buffers for "
                f"{len(per_param)} parameters but this optimiser has {len(self.params)}"
            )
        for name, value in state.get("hyperparameters", {}).items():
            if name in self.hyperparameters:
                setattr(self, name, tuple(value) if isinstance(value, list) else value)
        self.step_count = int(state.get("step_count", 0))
        self.state = [{} for _ in self.params]
        for i, buffers in per_param.items():
            p = self.params[int(i)]
            xp = backend.get_array_module(p.data)
            for k, v in buffers.items():
                v = np.asarray(v)
                if v.shape != tuple(p.data.shape):
                    raise ValueError(
                        f"{type(self).__name__}.load_state_dict: buffer '{k}' of parameter {i} has shape "
                        f"{v.shape}, the parameter has {tuple(p.data.shape)}"
                    )
                self.state[int(i)][k] = xp.asarray(v, dtype=p.data.dtype).copy()
        return self

    def __repr__(self):
        hp = ", ".join(f"{k}={getattr(self, k)}" for k in self.hyperparameters)
        return f"{type(self).__name__}({hp})"


class SGD(Optimizer):
    """Stochastic gradient descent, PyTorch's rule (dampening 0):

        g ← grad + weight_decay·w
        b ← momentum·b + g            (b ← g on the first step)
        g ← g + momentum·b  (Nesterov)   or   g ← b
        w ← w − lr·g
    """

    hyperparameters = ("lr", "momentum", "nesterov", "weight_decay")
    _persistent = ("momentum_buffer",)

    def __init__(self, params, lr=0.01, momentum=0.0, nesterov=False, weight_decay=0.0):
        super().__init__(params, lr)
        _check_non_negative("SGD", momentum=momentum, weight_decay=weight_decay)
        if nesterov and momentum <= 0:
            raise ValueError(f"SGD: Nesterov momentum needs momentum > 0, got momentum={momentum}")
        self.momentum = float(momentum)
        self.nesterov = bool(nesterov)
        self.weight_decay = float(weight_decay)

    def _update(self, w, g, state):
        xp = backend.get_array_module(w)
        if self.weight_decay:
            d = self._scratch(state, "direction", w)
            xp.multiply(w, self.weight_decay, out=d)
            d += g
        else:
            d = g
        if self.momentum:
            buf = state.get("momentum_buffer")
            if buf is None:
                buf = state["momentum_buffer"] = d.copy()
            else:
                buf *= self.momentum
                buf += d
            s = self._scratch(state, "direction", w)
            if self.nesterov:
                # w − lr·(d + m·b), as two in-place subtractions
                xp.multiply(d, self.lr, out=s)
                w -= s
                xp.multiply(buf, self.lr * self.momentum, out=s)
                w -= s
                return
            d = buf
        else:
            s = self._scratch(state, "direction", w)
        xp.multiply(d, self.lr, out=s)
        w -= s

    def device_hyperparameters(self):
        return self.lr, self.momentum

    def recorded_hyperparameters(self):
        return {"has_momentum": self.momentum != 0, "nesterov": self.nesterov, "weight_decay": self.weight_decay}

    def _fused_update(self, weights, grads, states, store):
        kernels.sgd_step_(weights, grads, states, self.lr, momentum=self.momentum, nesterov=self.nesterov,
                          weight_decay=self.weight_decay, hyper=self._hyper, store=store)


class Adam(Optimizer):
    """Adam (Kingma & Ba), PyTorch's formulation; `weight_decay` adds L2 to the gradient:

        g ← grad + weight_decay·w
        m ← β₁·m + (1−β₁)·g,   v ← β₂·v + (1−β₂)·g²
        w ← w − lr/(1−β₁ᵗ) · m / (√v / √(1−β₂ᵗ) + ε)
    """

    hyperparameters = ("lr", "betas", "eps", "weight_decay")
    _persistent = ("exp_avg", "exp_avg_sq")
    _decoupled = False

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        super().__init__(params, lr)
        name = type(self).__name__
        betas = tuple(float(b) for b in betas)
        if len(betas) != 2 or not all(0 <= b < 1 for b in betas):
            raise ValueError(f"{name}: betas must be two numbers in [0, 1), got {betas}")
        _check_non_negative(name, eps=eps, weight_decay=weight_decay)
        self.betas, self.eps, self.weight_decay = betas, float(eps), float(weight_decay)

    def _update(self, w, g, state):
        xp = backend.get_array_module(w)
        beta1, beta2 = self.betas
        t = self.step_count
        s = self._scratch(state, "scratch", w)
        if self.weight_decay and self._decoupled:
            w *= 1 - self.lr * self.weight_decay
        elif self.weight_decay:
            d = self._scratch(state, "direction", w)
            xp.multiply(w, self.weight_decay, out=d)
            d += g
            g = d
        m = state.get("exp_avg")
        if m is None:
            m = state["exp_avg"] = xp.zeros_like(w)
            state["exp_avg_sq"] = xp.zeros_like(w)
        v = state["exp_avg_sq"]
        # m ← m + (1−β₁)(g − m), PyTorch's lerp
        xp.subtract(g, m, out=s)
        s *= 1 - beta1
        m += s
        xp.multiply(g, g, out=s)
        s *= 1 - beta2
        v *= beta2
        v += s
        step_size = self.lr / (1 - beta1**t)
        xp.sqrt(v, out=s)
        s /= math.sqrt(1 - beta2**t)
        s += self.eps
        xp.divide(m, s, out=s)
        s *= step_size
        w -= s

    def _fused_update(self, weights, grads, states, store):
        kernels.adam_step_(weights, grads, states, self.lr, self.betas, self.eps, self.weight_decay,
                           step=self.step_count, decoupled=self._decoupled, hyper=self._hyper, store=store)

    def device_hyperparameters(self):
        return kernels.optim.adam_hyper(self.lr, self.betas, self.step_count)

    def recorded_hyperparameters(self):
        return {"beta2": self.betas[1], "eps": self.eps, "weight_decay": self.weight_decay,
                "decoupled": self._decoupled}


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter): w ← w·(1 − lr·weight_decay) before
    the Adam step, PyTorch's formulation. Default weight decay 0.01 as in PyTorch."""

    _decoupled = True

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01):
        super().__init__(params, lr, betas, eps, weight_decay)
