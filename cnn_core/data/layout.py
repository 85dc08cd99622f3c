"""Which layout an image folder (or a zip of one) has: class folders, or split folders above them; and, where
there are no class folders, the classes a label table or the file names give.

Kaggle downloads and many course folders come split already: `pets/train/{cat,dog}`, `pets/test/{cat,dog}`
(sometimes `valid/`, `validation/`, `training_set/`, any case). Read as class folders, `train` and `test` would
become two classes that each mix every animal. This module tells the layouts apart by names alone. Without class
folders, a label table (APTOS's `train.csv`: `labels_from_tables`) or the file names (Kaggle's "Dogs vs. Cats":
`train/cat.0.jpg`: `labels_in_file_names`) give the classes (`classes_without_folders`). `split_quotas` shares a
folder's images among the splits, class by class. Pure functions of names and table rows: nothing here reads disk.
"""

from __future__ import annotations

import csv
import io
import math
import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath

from ..errors import DataError
from .types import SPLITS

#: Folder names (lower case) that mean a split, and the split each means.
SPLIT_FOLDER_NAMES = {
    "train": "train", "training": "train",
    "val": "val", "valid": "val", "validation": "val", "dev": "val",
    "test": "test", "testing": "test",
}  # fmt: skip


#: Words around a split's name in a folder name: before it (the Intel Image Classification set's `seg_train/`),
#: after it (`training_set/`, `trainset/`, `test-images/`).
_SPLIT_NAME = re.compile(r"(?:(?:seg|data|dataset|images?|imgs?)[ _-])?(?P<split>[a-z]+?)"
                         r"(?:[ _-]?(?:set|data|dataset|images|imgs|split))?")


def split_of_folder(name: str) -> str | None:
    """The split a folder name stands for ("Validation" -> "val", "training_set" and "trainset" -> "train",
    "test-images" -> "test", "seg_test" -> "test"; of a relative path, its first folder's: "train/images" ->
    "train"), or None for a class name."""
    words = _SPLIT_NAME.fullmatch(name.split("/")[0].strip().lower())
    return SPLIT_FOLDER_NAMES.get(words.group("split")) if words else None


def is_split_wrapper(split_folder: str, inner: str) -> bool:
    """Whether the only folder inside a split folder wraps its classes rather than being its one class: it
    repeats the split's name (Kaggle's "Cat and Dog": training_set/training_set/cats/) or names the same split."""
    return inner.casefold() == split_folder.casefold() or split_of_folder(inner) == split_of_folder(split_folder)


def split_folders(where: str, top_names: Iterable[str], flat: Iterable[str] = (),
                  split_classes: Iterable[str] = ()) -> dict[str, str] | None:
    """{folder name: split} when the top level holds split folders (of class folders), None when it holds class
    folders only. DataError when it mixes both (which folder is a class?) or names one split twice (`val` and
    `valid`); `where` names the folder or zip in the message.

    `flat` names the top folders that hold images and no sub-folder with images (a wrapper that repeats the
    folder's name skipped): beside class folders, a flat `train/` is a class (CIFAR-100's and many vehicle sets'
    "train", beside "bus" and "car"), not a split; beside split folders of class folders, a flat folder holds
    images without classes (the Intel Image Classification set's `seg_pred/`, Fruits-360's
    `test-multiple_fruits/`): it is not in the result, and the caller leaves it out as unlabelled, unless it is
    named like one of the `split_classes` (the class folders inside the split folders): then it is a class."""
    names = sorted(set(top_names))
    splits = {name: split_of_folder(name) for name in names}
    as_splits = {name: split for name, split in splits.items() if split}
    if not as_splits:
        return None
    flat = set(flat)
    others = [name for name, split in splits.items() if not split]
    if others and set(as_splits) <= flat:
        return None
    classes = {name.casefold() for name in split_classes}
    others = [name for name in others if name not in flat or name.casefold() in classes]
    if others:
        raise DataError(
            f"{where} mixes split folders ({', '.join(sorted(as_splits))}) with other folders ({', '.join(others)}) "
            "at its top level, so it is unclear which are classes. Put every class folder inside train/ (and "
            "val/, test/ if you have them), or use no split folders at all."
        )
    seen: dict[str, str] = {}
    for name, split in sorted(as_splits.items()):
        if split in seen:
            raise DataError(f"{where} has two folders for the {split} split ({seen[split]} and {name}); merge them.")
        seen[split] = name
    if "train" not in seen:
        raise DataError(f"{where} has split folders ({', '.join(sorted(as_splits))}) but no train/ folder to learn "
                        "from; add one with a sub-folder per class.")
    return as_splits


def describe_layout(split_names: Iterable[str]) -> str:
    """In words, for the gallery and the studio: which splits came from folders and which were carved."""
    given = [split for split in ("train", "val", "test") if split in set(split_names)]
    carved = [split for split in ("val", "test") if split not in given]
    text = f"split folders found ({', '.join(given)})"
    if carved:
        text += f"; {' and '.join(carved)} carved from train, stratified"
    return text


def copies_of_siblings(sub_folders: dict[str, set[str]]) -> list[str]:
    """The folders that hold their siblings again, sorted: `brain_tumor_dataset/{yes,no}` beside `yes/` and `no/`
    (Kaggle's "Brain MRI Images for Brain Tumor Detection"), or `chest_xray/{train,test,val}` beside `train/`,
    `test/`, `val/` (Kaggle's "Chest X-Ray Images (Pneumonia)"). Read as a class, such a folder would mix every
    class. `sub_folders` maps each folder that holds images to its own sub-folders that do; names compare
    case-insensitively, and a copy must repeat at least two siblings."""
    folded = {name: name.casefold() for name in sub_folders}
    copies = []
    for name, inner in sub_folders.items():
        if split_of_folder(name):  # train/{cat,dog} beside cat/ and dog/ is a mixed layout (`split_folders`)
            continue
        others = {folded[other] for other in sub_folders if other != name}
        inner_folded = {sub.casefold() for sub in inner}
        if len(inner_folded) >= 2 and inner_folded <= others:
            copies.append(name)
    return sorted(copies)


def copies_note(where: str, copies: Iterable[str]) -> str:
    """What was left out by `copies_of_siblings`, in words."""
    return (f"{where}: left out {', '.join(f'{name}/' for name in copies)}, which repeats the folders beside it "
            "(a second copy of the data set, as some downloads hold)")


def unify_split_classes(where: str, split_classes: Iterable[tuple[str, str]]) -> dict[tuple[str, str], str]:
    """{(split, class folder name): class name} for class folders inside split folders: a val or test folder
    takes the train folder's spelling when the two differ only in case (`test/NORMAL` and `train/Normal`, as
    in some Kaggle downloads), so they are one class. DataError for a class with no train folder: a model
    cannot learn a class it never sees, and its test images could only be wrong."""
    pairs = sorted(set(split_classes))
    train = {name for split, name in pairs if split == "train"}
    by_case: dict[str, list[str]] = {}
    for name in sorted(train):
        by_case.setdefault(name.casefold(), []).append(name)
    mapping, untrained = {}, {}
    for split, name in pairs:
        same = by_case.get(name.casefold(), [])
        mapped = name if name in train or len(same) != 1 else same[0]
        if mapped not in train:
            untrained.setdefault(split, []).append(name)
        mapping[(split, name)] = mapped
    if untrained:
        found = "; ".join(f"{', '.join(names)} in the {split} folder" for split, names in sorted(untrained.items()))
        raise DataError(f"{where} has class folders with no train/ folder of the same name ({found}). A model cannot "
                        "learn a class it never sees: add those images to train/, or remove the folders.")
    return mapping


# ------------------------------------------------------------------------------------------ stratified splits
#: A segmentation mask's name: its image's name plus "_mask" (and a number when an image has several), as the
#: Breast Ultrasound Images set (BUSI, BreastMNIST's source) ships "benign (1)_mask.png" and "benign (4)_mask_1.png"
#: beside "benign (1).png", and the LGG brain-MRI segmentation set "TCGA_..._1_mask.tif" beside "TCGA_..._1.tif".
_MASK_NAME = re.compile(r"(?P<image>.+?)[ _-]?mask(?:[ _-]?\d+)?", re.IGNORECASE)


def segmentation_masks(file_names: Iterable[str]) -> set[str]:
    """The names among `file_names` (one folder's) that are segmentation masks of another file there: named as
    it plus "_mask" (`_MASK_NAME`). Trained as images of their class, masks doubled the set with pictures of
    white shapes (BUSI's "normal" masks are all black, a class given away by its masks). A file named with
    "mask" whose image is not beside it stays (the Face Mask Detection set's with_mask_1.jpg)."""
    names = list(file_names)
    stems = {PurePosixPath(name).stem.casefold() for name in names}
    masks = set()
    for name in names:
        match = _MASK_NAME.fullmatch(PurePosixPath(name).stem)
        if match and match.group("image").casefold() in stems:
            masks.add(name)
    return masks


def masks_note(masks: Sequence[str]) -> str:
    """What the data set notes say of the segmentation masks left out (`segmentation_masks`)."""
    example = PurePosixPath(masks[0]).name
    return (f"left out {len(masks)} segmentation mask(s) (e.g. {example}), which outline an image beside them "
            "rather than being images of its class")


def split_quotas(class_sizes: list[int], fractions: Iterable[float]) -> list[list[int]]:
    """quotas[split][class]: split totals are round(fraction * N) (the last split takes the rest),
    shared among classes in proportion to what each class has left (largest remainder). Then every class
    with at least one image per split gets at least one in each split, taken from its largest split: a
    class of 2 images among 30 would otherwise have no test image, and its sensitivity could not be measured.
    """
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
    for index, size in enumerate(class_sizes):
        if size < len(quotas):
            continue
        for split in range(len(quotas)):
            if quotas[split][index] == 0:
                donor = max(range(len(quotas)), key=lambda s: quotas[s][index])
                quotas[donor][index] -= 1
                quotas[split][index] += 1
    return quotas


def small_classes(class_sizes: dict[str, int], n_splits: int = len(SPLITS)) -> list[str]:
    """Classes too small to appear in every split (fewer images than splits), as warnings for people."""
    return [f"class '{name}' has only {size} image(s): some of the train/val/test splits get none of it, so "
            "its scores there are n/a; add images" for name, size in class_sizes.items() if 0 < size < n_splits]


# ------------------------------------------------------------------------------------------ classes in file names
#: First words of file names that name a camera, a phone app, a scanner, a screen grab, a web download or a
#: copy, not a class ("IMG_0001.jpg", "FB_IMG_1712.jpg", "received_1234.jpeg", "unnamed (1).png", "OIP (3).jpg").
NOT_CLASS_WORDS = frozenset({
    "img", "image", "images", "imagen", "bild", "foto", "photo", "pic", "picture", "dsc", "dscn", "dscf", "pxl",
    "mvimg", "gopr", "dji", "vid", "video", "scan", "doc", "page", "screenshot", "screen", "frame", "file",
    "untitled", "unnamed", "copy", "sample", "capture", "snapshot", "whatsapp", "signal", "fb", "received",
    "mmexport", "snapchat", "wx", "pexels", "unsplash", "download", "oip", "th",
})
#: A class taken from file names needs this many files; together such classes must cover NAME_LABEL_COVERAGE of
#: the images, with at least MIN_MEAN_FILES_PER_NAME_LABEL per class (not one class per patient id).
MIN_FILES_PER_NAME_LABEL = 2
NAME_LABEL_COVERAGE = 0.9
MIN_MEAN_FILES_PER_NAME_LABEL = 5
_RUNNING_NUMBER = re.compile(r"(?P<label>.+?)[\s._-]*\(?\d+\)?")


def name_label(file_name: str) -> str | None:
    """The class a file name carries before its running number: "cat.0.jpg" -> "cat", "Normal (3).jpeg" ->
    "Normal", "rock01-000.png" -> "rock" (digits end no class: "covid19_12.png" -> "covid"), "猫.1.jpg" -> "猫";
    None for "1.jpg", "IMG_0001.jpg", "IMG_20240101_1200.jpg" (a date), "scan.png" (no number), "x_1.png" (one
    Latin letter). Names are compared in Unicode NFC (macOS writes NFD)."""
    name = unicodedata.normalize("NFC", file_name)
    stem = name.rsplit(".", 1)[0] if "." in name.lstrip(".") else name
    match = _RUNNING_NUMBER.fullmatch(stem)
    if match is None or re.search(r"\d{4}", match.group("label")):  # a date or an id, not a class
        return None
    label = match.group("label").rstrip("0123456789 ._-").lstrip(" ._-")
    letters = [ch for ch in label if ch.isalpha()]
    wide = any(unicodedata.east_asian_width(ch) == "W" for ch in letters)  # one CJK character is a word
    if not (len(letters) >= 2 or wide) or re.split(r"[\s._-]+", label)[0].casefold() in NOT_CLASS_WORDS:
        return None
    return label


def labels_from_names(file_names: Sequence[str], classes: Iterable[str] | None = None) -> dict[str, str] | None:
    """{file name: class} when image file names carry their classes (`name_label`).

    Without `classes`: at least two classes of MIN_FILES_PER_NAME_LABEL files or more, covering
    NAME_LABEL_COVERAGE of the names, with MIN_MEAN_FILES_PER_NAME_LABEL files per class on average; None
    otherwise. With `classes` (those a train folder's names gave): every name that carries one of them, however
    few. Classes compare case-insensitively ("Cat.1.jpg" is a "cat.2.jpg") and take their most common spelling;
    files whose names carry no kept class are left out of the mapping."""
    found = {name: name_label(name) for name in file_names}
    spellings: dict[str, Counter] = {}
    for label in found.values():
        if label:
            spellings.setdefault(label.casefold(), Counter())[label] += 1
    if classes is not None:
        spelled = {name.casefold(): name for name in classes}
        return {name: spelled[label.casefold()] for name, label in found.items()
                if label and label.casefold() in spelled}
    counts = {key: sum(spelled.values()) for key, spelled in spellings.items()}
    kept = {key for key, n in counts.items() if n >= MIN_FILES_PER_NAME_LABEL}
    covered = sum(counts[key] for key in kept)
    if (len(kept) < 2 or covered < NAME_LABEL_COVERAGE * len(file_names)
            or covered < MIN_MEAN_FILES_PER_NAME_LABEL * len(kept)):
        return None
    spelled = {key: spellings[key].most_common(1)[0][0] for key in kept}
    return {name: spelled[label.casefold()] for name, label in found.items() if label and label.casefold() in kept}


def labels_in_file_names(where: str, top_files: Sequence[str], flat_folders: dict[str, Sequence[str]]
                         ) -> dict[str, dict[str, str]] | None:
    """Classes from file names for images that sit in no class folder, as Kaggle's "Dogs vs. Cats" ships them
    (`train/cat.0.jpg`, `train/dog.0.jpg`, and an unlabelled `test1/1.jpg`). Read as class folders, its `train/`
    and `test1/` would be two classes that each mix both animals.

    `top_files` are the image names at the top; `flat_folders` maps every top folder with images to its image
    names, and the caller passes it only when no top folder has sub-folders with images. Returns {folder: {file
    name: class}} ("" for the top; an empty mapping for a folder left out as unlabelled), or None when the file
    names do not stand in for class folders:
    - images at the top only, or in one folder that is not a split folder: their names' classes;
    - split folders (`train/`, `test/`, `training_set/`) whose names carry classes: the train folder's names
      give the classes (thresholds of `labels_from_names`), the other split folders' names are read against them;
      folders whose names carry no class, and images at the top, are left out (unlabelled);
    - labelled images at the top beside folders whose names carry no class (`test1/`): the top's classes.
    DataError when a folder that is not a split folder carries classes beside labelled split folders (is it a
    split or a class?)."""
    if not flat_folders or (not top_files and len(flat_folders) == 1 and not split_of_folder(next(iter(flat_folders)))):
        folder, names = ("", top_files) if not flat_folders else next(iter(flat_folders.items()))
        labels = labels_from_names(names)
        return {folder: labels} if labels else None
    splits = {folder: split for folder in flat_folders if (split := split_of_folder(folder))}
    train = next((folder for folder, split in splits.items() if split == "train"), None)
    classes = labels_from_names(flat_folders[train]) if train else None
    if classes is None:  # no labelled train folder: labelled top images beside unlabelled folders, or nothing
        top = labels_from_names(top_files) if top_files else None
        if top and not any(labels_from_names(names) for names in flat_folders.values()):
            return {"": top, **{folder: {} for folder in flat_folders}}
        return None
    labelled = {folder: labels_from_names(flat_folders[folder], set(classes.values())) for folder in splits}
    unclear = sorted(folder for folder, names in flat_folders.items()
                     if folder not in splits and labels_from_names(names))
    if unclear:
        raise DataError(
            f"{where} names the classes in its file names ({train}/{next(iter(classes))}) but also holds "
            f"{', '.join(f'{folder}/' for folder in unclear)}, whose names carry classes too but which is not named "
            "as a split (train, val, test). Rename it, or put every class in its own folder (train/cat/, train/dog/)."
        )
    return {**{folder: {} for folder in flat_folders}, "": {}, **labelled}


# ------------------------------------------------------------------------------------------ classes in a label table
#: Column names that say "the class" in a label table (compared case-insensitively), as Kaggle's sets name them.
LABEL_COLUMNS = ("label", "labels", "class", "class_name", "classname", "category", "target", "diagnosis", "dx",
                 "level", "grade", "species", "breed", "type", "y")
#: A label table larger than this is not read (a table of a million rows is a database, not a class list).
MAX_LABEL_TABLE_BYTES = 20 * 2**20
#: A class column holds at most this many values (and at most half as many as the images it labels).
MAX_TABLE_CLASSES = 100
#: Tables that hold a competition's answer format, not labels (Kaggle's sampleSubmission.csv: every row "0").
NOT_LABEL_TABLES = ("sample_submission", "samplesubmission", "submission")

Table = list[list[str]]  # a label table's rows, the header first


@dataclass(frozen=True)
class Classes:
    """The classes of images that sit in no class folder (`classes_without_folders`): {folder: {file name:
    class}} ("" for the top; an empty mapping for a folder left out as unlabelled), where they came from in words
    ("the label table train.csv (id_code → diagnosis)", "the file names (cat.0.jpg: cat, ...)"), and the label
    table's name when one gave them."""

    labels: dict[str, dict[str, str]]
    source: str
    table: str | None = None


def parse_table(data: bytes) -> Table | None:
    """A label table's rows: UTF-8 (with or without the byte-order mark Excel writes) else Latin-1; comma,
    semicolon (European Excel) or tab separated, as its header line says; None when it is not a readable table."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = data.decode("latin-1")
    header = text.splitlines()[0] if text.strip() else ""
    delimiter = max(",;\t", key=header.count)
    try:
        rows = [row for row in csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
                if any(cell.strip() for cell in row)]
    except csv.Error:  # an unclosed quote, a field of a megabyte: not a label table
        return None
    return rows if len(rows) >= 2 else None


def labels_from_tables(where: str, tables: dict[str, Table], top_files: Sequence[str],
                       flat_folders: dict[str, Sequence[str]]) -> Classes | None:
    """Classes from a label table (CSV) beside images that sit in no class folder, as Kaggle ships many medical
    sets: APTOS 2019's `train.csv` (id_code, diagnosis) with `train_images/<id_code>.png`, HAM10000's
    `HAM10000_metadata.csv` (image_id, dx, ...) with two image folders `HAM10000_images_part_1/` and `_2/`
    (read as class folders, those two would be two classes that each mix every lesion), ISIC 2019's one-hot
    ground truth (image, MEL, NV, ...).

    `tables` maps each table's name to its rows (`parse_table`); `top_files` and `flat_folders` are as for
    `labels_in_file_names`. A table's file column is the one whose values name the most images (by file name,
    with or without its ending, case-insensitively; at least half of the images, or of the table's rows); a
    table named for a split (`train.csv`, `train_labels.csv`) labels only images outside the other splits'
    folders. The class comes from the first column named like one (`LABEL_COLUMNS`, `has_...`, `is_...`), else
    from one-hot columns (a single 1 per row: the column's name), else from the only other column with 2 to
    `MAX_TABLE_CLASSES` values; of the tables that name images and have a class column, the one naming the most
    wins (APTOS's test.csv names as many, without classes); an image a table names twice with two classes takes
    the last row's, and the source says how many did. Returns the `Classes`, or None when no table names the
    images in two classes, when its names repeat across folders (cat/1.jpg and dog/1.jpg), or when folders beside
    it are class folders that agree with it (each of its classes within one folder). DataError when a table names the images but its class column is unclear and no
    folders could be the classes instead."""
    keys = _image_keys(top_files, flat_folders)
    n_images = len(top_files) + sum(len(names) for names in flat_folders.values())
    class_folders = [folder for folder in flat_folders if not split_of_folder(folder)]
    found, unclear = [], None
    for table, rows in sorted(tables.items()):
        header, body = [cell.strip() for cell in rows[0]], rows[1:]
        file_column = _file_column(header, body, keys, n_images)
        if PurePosixPath(table).stem.casefold().startswith(NOT_LABEL_TABLES) or file_column is None:
            continue
        try:  # a table without a class column (APTOS's test.csv) gives way to one with
            found.append((file_column[0], table, header, body, file_column[1],
                          *_class_reader(where, table, header, body, file_column[1])))
        except DataError as exc:
            unclear = unclear or exc
    if not found:
        if unclear is not None and len(class_folders) < 2:  # beside class folders, a stray table is no error
            raise unclear
        return None
    _, table, header, body, file_column, label_of, label_name = max(found, key=lambda item: item[0])
    labelled = _labels_by_folder(table, body, file_column, label_of, keys, flat_folders, class_folders)
    if labelled is None or _folders_are_classes(labelled[0], class_folders):
        return None
    twice = f"; {labelled[1]} image(s) named twice with two classes take the last row's" if labelled[1] else ""
    return Classes(labelled[0], f"the label table {table} ({header[file_column]} → {label_name}{twice})", table)


def _image_keys(top_files: Sequence[str], flat_folders: dict[str, Sequence[str]]) -> dict[str, list[tuple[str, str]]]:
    """{file name or name without its ending, alone and after its folder ("patient01/slice_00.png"), case-folded in
    Unicode NFC (macOS writes NFD names, tables NFC): [(folder, file name), ...]}."""
    keys: dict[str, list[tuple[str, str]]] = {}
    for folder, names in (("", top_files), *flat_folders.items()):
        for name in names:
            for key in {name, name.rsplit(".", 1)[0]}:
                key = unicodedata.normalize("NFC", key).casefold()
                keys.setdefault(key, []).append((folder, name))
                if folder:  # its own name: "data/images" is "images"
                    own = unicodedata.normalize("NFC", folder.rsplit("/", 1)[-1]).casefold()
                    keys.setdefault(f"{own}/{key}", []).append((folder, name))
    return keys


def _images_named(keys: dict[str, list[tuple[str, str]]], cell: str) -> list[tuple[str, str]]:
    """The images a table's cell names: by its path's longest ending that is a folder and file name
    ("data/patient01/slice_00.png" names patient01/slice_00.png), else by its file name alone (then possibly
    several, in several folders)."""
    parts = [part for part in unicodedata.normalize("NFC", cell.strip()).replace("\\", "/").casefold().split("/")
             if part not in ("", ".")]
    if len(parts) >= 2 and (found := keys.get("/".join(parts[-2:]))):
        return found
    return keys.get(parts[-1], []) if parts else []


def _file_column(header: list[str], body: Table, keys: dict, n_images: int) -> tuple[int, int] | None:
    """(images named, column) of the column whose values name the most images, at least half of the images or
    of the table's rows; None when no column does."""
    best = None
    for column in range(len(header)):
        named = len({image for row in body if column < len(row) for image in _images_named(keys, row[column])})
        if named and named >= 0.5 * min(n_images, len(body)) and (best is None or named > best[0]):
            best = (named, column)
    return best


def _labels_by_folder(table: str, body: Table, file_column: int, label_of: Callable[[list[str]], str | None],
                      keys: dict, flat_folders: dict[str, Sequence[str]], class_folders: list[str]
                      ) -> tuple[dict[str, dict[str, str]], int] | None:
    """({folder: {file name: class}}, images named twice with two classes) from a table's rows; a table named for a
    split (`train.csv`) labels no image in another split's folder. None when its names repeat across folders that
    could be classes (cat/1.jpg and dog/1.jpg: only the folders tell those apart), or when it gives fewer than two
    classes."""
    table_split = split_of_folder(re.split(r"[\s._-]+", PurePosixPath(table).stem)[0])
    labels: dict[str, dict[str, str]] = {folder: {} for folder in ("", *flat_folders)}
    twice: set[tuple[str, str]] = set()
    for row in body:
        label = label_of(row) if file_column < len(row) else None  # a short row (Excel's total line) names nothing
        matched = [(folder, name) for folder, name in _images_named(keys, row[file_column])
                   if not table_split or split_of_folder(folder) in (None, table_split)] if label else []
        if len({folder for folder, _ in matched if folder in class_folders}) > 1:
            return None
        for folder, name in matched:
            if labels[folder].get(name, label) != label:
                twice.add((folder, name))
            labels[folder][name] = label
    classes = {label for named in labels.values() for label in named.values()}
    return (labels, len(twice)) if len(classes) >= 2 else None


def _folders_are_classes(labels: dict[str, dict[str, str]], class_folders: list[str]) -> bool:
    """Whether folders beside a table agree with it, each of its classes within one folder (healthy/ holds the
    table's grade 0, sick/ its 1-4): then the folders are the classes, not the table's."""
    classes = {label for named in labels.values() for label in named.values()}
    return len(class_folders) >= 2 and all(
        sum(label in labels[folder].values() for folder in class_folders) <= 1 for label in classes)



def _class_reader(where: str, table: str, header: list[str], body: Table, file_column: int
                  ) -> tuple[Callable[[list[str]], str | None], str]:
    """How a row gives its class, and the class column's name in words (`labels_from_tables`)."""
    others = [column for column in range(len(header)) if column != file_column]
    values = {column: {_class_text(row[column]) for row in body if column < len(row)} - {""} for column in others}
    rank = {column: LABEL_COLUMNS.index(name) if name in LABEL_COLUMNS else len(LABEL_COLUMNS)
            for column in others if (name := header[column].casefold()) in LABEL_COLUMNS
            or name.startswith(("has_", "is_"))}
    if rank:
        column = min(rank, key=rank.get)
        _check_classes(where, table, header[column], values[column], len(body))
        return _column_reader(column), header[column]
    onehot = [column for column in others if values[column] and values[column] <= {"0", "1"}]
    if len(onehot) >= 2 and all(sum(_class_text(row[c]) == "1" for c in onehot if c < len(row)) == 1 for row in body):
        return (lambda row: next(header[c] for c in onehot if c < len(row) and _class_text(row[c]) == "1"),
                f"the one of {', '.join(header[c] for c in onehot[:4])}{', ...' if len(onehot) > 4 else ''} that is 1")
    fitting = [column for column in others if 2 <= len(values[column]) <= min(MAX_TABLE_CLASSES, len(body) / 2)]
    if len(fitting) == 1:
        return _column_reader(fitting[0]), header[fitting[0]]
    shown = [repr(header[column]) for column in (fitting or others)]
    raise DataError(
        f"{where}: {table} names the images (column {header[file_column]!r}) but it is unclear which column holds "
        f"their class ({', '.join(shown[:8])}{', ...' if len(shown) > 8 else ''}). Call that column 'label' (with "
        f"at most {MAX_TABLE_CLASSES} different values), or put each class's images in their own folder."
    )


def _column_reader(column: int) -> Callable[[list[str]], str | None]:
    return lambda row: _class_text(row[column]) if column < len(row) else None


def _class_text(cell: str) -> str:
    """A class as written, whole numbers as integers ("0.0" and "0" are one class)."""
    text = cell.strip()
    return text.split(".")[0] if re.fullmatch(r"-?\d+\.0+", text) else text


def _check_classes(where: str, table: str, column: str, classes: set[str], rows: int) -> None:
    if any("|" in value for value in classes):
        raise DataError(f"{where}: {table}'s column {column!r} gives some images several classes ('A|B'): "
                        "multi-label training is not supported. Keep one class per image.")
    if len(classes) > min(MAX_TABLE_CLASSES, max(2, rows / 2)):
        raise DataError(f"{where}: {table}'s column {column!r} has {len(classes)} different values, too many to be "
                        f"classes (at most {MAX_TABLE_CLASSES}, and half as many as the images).")


def classes_without_folders(where: str, tables: dict[str, Table], top_files: Sequence[str],
                            flat_folders: dict[str, Sequence[str]]) -> Classes | None:
    """The classes of images that sit in no class folder: from a label table (`labels_from_tables`), else from
    their file names (`labels_in_file_names`). None: the folders are the classes, as always where two folders
    that are no split folders hold images and no label table speaks for them (cat/, dog/)."""
    if not tables and sum(not split_of_folder(folder) for folder in flat_folders) >= 2:
        return None
    if tables and (found := labels_from_tables(where, tables, top_files, flat_folders)):
        return found
    labels = labels_in_file_names(where, top_files, flat_folders)
    if labels is None:
        return None
    name, label = next((name, label) for named in labels.values() for name, label in named.items())
    return Classes(labels, f"the file names ({name}: {label}, ...)")
