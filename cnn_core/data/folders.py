"""Image folders (a Kaggle download, an unzipped upload, brain_mri/): one sub-folder of images per class, or
split folders above them, or, without class folders, classes from a label table or the file names
(`listing.named_layout`).

A folder is listed (class names, files, channels) without decoding images; its listing's fingerprint keys
every cache. Files are split per class (stratified, seeded by a hash of each path, so the split does not
depend on listing order) into train/val/test 80/10/10. Each image is scaled so its shorter side fits the
image size and center-cropped (`images.fit_image`); files that cannot be read are skipped and counted.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .. import settings
from ..errors import DataError
from .cache import (CACHE_FORMAT, STATE_LOCK, cache_root, digest, human_bytes, reserved_memory, safe_name, short,
                    write_json)
from .layout import (copies_note, copies_of_siblings, describe_layout, is_split_wrapper, masks_note, small_classes,
                     split_folders, split_of_folder, split_quotas, unify_split_classes)
from .listing import (class_dirs, classes_note, has_image, image_files, is_hidden, listed_by_name, named_layout,
                      open_formats, table_files, unwrapped, wrapped_root)
from .images import ARCHIVE_SUFFIXES, DEFAULT_MAX_PIXELS, fit_image, is_jpeg, open_image
from .source import BuiltSplit, DataSource, Located, Progress
from .types import (FOLDER_IMAGE_SIZE, FOLDER_SPLIT_FRACTIONS, FOLDER_SPLIT_SEED, SPLITS, DatasetInfo, DatasetStatus,
                    shown_name)
from .zipnames import readable_name

log = logging.getLogger(__name__)

#: Images in folders larger than this (width x height, read from the header) are skipped and counted,
#: so a decompression bomb among them costs nothing.
MAX_IMAGE_PIXELS = DEFAULT_MAX_PIXELS
#: Top-level folders of CNN_DATA_DIR that hold other families' files, never an image folder data set.
EXCLUDED_TOP_FOLDERS = {"mnist", "medmnist"}

_FOLDER_SCANS: dict[str, "FolderScan"] = {}
_ASSIGNMENTS: dict[tuple[str, int], tuple[str, ...]] = {}
_UNREADABLE: dict[str, frozenset[str]] = {}  # folder listing fingerprint -> files (relative) that cannot be read


class FolderSource(DataSource):
    """A folder data set under a name, with the seed of its split."""

    def __init__(self, name: str, root: Path, seed: int = FOLDER_SPLIT_SEED) -> None:
        self.root, self.seed = root, seed
        self.scan = scan_folder(root)
        self.info = folder_info(name, self.scan, seed)

    def status(self) -> DatasetStatus:
        return DatasetStatus(info=self.info, available=True, location=self.root, searched=[self.root], missing=[],
                             how_to_get="", download_size=None)  # fmt: skip

    def locate(self) -> Located:
        fingerprint = digest([CACHE_FORMAT, "folder", self.scan.fingerprint, self.seed, FOLDER_SPLIT_FRACTIONS])
        return Located(fingerprint=fingerprint, location=self.root, files=self.scan)

    def read(self, located: Located, split: str, progress: Progress | None = None) -> dict[str, BuiltSplit]:
        return self.build(located, split, self.info.image_size)

    def build(self, located: Located, split: str, size: int,
              progress: Progress | None = None) -> dict[str, BuiltSplit]:
        return _build_folder(self.scan, self.seed, size)

    def split_sizes(self) -> dict[str, int]:
        """`n_samples` counts every image file listed, while loading skips unreadable ones. A folder's unreadable
        files are found by decoding each once per folder listing (small and in threads; nothing if a load already
        did it) and remembered in this process and in CNN_CACHE_DIR/folders/."""
        unreadable = unreadable_files(self.scan)
        counts = dict.fromkeys(SPLITS, 0)
        for (relative, _), split in zip(self.scan.files, folder_assignment(self.scan, self.seed)):
            if relative not in unreadable:
                counts[split] += 1
        return counts

    def class_counts(self) -> dict[str, list[int]]:
        """From the listing and the split assignment, readable files only (nothing is decoded twice)."""
        unreadable = unreadable_files(self.scan)
        counts = {split: [0] * len(self.scan.class_names) for split in SPLITS}
        for (relative, index), split in zip(self.scan.files, folder_assignment(self.scan, self.seed)):
            if relative not in unreadable:
                counts[split][index] += 1
        return counts

    def notes(self) -> list[str]:
        """Unreadable files (count and the first names), what was left out, classes too small for every split
        and classes missing from a split folder."""
        unreadable = sorted(unreadable_files(self.scan))
        counts = self.class_counts()
        sizes = dict(zip(self.scan.class_names, map(sum, zip(*counts.values()))))
        notes = []
        if unreadable:
            notes.append(f"{len(unreadable)} file(s) could not be read as images and are left out"
                         f" (e.g. {', '.join(readable_name(name) for name in unreadable[:3])})")
        if self.scan.left_out:
            notes.append(copies_note(self.root.name, self.scan.left_out))  # no server path: notes reach cards
        if self.scan.unlabelled:  # where the classes came from is the layout's (`DatasetInfo.classes_from`)
            left = ", ".join(f"{count} image(s) {'at' if where == 'the top' else 'in'} {where}"
                             for where, count in self.scan.unlabelled)
            notes.append(f"left out {left}, with no class in their names or a label table")
        if self.scan.masks:
            notes.append(masks_note(self.scan.masks))
        notes += small_classes(sizes)
        for split in sorted(set(self.scan.given_splits) - {"train"}):  # a test/ folder that lacks a class
            missing = [name for name, count in zip(self.scan.class_names, counts[split])
                       if count == 0 and sizes[name] >= len(SPLITS)]
            if missing:
                notes.append(f"the {split} folder holds no image of {', '.join(missing)}: "
                             f"{'its' if len(missing) == 1 else 'their'} recall and ROC-AUC on {split} are n/a")
        return notes

    def unreadable_in_class(self, class_name: str) -> list[str]:
        """The unreadable files of one class (relative paths), e.g. to say why the class is empty."""
        index = self.scan.class_names.index(class_name)
        unreadable = unreadable_files(self.scan)
        return [relative for relative, i in self.scan.files if i == index and relative in unreadable]

    def empty_split_hint(self) -> str:
        return (
            f"the folder {self.root} holds too few readable images for an 80/10/10 split. "
            "Add images (at least 10 per class is a useful minimum)."
        )


def clear_folder_caches() -> None:
    """Forget folder listings, split assignments and readability checks held in this process."""
    with STATE_LOCK:
        _FOLDER_SCANS.clear()
        _ASSIGNMENTS.clear()
        _UNREADABLE.clear()


def discover_folders() -> dict[str, Path]:
    """Every top-level folder of CNN_DATA_DIR whose images fall into at least two classes (class folders, a label
    table or file names: `_count_image_classes`), by name."""
    data = settings.data_dir()
    try:
        children = sorted(data.iterdir()) if data.is_dir() else []
    except OSError:
        children = []
    found = {}
    for child in children:
        if child.name.lower() in EXCLUDED_TOP_FOLDERS or is_hidden(child.name) or not child.is_dir():
            continue
        if _count_image_classes(child) >= 2:
            found[readable_name(child.name)] = child.resolve()  # a name that is not UTF-8 could not be printed
    return found


@dataclass(frozen=True)
class FolderScan:
    root: Path
    class_names: tuple[str, ...]
    files: tuple[tuple[str, int], ...]  # (path relative to root, class index), sorted by path
    channels: int
    fingerprint: str
    given_splits: tuple[str, ...] = ()  # per file: its split folder's split; empty for class folders at the top
    left_out: tuple[str, ...] = ()  # folders (relative) that repeat their siblings: `layout.copies_of_siblings`
    classes_from: str | None = None  # with no class folders: "the file names (cat.0.jpg: cat, ...)", a label table
    unlabelled: tuple[tuple[str, int], ...] = ()  # then: images left out, with no class there ("test1/", n)
    masks: tuple[str, ...] = ()  # segmentation masks left out (relative): `layout.segmentation_masks`


def _count_image_classes(root: Path) -> int:
    """Class folders with images: at the top, or inside split folders (`train/cat`) when those are there; else
    the classes a label table or the file names give (`listing.named_layout`)."""
    try:
        root = wrapped_root(root)
        top = [child for child in class_dirs(root) if has_image(child)]
        try:
            named = named_layout(root, top)
        except DataError:  # an unclear table or layout: listed, and `scan_folder` says what is wrong
            return 2
        if named is not None:
            return len({name for labels in named.labels.values() for name in labels.values()})
        try:
            splits = bool(_top_layout(root, top))
        except DataError:  # split and class folders mixed: listed, and `scan_folder` says what is wrong
            splits = True
        if splits:
            return len({cls.name for child in top for cls in class_dirs(unwrapped(child)) if has_image(cls)})
        return len(top)
    except OSError:
        return 0


def _top_layout(root: Path, top: list[Path]) -> dict[str, str] | None:
    """`layout.split_folders` for the folders `top` under `root`, told which are flat (a wrapper skipped)."""
    inner = {child.name: [sub for sub in class_dirs(unwrapped(child)) if has_image(sub)] for child in top}
    flat = [name for name, folders in inner.items()  # images only, or only in a wrapper of its name (seg_pred/seg_pred/)
            if not folders or (len(folders) == 1 and is_split_wrapper(name, folders[0].name)
                               and not any(has_image(sub) for sub in class_dirs(folders[0])))]
    return split_folders(str(root), list(inner), flat,
                         [sub.name for name, folders in inner.items() if split_of_folder(name) for sub in folders])


def _without_copies(root: Path, folders: list[Path]) -> tuple[list[Path], list[str]]:
    """`folders` less those that hold their siblings again (`layout.copies_of_siblings`), and those left out
    (relative to `root`)."""
    inner = {folder.name: {sub.name for sub in class_dirs(folder) if has_image(sub)} for folder in folders}
    copies = set(copies_of_siblings(inner))
    return ([folder for folder in folders if folder.name not in copies],
            [folder.relative_to(root).as_posix() for folder in folders if folder.name in copies])


def scan_folder(root: Path) -> FolderScan:
    """List a folder data set (class names, files, channels); cached by its listing's fingerprint.

    Class folders at the top (`pets/cat`, `pets/dog`) or inside split folders (`pets/train/cat`,
    `pets/test/cat`: see `layout.split_folders`); without class folders, classes from a label table at the top
    or the file names (`pets/train.csv`, `pets/train/cat.0.jpg`: `layout.classes_without_folders`). DataError for
    a folder that is none of these, or mixes them."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"The image folder {root} does not exist (any more).")
    masks: list[Path] = []  # segmentation masks beside their images (BUSI's "benign (1)_mask.png"): left out
    try:
        root = wrapped_root(root)  # pets/pets/{cat,dog}: the files are listed from the inner folder
        top, left_out = _without_copies(root, [child for child in class_dirs(root) if has_image(child)])
        named = named_layout(root, top)
        if named:  # no class folders: the file names or a label table give the classes
            classes_from, groups = named.source, []
            listed, unlabelled = listed_by_name(root, named.labels, masks)
            layout = {folder: split for folder in named.labels if (split := split_of_folder(folder))} or None
        else:  # an upload's class folders may have been made from its file names or label table
            listed, classes_from, unlabelled = [], classes_note(root), []
            layout = _top_layout(root, top)
            groups = [(child, layout[child.name]) for child in top if child.name in layout] if layout else [(root, "")]
            unlabelled = [(f"{child.name}/", len(image_files(child))) for child in top
                          if layout and child.name not in layout]  # seg_pred/ beside seg_train/<class>/
        for folder, split in groups:
            classes = top
            if layout:
                inside = class_dirs(unwrapped(folder))
                classes, copies = _without_copies(root, [child for child in inside if has_image(child)])
                left_out += copies
            listed += [(split, readable_name(child.name), image_files(child, masks=masks)) for child in classes]
    except OSError as exc:
        raise DataError(f"The image folder {root} cannot be read ({short(exc)}).") from exc
    if layout:  # test/NORMAL is train/Normal's class; a class without train images is refused
        names = unify_split_classes(str(root), [(split, name) for split, name, entries in listed if entries])
        listed = [(split, names.get((split, name), name), entries) for split, name, entries in listed]
    class_names = sorted({name for _, name, entries in listed if entries})
    if len(class_names) < 2:
        archives = sorted(path.name for path in root.iterdir() if path.name.lower().endswith(ARCHIVE_SUFFIXES))
        raise DataError(
            f"{root} is not an image folder data set: it needs one sub-folder per class with image files "
            f"(PNG, JPEG, HEIC, ...) in at least two of them, e.g. {root}/yes/*.jpg and {root}/no/*.jpg "
            f"(or inside split folders: {root}/train/yes/*.jpg), or images named by class (cat.0.jpg, dog.0.jpg), "
            "or images beside a CSV label table."
            + (f" It holds archives ({', '.join(archives[:4])}): unzip them first." if archives else "")
        )
    files, listing = [], []
    for split, name, entries in listed:
        for path, stat in entries:
            relative = path.relative_to(root).as_posix()
            files.append((relative, class_names.index(name), split))
            listing.append((relative, stat.st_size, stat.st_mtime_ns))
    if named:  # the label tables too: a class corrected in train.csv is a new listing
        listing += [(path.name, path.stat().st_size, path.stat().st_mtime_ns) for path in table_files(root)]
    files.sort()
    listing.sort()
    fingerprint = digest([str(root), listing])
    with STATE_LOCK:
        cached = _FOLDER_SCANS.get(fingerprint)
    if cached is not None:
        return cached
    scan = FolderScan(
        root=root,
        class_names=tuple(class_names),
        files=tuple((relative, index) for relative, index, _ in files),
        channels=_cached_folder_channels(root, fingerprint, [relative for relative, _, _ in files]),
        fingerprint=fingerprint,
        given_splits=tuple(split for _, _, split in files) if layout else (),
        left_out=tuple(left_out),
        classes_from=classes_from,
        unlabelled=tuple(unlabelled),
        masks=tuple(path.relative_to(root).as_posix() for path in masks),
    )
    with STATE_LOCK:
        _FOLDER_SCANS[fingerprint] = scan
    return scan


def _cached_folder_channels(root: Path, fingerprint: str, relatives: list[str]) -> int:
    """`_folder_channels`, remembered in CNN_CACHE_DIR/folders/ so a new process opens no image."""
    path = cache_root() / "folders" / f"{safe_name(root.name)}-{fingerprint[:16]}.json"
    try:
        channels = json.loads(path.read_text())["channels"]
        if channels in (1, 3):
            return channels
    except (OSError, ValueError, KeyError, TypeError):
        pass
    channels = _folder_channels(root, relatives)
    write_json(path, {"root": str(root), "channels": channels})
    return channels


def _folder_channels(root: Path, relatives: Iterable[str]) -> int:
    """1 when every readable image is grayscale (judged from the header and palette), else 3."""
    any_readable = False
    for relative in relatives:
        try:
            with Image.open(root / relative, formats=open_formats()) as image:
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


def folder_info(name: str, scan: FolderScan, seed: int) -> DatasetInfo:
    counts = _folder_split_counts(scan, seed)
    per_class = [0] * len(scan.class_names)
    for _, index in scan.files:
        per_class[index] += 1
    class_text = ", ".join(f"{cls} {count}" for cls, count in zip(scan.class_names, per_class))
    return DatasetInfo(
        name=name,
        title=f"{shown_name(name)} (your upload)" if shown_name(name) != name else f"{name} (image folder)",
        family="folder",
        class_names=scan.class_names,
        channels=scan.channels,
        image_size=FOLDER_IMAGE_SIZE,
        task="binary-class" if len(scan.class_names) == 2 else "multi-class",
        splits=SPLITS,
        source=str(scan.root),
        description=(
            (f"A folder of images whose classes come from {scan.classes_from}: "
             if scan.classes_from else "A folder of images with one sub-folder per class: ")
            + f"{len(scan.files)} image files "
            f"({class_text}). "
            + (f"Layout: {describe_layout(scan.given_splits)} (seed {seed}); " if scan.given_splits else
               f"Split by this app per class (stratified) into train/val/test "
               f"{'/'.join(f'{f:.0%}' for f in FOLDER_SPLIT_FRACTIONS)} with seed {seed}; ")
            + "each image is "
            "scaled so its shorter side fits the image size and center-cropped to a square. "
            + ("All images are grayscale, so 1 channel." if scan.channels == 1 else "Loaded as RGB.")
            + " Files that cannot be read are skipped and counted."
        ),
        license="as given by the folder's owner",
        n_samples=counts,
        root=str(scan.root),
        layout=(f"classes from {scan.classes_from}; " if scan.classes_from else "")
        + (describe_layout(scan.given_splits) if scan.given_splits else
           ("" if scan.classes_from else "class folders; ") + "split by this app per class (stratified) "
           + "/".join(f"{f:.0%}" for f in FOLDER_SPLIT_FRACTIONS)),
        classes_from=scan.classes_from,
    )


def folder_assignment(scan: FolderScan, seed: int) -> list[str]:
    """The split of every file of `scan.files`: its split folder's, or a stratified, seeded split that does
    not depend on the order the files were listed in (each class's files are ranked by a hash of seed and
    path). Split folders without val/ or test/ have them carved from train/ the same way."""
    key = (scan.fingerprint, seed)
    with STATE_LOCK:
        cached = _ASSIGNMENTS.get(key)
    if cached is not None:
        return list(cached)
    if scan.given_splits:
        assignment = list(scan.given_splits)
        carved = [split for split in SPLITS[1:] if split not in assignment]
        if carved:  # e.g. train/ and test/: val is 10 % of train/, as in an 80/10/10 split
            splits = ("train", *carved)
            fractions = [FOLDER_SPLIT_FRACTIONS[0]] + [FOLDER_SPLIT_FRACTIONS[SPLITS.index(c)] for c in carved]
            fractions = [f / sum(fractions) for f in fractions]
            train = [p for p, split in enumerate(assignment) if split == "train"]
            for position, split in _stratified(scan, train, splits, fractions, seed).items():
                assignment[position] = split
    else:
        assignment = [""] * len(scan.files)
        for position, split in _stratified(scan, range(len(scan.files)), SPLITS, FOLDER_SPLIT_FRACTIONS, seed).items():
            assignment[position] = split
    with STATE_LOCK:
        _ASSIGNMENTS[key] = tuple(assignment)
    return assignment


def _stratified(scan: FolderScan, positions: Iterable[int], splits: tuple[str, ...], fractions, seed: int
                ) -> dict[int, str]:
    """{position in scan.files: split} for these files, per class in proportion to `fractions`."""
    by_class: dict[int, list[int]] = {}
    for position in positions:
        by_class.setdefault(scan.files[position][1], []).append(position)
    sizes = [len(by_class.get(i, [])) for i in range(len(scan.class_names))]
    quotas = split_quotas(sizes, fractions)
    chosen = {}
    for index, members in by_class.items():
        ranked = sorted(members, key=lambda p: _rank(seed, scan.files[p][0]))
        start = 0
        for split, quota in zip(splits, quotas):
            for position in ranked[start : start + quota[index]]:
                chosen[position] = split
            start += quota[index]
    return chosen


def _rank(seed: int, relative: str) -> bytes:
    """A file's place in its class's seeded shuffle; names that are not UTF-8 hash by their bytes."""
    return hashlib.sha256(f"{seed}/{relative}".encode(errors="surrogateescape")).digest()


def _folder_split_counts(scan: FolderScan, seed: int) -> dict[str, int]:
    assignment = folder_assignment(scan, seed)
    return {split: assignment.count(split) for split in SPLITS}


#: Side the readability check decodes folder images to (JPEGs decode at 1/8 scale): small is fast.
_READABILITY_CHECK_SIZE = 32


def _readability_path(scan: FolderScan) -> Path:
    return cache_root() / "folders" / f"{safe_name(scan.root.name)}-{scan.fingerprint[:16]}-unreadable.json"


def unreadable_files(scan: FolderScan) -> frozenset[str]:
    """The files of `scan` (relative paths) that loading skips: from memory, CNN_CACHE_DIR, or decoded once."""
    with STATE_LOCK:
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
            arrays = pool.map(lambda p: read_folder_image(p, _READABILITY_CHECK_SIZE, scan.channels), paths)
            known = frozenset(relative for (relative, _), array in zip(scan.files, arrays) if array is None)
        _remember_unreadable(scan, known)
    with STATE_LOCK:
        _UNREADABLE[scan.fingerprint] = known
    return known


def _remember_unreadable(scan: FolderScan, unreadable: frozenset[str]) -> None:
    with STATE_LOCK:
        _UNREADABLE[scan.fingerprint] = unreadable
    write_json(_readability_path(scan), {"root": str(scan.root), "unreadable": sorted(unreadable)})


def read_folder_image(path: Path, image_size: int, channels: int) -> np.ndarray | None:
    """One file as uint8 [C, S, S], or None when it is not a readable image or is too large."""
    try:
        with open_image(path, open_formats()) as image:
            if is_jpeg(image):  # decode big JPEGs (and MPOs) at 1/2, 1/4, 1/8: a 48 MP phone photo costs 1 MP
                image.draft(image.mode, (image_size, image_size))
            if image.width * image.height > MAX_IMAGE_PIXELS or image.width < 1 or image.height < 1:
                return None
            image.load()
            return fit_image(image, image_size, channels)
    except Exception:  # noqa: BLE001 - Pillow raises many types (and DecompressionBombError) for bad files
        return None


def _build_folder(scan: FolderScan, seed: int, size: int) -> dict[str, BuiltSplit]:
    image_bytes = len(scan.files) * scan.channels * size * size  # uint8, each read once, then stacked by split
    with reserved_memory(2 * image_bytes, f"Reading {len(scan.files):,} images of {scan.root.name} at {size}×{size} "
                         f"px, {human_bytes(image_bytes)},", "read them at a smaller image size, or use a computer "
                         "with more memory."):
        return _decode_folder(scan, seed, size)


def _decode_folder(scan: FolderScan, seed: int, size: int) -> dict[str, BuiltSplit]:
    assignment = folder_assignment(scan, seed)
    paths = [scan.root / relative for relative, _ in scan.files]
    workers = max(1, min(4, os.cpu_count() or 1))
    with ThreadPoolExecutor(max_workers=workers) as pool:  # Pillow decodes outside the GIL
        arrays = list(pool.map(lambda p: read_folder_image(p, size, scan.channels), paths))
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

