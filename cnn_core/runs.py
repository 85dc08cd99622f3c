"""Training runs in the background, for the app: the run outlives the page script that started it.

A Streamlit script reruns on every click, and every browser tab is its own session, so a training loop
inside a page would die (or start twice) when the student touches a widget. Instead, `RunManager` keeps
a process-wide registry of runs: each one is a worker thread that consumes `cnn_core.train.train()` and
stores its events under a lock, with a `threading.Event` to cancel it. The page keeps only the run id and
polls `RunManager.snapshot()` for a consistent copy to draw.

Each owner (a browser) has at most one active run; at most `max_concurrent` runs train at once
(`CNN_MAX_CONCURRENT_RUNS`; 1 on a CPU, 2 on a GPU) and the rest wait in a first-come queue, told how
many runs are ahead of them. Errors a person can act on (`CnnError`: a missing data set, a diverging
loss) end the run with their message; anything else is logged and reported as an unexpected failure.
"""

from __future__ import annotations

import glob
import json
import logging
import math
import os
import re
import shlex
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field, fields, replace
from enum import Enum
from pathlib import Path
from typing import Callable, Iterator

import torch

from . import data as data_registry
from .errors import CnnError, ConfigError, DataError
from .settings import runs_dir
from .train import (
    BatchEvent,
    EndEvent,
    EpochEvent,
    Event,
    ResolvedConfig,
    StartEvent,
    StatusEvent,
    TrainConfig,
    resolve_config,
    train,
)

log = logging.getLogger(__name__)

ENV_MAX_CONCURRENT = "CNN_MAX_CONCURRENT_RUNS"
#: Finished runs kept in memory for the compare table, per owner and in all.
RUNS_KEPT_PER_OWNER = 10
RUNS_KEPT_IN_ALL = 200
#: Misclassified test images kept per run for the gallery (the most confident mistakes first).
MISCLASSIFIED_KEPT = 32


class RunBusyError(CnnError):
    """This owner already has a run queued or training."""


class RunStatus(str, Enum):
    QUEUED = "queued"
    RUNNING = "running"
    FINISHED = "finished"
    CANCELLED = "cancelled"
    FAILED = "failed"

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
    """A consistent copy of a run at one moment: what the page draws."""

    id: str
    owner: str
    status: RunStatus
    config: TrainConfig
    resolved: ResolvedConfig
    dataset_title: str
    created: float  # time.time()
    queue_ahead: int  # runs that start or finish before this one can start (0 once it trains)
    start: StartEvent | None
    batches: tuple[BatchEvent, ...]
    epochs: tuple[EpochEvent, ...]
    end: EndEvent | None
    error: str | None
    note: str | None  # e.g. why no checkpoint was kept
    statuses: tuple[str, ...]  # the trainer's StatusEvent messages, e.g. "Computing … features for 202 images…"
    started_monotonic: float | None
    training_monotonic: float | None
    finished_monotonic: float | None
    misclassified: tuple[Misclassified, ...]
    cancel_requested: bool

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
        if self.started_monotonic is None:
            return 0.0
        stop = self.finished_monotonic if self.finished_monotonic is not None else (now or time.monotonic())
        return max(0.0, stop - self.started_monotonic)

    def progress(self, now: float | None = None) -> Progress:
        return run_progress(self, now)


@dataclass
class _Run:
    id: str
    owner: str
    config: TrainConfig
    resolved: ResolvedConfig
    dataset_title: str
    created: float = field(default_factory=time.time)
    status: RunStatus = RunStatus.QUEUED
    cancel: threading.Event = field(default_factory=threading.Event)
    done: threading.Event = field(default_factory=threading.Event)
    start: StartEvent | None = None
    batches: list[BatchEvent] = field(default_factory=list)
    epochs: list[EpochEvent] = field(default_factory=list)
    end: EndEvent | None = None
    error: str | None = None
    note: str | None = None
    statuses: list[str] = field(default_factory=list)
    started_monotonic: float | None = None
    # when the steps could begin: the start event (data loaded, model built), or a status event after it
    # and before the first step (e.g. a transfer model's features computed), so that the ETA times steps only
    training_monotonic: float | None = None
    finished_monotonic: float | None = None
    misclassified: tuple[Misclassified, ...] = ()


# --------------------------------------------------------------------------------------------------
# Configuration helpers


def default_max_concurrent() -> int:
    """`CNN_MAX_CONCURRENT_RUNS`, else 2 when training runs on a CUDA GPU and 1 otherwise."""
    raw = os.environ.get(ENV_MAX_CONCURRENT, "").strip()
    if raw:
        try:
            value = int(raw)
        except ValueError:
            value = 0
        if value < 1:
            raise ConfigError(f"{ENV_MAX_CONCURRENT} must be a whole number of at least 1; got {raw!r}.")
        return value
    from .device import pick_device

    try:
        return 2 if pick_device().type == "cuda" else 1
    except CnnError:
        return 1


def check_run_config(config: TrainConfig) -> tuple[ResolvedConfig, data_registry.DatasetInfo]:
    """Everything that can be checked before a run starts, with a message a student can act on.

    The data set must exist and be on this computer, the options in range, and the batch no larger
    than the training set (when its size is known without loading it).
    """
    info = data_registry.get_dataset_info(config.dataset)
    status = data_registry.dataset_status(config.dataset)
    if not status.available:
        raise DataError(f"{info.title} is not on this computer (any more). {status.how_to_get}".strip())
    if info.multi_label:
        raise ConfigError(
            f"{info.title} is a multi-label data set (each image may have several labels); "
            "training multi-label tasks is not supported yet. Choose a binary or multi-class data set."
        )
    resolved = resolve_config(config, info)
    n_train = data_registry.split_sizes(config.dataset).get("train")  # folders: readable files only
    if n_train is not None and config.limit is not None:
        n_train = min(n_train, config.limit)
    if n_train is not None and resolved.batch_size > n_train:
        raise ConfigError(
            f"Batch size {resolved.batch_size} is larger than the training set ({n_train} images"
            f"{' with this subset size' if config.limit is not None else ''}); choose at most {n_train}."
        )
    return resolved, info


def checkpoint_path_for(config: TrainConfig, model: str, run_id: str) -> Path:
    """Where the app saves a run's checkpoint: the runs folder, named after data set, model and time."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{config.dataset}-{model}-{stamp}-{run_id[:6]}")
    return runs_dir() / f"{stem}.safetensors"


def cli_command(config: TrainConfig, resolved: ResolvedConfig, family: str, task: str) -> str:
    """The `python -m cnn_core train ...` line that repeats this run, recorded in the checkpoint card.

    It names every option that changes the run, defaults filled in, so the CLI's parser gives back this run's
    TrainConfig (tested as a round trip) even if defaults change later; where the device and the checkpoint
    go is left to whoever runs it. `family` and `task` are kept for callers; the augmentation is spelled out.
    """
    parts = ["python", "-m", "cnn_core", "train", "--data", config.dataset, "--model", resolved.model,
             "--epochs", str(resolved.epochs), "--batch-size", str(resolved.batch_size),
             "--lr", _number(resolved.lr), "--optimizer", resolved.optimizer, "--schedule", resolved.schedule,
             "--monitor", config.monitor, "--seed", str(config.seed)]
    for key, value in (config.model_args or {}).items():
        parts += ["--model-arg", f"{key}={_model_arg_text(value)}"]
    if config.weight_decay != TrainConfig.weight_decay:
        parts += ["--weight-decay", _number(config.weight_decay)]
    if config.momentum != TrainConfig.momentum:
        parts += ["--momentum", _number(config.momentum)]
    if config.label_smoothing:
        parts += ["--label-smoothing", _number(config.label_smoothing)]
    if config.patience is not None:
        parts += ["--patience", str(config.patience)]
    if config.limit is not None:
        parts += ["--limit", str(config.limit)]
    if config.image_size is not None:
        parts += ["--image-size", str(config.image_size)]
    if config.augment is not None:  # as chosen; None lets the trainer pick what suits the data set
        a = config.augment
        parts += ["--shift", str(a.shift), "--hflip" if a.hflip else "--no-hflip",
                  "--vflip" if a.vflip else "--no-vflip", "--color-jitter", _number(a.color_jitter),
                  "--rotate90" if a.rotate90 else "--no-rotate90", "--grayscale", _number(a.grayscale)]
    if not config.tta:
        parts.append("--no-tta")
    return shlex.join(parts)


def _number(value: float) -> str:
    """A float as the CLI reads it back exactly ("0.003", "0.0005", "0.3333333333333333")."""
    return repr(float(value))


def _model_arg_text(value: object) -> str:
    """A --model-arg value the CLI reads back as the same value: it parses JSON and keeps other text as is."""
    if isinstance(value, str):
        try:
            json.loads(value)
        except ValueError:
            return value  # plain text: "frozen"
        return json.dumps(value)  # text that reads as JSON ("3", "true") keeps its quotes
    return json.dumps(value)  # numbers, true/false, lists


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
    if snapshot.status is RunStatus.FINISHED:  # early stopping also ends a run: it is complete
        return Progress(1.0, step, total, snapshot.end.epochs_run, start.epochs, elapsed, 0.0)
    if not snapshot.status.active:  # stopped or failed part of the way
        return Progress(min(1.0, step / total), step, total, epoch, start.epochs, elapsed, None)
    eta = None
    if step and snapshot.training_monotonic is not None:  # loading the data is over: time the steps only
        training = max(0.0, (now or time.monotonic()) - snapshot.training_monotonic)
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


# --------------------------------------------------------------------------------------------------
# The manager


Trainer = Callable[[TrainConfig, threading.Event], Iterator[Event]]


class RunManager:
    """A process-wide registry of training runs with a concurrency limit and a queue.

    Thread-safe: pages call it from Streamlit's script threads while workers append events.
    """

    def __init__(self, max_concurrent: int | None = None, trainer: Trainer | None = None):
        self.max_concurrent = max_concurrent if max_concurrent is not None else default_max_concurrent()
        if self.max_concurrent < 1:
            raise ConfigError(f"At least one run must be allowed at a time; got {self.max_concurrent}.")
        self._trainer: Trainer = trainer or (lambda config, cancel: train(config, cancel=cancel))
        self._lock = threading.RLock()
        self._runs: dict[str, _Run] = {}
        self._queue: deque[str] = deque()
        self._running: set[str] = set()

    # ---------------------------------------------------------------- starting and stopping
    def submit(self, owner: str, config: TrainConfig, *, save: bool = True) -> str:
        """Check `config`, queue it for `owner` and return the run id; it starts as soon as a slot is free.

        Raises RunBusyError when the owner already has an active run, and the CnnError of
        `check_run_config` for bad options. With `save`, the checkpoint goes to the runs folder.
        """
        resolved, info = check_run_config(config)
        run_id = uuid.uuid4().hex
        config = replace(config, model=resolved.model)
        if save and not config.out:
            config = replace(config, out=str(checkpoint_path_for(config, resolved.model, run_id)))
        if not config.command:
            config = replace(config, command=cli_command(config, resolved, info.family, info.task))
        with self._lock:
            active = self.active_run(owner)
            if active is not None:
                raise RunBusyError(
                    "You already have a run " + ("waiting" if active.status is RunStatus.QUEUED else "training")
                    + ": stop it or let it finish before starting another (one run per person)."
                )
            self._runs[run_id] = _Run(run_id, owner, config, resolved, info.title)
            self._queue.append(run_id)
            self._start_waiting_runs()
            self._forget_old_runs(owner)
        return run_id

    def cancel(self, run_id: str) -> bool:
        """Stop a run: a queued one at once, a training one within one batch (keeping its best weights).

        Returns False when the run is unknown or already over.
        """
        with self._lock:
            run = self._runs.get(run_id)
            if run is None or not run.status.active:
                return False
            run.cancel.set()
            if run.status is RunStatus.QUEUED:
                self._queue.remove(run_id)
                run.status = RunStatus.CANCELLED
                run.note = "Stopped before it started."
                run.finished_monotonic = time.monotonic()
                run.done.set()
            return True

    def wait(self, run_id: str, timeout: float | None = None) -> RunSnapshot:
        """Block until the run is over (or `timeout` seconds pass) and return its snapshot."""
        run = self._get(run_id)
        run.done.wait(timeout)
        return self.snapshot(run_id)

    # ---------------------------------------------------------------- reading
    def snapshot(self, run_id: str) -> RunSnapshot:
        """A consistent copy of the run (KeyError for an unknown id)."""
        with self._lock:
            run = self._get(run_id)
            return RunSnapshot(
                id=run.id,
                owner=run.owner,
                status=run.status,
                config=run.config,
                resolved=run.resolved,
                dataset_title=run.dataset_title,
                created=run.created,
                queue_ahead=self._ahead(run),
                start=run.start,
                batches=tuple(run.batches),
                epochs=tuple(run.epochs),
                end=run.end,
                error=run.error,
                note=run.note,
                statuses=tuple(run.statuses),
                started_monotonic=run.started_monotonic,
                training_monotonic=run.training_monotonic,
                finished_monotonic=run.finished_monotonic,
                misclassified=run.misclassified,
                cancel_requested=run.cancel.is_set(),
            )

    def has_run(self, run_id: str | None) -> bool:
        with self._lock:
            return run_id is not None and run_id in self._runs

    def active_run(self, owner: str) -> RunSnapshot | None:
        """The owner's queued or training run, if any."""
        with self._lock:
            for run in self._runs.values():
                if run.owner == owner and run.status.active:
                    return self.snapshot(run.id)
        return None

    def runs_for(self, owner: str) -> list[RunSnapshot]:
        """The owner's runs, oldest first (for the compare table)."""
        with self._lock:
            return [self.snapshot(r.id) for r in sorted(self._runs.values(), key=lambda r: r.created)
                    if r.owner == owner]

    def latest_run(self, owner: str) -> RunSnapshot | None:
        runs = self.runs_for(owner)
        return runs[-1] if runs else None

    def load(self) -> tuple[int, int]:
        """(runs training, runs waiting) across all owners."""
        with self._lock:
            return len(self._running), len(self._queue)

    # ---------------------------------------------------------------- internals
    def _get(self, run_id: str) -> _Run:
        with self._lock:
            try:
                return self._runs[run_id]
            except KeyError:
                raise KeyError(f"No run {run_id!r}") from None

    def _ahead(self, run: _Run) -> int:
        if run.status is not RunStatus.QUEUED:
            return 0
        return len(self._running) + list(self._queue).index(run.id)

    def _start_waiting_runs(self) -> None:
        with self._lock:
            while self._queue and len(self._running) < self.max_concurrent:
                run = self._runs[self._queue.popleft()]
                run.status = RunStatus.RUNNING
                run.started_monotonic = time.monotonic()
                self._running.add(run.id)
                thread = threading.Thread(target=self._work, args=(run,), name=f"cnn-run-{run.id[:8]}", daemon=True)
                thread.start()

    def _work(self, run: _Run) -> None:
        """The worker thread: consume the trainer's events, then record how the run ended."""
        try:
            for event in self._trainer(run.config, run.cancel):
                self._record(run, event)
            if run.end is None:
                raise RuntimeError("the trainer ended without an end event")
            status, error = (RunStatus.CANCELLED if run.end.cancelled else RunStatus.FINISHED), None
        except CnnError as exc:
            status, error = RunStatus.FAILED, str(exc)
        except Exception as exc:  # noqa: BLE001 - a worker must never die silently; the page shows this
            log.exception("Training run %s failed", run.id)
            status, error = RunStatus.FAILED, f"Training failed unexpectedly: {type(exc).__name__}: {exc}"
        with self._lock:
            run.status = status
            run.error = error
            run.finished_monotonic = time.monotonic()
            self._running.discard(run.id)
            run.done.set()
            self._start_waiting_runs()

    def _record(self, run: _Run, event: Event) -> None:
        if isinstance(event, EndEvent):
            event = self._finish(run, event)
        event = _without_live_objects(event)
        with self._lock:
            if isinstance(event, StartEvent):
                run.start = event
                run.training_monotonic = time.monotonic()
            elif isinstance(event, StatusEvent):
                run.statuses.append(event.message)
                if not run.batches:  # preparing before the first step: not step time
                    run.training_monotonic = time.monotonic()
            elif isinstance(event, BatchEvent):
                run.batches.append(event)
            elif isinstance(event, EpochEvent):
                run.epochs.append(event)
            elif isinstance(event, EndEvent):
                run.end = event

    def _finish(self, run: _Run, end: EndEvent) -> EndEvent:
        """Keep the misclassified images, drop an untrained checkpoint, and let go of the big tensors."""
        if end.test_probs is not None and end.test_labels is not None and end.test_indices is not None:
            try:
                split = data_registry.load_split(run.config.dataset, "test", image_size=run.config.image_size)
                images = split.images[end.test_indices]
                examples = tuple(misclassified_examples(end.test_probs, end.test_labels, images))
                with self._lock:
                    run.misclassified = examples
            except CnnError as exc:  # e.g. the data set was deleted while training
                run.note = f"The misclassified images cannot be shown: {exc}"
        if end.best_epoch == 0 and end.checkpoint_path:
            _remove_checkpoint(Path(end.checkpoint_path))
            run.note = "Stopped before the first epoch ended, so no checkpoint was kept."
            end = replace(end, checkpoint_path=None)
        return replace(end, test_probs=None, test_labels=None, test_indices=None)

    def _forget_old_runs(self, owner: str) -> None:
        """Bound memory: keep the newest finished runs per owner and in all; active runs always stay."""
        with self._lock:
            finished = sorted((r for r in self._runs.values() if not r.status.active), key=lambda r: r.created)
            mine = [r for r in finished if r.owner == owner]
            drop = {r.id for r in mine[: max(0, len(mine) - RUNS_KEPT_PER_OWNER)]}
            rest = [r for r in finished if r.id not in drop]
            drop |= {r.id for r in rest[: max(0, len(rest) - RUNS_KEPT_IN_ALL)]}
            for run_id in drop:
                del self._runs[run_id]


def _without_live_objects(event: Event) -> Event:
    """The event without references to live modules (e.g. the model being trained), which kept runs must not pin."""
    live = {f.name: None for f in fields(event) if isinstance(getattr(event, f.name), torch.nn.Module)}
    return replace(event, **live) if live else event


def _remove_checkpoint(path: Path) -> None:
    """Remove the weights and every file written beside them under the same name (card, model card)."""
    for file in [path, *path.parent.glob(glob.escape(path.stem) + ".*")]:
        if file.stem != path.stem:
            continue
        try:
            file.unlink(missing_ok=True)
        except OSError:
            log.warning("Could not remove %s", file)


def augment_options(family: str, task: str) -> dict[str, bool]:
    """Which augmentation toggles make sense for a data set: no flips or rotations for digits (a flipped 2 is
    no 2, a turned 6 is a 9)."""
    digits = family == "mnist"
    return {"shift": True, "hflip": not digits, "vflip": not digits, "rotate90": not digits, "color_jitter": True}


__all__ = [
    "ENV_MAX_CONCURRENT",
    "Misclassified",
    "Progress",
    "RunBusyError",
    "RunManager",
    "RunSnapshot",
    "RunStatus",
    "augment_options",
    "check_run_config",
    "checkpoint_path_for",
    "cli_command",
    "default_max_concurrent",
    "format_seconds",
    "misclassified_examples",
    "run_progress",
    "smooth",
]
