"""cnn_core.reports: the numbers the app shows about runs and checkpoints, without Streamlit."""

from __future__ import annotations

import ast
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from cnn_core import reports
from cnn_core.errors import ConfigError


def _batch(step: int, loss: float, accuracy: float, lr: float = 0.1) -> SimpleNamespace:
    return SimpleNamespace(step=step, loss=loss, accuracy=accuracy, lr=lr)


def _epoch(epoch: int, val_accuracy: float = 0.5) -> SimpleNamespace:
    return SimpleNamespace(epoch=epoch, train_loss=1.0 / epoch, val_loss=1.5 / epoch, train_accuracy=0.6,
                           val_accuracy=val_accuracy)


# ------------------------------------------------------------------------------------------ curves
def test_thin_keeps_short_curves_and_thins_long_ones_to_the_last_point():
    assert reports.thin([1, 2, 3], 10).tolist() == [1, 2, 3]
    long = np.arange(2_500)
    thinned = reports.thin(long, 1_000)
    assert len(thinned) <= 1_001 and thinned[0] == 0 and thinned[-1] == 2_499
    assert np.all(np.diff(thinned) > 0)  # in order, no point twice
    exact = reports.thin(np.arange(2_001), 1_000)  # 2,000 is a multiple of the step: the last point is in already
    assert exact[-1] == 2_000 and len(set(exact.tolist())) == len(exact)
    with pytest.raises(ConfigError):
        reports.thin(long, 1)


def test_batch_curves_smooth_thin_and_scale_accuracy_alike():
    batches = [_batch(step, loss=float(step), accuracy=0.5) for step in range(1, 3_001)]
    curves = reports.batch_curves(batches, smooth=lambda values: [v * 2 for v in values], max_points=500)
    assert len(curves.steps) == len(curves.loss) == len(curves.loss_smoothed) == len(curves.lr) <= 501
    assert curves.steps[-1] == 3_000 and curves.loss[-1] == 3_000.0 and curves.loss_smoothed[-1] == 6_000.0
    assert set(curves.accuracy.tolist()) == {50.0} and set(curves.accuracy_smoothed.tolist()) == {100.0}
    plain = reports.batch_curves(batches[:3])  # no smoothing: the smoothed curve is the raw one
    assert plain.loss_smoothed.tolist() == plain.loss.tolist() == [1.0, 2.0, 3.0]


def test_epoch_curves_and_axis():
    curves = reports.epoch_curves([_epoch(1, 0.25), _epoch(2, 0.75)])
    assert curves.epochs == [1, 2] and curves.val_accuracy == [25.0, 75.0] and curves.val_loss == [1.5, 0.75]
    assert reports.epoch_axis_end(2, planned=20, live=True) == 20  # a live run spans its plan
    assert reports.epoch_axis_end(2, planned=1_000, live=True) == 2  # unless the plan is unreadably long
    assert reports.epoch_axis_end(2, planned=20, live=False) == 2  # an ended run spans what ran
    assert reports.epoch_axis_end(0, planned=3, live=False) == 1
    assert reports.epoch_tick_step(5) == 1 and reports.epoch_tick_step(100) == 10


# ------------------------------------------------------------------------------------------ runs
def _augment(**changes) -> SimpleNamespace:
    values = dict(shift=0, hflip=False, vflip=False, rotate90=False, color_jitter=0.0, grayscale=0.0)
    return SimpleNamespace(**{**values, **changes})


def test_augment_summary_names_what_is_on():
    assert reports.augment_summary(_augment()) == "none"
    assert reports.augment_summary(_augment(shift=2, hflip=True, rotate90=True, color_jitter=0.1)) == \
        "shift 2, h-flip, rot-90, jitter 0.1"
    assert reports.augment_summary(_augment(vflip=True, grayscale=0.25)) == "v-flip, gray 0.25"


def _snapshot(*, epochs, limit=None, started=True, test_accuracy=None, status="finished", image_size=None
              ) -> SimpleNamespace:
    resolved = SimpleNamespace(model="fastnet", epochs=3, batch_size=16, lr=0.001, optimizer="adamw",
                               schedule="onecycle", augment=_augment(shift=2), image_size=image_size)
    config = SimpleNamespace(dataset="mnist", limit=limit, seed=7)
    return SimpleNamespace(config=config, resolved=resolved, epochs=epochs, status=status,
                           test_accuracy=test_accuracy, started_at=1.0 if started else None,
                           wall_seconds=lambda: 12.5)


def test_compare_rows_number_the_runs_and_keep_their_columns_in_order():
    history = [_snapshot(epochs=[_epoch(1, 0.4), _epoch(2, 0.9), _epoch(3, 0.8)], limit=500, test_accuracy=0.88),
               _snapshot(epochs=[], started=False, status="waiting", image_size=32)]
    rows = reports.compare_rows(history, describe_status=str.upper, describe_seconds=lambda s: f"{s:.1f} s")
    assert list(rows[0]) == ["run", "status", "data set", "model", "epochs", "batch", "image size", "lr", "optimizer",
                             "augmentation", "subset", "seed", "best val acc", "test acc", "time"]
    first, second = rows
    assert first["run"] == 1 and first["status"] == "FINISHED" and first["epochs"] == "3/3"  # numbers sort as numbers
    assert first["image size"] is None and second["image size"] == 32
    assert first["best val acc"] == 0.9 and first["test acc"] == 0.88 and first["subset"] == "500"
    assert first["augmentation"] == "shift 2" and first["optimizer"] == "adamw · onecycle" and first["lr"] == "0.001"
    assert first["time"] == "12.5 s"
    assert second["run"] == 2 and second["best val acc"] is None and second["subset"] == "all"
    assert second["time"] == "—" and second["epochs"] == "0/3"


# ------------------------------------------------------------------------------------------ metrics
def test_confusion_table_row_percentages_are_each_class_recall():
    table = reports.confusion_table([[8, 2, 0], [1, 3, 0], [0, 0, 0]])
    assert table.counts.tolist() == [[8, 2, 0], [1, 3, 0], [0, 0, 0]]
    assert table.row_percent[0].tolist() == [80.0, 20.0, 0.0]
    assert table.row_percent[1].tolist() == [25.0, 75.0, 0.0]
    assert table.row_percent[2].tolist() == [0.0, 0.0, 0.0]  # no test image of this class: no division by zero
    assert table.correct == 11 and table.total == 14
    for bad in ([[1, 2]], [[1, -1], [0, 1]]):
        with pytest.raises(ConfigError):
            reports.confusion_table(bad)


def test_headline_metrics_of_nested_flat_and_broken_cards():
    nested = {"test": {"accuracy": 0.9, "kappa": np.float32(0.5), "n": 50, "f1": "high", "auroc": None,
                       "sensitivity": True}, "val": {"accuracy": 0.1}}
    assert reports.headline_metrics(nested) == {"accuracy": 0.9, "kappa": 0.5}
    assert list(reports.headline_metrics({"f1": 0.7, "accuracy": 0.8})) == ["accuracy", "f1"]  # display order
    assert reports.headline_metrics(None) == {} == reports.headline_metrics({"test": [1, 2]})


def test_metric_tiles_for_two_and_for_more_classes():
    labels = {"accuracy": "Accuracy", "sensitivity": "Sensitivity", "specificity": "Specificity",
              "precision": "Precision", "f1": "F1", "auroc": "ROC-AUC", "kappa": "Cohen's kappa"}
    binary = reports.metric_tiles({"accuracy": 0.5, "precision": 1.0, "kappa": 0.123, "auroc": None},
                                  ["a", "b"], labels)
    assert [tile.label for tile in binary] == ["Accuracy", "Sensitivity", "Specificity", "Precision (b)", "F1 (b)",
                                               "ROC-AUC", "Cohen's kappa"]
    texts = {tile.key: tile.text for tile in binary}
    assert texts["accuracy"] == "50.0 %" and texts["precision"] == "100.0 %" and texts["kappa"] == "0.123"
    assert texts["auroc"] == "n/a" and texts["sensitivity"] == "n/a"
    multi = reports.metric_tiles({"recall": 0.25}, ["0", "1", "2"], labels)
    assert [tile.label for tile in multi][:3] == ["Accuracy", "Precision (macro)", "Recall (macro)"]
    assert {tile.key: tile.text for tile in multi}["recall"] == "25.0 %"


def test_reports_depends_on_numpy_and_errors_only():
    """The display numbers stay importable anywhere: no Streamlit, no other engine module."""
    source = Path(reports.__file__).read_text()
    imported = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add("." * node.level + (node.module or ""))
    assert imported <= {"__future__", "numbers", "collections.abc", "dataclasses", "typing", "numpy", "torch",
                        ".errors"}, imported


def test_balanced_accuracy_tile_appears_for_an_imbalanced_test_split():
    labels = {"accuracy": "Accuracy", "balanced_accuracy": "Balanced accuracy"}
    even = reports.metric_tiles({"accuracy": 0.9, "confusion_matrix": [[9, 1], [1, 9]]}, ["a", "b"], labels)
    skewed = reports.metric_tiles({"accuracy": 0.9, "balanced_accuracy": 0.6, "confusion_matrix": [[17, 1], [1, 1]],
                                   "undefined": {}}, ["a", "b"], labels)
    assert "balanced_accuracy" not in [t.key for t in even]
    assert [t.key for t in skewed][:2] == ["accuracy", "balanced_accuracy"] and skewed[1].text == "60.0 %"
    na = reports.metric_tiles({"auroc": None, "undefined": {"auroc": "no 'b' image in the split"}}, ["a", "b"], labels)
    assert [t.why for t in na if t.key == "auroc"] == ["no 'b' image in the split"]


def test_accuracy_axes_stop_at_100_percent():
    # a run at 100 % validation accuracy was drawn on an axis up to 101 %
    from cnn_explorer_ui.studio_charts import compare_figure, epoch_figure

    perfect = _snapshot(epochs=[_epoch(1, 1.0), _epoch(2, 1.0)])
    perfect.start, perfect.end = SimpleNamespace(epochs=2), None
    for axis in (compare_figure([perfect], ["run #1"]).layout.yaxis, epoch_figure(perfect).layout.yaxis2):
        assert (axis.autorangeoptions.clipmin, axis.autorangeoptions.clipmax) == (-0.5, 100.5)
