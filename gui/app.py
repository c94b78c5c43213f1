"""`convlab-gui`: open the training lab, optionally starting a run at once from command-line options.

    convlab-gui
    convlab-gui --model lenet5 --dataset mnist --epochs 1 --train-subset 2000 --autostart
    convlab-gui --checkpoint runs/lenet5-mnist/last.h5        # inspect a saved model
    convlab-gui ... --autostart --export-panels shots --quit-when-done   # demo screenshots
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from PyQt6.QtCore import QTimer
from PyQt6.QtWidgets import QApplication

from convlab.train import TrainConfig
from convlab.train.config import AUGMENTATIONS, DEVICES, OPTIMIZERS, SCHEDULES
from convlab_gui import theme
from convlab_gui.main_window import MainWindow

EXPORT_DELAY_MS = 1500  # after a run ends, let the last snapshots arrive before exporting


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="convlab-gui", description="convlab's live training lab (PyQt6).")
    run = p.add_argument_group("the run (fields left out use the model / data-set recipe)")
    run.add_argument("--model", help="a model from the zoo, e.g. lenet5 (the default), resnet20")
    run.add_argument("--dataset", help="mnist (the default), fashion-mnist, cifar10 or cifar100")
    run.add_argument("--data", metavar="DIR", help="the data root (default: $CONVLAB_DATA or datasets/)")
    run.add_argument("--no-download", action="store_true", help="fail instead of downloading missing data")
    run.add_argument("--epochs", type=int)
    run.add_argument("--batch-size", type=int)
    run.add_argument("--lr", type=float)
    run.add_argument("--optimizer", choices=OPTIMIZERS)
    run.add_argument("--schedule", choices=SCHEDULES)
    run.add_argument("--augment", help=f"'none' or names joined by '+' from {', '.join(AUGMENTATIONS[1:])}")
    run.add_argument("--device", choices=DEVICES, default="auto")
    run.add_argument("--train-subset", type=int, metavar="N", help="train on N samples of the train split")
    run.add_argument("--test-subset", type=int, metavar="N", help="evaluate on N samples of the test split")
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--out", metavar="DIR",
                     help="checkpoint folder (default: runs/<model>-<dataset>-<time>)")
    run.add_argument("--autostart", action="store_true", help="start the run as soon as the window opens")
    p.add_argument("--checkpoint", metavar="PATH", help="open a checkpoint to inspect it")
    p.add_argument("--continue", dest="continue_from", metavar="PATH", help="continue the run saved in PATH")
    p.add_argument("--export-panels", metavar="DIR", help="when the run ends, save a PNG of every panel and "
                                                          "the metrics CSVs into DIR")
    p.add_argument("--quit-when-done", action="store_true", help="close the app when the run ends")
    p.add_argument("--size", default="1500x920", help="window size WxH (default 1500x920)")
    return p


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    return TrainConfig(model=args.model or "lenet5", dataset=args.dataset or "mnist", epochs=args.epochs,
                       batch_size=args.batch_size, lr=args.lr, optimizer=args.optimizer,
                       schedule=args.schedule, augment=args.augment, device=args.device, seed=args.seed,
                       data_dir=args.data,
                       download=not args.no_download, out_dir=args.out, train_subset=args.train_subset,
                       test_subset=args.test_subset)


def create_window(argv: list[str] | None = None) -> MainWindow:
    """The main window configured by command-line `argv` (a QApplication must exist)."""
    args = build_parser().parse_args(argv)
    app = QApplication.instance()
    if app is None:
        raise RuntimeError("create_window needs a QApplication; create one first (main() does)")
    theme.apply(app)
    window = MainWindow()
    try:
        width, height = (int(v) for v in args.size.lower().split("x"))
    except ValueError:
        raise SystemExit(f"convlab-gui: --size must look like 1500x920, got {args.size!r}") from None
    window.resize(width, height)
    config = config_from_args(args)
    window.run_panel.set_config(config)
    if args.export_panels or args.quit_when_done:
        window.run_finished.connect(lambda reason: QTimer.singleShot(
            EXPORT_DELAY_MS, lambda: _after_run(window, args, reason)))
    if args.checkpoint:
        window.open_checkpoint(args.checkpoint)
    elif args.continue_from:
        window.continue_checkpoint(args.continue_from)
    elif args.autostart:
        window.start_run(config)
    return window


def _after_run(window: MainWindow, args: argparse.Namespace, reason: str) -> None:
    window.exit_code = 0 if reason == "completed" else 1
    if args.export_panels:
        folder = Path(args.export_panels)
        for path in window.export_panels(folder) + window.export_metrics(folder):
            print(f"saved {path}", flush=True)
    if args.quit_when_done:
        window.close()


def main(argv: list[str] | None = None) -> int:
    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("convlab")
    window = create_window(argv)
    window.exit_code = 0
    window.show()
    app.exec()
    return window.exit_code


if __name__ == "__main__":
    sys.exit(main())
