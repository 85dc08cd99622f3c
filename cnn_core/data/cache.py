"""Caches every data family shares: uint8 tensor files in CNN_CACHE_DIR, an in-process LRU, small JSON notes.

Cache files are keyed by a fingerprint of their sources (path, size and modification time of every file), so
a changed source is re-read. Files are written atomically (a temporary file renamed into place), so processes
sharing the cache never read half a file, and read back with `torch.load(weights_only=True)`.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import logging
import lzma
import re
import threading
import zipfile
import zlib
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from .. import settings
from ..errors import DataError
from .types import MAX_IMAGE_SIZE, MIN_IMAGE_SIZE, SplitData

log = logging.getLogger(__name__)

#: Bump to invalidate every tensor cache written by an older version of the data package.
CACHE_FORMAT = 1
CACHE_MMAP_BYTES = 512 * 1024**2  # cache files above this are memory-mapped instead of read
MEMORY_MAX_BYTES = 2 * 1024**3
MEMORY_MAX_ITEMS = 12

#: Guards every in-process table of the data package (registered folders, scans, the LRU below).
STATE_LOCK = threading.RLock()
#: What reading a damaged data file raises: gzip, zip and LZMA streams with flipped bits raise zlib.error or
#: lzma.LZMAError (not OSError), cut ones EOFError, bad headers ValueError, missing npz members KeyError.
DAMAGED_FILE_ERRORS = (OSError, EOFError, ValueError, KeyError, IndexError, zipfile.BadZipFile, zlib.error,
                       lzma.LZMAError)
_KEY_LOCKS: dict[tuple, threading.Lock] = {}
_MEMORY: OrderedDict[tuple, SplitData] = OrderedDict()


def cache_root() -> Path:
    """CNN_CACHE_DIR, created when missing; DataError when it cannot be."""
    try:
        return settings.cache_dir()
    except OSError as exc:
        raise DataError(f"CNN_CACHE_DIR cannot be created ({short(exc)}): point it at a writable folder.") from exc


def clear_memory() -> None:
    with STATE_LOCK:
        _MEMORY.clear()


def memory_get(key: tuple) -> SplitData | None:
    with STATE_LOCK:
        value = _MEMORY.get(key)
        if value is not None:
            _MEMORY.move_to_end(key)
        return value


def memory_put(key: tuple, value: SplitData) -> None:
    """Keep `value`, dropping the least recently used splits beyond MEMORY_MAX_ITEMS or MEMORY_MAX_BYTES."""

    def nbytes(data: SplitData) -> int:
        return data.images.numel() + data.labels.numel() * 8

    with STATE_LOCK:
        _MEMORY[key] = value
        _MEMORY.move_to_end(key)
        while len(_MEMORY) > MEMORY_MAX_ITEMS or (
            len(_MEMORY) > 1 and sum(nbytes(v) for v in _MEMORY.values()) > MEMORY_MAX_BYTES
        ):
            _MEMORY.popitem(last=False)


def key_lock(key: tuple) -> threading.Lock:
    """One lock per key, so two threads asking for the same split read its sources once."""
    with STATE_LOCK:
        return _KEY_LOCKS.setdefault(key, threading.Lock())


def check_image_size(size: int) -> int:
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or not MIN_IMAGE_SIZE <= size <= MAX_IMAGE_SIZE:
        raise DataError(f"image_size must be a whole number from {MIN_IMAGE_SIZE} to {MAX_IMAGE_SIZE}, not {size!r}.")
    return int(size)


#: Float32 input a resize chunk may take (`resize_uint8`): 2,048 images of 224 px had taken 1.2 GB.
RESIZE_CHUNK_BYTES = 64 * 2**20


def resize_uint8(images: torch.Tensor, size: int, chunk: int | None = None) -> torch.Tensor:
    """Bilinear, antialiased resize of uint8 [N, C, H, W] images, in chunks of `chunk` images (default: as many
    as fit in `RESIZE_CHUNK_BYTES` as float32, at least one) to bound memory."""
    per_image = 4 * images.shape[1] * max(images.shape[2] * images.shape[3], size * size, 1)
    chunk = chunk or max(1, RESIZE_CHUNK_BYTES // per_image)
    out = torch.empty((images.shape[0], images.shape[1], size, size), dtype=torch.uint8)
    for start in range(0, images.shape[0], chunk):
        block = images[start : start + chunk].float()
        resized = torch.nn.functional.interpolate(block, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        out[start : start + chunk] = resized.round_().clamp_(0, 255).to(torch.uint8)
    return out


def mean_std(images: torch.Tensor) -> tuple[list[float], list[float]]:
    """Per-channel mean and standard deviation in [0, 1] of uint8 images [N, C, H, W].

    Exact and fast: a histogram of the 256 levels per channel, then the sums from it in float64 (a tenth
    of a second for PathMNIST's 90,000 training images, where float sums over every pixel took seconds)."""
    if images.shape[0] == 0:
        raise DataError("The train split has no images to compute channel statistics from.")
    levels = torch.arange(256, dtype=torch.float64) / 255.0
    means, stds = [], []
    for channel in range(images.shape[1]):
        counts = torch.bincount(images[:, channel].reshape(-1), minlength=256).to(torch.float64)
        total = counts.sum()
        mean = float((counts * levels).sum() / total)
        variance = float((counts * (levels - mean) ** 2).sum() / total)
        means.append(mean)
        stds.append(max(variance, 0.0) ** 0.5)
    return means, stds


def read_stats(path: Path, channels: int) -> tuple[list[float], list[float]] | None:
    try:
        data = json.loads(path.read_text())
        mean, std = [float(v) for v in data["mean"]], [float(v) for v in data["std"]]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return (mean, std) if len(mean) == len(std) == channels else None


def safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)[:80] or "dataset"


def tensor_cache_path(name: str, size: int, split: str, fingerprint: str) -> Path:
    return cache_root() / "tensors" / f"{safe_name(name)}-{size}-{split}-{fingerprint[:16]}.pt"


def read_tensor_cache(path: Path) -> tuple[torch.Tensor, torch.Tensor, int] | None:
    """(images, labels, skipped) from a cache file, or None when it is absent, damaged or of another shape."""
    try:
        if not path.is_file():
            return None
        payload = torch.load(path, map_location="cpu", weights_only=True, mmap=path.stat().st_size > CACHE_MMAP_BYTES)
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


def write_tensor_cache(path: Path, images: torch.Tensor, labels: torch.Tensor, skipped: int) -> None:
    """Write atomically (temporary file, then rename) and drop older versions of the same split."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with settings.replaced_on_success(path) as temporary:
            torch.save({"images": _own_storage(images), "labels": _own_storage(labels), "skipped": int(skipped)},
                       temporary)
        prefix = path.name.rsplit("-", 1)[0] + "-"
        for old in path.parent.glob(f"{glob.escape(prefix)}*.pt"):
            if old != path and len(old.name) == len(path.name):
                old.unlink(missing_ok=True)
    except OSError as exc:
        log.warning("Could not write the cache file %s (%s); the data will be re-read next time.", path, exc)


def _own_storage(tensor: torch.Tensor) -> torch.Tensor:
    """torch.save writes a tensor's whole storage: copy views so only their own bytes are written."""
    if tensor.untyped_storage().nbytes() != tensor.numel() * tensor.element_size() or not tensor.is_contiguous():
        return tensor.contiguous().clone()
    return tensor


def write_json(path: Path, payload: dict) -> None:
    """Write a small JSON note atomically; a read-only cache costs a recomputation later, not an error."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with settings.replaced_on_success(path) as temporary:
            temporary.write_text(json.dumps(payload))
    except OSError as exc:
        log.warning("Could not write %s (%s)", path, exc)


def file_stamp(path: Path) -> tuple[str, int, int]:
    """(path, size in bytes, modification time in ns): what a fingerprint records of a source file."""
    stat = path.stat()
    return (str(path), stat.st_size, stat.st_mtime_ns)


def digest(parts: object) -> str:
    """SHA-256 hex digest of a JSON-able description: the fingerprint of a source."""
    return hashlib.sha256(json.dumps(parts, default=str).encode()).hexdigest()


def human_bytes(n_bytes: float) -> str:
    """"840 bytes", "12.3 MB": decimal units, as download pages state sizes."""
    for unit in ("bytes", "KB", "MB", "GB"):
        if n_bytes < 1000 or unit == "GB":
            return f"{n_bytes:.0f} {unit}" if unit == "bytes" else f"{n_bytes:.1f} {unit}"
        n_bytes /= 1000
    return f"{n_bytes:.1f} GB"


def short(exc: BaseException) -> str:
    """An exception as one line of at most 300 characters, for messages."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."


#: Bytes promised to reads in progress (`reserved_memory`): two splits read in parallel threads each saw the
#: same free memory before either had allocated anything.
_RESERVED_MEMORY = [0]
_RESERVED_LOCK = threading.Lock()


@contextlib.contextmanager
def reserved_memory(needed: int, what: str, advice: str) -> Iterator[None]:
    """Hold `needed` bytes (the images plus any copy made while reading them) for a read, after checking them
    against `device.available_memory_bytes()` less what reads in progress hold; DataError when they do not fit
    (no check when the free memory is unknown). Without it a split too large for the machine (PathMNIST at
    224 px: 13.5 GB of training images) ends in an out-of-memory kill or minutes of swapping, not a message."""
    from ..device import available_memory_bytes

    with _RESERVED_LOCK:
        room = available_memory_bytes()
        if room is not None:
            room = max(0, room - _RESERVED_MEMORY[0])
            if needed > room:
                raise DataError(f"{what} needs {human_bytes(needed)} of memory and this computer has "
                                f"{human_bytes(room)} free: {advice}")
        _RESERVED_MEMORY[0] += needed
    try:
        yield
    finally:
        with _RESERVED_LOCK:
            _RESERVED_MEMORY[0] -= needed
