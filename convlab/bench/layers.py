"""Single-layer benchmark, forward + backward, convlab vs PyTorch: 64→64 convolutions (3×3,
strided, 1×1, depthwise) on 64×32×32, and 2×2 max pooling on LeNet-5's first feature maps
(6×28×28) and on a VGG block's (64×32×32).

Each framework gets the same values in the layout its layers produce and take inside a network:
channels-last memory for convlab (every convlab conv writes its output channels-last), NCHW for
PyTorch. Fed NCHW arrays, a convlab layer first transposes them, which is not what it costs
between the layers of a model (for a 1×1 layer: 58 ms against 24).

Run with `scripts/bench_layers` (PyTorch is a dev dependency; it is imported only here).
"""

from __future__ import annotations

import argparse
import os

import numpy as np

from .timing import interleaved_medians, table


def _channels_last(a):
    """The same (N, C, H, W) values, stored channels-last."""
    return np.ascontiguousarray(a.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)


def _ms(seconds):
    ms = seconds * 1e3
    return f"{ms:.2f}" if ms < 10 else f"{ms:.1f}"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=7)
    args = ap.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    import torch

    import convlab
    from convlab import nn

    torch.set_num_threads(args.threads)
    convlab.backend.use("cpu")
    rs = np.random.default_rng(0)
    n = args.batch
    conv_kw = dict(kernel_size=3, padding=1)
    cases = [  # label, input (C, H, W), the layer in convlab and in PyTorch
        ("conv 3x3 64->64 pad 1", (64, 32, 32), nn.Conv2d, torch.nn.Conv2d, (64, 64), conv_kw),
        ("conv 3x3 64->64 stride 2", (64, 32, 32), nn.Conv2d, torch.nn.Conv2d, (64, 64), dict(conv_kw, stride=2)),
        ("conv 1x1 64->64", (64, 32, 32), nn.Conv2d, torch.nn.Conv2d, (64, 64), dict(kernel_size=1)),
        ("depthwise 3x3 (groups 64)", (64, 32, 32), nn.Conv2d, torch.nn.Conv2d, (64, 64), dict(conv_kw, groups=64)),
        ("max pool 2x2 on 6x28x28", (6, 28, 28), nn.MaxPool2d, torch.nn.MaxPool2d, (2,), {}),
        ("max pool 2x2 on 64x32x32", (64, 32, 32), nn.MaxPool2d, torch.nn.MaxPool2d, (2,), {}),
    ]

    rows = []
    for label, chw, make, make_torch, pos, kw in cases:
        # after a ReLU, as inside a network: max pooling then sees ties at zero
        x = np.maximum(rs.standard_normal((n,) + chw), 0).astype(np.float32)
        x_cl = _channels_last(x)  # convlab's own layout; the same values
        layer, tlayer = make(*pos, **kw), make_torch(*pos, **kw)
        if layer.state_dict():
            tlayer.load_state_dict({k: torch.from_numpy(v) for k, v in layer.state_dict().items()})
        xt = torch.from_numpy(x).requires_grad_(True)
        dyl = rs.standard_normal(layer(x_cl).shape).astype(np.float32)
        dyt = torch.from_numpy(dyl)
        dyl_cl = _channels_last(dyl)

        def step_convlab(layer=layer, x_cl=x_cl, dyl=dyl_cl):
            layer.zero_grad()
            layer(x_cl)
            layer.backward(dyl)

        def step_torch(tlayer=tlayer, xt=xt, dyt=dyt):
            tlayer.zero_grad()
            xt.grad = None
            tlayer(xt).backward(dyt)

        t = interleaved_medians({"convlab": step_convlab, "torch": step_torch}, rounds=args.rounds)
        rows.append([label, _ms(t["convlab"]), _ms(t["torch"]), f"{t['convlab'] / t['torch']:.2f}"])
    print(f"forward+backward, batch {n}, float32, {args.threads} threads, median of {args.rounds}; "
          "input and gradient channels-last for convlab, NCHW for PyTorch")
    print(table(["layer", "convlab ms", "torch ms", "convlab/torch time"], rows))


if __name__ == "__main__":
    main()
