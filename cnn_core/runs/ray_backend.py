"""Runs on a Ray cluster, when one machine is not enough for a class: `CNN_RAY_ADDRESS` names the cluster.

Each run is a Ray task with its resource request (`CNN_RAY_CPUS` CPUs, default 1; `CNN_RAY_GPUS`, default 0,
may be a fraction such as 0.25 so that several small runs share one GPU). The task trains exactly as a local
worker does (`worker.execute`), but records into a Ray queue instead of the run store: a thread in the app
drains the queue into the store, so pages read a Ray run like any other. The checkpoint comes back as bytes
and is written where a local run would have put it. `ray` is an optional extra (`pip install -e .[cluster]`).

Ray is used as it is documented: `ray.init(address=...)` with "auto", "host:port" or "ray://host:10001",
`@ray.remote` tasks, `ray.util.queue.Queue`, `ray.wait`, `ray.get`.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import tempfile
import threading
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import urlparse

from ..errors import ConfigError
from .store import RunStore
from .worker import WorkerJob, execute

log = logging.getLogger(__name__)

ENV_ADDRESS = "CNN_RAY_ADDRESS"
ENV_CPUS = "CNN_RAY_CPUS"
ENV_GPUS = "CNN_RAY_GPUS"
#: Seconds a cluster's address is given to answer a TCP connection before it counts as unreachable.
CONNECT_TIMEOUT_S = 3.0
_CHECKPOINT_SUFFIXES = (".safetensors", ".json", ".md")


class RayUnavailableError(ConfigError):
    """Ray is not installed, or the cluster in CNN_RAY_ADDRESS cannot be reached."""


def ray_address() -> str | None:
    """`CNN_RAY_ADDRESS` ("auto", "host:port" or "ray://host:10001"), or None to train on this machine."""
    return os.environ.get(ENV_ADDRESS, "").strip() or None


def _import_ray():
    try:
        import ray
    except ImportError:
        raise RayUnavailableError(
            f"{ENV_ADDRESS} is set, but Ray is not installed: pip install -e '.[cluster]' (or unset {ENV_ADDRESS} "
            "to train on this machine)."
        ) from None
    return ray


def connect(address: str) -> None:
    """Join the Ray cluster at `address` as a client (once per process); RayUnavailableError, in one sentence
    that names the address and what to start, when it cannot be reached."""
    ray = _import_ray()
    if ray.is_initialized():
        return
    host_port = _host_and_port(address)
    if host_port is not None:
        host, port = host_port
        try:
            socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S).close()
        except OSError as exc:
            raise RayUnavailableError(
                f"Cannot reach the Ray cluster at {address} ({ENV_ADDRESS}): nothing answers on {host}:{port} "
                f"({exc.strerror or exc}). Start its head there (`ray start --head --port={port}`) or unset "
                f"{ENV_ADDRESS} to train on this machine."
            ) from None
    try:
        ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
    except Exception as exc:  # noqa: BLE001 - Ray raises ConnectionError, RuntimeError, ValueError
        raise RayUnavailableError(
            f"Cannot join the Ray cluster at {address} ({ENV_ADDRESS}): {str(exc).splitlines()[0][:200]}. "
            f"Start one (`ray start --head`) or unset {ENV_ADDRESS} to train on this machine."
        ) from None


def _host_and_port(address: str) -> tuple[str, int] | None:
    """(host, port) of "host:port" or "ray://host:port"; None for "auto" (Ray finds the local cluster)."""
    if address == "auto":
        return None
    parsed = urlparse(address if "://" in address else f"gcs://{address}")
    if not parsed.hostname:
        raise RayUnavailableError(f"{ENV_ADDRESS} must be auto, host:port or ray://host:10001; got {address!r}.")
    return parsed.hostname, parsed.port or (10001 if parsed.scheme == "ray" else 6379)


def _resources() -> tuple[float, float]:
    try:
        cpus, gpus = float(os.environ.get(ENV_CPUS, "1")), float(os.environ.get(ENV_GPUS, "0"))
    except ValueError:
        raise ConfigError(f"{ENV_CPUS} and {ENV_GPUS} must be numbers (GPUs may be a fraction such as 0.25).") from None
    if cpus <= 0 or gpus < 0:
        raise ConfigError(f"{ENV_CPUS} must be above 0 and {ENV_GPUS} at least 0; got {cpus:g} and {gpus:g}.")
    return cpus, gpus


class QueueRecorder:
    """The worker side on a Ray node: what it would write into the store goes into a queue to the app; the
    app's stop comes back through a second queue."""

    def __init__(self, events, control, deliver_to: str | None):
        self.events, self.control, self.deliver_to = events, control, deliver_to
        self._stop = False

    def __getattr__(self, method: str):
        if method.startswith("_"):
            raise AttributeError(method)
        return lambda *args, **kwargs: self.events.put((method, args, kwargs))

    def cancel_requested(self, run_id: str) -> bool:
        while not self.control.empty():
            self._stop = self.control.get_nowait() == "stop" or self._stop
        return self._stop

    def add_end(self, run_id: str, event, misclassified) -> None:
        if event.checkpoint_path and self.deliver_to:
            path = Path(event.checkpoint_path)
            files = {suffix: path.with_suffix(suffix).read_bytes() for suffix in _CHECKPOINT_SUFFIXES
                     if path.with_suffix(suffix).is_file()}  # fmt: skip
            shutil.rmtree(path.parent, ignore_errors=True)  # the node keeps nothing of the run
            self.events.put(("deliver", (self.deliver_to, files), {}))
            event = replace(event, checkpoint_path=self.deliver_to)
        self.events.put(("add_end", (run_id, event, misclassified), {}))


def _train_on_node(job: WorkerJob, events, control) -> str:
    """The Ray task: the local worker's body, recording into the queue."""
    execute(job, QueueRecorder(events, control, job.deliver_to))
    return job.run_id


@dataclass
class RayRun:
    """A run on the cluster as the app holds it: the task, its queues and the thread that drains them."""

    ref: object
    events: object
    control: object
    pump: threading.Thread
    pid = None  # no process of this machine: the server owns the run


class RayBackend:
    """The run interface's Ray back-end: `start`, `alive`, `exit_note`, `request_stop`, as `LocalBackend`."""

    name = "ray"

    def __init__(self, address: str | None = None):
        self.address = address or ray_address() or "auto"
        connect(self.address)
        self._ray = _import_ray()
        # A fresh worker process per run (max_calls=1): nothing of one run (threads, registered folders,
        # memory) stays for the next.
        self._task = self._ray.remote(max_calls=1)(_train_on_node)

    def start(self, job: WorkerJob) -> RayRun:
        from ray.util.queue import Queue

        cpus, gpus = _resources()
        events, control = Queue(), Queue()
        remote_out = str(Path(tempfile.gettempdir()) / f"cnn-ray-{job.run_id}" / Path(job.config.out).name) if job.config.out else None
        remote = replace(job, config=replace(job.config, out=remote_out), deliver_to=job.config.out, server_pid=None,
                         use_stop_signal=False)  # fmt: skip
        ref = self._task.options(num_cpus=cpus, num_gpus=gpus).remote(remote, events, control)
        pump = threading.Thread(target=self._drain, args=(ref, events, RunStore(job.db_path)),
                                name=f"cnn-ray-{job.run_id[:8]}", daemon=True)  # fmt: skip
        run = RayRun(ref, events, control, pump)
        pump.start()
        return run

    def _drain(self, ref, events, store: RunStore) -> None:
        """Apply the task's records to the store until the task has ended and its queue is empty."""
        from ray.util.queue import Empty

        while True:
            try:
                method, args, kwargs = events.get(timeout=0.2)
            except Empty:
                done, _ = self._ray.wait([ref], timeout=0)
                if done and events.empty():
                    return
                continue
            try:
                if method == "deliver":
                    _write_checkpoint(*args)
                else:
                    getattr(store, method)(*args, **kwargs)
            except Exception:  # noqa: BLE001 - one lost record (a full disk, a locked database) must not stop the rest
                log.exception("Could not record %s of a Ray run", method)

    def alive(self, run: RayRun) -> bool:
        return run.pump.is_alive()

    def exit_note(self, run: RayRun) -> str:
        try:
            self._ray.get(run.ref, timeout=5)
        except Exception as exc:  # noqa: BLE001 - the task's own error, or Ray's (node died, cancelled)
            return f"The run's Ray task ended before the run did: {type(exc).__name__}: {str(exc).splitlines()[0][:300]}"
        return "The run's Ray task ended without recording how the run ended."

    def request_stop(self, run: RayRun, signal_ready: bool = False) -> None:
        """The task's watcher reads its control queue, as a local worker reads the store's flag."""
        run.control.put("stop")


def _write_checkpoint(path: str, files: dict[str, bytes]) -> None:
    """The checkpoint's files, written where a local run would have written them (each atomically)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    for suffix, payload in files.items():
        part = target.with_name(f".{target.stem}{suffix}.part")
        part.write_bytes(payload)
        part.replace(target.with_suffix(suffix))


def backend_from_environment():
    """The back-end runs use here: Ray when CNN_RAY_ADDRESS is set and reachable, else worker processes on
    this machine. Returns (backend, notice): the notice says, in one line, why Ray was not used."""
    from .worker import LocalBackend

    address = ray_address()
    if address is None:
        return LocalBackend(), None
    try:
        return RayBackend(address), None
    except RayUnavailableError as exc:
        log.warning("%s Training runs on this machine instead.", exc)
        return LocalBackend(), f"{exc} Training runs on this machine instead."


__all__ = ["ENV_ADDRESS", "RayBackend", "RayUnavailableError", "backend_from_environment", "connect", "ray_address"]
