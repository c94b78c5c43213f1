"""The `convlab` command line: train, eval, summary, search, export and bench.

Progress goes to stderr; results to stdout (with --json, one JSON object on the last line). Bad
arguments, unknown names, missing or corrupt files end with one line on stderr and a non-zero exit
status; --debug shows the traceback instead.
"""

from __future__ import annotations

import argparse
import json
import math
import signal
import sys
import threading
from pathlib import Path

EXIT_FAILED = 1  # the run itself failed (diverged, crashed)
EXIT_USAGE = 2  # bad arguments, unknown names, missing or corrupt input
EXIT_INTERRUPTED = 130


class UsageError(Exception):
    """A command-line mistake, reported as one line."""


class _Parser(argparse.ArgumentParser):
    """argparse that reports a mistake in one line (and never exits on its own)."""

    def error(self, message):
        raise UsageError(f"{message} (see `{self.prog} --help`)")


def _number_list(kind):
    def parse(text):
        try:
            return [kind(v) for v in str(text).split(",") if v.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected comma-separated {kind.__name__} values, got {text!r}") from None
    return parse


def _int_at_least(minimum, description):
    """An argparse type: an integer ≥ `minimum`, else an error that says `description`."""
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {description}, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected {description}, got {text!r}")
        return value
    return parse


_positive_int = _int_at_least(1, "a positive integer")
_non_negative_int = _int_at_least(0, "an integer ≥ 0")


def _finite_float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def _option(text):
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


# -- argument definitions -----------------------------------------------------------------------


def _add_run_options(p, search=False):
    """The TrainConfig options shared by train and search (search takes lists for some)."""
    many = search
    p.add_argument("--model", help="model name (`convlab summary --help` lists them)")
    p.add_argument("--dataset", help="mnist, fashion-mnist, cifar10 or cifar100")
    from .train.config import PRESETS

    p.add_argument("--preset", help=f"a named recipe setting model, data set and hyper-parameters: "
                   f"{', '.join(PRESETS)}")
    p.add_argument("--epochs", type=_positive_int)
    p.add_argument("--batch-size", type=_number_list(int) if many else _positive_int)
    p.add_argument("--optimizer", type=(lambda t: t.split(",")) if many else str, help="sgd, adam or adamw")
    p.add_argument("--lr", type=_number_list(float) if many else _finite_float, help="(peak) learning rate")
    p.add_argument("--momentum", type=_number_list(float) if many else _finite_float)
    p.add_argument("--nesterov", action=argparse.BooleanOptionalAction, default=None)
    p.add_argument("--weight-decay", type=_number_list(float) if many else _finite_float)
    p.add_argument("--schedule", type=(lambda t: t.split(",")) if many else str,
                   help="constant, step, multistep, cosine, onecycle or plateau")
    p.add_argument("--milestones", type=_number_list(int), help="epochs for multistep, e.g. 82,123")
    p.add_argument("--step-size", type=_positive_int, help="epochs between decays for --schedule step")
    p.add_argument("--gamma", type=_finite_float, help="decay factor for step, multistep and plateau")
    p.add_argument("--warmup-epochs", type=_finite_float, help="linear warm-up for --schedule cosine")
    p.add_argument("--patience", type=_non_negative_int, help="epochs without improvement for plateau")
    p.add_argument("--augment", type=(lambda t: t.split(",")) if many else str,
                   help="none, or names joined by '+': crop, flip, affine, cutout, noise" +
                   (" (comma-separated choices)" if many else ""))
    p.add_argument("--label-smoothing", type=_number_list(float) if many else _finite_float)
    p.add_argument("--clip-grad-norm", type=_finite_float, help="clip gradients to this global norm (0: off)")
    p.add_argument("--model-option", type=_option, action="append", default=[], metavar="KEY=VALUE",
                   help="a model builder option, e.g. activation=tanh (repeatable)")
    p.add_argument("--device", choices=("cpu", "gpu", "auto"), default="auto")
    p.add_argument("--cuda-graph", action="store_true",
                   help="on the GPU, record the training step once as a CUDA graph and replay it "
                        "(several times faster for small models, which Python launch overhead dominates)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data", metavar="DIR", help="data root (default: $CONVLAB_DATA or datasets/)")
    p.add_argument("--no-download", action="store_true", help="fail instead of downloading missing data")
    p.add_argument("--train-subset", type=_positive_int, metavar="N", help="train on N random samples")
    p.add_argument("--test-subset", type=_positive_int, metavar="N", help="test on N random samples")
    p.add_argument("--log-every", type=_positive_int, metavar="N",
                   help="read the loss every N steps (default 1 on the CPU, 20 on the GPU)")
    p.add_argument("--json", action="store_true", help="print the result as JSON on the last line of stdout")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="convlab", description="A convolutional-network lab: train, evaluate, inspect.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    train = commands.add_parser("train", help="train a model", description="Train a model. Hyper-parameters "
                                "left out come from --preset, else from the recipe for the model and data set "
                                "(e.g. lenet5 on mnist: 3 epochs, batch 128, SGD + Nesterov, one-cycle to 0.1).")
    _add_run_options(train)
    train.add_argument("--out", metavar="DIR", help="run folder for checkpoints and logs "
                       "(default runs/MODEL-DATASET)")
    train.add_argument("--resume", nargs="?", const=True, default=None, metavar="CHECKPOINT",
                       help="continue the run in --out (or the given checkpoint) exactly where it stopped, "
                       "with its saved settings (only --epochs, --device and --data may change)")
    train.add_argument("--overwrite", action="store_true", help="start afresh even if --out holds a run")
    train.add_argument("--checkpoint-every", type=_non_negative_int, default=0, metavar="N",
                       help="also checkpoint every N steps (resumable mid-epoch)")
    train.add_argument("--val-fraction", type=_finite_float, default=0.0,
                       help="hold out this fraction of the training data for validation")

    ev = commands.add_parser("eval", help="evaluate a checkpoint on the test set")
    ev.add_argument("--checkpoint", required=True, metavar="FILE")
    ev.add_argument("--dataset", help="data set (default: the one it was trained on)")
    ev.add_argument("--data", metavar="DIR")
    ev.add_argument("--no-download", action="store_true")
    ev.add_argument("--test-subset", type=_positive_int, metavar="N")
    ev.add_argument("--batch-size", type=_positive_int, default=250)
    ev.add_argument("--device", choices=("cpu", "gpu", "auto"), default="auto")
    ev.add_argument("--json", action="store_true")

    commands.add_parser("summary", help="per-layer table of a model (shapes, parameters, FLOPs)",
                        add_help=False)

    se = commands.add_parser("search", help="grid or random hyper-parameter search",
                             description="Each trial is a training run scored on a seeded validation split "
                             "of the training data. List options take comma-separated values.")
    _add_run_options(se, search=True)
    se.add_argument("--mode", choices=("grid", "random"), default="grid")
    se.add_argument("--trials", type=_positive_int, help="number of random trials")
    se.add_argument("--val-fraction", type=_finite_float, default=0.1)
    se.add_argument("--out", metavar="DIR", help="keep each trial's run under DIR/trial-NNN")

    ex = commands.add_parser("export", help="PNG plots of a run: curves, kernels, feature maps, confusion")
    ex.add_argument("--run", required=True, metavar="DIR")
    ex.add_argument("--out", metavar="DIR", help="where the PNGs go (default DIR/plots)")
    ex.add_argument("--data", metavar="DIR")
    ex.add_argument("--image", type=_non_negative_int, default=0, help="test image index for feature maps")

    commands.add_parser("bench", help="engine benchmarks (convlab.bench)", add_help=False)
    return parser


# -- commands -------------------------------------------------------------------------------------


def _config_from_args(args, **extra):
    from .train import TrainConfig

    fields = ("model", "dataset", "preset", "epochs", "batch_size", "optimizer", "lr", "momentum", "nesterov",
              "weight_decay", "schedule", "milestones", "step_size", "gamma", "warmup_epochs", "patience",
              "augment", "label_smoothing", "clip_grad_norm", "device", "seed", "train_subset", "test_subset",
              "log_every")
    if getattr(args, "cuda_graph", False):
        extra = {"cuda_graph": True, **extra}
    values = {f: getattr(args, f) for f in fields if getattr(args, f, None) is not None}
    values["data_dir"] = args.data
    values["download"] = not args.no_download
    values["model_options"] = dict(args.model_option)
    values.update(extra)
    return TrainConfig(**values)


def _check_names(config):
    """Fail fast, before loading any data, on an unknown model or preset; returns the resolved config."""
    from . import models
    from .train import resolve_config

    resolved = resolve_config(config)
    models.options(resolved.model)
    return resolved


def _install_stop_on_sigint(trainer):
    """First Ctrl-C: stop after the current step (with a checkpoint); a second one interrupts.
    Returns the handler it replaced (None when not in the main thread)."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def handler(signum, frame):
        print("\nstopping after this step (Ctrl-C again to abort)…", file=sys.stderr, flush=True)
        trainer.stop()
        signal.signal(signal.SIGINT, signal.default_int_handler)

    return signal.signal(signal.SIGINT, handler)


def _final_summary(trainer, outcome):
    final = dict(outcome["final"])
    final.pop("confusion_matrix", None)
    summary = {
        "status": outcome["reason"], "model": trainer.model_name, "dataset": trainer.config.dataset,
        "epochs": trainer.epoch, "steps": trainer.step,
        "test_accuracy": final.get("test_accuracy"), "test_loss": final.get("test_loss"),
        "test_top5": final.get("test_top5"), "train_loss": final.get("train_loss"),
        "train_accuracy": final.get("train_accuracy"),
        "train_seconds": sum(r["seconds"] for r in trainer.history),
        "out_dir": str(trainer.out_dir) if trainer.out_dir else None,
        "checkpoint": (outcome.get("checkpoint") or {}).get("path"),
    }
    if "val_accuracy" in final:
        summary["val_accuracy"] = final["val_accuracy"]
    return summary


def cmd_train(args) -> int:
    from . import backend
    from .train import ProgressBar, make_trainer
    from .train import resume as resume_run
    from .train.trainer import CHECKPOINT_NAME

    if args.resume is not None:
        if args.resume is True:
            if not args.out:
                raise UsageError("--resume needs the run folder (--out DIR) or a checkpoint path")
            checkpoint = Path(args.out) / CHECKPOINT_NAME
        else:
            checkpoint = Path(args.resume)
        overrides = {"device": args.device} if args.device != "auto" else {}
        if args.out:
            overrides["out_dir"] = args.out
        if args.data:
            overrides["data_dir"] = args.data
        if args.epochs is not None:
            overrides["epochs"] = args.epochs
        trainer = resume_run(checkpoint, **overrides)
        if not args.quiet:
            print(f"resuming {checkpoint} at epoch {trainer.epoch + 1}, step {trainer.step}", file=sys.stderr)
    else:
        config = _config_from_args(args, checkpoint_every=args.checkpoint_every,
                                   val_fraction=args.val_fraction)
        resolved = _check_names(config)
        out = Path(args.out or f"runs/{resolved.model}-{resolved.dataset}")
        if (out / CHECKPOINT_NAME).exists() and not args.overwrite:
            raise UsageError(f"{out} already holds a run ({CHECKPOINT_NAME}); pass --resume to continue it, "
                             "--overwrite to start afresh, or another --out")
        config.out_dir = str(out)
        trainer = make_trainer(config)
    out = Path(trainer.out_dir)
    if not args.quiet:
        ProgressBar(trainer)
        c = trainer.config
        print(f"training {c.model} on {c.dataset}: {c.epochs} epochs × {trainer.steps_per_epoch} steps, "
              f"batch {c.batch_size}, {c.optimizer} lr {c.lr} ({c.schedule}), augment {c.augment}, "
              f"device {backend.device()}, out {out}", file=sys.stderr)
    previous = _install_stop_on_sigint(trainer)
    try:
        outcome = trainer.run()
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
    summary = _final_summary(trainer, outcome)
    _print_result(summary, args.json, _train_lines(summary))
    if outcome["reason"] == "diverged":
        print(f"convlab train: error: {outcome['message']}", file=sys.stderr)
        return EXIT_FAILED
    if outcome["reason"] == "stopped":
        print(f"convlab train: stopped; resume with `convlab train --out {out} --resume`", file=sys.stderr)
        return EXIT_INTERRUPTED
    return 0


def _train_lines(s):
    if s["test_accuracy"] is None:
        return [f"status {s['status']}: no epoch finished"]
    return [f"status {s['status']}: {s['epochs']} epochs, {s['steps']} steps, "
            f"{s['train_seconds']:.1f}s training",
            f"test accuracy {100 * s['test_accuracy']:.2f}%  test loss {s['test_loss']:.4f}  "
            f"top-5 {100 * s['test_top5']:.2f}%",
            f"checkpoint {s['checkpoint']}"]


def _print_result(result, as_json, lines):
    if not as_json:
        for line in lines:
            print(line)
    else:
        print(json.dumps(result, default=_json_safe))


def _json_safe(value):
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


def cmd_eval(args) -> int:
    from . import backend, data
    from .train import load_checkpoint, metrics
    from .train.trainer import predict

    model, info = load_checkpoint(args.checkpoint)
    config = info["config"] or {}
    dataset = args.dataset or config.get("dataset")
    if not dataset:
        raise UsageError("the checkpoint does not name its data set; pass --dataset")
    device = backend.use(args.device)
    model.to(device)
    test = data.get(dataset, "test", root=args.data or config.get("data_dir"), download=not args.no_download)
    if args.test_subset and args.test_subset < len(test):
        test = test.subset(args.test_subset, seed=0)
    expected = info["model_options"].get("num_classes")
    if expected is not None and expected != len(test.classes):
        raise ValueError(f"the model predicts {expected} classes but {dataset} has {len(test.classes)}")
    logits, labels = predict(model, data.DataLoader(test, args.batch_size, shuffle=False))
    report = metrics.classification_report(logits, labels, class_names=test.classes)
    result = {"checkpoint": str(args.checkpoint), "model": info["model_name"], "dataset": dataset,
              "samples": int(len(labels)), "test_accuracy": report["accuracy"], "test_loss": report["loss"],
              "test_top5": report["top5"],
              **{k: v for k, v in report.items() if k not in ("accuracy", "loss", "top5")}}
    _print_result(result, args.json, _eval_lines(result))
    return 0


def _eval_lines(r):
    lines = [f"{r['model']} on {r['dataset']} test ({r['samples']} images): accuracy "
             f"{100 * r['test_accuracy']:.2f}%  loss {r['test_loss']:.4f}  "
             f"top-5 {100 * r['test_top5']:.2f}%  "
             f"macro F1 {r['macro_f1']:.4f}  macro AUC {r['macro_auc']:.4f}", "",
             f"{'class':<14} {'precision':>9} {'recall':>7} {'F1':>7} {'AUC':>7} {'support':>8}"]
    for c in r["per_class"]:
        lines.append(f"{str(c['class'])[:14]:<14} {c['precision']:>9.4f} {c['recall']:>7.4f} {c['f1']:>7.4f} "
                     f"{c['auc']:>7.4f} {c['support']:>8d}")
    cm = r["confusion_matrix"]
    if len(cm) <= 20:
        width = max(len(str(v)) for row in cm for v in row) + 1
        lines += ["", "confusion matrix (rows: true class, columns: predicted)"]
        lines += ["".join(f"{v:>{width}}" for v in row) for row in cm]
    return lines


def cmd_search(args) -> int:
    from . import data
    from .train import ProgressBar
    from .train.search import format_table, search

    space = {}
    for key in ("lr", "weight_decay", "batch_size", "augment", "momentum", "optimizer", "label_smoothing",
                "schedule"):
        value = getattr(args, key)
        if value is not None:
            space[key] = value
    if not space:
        raise UsageError("give at least one list to search over, e.g. --lr 0.01,0.05,0.1")
    if args.mode == "random" and not args.trials:
        raise UsageError("--mode random needs --trials N")
    base_args = argparse.Namespace(**{k: v for k, v in vars(args).items() if k not in space})
    for key in space:
        setattr(base_args, key, None)
    base = _config_from_args(base_args, val_fraction=args.val_fraction, out_dir=args.out)
    resolved = _check_names(base)
    train = data.get(resolved.dataset, "train", root=resolved.data_dir, download=resolved.download)
    test = data.get(resolved.dataset, "test", root=resolved.data_dir, download=resolved.download)

    def on_trial(i, n, r):
        print(f"trial {i}/{n}: " + ", ".join(f"{k}={r[k]}" for k in space)
              + f" → val {100 * r['val_accuracy']:.2f}% ({r['status']}, {r['seconds']:.1f}s)",
              file=sys.stderr)

    callbacks = None if args.quiet else (lambda trainer: ProgressBar(trainer))
    results = search(base, space, mode=args.mode, trials=args.trials, seed=args.seed, on_trial=on_trial,
                     make_callbacks=callbacks, train_data=train, test_data=test)
    table = format_table(results, list(space))
    _print_result({"results": results, "best": results[0] if results else None}, args.json, [table])
    return 0


def cmd_export(args) -> int:
    from .train.report import export_run

    written = export_run(args.run, args.out, data_dir=args.data, image_index=args.image)
    for path in written:
        print(path)
    return 0


def cmd_summary(argv) -> int:
    try:
        from .inspect import summary_cli
    except ImportError as e:
        raise UsageError(f"`convlab summary` is not available in this installation ({e})") from e
    return summary_cli(argv)


def cmd_bench(argv) -> int:
    try:
        import importlib

        bench = importlib.import_module("convlab.bench")
    except ImportError as e:
        raise UsageError(f"`convlab bench` needs the benchmark package convlab.bench, which is not installed "
                         f"here ({e}); run the scripts in scripts/bench from a source checkout") from e
    entry = getattr(bench, "main", None)
    if entry is None:
        raise UsageError("convlab.bench has no main(argv) entry point; run its modules with python -m")
    return int(entry(argv) or 0)


COMMANDS = {"train": cmd_train, "eval": cmd_eval, "search": cmd_search, "export": cmd_export}
PASSTHROUGH = {"summary": cmd_summary, "bench": cmd_bench}


def _expected_errors():
    from .backend import DeviceError
    from .data import DataError
    from .train import CheckpointError

    return (UsageError, ValueError, DataError, CheckpointError, DeviceError, OSError)


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    first = next((i for i, a in enumerate(argv) if not a.startswith("-")), len(argv))
    command = "convlab"
    passthrough = first < len(argv) and argv[first] in PASSTHROUGH
    debug = "--debug" in (argv[:first] if passthrough else argv)
    try:
        if passthrough:  # summary and bench parse their own arguments
            command = f"convlab {argv[first]}"
            return PASSTHROUGH[argv[first]](argv[first + 1:])
        args = build_parser().parse_args([a for a in argv if a != "--debug"])
        if args.command is None:
            build_parser().print_help(sys.stderr)
            return EXIT_USAGE
        command = f"convlab {args.command}"
        return COMMANDS[args.command](args)
    except SystemExit as e:  # --help, or a passthrough command that exits
        return e.code if isinstance(e.code, int) else (0 if e.code is None else EXIT_USAGE)
    except KeyboardInterrupt:
        print(f"{command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as e:
        if debug:
            raise
        if isinstance(e, _expected_errors()):
            message = f"{e.strerror or e}: {e.filename}" if isinstance(e, OSError) and e.filename else str(e)
            status = EXIT_USAGE
        else:
            message = f"internal error: {type(e).__name__}: {e} (run with --debug for the traceback)"
            status = EXIT_FAILED
        print(f"{command}: error: {' '.join(message.split())}", file=sys.stderr)
        return status


if __name__ == "__main__":
    sys.exit(main())
