"""Tiny data sets in the real file formats, for every test that needs data.

`build_tiny_data(root)` writes, under `root`:

- `MNIST/raw/*-ubyte.gz`: gzipped idx files with real headers, 240 train / 60 test images; class k is
  a bright 6×6 block in cell k of a 4×3 grid on a dark, noisy background (easy to learn);
- `medmnist/pathmnist.npz`: 3-channel 28×28, 9 classes, 180 / 27 / 27 images, members LZMA-compressed
  like the real file; class k has its own colour and stripe direction;
- `breastmnist.npz` (at the top, to exercise the second search folder): binary, grayscale, 40 / 10 / 10;
- `medmnist/chestmnist.npz`: multi-label, grayscale, labels (N, 14), 30 / 10 / 10;
- `scans/{a,b}/`: an image folder, 10 readable images per class in every awkward form (RGB JPEG, RGBA
  PNG, palette PNG, 16-bit PNG, JPEG with an EXIF rotation, a file name with spaces, a nested
  sub-folder, a tiny BMP, a wide PNG) plus two unreadable ones (text renamed .png, a truncated JPEG)
  and files that must be ignored (notes.txt, .DS_Store, ._resource.jpg);
- `one_class_only/x/` (not a data set: one class) and an empty `empty/` folder.

For download tests, `FileServer` / `serve_files` serve bytes over loopback HTTP (a stand-in for
CNN_DOWNLOAD_MIRROR), `tiny_mnist_archives` gives MNIST's four .gz files as bytes, and
`tiny_dermamnist_arrays` builds a DermaMNIST-style npz of a chosen size (it is not part of the tree above,
so DermaMNIST stays missing there).

The fixture `tiny_data_dir` builds it in a temporary folder and points CNN_DATA_DIR (and a fresh
CNN_CACHE_DIR) at it. Other test files can call `build_tiny_data` or `tiny_mnist_arrays` directly.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import threading
import time
import urllib.parse
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

__all__ = [
    "build_tiny_data",
    "tiny_data_dir",
    "tiny_mnist_arrays",
    "tiny_pathmnist_arrays",
    "tiny_breastmnist_arrays",
    "tiny_chestmnist_arrays",
    "write_mnist",
    "write_npz",
    "write_image_folder",
    "write_class_folder",
    "idx_bytes",
    "TINY_FOLDER_READABLE_PER_CLASS",
    "TINY_FOLDER_UNREADABLE",
    "FileServer",
    "serve_files",
    "md5_line",
    "npz_bytes",
    "tiny_mnist_archives",
    "tiny_dermamnist_arrays",
]

TINY_MNIST_TRAIN_PER_CLASS = 24  # 240 train images: 220 train + 20 val after the one-twelfth carve
TINY_MNIST_TEST_PER_CLASS = 6  # 60 test images
TINY_PATHMNIST_PER_CLASS = {"train": 20, "val": 3, "test": 3}
TINY_BREAST_COUNTS = {"train": 40, "val": 10, "test": 10}
TINY_CHEST_COUNTS = {"train": 30, "val": 10, "test": 10}
TINY_FOLDER_READABLE_PER_CLASS = 10
TINY_FOLDER_UNREADABLE = 2

_PATH_COLOURS = [
    (230, 60, 60), (60, 200, 60), (60, 60, 230), (230, 230, 60), (230, 60, 230),
    (60, 220, 220), (250, 250, 250), (120, 70, 20), (20, 20, 20),
]  # fmt: skip


# --------------------------------------------------------------------------------------------------
# MNIST


def _mnist_images(per_class: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = np.tile(np.arange(10, dtype=np.uint8), per_class)
    images = rng.integers(0, 40, size=(len(labels), 28, 28), dtype=np.uint8)
    for i, label in enumerate(labels):
        row, col = divmod(int(label), 4)
        top = 2 + row * 9 + int(rng.integers(-1, 2))
        left = col * 7 + int(rng.integers(0, 2))
        images[i, top : top + 6, left : left + 6] = rng.integers(200, 256, size=(6, 6), dtype=np.uint8)
    return images, labels


def tiny_mnist_arrays() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The images [N, 28, 28] uint8 and labels [N] uint8 written as MNIST's "train" and "test" files."""
    return {
        "train": _mnist_images(TINY_MNIST_TRAIN_PER_CLASS, seed=1),
        "test": _mnist_images(TINY_MNIST_TEST_PER_CLASS, seed=2),
    }


def idx_bytes(array: np.ndarray) -> bytes:
    """An idx file (MNIST's format): magic 0x0000 08 <ndim>, big-endian int32 sizes, uint8 data."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    return header + array.tobytes()


def write_mnist(raw: Path, *, compressed: bool = True) -> None:
    raw.mkdir(parents=True, exist_ok=True)
    arrays = tiny_mnist_arrays()
    for prefix, split in (("train", "train"), ("t10k", "test")):
        images, labels = arrays[split]
        for kind, array in (("images-idx3", images), ("labels-idx1", labels)):
            payload = idx_bytes(array)
            name = f"{prefix}-{kind}-ubyte"
            if compressed:
                (raw / f"{name}.gz").write_bytes(gzip.compress(payload, mtime=0))
            else:
                (raw / name).write_bytes(payload)


# --------------------------------------------------------------------------------------------------
# MedMNIST


def write_npz(path: Path, arrays: dict[str, np.ndarray], *, lzma: bool = False) -> Path:
    """A medmnist-style npz; with `lzma` the members are LZMA-compressed like the real pathmnist.npz."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not lzma:
        np.savez_compressed(path, **arrays)
        return path
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_LZMA) as archive:
        for key, array in arrays.items():
            with archive.open(f"{key}.npy", "w") as member:
                np.lib.format.write_array(member, np.asarray(array), allow_pickle=False)
    return path


def tiny_pathmnist_arrays() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(3)
    arrays = {}
    for split, per_class in TINY_PATHMNIST_PER_CLASS.items():
        labels = np.tile(np.arange(9, dtype=np.uint8), per_class)
        images = np.empty((len(labels), 28, 28, 3), dtype=np.uint8)
        yy, xx = np.mgrid[0:28, 0:28]
        for i, label in enumerate(labels.tolist()):
            colour = np.array(_PATH_COLOURS[label], dtype=np.float64)
            stripes = ((xx + yy * (label % 3 - 1) + label) // 3) % 2  # direction varies with the class
            pixel = colour[None, None, :] * (0.75 + 0.25 * stripes[..., None])
            pixel += rng.normal(0, 8, size=pixel.shape)
            images[i] = np.clip(pixel, 0, 255).astype(np.uint8)
        arrays[f"{split}_images"] = images
        arrays[f"{split}_labels"] = labels[:, None]
    return arrays


def tiny_breastmnist_arrays(counts: dict[str, int] | None = None) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(4)
    arrays = {}
    yy, xx = np.mgrid[0:28, 0:28]
    centre = np.hypot(yy - 13.5, xx - 13.5)
    for split, n in (counts or TINY_BREAST_COUNTS).items():
        labels = (np.arange(n) % 2).astype(np.uint8)
        images = rng.integers(0, 30, size=(n, 28, 28)).astype(np.uint8)
        images[labels == 0] = np.where(centre < 6, 220, images[labels == 0])  # bright disc
        images[labels == 1] = np.where((centre > 9) & (centre < 12), 220, images[labels == 1])  # ring
        arrays[f"{split}_images"] = images
        arrays[f"{split}_labels"] = labels[:, None]
    return arrays


def tiny_chestmnist_arrays() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(5)
    arrays = {}
    for split, n in TINY_CHEST_COUNTS.items():
        flags = (rng.random((n, 14)) < 0.3).astype(np.uint8)
        images = rng.integers(0, 30, size=(n, 28, 28)).astype(np.uint8)
        for label in range(14):  # a bright row per present finding
            images[flags[:, label] == 1, 2 * label, :] = 230
        arrays[f"{split}_images"] = images
        arrays[f"{split}_labels"] = flags
    return arrays


# --------------------------------------------------------------------------------------------------
# Image folder


def _pattern(size: tuple[int, int], bright: bool) -> np.ndarray:
    """Class "a": a bright disc on grey; class "b": a dark background with a thin cross."""
    width, height = size
    yy, xx = np.mgrid[0:height, 0:width]
    if bright:
        disc = np.hypot(yy - height / 2, xx - width / 2) < min(width, height) / 3
        return np.where(disc, 235, 120).astype(np.uint8)
    cross = (np.abs(yy - height / 2) < 2) | (np.abs(xx - width / 2) < 2)
    return np.where(cross, 90, 15).astype(np.uint8)


def _rgb(gray: np.ndarray, tint: tuple[int, int, int]) -> np.ndarray:
    return np.clip(gray[..., None].astype(np.float64) * np.array(tint) / 255.0, 0, 255).astype(np.uint8)


def write_class_folder(folder: Path, bright: bool) -> None:
    """Ten readable images of one class, one of every awkward kind."""
    folder.mkdir(parents=True, exist_ok=True)
    tint = (255, 220, 200) if bright else (200, 220, 255)
    gray = _pattern((48, 40), bright)
    Image.fromarray(_rgb(gray, tint)).save(folder / "photo.jpg", quality=92)
    rgba = np.dstack([_rgb(gray, tint), np.where(np.arange(48)[None, :] < 8, 0, 255).repeat(40, 0).astype(np.uint8)])
    Image.fromarray(rgba, mode="RGBA").save(folder / "transparent.png")
    Image.fromarray(_rgb(gray, tint)).convert("P", palette=Image.Palette.ADAPTIVE, colors=16).save(folder / "palette.png")
    Image.fromarray(gray.astype(np.uint16) * 257).save(folder / "deep16.png")  # mode I;16
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90° clockwise to display
    Image.fromarray(_rgb(_pattern((40, 48), bright), tint)).save(folder / "rotated.jpg", exif=exif, quality=92)
    Image.fromarray(gray).save(folder / "scan with spaces 01.png")
    Image.fromarray(gray).save(folder / "gray.png")
    Image.fromarray(_rgb(_pattern((7, 5), bright), tint)).save(folder / "tiny.bmp")
    Image.fromarray(_rgb(_pattern((90, 30), bright), tint)).save(folder / "wide.png")
    (folder / "nested").mkdir(exist_ok=True)
    Image.fromarray(_rgb(gray, tint)).save(folder / "nested" / "deeper.png")


def write_image_folder(root: Path) -> Path:
    write_class_folder(root / "a", bright=True)
    write_class_folder(root / "b", bright=False)
    (root / "a" / "broken.png").write_text("this is a text file, not a PNG")
    buffer = io.BytesIO()
    Image.fromarray(_rgb(_pattern((64, 64), False), (200, 220, 255))).save(buffer, format="JPEG", quality=95)
    (root / "b" / "truncated.jpg").write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    (root / "a" / "notes.txt").write_text("not an image; ignored")
    (root / "a" / ".DS_Store").write_bytes(b"\x00\x01junk")
    (root / "b" / "._resource.jpg").write_bytes(b"macOS resource fork, hidden, ignored")
    return root


# --------------------------------------------------------------------------------------------------
# Everything


def build_tiny_data(root: Path) -> Path:
    """Write every tiny data set under `root` (created if needed) and return `root`."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    write_mnist(root / "MNIST" / "raw")
    write_npz(root / "medmnist" / "pathmnist.npz", tiny_pathmnist_arrays(), lzma=True)
    write_npz(root / "breastmnist.npz", tiny_breastmnist_arrays())
    write_npz(root / "medmnist" / "chestmnist.npz", tiny_chestmnist_arrays())
    write_image_folder(root / "scans")
    (root / "one_class_only" / "x").mkdir(parents=True, exist_ok=True)
    Image.fromarray(_pattern((20, 20), True)).save(root / "one_class_only" / "x" / "only.png")
    (root / "empty").mkdir(exist_ok=True)
    return root


def _reset_registry() -> None:
    from cnn_core import data

    data.clear_caches(forget_registered=True)


@pytest.fixture
def tiny_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh tiny CNN_DATA_DIR (see `build_tiny_data`) with its own empty CNN_CACHE_DIR."""
    root = build_tiny_data(tmp_path / "data")
    monkeypatch.setenv("CNN_DATA_DIR", str(root))
    monkeypatch.setenv("CNN_CACHE_DIR", str(tmp_path / "cache"))
    _reset_registry()
    yield root
    _reset_registry()


# --------------------------------------------------------------------------------------------------
# Downloads: files as bytes, and a loopback HTTP server standing in for a download mirror

TINY_DERMA_PER_CLASS = {"train": 10, "val": 2, "test": 2}
_DERMA_COLOURS = [(200, 120, 100), (150, 80, 60), (230, 180, 150), (90, 60, 50), (240, 200, 190),
                  (170, 40, 60), (120, 100, 160)]  # fmt: skip


def tiny_mnist_archives() -> dict[str, bytes]:
    """The tiny MNIST of `tiny_mnist_arrays` as the four .gz files a mirror serves, by file name."""
    arrays = tiny_mnist_arrays()
    archives = {}
    for prefix, split in (("train", "train"), ("t10k", "test")):
        images, labels = arrays[split]
        archives[f"{prefix}-images-idx3-ubyte.gz"] = gzip.compress(idx_bytes(images), mtime=0)
        archives[f"{prefix}-labels-idx1-ubyte.gz"] = gzip.compress(idx_bytes(labels), mtime=0)
    return archives


def tiny_dermamnist_arrays(per_class: dict[str, int] | None = None, seed: int = 6) -> dict[str, np.ndarray]:
    """DermaMNIST-style arrays (RGB 28×28, 7 classes, labels (N, 1)). Class k is its own colour under
    strong noise, so the npz hardly compresses: about 2.1 KB an image, which lets download tests make a
    file of a chosen size through `per_class`."""
    rng = np.random.default_rng(seed)
    arrays = {}
    for split, n in (per_class or TINY_DERMA_PER_CLASS).items():
        labels = np.tile(np.arange(7, dtype=np.uint8), n)
        colours = np.array(_DERMA_COLOURS, dtype=np.int16)[labels][:, None, None, :]
        noise = rng.integers(-60, 61, size=(len(labels), 28, 28, 3), dtype=np.int16)
        arrays[f"{split}_images"] = np.clip(colours + noise, 0, 255).astype(np.uint8)
        arrays[f"{split}_labels"] = labels[:, None]
    return arrays


def npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """An npz (np.savez_compressed) in memory, as a server would send it."""
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    return buffer.getvalue()


def md5_line(payload: bytes, filename: str) -> bytes:
    """`md5sum`'s line for a file: what a mirror publishes as `<file>.md5`."""
    return f"{hashlib.md5(payload).hexdigest()}  {filename}\n".encode()


class _FileHandler(BaseHTTPRequestHandler):
    server_version = "cnn-explorer-test-mirror"

    def do_HEAD(self) -> None:  # noqa: N802 - http.server's naming
        self._answer(send_body=False)

    def do_GET(self) -> None:  # noqa: N802
        self._answer(send_body=True)

    def _answer(self, send_body: bool) -> None:
        owner: FileServer = self.server.owner  # type: ignore[attr-defined]
        path = urllib.parse.urlsplit(self.path).path
        owner.requests.append((self.command, path))
        prefix = f"/{owner.prefix}/" if owner.prefix else "/"
        name = path[len(prefix):] if path.startswith(prefix) else None
        payload = owner.files.get(name) if name else None
        if payload is None:
            self.send_error(404, "Not Found")
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if not send_body:
            return
        limit = min(owner.break_after.get(name, len(payload)), len(payload))
        for start in range(0, limit, owner.chunk_bytes):
            self.wfile.write(payload[start : min(start + owner.chunk_bytes, limit)])
            if owner.chunk_delay_s:
                time.sleep(owner.chunk_delay_s)
        self.close_connection = True  # after a broken-off body the client sees the connection end

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - quiet in test output
        pass


class FileServer:
    """A loopback HTTP server on its own thread serving `files` ({name: bytes}) at `url`/<name>.

    GET and HEAD; anything else is 404; every request is kept in `requests` as (method, path).
    `chunk_delay_s` sleeps after each `chunk_bytes` sent (a slow line, so a progress bar can be seen);
    `break_after` ({name: n}) announces the full length but closes the connection after n bytes.
    """

    def __init__(self, files: dict[str, bytes], *, prefix: str = "mirror", chunk_bytes: int = 64 * 1024,
                 chunk_delay_s: float = 0.0, break_after: dict[str, int] | None = None) -> None:
        self.files = dict(files)
        self.prefix = prefix.strip("/")
        self.chunk_bytes = chunk_bytes
        self.chunk_delay_s = chunk_delay_s
        self.break_after = dict(break_after or {})
        self.requests: list[tuple[str, str]] = []
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _FileHandler)
        self._httpd.daemon_threads = True
        self._httpd.owner = self  # type: ignore[attr-defined]
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="test-file-server", daemon=True)

    @property
    def url(self) -> str:
        """The base address, e.g. http://127.0.0.1:40123/mirror (what CNN_DOWNLOAD_MIRROR is set to)."""
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}" + (f"/{self.prefix}" if self.prefix else "")

    def start(self) -> FileServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=10)


@contextlib.contextmanager
def serve_files(files: dict[str, bytes], **options):
    """`FileServer(files, **options)`, started for the `with` block and stopped after it."""
    server = FileServer(files, **options).start()
    try:
        yield server
    finally:
        server.stop()


def zip_with_raw_names(members: dict[bytes, bytes]) -> bytes:
    """A zip whose member names are these bytes with the UTF-8 flag unset, as Windows Explorer (OEM code page)
    and macOS (UTF-8) write them: zipfile itself would flag any non-ASCII name, so ASCII stand-ins of the same
    length are written and then replaced in the local headers and the central directory."""
    stand_ins = {}
    for number, raw in enumerate(members):
        stand_in = f"{number:04d}".encode() + b"q" * (len(raw) - 4)
        assert len(raw) >= 8 and len(stand_in) == len(raw)
        stand_ins[stand_in] = raw
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for stand_in, raw in stand_ins.items():
            archive.writestr(zipfile.ZipInfo(stand_in.decode(), date_time=(2026, 1, 1, 0, 0, 0)), members[raw],
                             compress_type=zipfile.ZIP_DEFLATED)
    data = buffer.getvalue()
    for stand_in, raw in stand_ins.items():
        assert data.count(stand_in) == 2
        data = data.replace(stand_in, raw)
    return data
