"""What a run is while and after it trains: its status, a consistent snapshot for pages, progress and ETA,
the misclassified test images, and the numbers pages draw from them."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from enum import Enum

import torch

from ..errors import ConfigError
from ..training import BatchEvent, EndEvent, EpochEvent, ResolvedConfig, StartEvent, TrainConfig

#: Misclassified test images kept per run for the gallery (the most confident mistakes first).
MISCLASSIFIED_KEPT = 32


class RunStatus(str, Enum):
    QUEUED = "queued"
    RUNNING = "running"
    FINISHED = "finished"
    CANCELLED = "cancelled"
    FAILED = "failed"
    INTERRUPTED = "interrupted"  # the server (and with it the worker) stopped while it was queued or training

    @property
    def active(self) -> bool:
        return self in (RunStatus.QUEUED, RunStatus.RUNNING)


@dataclass(frozen=True)
class Misclassified:
    """One test image the model got wrong, for the gallery."""

    index: int  # position in the (possibly limited) test split
    image: torch.Tensor  # uint8 [C, H, W]
    true_label: int
    predicted_label: int
    confidence: float  # probability the model gave its (wrong) answer


@dataclass(frozen=True)
class Progress:
    """How far a run is: fraction of its steps done, wall-clock seconds since it started, and an estimate."""

    fraction: float
    step: int
    total_steps: int
    epoch: int
    epochs: int
    elapsed: float
    eta: float | None  # seconds left, None until there is a step to extrapolate from


@dataclass(frozen=True)
class RunSnapshot:
    """A consistent copy of a run at one moment, read from the run store: what the page draws.

    Times are wall-clock seconds since the epoch (`time.time()`): the run trains in another process.
    """

    id: str
    owner: str
    status: RunStatus
    config: TrainConfig
    resolved: ResolvedConfig
    dataset_title: str
    created: float
    queue_ahead: int  # runs that start or finish before this one can start (0 once it trains)
    start: StartEvent | None
    batches: tuple[BatchEvent, ...]
    epochs: tuple[EpochEvent, ...]
    end: EndEvent | None
    error: str | None
    note: str | None  # e.g. why no checkpoint was kept
    statuses: tuple[str, ...]  # the trainer's StatusEvent messages, e.g. "Computing … features for 202 images…"
    started_at: float | None  # left the queue
    training_at: float | None  # the steps could begin: data loaded, model built, features computed
    finished_at: float | None
    misclassified: tuple[Misclassified, ...]
    cancel_requested: bool
    origin: str = "app"  # "app" or "cli"
    backend: str = "local"

    @property
    def status_message(self) -> str | None:
        """The latest status: what the run is doing while it takes no step."""
        return self.statuses[-1] if self.statuses else None

    @property
    def checkpoint_path(self) -> str | None:
        return self.end.checkpoint_path if self.end is not None else None

    @property
    def test_accuracy(self) -> float | None:
        metrics = self.end.test_metrics if self.end is not None else None
        return metrics.get("accuracy") if metrics else None

    def wall_seconds(self, now: float | None = None) -> float:
        """Seconds since the run left the queue (until it ended)."""
        if self.started_at is None:
            return 0.0
        stop = self.finished_at if self.finished_at is not None else (now or time.time())
        return max(0.0, stop - self.started_at)

    def progress(self, now: float | None = None) -> Progress:
        return run_progress(self, now)


# --------------------------------------------------------------------------------------------------
# Derived numbers the page draws


def smooth(values: list[float] | tuple[float, ...], weight: float = 0.8) -> list[float]:
    """Exponential moving average with bias correction (TensorBoard's smoothing), NaNs passed through.

    `weight` 0 returns the values unchanged; close to 1 smooths heavily. The first points are not pulled
    towards zero, thanks to the bias correction.
    """
    if not 0 <= weight < 1:
        raise ConfigError(f"Smoothing weight must be in [0, 1); got {weight}.")
    smoothed: list[float] = []
    last = 0.0
    count = 0
    for value in values:
        if not math.isfinite(value):
            smoothed.append(value)
            continue
        count += 1
        last = last * weight + (1 - weight) * value
        smoothed.append(last / (1 - weight**count))
    return smoothed


def run_progress(snapshot: RunSnapshot, now: float | None = None) -> Progress:
    """Fraction done, elapsed wall time and ETA, extrapolated from the wall time per step since training began
    (evaluation included, data loading not)."""
    elapsed = snapshot.wall_seconds(now)
    start = snapshot.start
    if start is None:
        return Progress(0.0, 0, 0, 0, snapshot.resolved.epochs, elapsed, None)
    total = max(1, start.epochs * start.steps_per_epoch)
    step = snapshot.batches[-1].step if snapshot.batches else 0
    epoch = snapshot.batches[-1].epoch if snapshot.batches else 0
    if snapshot.end is not None and snapshot.end.steps:  # the count itself: batch events may lag the last steps
        step = snapshot.end.steps
        epoch = -(-step // start.steps_per_epoch) if start.steps_per_epoch else epoch
    if snapshot.status is RunStatus.FINISHED:  # early stopping also ends a run: it is complete
        return Progress(1.0, step, total, snapshot.end.epochs_run, start.epochs, elapsed, 0.0)
    if not snapshot.status.active:  # stopped or failed part of the way
        return Progress(min(1.0, step / total), step, total, epoch, start.epochs, elapsed, None)
    eta = None
    if step and snapshot.training_at is not None:  # loading the data is over: time the steps only
        training = max(0.0, (now or time.time()) - snapshot.training_at)
        eta = training * (total - step) / step
    return Progress(min(1.0, step / total), step, total, epoch, start.epochs, elapsed, eta)


def misclassified_examples(
    probs: torch.Tensor, labels: torch.Tensor, images: torch.Tensor, limit: int = MISCLASSIFIED_KEPT
) -> list[Misclassified]:
    """Test images predicted wrongly, the most confident mistakes first (they teach the most).

    `probs` [N, C], `labels` [N] and `images` [N, C, H, W] uint8 are aligned row by row.
    """
    if probs.numel() == 0:
        return []
    confidence, predicted = probs.max(dim=1)
    wrong = (predicted != labels).nonzero().flatten()
    order = wrong[confidence[wrong].argsort(descending=True)][:limit]
    return [
        Misclassified(
            index=int(i),
            image=images[i].clone(),
            true_label=int(labels[i]),
            predicted_label=int(predicted[i]),
            confidence=float(confidence[i]),
        )
        for i in order.tolist()
    ]


def format_seconds(seconds: float | None) -> str:
    """"0:42", "12:05", "1:02:03" for people; "—" when unknown."""
    if seconds is None or not math.isfinite(seconds):
        return "—"
    seconds = int(round(max(0.0, seconds)))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"

