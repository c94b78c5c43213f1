"""`Module`, `Parameter` and `Sequential`: the containers every layer and block is built from.

A module's `forward(x)` keeps what its backward needs; `backward(dy)` returns dx and adds each
parameter's gradient into `.grad`. Parameter and buffer names follow PyTorch, so a
`state_dict` moves between the two.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np

from .. import backend


class Parameter:
    """A trainable array (`.data`) and the gradient accumulated into it (`.grad`)."""

    __slots__ = ("data", "grad", "requires_grad")

    def __init__(self, data, requires_grad=True):
        self.data = data
        self.grad = None
        self.requires_grad = requires_grad

    @property
    def shape(self):
        return self.data.shape

    @property
    def size(self):
        return self.data.size

    def accumulate(self, g):
        """Add a gradient contribution (allocating `.grad` on first use)."""
        if not self.requires_grad or g is None:
            return
        if self.grad is None:
            self.grad = g.astype(self.data.dtype, copy=True)
        else:
            self.grad += g

    def __repr__(self):
        return f"Parameter(shape={tuple(self.data.shape)}, dtype={self.data.dtype})"


class _HookHandle:
    def __init__(self, hooks, key):
        self._hooks, self._key = hooks, key

    def remove(self):
        self._hooks.pop(self._key, None)


# What forward writes on every call: never a parameter, buffer or submodule, so setting it skips
# the registration checks below (each layer sets one or two per step).
_STEP_STATE = frozenset({"_cache", "_relu_out", "_absorbed"})


class Module:
    """Base class: registers parameters, buffers and submodules set as attributes."""

    def __init__(self):
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "training", True)
        object.__setattr__(self, "_cache", None)
        object.__setattr__(self, "_forward_hooks", OrderedDict())

    # -- registration -------------------------------------------------------------------
    def __setattr__(self, name, value):
        if name in _STEP_STATE:
            object.__setattr__(self, name, value)
            return
        if "_parameters" not in self.__dict__:
            raise RuntimeError(f"{type(self).__name__}.__init__ must call super().__init__() first")
        params, mods, bufs = self._parameters, self._modules, self._buffers
        if isinstance(value, Parameter):
            mods.pop(name, None)
            bufs.pop(name, None)
            params[name] = value
        elif isinstance(value, Module):
            params.pop(name, None)
            bufs.pop(name, None)
            mods[name] = value
        elif name in bufs:
            bufs[name] = value
        else:
            params.pop(name, None)
            mods.pop(name, None)
        object.__setattr__(self, name, value)

    def register_buffer(self, name, value):
        """A state array that is saved in the state_dict but not trained (e.g. running_mean)."""
        self._buffers[name] = value
        object.__setattr__(self, name, value)

    def add_module(self, name, module):
        setattr(self, name, module)

    # -- the computation -----------------------------------------------------------------
    def forward(self, x):
        raise NotImplementedError

    def backward(self, dy):
        raise NotImplementedError(f"{type(self).__name__} has no backward pass")

    def __call__(self, *args, **kwargs):
        y = self.forward(*args, **kwargs)
        if self._forward_hooks:
            for hook in list(self._forward_hooks.values()):
                hook(self, args, y)
        return y

    # Layers that can apply a following ReLU themselves, in the pass that writes their output
    # (Conv2d, BatchNorm), set this and take forward(x, relu=True), masking dy in backward.
    fuses_relu = False
    absorbable = False  # a plain ReLU: what a fusing layer can apply in its place

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        # a subclass with its own forward keeps neither property unless it says so: its forward
        # need not take relu=True, and it may do more than a ReLU
        for flag in ("fuses_relu", "absorbable"):
            if "forward" in cls.__dict__ and flag not in cls.__dict__:
                setattr(cls, flag, False)

    def register_forward_hook(self, hook):
        """Call `hook(module, inputs, output)` after each forward; returns a handle with remove()."""
        key = object()
        self._forward_hooks[key] = hook
        return _HookHandle(self._forward_hooks, key)

    def _need_cache(self):
        if self._cache is None:
            raise ValueError(f"{self._describe()}: backward() was called before forward()")
        return self._cache

    def _describe(self):
        return type(self).__name__

    # -- traversal ----------------------------------------------------------------------
    def children(self):
        return iter(self._modules.values())

    def named_children(self):
        return iter(self._modules.items())

    def named_modules(self, prefix=""):
        yield prefix, self
        for name, m in self._modules.items():
            yield from m.named_modules(f"{prefix}.{name}" if prefix else name)

    def modules(self):
        for _, m in self.named_modules():
            yield m

    def named_parameters(self, prefix=""):
        for name, p in self._parameters.items():
            yield (f"{prefix}.{name}" if prefix else name), p
        for mname, m in self._modules.items():
            yield from m.named_parameters(f"{prefix}.{mname}" if prefix else mname)

    def parameters(self):
        for _, p in self.named_parameters():
            yield p

    def named_buffers(self, prefix=""):
        for name, b in self._buffers.items():
            if b is not None:
                yield (f"{prefix}.{name}" if prefix else name), b
        for mname, m in self._modules.items():
            yield from m.named_buffers(f"{prefix}.{mname}" if prefix else mname)

    # -- modes and gradients --------------------------------------------------------------
    def train(self, mode=True):
        for m in self.modules():
            object.__setattr__(m, "training", mode)
        return self

    def eval(self):
        return self.train(False)

    def zero_grad(self):
        """Reset every gradient to zero (in place, so the buffers are reused; one launch on the GPU)."""
        from ..optim.optimizers import zero_grads

        zero_grads(self.parameters())

    def clear_cache(self):
        """Drop what forward kept for backward (frees activation memory after inference)."""
        for m in self.modules():
            object.__setattr__(m, "_cache", None)
            if m.__dict__.get("_relu_out") is not None:  # a fused ReLU's output
                object.__setattr__(m, "_relu_out", None)

    # -- state --------------------------------------------------------------------------
    def state_dict(self):
        """Parameters and buffers by PyTorch-style dotted name, as NumPy arrays (copies)."""
        out = OrderedDict()
        for prefix, m in self.named_modules():
            for name, p in m._parameters.items():
                out[f"{prefix}.{name}" if prefix else name] = np.array(backend.to_numpy(p.data))
            for name, b in m._buffers.items():
                if b is not None:
                    out[f"{prefix}.{name}" if prefix else name] = np.array(backend.to_numpy(b))
        return out

    def load_state_dict(self, state, strict=True):
        """Copy arrays into the parameters and buffers; names and shapes must match."""
        own = {}
        for prefix, m in self.named_modules():
            for name in list(m._parameters) + [b for b in m._buffers if m._buffers[b] is not None]:
                own[f"{prefix}.{name}" if prefix else name] = (m, name)
        missing = [k for k in own if k not in state]
        unexpected = [k for k in state if k not in own]
        if strict and (missing or unexpected):
            raise ValueError(
                f"{type(self).__name__}.load_state_dict: keys do not match; "
                f"missing {missing[:8]}{'…' if len(missing) > 8 else ''}, "
                f"unexpected {unexpected[:8]}{'…' if len(unexpected) > 8 else ''}"
            )
        for key, (m, name) in own.items():
            if key not in state:
                continue
            value = np.asarray(backend.to_numpy(state[key]))
            if name in m._parameters:
                p = m._parameters[name]
                if tuple(value.shape) != tuple(p.data.shape):
                    raise ValueError(
                        f"{type(self).__name__}.load_state_dict: '{key}' expected shape "
                        f"{tuple(p.data.shape)}, got {tuple(value.shape)}"
                    )
                xp = backend.get_array_module(p.data)
                p.data = xp.asarray(value, dtype=p.data.dtype).copy()
            else:
                b = m._buffers[name]
                if tuple(value.shape) != tuple(b.shape):
                    raise ValueError(
                        f"{type(self).__name__}.load_state_dict: '{key}' expected shape "
                        f"{tuple(b.shape)}, got {tuple(value.shape)}"
                    )
                xp = backend.get_array_module(b)
                setattr(m, name, xp.asarray(value, dtype=b.dtype).copy())
        return self

    def to(self, device=None, dtype=None):
        """Move parameters and buffers to "cpu"/"gpu" and/or cast floating arrays to `dtype`."""
        if device is not None and device not in ("cpu", "gpu"):
            raise ValueError(f"device must be 'cpu' or 'gpu', got {device!r}")
        if device == "gpu" and not backend.gpu_available():
            raise backend.DeviceError("model.to('gpu'): no CUDA GPU is usable here")

        def move(a, floating=True):
            if a is None:
                return None
            if device == "cpu":
                a = backend.to_numpy(a)
            elif device == "gpu":
                import cupy

                a = cupy.asarray(a)
            if dtype is not None and floating and a.dtype.kind == "f":
                a = a.astype(dtype)
            return a

        for m in self.modules():
            for p in m._parameters.values():
                p.data = move(p.data)
                p.grad = move(p.grad)
            for name, b in list(m._buffers.items()):
                if b is not None:
                    setattr(m, name, move(b))
            object.__setattr__(m, "_cache", None)
        return self

    def double(self):
        return self.to(dtype=np.float64)

    def float(self):
        return self.to(dtype=np.float32)

    def skip_input_grad(self, example):
        """Stop computing the gradient with respect to the network's input (the data), which
        training never uses: runs `example` through the model once and marks the layers that
        receive the input array itself. Afterwards `backward` returns None. Returns their names."""
        hits, handles = [], []

        def check(module, inputs, output):
            if inputs and inputs[0] is example and hasattr(module, "input_grad"):
                hits.append(module)

        names = {id(m): n for n, m in self.named_modules()}
        modes = {id(m): m.training for m in self.modules()}
        for m in self.modules():
            if hasattr(m, "input_grad"):
                handles.append(m.register_forward_hook(check))
        self.eval()  # no running-statistics update from this probe
        try:
            self.forward(example)
        finally:
            for h in handles:
                h.remove()
            for m in self.modules():
                object.__setattr__(m, "training", modes[id(m)])
            self.clear_cache()
        for m in hits:
            m.input_grad = False
        return [names[id(m)] for m in hits]

    def num_parameters(self, trainable_only=False):
        return sum(int(p.size) for p in self.parameters() if p.requires_grad or not trainable_only)

    # -- printing -----------------------------------------------------------------------
    def extra_repr(self):
        return ""

    def __repr__(self):
        lines = [f"{type(self).__name__}({self.extra_repr()}"]
        for name, m in self._modules.items():
            sub = repr(m).replace("\n", "\n  ")
            lines.append(f"  ({name}): {sub}")
        if len(lines) == 1:
            return lines[0] + ")"
        return "\n".join(lines) + "\n)"


def then_relu(layer, relu, x):
    """relu(layer(x)). When `layer` can apply the ReLU itself and no hook watches either output,
    it does (one pass over the activations fewer) and `relu` is marked absorbed: its backward
    then passes dy through and layer's backward masks it. Blocks call this; Sequential finds
    such pairs by itself."""
    if layer.fuses_relu and relu.absorbable and not layer._forward_hooks \
            and not relu._forward_hooks:
        y = layer.forward(x, relu=True)
        relu._absorbed, relu._cache = True, None
        return y
    return relu(layer(x))


class Sequential(Module):
    """Modules applied in order; backward runs them in reverse."""

    def __init__(self, *modules):
        super().__init__()
        if len(modules) == 1 and isinstance(modules[0], (OrderedDict, dict)):
            for name, m in modules[0].items():
                self.add_module(name, m)
        else:
            for i, m in enumerate(modules):
                self.add_module(str(i), m)

    def __len__(self):
        return len(self._modules)

    def __getitem__(self, i):
        mods = list(self._modules.values())
        if isinstance(i, slice):
            return Sequential(*mods[i])
        return mods[i]

    def __iter__(self):
        return iter(self._modules.values())

    def append(self, module):
        self.add_module(str(len(self._modules)), module)
        return self

    def forward(self, x):
        mods = list(self._modules.values())
        i = 0
        while i < len(mods):
            m = mods[i]
            if i + 1 < len(mods) and mods[i + 1].absorbable:
                x = then_relu(m, mods[i + 1], x)  # a layer and the ReLU after it, fused if it can
                i += 2
                continue
            x = m(x)
            i += 1
        return x

    def backward(self, dy):
        for m in reversed(self._modules.values()):
            dy = m.backward(dy)
        return dy
