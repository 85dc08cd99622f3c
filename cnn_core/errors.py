"""Errors whose message a person can act on; the CLI and the pages show them without a traceback."""

import re


class CnnError(Exception):
    """Base class: the message says what went wrong and what to do about it."""


class DataError(CnnError):
    """A data set is unknown, missing, corrupt or unusable for the request."""


class CheckpointError(CnnError):
    """A file is not a CNN Explorer checkpoint, or does not fit what was asked for."""


class ConfigError(CnnError):
    """A training or model option is out of range or does not fit the data."""


class ImageError(CnnError):
    """An uploaded or given image cannot be read or is too large."""


def failure_line(exc: BaseException) -> str | None:
    """The one line the CLI prints for a failure a person can act on (exit status 2); None for anything else,
    which keeps its traceback. Besides `CnnError`: the run database (sqlite3: locked by a hung process,
    read-only, a full disk) and running out of memory (MemoryError, or torch's RuntimeError "can't allocate
    memory" / "out of memory": a large MedMNIST_224 split on a laptop)."""
    import sqlite3

    if isinstance(exc, CnnError):
        return str(exc)
    if isinstance(exc, sqlite3.Error):
        return f"the run database in CNN_CACHE_DIR could not be used ({exc})."
    if isinstance(exc, MemoryError) or (isinstance(exc, RuntimeError) and re.search(
            r"can't allocate memory|out of memory|not enough memory", str(exc), re.IGNORECASE)):
        detail = str(exc).strip().splitlines()[-1][:160] if str(exc).strip() else type(exc).__name__
        return (f"this computer ran out of memory ({detail}). Use fewer or smaller images (--limit, a smaller "
                "MedMNIST size), a smaller --batch-size, or a machine with more memory.")
    return None
