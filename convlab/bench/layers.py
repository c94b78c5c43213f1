"""Single-layer benchmark: a 64→64 3×3 convolution, forward + backward, convlab vs PyTorch.

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
    n, c, h, w = args.batch, 64, 32, 32
    x = rs.standard_normal((n, c, h, w)).astype(np.float32)
    dy = rs.standard_normal((n, c, h, w)).astype(np.float32)
    x_cl = _channels_last(x)  # convlab's own layout; the same values

    rows = []
    for label, kw in [("conv 3x3 64->64 pad 1", dict(kernel_size=3, padding=1)),
                      ("conv 3x3 64->64 stride 2", dict(kernel_size=3, padding=1, stride=2)),
                      ("conv 1x1 64->64", dict(kernel_size=1)),
                      ("depthwise 3x3 (groups 64)", dict(kernel_size=3, padding=1, groups=64))]:
        conv = nn.Conv2d(c, c, **kw)
        tconv = torch.nn.Conv2d(c, c, **kw)
        tconv.load_state_dict({k: torch.from_numpy(v) for k, v in conv.state_dict().items()})
        xt = torch.from_numpy(x).requires_grad_(True)
        y0 = conv(x_cl)
        dyl = dy[:, :, : y0.shape[2], : y0.shape[3]].copy()
        dyt = torch.from_numpy(dyl)
        dyl_cl = _channels_last(dyl)

        def step_convlab(conv=conv, dyl=dyl_cl):
            conv.zero_grad()
            conv(x_cl)
            conv.backward(dyl)

        def step_torch(tconv=tconv, xt=xt, dyt=dyt):
            tconv.zero_grad()
            xt.grad = None
            tconv(xt).backward(dyt)

        t = interleaved_medians({"convlab": step_convlab, "torch": step_torch}, rounds=args.rounds)
        rows.append([label, f"{t['convlab'] * 1e3:.1f}", f"{t['torch'] * 1e3:.1f}",
                     f"{t['convlab'] / t['torch']:.2f}"])
    print(f"forward+backward, batch {n}x{c}x{h}x{w}, float32, {args.threads} threads, "
          f"median of {args.rounds}; input and gradient channels-last for convlab, NCHW for PyTorch")
    print(table(["layer", "convlab ms", "torch ms", "convlab/torch time"], rows))


if __name__ == "__main__":
    main()
