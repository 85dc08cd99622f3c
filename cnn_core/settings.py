"""Where data is read from and where caches are written: two settings, two environment variables."""

from __future__ import annotations

import os
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
