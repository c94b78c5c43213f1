"""`summary(model, input_shape)`: a Keras-style table of a network, layer by layer — output
shape, parameters, multiply-accumulates and receptive field — from one forward pass.

The pass runs in eval mode on a batch of one zero image, with a forward hook on every module;
each leaf module (one without children) becomes a row, in the order the forward pass called
it.

Conventions:
* MACs count only the multiply-accumulates of convolutions (output elements × in/groups ×
  kh × kw) and dense layers (in × out); batch norm, pooling, activations and the additions of
  residual sums are not counted, as in the published figures (ResNet-18: 1.82 G).
  FLOPs = 2 × MACs.
* Parameters are the model's `Parameter`s (trainable or frozen). Batch-norm running
  statistics are buffers, reported apart, so the totals match the published counts.
* Activation memory is the sum of every leaf layer's output for one image.
* Receptive field and jump (the product of strides so far) follow each array through the
  leaf layers: rf_out = rf_in + (k_eff − 1)·jump_in, jump_out = jump_in·stride, with
  k_eff = dilation·(k − 1) + 1. Where branches meet (a residual sum, an inception or dense
  concatenation) the larger receptive field wins. Layers without spatial output (dense,
  global pooling) have none, and squeeze-excite's global gate is not counted.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import asdict, dataclass, replace

import numpy as np

from .. import backend, nn


@dataclass(frozen=True)
class LayerRow:
    """One leaf layer's call in the forward pass (shapes exclude the batch axis)."""

    name: str
    type: str
    input_shape: tuple
    output_shape: tuple
    params: int
    trainable_params: int
    macs: int
    receptive_field: tuple | None  # (height, width) in input pixels; None without spatial output
    jump: tuple | None  # (height, width) distance in input pixels between adjacent outputs
    output_bytes: int


@dataclass(frozen=True)
class ModelSummary:
    """Rows and totals of `summary`; `str()` prints the table, `to_dict()` gives JSON-ready data."""

    model_type: str
    input_shape: tuple
    output_shape: tuple
    rows: list
    total_params: int
    trainable_params: int
    non_trainable_params: int
    buffer_elements: int
    total_macs: int
    activation_bytes: int
    dtype: str

    @property
    def total_flops(self):
        return 2 * self.total_macs

    @property
    def receptive_field(self):
        """The largest receptive field of any spatial layer output, (height, width)."""
        fields = [r.receptive_field for r in self.rows if r.receptive_field is not None]
        return max(fields) if fields else None

    def to_dict(self):
        rows = []
        for r in self.rows:
            d = asdict(r)
            for key in ("input_shape", "output_shape", "receptive_field", "jump"):
                d[key] = None if d[key] is None else list(d[key])
            rows.append(d)
        return {
            "model": self.model_type,
            "input_shape": list(self.input_shape),
            "output_shape": list(self.output_shape),
            "rows": rows,
            "total_params": self.total_params,
            "trainable_params": self.trainable_params,
            "non_trainable_params": self.non_trainable_params,
            "buffer_elements": self.buffer_elements,
            "total_macs": self.total_macs,
            "total_flops": self.total_flops,
            "activation_bytes": self.activation_bytes,
            "dtype": self.dtype,
            "receptive_field": None if self.receptive_field is None else list(self.receptive_field),
        }

    def __str__(self):
        header = ("Layer", "Type", "Output shape", "Params", "MACs", "RF", "Jump")
        body = [(r.name, r.type, _shape(r.output_shape), f"{r.params:,}", _si(r.macs) if r.macs else "",
                 _pair(r.receptive_field), _pair(r.jump)) for r in self.rows]
        widths = [max(len(str(row[i])) for row in [header] + body) for i in range(len(header))]
        right = (False, False, False, True, True, True, True)

        def line(cells):
            padded = (c.rjust(w) if r else c.ljust(w) for c, w, r in zip(cells, widths, right))
            return "  ".join(padded).rstrip()

        rule_len = sum(widths) + 2 * (len(widths) - 1)
        lines = [f"{self.model_type} on input {_shape(self.input_shape)}", "=" * rule_len, line(header),
                 "=" * rule_len]
        lines += [line(cells) for cells in body]
        param_bytes = self.total_params * np.dtype(self.dtype).itemsize
        lines += [
            "=" * rule_len,
            f"Total params: {self.total_params:,} ({_bytes(param_bytes)} as {self.dtype})",
            f"Trainable params: {self.trainable_params:,}",
            f"Non-trainable params: {self.non_trainable_params:,}",
            f"Buffers (batch-norm running statistics): {self.buffer_elements:,}",
            f"MACs per image: {_si(self.total_macs)} (FLOPs: {_si(self.total_flops)}; "
            "conv and dense layers only)",
            f"Activation memory per image: {_bytes(self.activation_bytes)} (every leaf layer's output)",
            f"Output shape: {_shape(self.output_shape)}; largest receptive field: "
            f"{_pair(self.receptive_field) or '-'} pixels",
        ]
        return "\n".join(lines)


def _shape(shape):
    return "(" + ", ".join(str(s) for s in shape) + ")"


def _pair(p):
    if p is None:
        return ""
    return str(p[0]) if p[0] == p[1] else f"{p[0]}×{p[1]}"


def _si(n):
    for div, unit in ((1e9, "G"), (1e6, "M"), (1e3, "K")):
        if n >= div:
            return f"{n / div:.2f} {unit}"
    return str(n)


def _bytes(n):
    for div, unit in ((2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB")):
        if n >= div:
            return f"{n / div:.2f} {unit}"
    return f"{n} B"


def _as_pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def layer_macs(module, input_shape, output_shape):
    """Multiply-accumulates of one call for one image: conv and dense layers, else 0."""
    if isinstance(module, nn.Conv2d):
        kh, kw = module.kernel_size
        return math.prod(output_shape) * (module.in_channels // module.groups) * kh * kw
    if isinstance(module, nn.Linear):
        return math.prod(output_shape) * module.in_features
    return 0


def _window(module, input_hw, output_hw):
    """(effective kernel, stride) per axis of a leaf layer; (1, 1) for the pointwise ones."""
    if hasattr(module, "kernel_size") and not isinstance(module, nn.AdaptiveAvgPool2d):
        k = _as_pair(module.kernel_size)
        s = _as_pair(getattr(module, "stride", 1))
        d = _as_pair(getattr(module, "dilation", 1))
        return tuple(di * (ki - 1) + 1 for di, ki in zip(d, k)), s
    if hasattr(module, "stride"):  # e.g. the zero-padding shortcut: subsampling, 1×1 window
        return (1, 1), _as_pair(module.stride)
    if input_hw == output_hw:
        return (1, 1), (1, 1)
    # A layer that shrinks the map without declaring a window (adaptive pooling): k = s = in / out.
    s = tuple(max(1, i // o) for i, o in zip(input_hw, output_hw))
    return s, s


class _FieldTracker:
    """Receptive field and jump of every array the forward pass produced, by array identity."""

    def __init__(self, x):
        self.known = {id(x): ((1, 1), (1, 1))}
        self.pinned = [x]  # keep arrays alive so their ids stay unique during the pass
        self.rows = []

    def _largest_under(self, prefix):
        """(rf, jump) of the largest-field spatial row inside module `prefix`, or None."""
        best = None
        for r in self.rows:
            inside = prefix == "" or r.name.startswith(prefix + ".")
            if inside and r.receptive_field is not None and (best is None or r.receptive_field > best[0]):
                best = (r.receptive_field, r.jump)
        return best

    def field_of(self, x, name):
        """(rf, jump) of an input array; one made outside any leaf (a sum, a concatenation)
        takes the largest field recorded inside the innermost enclosing module."""
        if id(x) in self.known:
            return self.known[id(x)]
        prefix = name
        while prefix:
            prefix = prefix.rpartition(".")[0]
            best = self._largest_under(prefix)
            if best is not None:
                return best
        return (1, 1), (1, 1)

    def record(self, name, y, field):
        self.pinned.append(y)
        if field is not None:
            self.known[id(y)] = field

    def leaf(self, name, module, x, y):
        in_shape, out_shape = tuple(x.shape[1:]), tuple(y.shape[1:])
        field = None
        if x.ndim == 4 and y.ndim == 4:
            (rf, jump) = self.field_of(x, name)
            k, s = _window(module, in_shape[1:], out_shape[1:])
            field = (tuple(r + (ki - 1) * j for r, ki, j in zip(rf, k, jump)),
                     tuple(j * si for j, si in zip(jump, s)))
        self.record(name, y, field)
        own = list(module._parameters.values())
        self.rows.append(LayerRow(
            name=name, type=type(module).__name__, input_shape=in_shape, output_shape=out_shape,
            params=sum(int(p.size) for p in own if p is not None),
            trainable_params=sum(int(p.size) for p in own if p is not None and p.requires_grad),
            macs=int(layer_macs(module, in_shape, out_shape)),
            receptive_field=None if field is None else field[0],
            jump=None if field is None else field[1],
            output_bytes=int(y.size * y.dtype.itemsize),
        ))

    def composite(self, name, x, y):
        """A block's output made by its own arithmetic (sum, concatenation) gets the largest
        field among the layers inside it."""
        if getattr(y, "ndim", None) != 4 or id(y) in self.known:
            return
        best = self._largest_under(name)
        if best is None:
            best = self.field_of(x, name) if getattr(x, "ndim", None) == 4 else None
        self.record(name, y, best)


def summary(model, input_shape):
    """Run one zero image of shape (C, H, W) through `model` (eval mode) and tabulate it.

    Returns a `ModelSummary`; the model's train/eval modes are restored afterwards.
    """
    shape = tuple(input_shape)
    if len(shape) != 3 or not all(isinstance(s, int) and s > 0 for s in shape):
        raise ValueError(f"summary: input_shape must be (C, H, W) of positive integers, got {input_shape!r}")
    params = list(model.parameters())
    xp = backend.get_array_module(params[0].data) if params else backend.xp()
    dtype = params[0].data.dtype if params else backend.default_dtype()
    x = xp.zeros((1,) + shape, dtype=dtype)

    tracker = _FieldTracker(x)
    modes = {id(m): (m, m.training) for m in model.modules()}
    handles = []
    for name, m in model.named_modules():
        if not name and next(m.children(), None) is not None:
            continue  # the model itself, unless it is a single layer
        if next(m.children(), None) is None:
            name = name or type(m).__name__
            hook = (lambda mod, inputs, y, name=name: tracker.leaf(name, mod, inputs[0], y))
        else:
            hook = (lambda mod, inputs, y, name=name: tracker.composite(name, inputs[0], y))
        handles.append(m.register_forward_hook(hook))
    model.eval()
    try:
        y = model(x)
    except ValueError as e:
        raise ValueError(f"summary: a {_shape(shape)} input does not fit {type(model).__name__}: {e}") from e
    finally:
        for h in handles:
            h.remove()
        for m, training in modes.values():
            object.__setattr__(m, "training", training)
        model.clear_cache()

    rows = tracker.rows
    return ModelSummary(
        model_type=type(model).__name__,
        input_shape=shape,
        output_shape=tuple(y.shape[1:]),
        rows=rows,
        total_params=sum(int(p.size) for p in params),
        trainable_params=sum(int(p.size) for p in params if p.requires_grad),
        non_trainable_params=sum(int(p.size) for p in params if not p.requires_grad),
        buffer_elements=sum(int(b.size) for _, b in model.named_buffers() if b.dtype.kind == "f"),
        total_macs=sum(r.macs for r in rows),
        activation_bytes=sum(r.output_bytes for r in rows),
        dtype=np.dtype(dtype).name,
    )


def _parse_shape(text):
    try:
        shape = tuple(int(v) for v in text.split(","))
    except ValueError:
        shape = ()
    if len(shape) != 3 or min(shape) < 1:
        raise argparse.ArgumentTypeError(
            f"expected C,H,W as three positive integers (e.g. 3,32,32), got {text!r}")
    return shape


def summary_cli(argv):
    """`convlab summary NAME [--input C,H,W] [--num-classes K] [--json]`; returns the exit code."""
    from .. import models

    parser = argparse.ArgumentParser(
        prog="convlab summary",
        description="Print a model's layers: output shapes, parameters, MACs, receptive fields.",
    )
    parser.add_argument("name", help=f"model name, one of: {', '.join(models.names())}")
    parser.add_argument("--input", type=_parse_shape, default=None, metavar="C,H,W",
                        help="input shape (default: the model's own)")
    parser.add_argument("--num-classes", type=int, default=None, metavar="K",
                        help="number of classes (default: the model's own)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    try:
        shape = args.input or models.default_input_shape(args.name)
        model = models.get(args.name, num_classes=args.num_classes, in_channels=shape[0])
        result = summary(model, shape)
    except ValueError as e:
        message = str(e).removeprefix("summary: ")
        print(f"convlab summary: {message}", file=sys.stderr)
        return 2
    result = replace(result, model_type=args.name)
    print(json.dumps(result.to_dict(), indent=2) if args.json else result)
    return 0
