"""The data-set registry: MNIST, the 12 MedMNIST 2D sets at every size, and folders of images.

Every data set ends up as one uint8 tensor [N, C, H, W] plus int64 labels per split. The first load
reads the source files (idx files through torchvision, npz files, image files) and writes the tensors
to `CNN_CACHE_DIR/tensors/`; later loads read those back (`torch.load(weights_only=True)`), and a small
in-process LRU makes repeated calls in the app instant. Cache files are keyed by a fingerprint of the
sources (path, size and modification time of every file), so a changed source is re-read.

Nothing is ever written into `CNN_DATA_DIR` (it may be read-only), and nothing is downloaded unless
`download=True` or `download_dataset()` asks for it; a missing data set raises `DataError` naming the
missing files, where they were looked for and how to get them.

Tensors handed out are shared with the in-process cache: treat them as read-only (index or `.float()`
them, which copies, rather than modifying them in place).
"""

from __future__ import annotations

import functools
import glob
import gzip
import hashlib
import http.client
import importlib.util
import json
import logging
import math
import os
import re
import shutil
import socket
import threading
import time
import urllib.error
import urllib.request
import zipfile
from collections import OrderedDict
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import torch
from PIL import Image, ImageOps

from . import settings
from .errors import DataError
from .images import ALLOWED_FORMATS, DEFAULT_MAX_PIXELS, IMAGE_SUFFIXES, to_standard_mode

__all__ = [
    "DatasetInfo",
    "DatasetStatus",
    "SplitData",
    "SPLITS",
    "MEDMNIST_2D_FLAGS",
    "MEDMNIST_SIZES",
    "FOLDER_IMAGE_SIZE",
    "FOLDER_SPLIT_FRACTIONS",
    "FOLDER_SPLIT_SEED",
    "MAX_IMAGE_PIXELS",
    "list_datasets",
    "get_dataset_info",
    "dataset_status",
    "load_split",
    "split_sizes",
    "channel_stats",
    "register_image_folder",
    "folder_owner",
    "download_dataset",
    "download_server",
    "download_server_reachable",
    "DownloadProgress",
    "fit_image",
    "clear_caches",
]

log = logging.getLogger(__name__)

SPLITS: tuple[str, ...] = ("train", "val", "test")

#: The 12 two-dimensional MedMNIST data sets (medmnist's flags) and the sizes the package offers.
MEDMNIST_2D_FLAGS: tuple[str, ...] = (
    "pathmnist", "chestmnist", "dermamnist", "octmnist", "pneumoniamnist", "retinamnist",
    "breastmnist", "bloodmnist", "tissuemnist", "organamnist", "organcmnist", "organsmnist",
)  # fmt: skip
MEDMNIST_SIZES: tuple[int, ...] = (28, 64, 128, 224)

#: Folder data sets: default side of the cached square images, split proportions and seed.
FOLDER_IMAGE_SIZE = 128
FOLDER_SPLIT_FRACTIONS: tuple[float, float, float] = (0.8, 0.1, 0.1)
FOLDER_SPLIT_SEED = 0

#: Images in folders larger than this (width x height, read from the header) are skipped and counted,
#: so a decompression bomb among them costs nothing.
MAX_IMAGE_PIXELS = DEFAULT_MAX_PIXELS

#: Sides accepted for `image_size`.
MIN_IMAGE_SIZE, MAX_IMAGE_SIZE = 8, 1024

_MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_MNIST_BASENAMES = (*_MNIST_FILES["train"], *_MNIST_FILES["test"])
_MNIST_VAL_FRACTION = 1 / 12  # 5,000 of the 60,000 training images
_MNIST_VAL_SEED = 0
_MNIST_OFFICIAL_COUNTS = {"train": 55_000, "val": 5_000, "test": 10_000}
#: The four official .gz files torchvision downloads: 9,912,422 + 28,881 + 1,648,877 + 4,542 bytes.
_MNIST_DOWNLOAD_SIZE = "11.6 MB"

#: Downloads: bytes per read, seconds a silent server is waited for, seconds between progress reports.
_DOWNLOAD_CHUNK_BYTES = 64 * 1024
_DOWNLOAD_TIMEOUT_S = 30.0
_PROGRESS_INTERVAL_S = 0.1
_DOWNLOAD_USER_AGENT = "cnn-explorer/0.1 (python urllib)"

#: Bump to invalidate every tensor cache written by an older version of this module.
_CACHE_FORMAT = 1
_CACHE_MMAP_BYTES = 512 * 1024**2  # cache files above this are memory-mapped instead of read
_MEMORY_MAX_BYTES = 2 * 1024**3
_MEMORY_MAX_ITEMS = 12
_EXCLUDED_TOP_FOLDERS = {"mnist", "medmnist"}


# --------------------------------------------------------------------------------------------------
# Public types


@dataclass(frozen=True)
class DatasetInfo:
    """One uniform description per data set, whatever its family."""

    name: str
    title: str
    family: str  # "mnist" | "medmnist" | "folder"
    class_names: tuple[str, ...]
    channels: int
    image_size: int
    task: str  # medmnist's words: "multi-class", "binary-class", "multi-label, binary-class", ...
    splits: tuple[str, ...]
    source: str
    description: str
    license: str
    n_samples: dict[str, int] | None
    root: str | None

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    @property
    def multi_label(self) -> bool:
        return self.task.startswith("multi-label")


@dataclass(frozen=True, eq=False)
class SplitData:
    """One split as tensors: images uint8 [N, C, H, W] (CPU), labels int64 [N] or [N, L] (multi-label)."""

    images: torch.Tensor
    labels: torch.Tensor
    info: DatasetInfo  # image_size is the side of `images`
    skipped: int = 0  # files of this split that could not be read (folders only)

    def __len__(self) -> int:
        return int(self.images.shape[0])


@dataclass(frozen=True)
class DatasetStatus:
    """Whether a data set can be loaded without a download, found by looking at files only."""

    info: DatasetInfo
    available: bool
    location: Path | None
    searched: list[Path]
    missing: list[str]
    how_to_get: str
    download_size: str | None


# --------------------------------------------------------------------------------------------------
# In-process state

_REGISTERED_FOLDERS: dict[str, tuple[Path, int]] = {}  # name -> (root, split seed)
_FOLDER_OWNERS: dict[str, str] = {}  # name -> owner, for folders registered privately (one user's uploads)
_STATE_LOCK = threading.RLock()
_KEY_LOCKS: dict[tuple, threading.Lock] = {}
_MEMORY: OrderedDict[tuple, SplitData] = OrderedDict()
_FOLDER_SCANS: dict[str, _FolderScan] = {}
_STATS: dict[tuple, tuple[list[float], list[float]]] = {}
_ASSIGNMENTS: dict[tuple[str, int], tuple[str, ...]] = {}
_UNREADABLE: dict[str, frozenset[str]] = {}  # folder listing fingerprint -> files (relative) that cannot be read


def clear_caches(*, forget_registered: bool = False) -> None:
    """Forget in-process caches (loaded splits, folder scans, statistics); disk caches stay.

    With `forget_registered`, also drop folders added by `register_image_folder`.
    """
    with _STATE_LOCK:
        _MEMORY.clear()
        _FOLDER_SCANS.clear()
        _STATS.clear()
        _ASSIGNMENTS.clear()
        _UNREADABLE.clear()
        _npz_split_counts.cache_clear()
        if forget_registered:
            _REGISTERED_FOLDERS.clear()
            _FOLDER_OWNERS.clear()


# --------------------------------------------------------------------------------------------------
# Public functions


def list_datasets(*, owner: str | None = None) -> list[DatasetInfo]:
    """Every registry entry, present on disk or not: MNIST, 48 MedMNIST entries, then folders.

    Folders registered privately (`register_image_folder(..., owner=...)`, a user's uploads) are listed
    only for their `owner`, so on a shared server one student's zip never shows up in another's picker.
    """
    infos = [_mnist_info()]
    infos += [_medmnist_info(flag, size) for flag in MEDMNIST_2D_FLAGS for size in MEDMNIST_SIZES]
    for name, (root, seed) in _visible_folders(owner).items():
        try:
            infos.append(_folder_info(name, _scan_folder(root), seed))
        except DataError as exc:  # a folder that vanished or became unreadable since discovery
            log.warning("Skipping image folder %s: %s", root, exc)
    return infos


def get_dataset_info(name: str) -> DatasetInfo:
    """The description of `name`: a registry name or the path of a folder with one sub-folder per class."""
    return _resolve(name).info


def dataset_status(name: str) -> DatasetStatus:
    """Whether `name` can be loaded offline, where it is, and what to do if it is not: checks files only."""
    entry = _resolve(name)
    if entry.info.family == "mnist":
        return _mnist_status(entry.info, _locate_mnist())
    if entry.info.family == "medmnist":
        return _medmnist_status(entry.info, entry.flag, entry.size)
    return DatasetStatus(
        info=entry.info,
        available=True,
        location=entry.root,
        searched=[entry.root],
        missing=[],
        how_to_get="",
        download_size=None,
    )


def is_available(name: str) -> bool:
    """Whether a data set's files are here (False for unknown names too): the pages' cheap check."""
    try:
        return dataset_status(name).available
    except DataError:
        return False


def load_split(
    name: str, split: str, *, download: bool = False, image_size: int | None = None
) -> SplitData:
    """One split of a data set as uint8 tensors, from the caches when it was loaded before.

    `image_size` defaults to the data set's own size (28 for MNIST, the MedMNIST entry's size, 128
    for folders). MNIST and MedMNIST images are resized (bilinear, antialiased) when another size is
    asked for; folder images are fitted by `fit_image`. With `download=True` a missing MNIST or
    MedMNIST set is downloaded into CNN_CACHE_DIR first; without it, nothing touches the network.
    """
    entry = _resolve(name)
    info = entry.info
    if split not in info.splits:
        raise DataError(f"{info.title} has no split {split!r}; choose one of {', '.join(info.splits)}.")
    size = _check_image_size(info.image_size if image_size is None else image_size)
    source = _locate_source(entry, download)
    key = (info.name, split, size, source.fingerprint)
    result = _memory_get(key)
    if result is None:
        with _key_lock(key[:3]):
            result = _memory_get(key) or _load_or_build(entry, source, split, size)
    if len(result) == 0:
        raise DataError(f"The {split} split of {info.title} is empty: {_empty_split_hint(entry)}")
    return result


def split_sizes(name: str) -> dict[str, int]:
    """Images per split that `load_split` will return, without loading them: estimates (steps of a run,
    "batch larger than the training set") need these, not the files listed.

    That is `n_samples`, except for image folders, whose `n_samples` counts every image file listed while
    loading skips unreadable ones. A folder's unreadable files are found by decoding each once per folder
    listing (small and in threads; nothing if a load already did it) and remembered in this process and in
    CNN_CACHE_DIR/folders/, so a page that asks on every rerun decodes nothing again.
    """
    entry = _resolve(name)
    if entry.info.family != "folder":
        return dict(entry.info.n_samples or {})
    scan = entry.scan or _scan_folder(entry.root)
    unreadable = _unreadable_files(scan)
    counts = dict.fromkeys(SPLITS, 0)
    for (relative, _), split in zip(scan.files, _folder_assignment(scan, entry.seed)):
        if relative not in unreadable:
            counts[split] += 1
    return counts


def _load_or_build(entry: _Entry, source: _Source, split: str, size: int) -> SplitData:
    """The disk cache when it matches the sources, else read the sources and write the cache."""
    info = replace(entry.info, image_size=size)
    path = _tensor_cache_path(info.name, size, split, source.fingerprint)
    from_disk = _read_tensor_cache(path)
    if from_disk is not None:
        images, labels, skipped = from_disk
        result = SplitData(images=images, labels=labels, info=info, skipped=skipped)
        _memory_put((info.name, split, size, source.fingerprint), result)
        return result
    result = None
    for built_split, (images, labels, skipped) in _build_splits(entry, source, split, size).items():
        path = _tensor_cache_path(info.name, size, built_split, source.fingerprint)
        _write_tensor_cache(path, images, labels, skipped)
        data = SplitData(images=images, labels=labels, info=info, skipped=skipped)
        _memory_put((info.name, built_split, size, source.fingerprint), data)
        if built_split == split:
            result = data
    return result


def channel_stats(name: str) -> tuple[list[float], list[float]]:
    """Per-channel mean and standard deviation, in [0, 1], of the train split at the data set's size.

    Cached in memory and in CNN_CACHE_DIR/stats/, keyed like the tensor cache.
    """
    entry = _resolve(name)
    size = entry.info.image_size
    source = _locate_source(entry, download=False)
    key = (entry.info.name, size, source.fingerprint)
    with _STATE_LOCK:
        if key in _STATS:
            return _STATS[key]
    path = _cache_root() / "stats" / f"{_safe(entry.info.name)}-{size}-{source.fingerprint[:16]}.json"
    stats = _read_stats(path, entry.info.channels)
    if stats is None:
        images = load_split(entry.info.name, "train", image_size=size).images
        stats = _mean_std(images)
        _write_json(path, {"mean": stats[0], "std": stats[1]})
    with _STATE_LOCK:
        _STATS[key] = stats
    return stats


def register_image_folder(
    name: str, root: str | os.PathLike, *, seed: int = FOLDER_SPLIT_SEED, owner: str | None = None
) -> DatasetInfo:
    """Add a folder with one sub-folder of images per class (e.g. an unzipped upload) for this process.

    `seed` drives its stratified train/val/test split. With an `owner` (a user's id) the folder is private:
    `list_datasets` shows it to that owner only. Registering a name again replaces it, but only for the
    same owner: another owner's name is refused.
    """
    name = name.strip() if isinstance(name, str) else ""
    if not name:
        raise DataError("Give the image folder a name, e.g. 'brain_mri'.")
    if _builtin_name(name) is not None:
        raise DataError(f"{name!r} is the name of a built-in data set; choose another name for this folder.")
    folder = Path(root).expanduser().resolve()
    scan = _scan_folder(folder)  # raises DataError when it is no image folder
    with _STATE_LOCK:
        if name in _REGISTERED_FOLDERS and _FOLDER_OWNERS.get(name) != owner:
            raise DataError(f"{name!r} is already the name of another user's image folder; choose another name.")
        _REGISTERED_FOLDERS[name] = (folder, int(seed))
        if owner is not None:
            _FOLDER_OWNERS[name] = owner
    return _folder_info(name, scan, int(seed))


def folder_owner(name: str) -> str | None:
    """Who registered the image folder `name` privately, or None for public folders and other names."""
    with _STATE_LOCK:
        return _FOLDER_OWNERS.get(name)


def download_dataset(
    name: str,
    progress: Callable[[str], None] | None = None,
    on_bytes: Callable[[DownloadProgress], None] | None = None,
) -> Path:
    """Download MNIST or a MedMNIST set into CNN_CACHE_DIR and return the folder that now holds it.

    `progress` receives short status lines (the CLI prints them, the gallery shows them); `on_bytes`
    receives a `DownloadProgress` when the transfer starts, at most every 0.1 s while bytes arrive and
    once at the end (then `fraction` is 1.0), for a progress bar. Every file streams into a hidden
    temporary file beside its destination, is checked (length, MD5) and only then renamed into place,
    so a failed or interrupted download leaves no partial file; MNIST's four files land together or not
    at all. Raises `DataError` when the server cannot be reached (offline), answers with an error, the
    transfer breaks off, or a file's MD5 is not the expected one. A data set already complete in the
    cache is not fetched again (delete it there to force a new download).

    The files come from `CNN_DOWNLOAD_MIRROR` when it is set (`settings.download_mirror`): MNIST from
    `<mirror>/<file>.gz`, MedMNIST from `<mirror>/<flag>[_<size>].npz`. Their MD5 is the registry's
    (torchvision's `MNIST.resources`, medmnist's `INFO`) unless the mirror publishes `<file>.md5`
    beside a file, e.g. for a re-compressed copy; that checksum is then the one checked.
    """
    entry = _resolve(name)
    info = entry.info
    say = progress or (lambda message: None)
    if info.family == "folder":
        raise DataError(f"{info.name!r} is an image folder ({info.root}); there is nothing to download.")
    plan = _download_plan(entry)
    with _key_lock(("download", info.name)):  # a second request for the same set waits, then finds it
        if _download_complete(entry, plan):
            say(f"{info.title} is already in {plan.folder}; delete it there to download it again.")
            return plan.folder
        reachable = _reachable_alternatives(plan)
        say(f"Downloading {info.title} from {_server(reachable[0][0].url)} into {plan.folder}; size: {plan.size_note}.")
        started = time.monotonic()
        meter = _ProgressMeter(on_bytes)
        parts = _fetch_first_working(plan, reachable, meter)
        try:
            _install_download(entry, plan, parts)
        finally:
            for part in parts.values():
                part.unlink(missing_ok=True)
        say(f"{info.title} downloaded: {_human_bytes(meter.done)} in {time.monotonic() - started:.1f} s.")
    with _STATE_LOCK:
        _npz_split_counts.cache_clear()
    return plan.folder


def download_server(name: str) -> str | None:
    """The server a missing MNIST or MedMNIST set would come from ("zenodo.org", the mirror's
    "host:port"), or None for image folders. Raises `DataError` for a malformed CNN_DOWNLOAD_MIRROR."""
    entry = _resolve(name)
    if entry.info.family == "folder":
        return None
    return _server(_download_plan(entry).alternatives[0][0].url)


def download_server_reachable(name: str, timeout: float = 2.0) -> bool:
    """Whether a TCP connection to one of `name`'s download servers opens within `timeout` seconds, so
    that an offline computer gets instructions instead of a download button that cannot work."""
    try:
        entry = _resolve(name)
        if entry.info.family == "folder":
            return False
        alternatives = _download_plan(entry).alternatives
    except DataError:
        return False
    return any(_connect_error(files[0].url, timeout) is None for files in alternatives)


def fit_image(image: Image.Image, image_size: int, channels: int) -> np.ndarray:
    """A PIL image as uint8 [C, image_size, image_size], the way folder data sets are prepared.

    EXIF rotation, transparency, palettes and 16-bit depth are handled by `images.to_standard_mode`;
    the image is then scaled so its *shorter* side is `image_size` and center-cropped to a square
    (`ImageOps.fit`, bicubic), which keeps the aspect ratio and loses only the margins of the longer
    side. Prediction uses the same function so that uploads look like the training images.
    """
    if channels not in (1, 3):
        raise DataError(f"channels must be 1 or 3, not {channels}.")
    standard = to_standard_mode(image).convert("L" if channels == 1 else "RGB")
    fitted = ImageOps.fit(standard, (image_size, image_size), method=Image.Resampling.BICUBIC)
    array = np.asarray(fitted, dtype=np.uint8)
    array = array[None] if array.ndim == 2 else array.transpose(2, 0, 1)
    return np.ascontiguousarray(array)


# --------------------------------------------------------------------------------------------------
# Name resolution


@dataclass(frozen=True)
class _Entry:
    info: DatasetInfo
    flag: str = ""  # medmnist
    size: int = 0  # medmnist
    root: Path | None = None  # folders
    seed: int = FOLDER_SPLIT_SEED  # folders
    scan: _FolderScan | None = None  # folders


def _builtin_name(name: str) -> tuple[str, int] | None:
    """("mnist", 28) or (medmnist flag, size) for a built-in name (case-insensitive), else None."""
    key = name.strip().lower()
    if key == "mnist":
        return ("mnist", 28)
    match = re.fullmatch(r"([a-z]+mnist)(?:_(\d+))?", key)
    if match and match.group(1) in MEDMNIST_2D_FLAGS:
        size = int(match.group(2) or 28)
        if size in MEDMNIST_SIZES:
            return (match.group(1), size)
    return None


def _resolve(name: str) -> _Entry:
    if not isinstance(name, str) or not name.strip():
        raise DataError(f"Name a data set; known ones: {_known_names_text()}.")
    builtin = _builtin_name(name)
    if builtin is not None:
        flag, size = builtin
        if flag == "mnist":
            return _Entry(info=_mnist_info())
        return _Entry(info=_medmnist_info(flag, size), flag=flag, size=size)
    folders = _folder_entries()
    if name in folders:
        root, seed = folders[name]
        return _folder_entry(name, root, seed)
    path = Path(name).expanduser()
    if path.is_dir():
        root = path.resolve()
        for known, (known_root, seed) in folders.items():
            if known_root == root:
                return _folder_entry(known, root, seed)
        _scan_folder(root)  # raises DataError when it is no image folder
        folder_name = root.name
        if folder_name in folders or _builtin_name(folder_name) is not None:
            folder_name = f"{root.name}-{hashlib.sha1(str(root).encode()).hexdigest()[:6]}"
        with _STATE_LOCK:
            _REGISTERED_FOLDERS[folder_name] = (root, FOLDER_SPLIT_SEED)
        return _folder_entry(folder_name, root, FOLDER_SPLIT_SEED)
    raise DataError(
        f"Unknown data set {name!r}. Known: {_known_names_text()}. "
        "You can also give the path of a folder with one sub-folder of images per class."
    )


def _folder_entry(name: str, root: Path, seed: int) -> _Entry:
    scan = _scan_folder(root)
    return _Entry(info=_folder_info(name, scan, seed), root=root, seed=seed, scan=scan)


def _known_names_text() -> str:
    folders = list(_visible_folders(None))
    medmnist = ", ".join(MEDMNIST_2D_FLAGS)
    text = f"mnist, {medmnist} (add _64, _128 or _224 for larger MedMNIST images)"
    if folders:
        text += ", image folders: " + ", ".join(folders)
    return text


def _visible_folders(owner: str | None) -> dict[str, tuple[Path, int]]:
    """`_folder_entries()` without the folders private to other owners (with None: to anyone)."""
    with _STATE_LOCK:
        private = dict(_FOLDER_OWNERS)
    return {name: entry for name, entry in _folder_entries().items() if private.get(name) in (None, owner)}


def _folder_entries() -> dict[str, tuple[Path, int]]:
    """Registered folders, then every qualifying top-level folder of CNN_DATA_DIR not already named."""
    with _STATE_LOCK:
        entries = dict(_REGISTERED_FOLDERS)
    data = settings.data_dir()
    try:
        children = sorted(data.iterdir()) if data.is_dir() else []
    except OSError:
        children = []
    for child in children:
        if child.name in entries or child.name.lower() in _EXCLUDED_TOP_FOLDERS:
            continue
        if _hidden(child.name) or _builtin_name(child.name) is not None or not child.is_dir():
            continue
        if _count_image_classes(child) >= 2:
            entries[child.name] = (child.resolve(), FOLDER_SPLIT_SEED)
    return entries


# --------------------------------------------------------------------------------------------------
# Sources: where the files of an entry are, and their fingerprint


@dataclass(frozen=True)
class _Source:
    fingerprint: str
    location: Path | None
    files: dict  # family-specific: {"found": _MnistFiles}, {"npz": path} or {"scan": _FolderScan}


def _locate_source(entry: _Entry, download: bool) -> _Source:
    family = entry.info.family
    if family == "folder":
        scan = entry.scan or _scan_folder(entry.root)
        fingerprint = _digest([_CACHE_FORMAT, "folder", scan.fingerprint, entry.seed, FOLDER_SPLIT_FRACTIONS])
        return _Source(fingerprint=fingerprint, location=entry.root, files={"scan": scan})
    if family == "mnist":
        found = _locate_mnist()
        if found.missing and download:
            download_dataset("mnist")
            found = _locate_mnist()
        if found.missing:
            raise _missing_error(_mnist_status(entry.info, found))
        stats = [_file_stamp(path) for path in found.sources.values()]
        fingerprint = _digest([_CACHE_FORMAT, "mnist", stats, _MNIST_VAL_FRACTION, _MNIST_VAL_SEED])
        return _Source(fingerprint=fingerprint, location=found.location, files={"found": found})
    path, _ = _find_npz(entry.flag, entry.size)
    if path is None and download:
        download_dataset(entry.info.name)
        path, _ = _find_npz(entry.flag, entry.size)
    if path is None:
        raise _missing_error(_medmnist_status(entry.info, entry.flag, entry.size))
    fingerprint = _digest([_CACHE_FORMAT, "medmnist", _file_stamp(path)])
    return _Source(fingerprint=fingerprint, location=path.parent, files={"npz": path})


def _missing_error(status: DatasetStatus) -> DataError:
    searched = ", ".join(str(p) for p in status.searched)
    return DataError(
        f"{status.info.title} is not available here: {', '.join(status.missing)} not found "
        f"(looked in {searched}). {status.how_to_get}"
    )


def _build_splits(entry: _Entry, source: _Source, split: str, size: int) -> dict[str, tuple]:
    """Read the sources: {split: (images, labels, skipped)}, possibly more splits than asked for."""
    family = entry.info.family
    if family == "folder":
        return _build_folder(entry, source.files["scan"], size)
    if family == "mnist":
        built = _build_mnist(source, split)
    else:
        built = {split: _build_medmnist(entry, source.files["npz"], split)}
    native = entry.info.image_size
    if size != native:
        built = {key: (_resize_uint8(images, size), labels, skipped) for key, (images, labels, skipped) in built.items()}
    return built


def _empty_split_hint(entry: _Entry) -> str:
    if entry.info.family == "folder":
        return (
            f"the folder {entry.root} holds too few readable images for an 80/10/10 split. "
            "Add images (at least 10 per class is a useful minimum)."
        )
    return "the source file holds no images for it."


# --------------------------------------------------------------------------------------------------
# MNIST


@dataclass(frozen=True)
class _MnistFiles:
    sources: dict[str, Path]  # basename -> the file to read it from (.gz or uncompressed)
    missing: list[str]
    location: Path | None
    searched: list[Path]
    root_ready: Path | None  # a root torchvision can read as is (all four uncompressed files there)


def _locate_mnist() -> _MnistFiles:
    """Find the four MNIST files: uncompressed or .gz in CNN_DATA_DIR/MNIST/raw, else the cache's copy."""
    data_raw = settings.data_dir() / "MNIST" / "raw"
    cache_raw = _cache_root() / "MNIST" / "raw"
    searched = [data_raw, cache_raw]
    in_data: dict[str, Path] = {}
    for base in _MNIST_BASENAMES:
        for candidate in (data_raw / base, data_raw / f"{base}.gz"):
            if candidate.is_file():
                in_data[base] = candidate
                break
    if len(in_data) == len(_MNIST_BASENAMES):
        all_plain = all(path.suffix != ".gz" for path in in_data.values())
        return _MnistFiles(in_data, [], data_raw, searched, settings.data_dir() if all_plain else None)
    in_cache = {base: cache_raw / base for base in _MNIST_BASENAMES if (cache_raw / base).is_file()}
    if len(in_cache) == len(_MNIST_BASENAMES):
        return _MnistFiles(in_cache, [], cache_raw, searched, _cache_root())
    missing = [f"{base}.gz" for base in _MNIST_BASENAMES if base not in in_data]
    return _MnistFiles({}, missing, None, searched, None)


def _mnist_how_to_get() -> str:
    files = ", ".join(f"{base}.gz" for base in _MNIST_BASENAMES)
    return (
        f"Put the four MNIST files ({files}; gzipped or not) in {settings.data_dir() / 'MNIST' / 'raw'} "
        "(that is $CNN_DATA_DIR/MNIST/raw/), or run `python -m cnn_core download mnist` while online "
        f"({_MNIST_DOWNLOAD_SIZE}, saved under $CNN_CACHE_DIR/MNIST/raw/)."
    )


def _mnist_status(info: DatasetInfo, found: _MnistFiles) -> DatasetStatus:
    return DatasetStatus(
        info=info,
        available=not found.missing,
        location=found.location,
        searched=list(found.searched),
        missing=list(found.missing),
        how_to_get=_mnist_how_to_get(),
        download_size=_MNIST_DOWNLOAD_SIZE,
    )


def _mnist_info() -> DatasetInfo:
    counts = _mnist_counts(_locate_mnist())
    return DatasetInfo(
        name="mnist",
        title="MNIST handwritten digits (28×28)",
        family="mnist",
        class_names=tuple(str(digit) for digit in range(10)),
        channels=1,
        image_size=28,
        task="multi-class",
        splits=SPLITS,
        source="http://yann.lecun.com/exdb/mnist/ (read through torchvision.datasets.MNIST)",
        description=(
            "70,000 grayscale 28×28 images of handwritten digits 0-9 written by American Census Bureau "
            "employees and high-school students, centered by their center of mass. The official split "
            "is 60,000 training and 10,000 test images; this app sets one twelfth of the training images "
            f"aside as a fixed validation set (5,000, drawn at random with seed {_MNIST_VAL_SEED}, the "
            "same on every computer), so the splits are train 55,000 / val 5,000 / test 10,000."
        ),
        license="Y. LeCun, C. Cortes and C. J. C. Burges (terms: http://yann.lecun.com/exdb/mnist/)",
        n_samples=counts or dict(_MNIST_OFFICIAL_COUNTS),
        root=None,
    )


def _mnist_counts(found: _MnistFiles) -> dict[str, int] | None:
    """Split sizes from the idx label-file headers (8 bytes each), or None when unreadable."""
    if found.missing:
        return None
    try:
        n_train = _idx_count(found.sources["train-labels-idx1-ubyte"])
        n_test = _idx_count(found.sources["t10k-labels-idx1-ubyte"])
    except (OSError, ValueError, EOFError):
        return None
    n_val = _mnist_val_count(n_train)
    return {"train": n_train - n_val, "val": n_val, "test": n_test}


def _idx_count(path: Path) -> int:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as handle:
        header = handle.read(8)
    if len(header) < 8 or header[:2] != b"\x00\x00":
        raise ValueError(f"{path} has no idx header")
    return int.from_bytes(header[4:8], "big")


def _mnist_val_count(n_train_total: int) -> int:
    return math.floor(n_train_total * _MNIST_VAL_FRACTION + 0.5)


def _mnist_val_mask(n_train_total: int) -> np.ndarray:
    """True for the images carved out as the validation split (same images on every machine)."""
    order = np.random.default_rng(_MNIST_VAL_SEED).permutation(n_train_total)
    mask = np.zeros(n_train_total, dtype=bool)
    mask[order[: _mnist_val_count(n_train_total)]] = True
    return mask


def _mnist_readable_root(sources: dict[str, Path], ready: Path | None) -> Path:
    """A root holding MNIST/raw/<uncompressed files> for torchvision; .gz files are decompressed
    into CNN_CACHE_DIR (never into CNN_DATA_DIR), once per version of the archives."""
    if ready is not None:
        return ready
    root = _cache_root()
    raw = root / "MNIST" / "raw"
    stamp_path = raw / ".cnn-explorer-source.json"
    stamp = _digest([_file_stamp(path) for path in sources.values()])
    try:
        current = json.loads(stamp_path.read_text()).get("stamp")
    except (OSError, ValueError, AttributeError):
        current = None
    if current == stamp and all((raw / base).is_file() for base in _MNIST_BASENAMES):
        return root
    try:
        raw.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"Cannot create {raw} to unpack MNIST ({_short(exc)}): make CNN_CACHE_DIR writable.") from exc
    for base, source in sources.items():
        target = raw / base
        if source == target:
            continue
        temporary = raw / f".{base}.{os.getpid()}.{threading.get_ident()}.tmp"
        try:
            opener = gzip.open if source.suffix == ".gz" else open
            with opener(source, "rb") as reader, open(temporary, "wb") as writer:
                shutil.copyfileobj(reader, writer, length=1024 * 1024)
            os.replace(temporary, target)
        except (OSError, EOFError, ValueError) as exc:
            temporary.unlink(missing_ok=True)
            if getattr(exc, "filename", None) in (str(temporary), str(target)):
                raise DataError(f"Cannot write {target} ({_short(exc)}): make CNN_CACHE_DIR writable.") from exc
            raise DataError(
                f"{source} could not be unpacked ({_short(exc)}): it is damaged or not a gzip file. "
                f"Replace it with a good copy. {_mnist_how_to_get()}"
            ) from exc
    _write_json(stamp_path, {"stamp": stamp})
    return root


def mnist_torchvision_root() -> Path:
    """A root that `torchvision.datasets.MNIST(root, download=False)` reads (benchmarks race torchvision's own
    pipeline on it); gzipped archives are unpacked into the cache first. DataError when MNIST is missing."""
    found = _locate_mnist()
    if found.missing:
        raise _missing_error(dataset_status("mnist"))
    return _mnist_readable_root(found.sources, found.root_ready)


def _build_mnist(source: _Source, split: str) -> dict[str, tuple]:
    found: _MnistFiles = source.files["found"]
    root = _mnist_readable_root(found.sources, found.root_ready)
    try:
        from torchvision.datasets import MNIST

        dataset = MNIST(root=str(root), train=(split != "test"), download=False)
        images = dataset.data
        labels = dataset.targets
    except Exception as exc:  # noqa: BLE001 - torchvision raises RuntimeError/AssertionError/ValueError
        raise DataError(
            f"The MNIST files in {root / 'MNIST' / 'raw'} could not be read ({_short(exc)}). "
            f"They may be damaged. {_mnist_how_to_get()}"
        ) from exc
    if images.dtype != torch.uint8 or images.ndim != 3 or tuple(images.shape[1:]) != (28, 28) or len(labels) != len(images):
        raise DataError(
            f"The MNIST files in {root / 'MNIST' / 'raw'} do not hold 28×28 images with one label each "
            f"(images {tuple(images.shape)}, labels {tuple(labels.shape)}). {_mnist_how_to_get()}"
        )
    images = images.unsqueeze(1).contiguous()
    labels = labels.to(torch.int64)
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) > 9):
        raise DataError(f"The MNIST label file in {root / 'MNIST' / 'raw'} holds labels outside 0-9.")
    if split == "test":
        return {"test": (images, labels, 0)}
    val = torch.from_numpy(_mnist_val_mask(len(images)))
    return {
        "train": (images[~val].contiguous(), labels[~val].contiguous(), 0),
        "val": (images[val].contiguous(), labels[val].contiguous(), 0),
    }


# --------------------------------------------------------------------------------------------------
# MedMNIST


@functools.lru_cache(maxsize=1)
def _medmnist_table() -> dict:
    """medmnist's INFO table. Read from medmnist/info.py alone when possible, because `import medmnist`
    also imports its evaluator and scikit-learn (seconds of start-up) and INFO is a plain dict."""
    spec = importlib.util.find_spec("medmnist")
    if spec is None:
        raise DataError("The medmnist package is not installed: `pip install medmnist`.")
    try:
        info_path = Path(next(iter(spec.submodule_search_locations or []))) / "info.py"
        module_spec = importlib.util.spec_from_file_location("_cnn_explorer_medmnist_info", info_path)
        module = importlib.util.module_from_spec(module_spec)
        module_spec.loader.exec_module(module)
        return module.INFO
    except Exception:  # noqa: BLE001 - a changed package layout: fall back to the ordinary import
        from medmnist import INFO

        return INFO


def _medmnist_filename(flag: str, size: int) -> str:
    return f"{flag}.npz" if size == 28 else f"{flag}_{size}.npz"


def _medmnist_name(flag: str, size: int) -> str:
    return flag if size == 28 else f"{flag}_{size}"


def _npz_search_dirs() -> list[Path]:
    data = settings.data_dir()
    return [data / "medmnist", data, _cache_root() / "medmnist"]


def _find_npz(flag: str, size: int) -> tuple[Path | None, list[Path]]:
    filename = _medmnist_filename(flag, size)
    searched = _npz_search_dirs()
    for folder in searched:
        if (folder / filename).is_file():
            return folder / filename, searched
    return None, searched


def _medmnist_info(flag: str, size: int) -> DatasetInfo:
    medinfo = _medmnist_table()[flag]
    labels = medinfo["label"]
    class_names = tuple(labels[key] for key in sorted(labels, key=int))
    path, _ = _find_npz(flag, size)
    counts = _npz_split_counts(*_file_stamp(path)) if path is not None else None
    description = medinfo["description"]
    if size != 28:
        description += f" This entry is the {size}×{size} version (MedMNIST+)."
    suffix = "" if size == 28 else f"_{size}"
    return DatasetInfo(
        name=_medmnist_name(flag, size),
        title=f"{medinfo['python_class']} ({size}×{size})",
        family="medmnist",
        class_names=class_names,
        channels=int(medinfo["n_channels"]),
        image_size=size,
        task=medinfo["task"],
        splits=SPLITS,
        source=medinfo.get(f"url{suffix}", medinfo.get("url", "https://medmnist.com/")),
        description=description,
        license=medinfo.get("license", "see https://medmnist.com/"),
        n_samples=counts or {split: int(medinfo["n_samples"][split]) for split in SPLITS},
        root=None,
    )


@functools.lru_cache(maxsize=256)
def _npz_split_counts(path: str, size: int, mtime_ns: int) -> dict[str, int] | None:
    """Split sizes from the .npy headers of the `*_labels` members: reads a few bytes, decompresses nothing big."""
    counts = {}
    try:
        with zipfile.ZipFile(path) as archive:
            for split in SPLITS:
                with archive.open(f"{split}_labels.npy") as member:
                    version = np.lib.format.read_magic(member)
                    if version == (1, 0):
                        shape, _, _ = np.lib.format.read_array_header_1_0(member)
                    else:
                        shape, _, _ = np.lib.format.read_array_header_2_0(member)
                counts[split] = int(shape[0])
    except (OSError, KeyError, ValueError, zipfile.BadZipFile, EOFError, IndexError):
        return None
    return counts


def _medmnist_download_size(flag: str, size: int) -> str:
    """An upper bound from INFO: medmnist publishes no file sizes, but the pixel count is known and the
    .npz files are compressed, so the download is smaller than the raw pixels."""
    medinfo = _medmnist_table()[flag]
    n_images = sum(int(count) for count in medinfo["n_samples"].values())
    n_bytes = n_images * size * size * int(medinfo["n_channels"])
    return f"under {_human_bytes(n_bytes)} (its images uncompressed; the .npz is compressed)"


def _medmnist_how_to_get(flag: str, size: int) -> str:
    filename = _medmnist_filename(flag, size)
    suffix = "" if size == 28 else f"_{size}"
    mirror = settings.download_mirror()
    url = f"{mirror}/{filename}" if mirror else _medmnist_table()[flag].get(f"url{suffix}", "https://medmnist.com/")
    return (
        f"Put {filename} in {settings.data_dir() / 'medmnist'} (that is $CNN_DATA_DIR/medmnist/), or run "
        f"`python -m cnn_core download {_medmnist_name(flag, size)}` while online (from {url})."
    )


def _medmnist_status(info: DatasetInfo, flag: str, size: int) -> DatasetStatus:
    path, searched = _find_npz(flag, size)
    return DatasetStatus(
        info=info,
        available=path is not None,
        location=path,
        searched=searched,
        missing=[] if path is not None else [_medmnist_filename(flag, size)],
        how_to_get=_medmnist_how_to_get(flag, size),
        download_size=_medmnist_download_size(flag, size),
    )


def _build_medmnist(entry: _Entry, path: Path, split: str) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Read one split straight from the npz with numpy (allow_pickle=False): only that split's members
    are decompressed, and medmnist never gets a chance to re-download over the file."""
    info = entry.info
    try:
        with np.load(path, allow_pickle=False) as archive:
            images = archive[f"{split}_images"]
            labels = archive[f"{split}_labels"]
    except KeyError as exc:
        raise DataError(
            f"{path} has no {split}_images/{split}_labels arrays: it is not a MedMNIST file. "
            f"{_medmnist_how_to_get(entry.flag, entry.size)}"
        ) from exc
    except Exception as exc:  # noqa: BLE001 - zipfile/lzma/numpy raise many types for damaged files
        raise DataError(
            f"{path} could not be read ({_short(exc)}): it is damaged or not an npz file. "
            f"{_medmnist_how_to_get(entry.flag, entry.size)}"
        ) from exc
    side = entry.size
    gray_ok = info.channels == 1 and images.ndim == 3
    rgb_ok = info.channels == 3 and images.ndim == 4 and images.shape[-1] == 3
    if images.dtype != np.uint8 or not (gray_ok or rgb_ok) or images.shape[1:3] != (side, side):
        raise DataError(
            f"{path}: {split}_images has shape {images.shape} and type {images.dtype}; expected uint8 "
            f"(N, {side}, {side}{', 3' if info.channels == 3 else ''}) for {info.title}."
        )
    labels = np.asarray(labels)
    if labels.ndim == 1:
        labels = labels[:, None]
    if labels.ndim != 2 or labels.shape[0] != images.shape[0]:
        raise DataError(f"{path}: {split}_labels has shape {labels.shape} for {images.shape[0]} images.")
    labels = labels.astype(np.int64)
    n_classes = len(info.class_names)
    if info.multi_label:
        if labels.shape[1] != n_classes or (labels.size and (labels.min() < 0 or labels.max() > 1)):
            raise DataError(f"{path}: {split}_labels should be 0/1 flags for {n_classes} labels, shape {labels.shape}.")
    else:
        if labels.shape[1] != 1:
            raise DataError(f"{path}: {split}_labels has shape {labels.shape}; expected one label per image.")
        labels = labels[:, 0]
        if labels.size and (labels.min() < 0 or labels.max() >= n_classes):
            raise DataError(f"{path}: {split}_labels holds values outside 0-{n_classes - 1}.")
    tensor = torch.from_numpy(images)
    tensor = tensor.unsqueeze(1) if tensor.ndim == 3 else tensor.permute(0, 3, 1, 2)
    return tensor.contiguous(), torch.from_numpy(np.ascontiguousarray(labels)), 0


# --------------------------------------------------------------------------------------------------
# Image folders


@dataclass(frozen=True)
class _FolderScan:
    root: Path
    class_names: tuple[str, ...]
    files: tuple[tuple[str, int], ...]  # (path relative to root, class index), sorted by path
    channels: int
    fingerprint: str


@functools.lru_cache(maxsize=1)
def _open_formats() -> tuple[str, ...]:
    """The allowed formats Pillow can open. Pillow registers no opener for "MPO" (the JPEG plugin
    opens MPO files), and naming an unregistered format makes `Image.open` raise KeyError."""
    Image.init()
    return tuple(name for name in ALLOWED_FORMATS if name in Image.OPEN)


def _hidden(name: str) -> bool:
    return name.startswith(".") or name.startswith("__")  # .DS_Store, ._x.jpg, __MACOSX


def _image_files(class_dir: Path) -> list[tuple[Path, os.stat_result]]:
    """Image files (by suffix) under one class folder, recursively, sorted; hidden ones skipped."""
    found = []
    for dirpath, dirnames, filenames in os.walk(class_dir):
        dirnames[:] = sorted(d for d in dirnames if not _hidden(d))
        for filename in sorted(filenames):
            if _hidden(filename) or Path(filename).suffix.lower() not in IMAGE_SUFFIXES:
                continue
            path = Path(dirpath) / filename
            try:
                found.append((path, path.stat()))
            except OSError:
                continue  # a dangling link: not an image we can read
    return found


def _class_dirs(root: Path) -> list[Path]:
    return sorted(child for child in root.iterdir() if child.is_dir() and not _hidden(child.name))


def _count_image_classes(root: Path) -> int:
    try:
        return sum(1 for child in _class_dirs(root) if _has_image(child))
    except OSError:
        return 0


def _has_image(class_dir: Path) -> bool:
    for _, dirnames, filenames in os.walk(class_dir):
        dirnames[:] = [d for d in dirnames if not _hidden(d)]
        if any(not _hidden(f) and Path(f).suffix.lower() in IMAGE_SUFFIXES for f in filenames):
            return True
    return False


def _scan_folder(root: Path) -> _FolderScan:
    """List a folder data set (class names, files, channels); cached by its listing's fingerprint."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"The image folder {root} does not exist (any more).")
    try:
        classes = [(child.name, _image_files(child)) for child in _class_dirs(root)]
    except OSError as exc:
        raise DataError(f"The image folder {root} cannot be read ({_short(exc)}).") from exc
    classes = [(name, files) for name, files in classes if files]
    if len(classes) < 2:
        raise DataError(
            f"{root} is not an image folder data set: it needs one sub-folder per class with image files "
            f"({', '.join(IMAGE_SUFFIXES)}) in at least two of them, e.g. {root}/yes/*.jpg and {root}/no/*.jpg."
        )
    files, listing = [], []
    for index, (_, entries) in enumerate(classes):
        for path, stat in entries:
            relative = path.relative_to(root).as_posix()
            files.append((relative, index))
            listing.append((relative, stat.st_size, stat.st_mtime_ns))
    files.sort()
    listing.sort()
    fingerprint = _digest([str(root), listing])
    with _STATE_LOCK:
        cached = _FOLDER_SCANS.get(fingerprint)
    if cached is not None:
        return cached
    scan = _FolderScan(
        root=root,
        class_names=tuple(name for name, _ in classes),
        files=tuple(files),
        channels=_cached_folder_channels(root, fingerprint, [relative for relative, _ in files]),
        fingerprint=fingerprint,
    )
    with _STATE_LOCK:
        _FOLDER_SCANS[fingerprint] = scan
    return scan


def _cached_folder_channels(root: Path, fingerprint: str, relatives: list[str]) -> int:
    """`_folder_channels`, remembered in CNN_CACHE_DIR/folders/ so a new process opens no image."""
    path = _cache_root() / "folders" / f"{_safe(root.name)}-{fingerprint[:16]}.json"
    try:
        channels = json.loads(path.read_text())["channels"]
        if channels in (1, 3):
            return channels
    except (OSError, ValueError, KeyError, TypeError):
        pass
    channels = _folder_channels(root, relatives)
    _write_json(path, {"root": str(root), "channels": channels})
    return channels


def _folder_channels(root: Path, relatives: Iterable[str]) -> int:
    """1 when every readable image is grayscale (judged from the header and palette), else 3."""
    any_readable = False
    for relative in relatives:
        try:
            with Image.open(root / relative, formats=_open_formats()) as image:
                if not _grayscale(image):
                    return 3
                any_readable = True
        except Exception:  # noqa: BLE001 - unreadable files are skipped when loading
            continue
    return 1 if any_readable else 3


def _grayscale(image: Image.Image) -> bool:
    mode = image.mode
    if mode in ("1", "L", "LA", "La", "I", "F") or mode.startswith("I;16"):
        return True
    if mode in ("P", "PA"):
        palette = image.getpalette() or []
        triples = [palette[i : i + 3] for i in range(0, len(palette) - 2, 3)]
        return all(r == g == b for r, g, b in triples)
    return False


def _folder_info(name: str, scan: _FolderScan, seed: int) -> DatasetInfo:
    counts = _folder_split_counts(scan, seed)
    per_class = [0] * len(scan.class_names)
    for _, index in scan.files:
        per_class[index] += 1
    class_text = ", ".join(f"{cls} {count}" for cls, count in zip(scan.class_names, per_class))
    return DatasetInfo(
        name=name,
        title=f"{name} (image folder)",
        family="folder",
        class_names=scan.class_names,
        channels=scan.channels,
        image_size=FOLDER_IMAGE_SIZE,
        task="binary-class" if len(scan.class_names) == 2 else "multi-class",
        splits=SPLITS,
        source=str(scan.root),
        description=(
            f"A folder of images with one sub-folder per class: {len(scan.files)} image files "
            f"({class_text}). Split by this app per class (stratified) into train/val/test "
            f"{'/'.join(f'{f:.0%}' for f in FOLDER_SPLIT_FRACTIONS)} with seed {seed}; each image is "
            "scaled so its shorter side fits the image size and center-cropped to a square. "
            + ("All images are grayscale, so 1 channel." if scan.channels == 1 else "Loaded as RGB.")
            + " Files that cannot be read are skipped and counted."
        ),
        license="as given by the folder's owner",
        n_samples=counts,
        root=str(scan.root),
    )


def _split_quotas(class_sizes: list[int], fractions: Iterable[float]) -> list[list[int]]:
    """quotas[split][class]: split totals are round(fraction * N) (the last split takes the rest),
    shared among classes in proportion to what each class has left (largest remainder)."""
    fractions = list(fractions)
    total = sum(class_sizes)
    targets = [math.floor(f * total + 0.5) for f in fractions[:-1]]
    remaining = list(class_sizes)
    quotas = []
    for target in targets:
        target = min(target, sum(remaining))
        left = sum(remaining)
        ideal = [target * r / left if left else 0.0 for r in remaining]
        quota = [math.floor(x) for x in ideal]
        by_remainder = sorted(range(len(ideal)), key=lambda i: (quota[i] - ideal[i], i))
        for i in by_remainder[: target - sum(quota)]:
            quota[i] += 1
        quotas.append(quota)
        remaining = [r - q for r, q in zip(remaining, quota)]
    quotas.append(remaining)
    return quotas


def _folder_assignment(scan: _FolderScan, seed: int) -> list[str]:
    """The split of every file of `scan.files`: a stratified, seeded split that does not depend on the
    order the files were listed in (each class's files are ranked by a hash of seed and path)."""
    key = (scan.fingerprint, seed)
    with _STATE_LOCK:
        cached = _ASSIGNMENTS.get(key)
    if cached is not None:
        return list(cached)
    by_class: dict[int, list[int]] = {}
    for position, (_, index) in enumerate(scan.files):
        by_class.setdefault(index, []).append(position)
    sizes = [len(by_class.get(i, [])) for i in range(len(scan.class_names))]
    quotas = _split_quotas(sizes, FOLDER_SPLIT_FRACTIONS)
    assignment = [""] * len(scan.files)
    for index, positions in by_class.items():
        ranked = sorted(positions, key=lambda p: hashlib.sha256(f"{seed}/{scan.files[p][0]}".encode()).digest())
        start = 0
        for split, quota in zip(SPLITS, quotas):
            for position in ranked[start : start + quota[index]]:
                assignment[position] = split
            start += quota[index]
    with _STATE_LOCK:
        _ASSIGNMENTS[key] = tuple(assignment)
    return assignment


def _folder_split_counts(scan: _FolderScan, seed: int) -> dict[str, int]:
    assignment = _folder_assignment(scan, seed)
    return {split: assignment.count(split) for split in SPLITS}


#: Side the readability check decodes folder images to (JPEGs decode at 1/8 scale): small is fast.
_READABILITY_CHECK_SIZE = 32


def _readability_path(scan: _FolderScan) -> Path:
    return _cache_root() / "folders" / f"{_safe(scan.root.name)}-{scan.fingerprint[:16]}-unreadable.json"


def _unreadable_files(scan: _FolderScan) -> frozenset[str]:
    """The files of `scan` (relative paths) that loading skips: from memory, CNN_CACHE_DIR, or decoded once."""
    with _STATE_LOCK:
        known = _UNREADABLE.get(scan.fingerprint)
    if known is not None:
        return known
    try:
        listed = json.loads(_readability_path(scan).read_text())["unreadable"]
        if isinstance(listed, list) and all(isinstance(item, str) for item in listed):
            known = frozenset(listed)
    except (OSError, ValueError, KeyError, TypeError):
        pass
    if known is None:
        paths = [scan.root / relative for relative, _ in scan.files]
        workers = max(1, min(4, os.cpu_count() or 1))
        with ThreadPoolExecutor(max_workers=workers) as pool:  # Pillow decodes outside the GIL
            arrays = pool.map(lambda p: _read_folder_image(p, _READABILITY_CHECK_SIZE, scan.channels), paths)
            known = frozenset(relative for (relative, _), array in zip(scan.files, arrays) if array is None)
        _remember_unreadable(scan, known)
    with _STATE_LOCK:
        _UNREADABLE[scan.fingerprint] = known
    return known


def _remember_unreadable(scan: _FolderScan, unreadable: frozenset[str]) -> None:
    with _STATE_LOCK:
        _UNREADABLE[scan.fingerprint] = unreadable
    _write_json(_readability_path(scan), {"root": str(scan.root), "unreadable": sorted(unreadable)})


def _read_folder_image(path: Path, image_size: int, channels: int) -> np.ndarray | None:
    """One file as uint8 [C, S, S], or None when it is not a readable image or is too large."""
    try:
        with Image.open(path, formats=_open_formats()) as image:
            if image.width * image.height > MAX_IMAGE_PIXELS or image.width < 1 or image.height < 1:
                return None
            if image.format == "JPEG":
                image.draft(image.mode, (image_size, image_size))  # decode big JPEGs at 1/2, 1/4, 1/8
            image.load()
            return fit_image(image, image_size, channels)
    except Exception:  # noqa: BLE001 - Pillow raises many types (and DecompressionBombError) for bad files
        return None


def _build_folder(entry: _Entry, scan: _FolderScan, size: int) -> dict[str, tuple]:
    assignment = _folder_assignment(scan, entry.seed)
    paths = [scan.root / relative for relative, _ in scan.files]
    workers = max(1, min(4, os.cpu_count() or 1))
    with ThreadPoolExecutor(max_workers=workers) as pool:  # Pillow decodes outside the GIL
        arrays = list(pool.map(lambda p: _read_folder_image(p, size, scan.channels), paths))
    _remember_unreadable(scan, frozenset(relative for (relative, _), array in zip(scan.files, arrays) if array is None))
    built = {}
    for split in SPLITS:
        chosen = [i for i, s in enumerate(assignment) if s == split]
        good = [i for i in chosen if arrays[i] is not None]
        if good:
            images = torch.from_numpy(np.stack([arrays[i] for i in good]))
        else:
            images = torch.zeros((0, scan.channels, size, size), dtype=torch.uint8)
        labels = torch.tensor([scan.files[i][1] for i in good], dtype=torch.int64)
        built[split] = (images, labels, len(chosen) - len(good))
    skipped = sum(value[2] for value in built.values())
    if skipped:
        log.info("%s: skipped %d unreadable or oversized image files", scan.root, skipped)
    return built


# --------------------------------------------------------------------------------------------------
# Caches and helpers


def _cache_root() -> Path:
    try:
        return settings.cache_dir()
    except OSError as exc:
        raise DataError(f"CNN_CACHE_DIR cannot be created ({_short(exc)}): point it at a writable folder.") from exc


def _check_image_size(size: int) -> int:
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or not MIN_IMAGE_SIZE <= size <= MAX_IMAGE_SIZE:
        raise DataError(f"image_size must be a whole number from {MIN_IMAGE_SIZE} to {MAX_IMAGE_SIZE}, not {size!r}.")
    return int(size)


def _resize_uint8(images: torch.Tensor, size: int, chunk: int = 2048) -> torch.Tensor:
    """Bilinear, antialiased resize of uint8 [N, C, H, W] images, in chunks to bound memory."""
    out = torch.empty((images.shape[0], images.shape[1], size, size), dtype=torch.uint8)
    for start in range(0, images.shape[0], chunk):
        block = images[start : start + chunk].float()
        resized = torch.nn.functional.interpolate(block, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        out[start : start + chunk] = resized.round_().clamp_(0, 255).to(torch.uint8)
    return out


def _mean_std(images: torch.Tensor, chunk: int = 4096) -> tuple[list[float], list[float]]:
    channels = images.shape[1]
    total = torch.zeros(channels, dtype=torch.float64)
    squares = torch.zeros(channels, dtype=torch.float64)
    count = 0
    for start in range(0, images.shape[0], chunk):
        block = images[start : start + chunk].to(torch.float64) / 255.0
        total += block.sum(dim=(0, 2, 3))
        squares += (block * block).sum(dim=(0, 2, 3))
        count += block.shape[0] * block.shape[2] * block.shape[3]
    if count == 0:
        raise DataError("The train split has no images to compute channel statistics from.")
    mean = total / count
    std = (squares / count - mean * mean).clamp_min(0).sqrt()
    return [float(v) for v in mean], [float(v) for v in std]


def _read_stats(path: Path, channels: int) -> tuple[list[float], list[float]] | None:
    try:
        data = json.loads(path.read_text())
        mean, std = [float(v) for v in data["mean"]], [float(v) for v in data["std"]]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return (mean, std) if len(mean) == len(std) == channels else None


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)[:80] or "dataset"


def _tensor_cache_path(name: str, size: int, split: str, fingerprint: str) -> Path:
    return _cache_root() / "tensors" / f"{_safe(name)}-{size}-{split}-{fingerprint[:16]}.pt"


def _read_tensor_cache(path: Path) -> tuple[torch.Tensor, torch.Tensor, int] | None:
    try:
        if not path.is_file():
            return None
        payload = torch.load(path, map_location="cpu", weights_only=True, mmap=path.stat().st_size > _CACHE_MMAP_BYTES)
        images, labels, skipped = payload["images"], payload["labels"], int(payload["skipped"])
    except Exception as exc:  # noqa: BLE001 - a damaged cache file is rebuilt, never fatal
        log.warning("Ignoring unreadable cache file %s (%s)", path, exc)
        return None
    valid = (
        isinstance(images, torch.Tensor) and isinstance(labels, torch.Tensor)
        and images.dtype == torch.uint8 and images.ndim == 4
        and labels.dtype == torch.int64 and labels.ndim in (1, 2) and labels.shape[0] == images.shape[0]
    )  # fmt: skip
    return (images, labels, skipped) if valid else None


def _write_tensor_cache(path: Path, images: torch.Tensor, labels: torch.Tensor, skipped: int) -> None:
    """Write atomically (temporary file, then rename) and drop older versions of the same split."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"images": _own_storage(images), "labels": _own_storage(labels), "skipped": int(skipped)}, temporary)
        os.replace(temporary, path)
        prefix = path.name.rsplit("-", 1)[0] + "-"
        for old in path.parent.glob(f"{glob.escape(prefix)}*.pt"):
            if old != path and len(old.name) == len(path.name):
                old.unlink(missing_ok=True)
    except OSError as exc:
        temporary.unlink(missing_ok=True)
        log.warning("Could not write the cache file %s (%s); the data will be re-read next time.", path, exc)


def _own_storage(tensor: torch.Tensor) -> torch.Tensor:
    """torch.save writes a tensor's whole storage: copy views so only their own bytes are written."""
    if tensor.untyped_storage().nbytes() != tensor.numel() * tensor.element_size() or not tensor.is_contiguous():
        return tensor.contiguous().clone()
    return tensor


def _write_json(path: Path, payload: dict) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary.write_text(json.dumps(payload))
        os.replace(temporary, path)
    except OSError as exc:
        temporary.unlink(missing_ok=True)
        log.warning("Could not write %s (%s)", path, exc)


def _memory_get(key: tuple) -> SplitData | None:
    with _STATE_LOCK:
        value = _MEMORY.get(key)
        if value is not None:
            _MEMORY.move_to_end(key)
        return value


def _memory_put(key: tuple, value: SplitData) -> None:
    def nbytes(data: SplitData) -> int:
        return data.images.numel() + data.labels.numel() * 8

    with _STATE_LOCK:
        _MEMORY[key] = value
        _MEMORY.move_to_end(key)
        while len(_MEMORY) > _MEMORY_MAX_ITEMS or (
            len(_MEMORY) > 1 and sum(nbytes(v) for v in _MEMORY.values()) > _MEMORY_MAX_BYTES
        ):
            _MEMORY.popitem(last=False)


def _key_lock(key: tuple) -> threading.Lock:
    with _STATE_LOCK:
        return _KEY_LOCKS.setdefault(key, threading.Lock())


def _file_stamp(path: Path) -> tuple[str, int, int]:
    stat = path.stat()
    return (str(path), stat.st_size, stat.st_mtime_ns)


def _digest(parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, default=str).encode()).hexdigest()


def _human_bytes(n_bytes: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB"):
        if n_bytes < 1000 or unit == "GB":
            return f"{n_bytes:.0f} {unit}" if unit == "bytes" else f"{n_bytes:.1f} {unit}"
        n_bytes /= 1000
    return f"{n_bytes:.1f} GB"


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."


# --------------------------------------------------------------------------------------------------
# Downloads: streamed into CNN_CACHE_DIR with byte progress, checked, then renamed into place


@dataclass(frozen=True)
class DownloadProgress:
    """How far a download is, for progress bars: bytes received over all of its files and their total
    (None while a server has not said how large its file is)."""

    done: int
    total: int | None
    filename: str  # the file being received

    @property
    def fraction(self) -> float | None:
        """done / total in [0, 1], or None while the total is unknown."""
        if not self.total:
            return None
        return min(1.0, self.done / self.total)

    def describe(self) -> str:
        """"12.3 of 206 MB", or "840.0 KB received" while the total is unknown."""
        scale, unit = (1e6, "MB") if max(self.done, self.total or 0) >= 1e6 else (1e3, "KB")
        done = f"{self.done / scale:.1f}"
        if self.total is None:
            return f"{done} {unit} received"
        total = self.total / scale
        return f"{done} of {total:.0f} {unit}" if total >= 100 else f"{done} of {total:.1f} {unit}"


@dataclass(frozen=True)
class _RemoteFile:
    url: str
    filename: str  # as served: pathmnist.npz, train-images-idx3-ubyte.gz
    md5: str | None  # the registry's checksum of the served file


@dataclass(frozen=True)
class _DownloadPlan:
    title: str
    alternatives: tuple[tuple[_RemoteFile, ...], ...]  # the same files on each server, tried in order
    folder: Path  # where they land, in CNN_CACHE_DIR
    how_to_get: str
    size_note: str
    mirror: str | None


def _download_mirror() -> str | None:
    mirror = settings.download_mirror()
    if mirror is not None:
        parsed = urlparse(mirror)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise DataError(
                f"CNN_DOWNLOAD_MIRROR must be an http:// or https:// address such as "
                f"http://10.0.0.5:8000/data, not {mirror!r}. Fix it, or unset it to use the official servers."
            )
    return mirror


def _download_plan(entry: _Entry) -> _DownloadPlan:
    """Which files to fetch from where (the mirror, else the registry's servers) and where they go."""
    info = entry.info
    mirror = _download_mirror()
    if info.family == "mnist":
        from torchvision.datasets import MNIST

        resources = [(filename, md5) for filename, md5 in MNIST.resources]
        bases = [mirror] if mirror else [base.rstrip("/") for base in MNIST.mirrors]
        alternatives = tuple(
            tuple(_RemoteFile(f"{base}/{filename}", filename, md5) for filename, md5 in resources) for base in bases
        )
        return _DownloadPlan(info.title, alternatives, _cache_root() / "MNIST" / "raw", _mnist_how_to_get(),
                             _MNIST_DOWNLOAD_SIZE, mirror)  # fmt: skip
    medinfo = _medmnist_table()[entry.flag]
    suffix = "" if entry.size == 28 else f"_{entry.size}"
    filename = _medmnist_filename(entry.flag, entry.size)
    url = f"{mirror}/{filename}" if mirror else medinfo[f"url{suffix}"]
    remote = _RemoteFile(url, filename, medinfo.get(f"MD5{suffix}"))
    return _DownloadPlan(info.title, ((remote,),), _cache_root() / "medmnist",
                         _medmnist_how_to_get(entry.flag, entry.size),
                         _medmnist_download_size(entry.flag, entry.size), mirror)  # fmt: skip


def _download_complete(entry: _Entry, plan: _DownloadPlan) -> bool:
    if entry.info.family == "mnist":
        return all((plan.folder / base).is_file() for base in _MNIST_BASENAMES)
    return (plan.folder / plan.alternatives[0][0].filename).is_file()


def _server(url: str) -> str:
    """"zenodo.org", or "host:port" when the address names a port."""
    parsed = urlparse(url)
    return f"{parsed.hostname}:{parsed.port}" if parsed.port else str(parsed.hostname)


def _connect_error(url: str, timeout: float) -> OSError | None:
    """None when a TCP connection to the URL's host and port opens, else the error."""
    parsed = urlparse(url)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        with socket.create_connection((parsed.hostname, port), timeout=timeout):
            return None
    except OSError as exc:
        return exc


def _reachable_alternatives(plan: _DownloadPlan, timeout: float = 5.0) -> list[tuple[_RemoteFile, ...]]:
    """The alternatives whose server answers a TCP connection: fail fast with a clear message when
    none does, instead of a long hang in the middle of a download."""
    reachable, error = [], None
    for files in plan.alternatives:
        failure = _connect_error(files[0].url, timeout)
        if failure is None:
            reachable.append(files)
        error = error or failure
    if reachable:
        return reachable
    if plan.mirror:
        raise DataError(
            f"Cannot download {plan.title}: the download mirror {plan.mirror} (CNN_DOWNLOAD_MIRROR) cannot be "
            f"reached ({_short(error)}). Start that server or unset CNN_DOWNLOAD_MIRROR. {plan.how_to_get}"
        )
    raise DataError(
        f"Cannot download {plan.title}: {_server(plan.alternatives[0][0].url)} cannot be reached "
        f"({_short(error)}); this computer seems to be offline. {plan.how_to_get}"
    )


class _ProgressMeter:
    """Counts received bytes and calls back with a `DownloadProgress`, at most every interval."""

    def __init__(self, callback: Callable[[DownloadProgress], None] | None, interval: float = _PROGRESS_INTERVAL_S):
        self.callback, self.interval = callback, interval
        self.done, self.sizes, self.filename = 0, [], ""
        self._last_report = -math.inf

    @property
    def total(self) -> int | None:
        return sum(self.sizes) if self.sizes and all(size is not None for size in self.sizes) else None

    def plan(self, sizes: list[int | None]) -> None:
        self.sizes = list(sizes)

    def begin(self, index: int, filename: str, length: int | None) -> None:
        """A file's transfer starts; its Content-Length, when sent, replaces the announced size."""
        self.filename = filename
        if length is not None:
            self.sizes[index] = length
        self._report(force=True)

    def add(self, n_bytes: int) -> None:
        self.done += n_bytes
        self._report(force=False)

    def finish(self) -> None:
        self.sizes = [self.done]  # every file was checked complete: the total is what arrived
        self._report(force=True)

    def _report(self, force: bool) -> None:
        if self.callback is None:
            return
        now = time.monotonic()
        if force or now - self._last_report >= self.interval:
            self._last_report = now
            self.callback(DownloadProgress(done=self.done, total=self.total, filename=self.filename))


def _open_url(url: str, method: str = "GET"):
    request = urllib.request.Request(url, method=method, headers={"User-Agent": _DOWNLOAD_USER_AGENT})
    return urllib.request.urlopen(request, timeout=_DOWNLOAD_TIMEOUT_S)  # noqa: S310 - http(s) only


def _content_length(response) -> int | None:
    try:
        length = int(response.headers.get("Content-Length", ""))
    except ValueError:
        return None
    return length if length >= 0 else None


def _network_error(
    plan: _DownloadPlan, file: _RemoteFile, exc: BaseException, received: int | None = None
) -> DataError:
    """A download failure as a sentence: who answered what, or what broke, and how else to get the file."""
    retry = " Nothing was kept; try again."
    if isinstance(exc, urllib.error.HTTPError):
        what = f"{_server(exc.url or file.url)} answered {exc.code} {exc.reason} for {file.url}"
        if 400 <= exc.code < 500:  # the file is not there (or not for us): trying again will not help
            retry = " Nothing was kept."
    elif isinstance(exc, urllib.error.URLError):
        reason = exc.reason if isinstance(exc.reason, BaseException) else exc
        what = f"{file.url} could not be reached ({_short(reason)})"
    elif received:
        what = f"the transfer broke off after {_human_bytes(received)} ({_short(exc)})"
    else:
        what = _short(exc)
    return DataError(f"Downloading {file.filename} failed: {what}.{retry} {plan.how_to_get}")


def _remote_sizes(plan: _DownloadPlan, files: tuple[_RemoteFile, ...]) -> list[int | None]:
    """Each file's size from a HEAD request, so that a download of several files has a total from the
    start (one file needs none: its GET says). A server without HEAD gives None for that file."""
    if len(files) == 1:
        return [None]
    sizes = []
    for file in files:
        try:
            with _open_url(file.url, method="HEAD") as response:
                sizes.append(_content_length(response))
        except urllib.error.HTTPError as exc:
            if exc.code not in (405, 501):  # HEAD not allowed / not implemented: the GET will say
                raise _network_error(plan, file, exc) from exc
            sizes.append(None)
        except (OSError, http.client.HTTPException) as exc:
            raise _network_error(plan, file, exc) from exc
    return sizes


def _expected_md5(plan: _DownloadPlan, file: _RemoteFile) -> tuple[str | None, str]:
    """The checksum to verify and where it comes from: a mirror's `<file>.md5` when it publishes one
    (it may serve its own re-compressed copy), else the registry's."""
    registry = "torchvision's MNIST list" if file.filename.endswith(".gz") else "medmnist's INFO"
    if not plan.mirror:
        return file.md5, registry
    sidecar = f"{file.url}.md5"
    try:
        with _open_url(sidecar) as response:
            text = response.read(4096).decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return file.md5, registry
        raise _network_error(plan, _RemoteFile(sidecar, f"{file.filename}.md5", None), exc) from exc
    except (OSError, http.client.HTTPException) as exc:
        raise _network_error(plan, _RemoteFile(sidecar, f"{file.filename}.md5", None), exc) from exc
    match = re.match(r"\s*([0-9a-fA-F]{32})\b", text)
    if match is None:
        raise DataError(
            f"The mirror's {sidecar} does not start with an MD5 checksum (32 hexadecimal digits, as `md5sum` "
            f"writes it). Fix or remove it on the mirror. {plan.how_to_get}"
        )
    return match.group(1).lower(), f"the mirror's {file.filename}.md5"


def _stream_to_part(plan: _DownloadPlan, file: _RemoteFile, index: int, part: Path, meter: _ProgressMeter) -> None:
    """GET one file into `part`, counting bytes and hashing as they arrive, then check length and MD5."""
    expected, origin = _expected_md5(plan, file)
    digest = hashlib.md5(usedforsecurity=False)
    received, length = 0, None
    try:
        with _open_url(file.url) as response, open(part, "wb") as out:
            length = _content_length(response)
            meter.begin(index, file.filename, length)
            while chunk := response.read(_DOWNLOAD_CHUNK_BYTES):
                out.write(chunk)
                digest.update(chunk)
                received += len(chunk)
                meter.add(len(chunk))
    except (OSError, http.client.HTTPException) as exc:
        raise _network_error(plan, file, exc, received) from exc
    if length is not None and received != length:
        raise DataError(
            f"Downloading {file.filename} failed: the transfer broke off after {received:,} of {length:,} bytes. "
            f"Nothing was kept; try again. {plan.how_to_get}"
        )
    if expected and digest.hexdigest() != expected:
        remedy = "Try again."
        if plan.mirror and not origin.startswith("the mirror"):
            remedy = (f"If the mirror serves its own copy on purpose, it can publish {file.filename}.md5 "
                      "(the `md5sum` line) beside it.")
        raise DataError(
            f"{file.filename} arrived damaged or is not the expected file: its MD5 is {digest.hexdigest()}, "
            f"but {origin} says {expected}. It was deleted. {remedy} {plan.how_to_get}"
        )


def _fetch_first_working(
    plan: _DownloadPlan, alternatives: list[tuple[_RemoteFile, ...]], meter: _ProgressMeter
) -> dict[str, Path]:
    """Download every file of the first server that has them all into temporary files in the target
    folder: {served file name: temporary file}. On any failure, or an interruption (KeyboardInterrupt,
    an exception raised by the progress callback), the temporary files are deleted before it propagates."""
    try:
        plan.folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(
            f"Cannot create {plan.folder} ({_short(exc)}): point CNN_CACHE_DIR at a writable folder."
        ) from exc
    for name in {name for files in alternatives for f in files for name in (f.filename, f.filename.removesuffix(".gz"))}:
        _remove_stale_parts(plan.folder, name)  # MNIST unpacks each .gz into a part of its own
    errors: list[DataError] = []
    for files in alternatives:
        try:
            sizes = _remote_sizes(plan, files)
        except DataError as exc:  # this server lacks a file: the next one may have them all
            errors.append(exc)
            continue
        meter.plan(sizes)
        parts: dict[str, Path] = {}
        try:
            for index, file in enumerate(files):
                parts[file.filename] = plan.folder / f".{file.filename}.{os.getpid()}.{threading.get_ident()}.part"
                _stream_to_part(plan, file, index, parts[file.filename], meter)
        except BaseException:
            for part in parts.values():
                part.unlink(missing_ok=True)
            raise
        meter.finish()
        return parts
    raise errors[-1]


def _remove_stale_parts(folder: Path, filename: str) -> None:
    """Delete the temporary `.<filename>.<pid>.<thread>.part` files of downloads whose process is gone (killed
    mid-download: nothing ran its cleanup). Parts of a live process, maybe another app's download, stay."""
    if os.name != "posix":  # os.kill(pid, 0) only asks on POSIX; on Windows it would end the process
        return
    for part in folder.glob(f".{glob.escape(filename)}.*.part"):
        pid = part.name[len(filename) + 2 :].split(".", 1)[0]
        if not pid.isdigit():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            part.unlink(missing_ok=True)
        except OSError:  # PermissionError: it exists, under another user
            pass


def _install_download(entry: _Entry, plan: _DownloadPlan, parts: dict[str, Path]) -> None:
    """Move checked downloads into place: the npz as it is; MNIST's archives unpacked (the cache keeps
    the uncompressed idx files torchvision reads), all four renamed only once all four unpacked."""
    if entry.info.family != "mnist":
        (filename, part), = parts.items()
        os.replace(part, plan.folder / filename)
        return
    unpacked: dict[str, Path] = {}
    try:
        for filename, part in parts.items():
            base = filename.removesuffix(".gz")
            unpacked[base] = plan.folder / f".{base}.{os.getpid()}.{threading.get_ident()}.part"
            with gzip.open(part, "rb") as reader, open(unpacked[base], "wb") as writer:
                shutil.copyfileobj(reader, writer, length=1024 * 1024)
        for base, path in unpacked.items():
            os.replace(path, plan.folder / base)
    except (OSError, EOFError, ValueError) as exc:
        raise DataError(
            f"The downloaded MNIST archives could not be unpacked into {plan.folder} ({_short(exc)}). "
            f"{plan.how_to_get}"
        ) from exc
    finally:
        for path in unpacked.values():
            path.unlink(missing_ok=True)
