"""Downloads into CNN_CACHE_DIR: streamed with byte progress, MD5-checked, then renamed into place.

A family's source says what to fetch (a `DownloadPlan`: the same files on one or more servers, or the
`CNN_DOWNLOAD_MIRROR` of a classroom server) and installs what arrived; this module does the transfer. Every
file streams into a hidden temporary file beside its destination and is checked (length, MD5) before the
source renames it, so a failed or interrupted download leaves no partial file. Failures raise `DataError`
saying who answered what and how else to get the files.
"""

from __future__ import annotations

import glob
import hashlib
import http.client
import math
import os
import re
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from .. import settings
from ..errors import DataError
from .cache import human_bytes, short

#: Bytes per read, seconds a silent server is waited for, seconds between progress reports.
DOWNLOAD_CHUNK_BYTES = 64 * 1024
DOWNLOAD_TIMEOUT_S = 30.0
PROGRESS_INTERVAL_S = 0.1
DOWNLOAD_USER_AGENT = "cnn-explorer/0.1 (python urllib)"


@dataclass(frozen=True)
class DownloadProgress:
    """How far a download is, for progress bars: bytes received over all of its files and their total
    (None while a server has not said how large its file is)."""

    done: int
    total: int | None
    filename: str  # the file being received

    @property
    def fraction(self) -> float | None:
        """done / total in [0, 1], or None while the total is unknown."""
        if not self.total:
            return None
        return min(1.0, self.done / self.total)

    def describe(self) -> str:
        """"12.3 of 206 MB", or "840.0 KB received" while the total is unknown."""
        scale, unit = (1e6, "MB") if max(self.done, self.total or 0) >= 1e6 else (1e3, "KB")
        done = f"{self.done / scale:.1f}"
        if self.total is None:
            return f"{done} {unit} received"
        total = self.total / scale
        return f"{done} of {total:.0f} {unit}" if total >= 100 else f"{done} of {total:.1f} {unit}"


@dataclass(frozen=True)
class RemoteFile:
    url: str
    filename: str  # as served: pathmnist.npz, train-images-idx3-ubyte.gz
    md5: str | None  # the registry's checksum of the served file


@dataclass(frozen=True)
class DownloadPlan:
    title: str
    alternatives: tuple[tuple[RemoteFile, ...], ...]  # the same files on each server, tried in order
    folder: Path  # where they land, in CNN_CACHE_DIR
    how_to_get: str
    size_note: str
    mirror: str | None
    installed_names: tuple[str, ...]  # the files in `folder` once installed (MNIST: unpacked idx files)


def mirror_address() -> str | None:
    """CNN_DOWNLOAD_MIRROR checked to be an http(s) address, or None; DataError for a malformed one."""
    mirror = settings.download_mirror()
    if mirror is not None:
        parsed = urlparse(mirror)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise DataError(
                f"CNN_DOWNLOAD_MIRROR must be an http:// or https:// address such as "
                f"http://10.0.0.5:8000/data, not {mirror!r}. Fix it, or unset it to use the official servers."
            )
    return mirror


def server_name(url: str) -> str:
    """"zenodo.org", or "host:port" when the address names a port."""
    parsed = urlparse(url)
    return f"{parsed.hostname}:{parsed.port}" if parsed.port else str(parsed.hostname)


def connect_error(url: str, timeout: float) -> OSError | None:
    """None when a TCP connection to the URL's host and port opens, else the error."""
    parsed = urlparse(url)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        with socket.create_connection((parsed.hostname, port), timeout=timeout):
            return None
    except OSError as exc:
        return exc


def reachable_alternatives(plan: DownloadPlan, timeout: float = 5.0) -> list[tuple[RemoteFile, ...]]:
    """The alternatives whose server answers a TCP connection: fail fast with a clear message when
    none does, instead of a long hang in the middle of a download."""
    reachable, error = [], None
    for files in plan.alternatives:
        failure = connect_error(files[0].url, timeout)
        if failure is None:
            reachable.append(files)
        error = error or failure
    if reachable:
        return reachable
    if plan.mirror:
        raise DataError(
            f"Cannot download {plan.title}: the download mirror {plan.mirror} (CNN_DOWNLOAD_MIRROR) cannot be "
            f"reached ({short(error)}). Start that server or unset CNN_DOWNLOAD_MIRROR. {plan.how_to_get}"
        )
    raise DataError(
        f"Cannot download {plan.title}: {server_name(plan.alternatives[0][0].url)} cannot be reached "
        f"({short(error)}); this computer seems to be offline. {plan.how_to_get}"
    )


class _ProgressMeter:
    """Counts received bytes and calls back with a `DownloadProgress`, at most every interval."""

    def __init__(self, callback: Callable[[DownloadProgress], None] | None, interval: float = PROGRESS_INTERVAL_S):
        self.callback, self.interval = callback, interval
        self.done, self.sizes, self.filename = 0, [], ""
        self._last_report = -math.inf

    @property
    def total(self) -> int | None:
        return sum(self.sizes) if self.sizes and all(size is not None for size in self.sizes) else None

    def plan(self, sizes: list[int | None]) -> None:
        self.sizes = list(sizes)

    def begin(self, index: int, filename: str, length: int | None) -> None:
        """A file's transfer starts; its Content-Length, when sent, replaces the announced size."""
        self.filename = filename
        if length is not None:
            self.sizes[index] = length
        self._report(force=True)

    def add(self, n_bytes: int) -> None:
        self.done += n_bytes
        self._report(force=False)

    def finish(self) -> None:
        self.sizes = [self.done]  # every file was checked complete: the total is what arrived
        self._report(force=True)

    def _report(self, force: bool) -> None:
        if self.callback is None:
            return
        now = time.monotonic()
        if force or now - self._last_report >= self.interval:
            self._last_report = now
            self.callback(DownloadProgress(done=self.done, total=self.total, filename=self.filename))


def _open_url(url: str, method: str = "GET"):
    request = urllib.request.Request(url, method=method, headers={"User-Agent": DOWNLOAD_USER_AGENT})
    return urllib.request.urlopen(request, timeout=DOWNLOAD_TIMEOUT_S)  # noqa: S310 - http(s) only


def _content_length(response) -> int | None:
    try:
        length = int(response.headers.get("Content-Length", ""))
    except ValueError:
        return None
    return length if length >= 0 else None


def _network_error(
    plan: DownloadPlan, file: RemoteFile, exc: BaseException, received: int | None = None
) -> DataError:
    """A download failure as a sentence: who answered what, or what broke, and how else to get the file."""
    retry = " Nothing was kept; try again."
    if isinstance(exc, urllib.error.HTTPError):
        what = f"{server_name(exc.url or file.url)} answered {exc.code} {exc.reason} for {file.url}"
        if 400 <= exc.code < 500:  # the file is not there (or not for us): trying again will not help
            retry = " Nothing was kept."
    elif isinstance(exc, urllib.error.URLError):
        reason = exc.reason if isinstance(exc.reason, BaseException) else exc
        what = f"{file.url} could not be reached ({short(reason)})"
    elif received:
        what = f"the transfer broke off after {human_bytes(received)} ({short(exc)})"
    else:
        what = short(exc)
    return DataError(f"Downloading {file.filename} failed: {what}.{retry} {plan.how_to_get}")


def _remote_sizes(plan: DownloadPlan, files: tuple[RemoteFile, ...]) -> list[int | None]:
    """Each file's size from a HEAD request, so that a download of several files has a total from the
    start (one file needs none: its GET says). A server without HEAD gives None for that file."""
    if len(files) == 1:
        return [None]
    sizes = []
    for file in files:
        try:
            with _open_url(file.url, method="HEAD") as response:
                sizes.append(_content_length(response))
        except urllib.error.HTTPError as exc:
            if exc.code not in (405, 501):  # HEAD not allowed / not implemented: the GET will say
                raise _network_error(plan, file, exc) from exc
            sizes.append(None)
        except (OSError, http.client.HTTPException) as exc:
            raise _network_error(plan, file, exc) from exc
    return sizes


def _expected_md5(plan: DownloadPlan, file: RemoteFile) -> tuple[str | None, str]:
    """The checksum to verify and where it comes from: a mirror's `<file>.md5` when it publishes one
    (it may serve its own re-compressed copy), else the registry's."""
    registry = "torchvision's MNIST list" if file.filename.endswith(".gz") else "medmnist's INFO"
    if not plan.mirror:
        return file.md5, registry
    sidecar = f"{file.url}.md5"
    try:
        with _open_url(sidecar) as response:
            text = response.read(4096).decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return file.md5, registry
        raise _network_error(plan, RemoteFile(sidecar, f"{file.filename}.md5", None), exc) from exc
    except (OSError, http.client.HTTPException) as exc:
        raise _network_error(plan, RemoteFile(sidecar, f"{file.filename}.md5", None), exc) from exc
    match = re.match(r"\s*([0-9a-fA-F]{32})\b", text)
    if match is None:
        raise DataError(
            f"The mirror's {sidecar} does not start with an MD5 checksum (32 hexadecimal digits, as `md5sum` "
            f"writes it). Fix or remove it on the mirror. {plan.how_to_get}"
        )
    return match.group(1).lower(), f"the mirror's {file.filename}.md5"


def _stream_to_part(plan: DownloadPlan, file: RemoteFile, index: int, part: Path, meter: _ProgressMeter) -> None:
    """GET one file into `part`, counting bytes and hashing as they arrive, then check length and MD5."""
    expected, origin = _expected_md5(plan, file)
    digest = hashlib.md5(usedforsecurity=False)
    received, length = 0, None
    try:
        with _open_url(file.url) as response, open(part, "wb") as out:
            length = _content_length(response)
            meter.begin(index, file.filename, length)
            while chunk := response.read(DOWNLOAD_CHUNK_BYTES):
                out.write(chunk)
                digest.update(chunk)
                received += len(chunk)
                meter.add(len(chunk))
    except (OSError, http.client.HTTPException) as exc:
        raise _network_error(plan, file, exc, received) from exc
    if length is not None and received != length:
        raise DataError(
            f"Downloading {file.filename} failed: the transfer broke off after {received:,} of {length:,} bytes. "
            f"Nothing was kept; try again. {plan.how_to_get}"
        )
    if expected and digest.hexdigest() != expected:
        remedy = "Try again."
        if plan.mirror and not origin.startswith("the mirror"):
            remedy = (f"If the mirror serves its own copy on purpose, it can publish {file.filename}.md5 "
                      "(the `md5sum` line) beside it.")
        raise DataError(
            f"{file.filename} arrived damaged or is not the expected file: its MD5 is {digest.hexdigest()}, "
            f"but {origin} says {expected}. It was deleted. {remedy} {plan.how_to_get}"
        )


def _fetch_first_working(
    plan: DownloadPlan, alternatives: list[tuple[RemoteFile, ...]], meter: _ProgressMeter
) -> dict[str, Path]:
    """Download every file of the first server that has them all into temporary files in the target
    folder: {served file name: temporary file}. On any failure, or an interruption (KeyboardInterrupt,
    an exception raised by the progress callback), the temporary files are deleted before it propagates."""
    try:
        plan.folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(
            f"Cannot create {plan.folder} ({short(exc)}): point CNN_CACHE_DIR at a writable folder."
        ) from exc
    for name in {name for files in alternatives for f in files for name in (f.filename, f.filename.removesuffix(".gz"))}:
        _remove_stale_parts(plan.folder, name)  # MNIST unpacks each .gz into a part of its own
    errors: list[DataError] = []
    for files in alternatives:
        try:
            sizes = _remote_sizes(plan, files)
        except DataError as exc:  # this server lacks a file: the next one may have them all
            errors.append(exc)
            continue
        meter.plan(sizes)
        parts: dict[str, Path] = {}
        try:
            for index, file in enumerate(files):
                parts[file.filename] = plan.folder / f".{file.filename}.{os.getpid()}.{threading.get_ident()}.part"
                _stream_to_part(plan, file, index, parts[file.filename], meter)
        except BaseException:
            for part in parts.values():
                part.unlink(missing_ok=True)
            raise
        meter.finish()
        return parts
    raise errors[-1]


def _remove_stale_parts(folder: Path, filename: str) -> None:
    """Delete the temporary `.<filename>.<pid>.<thread>.part` files of downloads whose process is gone (killed
    mid-download: nothing ran its cleanup). Parts of a live process, maybe another app's download, stay."""
    if os.name != "posix":  # os.kill(pid, 0) only asks on POSIX; on Windows it would end the process
        return
    for part in folder.glob(f".{glob.escape(filename)}.*.part"):
        pid = part.name[len(filename) + 2 :].split(".", 1)[0]
        if not pid.isdigit():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            part.unlink(missing_ok=True)
        except OSError:  # PermissionError: it exists, under another user
            pass



def fetch(
    plan: DownloadPlan,
    reachable: list[tuple[RemoteFile, ...]],
    on_bytes: Callable[[DownloadProgress], None] | None = None,
) -> tuple[dict[str, Path], int]:
    """Download every file of the first of the `reachable` alternatives that has them all: ({served file
    name: temporary file in plan.folder}, bytes received). The caller installs the files and deletes what
    is left; `on_bytes` gets a `DownloadProgress` at most every PROGRESS_INTERVAL_S seconds."""
    meter = _ProgressMeter(on_bytes)
    parts = _fetch_first_working(plan, reachable, meter)
    return parts, meter.done
