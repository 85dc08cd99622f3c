"""Where data is read from, where caches are written and where downloads come from: environment variables."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def data_dir() -> Path:
    """Folder the data sets are read from (`CNN_DATA_DIR`, default `./data`); may be read-only."""
    return Path(os.environ.get("CNN_DATA_DIR", PROJECT_ROOT / "data")).expanduser().resolve()


def cache_dir() -> Path:
    """Writable folder for downloads, extracted files and tensor caches (`CNN_CACHE_DIR`)."""
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "cnn-explorer"
    path = Path(os.environ.get("CNN_CACHE_DIR", default)).expanduser().resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path


def models_dir() -> Path:
    """Shipped checkpoints (`models/` beside the package)."""
    return PROJECT_ROOT / "models"


def runs_dir() -> Path:
    """Checkpoints trained in the app or by default in the CLI (`CNN_RUNS_DIR`, default in the cache)."""
    path = Path(os.environ.get("CNN_RUNS_DIR", cache_dir() / "runs")).expanduser().resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path


def download_mirror() -> str | None:
    """Base address that replaces the download servers (`CNN_DOWNLOAD_MIRROR`), or None for the official ones.

    Instructors can serve the files from a classroom server: `CNN_DOWNLOAD_MIRROR=http://10.0.0.5:8000/data`
    makes MNIST come from `<mirror>/train-images-idx3-ubyte.gz` (and the other three .gz files) and a
    MedMNIST set from `<mirror>/pathmnist.npz` (`pathmnist_64.npz`, ...), checked against the registry's MD5
    or the mirror's `<file>.md5` when it has one. Unset or empty: zenodo.org and torchvision's MNIST servers.
    """
    value = os.environ.get("CNN_DOWNLOAD_MIRROR", "").strip()
    return value.rstrip("/") or None


#: How cards and logs name the two folders, so a downloaded checkpoint names no server folder and works on
#: another machine: `portable_path` writes these, `local_path` reads them back.
FOLDER_VARIABLES = ("$CNN_CACHE_DIR", "$CNN_DATA_DIR")


def _folders() -> list[tuple[str, str]]:
    """(folder as text, its variable), deepest folder first (the cache may sit inside the data folder)."""
    pairs = [(str(cache_dir()), "$CNN_CACHE_DIR"), (str(data_dir()), "$CNN_DATA_DIR")]
    return sorted(pairs, key=lambda pair: -len(pair[0]))


def portable_path(text: str) -> str:
    """`text` with this machine's data and cache folders written as `$CNN_DATA_DIR` and `$CNN_CACHE_DIR`, the
    rest with "/" (a card written on Windows reads on Linux); a path under neither is kept as it is."""
    for folder, variable in _folders():
        if text == folder or text.startswith(folder + os.sep):
            return variable + text[len(folder):].replace(os.sep, "/")
    return text


def local_path(text: str) -> str:
    """`portable_path` undone with this machine's folders (whether or not the variables are set)."""
    for variable in FOLDER_VARIABLES:
        if text == variable or text.startswith((variable + "/", variable + "\\")):
            folder = cache_dir() if variable == "$CNN_CACHE_DIR" else data_dir()
            parts = [part for part in text[len(variable):].replace("\\", "/").split("/") if part]
            return str(folder.joinpath(*parts))
    return text


@contextlib.contextmanager
def replaced_on_success(path: Path) -> Iterator[Path]:
    """A temporary file beside `path` to write; it replaces `path` only when the block ends without an error, so
    a full disk or a failed write leaves the earlier file whole (and no half-written one), and is removed
    otherwise. OSError from the replacement names `path`."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        yield temporary
        try:
            os.replace(temporary, path)
        except OSError as exc:
            raise OSError(exc.errno, exc.strerror, str(path)) from exc
    finally:
        temporary.unlink(missing_ok=True)
