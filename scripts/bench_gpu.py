"""GPU training benchmark: images/s of LeNet-5 and ResNet-20 in convlab (CuPy) and PyTorch (eager, cuDNN).

Each (framework, model, batch) runs in its own child process under a time limit, so a crash or a
hang costs one row, and each child's peak memory is its own. A child trains on one fixed batch of
random data (the model's compute, not the data pipeline), warms up, then times whole steps
(forward, loss, backward, SGD with momentum and weight decay) for `--seconds`; the loss is read
back every 20 steps, as a training loop reports it. convlab runs in float32, then with TF32 GEMMs;
PyTorch runs with its defaults (cuDNN convolutions may use TF32), then in strict float32.
The torch models are written here and must load convlab's state_dict strictly, with the same
parameter count and the same eval-mode outputs (checked on the CPU in every run).

    python3 scripts/bench_gpu.py                 # the full run (needs a GPU)
    python3 scripts/bench_gpu.py --dry-run       # one step per row on the CPU (NumPy), to test the harness

convlab also runs the step recorded once as a CUDA graph and replayed (`CapturedStep`, the
"graph" columns; `--no-graph` skips them): no Python between kernels, as PyTorch's own
torch.cuda.graphs would give it, which this benchmark does not use for PyTorch (eager, as the
issue asks).

The table goes to stdout and, with `--out DIR` (default: $OUT when set), to DIR/bench_gpu.txt
and DIR/bench_gpu.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections import OrderedDict

import numpy as np

CASES = (("lenet5", 256), ("resnet20", 128), ("resnet20", 512))
DRY_RUN_BATCH = 4
TARGET_RATIO = 0.7
LOSS_EVERY = 20
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# -- the PyTorch twins ---------------------------------------------------------------------------

def torch_model(name, num_classes=10, in_channels=None):
    """The PyTorch equivalent of `convlab.models.get(name)`, with the same parameter names."""
    from torch import nn

    class ZeroPadShortcut(nn.Module):
        """He et al.'s option A: subsample, then pad the new channels with zeros."""

        def __init__(self, in_channels, out_channels, stride):
            super().__init__()
            extra = out_channels - in_channels
            self.stride, self.lo, self.hi = stride, extra // 2, extra - extra // 2

        def forward(self, x):
            return nn.functional.pad(x[:, :, ::self.stride, ::self.stride], (0, 0, 0, 0, self.lo, self.hi))

    class BasicBlock(nn.Module):
        def __init__(self, inplanes, planes, stride=1):
            super().__init__()
            self.conv1 = nn.Conv2d(inplanes, planes, 3, stride=stride, padding=1, bias=False)
            self.bn1 = nn.BatchNorm2d(planes)
            self.relu = nn.ReLU()
            self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
            self.bn2 = nn.BatchNorm2d(planes)
            reshaped = stride != 1 or inplanes != planes
            self.downsample = ZeroPadShortcut(inplanes, planes, stride) if reshaped else None
            self.relu_out = nn.ReLU()

        def forward(self, x):
            out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
            return self.relu_out(out + (x if self.downsample is None else self.downsample(x)))

    class GlobalAvgPool2d(nn.Module):
        def forward(self, x):
            return x.mean(dim=(2, 3))

    if name == "lenet5":
        return nn.Sequential(OrderedDict(
            conv1=nn.Conv2d(in_channels or 1, 6, 5, padding=2), act1=nn.ReLU(), pool1=nn.MaxPool2d(2, 2),
            conv2=nn.Conv2d(6, 16, 5), act2=nn.ReLU(), pool2=nn.MaxPool2d(2, 2), flatten=nn.Flatten(),
            fc1=nn.Linear(400, 120), act3=nn.ReLU(), fc2=nn.Linear(120, 84), act4=nn.ReLU(),
            fc3=nn.Linear(84, num_classes)))
    if name == "resnet20":
        def stage(inplanes, planes, stride):
            return nn.Sequential(BasicBlock(inplanes, planes, stride), BasicBlock(planes, planes),
                                 BasicBlock(planes, planes))
        model = nn.Sequential(OrderedDict(
            conv1=nn.Conv2d(in_channels or 3, 16, 3, padding=1, bias=False), bn1=nn.BatchNorm2d(16),
            relu=nn.ReLU(), layer1=stage(16, 16, 1), layer2=stage(16, 32, 2), layer3=stage(32, 64, 2),
            avgpool=GlobalAvgPool2d(), fc=nn.Linear(64, num_classes)))
        return model
    raise ValueError(f"bench_gpu: no PyTorch twin for model {name!r} (known: lenet5, resnet20)")


def check_twins(name, batch=4):
    """Load convlab's weights into the torch twin (strictly) and compare eval outputs on the CPU.

    Returns (parameter count, max |difference| of the logits); raises if the structures differ.
    """
    import torch

    from convlab import backend, models

    backend.use("cpu")
    backend.manual_seed(0)
    ours = models.get(name)
    theirs = torch_model(name)
    state = ours.state_dict()
    theirs.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in state.items()}, strict=True)
    n_ours = ours.num_parameters()
    n_theirs = sum(p.numel() for p in theirs.parameters())
    if n_ours != n_theirs:
        raise RuntimeError(f"{name}: convlab has {n_ours} parameters, the torch twin {n_theirs}")
    shape = models.default_input_shape(name)
    x = np.random.default_rng(0).standard_normal((batch,) + shape).astype(np.float32)
    ours.eval()
    theirs.eval()
    with torch.no_grad():
        want = theirs(torch.from_numpy(x)).numpy()
    got = backend.to_numpy(ours(x))
    diff = float(np.abs(got - want).max())
    if diff > 1e-3 * max(1.0, float(np.abs(want).max())):
        raise RuntimeError(f"{name}: convlab and the torch twin disagree by {diff:.3g} on the same weights")
    return n_ours, diff


# -- children: one framework, one model, one batch size -----------------------------------------

def _timed(step, sync, read_loss, seconds, warmup, max_steps):
    """Run `warmup` steps, then steps for about `seconds` (at least one); returns (steps, s, loss)."""
    loss = None
    for _ in range(warmup):
        loss = step()
    read_loss(loss)
    sync()
    steps, t0 = 0, time.perf_counter()
    while steps < max_steps and (steps == 0 or time.perf_counter() - t0 < seconds):
        loss = step()
        steps += 1
        if steps % LOSS_EVERY == 0:
            read_loss(loss)
    last = read_loss(loss)
    sync()
    return steps, time.perf_counter() - t0, last


def convlab_setup(name, batch, device="gpu"):
    """(model, criterion, SGD optimiser, x, labels) of a benchmark step on `device`: the model in
    training mode, one fixed batch of random data. Returns the device actually used too."""
    from convlab import backend, models, nn, optim

    device = backend.use(device)
    backend.manual_seed(0)
    xp = backend.xp()
    model = models.get(name)
    model.train()
    criterion = nn.CrossEntropyLoss()
    opt = optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    shape = models.default_input_shape(name)
    rng = np.random.default_rng(0)
    x = xp.asarray(rng.standard_normal((batch,) + shape).astype(np.float32))
    labels = xp.asarray(rng.integers(0, 10, batch))
    return device, model, criterion, opt, x, labels


def child_convlab(name, batch, args):
    from convlab import kernels

    device, model, criterion, opt, x, labels = convlab_setup(name, batch, "cpu" if args.dry_run else "gpu")
    pool = None
    if device == "gpu":
        import cupy

        pool = cupy.get_default_memory_pool()
        sync = cupy.cuda.Device().synchronize
    else:
        def sync():
            return None
    peak = {"reserved": 0, "used": 0}

    def step():
        logits = model(x)
        loss = criterion(logits, labels)
        opt.zero_grad()
        model.backward(criterion.backward())
        if pool is not None:
            peak["used"] = max(peak["used"], pool.used_bytes())
        opt.step()
        if pool is not None:
            peak["reserved"] = max(peak["reserved"], pool.total_bytes())
        return loss

    results = OrderedDict()
    phases = [("fp32", False)] + ([] if args.dry_run else [("tf32", True)])
    for label, tf32 in phases:
        if device == "gpu":
            kernels.set_tf32(tf32)
        steps, secs, loss = _timed(step, sync, lambda v: float(v) if v is not None else None, args.seconds,
                                   0 if args.dry_run else args.warmup, 1 if args.dry_run else 10**9)
        results[label] = {"images_per_s": steps * batch / secs, "steps": steps, "seconds": secs, "loss": loss}
    graph_error = None
    graph_peak = 0
    if device == "gpu" and not args.no_graph:
        # The same step recorded once as a CUDA graph (convlab.train.graph.CapturedStep) and replayed.
        from convlab.train.graph import CapturedStep

        captured = None
        for label, tf32 in (("graph fp32", False), ("graph tf32", True)):
            kernels.set_tf32(tf32)
            captured = None  # the previous recording and its memory go before the next is made
            pool.free_all_blocks()
            try:
                captured = CapturedStep(model, criterion, opt, x, labels, warmup=2)
            except Exception as exc:  # reported in the row; the eager figures stand
                graph_error = f"{type(exc).__name__}: {exc}"
                break
            steps, secs, loss = _timed(captured.replay, sync, lambda v: float(v) if v is not None else None,
                                       args.seconds, args.warmup, 10**9)
            results[label] = {"images_per_s": steps * batch / secs, "steps": steps, "seconds": secs, "loss": loss}
            graph_peak = max(graph_peak, pool.total_bytes() + captured.pool.total_bytes())
    return {"graph_error": graph_error, "peak_graph_reserved_mib": graph_peak / 2**20,
            "params": model.num_parameters(), "results": results, "device": device,
            "fast_paths": bool(kernels.enabled()) and device == "gpu",
            "peak_reserved_mib": peak["reserved"] / 2**20, "peak_used_mib": peak["used"] / 2**20}


def child_torch(name, batch, args):
    import torch

    n_params, diff = check_twins(name)
    device = "cpu" if args.dry_run else "cuda"
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("PyTorch sees no CUDA device")
    torch.manual_seed(0)
    torch.backends.cudnn.benchmark = True
    model = torch_model(name).to(device)
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    from convlab import models

    shape = models.default_input_shape(name)
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.standard_normal((batch,) + shape).astype(np.float32)).to(device)
    labels = torch.from_numpy(rng.integers(0, 10, batch)).to(device)

    def step():
        opt.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(model(x), labels)
        loss.backward()
        opt.step()
        return loss.detach()

    def sync():
        if device == "cuda":
            torch.cuda.synchronize()

    results = OrderedDict()
    phases = [("default", True)] + ([] if args.dry_run else [("fp32", False)])
    for label, tf32_convs in phases:
        torch.backends.cudnn.allow_tf32 = tf32_convs
        torch.backends.cuda.matmul.allow_tf32 = False
        steps, secs, loss = _timed(step, sync, lambda v: float(v) if v is not None else None, args.seconds,
                                   0 if args.dry_run else args.warmup, 1 if args.dry_run else 10**9)
        results[label] = {"images_per_s": steps * batch / secs, "steps": steps, "seconds": secs, "loss": loss}
    out = {"params": n_params, "twin_max_abs_diff": diff, "results": results, "device": device}
    if device == "cuda":
        out["peak_reserved_mib"] = torch.cuda.max_memory_reserved() / 2**20
        out["peak_used_mib"] = torch.cuda.max_memory_allocated() / 2**20
        out["gpu"] = torch.cuda.get_device_name()
    return out


def run_child(args):
    framework, name, batch = args.child
    batch = int(batch)
    try:
        fn = child_convlab if framework == "convlab" else child_torch
        out = fn(name, batch, args)
    except Exception as exc:  # reported as a row, the other rows still run
        out = {"error": f"{type(exc).__name__}: {exc}"}
    out.update(framework=framework, model=name, batch=batch)
    print("RESULT " + json.dumps(out), flush=True)


# -- parent: run the children, print the table ---------------------------------------------------

def run_case(framework, name, batch, args, time_left=None):
    cmd = [sys.executable, os.path.abspath(__file__), "--child", framework, name, str(batch),
           "--seconds", str(args.seconds), "--warmup", str(args.warmup)]
    cmd += ["--dry-run"] if args.dry_run else []
    cmd += ["--no-graph"] if args.no_graph else []
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    limit = args.case_timeout if time_left is None else min(args.case_timeout, time_left)
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=limit, env=env)
    except subprocess.TimeoutExpired:
        return {"framework": framework, "model": name, "batch": batch,
                "error": f"timed out after {limit:.0f} s"}
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if not lines:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
        return {"framework": framework, "model": name, "batch": batch,
                "error": f"exit {proc.returncode}: " + " | ".join(tail)}
    return json.loads(lines[-1][len("RESULT "):])


def _rate(row, phase):
    r = row.get("results", {}).get(phase)
    return None if r is None else r["images_per_s"]


def _ratio(ours, theirs):
    return ours / theirs if ours and theirs else None


def _fmt(v, spec=",.0f"):
    return "-" if v is None else format(v, spec)


def table(rows, dry_run=False):
    """The results as a fixed-width text table (one line per model and batch size)."""
    by_case = OrderedDict()
    for row in rows:
        by_case.setdefault((row["model"], row["batch"]), {})[row["framework"]] = row
    head = ["model", "batch", "convlab fp32", "convlab tf32", "graph fp32", "graph tf32", "torch fp32",
            "torch default", "eager ratio fp32", "eager ratio tf32", "graph ratio fp32", "graph ratio tf32",
            f"≥{TARGET_RATIO}", "convlab MiB", "graph MiB", "torch MiB", "params"]
    lines = []
    for (name, batch), pair in by_case.items():
        ours, theirs = pair.get("convlab", {}), pair.get("torch", {})
        c32, ctf = _rate(ours, "fp32"), _rate(ours, "tf32")
        g32, gtf = _rate(ours, "graph fp32"), _rate(ours, "graph tf32")
        t32, tdef = _rate(theirs, "fp32"), _rate(theirs, "default")
        ratios = [_ratio(c32, t32), _ratio(ctf, tdef), _ratio(g32, t32), _ratio(gtf, tdef)]
        best = max([r for r in ratios if r is not None], default=None)
        params = ours.get("params"), theirs.get("params")
        verdict = "-" if best is None or dry_run else ("yes" if best >= TARGET_RATIO else "NO")
        counts = "/".join(map(str, params)) if None not in params else str(params[0] or params[1] or "-")
        lines.append([name, str(batch), _fmt(c32), _fmt(ctf), _fmt(g32), _fmt(gtf), _fmt(t32), _fmt(tdef)]
                     + [_fmt(r, ".2f") for r in ratios]
                     + [verdict, _fmt(ours.get("peak_reserved_mib") or None),
                        _fmt(ours.get("peak_graph_reserved_mib") or None), _fmt(theirs.get("peak_reserved_mib")),
                        counts])
    widths = [max(len(str(r[i])) for r in [head] + lines) for i in range(len(head))]
    fmt = lambda r: "  ".join(c.rjust(w) if i > 1 else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths)))
    out = [fmt(head), "  ".join("-" * w for w in widths)] + [fmt([str(c) for c in r]) for r in lines]
    errors = [f"  {r['framework']} {r['model']} b{r['batch']}: {r['error']}" for r in rows if "error" in r]
    errors += [f"  convlab {r['model']} b{r['batch']} CUDA graph: {r['graph_error']}" for r in rows
               if r.get("graph_error")]
    notes = ["images/s of whole training steps; ratio = convlab / torch eager (fp32: both strict float32; "
             "tf32: convlab TF32 GEMMs vs torch defaults); graph = convlab's step recorded once as a CUDA graph "
             "(CapturedStep) and replayed; MiB = peak memory-pool size (CuPy pool in the eager phases, CuPy pool "
             "while a recording replays, torch reserved)."]
    return "\n".join(out + ([""] + ["errors:"] + errors if errors else []) + notes)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dry-run", action="store_true", help="one step per row on the CPU with NumPy")
    ap.add_argument("--seconds", type=float, default=4.0, help="timed seconds per phase (default 4)")
    ap.add_argument("--warmup", type=int, default=5, help="untimed steps first (default 5)")
    ap.add_argument("--no-graph", action="store_true", help="skip convlab's CUDA-graph phases")
    ap.add_argument("--case-timeout", type=float, default=150.0, help="limit per child process, s")
    ap.add_argument("--budget", type=float, default=None,
                    help="seconds for the whole run: rows that would start after it are skipped")
    ap.add_argument("--cases", default=",".join(f"{m}:{b}" for m, b in CASES),
                    help="model:batch list (default: %(default)s)")
    ap.add_argument("--out", default=os.environ.get("OUT"), help="folder for bench_gpu.txt/.json")
    ap.add_argument("--child", nargs=3, metavar=("FRAMEWORK", "MODEL", "BATCH"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        return run_child(args)
    cases = []
    for item in args.cases.split(","):
        name, _, batch = item.partition(":")
        cases.append((name, int(batch)))
    if args.dry_run:  # each model once, on a small batch
        cases = list(OrderedDict((name, DRY_RUN_BATCH) for name, _ in cases).items())
    rows = []
    start = time.perf_counter()
    for name, batch in cases:
        for framework in ("convlab", "torch"):
            t0 = time.perf_counter()
            left = None if args.budget is None else args.budget - (t0 - start)
            if left is not None and left < 20:
                rows.append({"framework": framework, "model": name, "batch": batch,
                             "error": "skipped: the time budget is spent"})
                continue
            row = run_case(framework, name, batch, args, left)
            rows.append(row)
            status = row.get("error") or ", ".join(f"{k} {v['images_per_s']:,.0f} img/s"
                                                  for k, v in row.get("results", {}).items())
            elapsed = time.perf_counter() - t0
            print(f"[{elapsed:5.1f} s] {framework} {name} batch {batch}: {status}", flush=True)
    gpu = next((r.get("gpu") for r in rows if r.get("gpu")), "an unknown GPU")
    title = ("Dry run on the CPU (one step per row: a test of the harness, not a measurement)" if args.dry_run
             else f"Training throughput on {gpu}")
    text = title + "\n" + table(rows, args.dry_run)
    print(text)
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        with open(os.path.join(args.out, "bench_gpu.txt"), "w") as f:
            f.write(text + "\n")
        with open(os.path.join(args.out, "bench_gpu.json"), "w") as f:
            json.dump(rows, f, indent=1)
    failed = [r for r in rows if "error" in r]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
