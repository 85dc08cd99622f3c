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


def split_folders(where: str, top_names: Iterable[str], flat: Iterable[str] = ()) -> dict[str, str] | None:
    """{folder name: split} when the top level holds split folders only, None when it holds class folders
    only. DataError when it mixes both (which folder is a class?) or names one split twice (`val` and
    `valid`); `where` names the folder or zip in the message.

    `flat` names the top folders that hold images and no sub-folder with images: beside class folders, a flat
    `train/` is a class (CIFAR-100's and many vehicle sets' "train", beside "bus" and "car"), not a split."""
    names = sorted(set(top_names))
    splits = {name: split_of_folder(name) for name in names}
    as_splits = {name: split for name, split in splits.items() if split}
    if not as_splits:
        return None
    others = [name for name, split in splits.items() if not split]
    if others and set(as_splits) <= set(flat):
        return None
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
