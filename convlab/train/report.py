"""PNG reports of a finished (or running) run folder: loss and accuracy curves, the first layer's
kernels, every convolution's feature maps for one test image, and the test confusion matrix.

Figures are drawn with matplotlib's Agg canvas directly (no pyplot, no GUI backend), so exporting
works headless and never touches Qt.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..inspect.probes import conv_layers, feature_map_grid, feature_maps, kernel_grid
from .callbacks import FinalReport
from .checkpoint import CheckpointError
from .trainer import CHECKPOINT_NAME, load_checkpoint, predict

FINAL_REPORT = FinalReport.NAME
_GAP_COLOUR = "#c8d3e0"


def _figure(width, height):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path


def read_history(run_dir: Path) -> list[dict]:
    """The per-epoch rows of a run: metrics.jsonl, else the checkpoint's history."""
    log = run_dir / "metrics.jsonl"
    if log.is_file():
        rows = []
        for i, line in enumerate(log.read_text().splitlines(), 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise ValueError(f"{log} line {i} is not JSON ({e.msg}); the log is corrupt") from e
        return rows
    return []


def plot_curves(history: list[dict], path: Path) -> Path:
    """Loss and accuracy per epoch, for every split the history has."""
    fig = _figure(10, 4)
    loss_ax, acc_ax = fig.subplots(1, 2)
    epochs = [r["epoch"] for r in history]
    for split, style in (("train", "-o"), ("val", "-s"), ("test", "-^")):
        if history and f"{split}_loss" in history[0]:
            loss_ax.plot(epochs, [r[f"{split}_loss"] for r in history], style, label=split, markersize=3)
            acc_ax.plot(epochs, [100 * r[f"{split}_accuracy"] for r in history], style, label=split,
                        markersize=3)
    from matplotlib.ticker import MaxNLocator

    loss_ax.set(title="loss", xlabel="epoch", ylabel="cross-entropy")
    acc_ax.set(title="accuracy", xlabel="epoch", ylabel="%")
    for ax in (loss_ax, acc_ax):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    return _save(fig, path)


def plot_image(image, path: Path, title: str) -> Path:
    """A (H, W) or (H, W, 3) image in [0, 1]."""
    h, w = image.shape[:2]
    longest = max(h, w)
    fig = _figure(max(3.0, 8.0 * w / longest), max(3.0, 8.0 * h / longest) + 0.4)
    ax = fig.add_subplot()
    ax.set_facecolor(_GAP_COLOUR)  # shows through NaN (the gaps between tiles)
    if image.ndim == 3:  # RGB: NaN gaps become transparent
        image = np.concatenate([np.nan_to_num(image), ~np.isnan(image[..., :1])], axis=2)
    ax.imshow(np.ma.masked_invalid(image) if image.ndim == 2 else image, cmap="gray", vmin=0, vmax=1,
              interpolation="nearest")
    ax.set_title(title)
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)
    fig.tight_layout()
    return _save(fig, path)


def plot_confusion(confusion, class_names, path: Path, title="test confusion matrix") -> Path:
    cm = np.asarray(confusion)
    k = len(cm)
    size = min(max(5, 0.5 * k), 20)
    fig = _figure(size + 1, size)
    ax = fig.add_subplot()
    image = ax.imshow(cm, cmap="Blues")
    fig.colorbar(image, ax=ax, fraction=0.046)
    if k <= 20:
        ticks = range(k)
        ax.set_xticks(ticks, class_names, rotation=45, ha="right")
        ax.set_yticks(ticks, class_names)
        threshold = cm.max() / 2
        for i in range(k):
            for j in range(k):
                ax.text(j, i, int(cm[i, j]), ha="center", va="center", fontsize=7,
                        color="white" if cm[i, j] > threshold else "black")
    ax.set(title=title, xlabel="predicted", ylabel="true")
    fig.tight_layout()
    return _save(fig, path)


def _test_loader(config: dict, data_dir, count=None):
    from .. import data

    test = data.get(config["dataset"], "test", root=data_dir or config.get("data_dir"),
                    download=config.get("download", True))
    if count is not None and count < len(test):
        test = test.subset(count, seed=config.get("seed", 0))
    return test, data.DataLoader(test, 250, shuffle=False)


def export_run(run_dir, out_dir=None, data_dir=None, image_index=0) -> list[Path]:
    """Write the run's PNGs into `out_dir` (default run_dir/plots); returns their paths.

    Needs run_dir/last.h5; the confusion matrix comes from run_dir/final.json when the run wrote it,
    else from evaluating the checkpoint on the test set.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ValueError(f"run folder {run_dir} does not exist; pass the --out folder of a "
                         "`convlab train` run")
    checkpoint = run_dir / CHECKPOINT_NAME
    if not checkpoint.is_file():
        raise CheckpointError(f"run folder {run_dir} has no checkpoint {CHECKPOINT_NAME}; "
                              "is it a convlab run?")
    out = Path(out_dir) if out_dir is not None else run_dir / "plots"
    model, info = load_checkpoint(checkpoint)
    config = info["config"] or {}
    history = read_history(run_dir) or info["history"]
    written = []
    if history:
        written.append(plot_curves(history, out / "curves.png"))
    layers = conv_layers(model)
    if layers:
        name, first = layers[0]
        written.append(plot_image(kernel_grid(first.weight, background=np.nan), out / "kernels.png",
                                  f"{name}: {first.out_channels} kernels {first.kernel_size}"))

    final = run_dir / FINAL_REPORT
    report = json.loads(final.read_text()) if final.is_file() else None
    if report is None or layers:
        test, loader = _test_loader(config, data_dir, config.get("test_subset"))
        if not 0 <= image_index < len(test):
            raise ValueError(f"image index {image_index} is outside the test set (0..{len(test) - 1})")
        x = loader_batch(loader, image_index)
        original = test.images[image_index].transpose(1, 2, 0) / 255.0  # (H, W, C)
        written.append(plot_image(original[..., 0] if original.shape[2] == 1 else original,
                                  out / "feature_maps" / "00-input.png",
                                  f"test image {image_index}: {test.classes[test.labels[image_index]]}"))
        for i, (name, maps) in enumerate(feature_maps(model, x), 1):
            written.append(plot_image(feature_map_grid(maps[0], background=np.nan),
                                      out / "feature_maps" / f"{i:02d}-{name}.png",
                                      f"{name}: {maps.shape[1]} maps {maps.shape[2]}×{maps.shape[3]}"))
        if report is None:
            from . import metrics

            logits, labels = predict(model, loader)
            report = {"confusion_matrix": metrics.confusion_matrix(labels, logits.argmax(1), logits.shape[1]),
                      "class_names": list(test.classes)}
    class_names = report.get("class_names") or info.get("class_names") or [
        str(i) for i in range(len(report["confusion_matrix"]))]
    written.append(plot_confusion(report["confusion_matrix"], class_names, out / "confusion.png"))
    return written


def loader_batch(loader, index):
    """The normalised input (1, C, H, W) of sample `index` of an unshuffled loader."""
    batch, offset = divmod(index, loader.batch_size)
    loader.set_epoch(0)
    for b, (x, _) in enumerate(loader):
        if b == batch:
            return x[offset:offset + 1]
    raise IndexError(index)

