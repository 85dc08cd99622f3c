"""Numbers derived from training runs and checkpoint cards, ready to display.

What the app's charts and tables show about a run or a checkpoint, computed without Streamlit or plotly:
curves thinned for the browser (and smoothed), the rows of the run comparison, the confusion matrix with
row percentages, the headline test metrics of a card. Inputs are read by attribute (a run's events and
configuration) or as plain dicts and lists (a card's metrics), so this module depends on numpy only.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import ConfigError

MAX_CHART_POINTS = 1000  # per curve; longer runs are thinned for the browser

#: The test metrics a card's summary shows, in this order.
HEADLINE_METRICS = ("accuracy", "auroc", "kappa", "f1", "sensitivity", "specificity")
#: The test metrics shown after a run: two classes have a positive class (sensitivity, specificity), more
#: classes get macro averages.
BINARY_METRICS = ("accuracy", "sensitivity", "specificity", "precision", "f1", "auroc", "kappa")
MULTICLASS_METRICS = ("accuracy", "precision", "recall", "f1", "auroc", "kappa")


# ------------------------------------------------------------------------------------------ curves
def thin(values: Sequence[float] | np.ndarray, max_points: int = MAX_CHART_POINTS) -> np.ndarray:
    """Every k-th value and the last one, at most about `max_points` of them: a long run's curve stays light
    for the browser and still ends where the run is."""
    array = np.asarray(values)
    if max_points < 2:
        raise ConfigError(f"A thinned curve keeps at least 2 points; got max_points={max_points}.")
    if len(array) <= max_points:
        return array
    step = -(-len(array) // max_points)
    return np.concatenate([array[::step], array[-1:]]) if (len(array) - 1) % step else array[::step]


@dataclass(frozen=True)
class BatchCurves:
    """Per-batch curves of a run against the step, thinned alike; accuracy in percent."""

    steps: np.ndarray
    loss: np.ndarray
    loss_smoothed: np.ndarray
    accuracy: np.ndarray
    accuracy_smoothed: np.ndarray
    lr: np.ndarray


def batch_curves(batches: Sequence[Any], smooth: Callable[[list[float]], list[float]] | None = None,
                 max_points: int = MAX_CHART_POINTS) -> BatchCurves:
    """The loss, accuracy (raw and `smooth`ed: e.g. an exponential moving average) and learning rate of
    logged batches (objects with `.step`, `.loss`, `.accuracy`, `.lr`)."""
    loss = [float(b.loss) for b in batches]
    accuracy = [100.0 * float(b.accuracy) for b in batches]
    smooth = smooth or list
    return BatchCurves(
        steps=thin([int(b.step) for b in batches], max_points),
        loss=thin(loss, max_points), loss_smoothed=thin(smooth(loss), max_points),
        accuracy=thin(accuracy, max_points), accuracy_smoothed=thin(smooth(accuracy), max_points),
        lr=thin([float(b.lr) for b in batches], max_points),
    )


@dataclass(frozen=True)
class EpochCurves:
    """Train and validation loss and accuracy (percent) per epoch."""

    epochs: list[int]
    train_loss: list[float]
    val_loss: list[float]
    train_accuracy: list[float]
    val_accuracy: list[float]


def epoch_curves(epochs: Sequence[Any]) -> EpochCurves:
    """The curves of epoch events (objects with `.epoch`, `.train_loss`, `.val_loss`, `.train_accuracy`,
    `.val_accuracy`)."""
    return EpochCurves(
        epochs=[int(e.epoch) for e in epochs],
        train_loss=[float(e.train_loss) for e in epochs], val_loss=[float(e.val_loss) for e in epochs],
        train_accuracy=[100.0 * float(e.train_accuracy) for e in epochs],
        val_accuracy=[100.0 * float(e.val_accuracy) for e in epochs],
    )


def epoch_axis_end(epochs_run: int, planned: int, live: bool, readable: int = 50) -> int:
    """The last epoch an epoch axis spans: a live run's planned epochs (when at most `readable`, so the axis
    does not jump while the run grows), else the epochs that ran (at least 1)."""
    return max(epochs_run, planned if live and planned <= readable else 1, 1)


def epoch_tick_step(last_epoch: int, ticks: int = 10) -> int:
    """A whole-epoch tick spacing that gives about `ticks` ticks."""
    return max(1, round(last_epoch / ticks))


# ------------------------------------------------------------------------------------------ runs
def augment_summary(augment: Any) -> str:
    """An augmentation configuration (`.shift`, `.hflip`, `.vflip`, `.rotate90`, `.color_jitter`,
    `.grayscale`) in a few words: "shift 2, h-flip, jitter 0.1", or "none"."""
    parts = ((f"shift {augment.shift}", augment.shift), ("h-flip", augment.hflip), ("v-flip", augment.vflip),
             ("rot-90", augment.rotate90), (f"jitter {augment.color_jitter:g}", augment.color_jitter),
             (f"gray {augment.grayscale:g}", augment.grayscale))
    return ", ".join(text for text, on in parts if on) or "none"


def compare_rows(snapshots: Sequence[Any], *, describe_status: Callable[[Any], str],
                 describe_seconds: Callable[[float], str],
                 numbers: Sequence[int] | None = None) -> list[dict[str, object]]:
    """One row per run (snapshots with `.config`, `.resolved`, `.epochs`, `.status`, `.test_accuracy`,
    `.started_at`, `.wall_seconds()`), numbered by `numbers` (default: from 1 in the given order): what the run was
    asked to do (the side in pixels its images were resized to, None when they were not), how far it got, and its
    best validation and its test accuracy (fractions, None when unknown)."""
    rows = []
    for number, snap in zip(numbers or range(1, len(snapshots) + 1), snapshots, strict=True):
        config, resolved = snap.config, snap.resolved
        rows.append({
            "run": number, "status": describe_status(snap.status), "data set": config.dataset,
            "model": resolved.model, "epochs": f"{len(snap.epochs)}/{resolved.epochs}",
            "batch": resolved.batch_size, "image size": getattr(resolved, "image_size", None) or getattr(config, "image_size", None),
            "lr": f"{resolved.lr:g}",
            "optimizer": f"{resolved.optimizer} · {resolved.schedule}",
            "augmentation": augment_summary(resolved.augment),
            "subset": f"{config.limit:,}" if config.limit else "all", "seed": config.seed,
            "best val acc": max((e.val_accuracy for e in snap.epochs), default=None),
            "test acc": snap.test_accuracy,
            "time": describe_seconds(snap.wall_seconds()) if snap.started_at else "—",
        })
    return rows


# ------------------------------------------------------------------------------------------ metrics
@dataclass(frozen=True)
class ConfusionTable:
    """A confusion matrix (rows: true class, columns: predicted) and each cell's share of its row in percent:
    the diagonal is each class's recall. A class without test images has a row of zeros."""

    counts: np.ndarray
    row_percent: np.ndarray

    @property
    def correct(self) -> int:
        return int(np.trace(self.counts))

    @property
    def total(self) -> int:
        return int(self.counts.sum())


def confusion_table(matrix: Sequence[Sequence[int]] | np.ndarray) -> ConfusionTable:
    counts = np.asarray(matrix, dtype=np.int64)
    if counts.ndim != 2 or counts.shape[0] != counts.shape[1]:
        raise ConfigError(f"A confusion matrix is square; got shape {counts.shape}.")
    if (counts < 0).any():
        raise ConfigError("A confusion matrix counts images: no cell can be negative.")
    totals = counts.sum(axis=1, keepdims=True)
    row_percent = np.divide(100.0 * counts, totals, out=np.zeros(counts.shape), where=totals > 0)
    return ConfusionTable(counts, row_percent)


def _number(value: object) -> float | None:
    """`value` as a float when it is a real number (numpy scalars too; not a bool), else None."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        return None
    return float(value)


def metrics_on_test(metrics: object) -> dict[str, object]:
    """A card's test metrics: its "test" section, or the metrics themselves when they are flat."""
    if not isinstance(metrics, Mapping):
        return {}
    test = metrics.get("test", metrics)
    return dict(test) if isinstance(test, Mapping) else {}


def headline_metrics(metrics: object) -> dict[str, float]:
    """The headline test metrics of a card's metrics ({"test": {...}} or flat), in `HEADLINE_METRICS` order;
    metrics that are missing or not numbers are left out."""
    test = metrics_on_test(metrics)
    return {name: value for name in HEADLINE_METRICS if (value := _number(test.get(name))) is not None}


def metric_text(key: str, value: object, decimals: int = 1) -> str:
    """A test metric in words, as the studio, Predict and the CLI show it: Cohen's kappa (-1 to 1) as a number with
    `decimals` + 2 decimals ("0.874"), the others (rates in [0, 1]: accuracy, ROC-AUC, ...) as percentages with
    `decimals` decimals ("91.3 %"); "n/a" when the value is missing or not a number."""
    number = _number(value)
    if number is None:
        return "n/a"
    return f"{number:.{decimals + 2}f}" if key == "kappa" else f"{100 * number:.{decimals}f} %"


@dataclass(frozen=True)
class MetricTile:
    """One test metric as a tile: its label and its value in words ("91.3 %", "0.874", "n/a")."""

    key: str
    label: str
    text: str
    why: str | None = None  # why an "n/a" metric is undefined (e.g. no positive image in the test split)


#: Largest / smallest class support from which a split counts as imbalanced.
IMBALANCE_RATIO = 1.5


def imbalanced(confusion_matrix: object) -> bool:
    """Whether the true classes of a confusion matrix (rows) differ in size by `IMBALANCE_RATIO` or more
    (classes without images left aside)."""
    if not isinstance(confusion_matrix, (list, tuple, np.ndarray)) or not len(confusion_matrix):
        return False
    support = [int(sum(row)) for row in confusion_matrix if sum(row)]
    return len(support) >= 2 and max(support) >= IMBALANCE_RATIO * min(support)


def metric_tiles(metrics: Mapping[str, object], class_names: Sequence[str],
                 labels: Mapping[str, str]) -> list[MetricTile]:
    """The test metrics of a run as tiles. Two classes: recall is the positive class's (`metrics.positive_class`)
    sensitivity; precision and F1 are the positive class's too. More classes: macro averages. Kappa is a
    number, the others percentages; `labels` names the metrics."""
    binary = len(class_names) == 2
    keys = list(BINARY_METRICS if binary else MULTICLASS_METRICS)
    if imbalanced(metrics.get("confusion_matrix")):  # accuracy flatters the big classes: show the balanced one too
        keys.insert(1, "balanced_accuracy")
    tiles = []
    for key in keys:
        label = "Recall" if key == "recall" else labels.get(key, key)
        if key in ("precision", "recall", "f1"):
            label += f" ({metrics.get('positive_class') or class_names[1]})" if binary else " (macro)"
        value = _number(metrics.get(key))
        undefined = metrics.get("undefined")
        why = undefined.get(key) if value is None and isinstance(undefined, Mapping) else None
        tiles.append(MetricTile(key, label, metric_text(key, value), why))
    return tiles
