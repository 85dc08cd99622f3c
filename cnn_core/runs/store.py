"""Runs and uploads persisted in SQLite (the standard library's sqlite3), one file in CNN_CACHE_DIR.

The web server, its worker processes and the CLI all write here: a run's options, the command that repeats it,
its status and timestamps, the trainer's events (batches every N steps, epochs), its test metrics, card,
checkpoint and misclassified test images. A page reads a run back as a `RunSnapshot`, so a server restart
loses nothing; a run whose worker died with the server is marked interrupted. Uploaded data sets are recorded
per owner and registered again after a restart.

The file uses write-ahead logging, so one writer (a worker) and many readers (pages) do not block each other;
every write is one short transaction.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, fields
from pathlib import Path

import numpy as np
import torch

from ..data.augment import AugmentConfig
from ..data.uploads import owner_digest
from ..errors import CnnError
from ..models.card import Card
from ..settings import cache_dir
from ..training import BatchEvent, EndEvent, EpochEvent, ResolvedConfig, StartEvent, TrainConfig
from .records import Misclassified, RunSnapshot, RunStatus

log = logging.getLogger(__name__)
DB_FILENAME = "cnn-explorer.sqlite3"
#: The store's layout; a file of another version is migrated (or refused) on opening. 2: forgotten_owners.
SCHEMA_VERSION = 2
#: Owner of runs started from the command line (browsers are 32-hex ids).
CLI_OWNER = "cli"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY, owner TEXT NOT NULL, origin TEXT NOT NULL, backend TEXT NOT NULL,
    dataset TEXT NOT NULL, dataset_title TEXT NOT NULL, model TEXT NOT NULL, status TEXT NOT NULL,
    config TEXT NOT NULL, resolved TEXT NOT NULL, command TEXT NOT NULL,
    created REAL NOT NULL, started REAL, training_started REAL, finished REAL,
    error TEXT, note TEXT, cancel_requested INTEGER NOT NULL DEFAULT 0, worker_pid INTEGER,
    holder TEXT, stop_signal_ready INTEGER NOT NULL DEFAULT 0,
    statuses TEXT NOT NULL DEFAULT '[]', start_event TEXT, end_event TEXT, card TEXT, checkpoint TEXT
);
CREATE INDEX IF NOT EXISTS runs_by_owner ON runs (owner, created);
CREATE TABLE IF NOT EXISTS batches (
    run_id TEXT NOT NULL, step INTEGER NOT NULL, epoch INTEGER NOT NULL, loss REAL, accuracy REAL, lr REAL,
    seconds REAL, PRIMARY KEY (run_id, step)
);
CREATE TABLE IF NOT EXISTS epochs (
    run_id TEXT NOT NULL, epoch INTEGER NOT NULL, train_loss REAL, train_accuracy REAL, val_loss REAL,
    val_accuracy REAL, lr REAL, seconds REAL, improved INTEGER, PRIMARY KEY (run_id, epoch)
);
CREATE TABLE IF NOT EXISTS misclassified (
    run_id TEXT NOT NULL, rank INTEGER NOT NULL, idx INTEGER, true_label INTEGER, predicted_label INTEGER,
    confidence REAL, shape TEXT, pixels BLOB, PRIMARY KEY (run_id, rank)
);
CREATE TABLE IF NOT EXISTS uploads (
    owner TEXT NOT NULL, name TEXT NOT NULL, root TEXT NOT NULL, seed INTEGER NOT NULL, created REAL NOT NULL,
    PRIMARY KEY (owner, name)
);
CREATE TABLE IF NOT EXISTS forgotten_owners (digest TEXT PRIMARY KEY, forgotten REAL NOT NULL);
"""


def _damaged(exc: sqlite3.DatabaseError) -> bool:
    """Whether SQLite says the file itself is damaged (not locked, read-only or on a full disk)."""
    return not isinstance(exc, sqlite3.OperationalError) and any(
        words in str(exc) for words in ("not a database", "malformed", "encrypted"))


@contextlib.contextmanager
def _exclusive(lock_path: Path) -> Iterator[None]:
    """An exclusive lock on `lock_path` between processes (fcntl; on Windows, which lacks it, none)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    with open(lock_path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def default_db_path() -> Path:
    """`CNN_CACHE_DIR/cnn-explorer.sqlite3`."""
    return cache_dir() / DB_FILENAME


class RunStore:
    """The runs database. One object per process; safe to share between threads (a connection per thread)."""

    def __init__(self, path: str | os.PathLike | None = None):
        self.path = Path(path) if path is not None else default_db_path()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self.set_aside: Path | None = None  # where a damaged database file was moved, if it was
        try:
            self._open()
        except sqlite3.DatabaseError as exc:
            if not _damaged(exc):
                raise  # locked, read-only, full disk: the caller says so
            self._recover(exc)

    def _open(self) -> None:
        db = self._connect().db
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise CnnError(f"{self.path} was written by a newer CNN Explorer (run store version {version}); "
                           "update this one, or point CNN_CACHE_DIR elsewhere.")
        if version < SCHEMA_VERSION:  # a new file, or an older layout: add what is missing (a read otherwise,
            db.executescript(_SCHEMA)  # so that pages opening the store take no write lock); its own transaction
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def _recover(self, exc: sqlite3.DatabaseError) -> None:
        """Move a damaged database file (and its WAL files) aside, kept for whoever wants to rescue it, and start
        a new one: a server with a damaged file would otherwise fail on every page. Under a lock file, and only
        if the file is still damaged then: the server's threads and the run workers may all find it at once,
        and the second must not move away the new database the first has just started."""
        self._close()
        with _exclusive(self.path.with_name(self.path.name + ".lock")):
            try:
                self._open()
                return  # another process or thread has set it aside already
            except sqlite3.DatabaseError as again:
                if not _damaged(again):
                    raise
            self._close()
            stamp = f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}-{threading.get_ident()}"
            self.set_aside = self.path.with_name(f"{self.path.name}.damaged-{stamp}")
            for suffix in ("", "-wal", "-shm"):
                source = Path(f"{self.path}{suffix}")
                if source.exists():
                    source.rename(f"{self.set_aside}{suffix}")
            self._open()
        log.warning("The run database %s was damaged (%s); it was moved to %s and a new one started.",
                    self.path, exc, self.set_aside)

    def _close(self) -> None:
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None

    def _connect(self, write: bool = True) -> _Transaction:
        """This thread's connection, in one transaction: IMMEDIATE for writes (no lock upgrade can fail),
        deferred for reads (WAL: readers never wait for the writer)."""
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.row_factory = sqlite3.Row
            self._local.db = db
        return _Transaction(db, "BEGIN IMMEDIATE" if write else "BEGIN")

    # ------------------------------------------------------------------------------------------ writing
    def create_run(
        self, run_id: str, owner: str, config: TrainConfig, resolved: ResolvedConfig, dataset_title: str, *,
        origin: str = "app", backend: str = "local", status: RunStatus = RunStatus.QUEUED, holder: str | None = None,
    ) -> None:
        """Record a new run (queued in the app; running from the CLI), held by the process `holder` names
        (`process_token`): while that process lives, the run is not left over from a stopped server."""
        now = time.time()
        with self._connect() as db:
            db.execute(
                "INSERT INTO runs (id, owner, origin, backend, dataset, dataset_title, model, status, config, resolved,"
                " command, created, started, holder) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (run_id, owner, origin, backend, config.dataset, dataset_title, resolved.model, status.value,
                 _dumps(_config_dict(config)), _dumps(asdict(resolved)), config.command, now,
                 now if status is RunStatus.RUNNING else None, holder),
            )  # fmt: skip

    def update(self, run_id: str, **values: object) -> None:
        """Set columns of a run (status as a RunStatus, JSON columns as Python values)."""
        columns = {key: _column_value(key, value) for key, value in values.items()}
        assignments = ", ".join(f"{key} = ?" for key in columns)
        with self._connect() as db:
            db.execute(f"UPDATE runs SET {assignments} WHERE id = ?", (*columns.values(), run_id))

    def start(self, run_id: str, worker_pid: int | None, holder: str) -> None:
        """A queued run's worker started. Only a queued run becomes running: a worker that already ended it
        (a fast failure) keeps its outcome."""
        with self._connect() as db:
            db.execute("UPDATE runs SET status = ?, started = ?, worker_pid = ?, holder = ? WHERE id = ? AND status = ?",
                       (RunStatus.RUNNING.value, time.time(), worker_pid, holder, run_id, RunStatus.QUEUED.value))

    def status(self, run_id: str) -> RunStatus | None:
        """A run's status alone (cheap), or None for an unknown id."""
        with self._connect(write=False) as db:
            row = db.execute("SELECT status FROM runs WHERE id = ?", (run_id,)).fetchone()
        return RunStatus(row[0]) if row else None

    def request_cancel(self, run_id: str) -> None:
        self.update(run_id, cancel_requested=1)

    def stop_signal_ready(self, run_id: str) -> bool:
        """Whether the run's worker has set up its stop signal (sending it earlier would kill the process)."""
        with self._connect(write=False) as db:
            row = db.execute("SELECT stop_signal_ready FROM runs WHERE id = ?", (run_id,)).fetchone()
        return bool(row and row[0])

    def cancel_requests(self, run_ids: list[str]) -> set[str]:
        """Which of `run_ids` were asked to stop: one query for a whole queue and its workers."""
        if not run_ids:
            return set()
        with self._connect(write=False) as db:
            rows = db.execute(f"SELECT id FROM runs WHERE cancel_requested = 1 AND id IN ({', '.join('?' * len(run_ids))})",
                              run_ids).fetchall()
        return {row[0] for row in rows}

    def cancel_requested(self, run_id: str) -> bool:
        with self._connect(write=False) as db:
            row = db.execute("SELECT cancel_requested FROM runs WHERE id = ?", (run_id,)).fetchone()
        return bool(row and row[0])

    def add_start(self, run_id: str, event: StartEvent) -> None:
        payload = {f.name: getattr(event, f.name) for f in fields(event) if f.name != "network"}
        self.update(run_id, start_event=payload, training_started=time.time())

    def add_status(self, run_id: str, message: str, before_first_step: bool) -> None:
        with self._connect() as db:
            row = db.execute("SELECT statuses FROM runs WHERE id = ?", (run_id,)).fetchone()
            statuses = json.loads(row[0]) + [message] if row else [message]
            extra = ", training_started = ?" if before_first_step else ""
            params = (json.dumps(statuses), time.time()) if before_first_step else (json.dumps(statuses),)
            db.execute(f"UPDATE runs SET statuses = ?{extra} WHERE id = ?", (*params, run_id))

    def add_batch(self, run_id: str, event: BatchEvent) -> None:
        with self._connect() as db:
            db.execute(
                "INSERT OR REPLACE INTO batches VALUES (?, ?, ?, ?, ?, ?, ?)",
                (run_id, event.step, event.epoch, event.loss, event.accuracy, event.lr, event.seconds),
            )

    def add_epoch(self, run_id: str, event: EpochEvent) -> None:
        with self._connect() as db:
            db.execute(
                "INSERT OR REPLACE INTO epochs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (run_id, event.epoch, event.train_loss, event.train_accuracy, event.val_loss, event.val_accuracy,
                 event.lr, event.seconds, int(event.improved)),
            )  # fmt: skip

    def add_end(self, run_id: str, event: EndEvent, misclassified: list[Misclassified]) -> None:
        """The run's outcome (without its big tensors) and the misclassified test images."""
        payload = {f.name: getattr(event, f.name) for f in fields(event)
                   if f.name not in ("card", "test_probs", "test_labels", "test_indices")}  # fmt: skip
        with self._connect() as db:
            db.execute("UPDATE runs SET end_event = ?, card = ?, checkpoint = ? WHERE id = ?",
                       (_dumps(payload), event.card.to_json(), event.checkpoint_path, run_id))  # fmt: skip
            db.executemany(
                "INSERT OR REPLACE INTO misclassified VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [(run_id, rank, m.index, m.true_label, m.predicted_label, m.confidence,
                  json.dumps(list(m.image.shape)), m.image.contiguous().numpy().tobytes())
                 for rank, m in enumerate(misclassified)],
            )  # fmt: skip

    def finish(self, run_id: str, status: RunStatus, error: str | None = None, note: str | None = None) -> None:
        """End a run; a note already recorded (e.g. why no checkpoint was kept) stays unless replaced."""
        values: dict[str, object] = {"status": status, "finished": time.time(), "error": error}
        if note is not None:
            values["note"] = note
        self.update(run_id, **values)

    def mark_interrupted(self, run_ids: list[str], note: str) -> None:
        for run_id in run_ids:
            self.finish(run_id, RunStatus.INTERRUPTED, note=note)

    # ------------------------------------------------------------------------------------------ reading
    def snapshot(self, run_id: str, queue_ahead: int = 0, *, detail: bool = True,
                 last_batch_only: bool = False) -> RunSnapshot:
        """The run as pages draw it; KeyError for an unknown id. Without `detail`, no batch events and no
        misclassified images (what a table of runs needs is the rest). With `last_batch_only`, only the newest
        batch event and no misclassified images: enough for `progress()`, which a progress bar polls every
        second (a long run holds tens of thousands of batch rows)."""
        with self._connect(write=False) as db:
            row = db.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
            if row is None:
                raise KeyError(f"No run {run_id!r}")
            batches = wrong = []
            if last_batch_only:
                batches = db.execute("SELECT step, epoch, loss, accuracy, lr, seconds FROM batches WHERE run_id = ?"
                                     " ORDER BY step DESC LIMIT 1", (run_id,)).fetchall()  # fmt: skip
            elif detail:
                batches = db.execute("SELECT step, epoch, loss, accuracy, lr, seconds FROM batches WHERE run_id = ?"
                                     " ORDER BY step", (run_id,)).fetchall()  # fmt: skip
                wrong = db.execute("SELECT idx, true_label, predicted_label, confidence, shape, pixels FROM misclassified"
                                   " WHERE run_id = ? ORDER BY rank", (run_id,)).fetchall()  # fmt: skip
            epochs = db.execute("SELECT epoch, train_loss, train_accuracy, val_loss, val_accuracy, lr, seconds, improved"
                                " FROM epochs WHERE run_id = ? ORDER BY epoch", (run_id,)).fetchall()  # fmt: skip
        return _snapshot(row, batches, epochs, wrong, queue_ahead)

    def run_ids(self, owner: str | None = None, statuses: tuple[RunStatus, ...] | None = None) -> list[str]:
        """Run ids, oldest first: of one owner (None: everyone's), in the given statuses (None: any)."""
        query, params = "SELECT id FROM runs WHERE 1 = 1", []
        if owner is not None:
            query, params = query + " AND owner = ?", [owner]
        if statuses:
            query += f" AND status IN ({', '.join('?' for _ in statuses)})"
            params += [s.value for s in statuses]
        with self._connect(write=False) as db:
            return [row[0] for row in db.execute(query + " ORDER BY created, rowid", params)]

    def summaries(self, owner: str | None = None) -> list[dict]:
        """One row per run, oldest first: what `runs list` prints (no events)."""
        query = ("SELECT id, owner, origin, backend, dataset, model, status, created, finished, checkpoint, end_event,"
                 " error, note FROM runs")  # fmt: skip
        params: tuple = ()
        if owner is not None:
            query, params = query + " WHERE owner = ?", (owner,)
        with self._connect(write=False) as db:
            rows = db.execute(query + " ORDER BY created, rowid", params).fetchall()
        result = []
        for row in rows:
            end = json.loads(row["end_event"]) if row["end_event"] else {}
            metrics = end.get("test_metrics") or {}
            result.append({
                "id": row["id"], "owner": row["owner"], "origin": row["origin"], "backend": row["backend"],
                "dataset": row["dataset"], "model": row["model"], "status": row["status"], "created": row["created"],
                "finished": row["finished"], "test_accuracy": metrics.get("accuracy"), "checkpoint": row["checkpoint"],
                "error": row["error"], "note": row["note"],
            })  # fmt: skip
        return result

    def run_numbers(self, owner: str) -> dict[str, int]:
        """{run id: its number}: the owner's runs numbered from 1 in the order they were made, as the studio and the
        checkpoint pickers name them ("run #3"); a number stays with its run as newer runs come."""
        return {run_id: number for number, run_id in enumerate(self.run_ids(owner), 1)}

    def checkpoints(self, owner: str) -> list[tuple[str, Path, RunStatus]]:
        """(run id, checkpoint, status) of the owner's runs whose checkpoint is still on disk, oldest first."""
        with self._connect(write=False) as db:
            rows = db.execute("SELECT id, checkpoint, status FROM runs WHERE owner = ? AND checkpoint IS NOT NULL"
                              " ORDER BY created, rowid", (owner,)).fetchall()  # fmt: skip
        return [(row[0], Path(row[1]), RunStatus(row[2])) for row in rows if Path(row[1]).is_file()]

    def forget(self, run_ids: list[str]) -> None:
        """Delete runs and their events (the checkpoints stay on disk)."""
        with self._connect() as db:
            for table, column in (("batches", "run_id"), ("epochs", "run_id"), ("misclassified", "run_id"), ("runs", "id")):
                db.executemany(f"DELETE FROM {table} WHERE {column} = ?", [(run_id,) for run_id in run_ids])

    def worker_pids(self, statuses: tuple[RunStatus, ...]) -> dict[str, int | None]:
        """{run id: the worker's process id} of the runs in these statuses."""
        return {run_id: pid for run_id, (pid, _) in self._processes(statuses).items()}

    def holders(self, statuses: tuple[RunStatus, ...]) -> dict[str, str | None]:
        """{run id: the `process_token` of the process holding it} of the runs in these statuses."""
        return {run_id: holder for run_id, (_, holder) in self._processes(statuses).items()}

    def _processes(self, statuses: tuple[RunStatus, ...]) -> dict[str, tuple[int | None, str | None]]:
        with self._connect(write=False) as db:
            rows = db.execute(f"SELECT id, worker_pid, holder FROM runs WHERE status IN ({', '.join('?' for _ in statuses)})",
                              [s.value for s in statuses]).fetchall()  # fmt: skip
        return {row[0]: (row[1], row[2]) for row in rows}

    # ------------------------------------------------------------------------------------------ uploads
    def record_upload(self, owner: str, name: str, root: Path, seed: int) -> None:
        with self._connect() as db:
            db.execute("INSERT OR REPLACE INTO uploads VALUES (?, ?, ?, ?, ?)", (owner, name, str(root), seed, time.time()))

    def forget_uploads(self, owner: str) -> None:
        """Delete the records of `owner`'s uploads (their folders are `zipfolder`'s to delete)."""
        with self._connect() as db:
            db.execute("DELETE FROM uploads WHERE owner = ?", (owner,))

    # ------------------------------------------------------------------------------------------ owners
    def mark_forgotten(self, owner: str) -> None:
        """Remember that `owner` was forgotten (as a SHA-256 digest: the id itself is a browser's cookie), so a
        tab or a cookie still holding it is not taken for a live browser."""
        with self._connect() as db:
            db.execute("INSERT OR REPLACE INTO forgotten_owners VALUES (?, ?)", (owner_digest(owner), time.time()))

    def was_forgotten(self, owner: str) -> bool:
        with self._connect(write=False) as db:
            row = db.execute("SELECT 1 FROM forgotten_owners WHERE digest = ?", (owner_digest(owner),)).fetchone()
        return row is not None

    def uploads(self, owner: str | None = None) -> list[tuple[str, str, Path, int]]:
        """(owner, name, folder, split seed) of recorded uploads, oldest first."""
        query, params = "SELECT owner, name, root, seed FROM uploads", ()
        if owner is not None:
            query, params = query + " WHERE owner = ?", (owner,)
        with self._connect(write=False) as db:
            return [(r[0], r[1], Path(r[2]), int(r[3])) for r in db.execute(query + " ORDER BY created", params)]


class _Transaction:
    """`with store._connect() as db`: one short transaction on this thread's connection."""

    def __init__(self, db: sqlite3.Connection, begin: str):
        self.db, self.begin = db, begin

    def __enter__(self) -> sqlite3.Connection:
        self.db.execute(self.begin)
        return self.db

    def __exit__(self, kind, value, traceback) -> None:
        self.db.execute("COMMIT" if kind is None else "ROLLBACK")


# --------------------------------------------------------------------------------------------------
# Rows to objects


def _dumps(value: object) -> str:
    return json.dumps(value, default=_json_default)


def _json_default(value: object) -> object:
    if isinstance(value, torch.Tensor):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def _column_value(key: str, value: object) -> object:
    if isinstance(value, RunStatus):
        return value.value
    if key in ("start_event", "end_event", "statuses", "config", "resolved"):
        return _dumps(value)
    return value


def _config_dict(config: TrainConfig) -> dict:
    return asdict(config)


def config_from_dict(values: dict) -> TrainConfig:
    """A TrainConfig back from its JSON form."""
    values = _known(TrainConfig, values)
    if values.get("augment") is not None:
        values["augment"] = AugmentConfig(**_known(AugmentConfig, values["augment"]))
    return TrainConfig(**values)


def _number(value: float | None) -> float:
    """SQLite keeps NaN as NULL: read it back as NaN."""
    return math.nan if value is None else float(value)


def _known(cls, values: dict) -> dict:
    """The entries of `values` that `cls` (a dataclass) has fields for: a row written by another version of a
    dataclass with fields added or gone still reads."""
    names = {f.name for f in fields(cls)}
    return {key: value for key, value in values.items() if key in names}


def _snapshot(row: sqlite3.Row, batches: list, epochs: list, wrong: list, queue_ahead: int) -> RunSnapshot:
    config = config_from_dict(json.loads(row["config"]))
    resolved_values = _known(ResolvedConfig, json.loads(row["resolved"]))
    resolved_values["augment"] = AugmentConfig(**_known(AugmentConfig, resolved_values["augment"]))
    start = StartEvent(**_known(StartEvent, json.loads(row["start_event"]))) if row["start_event"] else None
    end = None
    if row["end_event"]:
        end = EndEvent(**_known(EndEvent, json.loads(row["end_event"])), card=Card.from_dict(json.loads(row["card"])))
    return RunSnapshot(
        id=row["id"],
        owner=row["owner"],
        status=RunStatus(row["status"]),
        config=config,
        resolved=ResolvedConfig(**resolved_values),
        dataset_title=row["dataset_title"],
        created=row["created"],
        queue_ahead=queue_ahead if row["status"] == RunStatus.QUEUED.value else 0,
        start=start,
        batches=tuple(BatchEvent(b[0], b[1], _number(b[2]), _number(b[3]), _number(b[4]), _number(b[5])) for b in batches),
        epochs=tuple(EpochEvent(e[0], _number(e[1]), _number(e[2]), _number(e[3]), _number(e[4]), _number(e[5]),
                                _number(e[6]), bool(e[7])) for e in epochs),  # fmt: skip
        end=end,
        error=row["error"],
        note=row["note"],
        statuses=tuple(json.loads(row["statuses"])),
        started_at=row["started"],
        training_at=row["training_started"],
        finished_at=row["finished"],
        misclassified=tuple(
            Misclassified(index=w[0], true_label=w[1], predicted_label=w[2], confidence=w[3],
                          image=torch.from_numpy(np.frombuffer(w[5], dtype=np.uint8).reshape(json.loads(w[4])).copy()))
            for w in wrong
        ),  # fmt: skip
        cancel_requested=bool(row["cancel_requested"]),
        origin=row["origin"],
        backend=row["backend"],
    )
