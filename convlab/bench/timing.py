"""Interleaved timing: run each contender in turn, several rounds, and report medians."""

from __future__ import annotations

import statistics
import time


def interleaved_medians(fns: dict, warmup=2, rounds=7, min_seconds=0.0, lead=1, lead_seconds=0.0,
                        counts=None):
    """Call each function `warmup` times, then `rounds` rounds in turn (more while the rounds
    have taken less than `min_seconds`); median seconds per call. `counts`, a dict, gets the
    number of timed calls per function.

    In each round a contender makes `lead` untimed calls, and more until they have taken
    `lead_seconds`, before its timed one, so the timed call does not share the cores with the
    previous contender's still-busy worker threads: PyTorch's OpenMP threads spin after each
    parallel region, about 10 ms of CPU here, longer than a LeNet-5 inference call.
    """
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times = {name: [] for name in fns}
    start = time.perf_counter()
    r = 0
    while r < rounds or time.perf_counter() - start < min_seconds:
        for name, fn in fns.items():
            lead_start, calls = time.perf_counter(), 0
            while calls < lead or time.perf_counter() - lead_start < lead_seconds:
                fn()
                calls += 1
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
        r += 1
    if counts is not None:
        counts.update({name: len(ts) for name, ts in times.items()})
    return {name: statistics.median(ts) for name, ts in times.items()}


def table(headers, rows):
    """Format rows as a plain fixed-width text table."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    line = lambda r: "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths)))
    out = [line(cells[0]), "  ".join("-" * w for w in widths)]
    out += [line(r) for r in cells[1:]]
    return "\n".join(out)
