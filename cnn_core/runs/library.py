"""What one owner (a browser) may see of what was trained and uploaded: the shipped checkpoints plus their own,
and their uploaded data sets, registered again after a server restart."""

from __future__ import annotations

import hashlib
import re
import shutil
from dataclasses import dataclass, replace
from pathlib import Path

from .. import data as data_registry
from ..data.uploads import owner_digest, remove_owner_uploads
from ..errors import ConfigError, DataError
from ..models.checkpoints import CheckpointEntry, checkpoint_entry, list_checkpoints
from ..settings import cache_dir, models_dir
from .logs import run_log_dir
from .records import RunStatus
from .store import RunStore
from .worker import remove_checkpoint


def owned_checkpoint_files(owner: str, store: RunStore | None = None) -> tuple[str, ...]:
    """The owner's checkpoint files on disk (cheap: no card is read), e.g. to know when a list is stale."""
    return tuple(str(path) for _, path, _ in (store or RunStore()).checkpoints(owner))


def checkpoints_for(owner: str, store: RunStore | None = None) -> list[CheckpointEntry]:
    """The shipped checkpoints (`models/`), then the owner's own from the app, oldest first. Nobody else's:
    on a shared server a student never sees, nor can pick, another student's checkpoints."""
    store = store or RunStore()
    numbers, own = store.run_numbers(owner), []
    for run_id, path, _ in store.checkpoints(owner):
        entry = checkpoint_entry(path)
        if entry is not None:
            own.append(replace(entry, run_number=numbers.get(run_id)))
    return list_checkpoints([models_dir()]) + own


def checkpoint_label(entry: CheckpointEntry) -> str:
    """How pickers name a checkpoint: "mnist_fastnet · shipped · test accuracy 99.2 % · fastnet on MNIST
    handwritten digits (28×28)", or by the number the studio gives the run: "run #3 · yours · ..."; a run stopped
    by hand (or interrupted) says at which epoch. Whose it is and how good comes before the long data set title,
    which a narrow picker cuts off."""
    card = entry.card
    stopped = f" · stopped at epoch {card.training.get('epochs_run', '?')}" if card.stopped_early else ""
    accuracy = f" · test accuracy {card.test_accuracy:.1%}" if card.test_accuracy is not None else ""
    return (f"{entry.title} · {'shipped' if entry.shipped else 'yours'}{stopped}{accuracy} · "
            f"{card.model} on {card.dataset_title or card.dataset}")


def record_upload(owner: str, info: data_registry.DatasetInfo, seed: int, store: RunStore | None = None) -> None:
    """Remember an uploaded folder for its owner, so it is offered again after a server restart."""
    (store or RunStore()).record_upload(owner, info.name, info.root, seed)


def restore_uploads(owner: str | None, store: RunStore | None = None) -> list[str]:
    """Register the recorded uploads of `owner` (None: of everyone, what a server does when it starts, so that
    no other student can take their names) whose folders still exist; returns their names."""
    restored = []
    for upload_owner, name, root, seed in (store or RunStore()).uploads(owner):
        if data_registry.folder_owner(name) == upload_owner or not root.is_dir():
            continue
        try:
            data_registry.register_image_folder(name, root, seed=seed, owner=upload_owner)
        except DataError:  # the name was taken meanwhile, or the folder no longer holds images
            continue
        restored.append(name)
    return restored


@dataclass(frozen=True)
class Forgotten:
    """What `forget_owner` deleted: upload names, and counts of runs and checkpoint files."""

    uploads: tuple[str, ...]
    runs: int
    checkpoints: int


def forget_owner(owner: str, store: RunStore | None = None) -> Forgotten:
    """Delete what `owner` (a browser) made on this server: its uploads (images, caches), its runs' records,
    their checkpoints and TensorBoard logs. The shipped checkpoints and everybody else's stay. For a student
    leaving a shared lab computer, whose cookie the next student would inherit. ConfigError while one of its runs
    is queued or training (stop it first: its worker would still write a checkpoint)."""
    store = store or RunStore()
    if store.run_ids(owner, tuple(status for status in RunStatus if status.active)):
        raise ConfigError("A run of yours is queued or training: stop it in the Training Studio first, then forget "
                          "this browser.")
    store.mark_forgotten(owner)  # first: a stale tab's Start from now on is refused (`RunManager.submit`)
    checkpoints = store.checkpoints(owner)
    for _, path, _ in checkpoints:
        remove_checkpoint(path)
    run_ids = store.run_ids(owner)
    for run_id in run_ids:
        shutil.rmtree(run_log_dir(run_id), ignore_errors=True)
    store.forget(run_ids)
    uploads = remove_owner_uploads(owner)
    store.forget_uploads(owner)
    shutil.rmtree(uploaded_checkpoints_dir(owner), ignore_errors=True)
    return Forgotten(tuple(uploads), len(run_ids), len(checkpoints))


def was_forgotten(owner: str, store: RunStore | None = None) -> bool:
    """Whether `forget_owner(owner)` ran: a tab still holding that id must be reloaded (its browser has a new
    one), and a cookie holding it is not reused."""
    return (store or RunStore()).was_forgotten(owner)


#: Checkpoints uploaded to look at (Model Graph) kept per owner, and from everybody together (each may be up to
#: 2 GB, and a new browser cookie is a new owner): the newest.
KEPT_UPLOADED_CHECKPOINTS = 20
KEPT_UPLOADED_CHECKPOINTS_IN_ALL = 60


def uploaded_checkpoints_dir(owner: str) -> Path:
    """`CNN_CACHE_DIR/uploaded_checkpoints/<owner digest>`: the checkpoints `owner` uploaded, one folder each."""
    return cache_dir() / "uploaded_checkpoints" / owner_digest(owner)[:16]


def store_uploaded_checkpoint(payload: bytes, file_name: str, owner: str) -> Path:
    """Write an uploaded checkpoint (not yet read: `models.load_checkpoint` checks it) to the owner's folder,
    one sub-folder per content (a SHA-256 digest), keeping the file's own name so messages name the file the
    student chose; returns its path. Nothing is unpickled here; `prune_uploaded_checkpoints` once it loaded."""
    folder = uploaded_checkpoints_dir(owner) / hashlib.sha256(payload).hexdigest()[:16]
    folder.mkdir(parents=True, exist_ok=True)
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(file_name).name).lstrip(".") or "checkpoint.safetensors"
    path = folder / name
    if not path.is_file():
        path.write_bytes(payload)
    return path


def prune_uploaded_checkpoints(owner: str, shown: Path, keep: int = KEPT_UPLOADED_CHECKPOINTS,
                               keep_in_all: int = KEPT_UPLOADED_CHECKPOINTS_IN_ALL) -> None:
    """Delete all but the owner's `keep` newest uploaded checkpoints and all but everybody's `keep_in_all` newest
    (never `shown`'s folder, the one in use): uploads must not fill the server's disk. Only checkpoints that
    loaded are kept at all."""
    own, everyone = uploaded_checkpoints_dir(owner), []
    for top in (p for p in own.parent.iterdir() if p.is_dir()):
        children = list(top.iterdir())
        # an owner's folder holds one folder per checkpoint; a folder with files is one from before owners
        everyone += [top] if any(c.is_file() for c in children) else [c for c in children if c.is_dir()]
    _delete_all_but_newest([f for f in everyone if f.parent == own], keep, shown.parent)
    _delete_all_but_newest([f for f in everyone if f.exists()], keep_in_all, shown.parent)


def _delete_all_but_newest(folders: list[Path], keep: int, spare: Path) -> None:
    for old in sorted((f for f in folders if f != spare), key=lambda f: f.stat().st_mtime, reverse=True)[keep - 1:]:
        shutil.rmtree(old, ignore_errors=True)
