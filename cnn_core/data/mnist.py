"""MNIST: the four idx files, plain or gzipped, in CNN_DATA_DIR/MNIST/raw or downloaded into the cache.

torchvision reads the uncompressed idx files; gzipped archives are unpacked into CNN_CACHE_DIR once per
version of the archives (never next to the originals: CNN_DATA_DIR may be read-only). One twelfth of the
official training images (5,000, seeded) is set aside as a fixed validation split.
"""

from __future__ import annotations

import gzip
import json
import math
import os
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .. import settings
from ..errors import DataError
from .cache import CACHE_FORMAT, DAMAGED_FILE_ERRORS, cache_root, digest, file_stamp, short, write_json
from .download import DownloadPlan, RemoteFile, mirror_address
from .source import BuiltSplit, DataSource, Located, Progress
from .types import SPLITS, DatasetInfo, DatasetStatus

_MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
BASENAMES = (*_MNIST_FILES["train"], *_MNIST_FILES["test"])
VAL_FRACTION = 1 / 12  # 5,000 of the 60,000 training images
VAL_SEED = 0
OFFICIAL_COUNTS = {"train": 55_000, "val": 5_000, "test": 10_000}
#: The four official .gz files torchvision downloads: 9,912,422 + 28,881 + 1,648,877 + 4,542 bytes.
DOWNLOAD_SIZE = "11.6 MB"


class MnistSource(DataSource):
    """The MNIST handwritten digits, split train 55,000 / val 5,000 / test 10,000."""

    def __init__(self) -> None:
        self.info = mnist_info()

    def status(self) -> DatasetStatus:
        return _mnist_status(self.info, _locate_mnist())

    def locate(self) -> Located | None:
        found = _locate_mnist()
        if found.missing:
            return None
        stats = [file_stamp(path) for path in found.sources.values()]
        fingerprint = digest([CACHE_FORMAT, "mnist", stats, VAL_FRACTION, VAL_SEED])
        return Located(fingerprint=fingerprint, location=found.location, files=found)

    def read(self, located: Located, split: str, progress: Progress | None = None) -> dict[str, BuiltSplit]:
        return _build_mnist(located.files, split)  # a second or two: no progress to tell

    def class_counts(self) -> dict[str, list[int]]:
        """From the two label files only (70 kB), split as loading splits them."""
        found = _locate_mnist()
        if found.missing:
            raise self.missing_error()
        try:
            train = _idx_labels(found.sources["train-labels-idx1-ubyte"])
            test = _idx_labels(found.sources["t10k-labels-idx1-ubyte"])
        except DAMAGED_FILE_ERRORS as exc:
            raise DataError(f"The MNIST label files could not be read ({short(exc)}): one is damaged or not an MNIST "
                            f"file; replace it with a good copy. {_mnist_how_to_get()}") from exc
        val = val_mask(len(train))
        return {split: np.bincount(labels, minlength=10).tolist()
                for split, labels in (("train", train[~val]), ("val", train[val]), ("test", test))}

    def download_plan(self) -> DownloadPlan:
        """torchvision's four files from its mirrors (or CNN_DOWNLOAD_MIRROR), checked by its MD5 list."""
        from torchvision.datasets import MNIST

        mirror = mirror_address()
        bases = [mirror] if mirror else [base.rstrip("/") for base in MNIST.mirrors]
        alternatives = tuple(
            tuple(RemoteFile(f"{base}/{filename}", filename, md5) for filename, md5 in MNIST.resources) for base in bases
        )
        return DownloadPlan(self.info.title, alternatives, cache_root() / "MNIST" / "raw", _mnist_how_to_get(),
                            DOWNLOAD_SIZE, mirror, BASENAMES)  # fmt: skip

    def install(self, plan: DownloadPlan, parts: dict[str, Path]) -> None:
        """Unpack the archives (the cache keeps the uncompressed idx files torchvision reads); all four are
        renamed into place only once all four unpacked."""
        unpacked: dict[str, Path] = {}
        try:
            for filename, part in parts.items():
                base = filename.removesuffix(".gz")
                unpacked[base] = plan.folder / f".{base}.{os.getpid()}.{threading.get_ident()}.part"
                with gzip.open(part, "rb") as reader, open(unpacked[base], "wb") as writer:
                    shutil.copyfileobj(reader, writer, length=1024 * 1024)
            for base, path in unpacked.items():
                os.replace(path, plan.folder / base)
        except DAMAGED_FILE_ERRORS as exc:
            raise DataError(
                f"The downloaded MNIST archives could not be unpacked into {plan.folder} ({short(exc)}). "
                f"{plan.how_to_get}"
            ) from exc
        finally:
            for path in unpacked.values():
                path.unlink(missing_ok=True)


@dataclass(frozen=True)
class _MnistFiles:
    sources: dict[str, Path]  # basename -> the file to read it from (.gz or uncompressed)
    missing: list[str]
    location: Path | None
    searched: list[Path]
    root_ready: Path | None  # a root torchvision can read as is (all four uncompressed files there)
    seen: tuple[str, ...] = ()  # files found in the searched folders when some are missing


def idx_basename(filename: str) -> str | None:
    """The official MNIST name a file stands for, under the names people have: `.gz` or not, dots, dashes or
    underscores (`t10k-images.idx3-ubyte` as 7-Zip and many mirrors write it), any case; None for others.

    >>> idx_basename("T10K-Images.IDX3-UBYTE.gz")
    't10k-images-idx3-ubyte'
    """
    name = filename.lower().removesuffix(".gz").replace(".", "-").replace("_", "-")
    return name if name in BASENAMES else None


def _data_folders() -> list[Path]:
    """Where MNIST may sit in CNN_DATA_DIR: MNIST/raw (torchvision's layout) first, then MNIST/, any case."""
    root = settings.data_dir()
    tops = [root / "MNIST"] + sorted(p for p in _children(root) if p.name.lower() == "mnist" and p.name != "MNIST")
    folders = []
    for top in tops:
        folders += [top / "raw"] + sorted(p for p in _children(top) if p.name.lower() == "raw" and p.name != "raw")
        folders.append(top)
    return folders


def _children(folder: Path) -> list[Path]:
    try:
        return [p for p in folder.iterdir() if p.is_dir()]
    except OSError:
        return []


def _idx_files_in(folder: Path) -> tuple[dict[str, Path], list[str]]:
    """(official name -> file, every file name seen) in one folder; an exact official name wins over others,
    plain over gzipped."""
    try:
        files = sorted((p for p in folder.iterdir() if p.is_file()), key=lambda p: (p.name.endswith(".gz"), p.name))
    except OSError:
        return {}, []
    found: dict[str, Path] = {}
    for path in sorted(files, key=lambda p: idx_basename(p.name) != p.name.removesuffix(".gz")):
        base = idx_basename(path.name)
        if base and base not in found:
            found[base] = path
    return found, [p.name for p in files if not p.name.startswith(".")]


def _locate_mnist() -> _MnistFiles:
    """Find the four MNIST files (see `idx_basename` for the names accepted) in CNN_DATA_DIR, else the cache's
    copy."""
    cache_raw = cache_root() / "MNIST" / "raw"
    folders = [f for f in _data_folders() if f.is_dir()] or [settings.data_dir() / "MNIST" / "raw"]
    best: dict[str, Path] = {}
    seen: list[str] = []
    for folder in folders:
        in_data, names = _idx_files_in(folder)
        if len(in_data) == len(BASENAMES):
            exact = all(path.name == base for base, path in in_data.items())
            ready = folder.parent.parent if exact and folder.name == "raw" and folder.parent.name == "MNIST" else None
            return _MnistFiles(in_data, [], folder, folders + [cache_raw], ready)
        if len(in_data) > len(best) or not best:
            best, seen = in_data, names
    in_cache = {base: cache_raw / base for base in BASENAMES if (cache_raw / base).is_file()}
    if len(in_cache) == len(BASENAMES):
        return _MnistFiles(in_cache, [], cache_raw, folders + [cache_raw], cache_root())
    missing = [f"{base}.gz" for base in BASENAMES if base not in best]
    return _MnistFiles({}, missing, None, folders + [cache_raw], None, tuple(seen))


def _mnist_how_to_get() -> str:
    files = ", ".join(f"{base}.gz" for base in BASENAMES)
    return (
        f"Put the four MNIST files ({files}; gzipped or not, `.idx3-ubyte` names work too) in {settings.data_dir() / 'MNIST' / 'raw'} "
        "(that is $CNN_DATA_DIR/MNIST/raw/), or run `python -m cnn_core download mnist` while online "
        f"({DOWNLOAD_SIZE}, saved under $CNN_CACHE_DIR/MNIST/raw/)."
    )


def _mnist_status(info: DatasetInfo, found: _MnistFiles) -> DatasetStatus:
    how_to_get = _mnist_how_to_get()
    if found.missing and found.seen:
        shown = ", ".join(found.seen[:8]) + (f" and {len(found.seen) - 8} more" if len(found.seen) > 8 else "")
        how_to_get = f"Found only: {shown}. {how_to_get}"
    return DatasetStatus(
        info=info,
        available=not found.missing,
        location=found.location,
        searched=list(found.searched),
        missing=list(found.missing),
        how_to_get=how_to_get,
        download_size=DOWNLOAD_SIZE,
    )


def mnist_info() -> DatasetInfo:
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
        source="http://yann.lecun.com/exdb/mnist/ (the idx files, as torchvision.datasets.MNIST downloads them)",
        description=(
            "70,000 grayscale 28×28 images of handwritten digits 0-9 written by American Census Bureau "
            "employees and high-school students, centered by their center of mass. The official split "
            "is 60,000 training and 10,000 test images; this app sets one twelfth of the training images "
            f"aside as a fixed validation set (5,000, drawn at random with seed {VAL_SEED}, the "
            "same on every computer), so the splits are train 55,000 / val 5,000 / test 10,000."
        ),
        license="Y. LeCun, C. Cortes and C. J. C. Burges (terms: http://yann.lecun.com/exdb/mnist/)",
        n_samples=counts or dict(OFFICIAL_COUNTS),
        root=None,
    )


def _mnist_counts(found: _MnistFiles) -> dict[str, int] | None:
    """Split sizes from the idx label-file headers (8 bytes each), or None when unreadable."""
    if found.missing:
        return None
    try:
        n_train = _idx_count(found.sources["train-labels-idx1-ubyte"])
        n_test = _idx_count(found.sources["t10k-labels-idx1-ubyte"])
    except DAMAGED_FILE_ERRORS:
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


def _idx_labels(path: Path) -> np.ndarray:
    """The labels of an idx1 file (plain or gzipped) as int64."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as handle:
        raw = handle.read()
    if len(raw) < 8 or raw[:4] != b"\x00\x00\x08\x01":
        raise ValueError(f"{path.name} is not an idx label file")
    return np.frombuffer(raw, dtype=np.uint8, offset=8).astype(np.int64)


def _idx_images(path: Path) -> np.ndarray:
    """The images of an idx3 file (plain or gzipped) as uint8 [N, H, W] (LeCun et al.'s format: magic 0x00000803,
    then N, H, W as big-endian int32, then the pixels)."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as handle:
        raw = handle.read()
    if len(raw) < 16 or raw[:4] != b"\x00\x00\x08\x03":
        raise ValueError(f"{path.name} is not an idx image file")
    n, height, width = (int.from_bytes(raw[k : k + 4], "big") for k in (4, 8, 12))
    if len(raw) != 16 + n * height * width:
        raise ValueError(f"{path.name} holds {len(raw) - 16} pixel bytes, not {n}×{height}×{width}")
    return np.frombuffer(raw, dtype=np.uint8, offset=16).reshape(n, height, width).copy()


def _mnist_val_count(n_train_total: int) -> int:
    return math.floor(n_train_total * VAL_FRACTION + 0.5)


def val_mask(n_train_total: int) -> np.ndarray:
    """True for the images carved out as the validation split (same images on every machine)."""
    order = np.random.default_rng(VAL_SEED).permutation(n_train_total)
    mask = np.zeros(n_train_total, dtype=bool)
    mask[order[: _mnist_val_count(n_train_total)]] = True
    return mask


def _mnist_readable_root(sources: dict[str, Path], ready: Path | None) -> Path:
    """A root holding MNIST/raw/<uncompressed files> for torchvision; .gz files are decompressed
    into CNN_CACHE_DIR (never into CNN_DATA_DIR), once per version of the archives."""
    if ready is not None:
        return ready
    root = cache_root()
    raw = root / "MNIST" / "raw"
    stamp_path = raw / ".cnn-explorer-source.json"
    stamp = digest([file_stamp(path) for path in sources.values()])
    try:
        current = json.loads(stamp_path.read_text()).get("stamp")
    except (OSError, ValueError, AttributeError):
        current = None
    if current == stamp and all((raw / base).is_file() for base in BASENAMES):
        return root
    try:
        raw.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"Cannot create {raw} to unpack MNIST ({short(exc)}): make CNN_CACHE_DIR writable.") from exc
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
        except DAMAGED_FILE_ERRORS as exc:
            temporary.unlink(missing_ok=True)
            if getattr(exc, "filename", None) in (str(temporary), str(target)):
                raise DataError(f"Cannot write {target} ({short(exc)}): make CNN_CACHE_DIR writable.") from exc
            raise DataError(
                f"{source} could not be unpacked ({short(exc)}): it is damaged or not a gzip file. "
                f"Replace it with a good copy. {_mnist_how_to_get()}"
            ) from exc
    write_json(stamp_path, {"stamp": stamp})
    return root


def mnist_torchvision_root() -> Path:
    """A root that `torchvision.datasets.MNIST(root, download=False)` reads (benchmarks race torchvision's own
    pipeline on it); gzipped archives are unpacked into the cache first. DataError when MNIST is missing."""
    found = _locate_mnist()
    if found.missing:
        raise MnistSource().missing_error()
    return _mnist_readable_root(found.sources, found.root_ready)


def _build_mnist(found: _MnistFiles, split: str) -> dict[str, BuiltSplit]:
    """The split's images and labels from the idx files (plain or gzipped), read here rather than through
    torchvision's MNIST class: that import costs the web server about 190 MiB for a few lines of parsing."""
    image_name, label_name = _MNIST_FILES["test" if split == "test" else "train"]
    image_path, label_path = found.sources[image_name], found.sources[label_name]
    try:
        images = torch.from_numpy(_idx_images(image_path))
        labels = torch.from_numpy(_idx_labels(label_path))
    except DAMAGED_FILE_ERRORS as exc:
        raise DataError(
            f"The MNIST files {image_path} and {label_path.name} could not be read ({short(exc)}). "
            f"They may be damaged. {_mnist_how_to_get()}"
        ) from exc
    if images.ndim != 3 or tuple(images.shape[1:]) != (28, 28) or len(labels) != len(images):
        raise DataError(
            f"The MNIST files {image_path} and {label_path.name} do not hold 28×28 images with one label each "
            f"(images {tuple(images.shape)}, labels {tuple(labels.shape)}). {_mnist_how_to_get()}"
        )
    images = images.unsqueeze(1).contiguous()
    labels = labels.to(torch.int64)
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) > 9):
        raise DataError(f"The MNIST label file {label_path} holds labels outside 0-9.")
    if split == "test":
        return {"test": (images, labels, 0)}
    val = torch.from_numpy(val_mask(len(images)))
    return {
        "train": (images[~val].contiguous(), labels[~val].contiguous(), 0),
        "val": (images[val].contiguous(), labels[val].contiguous(), 0),
    }

