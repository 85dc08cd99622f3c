"""Downloads with byte progress, against a loopback HTTP server standing in for CNN_DOWNLOAD_MIRROR:
the fraction, where files land, integrity (MD5 from the registry or the mirror's `<file>.md5`), and that
every failure is a DataError that leaves no partial file behind."""

from __future__ import annotations

import copy
import hashlib
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from cnn_core import data, settings
from cnn_core.data import medmnist
from cnn_core.errors import DataError
from data_fixtures import (
    md5_line,
    npz_bytes,
    serve_files,
    tiny_dermamnist_arrays,
    tiny_mnist_archives,
    tiny_mnist_arrays,
)

ROOT = Path(__file__).resolve().parents[1]
MNIST_RAW = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
DERMA_COUNTS = {"train": 60, "val": 10, "test": 10}  # per class: 560 images, an npz of about 1.2 MB
REAL_DATA = settings.data_dir()  # the user's CNN_DATA_DIR, read before any test points it elsewhere
#: md5 of the official uncompressed MNIST files (the shared data's README)
OFFICIAL_MNIST_MD5 = {
    "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
}


@pytest.fixture
def places(tmp_path, monkeypatch) -> tuple[Path, Path]:
    """An empty CNN_DATA_DIR (nothing is there, so everything is missing) and an empty CNN_CACHE_DIR."""
    data_dir, cache_dir = tmp_path / "data", tmp_path / "cache"
    data_dir.mkdir()
    monkeypatch.setenv("CNN_DATA_DIR", str(data_dir))
    monkeypatch.setenv("CNN_CACHE_DIR", str(cache_dir))
    monkeypatch.delenv("CNN_DOWNLOAD_MIRROR", raising=False)
    data.clear_caches(forget_registered=True)
    yield data_dir, cache_dir
    data.clear_caches(forget_registered=True)


@pytest.fixture(scope="module")
def derma_npz() -> bytes:
    return npz_bytes(tiny_dermamnist_arrays(DERMA_COUNTS))


def _files_under(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def _no_partial_files(cache_dir: Path) -> None:
    leftovers = [name for name in _files_under(cache_dir) if name.endswith(".part")]
    assert not leftovers, leftovers


def _check_progress(events: list[data.DownloadProgress], total: int) -> None:
    """Starts at 0, never goes back, ends at exactly the total (fraction 1.0)."""
    assert events, "no progress was reported"
    assert events[0].done == 0
    dones = [event.done for event in events]
    assert dones == sorted(dones)
    fractions = [event.fraction for event in events]
    assert None not in fractions and fractions == sorted(fractions)
    assert events[-1].done == events[-1].total == total and events[-1].fraction == 1.0


# --------------------------------------------------------------------------------------------------
# Success: MedMNIST and MNIST through the mirror


def test_medmnist_download_reports_bytes_and_loads(places, monkeypatch, derma_npz):
    data_dir, cache_dir = places
    files = {"dermamnist.npz": derma_npz, "dermamnist.npz.md5": md5_line(derma_npz, "dermamnist.npz")}
    events, lines = [], []
    with serve_files(files, chunk_bytes=32 * 1024, chunk_delay_s=0.01) as server:  # ~40 chunks, ~0.4 s
        monkeypatch.setenv("CNN_DOWNLOAD_MIRROR", server.url)
        assert not data.dataset_status("dermamnist").available
        assert data.download_server("dermamnist") == server.url.split("/")[2]  # 127.0.0.1:PORT
        assert data.download_server_reachable("dermamnist")
        started = time.monotonic()
        folder = data.download_dataset("dermamnist", progress=lines.append, on_bytes=events.append)
        seconds = time.monotonic() - started
    assert folder == cache_dir / "medmnist"
    assert (folder / "dermamnist.npz").read_bytes() == derma_npz
    assert server.requests == [("GET", "/mirror/dermamnist.npz.md5"), ("GET", "/mirror/dermamnist.npz")]
    _check_progress(events, len(derma_npz))
    assert {event.filename for event in events} == {"dermamnist.npz"}
    # reports are throttled (about every 0.1 s), not one per 32 KB chunk
    assert 3 <= len(events) <= seconds / 0.1 + 3, (len(events), seconds)
    assert lines[0].startswith("Downloading DermaMNIST") and "downloaded" in lines[-1]
    assert _files_under(data_dir) == []  # nothing is ever written into CNN_DATA_DIR
    _no_partial_files(cache_dir)

    status = data.dataset_status("dermamnist")
    assert status.available and status.location == folder / "dermamnist.npz"
    expected = tiny_dermamnist_arrays(DERMA_COUNTS)
    for split in data.SPLITS:
        loaded = data.load_split("dermamnist", split)
        np.testing.assert_array_equal(loaded.images.permute(0, 2, 3, 1).numpy(), expected[f"{split}_images"])
        np.testing.assert_array_equal(loaded.labels.numpy(), expected[f"{split}_labels"][:, 0])


def test_mnist_download_has_one_total_for_its_four_files(places, monkeypatch):
    data_dir, cache_dir = places
    archives = tiny_mnist_archives()
    files = {**archives, **{f"{name}.md5": md5_line(payload, name) for name, payload in archives.items()}}
    events = []
    with serve_files(files) as server:
        monkeypatch.setenv("CNN_DOWNLOAD_MIRROR", server.url)
        folder = data.download_dataset("mnist", on_bytes=events.append)
    total = sum(len(payload) for payload in archives.values())
    _check_progress(events, total)
    assert all(event.total == total for event in events)  # known from the start (HEAD requests)
    assert {event.filename for event in events} == set(archives)
    assert folder == cache_dir / "MNIST" / "raw"
    assert _files_under(folder) == sorted(MNIST_RAW)  # unpacked for torchvision; no archives, no .part
    assert _files_under(data_dir) == []
    arrays = tiny_mnist_arrays()
    test = data.load_split("mnist", "test")
    np.testing.assert_array_equal(test.images[:, 0].numpy(), arrays["test"][0])
    np.testing.assert_array_equal(test.labels.numpy(), arrays["test"][1])
    assert len(data.load_split("mnist", "train")) + len(data.load_split("mnist", "val")) == len(arrays["train"][1])


def test_load_split_with_download_fetches_from_the_mirror(places, monkeypatch, derma_npz):
    files = {"dermamnist.npz": derma_npz, "dermamnist.npz.md5": md5_line(derma_npz, "dermamnist.npz")}
    with serve_files(files) as server:
        monkeypatch.setenv("CNN_DOWNLOAD_MIRROR", server.url)
        train = data.load_split("dermamnist", "train", download=True)
    assert len(train) == 7 * DERMA_COUNTS["train"]


def test_a_present_download_is_not_fetched_again(places, monkeypatch, derma_npz):
    files = {"dermamnist.npz": derma_npz, "dermamnist.npz.md5": md5_line(derma_npz, "dermamnist.npz")}
    with serve_files(files) as server:
        monkeypatch.setenv("CNN_DOWNLOAD_MIRROR", server.url)
        data.download_dataset("dermamnist")
        n_requests = len(server.requests)
        lines = []
        data.download_dataset("dermamnist", progress=lines.append)
        assert len(server.requests) == n_requests
    assert "already in" in lines[0]


def test_two_simultaneous_downloads_of_one_set_fetch_it_once(places, monkeypatch, derma_npz):
    """Two app sessions clicking Download at once: the second waits for the first and finds the file."""
    files = {"dermamnist.npz": derma_npz, "dermamnist.npz.md5": md5_line(derma_npz, "dermamnist.npz")}
    results, errors = [], []

    def fetch() -> None:
        try:
            results.append(data.download_dataset("dermamnist"))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    with serve_files(files, chunk_delay_s=0.005) as server:
        monkeypatch.setenv("CNN_DOWNLOAD_MIRROR", server.url)
        threads = [threading.Thread(target=fetch) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
    assert not errors and len(results) == 2
    assert server.requests.count(("GET", "/mirror/dermamnist.npz")) == 1
    _no_partial_files(places[1])


@pytest.mark.realdata
def test_real_mnist_through_a_mirror_is_byte_exact(places, monkeypatch):
    """The real MNIST archives (11.4 MB) served by a classroom mirror with their .md5 files: the unpacked
    files in the cache are the official ones, and the loader reads 60,000 + 10,000 images."""
    raw = REAL_DATA / "MNIST" / "raw"
    archives = {f"{base}.gz": (raw / f"{base}.gz") for base in MNIST_RAW}
    if not all(path.is_file() for path in archives.values()):
        pytest.skip(f"real MNIST archives not under CNN_DATA_DIR ({REAL_DATA})")
    payloads = {name: path.read_bytes() for name, path in archives.items()}
    files = {**payloads, **{f"{name}.md5": md5_line(payload, name) for name, payload in payloads.items()}}
    events = []
    with serve_files(files) as server:
        monkeypatch.setenv("CNN_DOWNLOAD_MIRROR", server.url)
        folder = data.download_dataset("mnist", on_bytes=events.append)
    _check_progress(events, sum(len(payload) for payload in payloads.values()))
    for base, md5 in OFFICIAL_MNIST_MD5.items():
        assert hashlib.md5((folder / base).read_bytes()).hexdigest() == md5, base
    assert [len(data.load_split("mnist", split)) for split in data.SPLITS] == [55_000, 5_000, 10_000]


# --------------------------------------------------------------------------------------------------
# Integrity: the registry's MD5 unless the mirror publishes its own


def test_registry_md5_is_checked_when_the_mirror_publishes_none(places, monkeypatch, derma_npz):
    _, cache_dir = places
    with serve_files({"dermamnist.npz": derma_npz}) as server:
        monkeypatch.setenv("CNN_DOWNLOAD_MIRROR", server.url)
        with pytest.raises(DataError) as caught:
            data.download_dataset("dermamnist")
        message = str(caught.value)
        assert "medmnist's INFO" in message and hashlib.md5(derma_npz).hexdigest() in message
        assert "dermamnist.npz.md5" in message  # how a mirror serving its own copy fixes it
        assert _files_under(cache_dir / "medmnist") == []

        # the same file passes once the registry's checksum is the file's own
        table = copy.deepcopy(medmnist.medmnist_table())
        table["dermamnist"]["MD5"] = hashlib.md5(derma_npz).hexdigest()
        monkeypatch.setattr(medmnist, "medmnist_table", lambda: table)
        data.download_dataset("dermamnist")
    assert (cache_dir / "medmnist" / "dermamnist.npz").read_bytes() == derma_npz


def test_mnist_registry_md5s_are_torchvisions(places, monkeypatch):
    from torchvision.datasets import MNIST

    _, cache_dir = places
    archives = tiny_mnist_archives()
    with serve_files(archives) as server:
        monkeypatch.setenv("CNN_DOWNLOAD_MIRROR", server.url)
        with pytest.raises(DataError, match="torchvision's MNIST list"):
            data.download_dataset("mnist")
        assert _files_under(cache_dir / "MNIST") == []
        monkeypatch.setattr(MNIST, "resources", [(name, hashlib.md5(payload).hexdigest())
                                                 for name, payload in archives.items()])
        data.download_dataset("mnist")
    assert _files_under(cache_dir / "MNIST" / "raw") == sorted(MNIST_RAW)


def test_md5_mismatch_is_a_data_error_and_keeps_nothing(places, monkeypatch, derma_npz):
    _, cache_dir = places
    wrong = md5_line(derma_npz + b"x", "dermamnist.npz")
    with serve_files({"dermamnist.npz": derma_npz, "dermamnist.npz.md5": wrong}) as server:
        monkeypatch.setenv("CNN_DOWNLOAD_MIRROR", server.url)
        with pytest.raises(DataError, match="arrived damaged or is not the expected file") as caught:
            data.download_dataset("dermamnist")
    assert "the mirror's dermamnist.npz.md5" in str(caught.value)
    assert _files_under(cache_dir) == []
    assert not data.dataset_status("dermamnist").available


def test_mnist_lands_all_four_files_or_none(places, monkeypatch):
    _, cache_dir = places
    archives = tiny_mnist_archives()
    sidecars = {f"{name}.md5": md5_line(payload, name) for name, payload in archives.items()}
    sidecars["t10k-labels-idx1-ubyte.gz.md5"] = md5_line(b"something else", "t10k-labels-idx1-ubyte.gz")
    with serve_files({**archives, **sidecars}) as server:
        monkeypatch.setenv("CNN_DOWNLOAD_MIRROR", server.url)
        with pytest.raises(DataError, match="t10k-labels-idx1-ubyte.gz arrived damaged"):
            data.download_dataset("mnist")
    assert _files_under(cache_dir) == []  # the three good files were not kept either
    assert not data.dataset_status("mnist").available


def test_a_malformed_md5_file_is_explained(places, monkeypatch, derma_npz):
    files = {"dermamnist.npz": derma_npz, "dermamnist.npz.md5": b"<html>not a checksum</html>"}
    with serve_files(files) as server:
        monkeypatch.setenv("CNN_DOWNLOAD_MIRROR", server.url)
        with pytest.raises(DataError, match="does not start with an MD5 checksum"):
            data.download_dataset("dermamnist")
    assert _files_under(places[1]) == []


# --------------------------------------------------------------------------------------------------
# Failures: every one a DataError, nothing half-written left


def test_missing_file_on_the_server_is_a_data_error(places, monkeypatch):
    with serve_files({}) as server:
        monkeypatch.setenv("CNN_DOWNLOAD_MIRROR", server.url)
        with pytest.raises(DataError, match="answered 404") as caught:
            data.download_dataset("dermamnist")
        assert "dermamnist.npz" in str(caught.value) and "Put dermamnist.npz in" in str(caught.value)
        with pytest.raises(DataError, match="answered 404"):
            data.download_dataset("mnist")
    assert _files_under(places[1]) == []


def test_refused_connection_names_the_mirror(places, monkeypatch):
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    mirror = f"http://127.0.0.1:{port}/mirror"
    monkeypatch.setenv("CNN_DOWNLOAD_MIRROR", mirror)
    assert not data.download_server_reachable("dermamnist", timeout=1)
    with pytest.raises(DataError, match="cannot be reached") as caught:
        data.download_dataset("dermamnist")
    assert mirror in str(caught.value) and "CNN_DOWNLOAD_MIRROR" in str(caught.value)
    assert _files_under(places[1]) == []


def test_a_transfer_that_breaks_off_keeps_nothing(places, monkeypatch, derma_npz):
    files = {"dermamnist.npz": derma_npz, "dermamnist.npz.md5": md5_line(derma_npz, "dermamnist.npz")}
    events = []
    with serve_files(files, break_after={"dermamnist.npz": len(derma_npz) // 2}) as server:
        monkeypatch.setenv("CNN_DOWNLOAD_MIRROR", server.url)
        with pytest.raises(DataError, match="broke off") as caught:
            data.download_dataset("dermamnist", on_bytes=events.append)
    assert "try again" in str(caught.value)
    assert events and events[-1].done <= len(derma_npz) // 2 and events[-1].fraction < 1
    assert _files_under(places[1]) == []


def test_an_interrupted_download_keeps_nothing(places, monkeypatch, derma_npz):
    """Ctrl-C in the CLI, or Streamlit stopping the script from inside the progress callback."""
    files = {"dermamnist.npz": derma_npz, "dermamnist.npz.md5": md5_line(derma_npz, "dermamnist.npz")}

    def interrupt(progress: data.DownloadProgress) -> None:
        if progress.done > 0:
            raise KeyboardInterrupt

    with serve_files(files, chunk_delay_s=0.02) as server:
        monkeypatch.setenv("CNN_DOWNLOAD_MIRROR", server.url)
        with pytest.raises(KeyboardInterrupt):
            data.download_dataset("dermamnist", on_bytes=interrupt)
    assert _files_under(places[1] / "medmnist") == []


def test_a_malformed_mirror_setting_is_explained(places, monkeypatch):
    monkeypatch.setenv("CNN_DOWNLOAD_MIRROR", "ftp://classroom/data")
    with pytest.raises(DataError, match="must be an http:// or https:// address"):
        data.download_dataset("pathmnist")
    with pytest.raises(DataError, match="CNN_DOWNLOAD_MIRROR"):
        data.download_server("mnist")
    assert not data.download_server_reachable("mnist")


def test_servers_without_a_mirror_are_the_registrys(places, monkeypatch):
    assert data.download_server("pathmnist_64") == "zenodo.org"
    assert data.download_server("mnist") == "ossci-datasets.s3.amazonaws.com"
    assert data.download_server("dermamnist") == "zenodo.org"
    monkeypatch.setenv("CNN_DOWNLOAD_MIRROR", "https://classroom.example:8443/data/")
    assert data.download_server("mnist") == "classroom.example:8443"


@pytest.mark.skipif(os.name != "posix", reason="finding dead processes uses os.kill(pid, 0)")
def test_parts_left_by_a_killed_download_are_removed_by_the_next_one(places, monkeypatch, derma_npz):
    """A process killed mid-download runs no cleanup; the next download deletes its `.part` file, and keeps
    the parts of processes that are still running (another download in progress)."""
    import subprocess
    import sys

    _, cache_dir = places
    folder = cache_dir / "medmnist"
    folder.mkdir(parents=True)
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = folder / f".dermamnist.npz.{int(gone.stdout)}.1.part"
    alive = folder / f".dermamnist.npz.{os.getpid()}.99.part"
    other = folder / f".pathmnist.npz.{int(gone.stdout)}.1.part"  # another data set's: not this download's business
    for part in (dead, alive, other):
        part.write_bytes(b"half a file")
    files = {"dermamnist.npz": derma_npz, "dermamnist.npz.md5": md5_line(derma_npz, "dermamnist.npz")}
    with serve_files(files) as server:
        monkeypatch.setenv("CNN_DOWNLOAD_MIRROR", server.url)
        data.download_dataset("dermamnist")
    assert not dead.exists() and alive.exists() and other.exists()
    assert (folder / "dermamnist.npz").read_bytes() == derma_npz


def test_the_how_to_get_hint_names_the_mirror_when_one_is_set(places, monkeypatch):
    assert "(from https://zenodo.org/" in data.dataset_status("dermamnist").how_to_get
    monkeypatch.setenv("CNN_DOWNLOAD_MIRROR", "https://classroom.example:8443/data/")
    hint = data.dataset_status("dermamnist").how_to_get
    assert "(from https://classroom.example:8443/data/dermamnist.npz)" in hint and "zenodo" not in hint


def test_progress_text():
    assert data.DownloadProgress(12_300_000, 206_000_000, "pathmnist.npz").describe() == "12.3 of 206 MB"
    assert data.DownloadProgress(3_400_000, 11_600_000, "x").describe() == "3.4 of 11.6 MB"
    assert data.DownloadProgress(20_000, 840_000, "x").describe() == "20.0 of 840 KB"
    assert data.DownloadProgress(840_000, None, "x").describe() == "840.0 KB received"
    assert data.DownloadProgress(5, None, "x").fraction is None
    assert data.DownloadProgress(50, 200, "x").fraction == 0.25


# --------------------------------------------------------------------------------------------------
# The CLI: a terminal progress bar from the same callback


def _cli(*args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cnn_core", *args], cwd=ROOT, capture_output=True, text=True,
                          env=env, timeout=300)


def test_cli_download_shows_a_progress_bar(places, derma_npz):
    data_dir, cache_dir = places
    files = {"dermamnist.npz": derma_npz, "dermamnist.npz.md5": md5_line(derma_npz, "dermamnist.npz")}
    with serve_files(files, chunk_delay_s=0.005) as server:
        env = dict(os.environ, CNN_DOWNLOAD_MIRROR=server.url)
        result = _cli("download", "dermamnist", env=env)
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == f"dermamnist: ready at {cache_dir / 'medmnist'}"
        assert "Downloading DermaMNIST" in result.stderr
        assert "dermamnist.npz: 100%" in result.stderr and "B/s" in result.stderr  # tqdm's bar, in bytes
        assert (cache_dir / "medmnist" / "dermamnist.npz").read_bytes() == derma_npz

        missing = _cli("download", "bloodmnist", env=env)
    assert missing.returncode == 2
    assert "answered 404" in missing.stderr and "Traceback" not in missing.stderr
    assert len(missing.stderr.strip().splitlines()) <= 3  # the description line, the bar, the error
    assert _files_under(cache_dir / "medmnist") == ["dermamnist.npz"]
