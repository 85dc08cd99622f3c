"""The Training Studio's plotly figures: live batch and epoch curves, the run comparison, the confusion matrix.

View code only: the numbers come from `cnn_core.reports` (thinned and smoothed curves, row percentages).
"""

from __future__ import annotations

import copy
import functools

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from cnn_core import reports, runs

TRAIN_COLOUR, VAL_COLOUR, RAW_COLOUR, LR_COLOUR = "#3b6ea5", "#e39b3b", "#b8c7da", "#5aa469"
ROW_SHARE_MAX_CLASSES = 10  # confusion matrices up to this size print each cell's share of its row
RUN_COLOURS = ("#3b6ea5", "#e39b3b", "#5aa469", "#c0504d", "#8064a2", "#4bacc6", "#f79646", "#7f7f7f")


@functools.lru_cache(maxsize=8)
def _panel_layout(titles: tuple[str, ...]) -> dict:
    """The layout of a row of side-by-side plots, made once: `make_subplots` is too slow to run every poll
    (tens of ms of Python that the training thread, in the same process, would wait for)."""
    layout = make_subplots(rows=1, cols=len(titles), subplot_titles=titles,
                           horizontal_spacing=0.07).layout.to_plotly_json()
    layout.pop("template", None)  # a figure gets the default template cheaply; validating its dict is slow
    return layout


def _panels(titles: tuple[str, ...], height: int) -> go.Figure:
    figure = go.Figure(layout=copy.deepcopy(_panel_layout(titles)))
    figure.update_layout(height=height, margin=dict(l=10, r=10, t=60, b=10), hovermode="x unified",
                         legend=dict(orientation="h", yanchor="bottom", y=1.12, x=0))
    return figure


def _axes(col: int) -> dict:
    """Trace arguments that put it in panel `col` (1-based) of a `_panels` figure."""
    return {"xaxis": "x" if col == 1 else f"x{col}", "yaxis": "y" if col == 1 else f"y{col}"}


#: Accuracy axes stop here: Plotly's padding drew a run at 100 % on an axis up to 101 % (a marker's half room).
PERCENT_AXIS = dict(autorangeoptions=dict(clipmin=-0.5, clipmax=100.5))


def _epoch_axes(figure: go.Figure, last_epoch: int, *, span: bool) -> None:
    """Both panels' x axes in whole epochs up to `last_epoch` (`span`: from the first epoch, fixed)."""
    for axis in ("xaxis", "xaxis2"):
        figure.layout[axis].update(title="epoch", dtick=reports.epoch_tick_step(last_epoch),
                                   **({"range": [0.8, last_epoch + 0.2]} if span else {}))


def batch_figure(snap: runs.RunSnapshot, smoothing: float) -> go.Figure:
    """Loss and accuracy per logged batch (raw and smoothed) and the learning rate, against the step."""
    curves = reports.batch_curves(snap.batches, functools.partial(runs.smooth, weight=smoothing))
    figure = _panels(("Loss per batch", "Accuracy per batch (%)", "Learning rate"), 300)
    for col, (name, raw, smoothed) in enumerate((("loss", curves.loss, curves.loss_smoothed),
                                                 ("accuracy", curves.accuracy, curves.accuracy_smoothed)), 1):
        figure.add_scatter(x=curves.steps, y=raw, name=f"{name} (raw)", line=dict(color=RAW_COLOUR, width=1),
                           showlegend=col == 1, legendgroup="raw", **_axes(col))
        figure.add_scatter(x=curves.steps, y=smoothed, name=f"{name} (smoothed)",
                           line=dict(color=TRAIN_COLOUR, width=2.5), showlegend=col == 1, legendgroup="smoothed",
                           **_axes(col))
    figure.add_scatter(x=curves.steps, y=curves.lr, name="learning rate", line=dict(color=LR_COLOUR, width=2),
                       **_axes(3))
    for axis in ("xaxis", "xaxis2", "xaxis3"):
        figure.layout[axis].title = "step"
    figure.layout.yaxis3.update(exponentformat="e", rangemode="tozero")
    figure.layout.yaxis2.update(**PERCENT_AXIS)
    return figure


def epoch_figure(snap: runs.RunSnapshot) -> go.Figure:
    """Train vs validation loss and accuracy per epoch: the gap between them is overfitting."""
    curves = reports.epoch_curves(snap.epochs)
    figure = _panels(("Loss per epoch", "Accuracy per epoch (%)"), 300)
    for col, (train, val) in enumerate(((curves.train_loss, curves.val_loss),
                                        (curves.train_accuracy, curves.val_accuracy)), 1):
        figure.add_scatter(x=curves.epochs, y=train, name="train", mode="lines+markers",
                           line=dict(color=TRAIN_COLOUR), showlegend=col == 1, **_axes(col))
        figure.add_scatter(x=curves.epochs, y=val, name="validation", mode="lines+markers",
                           line=dict(color=VAL_COLOUR), showlegend=col == 1, **_axes(col))
    planned = snap.start.epochs if snap.start else 1
    _epoch_axes(figure, reports.epoch_axis_end(len(curves.epochs) and curves.epochs[-1], planned,
                                               live=snap.end is None), span=True)
    figure.layout.yaxis2.update(**PERCENT_AXIS)
    return figure


def compare_figure(history: list[runs.RunSnapshot], labels: list[str]) -> go.Figure | None:
    """Validation accuracy and loss per epoch of every run (`labels` name them); None before any epoch."""
    figure = _panels(("Validation accuracy (%)", "Validation loss"), 320)
    for number, (snap, label) in enumerate(zip(history, labels), 1):
        if not snap.epochs:
            continue
        curves = reports.epoch_curves(snap.epochs)
        colour = RUN_COLOURS[(number - 1) % len(RUN_COLOURS)]
        for col, values in enumerate((curves.val_accuracy, curves.val_loss), 1):
            figure.add_scatter(x=curves.epochs, y=values, name=label, mode="lines+markers", line=dict(color=colour),
                               legendgroup=str(number), showlegend=col == 1, **_axes(col))
    if not figure.data:
        return None
    _epoch_axes(figure, max(len(snap.epochs) for snap in history), span=False)
    figure.layout.yaxis.update(**PERCENT_AXIS)
    return figure


def confusion_figure(matrix: list[list[int]], class_names: list[str]) -> go.Figure:
    """Counts per (true, predicted) class and each cell's share of its row (in the cell for a few classes, on
    hover always): the diagonal's shares are each class's recall, which counts alone hide when the classes
    differ in size."""
    table = reports.confusion_table(matrix)
    names = [str(n) for n in class_names]
    few = len(class_names) <= ROW_SHARE_MAX_CLASSES  # more classes leave no room for a second line per cell
    cells = [[f"{count}<br>({share:.0f} %)" if few else str(count) for count, share in zip(row, shares)]
             for row, shares in zip(table.counts.tolist(), table.row_percent.tolist())]
    figure = go.Figure(go.Heatmap(
        z=table.counts.tolist(), x=names, y=names, text=cells, customdata=table.row_percent.tolist(),
        colorscale="Blues", texttemplate="%{text}", textfont=dict(size=15 if len(names) <= 6 else 12),
        colorbar=dict(title="images"),
        hovertemplate="true %{y}, predicted %{x}: %{z} images (%{customdata:.1f} % of true %{y})<extra></extra>"))
    side = min(760, 220 + 52 * len(names))
    long_names = max(map(len, names)) > 3
    figure.update_layout(height=side, margin=dict(l=10, r=10, t=10, b=10),
                         xaxis=dict(title="predicted class", type="category", tickangle=-35 if long_names else 0),
                         yaxis=dict(title="true class", type="category", autorange="reversed"))
    return figure

