"""Model benchmark: training steps and inference of LeNet-5, ResNet-20 and a VGG-BN net, in
convlab and in PyTorch, interleaved in one process, with peak memory measured per framework in
fresh subprocesses. Prints images/s, the convlab/PyTorch ratio and peak memory.

Run with `scripts/bench` or `convlab bench`. PyTorch (a dev dependency) is imported only here.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

import numpy as np

from .timing import interleaved_medians, table

# A VGG-style CIFAR net with batch norm: channel counts, "M" = 2×2 max pool.
VGG_BN_CFG = [64, "M", 128, "M", 256, 256, "M", 512, "M"]

MODELS = {
    # name: (input shape, batch for training)
    "lenet5": ((1, 28, 28), 128),
    "resnet20": ((3, 32, 32), 128),
    "vgg_bn": ((3, 32, 32), 128),
}


def _vgg_bn_features(nn):
    """The VGG-BN feature layers from `nn` (convlab.nn or torch.nn: the constructors match)."""
    layers, cin = [], 3
    for v in VGG_BN_CFG:
        if v == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(cin, v, 3, padding=1, bias=False), nn.BatchNorm2d(v), nn.ReLU()]
            cin = v
    return layers, cin


def convlab_model(name):
    from .. import models, nn

    if name == "vgg_bn":
        layers, cin = _vgg_bn_features(nn)
        return nn.Sequential(*layers, nn.GlobalAvgPool2d(), nn.Linear(cin, 10))
    return models.get(name, num_classes=10)


def torch_model(name):
    import torch
    from torch import nn as tnn

    if name == "lenet5":
        return tnn.Sequential(
            tnn.Conv2d(1, 6, 5, padding=2), tnn.ReLU(), tnn.MaxPool2d(2),
            tnn.Conv2d(6, 16, 5), tnn.ReLU(), tnn.MaxPool2d(2), tnn.Flatten(),
            tnn.Linear(400, 120), tnn.ReLU(), tnn.Linear(120, 84), tnn.ReLU(), tnn.Linear(84, 10))
    if name == "vgg_bn":
        layers, cin = _vgg_bn_features(tnn)
        return tnn.Sequential(*layers, tnn.AdaptiveAvgPool2d(1), tnn.Flatten(), tnn.Linear(cin, 10))
    if name == "resnet20":
        class Block(tnn.Module):
            def __init__(self, cin, cout, stride):
                super().__init__()
                self.conv1 = tnn.Conv2d(cin, cout, 3, stride, 1, bias=False)
                self.bn1 = tnn.BatchNorm2d(cout)
                self.conv2 = tnn.Conv2d(cout, cout, 3, 1, 1, bias=False)
                self.bn2 = tnn.BatchNorm2d(cout)
                self.pad = (cout - cin) // 2 if (stride != 1 or cin != cout) else None
                self.stride = stride

            def forward(self, x):
                out = torch.relu(self.bn1(self.conv1(x)))
                out = self.bn2(self.conv2(out))
                sc = x
                if self.pad is not None:
                    sc = torch.nn.functional.pad(x[:, :, ::self.stride, ::self.stride],
                                                 (0, 0, 0, 0, self.pad, self.pad))
                return torch.relu(out + sc)

        layers, cin = [tnn.Conv2d(3, 16, 3, 1, 1, bias=False), tnn.BatchNorm2d(16), tnn.ReLU()], 16
        for planes, stride in [(16, 1), (32, 2), (64, 2)]:
            for b in range(3):
                layers.append(Block(cin, planes, stride if b == 0 else 1))
                cin = planes
        return tnn.Sequential(*layers, tnn.AdaptiveAvgPool2d(1), tnn.Flatten(), tnn.Linear(64, 10))
    raise ValueError(name)


def _steps(name, batch, framework, train=True):
    """A closure running one training step (or inference forward) of `name` in `framework`."""
    shape, _ = MODELS[name]
    rs = np.random.default_rng(0)
    x = rs.standard_normal((batch,) + shape).astype(np.float32)
    y = rs.integers(0, 10, batch)
    if framework == "convlab":
        from .. import nn, optim

        model = convlab_model(name)
        model.skip_input_grad(x)  # as the Trainer does: the data needs no gradient
        crit = nn.CrossEntropyLoss()
        opt = optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        if not train:
            model.eval()

            def infer():
                model(x)
            return infer, model.num_parameters()

        def step():
            loss = crit(model(x), y)
            opt.zero_grad()
            model.backward(crit.backward())
            opt.step()
            return loss
        return step, model.num_parameters()
    import torch

    model = torch_model(name)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    crit = torch.nn.CrossEntropyLoss()
    nparams = sum(p.numel() for p in model.parameters())
    if not train:
        model.eval()

        def infer():
            with torch.no_grad():
                model(xt)
        return infer, nparams

    def step():
        opt.zero_grad()
        loss = crit(model(xt), yt)
        loss.backward()
        opt.step()
        return loss
    return step, nparams


def _status_bytes(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} not found in /proc/self/status")


def _reset_peak():
    """Reset the kernel's peak-RSS counter (VmHWM) so the peak covers only what follows."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def _memory_child(name, framework, batch):
    """Run in a fresh process: peak RSS growth over two training steps, in bytes."""
    if framework == "torch":
        import torch

        torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    step, _ = _steps(name, batch, framework)
    # Start the BLAS threads (and their per-thread buffers) before the baseline: a one-time
    # cost of the library, not of the model.
    a = np.ones((512, 512), np.float32)
    if framework == "torch":
        import torch

        torch.mm(torch.from_numpy(a), torch.from_numpy(a))
    else:
        a @ a
    _reset_peak()
    base = _status_bytes("VmRSS")
    step()
    step()
    print(json.dumps({"peak_growth": _status_bytes("VmHWM") - base}))


def peak_memory(name, framework, batch):
    out = subprocess.run([sys.executable, "-m", "convlab.bench.models", "--memory-child", name, framework,
                          str(batch)], capture_output=True, text=True, timeout=600)
    if out.returncode:
        return float("nan")
    return json.loads(out.stdout.strip().splitlines()[-1])["peak_growth"]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=7, help="timed rounds at least (default 7)")
    ap.add_argument("--min-seconds", type=float, default=3.0,
                    help="keep adding rounds until a model and mode has run this long (default 3): "
                         "a LeNet step takes milliseconds, and this machine's speed drifts within seconds")
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--no-memory", action="store_true")
    ap.add_argument("--memory-child", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    if args.memory_child:
        name, fw, batch = args.memory_child
        return _memory_child(name, fw, int(batch))
    import torch

    from .. import backend

    torch.set_num_threads(args.threads)
    backend.use("cpu")
    rows = []
    for name in args.models.split(","):
        _, batch = MODELS[name]
        for mode, b in (("train", batch), ("infer", 256)):
            fns, counts = {}, {}
            for fw in ("convlab", "torch"):
                fns[fw], counts[fw] = _steps(name, b, fw, train=mode == "train")
            if counts["convlab"] != counts["torch"]:
                raise SystemExit(f"{name}: parameter counts differ: convlab {counts['convlab']}, "
                                 f"torch {counts['torch']}")
            n_timed = {}
            t = interleaved_medians(fns, warmup=2, rounds=args.rounds, min_seconds=args.min_seconds,
                                    lead_seconds=0.03, counts=n_timed)
            mem = {}
            if mode == "train" and not args.no_memory:
                mem = {fw: peak_memory(name, fw, b) for fw in ("convlab", "torch")}
            ips = {fw: b / t[fw] for fw in t}
            rows.append([f"{name} {mode} b{b}", f"{counts['convlab']:,}", str(n_timed["convlab"]),
                         f"{ips['convlab']:.0f}",
                         f"{ips['torch']:.0f}", f"{ips['convlab'] / ips['torch']:.2f}",
                         f"{mem['convlab'] / 2**20:.0f}" if mem else "-",
                         f"{mem['torch'] / 2**20:.0f}" if mem else "-",
                         f"{mem['convlab'] / mem['torch']:.2f}" if mem else "-"])
    print(f"float32, {args.threads} threads, median of the interleaved rounds after warm-up (at least "
          f"{args.rounds}, and {args.min_seconds:g} s; each timed call follows 30 ms or more of untimed calls "
          "of its own); memory = peak RSS growth over two steps, fresh process each")
    print(table(["model / mode / batch", "params", "rounds", "convlab img/s", "torch img/s", "ratio",
                 "convlab MiB", "torch MiB", "mem ratio"], rows))


if __name__ == "__main__":
    main()
