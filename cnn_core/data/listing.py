"""What a folder on disk holds, as image folder data sets read it: image files (told by name or content), class
folders, split folders' wrappers, and, for images in no class folder, the classes their file names or a label
table give (`layout.classes_without_folders`). Names are listed without decoding any image."""

from __future__ import annotations

import functools
import os
from pathlib import Path

from PIL import Image

from .images import ALLOWED_FORMATS, IMAGE_SUFFIXES, maybe_image_name
from .layout import (MAX_LABEL_TABLE_BYTES, Classes, Table, classes_without_folders, is_split_wrapper, parse_table,
                     segmentation_masks, split_of_folder)


#: A hidden file in an unpacked upload that says where its classes came from when the zip had no class folders
#: (the class folders were made from file names or a label table), for the folder's description and notes.
CLASSES_NOTE = ".classes-from.txt"


def classes_note(root: Path) -> str | None:
    """What `CLASSES_NOTE` in `root` says ("the label table labels.csv (image_id → diagnosis)"), or None."""
    try:
        return (root / CLASSES_NOTE).read_text(encoding="utf-8").strip() or None
    except OSError:
        return None


@functools.lru_cache(maxsize=1)
def open_formats() -> tuple[str, ...]:
    """The allowed formats Pillow can open. Pillow registers no opener for "MPO" (the JPEG plugin
    opens MPO files), and naming an unregistered format makes `Image.open` raise KeyError."""
    Image.init()
    return tuple(name for name in ALLOWED_FORMATS if name in Image.OPEN)


def is_hidden(name: str) -> bool:
    """Whether a file or folder is system clutter that no data set counts: .DS_Store, macOS's ._x.jpg,
    .ipynb_checkpoints/, __MACOSX/."""
    return name.startswith(".") or name.startswith("__")


def class_images(class_dir: Path) -> list[Path]:
    """The image files a class folder holds, as a data set counts them: recursively, sorted, hidden files and
    folders (.DS_Store, macOS's ._x.jpg, .ipynb_checkpoints/, __MACOSX/) skipped."""
    return [path for path, _ in image_files(class_dir)]


def image_files(class_dir: Path, recursive: bool = True, masks: list[Path] | None = None
                ) -> list[tuple[Path, os.stat_result]]:
    """Image files under one class folder, recursively (or only those directly in it), sorted; hidden ones
    skipped, and segmentation masks beside their images (`layout.segmentation_masks`: BUSI's "benign (1)_mask.png"),
    which are added to `masks` when it is given. A file counts by its name's ending (`IMAGE_SUFFIXES`) or, when the
    name says nothing (`img001`, `scan.dat`), by its content."""
    found = []
    for dirpath, dirnames, filenames in os.walk(class_dir):
        dirnames[:] = sorted(d for d in dirnames if not is_hidden(d)) if recursive else []
        beside = segmentation_masks(f for f in filenames if not is_hidden(f) and maybe_image_name(f))
        if masks is not None:
            masks += [Path(dirpath) / name for name in sorted(beside)]
        for filename in sorted(filenames):
            if is_hidden(filename) or not maybe_image_name(filename) or filename in beside:
                continue
            path = Path(dirpath) / filename
            try:
                stat = path.stat()
            except OSError:
                continue  # a dangling link: not an image we can read
            if path.suffix.lower() in IMAGE_SUFFIXES or content_is_image(path, stat.st_size, stat.st_mtime_ns):
                found.append((path, stat))
    return found


@functools.lru_cache(maxsize=65536)
def content_is_image(path: Path, size: int, mtime_ns: int) -> bool:
    """Whether Pillow recognises the file's header as an allowed format (nothing is decoded); cached per
    version of the file (`size`, `mtime_ns`). TGA has no signature to recognise, so only its name tells."""
    try:
        with Image.open(path, formats=[name for name in open_formats() if name != "TGA"]):
            return True
    except Exception:  # noqa: BLE001 - not an image, or unreadable: either way not one
        return False


def class_dirs(root: Path) -> list[Path]:
    return sorted(child for child in root.iterdir() if child.is_dir() and not is_hidden(child.name))


def unwrapped(folder: Path) -> Path:
    """A split folder's single wrapper folder skipped: training_set/training_set/cats/ (Kaggle's "Cat and Dog");
    `layout.is_split_wrapper` says which inner folder is one."""
    while len(inner := [child for child in class_dirs(folder) if has_image(child)]) == 1 and is_split_wrapper(
            folder.name, inner[0].name) and any(has_image(sub) for sub in class_dirs(inner[0])):
        folder = inner[0]
    return folder


def wrapped_root(root: Path) -> Path:
    """`root` without the wrapper folders around its class or split folders, as Windows' "Extract All" makes
    pets/pets/{cat,dog}/ of pets.zip: a folder that holds one folder with images (not a split folder), no image
    or label table beside it, and in it two folders with images or a split folder (the zip import skips these
    wrappers too)."""
    inside = root
    while True:
        folders = [child for child in class_dirs(inside) if has_image(child)]
        if inside != root and (len(folders) >= 2 or any(split_of_folder(child.name) for child in folders)):
            return inside
        if len(folders) != 1 or split_of_folder(folders[0].name) or image_names(inside) or table_files(inside):
            return root
        inside = folders[0]


def has_image(class_dir: Path) -> bool:
    """Whether a folder holds an image, looking at names first (cheap) and at contents only if needed."""
    for _, dirnames, filenames in os.walk(class_dir):
        dirnames[:] = [d for d in dirnames if not is_hidden(d)]
        if any(not is_hidden(f) and Path(f).suffix.lower() in IMAGE_SUFFIXES for f in filenames):
            return True
    return bool(image_files(class_dir))


def named_layout(root: Path, top: list[Path]) -> Classes | None:
    """`layout.classes_without_folders` for images in no class folder (APTOS's train.csv, Kaggle's
    train/cat.0.jpg), from the names and the label tables at the top (images are not decoded or stat'ed: folder
    discovery asks this of every folder; only a file without an image ending is sniffed, as everywhere); None
    where there are class folders."""
    paths = table_files(root)
    if not paths and sum(not split_of_folder(child.name) for child in top) >= 2:  # cat/, dog/: as the layout rules
        return None
    flat = {child: _flat_end(child) for child in top}
    if any(end is None for end in flat.values()):
        return None
    tables = {path.name: rows for path in paths if (rows := label_table(path))}  # read only where they may count
    return classes_without_folders(str(root), tables, image_names(root),
                                   {end.relative_to(root).as_posix(): image_names(end) for end in flat.values()})


def _flat_end(folder: Path) -> Path | None:
    """The folder of images at the end of `folder`'s chain of single sub-folders (data/images/ beside a label
    table, as a zip's wrapper folders are skipped), or None where a folder holds class-like sub-folders."""
    while subs := [sub for sub in class_dirs(folder) if has_image(sub)]:
        if len(subs) > 1 or image_names(folder):
            return None
        folder = subs[0]
    return folder


def table_files(root: Path) -> list[Path]:
    return sorted(path for path in root.glob("*.[cC][sS][vV]") if path.is_file() and not is_hidden(path.name))


def label_table(path: Path) -> Table | None:
    try:
        stat = path.stat()
        return _read_label_table(str(path), stat.st_size, stat.st_mtime_ns)
    except OSError:
        return None


@functools.lru_cache(maxsize=16)
def _read_label_table(path: str, size: int, mtime_ns: int) -> Table | None:
    """A label table's rows (`layout.parse_table`), parsed once per version of the file (folder discovery asks
    again and again; Kaggle sets ship 3-4 tables each); None when it is larger than `layout.MAX_LABEL_TABLE_BYTES`."""
    return parse_table(Path(path).read_bytes()) if size <= MAX_LABEL_TABLE_BYTES else None


def image_names(folder: Path) -> list[str]:
    """The names of the images directly in `folder` (by their endings), segmentation masks left out."""
    with os.scandir(folder) as entries:
        names = sorted(entry.name for entry in entries
                       if not is_hidden(entry.name) and maybe_image_name(entry.name) and entry.is_file())
    masks = segmentation_masks(names)
    return [name for name in names if name not in masks]


def listed_by_name(root: Path, named: dict[str, dict[str, str]], masks: list[Path] | None = None
                   ) -> tuple[list, list[tuple[str, int]]]:
    """The listing `scan_folder` builds from class folders, (split, class, files), for classes given by file
    names or a label table, and the images left out as unlabelled, by folder ("test1/", 12500); segmentation
    masks beside their images are added to `masks` (`image_files`)."""
    listed, unlabelled = [], []
    for folder, labels in named.items():
        by_class: dict[str, list] = {}
        entries = image_files(root / folder, recursive=False, masks=masks)  # folder "": the top
        for path, stat in entries:
            if path.name in labels:
                by_class.setdefault(labels[path.name], []).append((path, stat))
        listed += [(split_of_folder(folder) or "", name, files) for name, files in sorted(by_class.items())]
        if left := len(entries) - sum(map(len, by_class.values())):
            unlabelled.append((f"{folder}/" if folder else "the top", left))
    return listed, unlabelled
