"""TensorBoard logs of a training run, written by `torch.utils.tensorboard.SummaryWriter` from the trainer's
events: the logger is one more consumer of `train()`'s event stream (`tensorboard_logged` passes every event
on unchanged), so the loop itself knows nothing about TensorBoard.

What a log holds (tags):

- per step (x = global step): `step/loss`, `step/accuracy`, `step/learning_rate` (every BatchEvent);
- per epoch (x = epoch): `epoch/train_loss`, `epoch/train_accuracy`, `epoch/val_loss`, `epoch/val_accuracy`,
  `epoch/learning_rate` (validation values are left out when the run has no validation images);
- at the end: the model graph (`add_graph`), `test/confusion_matrix` (a figure), `test/misclassified` (the
  most confidently misclassified test images) with `test/misclassified_labels` (text), and the run's options
  with its final metrics (`add_hparams`: `hparam/test_accuracy`, `hparam/test_auroc`,
  `hparam/best_val_accuracy`, `hparam/best_val_loss`, `hparam/epochs_run`, `hparam/train_seconds`);
- `run/config` (text): the run's options as JSON.
"""

from __future__ import annotations

import json
import logging
import math
import warnings
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from torch import nn

from .. import data as data_registry
from ..errors import CnnError
from ..models.card import Card
from .events import BatchEvent, EndEvent, EpochEvent, Event, StartEvent, StatusEvent

log = logging.getLogger(__name__)

#: How many misclassified test images a log keeps (the most confident mistakes first).
MISCLASSIFIED_LOGGED = 16


class TensorBoardLogger:
    """Writes one run's events into a TensorBoard log folder; call it with each event, then `close()`.

    Raises CnnError when the folder cannot be created. Unknown event types are ignored."""

    def __init__(self, log_dir: str | Path):
        from torch.utils.tensorboard import SummaryWriter

        self.log_dir = Path(log_dir)
        try:
            self.log_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise CnnError(f"Cannot write the TensorBoard log into {self.log_dir}: {exc.strerror or exc}.") from None
        self.writer = SummaryWriter(log_dir=str(self.log_dir))
        self.network: nn.Module | None = None
        self.config: dict = {}

    def __call__(self, event: Event) -> None:
        if isinstance(event, StartEvent):
            self._start(event)
        elif isinstance(event, BatchEvent):
            self._scalars("step", {"loss": event.loss, "accuracy": event.accuracy, "learning_rate": event.lr}, event.step)
        elif isinstance(event, EpochEvent):
            values = {"train_loss": event.train_loss, "train_accuracy": event.train_accuracy, "val_loss": event.val_loss,
                      "val_accuracy": event.val_accuracy, "learning_rate": event.lr}  # fmt: skip
            self._scalars("epoch", values, event.epoch)
        elif isinstance(event, EndEvent):
            self._end(event)

    def close(self) -> None:
        self.writer.close()

    # ------------------------------------------------------------------------------------------ events
    def _start(self, event: StartEvent) -> None:
        self.network = event.network
        self.config = {"dataset": event.dataset, "model": event.model, **event.config}
        text = json.dumps(self.config, indent=2, default=str)
        self.writer.add_text("run/config", "    " + text.replace("\n", "\n    "))  # a markdown code block

    def _scalars(self, group: str, values: dict[str, float], step: int) -> None:
        for name, value in values.items():
            if value is not None and math.isfinite(value):
                self.writer.add_scalar(f"{group}/{name}", value, step)

    def _end(self, event: EndEvent) -> None:
        if self.network is not None:
            self._graph(self.network, event.card)
        matrix = (event.test_metrics or {}).get("confusion_matrix")
        if matrix is not None:
            self.writer.add_figure("test/confusion_matrix", confusion_figure(matrix, event.card.class_names))
        if event.test_probs is not None and event.test_labels is not None and event.test_indices is not None:
            self._misclassified(event)
        self.writer.add_hparams(hparams_of(self.config), final_metrics(event), run_name=".")
        self.writer.flush()

    def _graph(self, network: nn.Module, card: Card) -> None:
        """The network's graph, traced on one blank image (eval mode, no gradients); a note when tracing fails."""
        device = next(network.parameters(), torch.zeros(0)).device
        example = torch.zeros(1, card.channels, card.image_size, card.image_size, device=device)
        was_training = network.training
        network.eval()
        try:
            with torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore")  # torch.jit.trace's deprecation notices: add_graph traces
                self.writer.add_graph(network, example, use_strict_trace=False)
        except Exception as exc:  # noqa: BLE001 - a model the tracer cannot follow still gets the rest of its log
            log.warning("TensorBoard graph of %s failed: %s", card.model, exc)
            self.writer.add_text("model/graph", f"The graph could not be traced: {type(exc).__name__}: {exc}")
        finally:
            network.train(was_training)

    def _misclassified(self, event: EndEvent) -> None:
        picked = confident_mistakes(event.test_probs, event.test_labels, MISCLASSIFIED_LOGGED)
        if picked.numel() == 0:
            return
        card = event.card
        try:
            split = data_registry.load_split(card.dataset, "test", image_size=card.image_size)
        except CnnError as exc:  # e.g. the data set was deleted while training
            self.writer.add_text("test/misclassified_labels", f"The misclassified images cannot be shown: {exc}")
            return
        images = split.images[event.test_indices[picked]].float() / 255
        self.writer.add_images("test/misclassified", images, dataformats="NCHW")
        probs, labels, names = event.test_probs, event.test_labels, card.class_names
        rows = [f"| {i + 1} | {names[int(labels[k])]} | {names[int(probs[k].argmax())]} | {float(probs[k].max()):.3f} |"
                for i, k in enumerate(picked.tolist())]  # fmt: skip
        table = "| image | true class | predicted | probability |\n|---|---|---|---|\n" + "\n".join(rows)
        self.writer.add_text("test/misclassified_labels", table)


def tensorboard_logged(events: Iterator[Event], log_dir: str | Path) -> Iterator[Event]:
    """The events, unchanged, each written into a TensorBoard log in `log_dir` first; the log is closed when
    the stream ends (or fails). Raises CnnError at once (not on the first event) when `log_dir` cannot be
    created. Should writing the log fail later (a full disk), training goes on: a StatusEvent says the log
    stopped, and no more is written."""
    return _logged(events, TensorBoardLogger(log_dir))


def _logged(events: Iterator[Event], logger: TensorBoardLogger) -> Iterator[Event]:
    logging_on = True
    try:
        for event in events:
            if logging_on:
                try:
                    logger(event)
                except Exception as exc:  # noqa: BLE001 - the log is a by-product: never lose the run to it
                    log.warning("TensorBoard log in %s failed", logger.log_dir, exc_info=True)
                    logging_on = False
                    yield StatusEvent(f"The TensorBoard log in {logger.log_dir} stopped: {type(exc).__name__}: {exc}")
            yield event
    finally:
        logger.close()


# ------------------------------------------------------------------------------------------ content
def confident_mistakes(probs: torch.Tensor, labels: torch.Tensor, limit: int) -> torch.Tensor:
    """Indices (int64 [<= limit]) of the misclassified rows of probabilities [N, K] against labels [N], the most
    confident mistake first."""
    labels = labels.reshape(-1).cpu()
    top, predicted = probs.max(dim=1)
    wrong = torch.nonzero(predicted != labels).reshape(-1)
    order = torch.argsort(top[wrong], descending=True)
    return wrong[order][:limit]


def confusion_figure(matrix: list[list[int]], class_names: tuple[str, ...]):
    """A matplotlib Figure of a confusion matrix (rows: true class, columns: predicted), counts in the cells."""
    from matplotlib.figure import Figure

    counts = np.asarray(matrix, dtype=np.float64)
    n = len(class_names)
    side = min(12.0, 2.5 + 0.6 * n)
    figure = Figure(figsize=(side, side), dpi=100)
    axes = figure.add_subplot()
    axes.imshow(counts, cmap="Blues")
    axes.set_xticks(range(n), [name[:14] for name in class_names], rotation=45, ha="right")
    axes.set_yticks(range(n), [name[:14] for name in class_names])
    axes.set_xlabel("predicted class")
    axes.set_ylabel("true class")
    limit = counts.max() / 2 if counts.size else 0
    for (row, col), value in np.ndenumerate(counts):
        axes.text(col, row, f"{int(value)}", ha="center", va="center", fontsize=8,
                  color="white" if value > limit else "black")  # fmt: skip
    figure.tight_layout()
    return figure


def hparams_of(config: dict) -> dict[str, int | float | str | bool]:
    """The run's options as `add_hparams` takes them: nested dicts flattened ("augment.shift"), lists and
    None as text."""
    flat: dict[str, int | float | str | bool] = {}
    for key, value in config.items():
        if isinstance(value, dict):
            flat.update({f"{key}.{k}": v for k, v in hparams_of(value).items()})
        elif isinstance(value, (bool, int, float, str)):
            flat[key] = value
        else:
            flat[key] = json.dumps(value, default=str)
    return flat


def final_metrics(event: EndEvent) -> dict[str, float]:
    """The run's outcome for `add_hparams`: test accuracy and ROC-AUC, the kept epoch's validation scores,
    epochs run and training seconds (missing or non-finite values left out)."""
    test = event.test_metrics or {}
    best_val = (event.card.metrics or {}).get("best_val") or {}
    values = {
        "hparam/test_accuracy": test.get("accuracy"),
        "hparam/test_auroc": test.get("auroc"),
        "hparam/best_val_accuracy": best_val.get("val_accuracy"),
        "hparam/best_val_loss": best_val.get("val_loss"),
        "hparam/epochs_run": event.epochs_run,
        "hparam/train_seconds": event.seconds,
    }
    return {k: float(v) for k, v in values.items() if isinstance(v, (int, float)) and math.isfinite(v)}
