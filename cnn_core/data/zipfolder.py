"""Turning an uploaded zip of images (one folder per class, or images named by class or beside a label table)
into an image-folder data set, safely.

A zip is untrusted input. Before anything is written, every member name is checked: no `..`, no absolute
or drive paths, no symlinks, no encrypted members, and the declared sizes and file count must stay within
limits. While extracting, the bytes actually read are counted too (a zip can lie about its sizes), and
every file is decoded as an image before it is kept; anything else is skipped and counted. The result is
`CNN_CACHE_DIR/uploads/<name>/<class>/<file>`, registered with the data registry for this process. An
upload with an `owner` (one user's id on a shared server) goes to `uploads/<owner key>/<name>/` and is private:
the registry lists it for that owner only, and nobody else's upload can replace it (`uploads`: quotas, names,
digests and removal).
"""

from __future__ import annotations

import io
import re
import shutil
import stat
import tempfile
import unicodedata
import zipfile
import zlib
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from ..errors import DataError, ImageError
from .images import ARCHIVE_SUFFIXES, maybe_image_name, read_image
from .layout import (MAX_LABEL_TABLE_BYTES, NOT_LABEL_TABLES, classes_without_folders, copies_of_siblings,
                     is_split_wrapper, parse_table, segmentation_masks, split_folders, split_of_folder,
                     unify_split_classes)
from .listing import CLASSES_NOTE
from .registry import register_image_folder
from .types import DatasetInfo, shown_name
from .uploads import (ZipLimits, _digest_path, _mib, _refuse_taken_name, _reserved_room, owned_name, upload_root,
                      zip_digest)
from .zipnames import CODE_PAGE_LANGUAGES, decode_names


@dataclass
class ZipImport:
    """What an upload became: where its images are, how many per class, and what was left out."""

    name: str
    root: Path
    class_counts: dict[str, int]
    skipped_non_image: int = 0        # files that are not images (by name)
    skipped_unreadable: int = 0       # files named like images that cannot be read: damaged, not images, too large
    skipped_outside_classes: int = 0  # images not inside a class folder
    skipped_system: int = 0           # __MACOSX/, .DS_Store and other hidden files
    skipped_copies: int = 0           # images in folders that repeat their siblings (a second copy of the set)
    skipped_masks: int = 0            # segmentation masks beside their images (BUSI's "benign (1)_mask.png")
    copies: list[str] = field(default_factory=list)  # those folders
    skipped_examples: list[str] = field(default_factory=list)
    info: DatasetInfo | None = None
    name_encoding: str | None = None  # the legacy code page the member names were written in, if any
    classes_from: str | None = None  # with no class folders: "the file names (cat.0.jpg: cat, ...)", a label table
    unlabelled: Counter[str] = field(default_factory=Counter)  # then: images with no class there, by folder

    @property
    def images(self) -> int:
        return sum(self.class_counts.values())

    @property
    def skipped(self) -> int:
        return (self.skipped_non_image + self.skipped_unreadable + self.skipped_outside_classes + self.skipped_system
                + self.skipped_copies + self.skipped_masks + sum(self.unlabelled.values()))

    def summary(self) -> str:
        """One sentence for people: what was imported and what was skipped."""
        text = f"{self.images} images in {len(self.class_counts)} classes"
        parts = []
        if self.skipped_non_image:
            parts.append(f"{self.skipped_non_image} non-image file(s)")
        if self.skipped_unreadable:
            parts.append(f"{self.skipped_unreadable} file(s) that could not be read as images (damaged, not an "
                         "image, or over 40 megapixels)")
        if self.skipped_outside_classes:
            parts.append(f"{self.skipped_outside_classes} image(s) outside a class folder")
        if self.skipped_system:
            parts.append(f"{self.skipped_system} hidden/system file(s)")
        if self.skipped_masks:
            parts.append(f"{self.skipped_masks} segmentation mask(s) beside their images (x_mask.png beside x.png)")
        for where, count in self.unlabelled.items():
            parts.append(f"{count} image(s) {where} with no class in their names or a label table (as in a Kaggle "
                         "test set)")
        if self.skipped_copies:
            parts.append(f"{self.skipped_copies} image(s) in {', '.join(f'{name}/' for name in self.copies)}, which "
                         "repeats the folders beside it (a second copy of the data set)")
        if parts:
            text += "; skipped " + ", ".join(parts)
        if self.classes_from:
            text += f"; with no class folders, the classes come from {self.classes_from}"
        if self.name_encoding:
            language = CODE_PAGE_LANGUAGES.get(self.name_encoding, self.name_encoding)
            text += f"; the file names were written in {language}, not UTF-8, and were read as such"
        return text + "."


def dataset_name_for(filename: str) -> str:
    """A registry name from an upload's file name: "My X-rays.zip" -> "my_x_rays"."""
    stem = filename.rsplit("/", 1)[-1].rsplit("\\", 1)[-1]
    if stem.lower().endswith(".zip"):
        stem = stem[:-4]
    ascii_stem = unicodedata.normalize("NFKD", stem).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "_", ascii_stem.lower()).strip("_")[:40].strip("_")
    if not slug:
        raise DataError(f"Cannot make a data set name from {filename!r}: give the zip a name with letters or digits.")
    if slug[0].isdigit():
        slug = "upload_" + slug
    return slug


def import_zip(
    source: bytes | BinaryIO,
    name: str,
    *,
    limits: ZipLimits | None = None,
    register: bool = True,
    owner: str | None = None,
    name_encoding: str | None = None,
    digest: str | None = None,
) -> ZipImport:
    """Unpack an uploaded zip of class folders into `upload_root(name, owner)` and register it as a data set
    (private to `owner` when one is given).

    Accepts `class/*.png` at the top level or inside one wrapper folder (`mydata/class/*.png`); deeper
    sub-folders inside a class are flattened into it. Member names without the zip's UTF-8 flag are decoded
    as the tool that wrote them meant (`zipnames.decode_names`; `name_encoding` names the code page instead
    of guessing). The zip's SHA-256 (`digest`, or computed from bytes) is kept beside the folder for
    `available_name`; an owner's uploads stay within `limits.owner_quota_bytes`. Raises `DataError` for an unsafe,
    unusable or over-quota zip.
    """
    limits = limits or ZipLimits()
    plain = shown_name(name)
    if not re.fullmatch(r"[a-z][a-z0-9_]{0,63}", plain) or name not in (plain, owned_name(plain, owner)):
        raise DataError(f"{name!r} is not a valid data set name: use lowercase letters, digits and '_'.")
    target = upload_root(name, owner)
    if register:
        _refuse_taken_name(name, owner)
    stream = io.BytesIO(source) if isinstance(source, (bytes, bytearray, memoryview)) else source
    try:
        archive = zipfile.ZipFile(stream)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError) as exc:
        raise DataError(
            f"The upload is not a readable zip file ({exc}). Zip a folder of class folders and retry."
        ) from exc
    with archive:
        members = archive.infolist()
        try:
            legacy_encoding = decode_names(members, name_encoding)
        except LookupError:
            raise DataError(f"Unknown file-name encoding {name_encoding!r}; use one of "
                            f"{', '.join(CODE_PAGE_LANGUAGES)}.") from None
        _check_members(members, limits)
        result, plan = _plan(members, name, lambda info: _read_member(archive, info, limits, 0))
        result.name_encoding = legacy_encoding
        _check_plan(result, plan, members)
        with _reserved_room(members, owner, name, digest, limits):  # another tab's upload counts meanwhile
            root = _extract(archive, plan, result, target, limits)
            if digest is not None or isinstance(source, (bytes, bytearray, memoryview)):  # `digest`: the caller's
                _digest_path(root).write_text(digest or zip_digest(source))
    result.root = root
    if register:
        result.info = register_image_folder(name, root, owner=owner)
    return result


def _member_parts(raw_name: str) -> list[str]:
    """A member's path components, after refusing anything that could land outside the target folder."""
    if "\x00" in raw_name:
        raise DataError(f"Refused: the zip member {raw_name!r} has a NUL character in its name.")
    normalised = raw_name.replace("\\", "/")
    if normalised.startswith("/") or re.match(r"^[A-Za-z]:", normalised):
        raise DataError(
            f"Refused: the zip member {raw_name!r} has an absolute path. Zip the class folders with relative paths."
        )
    parts = [part for part in normalised.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise DataError(
            f"Refused: the zip member {raw_name!r} points outside the folder ('..', path traversal). "
            "This zip is unsafe; nothing was extracted."
        )
    return parts


def _check_members(members: Iterable[zipfile.ZipInfo], limits: ZipLimits) -> None:
    """Refuse the whole zip before extracting anything if any member is unsafe or the totals too large."""
    files = 0
    declared = 0
    for info in members:
        _member_parts(info.filename)
        mode = info.external_attr >> 16
        if stat.S_ISLNK(mode):
            raise DataError(
                f"Refused: the zip member {info.filename!r} is a symbolic link; zip the files themselves."
            )
        if _is_directory(info):
            continue
        if info.flag_bits & 0x1:
            raise DataError(f"The zip member {info.filename!r} is encrypted; upload a zip without a password.")
        files += 1
        declared += info.file_size
        if info.file_size > limits.max_member_bytes:
            raise DataError(
                f"Refused: {info.filename!r} unpacks to {_mib(info.file_size)}, more than the "
                f"{_mib(limits.max_member_bytes)} allowed for one image (possible zip bomb)."
            )
    if files > limits.max_files:
        raise DataError(
            f"Refused: the zip holds {files} files, more than the {limits.max_files} allowed. "
            "Upload a smaller sample of the images."
        )
    if declared > limits.max_total_bytes:
        raise DataError(
            f"Refused: the zip unpacks to {_mib(declared)}, more than the {_mib(limits.max_total_bytes)} allowed "
            "(possible zip bomb). Upload fewer or smaller images."
        )


def _is_system_file(parts: list[str]) -> bool:
    """Hidden and system files (the registry ignores names starting with "." or "__" too)."""
    return any(part.startswith((".", "__")) or part.lower() == "thumbs.db" for part in parts)


def _plan(members: list[zipfile.ZipInfo], name: str, read: Callable[[zipfile.ZipInfo], bytes]
          ) -> tuple[ZipImport, list[tuple[zipfile.ZipInfo, str, str, str]]]:
    """Decide which members become which `class/file` (and which class each counts for), reading no data but,
    where there are no class folders, the label tables (CSV) that `read` gives."""
    result = ZipImport(name=name, root=Path(), class_counts={})
    candidates: list[tuple[zipfile.ZipInfo, list[str]]] = []
    tables: dict[str, zipfile.ZipInfo] = {}
    for info in members:
        if _is_directory(info):
            continue
        parts = _member_parts(info.filename)
        if _is_system_file(parts):
            result.skipped_system += 1
        elif parts[-1].lower().endswith(".csv") and info.file_size <= MAX_LABEL_TABLE_BYTES:
            tables["/".join(parts)] = info  # a label table, or skipped below as a non-image file
        elif not maybe_image_name(parts[-1]):  # the others are told by their content when extracted
            result.skipped_non_image += 1
            _note(result, "/".join(parts), "not an image")
        else:
            candidates.append((info, parts))
    candidates = _without_masks(result, candidates)
    candidates = _without_copies(result, _without_wrappers(candidates), depth=0)
    candidates, used = _classes_without_folders(result, candidates, tables, read)
    for path in sorted(set(tables) - {used}):
        result.skipped_non_image += 1
        _note(result, path, "not an image")
    # Split folders above the class folders (train/cat/1.png): kept, so the data set uses those splits.
    inner = {top: _folders_inside(candidates, top) for top in {parts[0] for _, parts in candidates if len(parts) >= 2}}
    layout = split_folders("The zip", inner, flat={top for top, folders in inner.items() if not folders},
                           split_classes={name for top, folders in inner.items() if split_of_folder(top)
                                          for name in folders})
    if layout:
        candidates = _without_copies(result, _without_split_wrappers(candidates, layout), depth=1)
    planned: list[tuple[zipfile.ZipInfo, str, str, list[str]]] = []  # (member, split folder, class folder, rest)
    for info, parts in candidates:
        split_folder = ""
        if layout and parts[0] in layout:
            split_folder, parts = parts[0], parts[1:]
        elif layout and len(parts) >= 2:  # seg_pred/ beside seg_train/<class>/: images without classes
            where = f"in {parts[0]}/"
            result.unlabelled[where] += 1
            continue
        if len(parts) < 2:
            result.skipped_outside_classes += 1
            where = f"directly in {split_folder}/, unlabelled" if split_folder else "not inside a class folder"
            _note(result, "/".join([split_folder, *parts] if split_folder else parts), where)
            continue
        planned.append((info, split_folder, parts[0], parts[1:]))
    safe = _class_folder_names({folder for _, _, folder, _ in planned})
    planned = [(info, split_folder, safe[folder], rest) for info, split_folder, folder, rest in planned]
    # test/NORMAL counts for train/Normal's class; a class with no train folder is refused now
    labels = (unify_split_classes("The zip", {(layout[split], folder) for _, split, folder, _ in planned})
              if layout else {})
    plan: list[tuple[zipfile.ZipInfo, str, str, str]] = []
    used: dict[str, set[str]] = {}
    for info, split_folder, folder, rest in planned:
        class_path = f"{_clean_component(split_folder)}/{folder}" if split_folder else folder
        file_name = _unique(_clean_component("__".join(rest)), used.setdefault(class_path, set()))
        label = labels.get((layout[split_folder], folder), folder) if split_folder else folder
        plan.append((info, class_path, file_name, label))
    return result, plan


def _classes_without_folders(result: ZipImport, candidates: list[tuple[zipfile.ZipInfo, list[str]]],
                             tables: dict[str, zipfile.ZipInfo], read: Callable[[zipfile.ZipInfo], bytes]
                             ) -> tuple[list[tuple[zipfile.ZipInfo, list[str]]], str | None]:
    """Images in no class folder whose classes a label table or their file names give
    (`layout.classes_without_folders`: APTOS's train.csv, Kaggle's train/cat.0.jpg) go into class folders by
    class (train/cat/cat.0.jpg); the unlabelled ones are skipped. Also returns the table used, if one was."""
    if any(len(parts) > 2 for _, parts in candidates):  # class folders somewhere: they say the classes
        return candidates, None
    flat: dict[str, list[str]] = {}
    for _, parts in candidates:
        if len(parts) == 2:
            flat.setdefault(parts[0], []).append(parts[1])
    parsed = {path: rows for path, info in _shallowest_tables(tables).items() if (rows := parse_table(read(info)))}
    found = classes_without_folders("The zip", parsed, [parts[0] for _, parts in candidates if len(parts) == 1], flat)
    if found is None:
        return candidates, None
    labelled, result.classes_from, kept = found.labels, found.source, []
    for info, parts in candidates:
        folder, file_name = ("", parts[0]) if len(parts) == 1 else parts
        label = labelled[folder].get(file_name)
        if label is None:
            where = f"in {folder}/" if folder else "at the top"
            result.unlabelled[where] += 1
            _note(result, "/".join(parts), "no class folder, and no class in its name or table")
        else:
            kept.append((info, [folder, label, file_name] if split_of_folder(folder) else [label, file_name]))
    return kept, found.table


def _shallowest_tables(tables: dict[str, zipfile.ZipInfo]) -> dict[str, zipfile.ZipInfo]:
    """The label tables worth reading: at the shallowest depth any table sits (the top, or beside the wrapper's
    contents, as a folder reads them), no answer format (`layout.NOT_LABEL_TABLES`), and together at most
    `layout.MAX_LABEL_TABLE_BYTES` (a zip of 512 MB could otherwise hold gigabytes of rows to parse)."""
    candidates = {path: info for path, info in tables.items()
                  if not PurePosixPath(path).stem.casefold().startswith(NOT_LABEL_TABLES)}
    depth = min((path.count("/") for path in candidates), default=0)
    chosen, total = {}, 0
    for path, info in sorted(candidates.items()):
        if path.count("/") == depth and total + info.file_size <= MAX_LABEL_TABLE_BYTES:
            chosen[path], total = info, total + info.file_size
    return chosen


def _without_split_wrappers(candidates: list[tuple[zipfile.ZipInfo, list[str]]], layout: dict[str, str]
                            ) -> list[tuple[zipfile.ZipInfo, list[str]]]:
    """`candidates` without a single wrapper folder inside a split folder, as Kaggle's "Cat and Dog" ships them:
    training_set/training_set/cats/, test_set/test_set/cats/ (the wrapper would be the split's only class)."""
    for split_folder in layout:
        while True:
            inside = [parts for _, parts in candidates if parts[0] == split_folder]
            if (len({parts[1] for parts in inside}) != 1 or any(len(parts) < 4 for parts in inside)
                    or not is_split_wrapper(split_folder, inside[0][1])):
                break
            candidates = [(info, [parts[0], *parts[2:]] if parts[0] == split_folder else parts)
                          for info, parts in candidates]
    return candidates


def _without_masks(result: ZipImport, candidates: list[tuple[zipfile.ZipInfo, list[str]]]
                   ) -> list[tuple[zipfile.ZipInfo, list[str]]]:
    """`candidates` less segmentation masks beside their images (`layout.segmentation_masks`: BUSI's
    "benign (1)_mask.png"); counted and noted."""
    by_folder: dict[tuple[str, ...], list[str]] = {}
    for _, parts in candidates:
        by_folder.setdefault(tuple(parts[:-1]), []).append(parts[-1])
    masks = {(folder, name) for folder, names in by_folder.items() for name in segmentation_masks(names)}
    for folder, name in sorted(masks):
        result.skipped_masks += 1
        _note(result, "/".join([*folder, name]), "a segmentation mask")
    return [(info, parts) for info, parts in candidates if (tuple(parts[:-1]), parts[-1]) not in masks]


def _folders_inside(candidates: list[tuple[zipfile.ZipInfo, list[str]]], top: str) -> set[str]:
    """The folders with images inside the top folder `top`, behind a wrapper that repeats its name
    (seg_pred/seg_pred/, training_set/training_set/: `layout.is_split_wrapper`)."""
    inside = [parts[1:] for _, parts in candidates if parts[0] == top]
    while True:
        folders = {rest[0] for rest in inside if len(rest) >= 2}
        if not (len(folders) == 1 and all(len(rest) >= 2 for rest in inside) and is_split_wrapper(top, *folders)):
            return folders
        inside = [rest[1:] for rest in inside]


def _without_wrappers(candidates: list[tuple[zipfile.ZipInfo, list[str]]]) -> list[tuple[zipfile.ZipInfo, list[str]]]:
    """`candidates` without the wrapper folders around their class folders: a zip of "mydata/", or "pets/pets/" after
    Windows' "Extract All" and zipping again. An image beside the class folders (a cover picture) does not stop it:
    it is then skipped as outside a class folder, as are a few images beside the wrapper (a cover.png at the top,
    under a tenth of the images). A split folder (train/) is never a wrapper."""
    while True:
        inside = [(info, parts) for info, parts in candidates if len(parts) >= 2]
        loose = [(info, parts) for info, parts in candidates if len(parts) < 2]
        tops = {parts[0] for _, parts in inside}
        if (len(tops) != 1 or split_of_folder(next(iter(tops))) is not None or len(loose) * 10 > len(inside)
                or all(len(parts) < 3 for _, parts in inside)):
            return candidates
        candidates = loose + [(info, parts[1:]) for info, parts in inside]


def _is_directory(info: zipfile.ZipInfo) -> bool:
    """A folder entry: named with a trailing "/" (`ZipInfo.is_dir`), or with a trailing "\\" or the DOS
    directory attribute, as some Windows tools write them."""
    return info.is_dir() or info.filename.endswith("\\") or (bool(info.external_attr & 0x10) and not info.file_size)


def _without_copies(result: ZipImport, candidates: list[tuple[zipfile.ZipInfo, list[str]]],
                    depth: int) -> list[tuple[zipfile.ZipInfo, list[str]]]:
    """`candidates` less the members of folders at `depth` that hold their siblings again
    (`layout.copies_of_siblings`: Kaggle's brain_tumor_dataset/{yes,no} beside yes/ and no/); counted and noted."""
    inner: dict[tuple[str, ...], dict[str, set[str]]] = {}
    for _, parts in candidates:
        if len(parts) >= depth + 2:
            folders = inner.setdefault(tuple(parts[:depth]), {}).setdefault(parts[depth], set())
            if len(parts) >= depth + 3:
                folders.add(parts[depth + 1])
    copies = {(above, name) for above, folders in inner.items() for name in copies_of_siblings(folders)}
    if not copies:
        return candidates
    kept = [(info, parts) for info, parts in candidates
            if len(parts) < depth + 2 or (tuple(parts[:depth]), parts[depth]) not in copies]
    result.skipped_copies += len(candidates) - len(kept)
    result.copies += sorted("/".join([*above, name]) for above, name in copies)
    return kept


def _class_folder_names(folders: set[str]) -> dict[str, str]:
    """Each class folder's name made safe (`_clean_component`), one name per folder in every split: a folder
    already safe keeps its name, one that cleans to a taken name gets a number (`cat?` beside `cat`: `cat_2`)."""
    names: dict[str, str] = {}
    taken: set[str] = set()
    for folder in sorted(folders, key=lambda folder: (_clean_component(folder) != folder, folder)):
        cleaned = candidate = _clean_component(folder)
        counter = 1
        while candidate in taken:
            counter += 1
            candidate = f"{cleaned}_{counter}"
        taken.add(candidate)
        names[folder] = candidate
    return names


def _check_plan(result: ZipImport, plan: list, members: list[zipfile.ZipInfo]) -> None:
    archives = [PurePosixPath(info.filename.replace("\\", "/")).name for info in members
                if info.filename.lower().endswith(ARCHIVE_SUFFIXES) and not _is_directory(info)]
    if not plan and archives:
        raise DataError(
            f"The zip holds other archives ({', '.join(archives[:4])}{', ...' if len(archives) > 4 else ''}) and no "
            "images beside them, as Kaggle's downloads do. Unzip it, then upload the archive with the images (e.g. "
            f"{archives[0]}) or a zip of the unpacked folder."
        )
    if not plan:
        raise DataError(
            "No images found in class folders. The zip must hold one folder per class with images inside "
            "(cats/1.png, dogs/2.jpg), images named by class (cat.0.jpg, dog.0.jpg) or images beside a CSV label "
            f"table; {_skipped_text(result)}."
        )


def _extract(
    archive: zipfile.ZipFile,
    plan: list[tuple[zipfile.ZipInfo, str, str, str]],
    result: ZipImport,
    target: Path,
    limits: ZipLimits,
) -> Path:
    """Write the planned images into a temporary folder beside `target`, counting real bytes, then move it
    into place."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        total = 0
        for info, class_name, file_name, label in plan:
            try:
                data = _read_member(archive, info, limits, total)
            except DamagedMember:
                result.skipped_unreadable += 1
                _note(result, info.filename, "damaged in the zip (its checksum or compressed data is wrong)")
                continue
            total += len(data)
            try:
                read_image(data, name=info.filename)
            except ImageError as exc:
                too_large = "megapixels" in str(exc)  # over read_image's pixel limit, or a decompression bomb
                result.skipped_unreadable += 1
                _note(result, info.filename, "too large to read: over 40 megapixels" if too_large
                      else "not a readable image")
                continue
            folder = staging / class_name  # "cat", or "train/cat" in a zip with split folders
            folder.mkdir(parents=True, exist_ok=True)
            (folder / file_name).write_bytes(data)
            result.class_counts[label] = result.class_counts.get(label, 0) + 1
        result.class_counts = dict(sorted(result.class_counts.items()))
        _check_classes(result)  # before anything replaces an earlier upload of the same name
        written = {tuple(path.relative_to(staging).parts) for path in staging.glob("*/*") if path.is_dir()}
        if written:  # split folders: a class whose train images were all unreadable has none now
            unify_split_classes("The zip", {(split_of_folder(split) or split, folder) for split, folder in written})
        if result.classes_from:  # the folders made here are not the zip's: say where the classes came from
            (staging / CLASSES_NOTE).write_text(result.classes_from, encoding="utf-8")
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def _read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, limits: ZipLimits, total_so_far: int) -> bytes:
    """A member's bytes, stopping as soon as it exceeds what it declared or any limit."""
    allowed = min(info.file_size, limits.max_member_bytes, limits.max_total_bytes - total_so_far)
    chunks = []
    read = 0
    try:
        with archive.open(info) as member:
            while chunk := member.read(min(1 << 20, allowed - read + 1)):
                read += len(chunk)
                if read > allowed:
                    raise DataError(
                        f"Refused: {info.filename!r} unpacks to more bytes than the zip declares or the limits allow "
                        "(possible zip bomb). Nothing was kept."
                    )
                chunks.append(chunk)
    except (zipfile.BadZipFile, EOFError, zlib.error) as exc:  # a bad CRC-32, a cut or garbled deflate stream
        raise DamagedMember(f"The zip member {info.filename!r} is damaged ({exc}).") from exc
    except (zipfile.LargeZipFile, OSError, NotImplementedError, RuntimeError) as exc:  # encrypted, unsupported
        raise DataError(
            f"The zip member {info.filename!r} is damaged or uses an unsupported format ({exc})."
        ) from exc
    return b"".join(chunks)


class DamagedMember(DataError):
    """One member's bytes are damaged (its CRC-32 or its compressed stream): that image is skipped and counted
    as unreadable, as a damaged file in a folder is, and the rest of the upload is kept."""


def _check_classes(result: ZipImport) -> None:
    if result.images == 0:
        raise DataError(f"The zip holds no readable images; {_skipped_text(result)}.")
    if len(result.class_counts) < 2:
        found = ", ".join(result.class_counts) or "none"
        raise DataError(
            f"A classification data set needs at least two class folders with images; this zip has "
            f"{len(result.class_counts)} ({found}). Put each class's images in its own folder."
        )


#: Longest file or folder name written, in UTF-8 bytes: file systems count bytes (255 on ext4, APFS, NTFS counts
#: UTF-16 units), and 120 Chinese characters are 360 bytes; the rest leaves room for `_unique`'s "_2".
MAX_NAME_BYTES = 200


def _clean_component(text: str) -> str:
    """A file or folder name safe on every platform: no separators or control characters, at most
    `MAX_NAME_BYTES` bytes in UTF-8 with its ending (".png") kept, cut between characters."""
    cleaned = "".join(ch for ch in text if ch.isprintable() and ch not in '<>:"/\\|?*').strip(" .")
    if len(cleaned.encode()) > MAX_NAME_BYTES:
        suffix = PurePosixPath(cleaned).suffix
        suffix = suffix if len(suffix) <= 10 else ""
        stem = cleaned[: len(cleaned) - len(suffix)].encode()[: MAX_NAME_BYTES - len(suffix.encode())]
        cleaned = stem.decode(errors="ignore").rstrip(" .") + suffix
    return cleaned or "unnamed"


def _unique(file_name: str, used: set[str]) -> str:
    candidate, counter = file_name, 1
    stem, suffix = PurePosixPath(file_name).stem, PurePosixPath(file_name).suffix
    while candidate.lower() in used:
        counter += 1
        candidate = f"{stem}_{counter}{suffix}"
    used.add(candidate.lower())
    return candidate


def _note(result: ZipImport, path: str, why: str) -> None:
    if len(result.skipped_examples) < 5:
        result.skipped_examples.append(f"{path} ({why})")


def _skipped_text(result: ZipImport) -> str:
    if not result.skipped:
        return "the zip is empty"
    text = f"{result.skipped} file(s) were skipped"
    if result.skipped_examples:
        text += ", e.g. " + "; ".join(result.skipped_examples[:3])
    return text
