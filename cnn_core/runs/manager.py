"""`RunManager`: a process-wide registry of training runs, each a worker thread, with a concurrency limit
and a first-come queue."""

from __future__ import annotations

import glob
import logging
import threading
import time
import uuid
from collections import deque
from dataclasses import fields, replace
from pathlib import Path
from typing import Callable, Iterator

import torch

from .. import data as data_registry
from ..errors import CnnError, ConfigError
from ..training import BatchEvent, EndEvent, EpochEvent, Event, StartEvent, StatusEvent, TrainConfig, train
from .commands import check_run_config, checkpoint_path_for, cli_command, default_max_concurrent
from .records import RunSnapshot, RunStatus, _Run, misclassified_examples

log = logging.getLogger(__name__)

#: Finished runs kept in memory for the compare table, per owner and in all.
RUNS_KEPT_PER_OWNER = 10
RUNS_KEPT_IN_ALL = 200


class RunBusyError(CnnError):
    """This owner already has a run queued or training."""


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

