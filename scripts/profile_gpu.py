"""Where a convlab training step spends its time on the GPU, next to PyTorch's: a developer's tool.

For each model:batch it prints the wall time of an eager step (forward, loss, backward, SGD with
momentum and weight decay, on one fixed random batch), the GPU time of the kernels one step runs
(CUPTI, through torch.profiler, which sees CuPy's and cuBLAS's kernels as well) with the kernels
that take most of it, and the same for the PyTorch twin of the model. A step whose wall time is
well above its kernel time is bound by the host (Python and launch overhead), not the GPU. With
`--graph` it also captures one convlab step as a CUDA graph (`convlab.train.graph`), replays it,
and checks the replayed losses against eager steps from the same start.

    python3 scripts/profile_gpu.py --cases resnet20:512,lenet5:256 --graph --out $OUT

Needs a GPU, CuPy and PyTorch; installs nothing.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "scripts"))

LINES: list[str] = []


def say(text=""):
    print(text, flush=True)
    LINES.append(text)


def kernel_table(run_steps, steps, sync, top):
    """(GPU µs per step, [(µs per step, launches per step, name)]) of the kernels `steps` steps run."""
    from torch.profiler import ProfilerActivity, profile

    sync()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        run_steps(steps)
        sync()
    rows = []
    for e in prof.key_averages():
        t = getattr(e, "device_time_total", None)
        if t is None:
            t = getattr(e, "cuda_time_total", 0.0)
        if t > 0:
            rows.append((t / steps, e.count / steps, e.key))
    rows.sort(reverse=True)
    return sum(r[0] for r in rows), rows[:top]


def timed(run_steps, sync, seconds):
    """Wall ms per step over about `seconds` (after a sync)."""
    sync()
    n, t0 = 0, time.perf_counter()
    while n < 3 or time.perf_counter() - t0 < seconds:
        run_steps(5)
        n += 5
    sync()
    return (time.perf_counter() - t0) / n * 1e3


def convlab_setup(name, batch):
    from bench_gpu import convlab_setup as setup

    return setup(name, batch, "gpu")[1:]


def profile_convlab(name, batch, args):
    import cupy

    model, criterion, opt, x, labels = convlab_setup(name, batch)

    def step():
        loss = criterion(model(x), labels)
        opt.zero_grad()
        model.backward(criterion.backward())
        opt.step()
        return loss

    def steps(k):
        for _ in range(k):
            step()

    sync = cupy.cuda.Device().synchronize
    steps(5)
    ms = timed(steps, sync, args.seconds)
    gpu_us, rows = kernel_table(steps, 5, sync, args.top)
    say(f"convlab {name} b{batch}: eager step {ms:.2f} ms wall ({batch / ms * 1e3:,.0f} img/s), "
        f"kernels {gpu_us / 1e3:.2f} ms GPU, {sum(r[1] for r in rows):.0f}+ launches (top {args.top})")
    for us, count, key in rows:
        say(f"    {us:9.1f} µs  x{count:5.1f}  {key[:110]}")
    return ms


def profile_graph(name, batch, args, eager_ms):
    """Capture one step, replay it: time, and the losses against eager steps from the same start."""
    import cupy

    from convlab.train.graph import CapturedStep

    warm, n = 3, 8
    model, criterion, opt, x, labels = convlab_setup(name, batch)
    eager = []
    for i in range(warm + n):
        loss = criterion(model(x), labels)
        opt.zero_grad()
        model.backward(criterion.backward())
        opt.step()
        if i >= warm:
            eager.append(float(loss))
    model, criterion, opt, x, labels = convlab_setup(name, batch)
    t0 = time.perf_counter()
    captured = CapturedStep(model, criterion, opt, x, labels, warmup=warm)
    capture_s = time.perf_counter() - t0
    replayed = []
    for _ in range(n):
        replayed.append(float(captured()))
    diff = max(abs(a - b) / max(abs(b), 1e-12) for a, b in zip(replayed, eager))
    sync = cupy.cuda.Device().synchronize

    def steps(k):
        for _ in range(k):
            captured.replay()

    ms = timed(steps, sync, args.seconds)
    say(f"convlab {name} b{batch} CUDA graph: step {ms:.2f} ms ({batch / ms * 1e3:,.0f} img/s), "
        f"{eager_ms / ms:.2f}x eager; warm-up + capture {capture_s:.2f} s; replayed losses vs eager: "
        f"max rel diff {diff:.2e} ({replayed[0]:.5f}..{replayed[-1]:.5f} vs {eager[0]:.5f}..{eager[-1]:.5f})")
    return ms


def profile_torch(name, batch, args):
    import torch
    from bench_gpu import torch_model

    from convlab import models

    torch.backends.cudnn.benchmark = True
    model = torch_model(name).cuda().train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    shape = models.default_input_shape(name)
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.standard_normal((batch,) + shape).astype(np.float32)).cuda()
    labels = torch.from_numpy(rng.integers(0, 10, batch)).cuda()

    def steps(k):
        for _ in range(k):
            opt.zero_grad(set_to_none=True)
            torch.nn.functional.cross_entropy(model(x), labels).backward()
            opt.step()

    steps(5)
    ms = timed(steps, torch.cuda.synchronize, args.seconds)
    gpu_us, rows = kernel_table(steps, 5, torch.cuda.synchronize, args.top)
    say(f"torch   {name} b{batch}: eager step {ms:.2f} ms wall ({batch / ms * 1e3:,.0f} img/s), "
        f"kernels {gpu_us / 1e3:.2f} ms GPU")
    for us, count, key in rows[: max(5, args.top // 2)]:
        say(f"    {us:9.1f} µs  x{count:5.1f}  {key[:110]}")
    return ms


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", default="resnet20:512,resnet20:128,lenet5:256")
    ap.add_argument("--seconds", type=float, default=2.0, help="timed seconds per measurement")
    ap.add_argument("--top", type=int, default=18, help="kernels listed per case")
    ap.add_argument("--graph", action="store_true", help="also capture and replay a CUDA graph")
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--out", default=os.environ.get("OUT"))
    args = ap.parse_args(argv)
    for item in args.cases.split(","):
        name, _, batch = item.partition(":")
        batch = int(batch)
        try:
            eager_ms = profile_convlab(name, batch, args)
        except Exception as exc:  # keep going: the other cases still tell something
            say(f"convlab {name} b{batch}: {type(exc).__name__}: {exc}")
            eager_ms = None
        if args.graph and eager_ms:
            try:
                profile_graph(name, batch, args, eager_ms)
            except Exception as exc:
                import traceback

                say(f"graph {name} b{batch}: {type(exc).__name__}: {exc}")
                say(traceback.format_exc()[-1500:])
        if not args.no_torch:
            try:
                profile_torch(name, batch, args)
            except Exception as exc:
                say(f"torch {name} b{batch}: {type(exc).__name__}: {exc}")
        say()
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        with open(os.path.join(args.out, "profile_gpu.txt"), "w") as f:
            f.write("\n".join(LINES) + "\n")


if __name__ == "__main__":
    main()
