"""Benchmark: training throughput (images/s) of the same LeNet-5 MNIST run headless and with the app open,
alternated in one process after a warm-up run, and the app's event-loop lateness while it trains. Prints a
table and the app / headless ratio (target ≥ 0.9).

    scripts/bench_gui                      # MNIST from $CONVLAB_DATA (or --data DIR)
    scripts/bench_gui --train-subset 12000 --repeats 3 --tab feature-maps
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

if not os.environ.get("DISPLAY"):
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PyQt6.QtCore import QTimer  # noqa: E402
from PyQt6.QtWidgets import QApplication  # noqa: E402

from convlab import parallel  # noqa: E402
from convlab.train import TrainConfig, make_trainer  # noqa: E402


def parse_args(argv):
    p = argparse.ArgumentParser(prog="bench_gui", description=__doc__.splitlines()[0])
    p.add_argument("--train-subset", type=int, default=6000)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--repeats", type=int, default=2, help="headless/app pairs, in ABBA order")
    p.add_argument("--data", default=os.environ.get("CONVLAB_DATA"), help="data root with mnist/")
    p.add_argument("--tab", default="curves", help="the panel shown while training (curves, kernels, "
                                                   "feature-maps, evaluation, gradient-flow)")
    return p.parse_args(argv)


def data_root(args) -> str:
    if not args.data or not (Path(args.data) / "mnist").is_dir():
        raise SystemExit("bench_gui: needs the MNIST files; point --data or CONVLAB_DATA at a folder "
                         "with mnist/")
    return args.data


def config(args, root: str, out_dir: str) -> TrainConfig:
    return TrainConfig(model="lenet5", dataset="mnist", epochs=args.epochs, batch_size=args.batch_size,
                       train_subset=args.train_subset, test_subset=1000, data_dir=root, download=False,
                       device="cpu", out_dir=out_dir)


def headless(args, root: str, out_dir: str) -> dict:
    trainer = make_trainer(config(args, root, out_dir))
    trainer.run()
    seen = sum(e["images_per_sec"] * e["seconds"] for e in trainer.history)
    seconds = sum(e["seconds"] for e in trainer.history)
    return {"images_per_sec": seen / seconds, "train_seconds": seconds}


def with_app(args, root: str, out_dir: str, app: QApplication) -> dict:
    from convlab_gui import theme
    from convlab_gui.export import file_name
    from convlab_gui.main_window import MainWindow

    theme.apply(app)
    window = MainWindow()
    window.resize(1500, 920)
    window.show()
    for panel in window.panels:
        if file_name(panel.title) == args.tab:
            window.tabs.setCurrentWidget(panel)
    finished = []
    window.run_finished.connect(finished.append)
    lateness = []

    def probe():
        scheduled = time.perf_counter()

        def fired():
            lateness.append((time.perf_counter() - scheduled) * 1000 - 50)
            if not finished:
                probe()

        QTimer.singleShot(50, fired)

    window.start_run(config(args, root, out_dir))
    probe()
    while not finished:
        app.processEvents()
        time.sleep(0.002)
    history = window.session.live.view().epochs
    snapshot_seconds = window.session.live.snapshot_seconds
    window.close()
    seen = sum(e["images_per_sec"] * e["seconds"] for e in history)
    seconds = sum(e["seconds"] for e in history)
    lateness.sort()
    return {"images_per_sec": seen / seconds, "train_seconds": seconds, "snapshot_seconds": snapshot_seconds,
            "lateness_median": statistics.median(lateness) if lateness else float("nan"),
            "lateness_p95": lateness[int(0.95 * len(lateness))] if lateness else float("nan"),
            "lateness_max": lateness[-1] if lateness else float("nan")}


def main(argv=None) -> int:
    args = parse_args(argv)
    app = QApplication.instance() or QApplication(sys.argv[:1])
    root = data_root(args)
    parallel.set_spin(False)  # the app's setting (see MainWindow), in both arms: same engine, app or not
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-gui-runs-") as out:
        # A process trains faster after its first run (allocator and caches warm up), so one discarded
        # run comes first and the measured runs alternate in ABBA order to cancel any remaining drift.
        headless(args, root, f"{out}/warm-up")
        for repeat in range(args.repeats):
            pair = [("headless", headless), ("app open", lambda *a: with_app(*a, app))]
            for name, run in (pair if repeat % 2 == 0 else pair[::-1]):
                rows.append((name, run(args, root, f"{out}/{name[0]}{repeat}")))
    print(f"\nLeNet-5 on MNIST, {args.train_subset} images × {args.epochs} epoch(s), "
          f"batch {args.batch_size}, CPU; app showing the {args.tab} panel; platform {app.platformName()}")
    print(f"{'run':<10} {'images/s':>10} {'train s':>9} {'snapshots s':>12} "
          f"{'loop lateness ms (median/p95/max)':>36}")
    for name, r in rows:
        late = (f"{r['lateness_median']:.1f} / {r['lateness_p95']:.1f} / {r['lateness_max']:.1f}"
                if "lateness_median" in r else "")
        snap = f"{r['snapshot_seconds']:.2f}" if "snapshot_seconds" in r else ""
        print(f"{name:<10} {r['images_per_sec']:>10.0f} {r['train_seconds']:>9.1f} {snap:>12} {late:>36}")
    headless_rate = statistics.mean(r["images_per_sec"] for n, r in rows if n == "headless")
    app_rate = statistics.mean(r["images_per_sec"] for n, r in rows if n == "app open")
    ratio = app_rate / headless_rate
    print(f"\nmean images/s: headless {headless_rate:.0f}, app open {app_rate:.0f}; ratio {ratio:.3f} "
          f"(target ≥ 0.9) {'OK' if ratio >= 0.9 else 'BELOW TARGET'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
