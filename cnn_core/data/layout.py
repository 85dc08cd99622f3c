"""Which layout an image folder (or a zip of one) has: class folders, or split folders above them.

Kaggle downloads and many course folders come split already: `pets/train/{cat,dog}`, `pets/test/{cat,dog}`
(sometimes `valid/` or `validation/`, any case). Read as class folders, `train` and `test` would become two
classes that each mix every animal. This module tells the layouts apart by the top-level names alone.
"""

from __future__ import annotations

from collections.abc import Iterable

from ..errors import DataError

#: Folder names (lower case) that mean a split, and the split each means.
SPLIT_FOLDER_NAMES = {
    "train": "train", "training": "train",
    "val": "val", "valid": "val", "validation": "val", "dev": "val",
    "test": "test", "testing": "test",
}  # fmt: skip


def split_of_folder(name: str) -> str | None:
    """The split a folder name stands for ("Validation" -> "val"), or None for a class name."""
    return SPLIT_FOLDER_NAMES.get(name.strip().lower())


def split_folders(where: str, top_names: Iterable[str]) -> dict[str, str] | None:
    """{folder name: split} when the top level holds split folders only, None when it holds class folders
    only. DataError when it mixes both (which folder is a class?) or names one split twice (`val` and
    `valid`); `where` names the folder or zip in the message."""
    names = sorted(set(top_names))
    splits = {name: split_of_folder(name) for name in names}
    as_splits = {name: split for name, split in splits.items() if split}
    if not as_splits:
        return None
    others = [name for name, split in splits.items() if not split]
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
