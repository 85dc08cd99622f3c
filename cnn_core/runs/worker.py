"""A training run in its own process: the worker trains and writes its events into the run store.

The web server never trains: it starts a worker (`LocalBackend`), and pages read the run back from the store.
So a watched run gets the CPU to itself (no interpreter lock shared with page updates), and its memory is
freed when the worker ends. The same `record_run` writes the events of CLI runs.

A worker stops (its run marked interrupted) when the process that started it is gone: a server killed
mid-run leaves no orphan training. A stop (a signal from the server, or the store's flag, which the
worker also polls) stops it within one batch, keeping the best weights so far, like the CLI's Ctrl-C.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import multiprocessing
import multiprocessing.spawn
import os
import signal
import socket
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterator, Protocol

from .. import data as data_registry
from ..errors import CnnError, ConfigError
from ..training import BatchEvent, EndEvent, EpochEvent, Event, StartEvent, StatusEvent, TrainConfig, train
from ..training.tensorboard import tensorboard_logged
from .records import Misclassified, RunStatus, misclassified_examples
from .store import RunStore

log = logging.getLogger(__name__)

#: Environment variables a worker takes from the server that started it (the forkserver's may be older).
INHERITED_ENV = ("CNN_DATA_DIR", "CNN_CACHE_DIR", "CNN_RUNS_DIR", "CNN_DEVICE", "CNN_DOWNLOAD_MIRROR", "TORCH_HOME",
                 "CNN_MAX_RUN_MINUTES")
#: A class server's cap on one run (minutes from its start; unset: none): one student's 1,000 epochs must not
#: hold the trainer for hours while the class waits in the queue.
ENV_MAX_RUN_MINUTES = "CNN_MAX_RUN_MINUTES"
#: The signal that asks a worker to stop (POSIX); elsewhere the store's flag does it alone.
STOP_SIGNAL = getattr(signal, "SIGUSR1", None)
#: Seconds between the worker's looks at the store (a stop asked for) and at the server (still there).
WATCH_INTERVAL_S = 0.2

Trainer = Callable[[TrainConfig, threading.Event], Iterator[Event]]


@dataclass(frozen=True)
class WorkerJob:
    """Everything a worker process needs, picklable: the run, where to record it, the server's settings."""

    run_id: str
    config: TrainConfig
    db_path: str
    env: dict[str, str] = field(default_factory=dict)
    folder: tuple[str, str, int, str | None] | None = None  # a registered image folder: name, root, seed, owner
    server_pid: int | None = None
    trainer: str | None = None  # "module:function" standing in for training.train (tests)
    deliver_to: str | None = None  # where the checkpoint goes when the worker saves it elsewhere (a Ray node)
    use_stop_signal: bool = True  # a local worker process: the server's stop arrives as a signal
    log_dir: str | None = None  # where the run writes its TensorBoard log (None: no log)


def job_environment() -> dict[str, str]:
    """The settings of this process that a worker must share."""
    return {name: os.environ[name] for name in INHERITED_ENV if name in os.environ}


def max_run_seconds() -> float | None:
    """`CNN_MAX_RUN_MINUTES` in seconds, None when unset. ConfigError for a value that is not a positive number."""
    raw = os.environ.get(ENV_MAX_RUN_MINUTES, "").strip()
    if not raw:
        return None
    try:
        minutes = float(raw)
    except ValueError:
        minutes = 0.0
    if not 0 < minutes < 10**6:  # also refuses nan and inf
        raise ConfigError(f"{ENV_MAX_RUN_MINUTES} must be a positive number of minutes; got {raw!r}.")
    return minutes * 60


def time_limit_note(limit: float | None, kept: bool = True) -> str:
    """What a run stopped by `CNN_MAX_RUN_MINUTES` says about it (`kept`: whether its checkpoint was)."""
    minutes = f"{(limit or 0) / 60:g}"
    return (f"Stopped by this server's time limit of {minutes} minute(s) per run (CNN_MAX_RUN_MINUTES, set by whoever "
            "runs the server); " + ("the checkpoint keeps the best weights so far." if kept else
                                    "it stopped before the first epoch ended, so no checkpoint was kept."))


class Recorder(Protocol):
    """Where a worker writes its run: the `RunStore` itself, or (on a Ray cluster) a queue back to the app."""

    def update(self, run_id: str, **values: object) -> None: ...
    def cancel_requested(self, run_id: str) -> bool: ...
    def add_start(self, run_id: str, event: StartEvent) -> None: ...
    def add_status(self, run_id: str, message: str, before_first_step: bool) -> None: ...
    def add_batch(self, run_id: str, event: BatchEvent) -> None: ...
    def add_epoch(self, run_id: str, event: EpochEvent) -> None: ...
    def add_end(self, run_id: str, event: EndEvent, misclassified: list[Misclassified]) -> None: ...
    def finish(self, run_id: str, status: RunStatus, error: str | None = None, note: str | None = None) -> None: ...


def run_job(job: WorkerJob) -> None:
    """The local worker process's entry point: train, recording every event into the store.

    The worker leads a session of its own (POSIX `setsid`). Linux's scheduler shares the CPU between sessions
    first (autogroups, `man 7 sched`), so in the server's session a run would split one share with the server
    and every page it draws, against a whole share for each browser on the machine. The worker still ends with
    the server: it watches the server's process (`_watch`), and SIGTERM from the server interrupts it.
    """
    if hasattr(os, "setsid"):
        try:
            os.setsid()
        except OSError:  # already a session leader
            pass
    execute(job, RunStore(job.db_path))


def execute(job: WorkerJob, store: Recorder) -> None:
    """Train the job's run, recording every event; always leaves the run ended (finished, cancelled,
    failed with its message, or interrupted when the server went away)."""
    for name in INHERITED_ENV:
        os.environ.pop(name, None)
    os.environ.update(job.env)
    cancel, orphaned, done, timed_out = threading.Event(), threading.Event(), threading.Event(), threading.Event()
    try:
        limit = max_run_seconds()
    except ConfigError:  # the server said so when it started; a worker does not fail a student's run for it
        limit = None
    if job.use_stop_signal and STOP_SIGNAL is not None and threading.current_thread() is threading.main_thread():
        _stop_on_signals(cancel, orphaned)
        store.update(job.run_id, stop_signal_ready=1)
    watcher = threading.Thread(target=_watch, args=(store, job, cancel, orphaned, done, (limit, timed_out)),
                               daemon=True)
    watcher.start()
    try:
        if job.folder is not None:
            name, root, seed, owner = job.folder
            data_registry.register_image_folder(name, root, seed=seed, owner=owner)
        trainer = _load_trainer(job.trainer)
        end = record_run(store, job.run_id, job.config, _with_log(store, job, trainer(job.config, cancel)))
        if orphaned.is_set():
            store.finish(job.run_id, RunStatus.INTERRUPTED, note="The server stopped while this run was training.")
        else:
            limited = timed_out.is_set() and end.cancelled  # not a run whose last test outlasted the limit
            store.finish(job.run_id, RunStatus.CANCELLED if end.cancelled else RunStatus.FINISHED,
                         note=time_limit_note(limit, kept=end.checkpoint_path is not None) if limited else None)
    except CnnError as exc:
        store.finish(job.run_id, RunStatus.FAILED, error=str(exc))
    except KeyboardInterrupt:
        store.finish(job.run_id, RunStatus.INTERRUPTED, note="Interrupted from the keyboard.")
    except BaseException as exc:  # noqa: BLE001 - a worker must never end silently; the page shows this
        log.exception("Training run %s failed", job.run_id)
        store.finish(job.run_id, RunStatus.FAILED, error=f"Training failed unexpectedly: {type(exc).__name__}: {exc}")
    finally:
        done.set()


def _with_log(store: Recorder, job: WorkerJob, events: Iterator[Event]) -> Iterator[Event]:
    """The events, written into the job's TensorBoard log folder on the way; unchanged (with a note on the
    run) when the job has none or the folder cannot be created."""
    if job.log_dir is None:
        return events
    try:
        return tensorboard_logged(events, job.log_dir)
    except CnnError as exc:
        store.update(job.run_id, note=f"No TensorBoard log for this run: {exc}")
        return events


def _stop_on_signals(cancel: threading.Event, orphaned: threading.Event) -> None:
    """The server's stop (STOP_SIGNAL) ends the run before its next batch, keeping its best weights. Ctrl-C in
    the server's terminal is the server's to handle (it reaches the whole process group); the server's own end
    (SIGTERM, as multiprocessing ends daemon workers) interrupts the run the same gentle way."""
    signal.signal(STOP_SIGNAL, lambda number, frame: cancel.set())
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    def server_stopping(number, frame) -> None:
        orphaned.set()
        cancel.set()

    signal.signal(signal.SIGTERM, server_stopping)


def record_run(store: Recorder, run_id: str, config: TrainConfig, events: Iterator[Event]) -> EndEvent:
    """Write a run's events into the store as they come; returns its EndEvent (without the big tensors)."""
    end = None
    for event in recorded(store, run_id, config, events):
        if isinstance(event, EndEvent):
            end = event
    if end is None:
        raise RuntimeError("the trainer ended without an end event")
    return end


def recorded(store: Recorder, run_id: str, config: TrainConfig, events: Iterator[Event]) -> Iterator[Event]:
    """The events, each written into the store before it is passed on (the EndEvent without its big tensors).

    Keeps the most confidently misclassified test images, and deletes the checkpoint of a run stopped before
    its first epoch ended (it holds untrained weights)."""
    stepped = False
    for event in events:
        if isinstance(event, StartEvent):
            store.add_start(run_id, event)
        elif isinstance(event, StatusEvent):
            store.add_status(run_id, event.message, before_first_step=not stepped)
        elif isinstance(event, BatchEvent):
            stepped = True
            store.add_batch(run_id, event)
        elif isinstance(event, EpochEvent):
            store.add_epoch(run_id, event)
        elif isinstance(event, EndEvent):
            event = _finish(store, run_id, config, event)
        yield event


def _finish(store: Recorder, run_id: str, config: TrainConfig, end: EndEvent) -> EndEvent:
    wrong: list[Misclassified] = []
    if end.test_probs is not None and end.test_labels is not None and end.test_indices is not None:
        try:
            split = data_registry.load_split(config.dataset, "test", image_size=end.card.image_size)  # as trained
            wrong = misclassified_examples(end.test_probs, end.test_labels, split.images[end.test_indices])
        except CnnError as exc:  # e.g. the data set was deleted while training
            store.update(run_id, note=f"The misclassified images cannot be shown: {exc}")
    if end.best_epoch == 0 and end.checkpoint_path:
        remove_checkpoint(Path(end.checkpoint_path))
        store.update(run_id, note="Stopped before the first epoch ended, so no checkpoint was kept.")
        end = replace(end, checkpoint_path=None)
    end = replace(end, test_probs=None, test_labels=None, test_indices=None)
    store.add_end(run_id, end, wrong)
    return end


def remove_checkpoint(path: Path) -> None:
    """Remove the weights and every file written beside them under the same name (card, model card)."""
    for file in path.parent.glob(f"{path.stem}.*"):
        if file.stem == path.stem:
            try:
                file.unlink(missing_ok=True)
            except OSError:
                log.warning("Could not remove %s", file)


def _watch(
    store: Recorder, job: WorkerJob, cancel: threading.Event, orphaned: threading.Event, done: threading.Event,
    time_limit: tuple[float | None, threading.Event] = (None, threading.Event()),
) -> None:
    """Stop the run when the store says so, when the server that started the worker is gone, or (setting
    `time_limit`'s event) when it has run longer than its seconds; ends with the run."""
    parent, started, (limit, timed_out) = os.getppid(), time.monotonic(), time_limit
    while not cancel.is_set() and not done.wait(WATCH_INTERVAL_S):
        gone = os.getppid() != parent or (job.server_pid is not None and not process_alive(job.server_pid))
        if gone:
            orphaned.set()
        if limit is not None and time.monotonic() - started > limit:
            timed_out.set()
            cancel.set()
        try:
            asked = store.cancel_requested(job.run_id)
        except Exception:  # noqa: BLE001 - a locked or vanished database must not kill the run by itself
            asked = False
        if gone or asked:
            cancel.set()


def process_token(pid: int | None = None) -> str:
    """"host:pid:start" naming one process (this one by default): with its start time (clock ticks since boot,
    Linux), a process id reused later, or PID 1 of a restarted container, is not the same process."""
    pid = os.getpid() if pid is None else pid
    return f"{socket.gethostname()}:{pid}:{_start_ticks(pid)}"


def token_alive(token: str | None) -> bool | None:
    """Whether the process a token names still runs: True, False, or None for a process of another host
    (that cannot be known here)."""
    if not token:
        return False
    host, _, rest = token.partition(":")
    pid, _, start = rest.partition(":")
    if host != socket.gethostname():
        return None
    if not pid.isdigit() or not process_alive(int(pid)):
        return False
    return start in ("", "?") or _start_ticks(int(pid)) == start


def _start_ticks(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return "?"  # no /proc (macOS, Windows): the process id alone


def process_alive(pid: int) -> bool:
    """Whether a process with this id exists (os.kill(pid, 0) asks without sending anything)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: it exists, under another user
        return True
    return True


def _load_trainer(spec: str | None) -> Trainer:
    if spec is None:
        return lambda config, cancel: train(config, cancel=cancel)
    module, _, name = spec.partition(":")
    return getattr(importlib.import_module(module), name)


_STARTING_WORKER = threading.local()
_preparation_data = multiprocessing.spawn.get_preparation_data


def _preparation_data_without_main(name: str) -> dict:
    """`multiprocessing.spawn.get_preparation_data`, less the parent's main module while this thread starts a
    worker (`LocalBackend.start`).

    A forkserver or spawned child re-runs the parent's `__main__` before its target (`spawn.prepare`). In the app
    `__main__` is the script Streamlit last ran (its script runner installs each script as `__main__`), so every
    worker would first run the app's frame and its Home page; under Streamlit's AppTest it is a deleted
    temporary script, and the worker ended with status 1. Workers need nothing from `__main__`: their job names
    everything it uses (`RunManager` refuses trainers defined there). Only the starting thread's call changes:
    Streamlit's own threads keep their `__main__`.
    """
    data = _preparation_data(name)
    if getattr(_STARTING_WORKER, "active", False):
        data.pop("init_main_from_path", None)
        data.pop("init_main_from_name", None)
    return data


multiprocessing.spawn.get_preparation_data = _preparation_data_without_main


@contextlib.contextmanager
def _without_main_module() -> Iterator[None]:
    """Workers started inside this block do not re-run the parent's `__main__` (`_preparation_data_without_main`)."""
    _STARTING_WORKER.active = True
    try:
        yield
    finally:
        _STARTING_WORKER.active = False


class LocalBackend:
    """Worker processes on this machine. They are forked from a fork server that has imported the trainer
    once (fast to start, and safe: the server's threads are not forked); where there is none, spawned."""

    name = "local"

    def __init__(self) -> None:
        methods = multiprocessing.get_all_start_methods()
        self._context = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
        if "forkserver" in methods:
            self._context.set_forkserver_preload(["cnn_core.runs.worker"])

    def start(self, job: WorkerJob) -> multiprocessing.process.BaseProcess:
        process = self._context.Process(target=run_job, args=(job,), name=f"cnn-run-{job.run_id[:8]}", daemon=True)
        with _without_main_module():
            process.start()
        return process

    @staticmethod
    def alive(process: multiprocessing.process.BaseProcess) -> bool:
        return process.is_alive()

    @staticmethod
    def exit_note(process: multiprocessing.process.BaseProcess) -> str:
        code = process.exitcode
        how = f"was killed by signal {-code}" if code is not None and code < 0 else f"exited with status {code}"
        return f"The training process {how} before the run ended (out of memory, or stopped from outside)."

    @staticmethod
    def request_stop(process: multiprocessing.process.BaseProcess, signal_ready: bool) -> None:
        """Ask the worker to stop within one batch (it keeps its best weights). The signal only once the worker
        handles it (before, it would kill the process); the store's flag, which the worker polls, meanwhile."""
        if signal_ready and STOP_SIGNAL is not None and process.pid is not None:
            try:
                os.kill(process.pid, STOP_SIGNAL)
            except ProcessLookupError:
                pass
