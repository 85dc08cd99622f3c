"""Uploaded image folders as one owner's (a browser's) property on a shared server: where they live, what each
may take (per person, in all, and the disk's free space, reserved while a zip unpacks), the digest of the zip
each came from, the names they get, and their removal. `zipfolder` unpacks the zips themselves."""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import threading
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import DataError
from ..settings import cache_dir
from .cache import cache_root, safe_name
from .registry import folder_owner, forget_image_folder, list_datasets
from .types import shown_name


@dataclass(frozen=True)
class ZipLimits:
    """How much an upload may unpack to; beyond this it is refused as a possible zip bomb."""

    max_files: int = 20_000
    max_total_bytes: int = 512 * 2**20       # 512 MiB uncompressed in all
    max_member_bytes: int = 64 * 2**20       # 64 MiB for one image
    #: all of one owner's uploads together (`CNN_UPLOAD_QUOTA_MB`, default 1024): one student's small zips of
    #: huge single-colour BMPs must not fill a class server's disk
    owner_quota_bytes: int = field(default_factory=lambda: upload_quota_bytes())
    #: everybody's uploads together (`CNN_UPLOADS_TOTAL_MB`; unset: no total): a new browser cookie gets a new
    #: `owner_quota_bytes`, so only a total bounds what a class can unpack
    total_quota_bytes: int | None = field(default_factory=lambda: upload_quota_bytes("CNN_UPLOADS_TOTAL_MB", None))
    #: free space an upload must leave on CNN_CACHE_DIR's disk (runs, checkpoints and the database live there too)
    min_free_disk_bytes: int = 2**30


def upload_quota_bytes(variable: str = "CNN_UPLOAD_QUOTA_MB", default: str | None = "1024") -> int | None:
    """The environment `variable` (megabytes; unset: `default`, None for no limit) in bytes; DataError for a
    value that is not a positive number."""
    raw = os.environ.get(variable, "").strip() or default
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        value = 0.0
    if not (0 < value < 2**40):  # also refuses nan and inf
        raise DataError(f"{variable} must be a positive number of megabytes; got {raw!r}.")
    return int(value * 2**20)


def uploads_dir() -> Path:
    """Where uploaded image folders are unpacked (`CNN_CACHE_DIR/uploads`)."""
    path = cache_dir() / "uploads"
    path.mkdir(parents=True, exist_ok=True)
    return path


def upload_root(name: str, owner: str | None = None) -> Path:
    """The folder an upload named `name` unpacks to: `uploads/<name>`, or `uploads/<owner key>/<name>`.

    The owner's folder is named by a digest of the owner id, so the id (a browser's cookie) never shows on
    screen in a path, and no id can point outside `uploads/`.
    """
    if owner is None:
        return uploads_dir() / name
    return uploads_dir() / owner_digest(owner)[:16] / name


def owner_digest(owner: str) -> str:
    """SHA-256 of an owner id (a browser's cookie) in hex: what folders, the run store and `runs list` show or keep
    instead of the id itself."""
    return hashlib.sha256(owner.encode()).hexdigest()


#: Beside an upload's folder (`<name>.zip.sha256`): the SHA-256 of the zip its images came from.
UPLOAD_DIGEST_SUFFIX = ".zip.sha256"


def _digest_path(root: Path) -> Path:
    return root.with_name(root.name + UPLOAD_DIGEST_SUFFIX)


def zip_digest(source: bytes | bytearray | memoryview) -> str:
    """The SHA-256 of an uploaded zip's bytes, as `available_name` compares them."""
    return hashlib.sha256(source).hexdigest()


#: Bytes being unpacked now, by (owner, upload name): two tabs uploading at once each passed the room check
#: before either had unpacked. The web server is one process; the CLI does not upload for an owner.
_UNPACKING: dict[tuple[str, str], int] = {}
_UNPACKING_LOCK = threading.Lock()


@contextlib.contextmanager
def _reserved_room(members: list[zipfile.ZipInfo], owner: str | None, name: str, digest: str | None,
                   limits: ZipLimits) -> Iterator[None]:
    """Check the room for `owner`'s upload `name` (`_check_quota`) and hold it while the files are unpacked,
    so uploads that start meanwhile count it; DataError when there is none, or when another tab is unpacking
    or has just unpacked an upload of this name from another zip (`digest` given: the name was chosen for it)."""
    if owner is None:
        yield
        return
    key = (owner, name)
    with _UNPACKING_LOCK:
        if key in _UNPACKING or (digest is not None and _other_zip_of(name, owner, digest)):
            raise DataError(f"Another upload named {shown_name(name)!r} arrived at the same time (a second tab?). Upload this "
                            "zip again: it gets a name of its own.")
        _check_quota(members, owner, name, limits)
        _UNPACKING[key] = sum(info.file_size for info in members)
    try:
        yield
    finally:
        with _UNPACKING_LOCK:
            del _UNPACKING[key]


def owner_upload_bytes(owner: str, but: str | None = None) -> int:
    """Bytes on disk of all of `owner`'s uploads (leaving out the upload named `but`)."""
    return _uploads_bytes(upload_root("x", owner).parent, but)


def _uploads_bytes(folder: Path, but: str | None = None) -> int:
    """Bytes of the files in `folder`'s upload folders (not the one named `but`), and below."""
    if not folder.is_dir():
        return 0
    return sum(path.stat().st_size for child in folder.iterdir() if child.name != but and child.is_dir()
               for path in child.rglob("*") if path.is_file())


def _check_quota(members: list[zipfile.ZipInfo], owner: str, name: str, limits: ZipLimits) -> None:
    """DataError before anything is unpacked when the zip would take the owner past `owner_quota_bytes`,
    everybody past `total_quota_bytes`, or the disk below `min_free_disk_bytes` free (an earlier upload of the
    same name, which it replaces, does not count)."""
    own = upload_root(name, owner).parent
    unpacking = sum(size for (who, _), size in _UNPACKING.items() if who == owner)  # other tabs, now
    used, adding = owner_upload_bytes(owner, but=name) + unpacking, sum(info.file_size for info in members)
    if used + adding > limits.owner_quota_bytes:
        raise DataError(
            f"Refused: this zip unpacks to {_mib(adding)}, and your uploads already take {_mib(used)} of the "
            f"{_mib(limits.owner_quota_bytes)} each person may use on this server. Remove an upload you no longer "
            "need (Dataset Gallery: choose it, then \"Remove this upload\"), or upload fewer or smaller images.")
    if limits.total_quota_bytes is not None:
        everybody = used + sum(_uploads_bytes(folder) for folder in uploads_dir().iterdir()
                               if folder.is_dir() and folder != own)
        everybody += sum(size for (who, _), size in _UNPACKING.items() if who != owner)
        if everybody + adding > limits.total_quota_bytes:
            raise DataError(
                f"Refused: this zip unpacks to {_mib(adding)}, and the uploads of everybody on this server already "
                f"take {_mib(everybody)} of the {_mib(limits.total_quota_bytes)} it allows (CNN_UPLOADS_TOTAL_MB). "
                "Ask whoever runs the server to make room, or upload fewer or smaller images.")
    free = shutil.disk_usage(uploads_dir()).free
    if free - adding < limits.min_free_disk_bytes:
        raise DataError(
            f"Refused: this zip unpacks to {_mib(adding)}, and the server's disk has {_mib(free)} free; it keeps "
            f"{_mib(limits.min_free_disk_bytes)} free for training runs. Upload fewer or smaller images, or ask "
            "whoever runs the server to make room.")


def remove_upload(name: str, owner: str) -> None:
    """Delete `owner`'s upload `name` (its images and its record of the zip) and forget it in this process.
    Checkpoints trained on it stay; evaluating them on it then says the folder is gone. DataError when `name`
    is not `owner`'s upload."""
    root = upload_root(name, owner)
    if folder_owner(name) != owner or not root.is_dir():
        raise DataError(f"{shown_name(name)!r} is not one of your uploads.")
    shutil.rmtree(root)  # its digest record stays: another zip of this name gets a new name (`available_name`)
    _forget_upload(name, owner)


def remove_owner_uploads(owner: str) -> list[str]:
    """Delete every upload of `owner` with its caches and its records of zips (so its names are free again), and
    forget them in this process; returns their names. For "Forget this browser"."""
    folder = upload_root("x", owner).parent
    names = sorted(child.name for child in folder.iterdir() if child.is_dir()) if folder.is_dir() else []
    for name in names:
        _forget_upload(name, owner)
    shutil.rmtree(folder, ignore_errors=True)
    return names


def _forget_upload(name: str, owner: str) -> None:
    """Delete the tensor caches and folder listings of `owner`'s upload `name`, and unregister it here."""
    for cached in _upload_caches(name):
        cached.unlink(missing_ok=True)
    if folder_owner(name) == owner:
        forget_image_folder(name)


def _upload_caches(name: str) -> list[Path]:
    """The files `cache`, `folders` and `registry` made from the upload `name`: its decoded tensors
    (`tensors/<name>-<size>-<split>-<fingerprint>.pt`), its folder listings (`folders/<name>-<fingerprint>*.json`)
    and its channel statistics (`stats/<name>-<size>-<fingerprint>.json`)."""
    safe = re.escape(safe_name(name))
    patterns = {"tensors": rf"{safe}-\d+-\w+-[0-9a-f]{{16}}\.pt", "folders": rf"{safe}-[0-9a-f]{{16}}(-unreadable)?\.json",
                "stats": rf"{safe}-\d+-[0-9a-f]{{16}}\.json"}
    found = []
    for folder, pattern in patterns.items():
        where = cache_root() / folder
        if where.is_dir():
            found += [path for path in where.iterdir() if re.fullmatch(pattern, path.name)]
    return found


def owned_name(name: str, owner: str | None) -> str:
    """The registry name of `owner`'s upload called `name`: `name@` and six hex digits of the owner's digest
    (`types.OWNER_TAG`; pages show it without them, `shown_name`). Every owner's names are their own, so the
    name a zip gets never depends on what other students uploaded. Without an owner (the CLI): `name`."""
    return name if owner is None else f"{name}@{owner_digest(owner)[:6]}"


def available_name(name: str, owner: str | None = None, digest: str | None = None) -> str:
    """The registry name for `owner`'s upload of a zip called `name` (`owned_name`), or `name_upload`
    (`name_upload_2`, ...) where a built-in set, a data folder or another upload already has it (without an
    owner; with one, only when two owners' tags coincide). `owner`'s own earlier upload of that name is
    replaced only by the same zip again (its `digest`, see `zip_digest`): another zip of the same name gets
    `name_2` (`name_3`, ...), so the images an earlier run trained and tested on stay what its checkpoint says."""
    taken = _taken_by(owned_name(name, owner), owner)
    plain, counter = name, 1
    while _taken_by(owned_name(plain, owner), owner) or _other_zip_of(owned_name(plain, owner), owner, digest):
        counter += 1
        plain = (f"{name}_upload" if counter == 2 else f"{name}_upload_{counter - 1}") if taken else f"{name}_{counter}"
    return owned_name(plain, owner)


def _other_zip_of(name: str, owner: str | None, digest: str | None) -> bool:
    """Whether `owner` already has an upload called `name` that came from another zip than `digest`."""
    root = upload_root(name, owner)
    if digest is None:
        return False
    try:
        return _digest_path(root).read_text().strip() != digest  # also for a removed upload: its name stays its own
    except OSError:  # no record: no upload, or one from before digests were kept (then another zip, it may be)
        return root.is_dir()


def _taken_by(name: str, owner: str | None) -> str | None:
    """What already has `name`: a built-in set, another owner's upload, or an image folder that is not
    `owner`'s earlier upload of that name."""
    holder = folder_owner(name)
    if holder is not None and holder != owner:
        return "another user's upload"
    for info in list_datasets(owner=owner):
        if info.name != name:
            continue
        if info.family != "folder":
            return f"the built-in data set {info.title}"
        if info.root and Path(info.root).resolve() != upload_root(name, owner).resolve():
            return f"the image folder {info.root}"
    return None


def _refuse_taken_name(name: str, owner: str | None) -> None:
    """Built-in sets, folders under CNN_DATA_DIR and other users' uploads keep their names; the same owner's
    earlier upload may be replaced."""
    holder = _taken_by(name, owner)
    if holder:
        raise DataError(f"{name!r} is already the name of {holder}; choose another name.")


def _mib(size: int) -> str:
    return f"{size / 2**20:.1f} MiB"
