"""The data-set registry: names to sources, and the functions every caller uses to load data.

Every data set ends up as one uint8 tensor [N, C, H, W] plus int64 labels per split. The first load reads
the source files and writes the tensors to `CNN_CACHE_DIR/tensors/`; later loads read those back, and a
small in-process LRU makes repeated calls in the app instant (`cache`). Nothing is ever written into
`CNN_DATA_DIR` (it may be read-only), and nothing is downloaded unless `download=True` or
`download_dataset()` asks for it; a missing data set raises `DataError` naming the missing files, where
they were looked for and how to get them.

Tensors handed out are shared with the in-process cache: treat them as read-only (index or `.float()`
them, which copies, rather than modifying them in place).
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import time
import zipfile
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import replace
from pathlib import Path

from ..errors import DataError
from ..settings import local_path
from . import cache, download
from .folders import FolderSource, clear_folder_caches, discover_folders, scan_folder
from .medmnist import MedmnistSource, clear_counts
from .mnist import MnistSource
from .source import DataSource, Progress
from .types import (FOLDER_SPLIT_SEED, MEDMNIST_2D_FLAGS, MEDMNIST_SIZES, DatasetInfo, DatasetStatus, SplitData,
                    shown_name)

log = logging.getLogger(__name__)

_REGISTERED_FOLDERS: dict[str, tuple[Path, int]] = {}  # name -> (root, split seed)
_FOLDER_OWNERS: dict[str, str] = {}  # name -> owner, for folders registered privately (one user's uploads)
_STATS: dict[tuple, tuple[list[float], list[float]]] = {}
_COUNTS: dict[tuple[str, str], dict[str, list[int]]] = {}


def clear_caches(*, forget_registered: bool = False) -> None:
    """Forget in-process caches (loaded splits, folder scans, statistics); disk caches stay.

    With `forget_registered`, also drop folders added by `register_image_folder`.
    """
    with cache.STATE_LOCK:
        cache.clear_memory()
        clear_folder_caches()
        _STATS.clear()
        _COUNTS.clear()
        clear_counts()
        if forget_registered:
            _REGISTERED_FOLDERS.clear()
            _FOLDER_OWNERS.clear()


# --------------------------------------------------------------------------------------------------
# Names


def builtin_name(name: str) -> tuple[str, int] | None:
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


def same_images_kind(name: str, other: str) -> bool:
    """Whether two data set names hold the same kind of images and classes: the same name, or one MedMNIST set at
    two sizes (dermamnist and dermamnist_64 share their classes; a model of one can be judged on the other)."""
    if name == other:
        return True
    first, second = builtin_name(name), builtin_name(other)
    return first is not None and second is not None and first[0] == second[0]


def resolve(name: str) -> DataSource:
    """The source of a registry name, or of the path of a folder with one sub-folder of images per class
    (registered under its folder's name on first use). DataError for anything else."""
    if not isinstance(name, str) or not name.strip():
        raise DataError(f"Name a data set; known ones: {_known_names_text()}.")
    builtin = builtin_name(name)
    if builtin is not None:
        flag, size = builtin
        return MnistSource() if flag == "mnist" else MedmnistSource(flag, size)
    folders = _folder_entries()
    if name in folders:
        root, seed = folders[name]
        return FolderSource(name, root, seed)
    path = Path(local_path(name)).expanduser()  # a card's "$CNN_CACHE_DIR/uploads/..." too
    if path.is_file() and path.suffix.lower() == ".zip" and zipfile.is_zipfile(path):  # not .npz, .pt, .docx
        raise DataError(f"{name} is a zip file: unpack it and give the folder (one sub-folder of images per class), "
                        "or upload the zip in the app's Dataset Gallery or Training Studio.")
    if not path.is_dir():
        raise DataError(
            f"Unknown data set {name!r}. Known: {_known_names_text()}. "
            "You can also give the path of a folder with one sub-folder of images per class."
        )
    root = path.resolve()
    for known, (known_root, seed) in folders.items():
        if known_root == root:
            return FolderSource(known, root, seed)
    scan_folder(root)  # raises DataError when it is no image folder
    folder_name = root.name
    if folder_name in folders or builtin_name(folder_name) is not None:
        folder_name = f"{root.name}-{hashlib.sha1(str(root).encode()).hexdigest()[:6]}"
    with cache.STATE_LOCK:
        _REGISTERED_FOLDERS[folder_name] = (root, FOLDER_SPLIT_SEED)
    return FolderSource(folder_name, root, FOLDER_SPLIT_SEED)


def _known_names_text() -> str:
    folders = list(_visible_folders(None))
    medmnist = ", ".join(MEDMNIST_2D_FLAGS)
    text = f"mnist, {medmnist} (add _64, _128 or _224 for larger MedMNIST images)"
    if folders:
        text += ", image folders: " + ", ".join(folders)
    return text


def _visible_folders(owner: str | None) -> dict[str, tuple[Path, int]]:
    """`_folder_entries()` without the folders private to other owners (with None: to anyone)."""
    with cache.STATE_LOCK:
        private = dict(_FOLDER_OWNERS)
    return {name: entry for name, entry in _folder_entries().items() if private.get(name) in (None, owner)}


def _folder_entries() -> dict[str, tuple[Path, int]]:
    """Registered folders, then every qualifying top-level folder of CNN_DATA_DIR not already named."""
    with cache.STATE_LOCK:
        entries = dict(_REGISTERED_FOLDERS)
    for name, root in discover_folders().items():
        # a folder named like a built-in set (pneumoniamnist/{normal,pneumonia}) is listed, as "<name>-folder"
        listed = name if builtin_name(name) is None else f"{name}-folder"
        if listed not in entries:
            entries[listed] = (root, FOLDER_SPLIT_SEED)
    return entries


# --------------------------------------------------------------------------------------------------
# What callers use


def list_datasets(*, owner: str | None = None) -> list[DatasetInfo]:
    """Every registry entry, present on disk or not: MNIST, 48 MedMNIST entries, then folders.

    Folders registered privately (`register_image_folder(..., owner=...)`, a user's uploads) are listed
    only for their `owner`, so on a shared server one student's zip never shows up in another's picker.
    """
    infos = [MnistSource().info]
    infos += [MedmnistSource(flag, size).info for flag in MEDMNIST_2D_FLAGS for size in MEDMNIST_SIZES]
    for name, (root, seed) in _visible_folders(owner).items():
        try:
            infos.append(FolderSource(name, root, seed).info)
        except DataError as exc:  # a folder that vanished or became unreadable since discovery
            log.warning("Skipping image folder %s: %s", root, exc)
    return infos


def get_dataset_info(name: str) -> DatasetInfo:
    """The description of `name`: a registry name or the path of an image folder."""
    return resolve(name).info


def dataset_status(name: str) -> DatasetStatus:
    """Whether `name` can be loaded offline, where it is, and what to do if it is not: checks files only."""
    return resolve(name).status()


def is_available(name: str) -> bool:
    """Whether a data set's files are here (False for unknown names too): the pages' cheap check."""
    try:
        return dataset_status(name).available
    except DataError:
        return False


def load_split(name: str, split: str, *, download: bool = False, image_size: int | None = None,
               progress: Progress | None = None) -> SplitData:
    """One split of a data set as uint8 tensors, from the caches when it was loaded before.

    `image_size` defaults to the data set's own size (28 for MNIST, the MedMNIST entry's size, 128
    for folders). MNIST and MedMNIST images are resized (bilinear, antialiased) when another size is
    asked for; folder images are fitted by `images.fit_image`. With `download=True` a missing MNIST or
    MedMNIST set is downloaded into CNN_CACHE_DIR first; without it, nothing touches the network.
    `progress` hears the fraction read while the sources are read (not called when a cache has the split;
    MedMNIST tells it as it decompresses). Raises DataError for unknown names and splits, missing or damaged
    files, and empty splits.
    """
    source = resolve(name)
    info = source.info
    if split not in info.splits:
        raise DataError(f"{info.title} has no split {split!r}; choose one of {', '.join(info.splits)}.")
    size = cache.check_image_size(info.image_size if image_size is None else image_size)
    located = source.locate()
    if located is None and download:
        download_dataset(info.name)
        located = source.locate()
    if located is None:
        raise source.missing_error()
    key = (info.name, split, size, located.fingerprint)
    result = cache.memory_get(key)
    if result is None:
        with cache.key_lock(key[:3]):
            result = cache.memory_get(key) or _load_or_build(source, located, split, size, progress)
    if len(result) == 0:
        raise DataError(f"The {split} split of {info.title} is empty: {source.empty_split_hint()}")
    return result


def load_splits(name: str, *, progress: Callable[[dict[str, float]], None] | None = None,
                every_s: float = 0.25) -> dict[str, SplitData]:
    """Every split of `name` (as `load_split`), two at a time: decompression and file reading release the
    GIL, so a first load of a large MedMNIST file takes about as long as its largest split. `progress` is
    called in the caller's thread every `every_s` seconds and at the end with {split: fraction read}."""
    info = get_dataset_info(name)
    weights = {split: (info.n_samples or {}).get(split, 1) for split in info.splits}
    heard = dict.fromkeys(info.splits, 0.0)  # written by the loading threads, read in this one

    def hear(split: str) -> Progress:
        return lambda fraction: heard.__setitem__(split, fraction)

    loaded: dict[str, SplitData] = {}
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="load-splits") as pool:
        pending = {pool.submit(load_split, name, split, progress=hear(split)): split
                   for split in sorted(info.splits, key=lambda split: -weights[split])}  # the largest first
        while pending:
            done, _ = wait(pending, timeout=every_s, return_when=FIRST_COMPLETED)
            for future in done:
                split = pending.pop(future)
                loaded[split] = future.result()  # the first DataError stops here
                heard[split] = 1.0
            if progress is not None:
                progress(dict(heard))
    return {split: loaded[split] for split in info.splits}


def _load_or_build(source: DataSource, located, split: str, size: int, progress: Progress | None = None) -> SplitData:
    """The disk cache when it matches the sources, else read the sources and write the cache."""
    info = replace(source.info, image_size=size)
    path = cache.tensor_cache_path(info.name, size, split, located.fingerprint)
    from_disk = cache.read_tensor_cache(path)
    if from_disk is not None:
        images, labels, skipped = from_disk
        result = SplitData(images=images, labels=labels, info=info, skipped=skipped)
        cache.memory_put((info.name, split, size, located.fingerprint), result)
        return result
    result = None
    for built_split, (images, labels, skipped) in source.build(located, split, size, progress).items():
        path = cache.tensor_cache_path(info.name, size, built_split, located.fingerprint)
        cache.write_tensor_cache(path, images, labels, skipped)
        data = SplitData(images=images, labels=labels, info=info, skipped=skipped)
        cache.memory_put((info.name, built_split, size, located.fingerprint), data)
        if built_split == split:
            result = data
    return result


def class_counts(name: str) -> dict[str, list[int]]:
    """Images per class in each split, {split: [count per class in class_names order]}; DataError when the
    data set is missing. Reads labels only for MNIST and MedMNIST, the listing for image folders.

    Cached in memory keyed by the source's fingerprint (files' sizes and times, a folder's split seed): a run's
    config asks twice (class weights, the small-validation rule), the studio once a minute per data set.
    """
    source = resolve(name)
    located = source.locate()
    if located is None:
        raise source.missing_error()
    key = (source.info.name, located.fingerprint)
    with cache.STATE_LOCK:
        counts = _COUNTS.get(key)
    if counts is None:
        counts = source.class_counts()
        still = source.locate()
        if still is not None and still.fingerprint == located.fingerprint:  # not replaced while it was read
            with cache.STATE_LOCK:
                _COUNTS[key] = counts
    return {split: list(values) for split, values in counts.items()}


def data_notes(name: str) -> list[str]:
    """Warnings for people about a data set's files: unreadable files left out, classes too small to reach
    every split (empty for the built-in sets)."""
    return resolve(name).notes()


def empty_class_error(name: str, class_names: list[str]) -> DataError:
    """The error for classes left without a readable image, naming them and their unreadable files."""
    source = resolve(name)
    parts = []
    for class_name in class_names:
        files = source.unreadable_in_class(class_name) if isinstance(source, FolderSource) else []
        shown = f" ({len(files)} unreadable file(s), e.g. {', '.join(files[:3])})" if files else ""
        parts.append(f"'{class_name}'{shown}")
    return DataError(
        f"Class {' and '.join(parts)} of {shown_name(name)} has no readable image, so nothing can be learned about it. Convert "
        "its images to PNG or JPEG (HEIC needs pillow-heif) or remove the class folder, then train again."
    )


def split_sizes(name: str) -> dict[str, int]:
    """Images per split that `load_split` will return, without loading them: estimates (steps of a run,
    "batch larger than the training set") need these, not the files listed (folders skip unreadable files)."""
    return resolve(name).split_sizes()


def channel_stats(name: str) -> tuple[list[float], list[float]]:
    """Per-channel mean and standard deviation, in [0, 1], of the train split at the data set's size.

    Cached in memory and in CNN_CACHE_DIR/stats/, keyed like the tensor cache.
    """
    source = resolve(name)
    size = source.info.image_size
    located = source.locate()
    if located is None:
        raise source.missing_error()
    key = (source.info.name, size, located.fingerprint)
    with cache.STATE_LOCK:
        if key in _STATS:
            return _STATS[key]
    path = cache.cache_root() / "stats" / f"{cache.safe_name(source.info.name)}-{size}-{located.fingerprint[:16]}.json"
    stats = cache.read_stats(path, source.info.channels)
    if stats is None:
        images = load_split(source.info.name, "train", image_size=size).images
        stats = cache.mean_std(images)
        cache.write_json(path, {"mean": stats[0], "std": stats[1]})
    with cache.STATE_LOCK:
        _STATS[key] = stats
    return stats


def register_image_folder(
    name: str, root: str | os.PathLike, *, seed: int = FOLDER_SPLIT_SEED, owner: str | None = None
) -> DatasetInfo:
    """Add a folder with one sub-folder of images per class (e.g. an unzipped upload) for this process.

    `seed` drives its stratified train/val/test split. With an `owner` (a user's id) the folder is private:
    `list_datasets` shows it to that owner only. Registering a name again replaces it, but only for the
    same owner: another owner's name is refused (DataError), as are built-in names and non-folders.
    """
    name = name.strip() if isinstance(name, str) else ""
    if not name:
        raise DataError("Give the image folder a name, e.g. 'brain_mri'.")
    if builtin_name(name) is not None:
        raise DataError(f"{name!r} is the name of a built-in data set; choose another name for this folder.")
    folder = Path(root).expanduser().resolve()
    source = FolderSource(name, folder, int(seed))  # raises DataError when it is no image folder
    with cache.STATE_LOCK:
        if name in _REGISTERED_FOLDERS and _FOLDER_OWNERS.get(name) != owner:
            raise DataError(f"{name!r} is already the name of another user's image folder; choose another name.")
        _REGISTERED_FOLDERS[name] = (folder, int(seed))
        if owner is not None:
            _FOLDER_OWNERS[name] = owner
    return source.info


def forget_image_folder(name: str) -> None:
    """Take a registered folder (an upload that was removed) out of this process's registry."""
    with cache.STATE_LOCK:
        _REGISTERED_FOLDERS.pop(name, None)
        _FOLDER_OWNERS.pop(name, None)


def registered_folder(name: str) -> tuple[str, str, int, str | None] | None:
    """(name, folder, split seed, owner) of a folder registered in this process (an upload), else None:
    what another process needs to register the same data set."""
    with cache.STATE_LOCK:
        if name not in _REGISTERED_FOLDERS:
            return None
        root, seed = _REGISTERED_FOLDERS[name]
        return (name, str(root), seed, _FOLDER_OWNERS.get(name))


def folder_owner(name: str) -> str | None:
    """Who registered the image folder `name` privately, or None for public folders and other names."""
    with cache.STATE_LOCK:
        return _FOLDER_OWNERS.get(name)


def download_dataset(
    name: str,
    progress: Callable[[str], None] | None = None,
    on_bytes: Callable[[download.DownloadProgress], None] | None = None,
) -> Path:
    """Download MNIST or a MedMNIST set into CNN_CACHE_DIR and return the folder that now holds it.

    `progress` receives short status lines (the CLI prints them, the gallery shows them); `on_bytes`
    receives a `DownloadProgress` when the transfer starts, at most every 0.1 s while bytes arrive and
    once at the end (then `fraction` is 1.0), for a progress bar. A failed or interrupted download leaves
    no partial file; MNIST's four files land together or not at all. Raises `DataError` when the server
    cannot be reached (offline), answers with an error, the transfer breaks off, or a file's MD5 is not the
    expected one. A data set already complete in the cache is not fetched again.

    The files come from `CNN_DOWNLOAD_MIRROR` when it is set: MNIST from `<mirror>/<file>.gz`, MedMNIST
    from `<mirror>/<flag>[_<size>].npz`. Their MD5 is the registry's (torchvision's `MNIST.resources`,
    medmnist's `INFO`) unless the mirror publishes `<file>.md5` beside a file.
    """
    source = resolve(name)
    info = source.info
    say = progress or (lambda message: None)
    plan = source.download_plan()
    with cache.key_lock(("download", info.name)):  # a second request for the same set waits, then finds it
        if source.download_complete(plan):
            say(f"{info.title} is already in {plan.folder}; delete it there to download it again.")
            return plan.folder
        reachable = download.reachable_alternatives(plan)
        server = download.server_name(reachable[0][0].url)
        say(f"Downloading {info.title} from {server} into {plan.folder}; size: {plan.size_note}.")
        started = time.monotonic()
        parts, received = download.fetch(plan, reachable, on_bytes)
        try:
            source.install(plan, parts)
        finally:
            for part in parts.values():
                part.unlink(missing_ok=True)
        say(f"{info.title} downloaded: {cache.human_bytes(received)} in {time.monotonic() - started:.1f} s.")
    clear_counts()
    return plan.folder


def download_server(name: str) -> str | None:
    """The server a missing MNIST or MedMNIST set would come from ("zenodo.org", the mirror's
    "host:port"), or None for image folders. Raises `DataError` for a malformed CNN_DOWNLOAD_MIRROR."""
    source = resolve(name)
    if isinstance(source, FolderSource):
        return None
    return download.server_name(source.download_plan().alternatives[0][0].url)


def download_server_reachable(name: str, timeout: float = 2.0) -> bool:
    """Whether a TCP connection to one of `name`'s download servers opens within `timeout` seconds, so
    that an offline computer gets instructions instead of a download button that cannot work."""
    try:
        source = resolve(name)
        if isinstance(source, FolderSource):
            return False
        alternatives = source.download_plan().alternatives
    except DataError:
        return False
    return any(download.connect_error(files[0].url, timeout) is None for files in alternatives)
