"""`RunManager`: the app's one interface to training runs. Runs train in worker processes (a back-end), with a
concurrency limit and a first-come queue; everything about them lives in the run store, so pages read them
back, after a server restart too.

Each owner (a browser) has at most one active run; at most `max_concurrent` train at once
(`CNN_MAX_CONCURRENT_RUNS`; 1 on a CPU, 2 on a GPU) and the rest wait, told how many runs are ahead of them.
Errors a person can act on (`CnnError`) end the run with their message; a worker that dies ends its run as
failed, saying how it died.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections import deque
from dataclasses import replace
from typing import Callable

from .. import data as data_registry
from ..errors import CnnError, ConfigError
from ..training import TrainConfig
from .logs import run_log_dir
from .commands import check_run_config, checkpoint_path_for, cli_command, default_max_concurrent
from .records import RunSnapshot, RunStatus
from .store import RunStore
from .ray_backend import RayBackend, backend_from_environment
from .worker import ENV_MAX_RUN_MINUTES, LocalBackend, WorkerJob, job_environment, process_token, token_alive

log = logging.getLogger(__name__)

#: Runs listed per owner in the studio's compare table (the newest; older ones stay in the store).
RUNS_SHOWN_PER_OWNER = 10
#: Seconds between the manager's looks at its workers.
MONITOR_INTERVAL_S = 0.2
ACTIVE = (RunStatus.QUEUED, RunStatus.RUNNING)


class RunBusyError(CnnError):
    """This owner already has a run queued or training."""


class RunManager:
    """Training runs for the app: submit, stop, read. Thread-safe: pages call it from Streamlit's threads.

    `trainer` ("module:function", or such a function of an importable module, not of `__main__`) stands in for
    `training.train` in tests.
    """

    def __init__(
        self,
        max_concurrent: int | None = None,
        trainer: str | Callable | None = None,
        store: RunStore | None = None,
        backend: LocalBackend | RayBackend | None = None,
    ):
        self.max_concurrent = max_concurrent if max_concurrent is not None else default_max_concurrent()
        if self.max_concurrent < 1:
            raise ConfigError(f"At least one run must be allowed at a time; got {self.max_concurrent}.")
        self.store = store or RunStore()
        self.notice = None  # why runs do not go where CNN_RAY_ADDRESS says, for the page to show
        if backend is None:
            backend, self.notice = backend_from_environment()
        self.backend = backend
        if callable(trainer):
            if trainer.__module__ == "__main__":  # a worker imports its trainer by name, never from `__main__`
                raise ConfigError(f"Define the trainer {trainer.__qualname__} in an importable module, not in __main__.")
            trainer = f"{trainer.__module__}:{trainer.__qualname__}"
        self._trainer = trainer
        self._lock = threading.RLock()
        self._queue: deque[WorkerJob] = deque()
        self._workers: dict[str, object] = {}
        self._stops_passed: set[str] = set()  # runs whose outside stop reached their worker (`_pass_on_stop`)
        self._monitor: threading.Thread | None = None
        self._token = process_token()
        self.interrupted = self._end_runs_of_dead_processes()

    # ---------------------------------------------------------------- starting and stopping
    def submit(self, owner: str, config: TrainConfig, *, save: bool = True, origin: str = "app") -> str:
        """Check `config`, queue it for `owner` and return the run id; it starts as soon as a slot is free.

        Raises RunBusyError when the owner already has an active run, and the CnnError of
        `check_run_config` for bad options. With `save`, the checkpoint goes to the runs folder.
        """
        if self.store.was_forgotten(owner):  # a tab left open after "Forget this browser", clicking at that moment
            raise ConfigError("This browser was forgotten on this server: reload the page to train as its new "
                              "identity.")
        resolved, info = check_run_config(config)
        run_id = uuid.uuid4().hex
        config = replace(config, model=resolved.model)
        if save and not config.out:
            config = replace(config, out=str(checkpoint_path_for(config, resolved.model, run_id)))
        if not config.command:
            config = replace(config, command=cli_command(config, resolved, info.family, info.task))
        folder = data_registry.registered_folder(info.name)  # an upload: the worker registers it too
        log_dir = str(run_log_dir(run_id)) if self.backend.name == "local" else None  # a cluster node's disk is not ours
        env = job_environment()
        if origin != "app":  # the server's cap on students' runs; a command line's run is its user's own
            env.pop(ENV_MAX_RUN_MINUTES, None)
        job = WorkerJob(run_id, config, str(self.store.path), env, folder, os.getpid(), self._trainer, log_dir=log_dir)
        with self._lock:
            active = self.active_run(owner) if origin == "app" else None  # command lines may run side by side
            if active is not None:
                raise RunBusyError(
                    "You already have a run " + ("waiting" if active.status is RunStatus.QUEUED else "training")
                    + ": stop it or let it finish before starting another (one run per person)."
                )
            self.store.create_run(run_id, owner, config, resolved, info.title, origin=origin, backend=self.backend.name,
                                  holder=self._token)  # fmt: skip
            self._queue.append(job)
            self._start_waiting_runs()
        return run_id

    def cancel(self, run_id: str) -> bool:
        """Stop a run: a queued one at once, a training one within one batch (keeping its best weights).

        Returns False when the run is unknown or already over.
        """
        with self._lock:
            status = self.store.status(run_id)
            if status is None or not status.active:
                return False
            self.store.request_cancel(run_id)  # a worker of another process reads this flag too
            queued = any(job.run_id == run_id for job in self._queue)
            self._pass_on_stops()  # to its worker, or out of the queue: as for a stop asked from outside
            if not queued and status is RunStatus.QUEUED and run_id not in self._workers:  # a queue nobody serves
                self.store.finish(run_id, RunStatus.CANCELLED, note="Stopped before it started.")
            return True

    def wait(self, run_id: str, timeout: float | None = None) -> RunSnapshot:
        """Block until the run is over (or `timeout` seconds pass) and return its snapshot."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.store.status(run_id).active and (deadline is None or time.monotonic() < deadline):
            time.sleep(0.05)
        return self.snapshot(run_id)

    # ---------------------------------------------------------------- reading
    def snapshot(self, run_id: str) -> RunSnapshot:
        """The run as it is now (KeyError for an unknown id)."""
        return self.store.snapshot(run_id, queue_ahead=self._ahead(run_id))

    def progress_snapshot(self, run_id: str) -> RunSnapshot:
        """The run with only its newest batch event (KeyError for an unknown id): what `progress()` needs,
        read cheaply enough to poll every second."""
        return self.store.snapshot(run_id, queue_ahead=self._ahead(run_id), last_batch_only=True)

    def has_run(self, run_id: str | None) -> bool:
        return run_id is not None and self.store.status(run_id) is not None

    def active_run(self, owner: str) -> RunSnapshot | None:
        """The owner's queued or training run, if any."""
        active = self.store.run_ids(owner, ACTIVE)
        return self.snapshot(active[-1]) if active else None

    def runs_for(self, owner: str) -> list[tuple[int, RunSnapshot]]:
        """The owner's newest runs, oldest first, each with its number (the owner's runs numbered from 1 as they
        were made, `RunStore.run_numbers`), for the compare table: without batch events and misclassified
        images (`snapshot(run_id)` has them)."""
        numbers = self.store.run_numbers(owner)  # oldest first
        return [(number, self.store.snapshot(run_id, queue_ahead=self._ahead(run_id), detail=False))
                for run_id, number in list(numbers.items())[-RUNS_SHOWN_PER_OWNER:]]

    def latest_run(self, owner: str) -> RunSnapshot | None:
        run_ids = self.store.run_ids(owner)
        return self.snapshot(run_ids[-1]) if run_ids else None

    def load(self) -> tuple[int, int]:
        """(runs training, runs waiting) in this server."""
        with self._lock:
            return len(self._workers), len(self._queue)

    # ---------------------------------------------------------------- internals
    def _ahead(self, run_id: str) -> int:
        with self._lock:
            waiting = [job.run_id for job in self._queue]
            return len(self._workers) + waiting.index(run_id) if run_id in waiting else 0

    def _start_waiting_runs(self) -> None:
        with self._lock:
            self._pass_on_stops()
            while self._queue and len(self._workers) < self.max_concurrent:
                job = self._queue.popleft()
                try:
                    process = self.backend.start(job)
                except Exception as exc:  # noqa: BLE001 - no fork, no Ray: the run ends, the queue goes on
                    log.exception("Could not start run %s", job.run_id)
                    self.store.finish(job.run_id, RunStatus.FAILED, error=f"The run could not be started: {exc}")
                    continue
                # A local worker holds its run; a Ray run is held by this server, which drains its events.
                holder = process_token(process.pid) if process.pid else self._token
                self.store.start(job.run_id, process.pid, holder)
                self._workers[job.run_id] = process
            if self._workers and (self._monitor is None or not self._monitor.is_alive()):
                self._monitor = threading.Thread(target=self._watch_workers, name="cnn-run-monitor", daemon=True)
                self._monitor.start()

    def _pass_on_stops(self) -> None:
        """A stop asked from outside this process (`runs stop`: the store's flag) reaches a worker that does not
        read the store (a Ray task reads its own queue), once per run; a queued run leaves the queue."""
        flagged = self.store.cancel_requests([*self._workers, *(job.run_id for job in self._queue)])
        for run_id in flagged.intersection(self._workers).difference(self._stops_passed):
            self._stops_passed.add(run_id)
            self.backend.request_stop(self._workers[run_id], signal_ready=self.store.stop_signal_ready(run_id))
        for job in [job for job in self._queue if job.run_id in flagged]:
            self._queue.remove(job)
            self.store.finish(job.run_id, RunStatus.CANCELLED, note="Stopped before it started.")

    def _watch_workers(self) -> None:
        """End the runs of workers that died without ending them; start waiting runs as slots free up."""
        while True:
            time.sleep(MONITOR_INTERVAL_S)
            with self._lock:
                try:
                    for run_id, process in list(self._workers.items()):
                        if self.backend.alive(process):
                            continue
                        del self._workers[run_id]
                        self._stops_passed.discard(run_id)
                        status = self.store.status(run_id)  # None: forgotten with its browser meanwhile
                        if status is not None and status.active:
                            self.store.finish(run_id, RunStatus.FAILED, error=self.backend.exit_note(process))
                    self._start_waiting_runs()
                except Exception:  # noqa: BLE001 - e.g. a locked database: look again next time
                    log.exception("Watching the training workers failed")
                if not self._workers and not self._queue:
                    self._monitor = None
                    return

    def _end_runs_of_dead_processes(self) -> list[str]:
        """Runs left queued or training by a process that is gone (a server that was killed, its workers, a CLI
        run stopped from outside) are marked interrupted, never shown as running."""
        dead = [run_id for run_id, holder in self.store.holders(ACTIVE).items() if token_alive(holder) is False]
        self.store.mark_interrupted(dead, "The server stopped while this run was waiting or training.")
        return dead
