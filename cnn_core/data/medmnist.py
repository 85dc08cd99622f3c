"""MedMNIST: the 12 two-dimensional sets at 28, 64, 128 and 224 px, read from medmnist's .npz files.

A file is looked for in CNN_DATA_DIR/medmnist/, CNN_DATA_DIR/ and CNN_CACHE_DIR/medmnist/; one split is read
straight from the npz (its .npy members, in chunks, plain arrays only, never pickles), so only its members are
decompressed and medmnist never gets a chance to re-download over the file. Descriptions, class names and download addresses come from
medmnist's INFO table (Yang et al., "MedMNIST v2", Scientific Data 2023).
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import re
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from .. import settings
from ..errors import DataError
from .cache import CACHE_FORMAT, DAMAGED_FILE_ERRORS, cache_root, digest, file_stamp, human_bytes, reserved_memory, short
from .download import DownloadPlan, RemoteFile, mirror_address
from .source import BuiltSplit, DataSource, Located, Progress
from .types import MEDMNIST_SIZES, SPLITS, DatasetInfo, DatasetStatus


NPY_CHUNK_BYTES = 4 * 1024**2  # decompressed per progress report

#: Class names where medmnist's INFO gives only numbers. RetinaMNIST's labels are DeepDRiD's diabetic-retinopathy
#: grades 0-4 on the International Clinical Diabetic Retinopathy Disease Severity Scale (Wilkinson et al.,
#: Ophthalmology 110(9), 2003); NPDR: non-proliferative diabetic retinopathy. The grade stays first, so the order
#: (an ordinal scale) reads from the name.
NAMED_CLASSES: dict[str, tuple[str, ...]] = {
    "retinamnist": ("0 no DR", "1 mild NPDR", "2 moderate NPDR", "3 severe NPDR", "4 proliferative DR"),
}


class MedmnistSource(DataSource):
    """One MedMNIST flag at one size, e.g. ("pathmnist", 28) or ("dermamnist", 64)."""

    def __init__(self, flag: str, size: int) -> None:
        self.flag, self.size = flag, size
        self.info = _medmnist_info(flag, size)

    def status(self) -> DatasetStatus:
        return _medmnist_status(self.info, self.flag, self.size)

    def locate(self) -> Located | None:
        path, _ = _find_npz(self.flag, self.size)
        if path is None:
            return None
        fingerprint = digest([CACHE_FORMAT, "medmnist", file_stamp(path)])
        return Located(fingerprint=fingerprint, location=path.parent, files=path)

    def read(self, located: Located, split: str, progress: Progress | None = None) -> dict[str, BuiltSplit]:
        return {split: _build_medmnist(self, located.files, split, progress)}

    def class_counts(self) -> dict[str, list[int]]:
        """From the npz's `*_labels` members only (a few kB), not its images; multi-label sets count the
        images carrying each label."""
        path, _ = _find_npz(self.flag, self.size)
        if path is None:
            raise self.missing_error()
        n = len(self.info.class_names)
        try:
            with np.load(path) as archive:
                labels = {split: np.asarray(archive[f"{split}_labels"]) for split in SPLITS}
        except DAMAGED_FILE_ERRORS as exc:
            raise DataError(f"{path} could not be read ({short(exc)}): it is damaged. Replace it with a good "
                            "copy.") from exc
        labels = {split: checked_labels(path, split, values, self.info) for split, values in labels.items()}
        if self.info.multi_label:
            return {split: [int(v) for v in values.sum(axis=0)] for split, values in labels.items()}
        return {split: np.bincount(values, minlength=n).tolist() for split, values in labels.items()}

    def download_plan(self) -> DownloadPlan:
        """The npz from zenodo.org (medmnist's INFO: address and MD5) or from CNN_DOWNLOAD_MIRROR."""
        medinfo = medmnist_table()[self.flag]
        mirror = mirror_address()
        suffix = "" if self.size == 28 else f"_{self.size}"
        filename = _medmnist_filename(self.flag, self.size)
        url = f"{mirror}/{filename}" if mirror else medinfo[f"url{suffix}"]
        remote = RemoteFile(url, filename, medinfo.get(f"MD5{suffix}"))
        return DownloadPlan(self.info.title, ((remote,),), cache_root() / "medmnist",
                            _medmnist_how_to_get(self.flag, self.size),
                            _medmnist_download_size(self.flag, self.size), mirror, (filename,))  # fmt: skip


def clear_counts() -> None:
    """Forget split sizes read from npz headers (after a download, or to start afresh)."""
    _npz_split_counts.cache_clear()


@functools.lru_cache(maxsize=1)
def medmnist_table() -> dict:
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


def medmnist_name(flag: str, size: int) -> str:
    return flag if size == 28 else f"{flag}_{size}"


def _npz_search_dirs() -> list[Path]:
    data = settings.data_dir()
    return [data / "medmnist", data, cache_root() / "medmnist"]


def _find_npz(flag: str, size: int) -> tuple[Path | None, list[Path]]:
    filename = _medmnist_filename(flag, size)
    searched = _npz_search_dirs()
    for folder in searched:
        if (folder / filename).is_file():
            return folder / filename, searched
    return None, searched


def _medmnist_info(flag: str, size: int) -> DatasetInfo:
    medinfo = medmnist_table()[flag]
    labels = medinfo["label"]
    class_names = tuple(labels[key] for key in sorted(labels, key=int))
    if len(NAMED_CLASSES.get(flag, ())) == len(class_names):
        class_names = NAMED_CLASSES[flag]
    path, _ = _find_npz(flag, size)
    counts = _npz_split_counts(*file_stamp(path)) if path is not None else None
    description = medinfo["description"]
    if size != 28:
        description += f" This entry is the {size}×{size} version (MedMNIST+)."
    suffix = "" if size == 28 else f"_{size}"
    return DatasetInfo(
        name=medmnist_name(flag, size),
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
    except DAMAGED_FILE_ERRORS:
        return None
    return counts


def _medmnist_download_size(flag: str, size: int) -> str:
    """An upper bound from INFO: medmnist publishes no file sizes, but the pixel count is known and the
    .npz files are compressed, so the download is smaller than the raw pixels."""
    medinfo = medmnist_table()[flag]
    n_images = sum(int(count) for count in medinfo["n_samples"].values())
    n_bytes = n_images * size * size * int(medinfo["n_channels"])
    return f"under {human_bytes(n_bytes)} (its images uncompressed; the .npz is compressed)"


def _medmnist_how_to_get(flag: str, size: int) -> str:
    filename = _medmnist_filename(flag, size)
    suffix = "" if size == 28 else f"_{size}"
    mirror = settings.download_mirror()
    url = f"{mirror}/{filename}" if mirror else medmnist_table()[flag].get(f"url{suffix}", "https://medmnist.com/")
    return (
        f"Put {filename} in {settings.data_dir() / 'medmnist'} (that is $CNN_DATA_DIR/medmnist/), or run "
        f"`python -m cnn_core download {medmnist_name(flag, size)}` while online (from {url})."
    )


def _what_is_here(flag: str, size: int, searched: list[Path]) -> str:
    """For a missing file, what sits beside it: the set at another size (only `bloodmnist_224.npz` downloaded) or
    the file under a name a browser or wget gave it (`DermaMNIST.npz`, `dermamnist (1).npz`,
    `dermamnist.npz?download=1`); "" when neither is there."""
    wanted = _medmnist_filename(flag, size)
    look_alike = re.compile(re.escape(wanted[:-4]) + r"\s*(\(\d+\))?\.npz(\?.*)?", re.IGNORECASE)
    renames = []
    for folder in searched:
        try:
            names = sorted(entry.name for entry in folder.iterdir() if entry.is_file())
        except OSError:
            continue
        renames += [f"{folder / name} (rename it to {wanted})" for name in names
                    if name != wanted and look_alike.fullmatch(name)]
    others = [f"`{medmnist_name(flag, other)}` ({other}×{other} px)" for other in MEDMNIST_SIZES
              if other != size and _find_npz(flag, other)[0] is not None]
    text = f"Found {'; '.join(renames)}. " if renames else ""
    if others:
        text += f"This computer has the set at another size: use {' or '.join(others)}. "
    return text


def _medmnist_status(info: DatasetInfo, flag: str, size: int) -> DatasetStatus:
    path, searched = _find_npz(flag, size)
    return DatasetStatus(
        info=info,
        available=path is not None,
        location=path,
        searched=searched,
        missing=[] if path is not None else [_medmnist_filename(flag, size)],
        how_to_get=("" if path is not None else _what_is_here(flag, size, searched)) + _medmnist_how_to_get(flag, size),
        download_size=_medmnist_download_size(flag, size),
    )


def _read_npy_member(archive: zipfile.ZipFile, member: str, progress: Progress | None = None,
                     before_reading: Callable[[tuple[int, ...], np.dtype], None] | None = None) -> np.ndarray:
    """One .npy member of an npz, decompressed in chunks so `progress` hears how far it got; plain arrays
    only (as np.load with allow_pickle=False). `before_reading(shape, dtype)` sees the header before anything
    is allocated (to refuse an array the machine cannot hold)."""
    with archive.open(member) as stream:
        version = np.lib.format.read_magic(stream)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran_order, dtype = read_header(stream)
        if dtype.hasobject:
            raise ValueError(f"{member} holds Python objects")
        if before_reading is not None:
            before_reading(shape, dtype)
        array = np.empty(shape, dtype=dtype, order="F" if fortran_order else "C")
        target = memoryview(array.reshape(-1, order="A")).cast("B")
        done = 0
        while done < len(target):
            chunk = stream.read(min(NPY_CHUNK_BYTES, len(target) - done))
            if not chunk:
                raise EOFError(f"{member} ends after {done:,} of {len(target):,} bytes")
            target[done : done + len(chunk)] = chunk
            done += len(chunk)
            if progress is not None:
                progress(done / len(target))
    return array


def checked_labels(path: Path, split: str, labels: np.ndarray, info: DatasetInfo, n_images: int | None = None
                   ) -> np.ndarray:
    """A split's labels as int64: [N] class indices, or [N, n_classes] 0/1 flags for multi-label sets.
    DataError for another shape, a count other than `n_images`, or values outside the classes (-1, NaN or
    2,000,000,000 in a damaged or hand-made file: counting such labels would ask for gigabytes)."""
    labels = np.asarray(labels)
    if labels.ndim == 1:
        labels = labels[:, None]
    if labels.ndim != 2 or (n_images is not None and labels.shape[0] != n_images):
        raise DataError(f"{path}: {split}_labels has shape {labels.shape} for {n_images} images.")
    if not np.issubdtype(labels.dtype, np.number) or (labels.size and not np.isfinite(labels).all()):
        raise DataError(f"{path}: {split}_labels holds values that are not class numbers ({labels.dtype}).")
    n_classes = len(info.class_names)
    if info.multi_label:
        if labels.shape[1] != n_classes or (labels.size and (labels.min() < 0 or labels.max() > 1)):
            raise DataError(f"{path}: {split}_labels should be 0/1 flags for {n_classes} labels, shape {labels.shape}.")
        return labels.astype(np.int64)
    if labels.shape[1] != 1:
        raise DataError(f"{path}: {split}_labels has shape {labels.shape}; expected one label per image.")
    if labels.size and (labels.min() < 0 or labels.max() >= n_classes):
        raise DataError(f"{path}: {split}_labels holds values outside 0-{n_classes - 1}.")
    return labels[:, 0].astype(np.int64)


def _room(entry: MedmnistSource, split: str, shape: tuple[int, ...], dtype: np.dtype
          ) -> contextlib.AbstractContextManager:
    """The memory a split's images take while it is built (`reserved_memory`: DataError when it does not fit):
    the array, plus the copy that puts colour channels first."""
    image_bytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    needed = image_bytes * (2 if len(shape) == 4 else 1)
    smaller = [medmnist_name(entry.flag, size) for size in MEDMNIST_SIZES if size < entry.size]
    advice = (f"use a smaller size of the same images ({', '.join(smaller)}), or a computer with more memory."
              if smaller else "use a computer with more memory.")
    return reserved_memory(needed, f"Reading the {split} split of {entry.info.title}, {human_bytes(image_bytes)} of "
                           "images,", advice)


def _build_medmnist(entry: MedmnistSource, path: Path, split: str, progress: Progress | None = None) -> BuiltSplit:
    """Read one split straight from the npz (plain arrays, never pickles): only that split's members are
    decompressed, and medmnist never gets a chance to re-download over the file. Its memory is reserved from
    the header until the split is built, so splits read in parallel count each other."""
    with contextlib.ExitStack() as held:
        return _read_medmnist(entry, path, split, progress,
                              lambda shape, dtype: held.enter_context(_room(entry, split, shape, dtype)))


def _read_medmnist(entry: MedmnistSource, path: Path, split: str, progress: Progress | None,
                   before_reading: Callable[[tuple[int, ...], np.dtype], None]) -> BuiltSplit:
    info = entry.info
    try:
        with zipfile.ZipFile(path) as archive:
            labels = _read_npy_member(archive, f"{split}_labels.npy")
            images = _read_npy_member(archive, f"{split}_images.npy", progress, before_reading)
    except KeyError as exc:
        raise DataError(
            f"{path} has no {split}_images/{split}_labels arrays: it is not a MedMNIST file. "
            f"{_medmnist_how_to_get(entry.flag, entry.size)}"
        ) from exc
    except DataError:
        raise
    except Exception as exc:  # noqa: BLE001 - zipfile/lzma/numpy raise many types for damaged files
        raise DataError(
            f"{path} could not be read ({short(exc)}): it is damaged or not an npz file. "
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
    labels = checked_labels(path, split, labels, info, images.shape[0])
    tensor = torch.from_numpy(images)
    tensor = tensor.unsqueeze(1) if tensor.ndim == 3 else tensor.permute(0, 3, 1, 2)
    return tensor.contiguous(), torch.from_numpy(np.ascontiguousarray(labels)), 0


