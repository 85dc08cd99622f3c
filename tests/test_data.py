"""The data-set registry on tiny data sets in the real formats, and (marked realdata) on the real ones."""

from __future__ import annotations

import gzip
import io
import os
import re
import shutil
import socket
import stat
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from data_fixtures import (
    TINY_FOLDER_READABLE_PER_CLASS,
    TINY_FOLDER_UNREADABLE,
    tiny_breastmnist_arrays,
    tiny_chestmnist_arrays,
    tiny_mnist_arrays,
    tiny_pathmnist_arrays,
    write_class_folder,
    write_mnist,
    write_npz,
)
from PIL import Image

from cnn_core import data, settings
from cnn_core.data import cache, folders, mnist, registry
from cnn_core.errors import DataError, ImageError

MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def _snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(root.rglob("*"))}


def _nearest_centroid_accuracy(train: data.SplitData, test: data.SplitData) -> float:
    x = train.images.flatten(1).float()
    centroids = torch.stack([x[train.labels == k].mean(0) for k in range(train.info.n_classes)])
    predicted = torch.cdist(test.images.flatten(1).float(), centroids).argmin(1)
    return float((predicted == test.labels).float().mean())


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a connection fails the test loudly."""

    def refuse(*args, **kwargs):
        raise AssertionError("the network was touched")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


# --------------------------------------------------------------------------------------------------
# Registry


def test_registry_lists_builtins_and_discovered_folders(tiny_data_dir):
    infos = {info.name: info for info in data.list_datasets()}
    medmnist = [n for n, i in infos.items() if i.family == "medmnist"]
    assert len(medmnist) == 12 * 4
    assert {"mnist", "pathmnist", "pathmnist_64", "pathmnist_128", "pathmnist_224", "organsmnist_224"} <= set(infos)
    assert "scans" in infos and infos["scans"].family == "folder"
    assert "one_class_only" not in infos and "empty" not in infos and "MNIST" not in infos

    path = infos["pathmnist"]
    assert path.title == "PathMNIST (28×28)" and path.image_size == 28 and path.channels == 3
    assert path.class_names[0] == "adipose" and len(path.class_names) == 9
    assert path.license == "CC BY 4.0" and path.task == "multi-class"
    assert infos["pathmnist_224"].image_size == 224 and "224×224" in infos["pathmnist_224"].description
    assert infos["chestmnist"].task == "multi-label, binary-class" and infos["chestmnist"].n_classes == 14
    assert infos["retinamnist"].task == "ordinal-regression"
    assert infos["retinamnist_128"].class_names == ("0 no DR", "1 mild NPDR", "2 moderate NPDR", "3 severe NPDR",
                                                    "4 proliferative DR")  # medmnist's INFO says "0"-"4"
    assert infos["breastmnist"].task == "binary-class" and infos["breastmnist"].channels == 1
    # n_samples come from the files when present (tiny), from medmnist's INFO when not
    assert path.n_samples == {"train": 180, "val": 27, "test": 27}
    assert infos["dermamnist"].n_samples == {"train": 7007, "val": 1003, "test": 2005}
    assert infos["mnist"].n_samples == {"train": 220, "val": 20, "test": 60}
    assert "5,000" in infos["mnist"].description or "one twelfth" in infos["mnist"].description


def test_unknown_name_lists_known_ones(tiny_data_dir):
    with pytest.raises(DataError) as caught:
        data.get_dataset_info("imagenet")
    message = str(caught.value)
    assert "'imagenet'" in message and "mnist" in message and "pathmnist" in message and "scans" in message
    with pytest.raises(DataError):
        data.load_split("pathmnist_32", "train")  # not a size medmnist offers


def test_names_are_case_insensitive_for_builtins(tiny_data_dir):
    assert data.get_dataset_info("MNIST").name == "mnist"
    assert data.get_dataset_info("PathMNIST_64").name == "pathmnist_64"


def test_bad_split_and_image_size_are_data_errors(tiny_data_dir):
    with pytest.raises(DataError, match="no split 'validation'"):
        data.load_split("mnist", "validation")
    for bad in (0, 4, 5000, 12.5, True):
        with pytest.raises(DataError, match="image_size"):
            data.load_split("mnist", "test", image_size=bad)


# --------------------------------------------------------------------------------------------------
# MNIST


def test_mnist_from_gz_archives_matches_the_files(tiny_data_dir, no_network):
    before = _snapshot(tiny_data_dir)
    train, val, test = (data.load_split("mnist", split) for split in data.SPLITS)
    written = tiny_mnist_arrays()

    assert (len(train), len(val), len(test)) == (220, 20, 60)
    for split in (train, val, test):
        assert split.images.dtype == torch.uint8 and split.images.shape[1:] == (1, 28, 28)
        assert split.labels.dtype == torch.int64 and split.labels.ndim == 1
        assert split.skipped == 0 and split.info.image_size == 28
    assert torch.equal(test.images[:, 0], torch.from_numpy(written["test"][0]))
    assert torch.equal(test.labels, torch.from_numpy(written["test"][1]).long())
    # train + val are exactly the 240 training images, each used once, in their original order
    val_mask = mnist.val_mask(240)
    assert val_mask.sum() == 20
    assert torch.equal(val.images[:, 0], torch.from_numpy(written["train"][0][val_mask]))
    assert torch.equal(train.images[:, 0], torch.from_numpy(written["train"][0][~val_mask]))
    assert torch.equal(train.labels, torch.from_numpy(written["train"][1][~val_mask]).long())
    # read from the archives as they are: nothing written into the data folder, nothing decompressed into the cache
    assert _snapshot(tiny_data_dir) == before
    assert not any((settings.cache_dir() / "MNIST" / "raw" / name).exists() for name in MNIST_FILES)
    # the tiny set is learnable: a nearest-centroid classifier already gets it right
    assert _nearest_centroid_accuracy(train, test) > 0.9


def test_mnist_idx_files_read_here_match_torchvisions_reader(tiny_data_dir):
    """The split builder parses idx files itself (torchvision's MNIST class would cost the web server ~190 MiB);
    it must give exactly what torchvision gives, and refuse a file whose pixel count does not match its header."""
    from torchvision.datasets import MNIST

    reference = MNIST(str(mnist.mnist_torchvision_root()), train=False, download=False)
    test = data.load_split("mnist", "test")
    assert torch.equal(test.images[:, 0], reference.data) and torch.equal(test.labels, reference.targets)
    raw = tiny_data_dir / "MNIST" / "raw" / "t10k-images-idx3-ubyte.gz"
    with gzip.open(raw, "rb") as handle:
        whole = handle.read()
    with gzip.open(raw, "wb") as handle:
        handle.write(whole[:-28])  # one row short
    data.clear_caches()
    with pytest.raises(DataError, match="t10k-images-idx3-ubyte.gz"):
        data.load_split("mnist", "test")


def test_mnist_val_carve_is_5000_of_60000():
    mask = mnist.val_mask(60_000)
    assert mask.sum() == 5_000
    assert np.array_equal(mask, mnist.val_mask(60_000))  # seeded: the same on every call


def test_mnist_uncompressed_files_are_read_in_place(tiny_data_dir, no_network):
    raw = tiny_data_dir / "MNIST" / "raw"
    for name in MNIST_FILES:
        (raw / name).write_bytes(gzip.decompress((raw / f"{name}.gz").read_bytes()))
        (raw / f"{name}.gz").unlink()
    test = data.load_split("mnist", "test")
    assert len(test) == 60
    assert data.dataset_status("mnist").location == raw
    assert not (settings.cache_dir() / "MNIST").exists()  # nothing decompressed, nothing copied


def test_mnist_never_lets_torchvision_download(tiny_data_dir, monkeypatch):
    from torchvision.datasets import MNIST

    def fail(self):
        raise AssertionError("torchvision tried to download")

    monkeypatch.setattr(MNIST, "download", fail)
    assert len(data.load_split("mnist", "train")) == 220


def test_mnist_resized_on_request(tiny_data_dir):
    resized = data.load_split("mnist", "test", image_size=32)
    assert resized.images.shape == (60, 1, 32, 32) and resized.info.image_size == 32
    assert resized.images.dtype == torch.uint8 and int(resized.images.max()) > 150


def test_missing_mnist_names_files_places_and_remedy(tmp_path, monkeypatch, no_network):
    monkeypatch.setenv("CNN_DATA_DIR", str(tmp_path / "nothing"))
    monkeypatch.setenv("CNN_CACHE_DIR", str(tmp_path / "cache"))
    status = data.dataset_status("mnist")
    assert not status.available and status.location is None
    assert status.missing == [f"{name}.gz" for name in MNIST_FILES]
    assert status.searched == [tmp_path / "nothing" / "MNIST" / "raw", tmp_path / "cache" / "MNIST" / "raw"]
    assert status.download_size == "11.6 MB"
    with pytest.raises(DataError) as caught:
        data.load_split("mnist", "train")
    message = str(caught.value)
    assert "train-images-idx3-ubyte.gz" in message and "t10k-labels-idx1-ubyte.gz" in message
    assert str(tmp_path / "nothing" / "MNIST" / "raw") in message and str(tmp_path / "cache" / "MNIST" / "raw") in message
    assert "python -m cnn_core download mnist" in message


@pytest.mark.parametrize("rename", [
    lambda base: base.replace("-idx", ".idx"),  # train-images.idx3-ubyte: 7-Zip's and many mirrors' name
    lambda base: base.upper(),  # T10K-IMAGES-IDX3-UBYTE
    lambda base: base.replace("-", "_") + ".gz",  # underscores, gzipped
])
def test_mnist_files_under_their_other_names_are_found(tmp_path, monkeypatch, rename):
    data_dir = tmp_path / "data"
    write_mnist(data_dir / "MNIST" / "raw", compressed=False)
    for path in (data_dir / "MNIST" / "raw").iterdir():
        target = path.with_name(rename(path.name))
        payload = gzip.compress(path.read_bytes(), mtime=0) if target.name.endswith(".gz") else path.read_bytes()
        path.unlink()
        target.write_bytes(payload)
    monkeypatch.setenv("CNN_DATA_DIR", str(data_dir))
    monkeypatch.setenv("CNN_CACHE_DIR", str(tmp_path / "cache"))
    data.clear_caches(forget_registered=True)
    assert data.dataset_status("mnist").available
    test = data.load_split("mnist", "test")
    assert test.images.shape == (60, 1, 28, 28) and torch.equal(test.labels, torch.from_numpy(
        tiny_mnist_arrays()["test"][1]).to(torch.int64))
    assert sorted(p.name for p in (data_dir / "MNIST" / "raw").iterdir()) == sorted(
        rename(base) for base in MNIST_FILES)  # the data folder is only read


def test_mnist_files_directly_in_a_lower_case_folder_are_found(tmp_path, monkeypatch):
    write_mnist(tmp_path / "data" / "mnist")
    monkeypatch.setenv("CNN_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("CNN_CACHE_DIR", str(tmp_path / "cache"))
    data.clear_caches(forget_registered=True)
    assert data.load_split("mnist", "train").images.shape[0] == 220


def test_really_missing_mnist_files_say_what_was_found(tmp_path, monkeypatch, no_network):
    raw = tmp_path / "data" / "MNIST" / "raw"
    write_mnist(raw)
    (raw / "t10k-labels-idx1-ubyte.gz").unlink()
    (raw / "README.txt").write_text("from a mirror")
    monkeypatch.setenv("CNN_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("CNN_CACHE_DIR", str(tmp_path / "cache"))
    data.clear_caches(forget_registered=True)
    status = data.dataset_status("mnist")
    assert not status.available and status.missing == ["t10k-labels-idx1-ubyte.gz"]
    with pytest.raises(DataError) as caught:
        data.load_split("mnist", "test")
    assert ("Found only: README.txt, t10k-images-idx3-ubyte.gz, train-images-idx3-ubyte.gz, "
            "train-labels-idx1-ubyte.gz.") in str(caught.value)


def test_damaged_mnist_archive_is_a_data_error(tiny_data_dir):
    (tiny_data_dir / "MNIST" / "raw" / "train-images-idx3-ubyte.gz").write_bytes(b"not gzip at all")
    with pytest.raises(DataError, match="train-images-idx3-ubyte.gz"):
        data.load_split("mnist", "train")


# --------------------------------------------------------------------------------------------------
# MedMNIST


def test_pathmnist_lzma_npz_multiclass_rgb(tiny_data_dir, no_network):
    written = tiny_pathmnist_arrays()
    splits = {split: data.load_split("pathmnist", split) for split in data.SPLITS}
    for split, loaded in splits.items():
        assert loaded.images.dtype == torch.uint8 and loaded.images.shape[1:] == (3, 28, 28)
        assert loaded.labels.dtype == torch.int64 and loaded.labels.ndim == 1
        assert torch.equal(loaded.images, torch.from_numpy(written[f"{split}_images"]).permute(0, 3, 1, 2))
        assert torch.equal(loaded.labels, torch.from_numpy(written[f"{split}_labels"][:, 0]).long())
    assert [len(splits[s]) for s in data.SPLITS] == [180, 27, 27]
    assert _nearest_centroid_accuracy(splits["train"], splits["test"]) > 0.9


def test_breastmnist_found_at_data_root_binary_gray(tiny_data_dir):
    status = data.dataset_status("breastmnist")
    assert status.available and status.location == tiny_data_dir / "breastmnist.npz"
    loaded = data.load_split("breastmnist", "train")
    assert loaded.images.shape == (40, 1, 28, 28) and loaded.info.task == "binary-class"
    assert set(loaded.labels.tolist()) == {0, 1}
    assert torch.equal(loaded.images[:, 0], torch.from_numpy(tiny_breastmnist_arrays()["train_images"]))


def test_chestmnist_multilabel_keeps_label_matrix(tiny_data_dir):
    loaded = data.load_split("chestmnist", "val")
    assert loaded.labels.shape == (10, 14) and loaded.labels.dtype == torch.int64
    assert loaded.info.multi_label
    assert torch.equal(loaded.labels, torch.from_numpy(tiny_chestmnist_arrays()["val_labels"]).long())


def test_medmnist_search_order_and_cache_folder(tiny_data_dir):
    # data/medmnist wins over data/ and the cache
    write_npz(tiny_data_dir / "pathmnist.npz", tiny_breastmnist_arrays())
    assert data.dataset_status("pathmnist").location == tiny_data_dir / "medmnist" / "pathmnist.npz"
    # a file only in CNN_CACHE_DIR/medmnist (where downloads go) is found too
    cached = settings.cache_dir() / "medmnist" / "breastmnist_64.npz"
    arrays = {k: (np.repeat(np.repeat(v, 3, 1), 3, 2)[:, :64, :64] if "images" in k else v) for k, v in tiny_breastmnist_arrays().items()}
    write_npz(cached, arrays)
    status = data.dataset_status("breastmnist_64")
    assert status.available and status.location == cached
    assert data.load_split("breastmnist_64", "test").images.shape == (10, 1, 64, 64)


def test_missing_medmnist_size_reports_where_it_looked(tiny_data_dir, no_network):
    status = data.dataset_status("pathmnist_128")
    assert not status.available and status.missing == ["pathmnist_128.npz"]
    assert status.searched == [tiny_data_dir / "medmnist", tiny_data_dir, settings.cache_dir() / "medmnist"]
    assert status.download_size and ("GB" in status.download_size or "MB" in status.download_size)
    with pytest.raises(DataError) as caught:
        data.load_split("pathmnist_128", "train")
    message = str(caught.value)
    assert "pathmnist_128.npz" in message and str(tiny_data_dir / "medmnist") in message
    assert "python -m cnn_core download pathmnist_128" in message


def test_a_missing_medmnist_file_names_what_is_there_instead(tiny_data_dir, no_network, capsys):
    # Only the 224-px file downloaded: "bloodmnist.npz not found" and `datasets` listed only the missing 28-px set.
    # A browser's or wget's name for the file (DermaMNIST.npz, "dermamnist (1).npz", "...npz?download=1"): no hint.
    from cnn_core.cli import main

    medmnist_dir = tiny_data_dir / "medmnist"
    shutil.copy(medmnist_dir / "pathmnist.npz", medmnist_dir / "dermamnist_64.npz")
    shutil.copy(medmnist_dir / "pathmnist.npz", medmnist_dir / "bloodmnist (1).npz")
    shutil.copy(medmnist_dir / "pathmnist.npz", medmnist_dir / "OctMNIST.npz")
    shutil.copy(medmnist_dir / "pathmnist.npz", medmnist_dir / "retinamnist.npz?download=1")
    assert "use `dermamnist_64` (64×64 px)" in data.dataset_status("dermamnist").how_to_get
    for name, found in (("bloodmnist", "bloodmnist (1).npz"), ("octmnist", "OctMNIST.npz"),
                        ("retinamnist", "retinamnist.npz?download=1")):
        with pytest.raises(DataError, match=re.escape(f"{medmnist_dir / found} (rename it to {name}.npz)")):
            data.load_split(name, "train")
    assert "rename" not in data.dataset_status("dermamnist").how_to_get  # another size is not a misnamed copy
    assert main(["datasets"]) == 0
    assert re.search(r"^dermamnist_64 .* found at ", capsys.readouterr().out, re.MULTILINE)  # listed without --all


def test_damaged_npz_is_a_data_error(tiny_data_dir):
    (tiny_data_dir / "medmnist" / "octmnist.npz").write_bytes(b"garbage, not a zip")
    with pytest.raises(DataError, match="octmnist.npz"):
        data.load_split("octmnist", "train")
    write_npz(tiny_data_dir / "medmnist" / "dermamnist.npz", {"x": np.zeros(3)})
    with pytest.raises(DataError, match="not a MedMNIST file"):
        data.load_split("dermamnist", "train")


def test_a_split_too_large_for_the_free_memory_is_refused_before_it_is_read(tiny_data_dir, monkeypatch, capsys):
    # PathMNIST at 224 px holds 13.5 GB of training images: a laptop was killed for memory, or swapped for minutes.
    import cnn_core.device
    from cnn_core.cli import main

    write_npz(tiny_data_dir / "medmnist" / "breastmnist_64.npz",
              {k: (np.repeat(np.repeat(v, 3, 1), 3, 2)[:, :64, :64] if "images" in k else v)
               for k, v in tiny_breastmnist_arrays().items()})  # fmt: skip
    allocated = []
    monkeypatch.setattr(np, "empty", lambda *a, **k: allocated.append(a) or np.zeros(*a, **k))
    monkeypatch.setattr(cnn_core.device, "available_memory_bytes", lambda: 100_000)
    with pytest.raises(DataError) as caught:
        data.load_split("pathmnist", "train")  # 180 RGB images of 28 x 28: 423 KB, and a copy with channels first
    assert str(caught.value) == ("Reading the train split of PathMNIST (28×28), 423.4 KB of images, needs 846.7 KB of "
                                 "memory and this computer has 100.0 KB free: use a computer with more memory.")
    assert (180, 28, 28, 3) not in allocated  # refused from the header, before the images were allocated
    with pytest.raises(DataError, match=r", 163.8 KB of images, needs 163.8 KB .* use a smaller size of the same "
                                        r"images \(breastmnist\), or a computer with more memory\.$"):
        data.load_split("breastmnist_64", "train")  # gray: no copy
    assert data.load_split("breastmnist", "test").images.shape == (10, 1, 28, 28)  # 7.8 KB: fits
    with pytest.raises(DataError, match=r"^Reading 22 images of scans at 128×128 px, 1.1 MB, needs 2.2 MB of "
                                        r"memory .*: read them at a smaller image size, or use a computer with more "
                                        r"memory\.$"):
        data.load_split("scans", "train")
    assert main(["train", "--data", "pathmnist", "--epochs", "1"]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].endswith("use a computer with more memory.")


def test_reads_in_progress_hold_their_memory_so_parallel_splits_count_each_other(tiny_data_dir, monkeypatch):
    # load_splits reads splits in parallel threads: each saw the same free memory before either had allocated.
    import cnn_core.device

    monkeypatch.setattr(cnn_core.device, "available_memory_bytes", lambda: 1_000_000)
    with cache.reserved_memory(300_000, "Another split", "no advice"):  # pathmnist's train split needs 846.7 KB
        with pytest.raises(DataError, match=r"needs 846.7 KB of memory and this computer has 700.0 KB free"):
            data.load_split("pathmnist", "train")
    assert len(data.load_split("pathmnist", "train")) == 180  # released: it fits
    assert cache._RESERVED_MEMORY == [0]  # and nothing stays held, after a refusal or a read


def test_free_memory_is_the_smaller_of_the_machine_s_and_a_container_limit_s(tmp_path):
    from cnn_core.device import available_memory_bytes

    machine = available_memory_bytes(tmp_path)  # no cgroup files: the machine's
    assert machine is not None and machine > 0
    (tmp_path / "memory.max").write_text("max\n")  # cgroup v2 without a limit
    (tmp_path / "memory.current").write_text("123456\n")
    assert abs(available_memory_bytes(tmp_path) - machine) < machine // 10
    (tmp_path / "memory.max").write_text("1000000\n")  # docker run --memory 1m: 876,544 bytes left
    assert available_memory_bytes(tmp_path) == 876_544
    (tmp_path / "memory.current").write_text("2000000\n")
    assert available_memory_bytes(tmp_path) == 0
    # a container near its limit because of files it read: their inactive page cache is freed when needed
    (tmp_path / "memory.current").write_text("990000\n")
    (tmp_path / "memory.stat").write_text("anon 100000\nfile 890000\nactive_file 90000\ninactive_file 800000\n")
    assert available_memory_bytes(tmp_path) == 810_000
    v1 = tmp_path / "v1"
    (v1 / "memory").mkdir(parents=True)
    (v1 / "memory" / "memory.limit_in_bytes").write_text("9223372036854771712\n")  # cgroup v1 without a limit
    (v1 / "memory" / "memory.usage_in_bytes").write_text("5\n")
    assert abs(available_memory_bytes(v1) - machine) < machine // 10
    (v1 / "memory" / "memory.limit_in_bytes").write_text("500\n")
    assert available_memory_bytes(v1) == 495
    (v1 / "memory" / "memory.stat").write_text("cache 300\ninactive_file 200\ntotal_inactive_file 250\n")
    assert available_memory_bytes(v1) == 745


def _flip_bytes_inside(path: Path, member: str | None = None) -> None:
    """XOR a few bytes in the middle of a file's compressed data (of one zip member when named): a bit-rotted
    download, which decompressors report as zlib.error or lzma.LZMAError, not as OSError."""
    import zipfile

    blob = bytearray(path.read_bytes())
    if member is None:
        start, length = 10, len(blob) - 18  # a gzip file: after its 10-byte header, before its 8-byte trailer
    else:
        with zipfile.ZipFile(path) as archive:
            info = archive.getinfo(member)
        name_length, extra_length = int.from_bytes(blob[info.header_offset + 26:info.header_offset + 28], "little"), \
            int.from_bytes(blob[info.header_offset + 28:info.header_offset + 30], "little")
        start, length = info.header_offset + 30 + name_length + extra_length, info.compress_size
    for offset in range(start + length // 3, start + length // 3 + 6):
        blob[offset] ^= 0x5A
    path.write_bytes(bytes(blob))


@pytest.mark.parametrize("damaged", ["medmnist/pathmnist.npz", "breastmnist.npz", "MNIST/raw/train-labels-idx1-ubyte.gz"])
def test_bit_flips_in_a_compressed_file_are_a_data_error_and_spare_the_other_sets(tiny_data_dir, damaged, capfd):
    from cnn_core.cli import main

    path = tiny_data_dir / damaged
    _flip_bytes_inside(path, "train_labels.npy" if path.suffix == ".npz" else None)
    name = {"medmnist/pathmnist.npz": "pathmnist", "breastmnist.npz": "breastmnist"}.get(damaged, "mnist")
    with pytest.raises(DataError, match="damaged"):
        data.class_counts(name)
    assert main(["datasets"]) == 0  # the listing goes on
    assert "chestmnist" in capfd.readouterr().out.lower()
    assert main(["train", "--data", name, "--epochs", "1"]) == 2
    stderr = capfd.readouterr().err
    assert "Traceback" not in stderr and len(stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("bad_label", [-1, float("nan"), 2_000_000_000])
def test_labels_outside_the_classes_are_refused_before_anything_counts_them(tiny_data_dir, bad_label, capfd):
    # np.bincount on a label of 2,000,000,000 asked for 15 GiB before the loader's own range check ran
    from cnn_core.cli import main

    arrays = tiny_pathmnist_arrays()
    for split in ("train", "val", "test"):
        labels = arrays[f"{split}_labels"].astype(np.float64 if bad_label != bad_label else np.int64)
        labels[0] = bad_label
        arrays[f"{split}_labels"] = labels
    write_npz(tiny_data_dir / "medmnist" / "pathmnist.npz", arrays)
    with pytest.raises(DataError, match="pathmnist.npz: train_labels holds values"):
        data.class_counts("pathmnist")
    assert main(["train", "--data", "pathmnist", "--epochs", "1", "--class-weights", "balanced"]) == 2
    stderr = capfd.readouterr().err
    assert "train_labels holds values" in stderr and len(stderr.strip().splitlines()) == 1


def test_download_false_never_touches_the_network(tiny_data_dir, no_network):
    with pytest.raises(DataError):
        data.load_split("tissuemnist", "train", download=False)
    shutil.rmtree(tiny_data_dir / "MNIST")
    with pytest.raises(DataError):
        data.load_split("mnist", "train")


def test_download_offline_gives_a_clear_message(tiny_data_dir, monkeypatch):
    def unreachable(*args, **kwargs):
        raise OSError("Network is unreachable")

    monkeypatch.setattr(socket, "create_connection", unreachable)
    monkeypatch.setattr(socket.socket, "connect", unreachable)
    with pytest.raises(DataError, match="offline") as caught:
        data.download_dataset("dermamnist")
    assert "dermamnist.npz" in str(caught.value)
    with pytest.raises(DataError, match="offline"):
        data.load_split("bloodmnist_64", "train", download=True)
    shutil.rmtree(tiny_data_dir / "MNIST")
    with pytest.raises(DataError, match="offline"):
        data.load_split("mnist", "train", download=True)
    with pytest.raises(DataError, match="nothing to download"):
        data.download_dataset("scans")


# --------------------------------------------------------------------------------------------------
# Image folders


def test_image_folder_loads_every_kind_and_skips_broken_files(tiny_data_dir):
    info = data.get_dataset_info("scans")
    assert info.class_names == ("a", "b") and info.channels == 3 and info.image_size == 128
    assert info.task == "binary-class" and info.root == str(tiny_data_dir / "scans")
    splits = [data.load_split("scans", split) for split in data.SPLITS]
    assert sum(len(s) for s in splits) == 2 * TINY_FOLDER_READABLE_PER_CLASS
    assert sum(s.skipped for s in splits) == TINY_FOLDER_UNREADABLE
    total = {split: len(s) + s.skipped for split, s in zip(data.SPLITS, splits)}
    assert total == info.n_samples == {"train": 18, "val": 2, "test": 2}
    for s in splits:
        assert s.images.dtype == torch.uint8 and s.images.shape[1:] == (3, 128, 128)
        assert s.labels.dtype == torch.int64
    labels = torch.cat([s.labels for s in splits])
    assert labels.bincount().tolist() == [TINY_FOLDER_READABLE_PER_CLASS] * 2
    # class "a" is bright, "b" dark, in every file format
    images = torch.cat([s.images for s in splits]).float()
    brightness = images.mean(dim=(1, 2, 3))
    assert brightness[labels == 0].min() > brightness[labels == 1].max()


def test_folder_split_sizes_count_only_readable_images_and_are_remembered(tiny_data_dir, monkeypatch):
    """The Training Studio's step estimate: the files listed include unreadable ones, the run does not."""
    assert data.get_dataset_info("scans").n_samples == {"train": 18, "val": 2, "test": 2}  # files listed
    readable = {"train": 16, "val": 2, "test": 2}
    assert data.split_sizes("scans") == readable
    assert sum(readable.values()) == 2 * TINY_FOLDER_READABLE_PER_CLASS

    def no_decoding(*args, **kwargs):
        raise AssertionError("an image was decoded again")

    monkeypatch.setattr(folders, "read_folder_image", no_decoding)
    assert data.split_sizes("scans") == readable  # remembered in this process (a page rerun)
    data.clear_caches()
    assert data.split_sizes("scans") == readable  # and in CNN_CACHE_DIR (a new process)
    # a new split seed re-deals the same files: no decoding either
    data.register_image_folder("scans_reseeded", tiny_data_dir / "scans", seed=3)
    assert sum(data.split_sizes("scans_reseeded").values()) == 2 * TINY_FOLDER_READABLE_PER_CLASS
    assert data.split_sizes("mnist") == data.get_dataset_info("mnist").n_samples


def test_loading_a_folder_records_which_files_are_readable(tiny_data_dir, monkeypatch):
    loaded = {split: len(data.load_split("scans", split, image_size=32)) for split in data.SPLITS}
    with monkeypatch.context() as patched:
        patched.setattr(folders, "read_folder_image", lambda *a, **k: pytest.fail("decoded an image again"))
        assert data.split_sizes("scans") == loaded
    # a changed folder is counted again: one more unreadable file
    (tiny_data_dir / "scans" / "b" / "empty.jpg").write_bytes(b"")
    assert sum(data.split_sizes("scans").values()) == sum(loaded.values())
    assert sum(data.get_dataset_info("scans").n_samples.values()) == sum(loaded.values()) + TINY_FOLDER_UNREADABLE + 1


def test_image_folder_for_transfer_learning_size(tiny_data_dir):
    big = data.load_split("scans", "train", image_size=224)
    assert big.images.shape[1:] == (3, 224, 224) and big.info.image_size == 224


def _save_as(image: Image.Image, path: Path, fmt: str) -> None:
    """Save in `fmt` whatever `path`'s ending says (how phones and Windows name files)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format=fmt)


def test_every_image_format_is_read_whatever_its_name(tmp_path, monkeypatch):
    # From public reports: Windows saves JPEGs as .jfif; iPhones export HEIC under .jpg; camera tools and
    # scrapers write files without an ending. Each class must stay, with all its images.
    monkeypatch.setenv("CNN_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("CNN_CACHE_DIR", str(tmp_path / "cache"))
    data.clear_caches(forget_registered=True)
    root = tmp_path / "data" / "pets"
    colours = {"cat": (200, 30, 30), "dog": (30, 200, 30), "bird": (30, 30, 200), "fish": (200, 200, 30)}
    for i in range(6):
        pictures = {name: Image.new("RGB", (24, 24), colour) for name, colour in colours.items()}
        _save_as(pictures["cat"], root / "cat" / f"{i}.jfif", "JPEG")
        _save_as(pictures["dog"], root / "dog" / f"IMG_{i}.jpg", "HEIF")  # HEIC data named .jpg
        _save_as(pictures["bird"], root / "bird" / f"img{i}", "PNG")  # no ending at all
        _save_as(pictures["fish"], root / "fish" / f"photo{i}.heic", "HEIF")
    (root / "fish" / "notes.txt").write_text("not an image")
    info = data.get_dataset_info("pets")
    assert info.class_names == ("bird", "cat", "dog", "fish")
    loaded = [data.load_split("pets", split, image_size=16) for split in ("train", "val", "test")]
    assert sum(len(split) for split in loaded) == 24 and all(split.skipped == 0 for split in loaded)
    train = loaded[0]
    for label, name in enumerate(info.class_names):  # each class holds its own colour: read, not guessed
        mean = train.images[train.labels == label].float().mean(dim=(0, 2, 3))
        assert torch.allclose(mean, torch.tensor(colours[name], dtype=torch.float32), atol=12), (name, mean)


def test_heic_without_its_plugin_is_named_with_the_remedy(monkeypatch):
    from cnn_core.data import images

    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, format="HEIF")
    monkeypatch.setattr(images, "_openable_formats", lambda: ["PNG", "JPEG"])  # as without pillow-heif
    with pytest.raises(ImageError, match=r"'IMG_0001.jpg' is an HEIC photo .* install pillow-heif"):
        images.read_image(buffer.getvalue(), name="IMG_0001.jpg")


def _kaggle_pets(root: Path, splits: dict[str, int]) -> None:
    """pets/<split>/{cat,dog}/<n> images; cats dark, dogs bright, each file's value unique (it tells the file)."""
    for split, count in splits.items():
        for name, base in (("cat", 30), ("dog", 180)):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(count):
                Image.fromarray(np.full((12, 12), base + i, np.uint8)).save(folder / f"{i}.png")


@pytest.mark.parametrize("split_names", [("train", "test"), ("Train", "Validation", "Test"), ("training", "valid")])
def test_split_folders_are_splits_not_classes(tmp_path, monkeypatch, split_names):
    # The usual Kaggle layout: pets/train/{cat,dog}, pets/test/{cat,dog}. Read as class folders it gave two
    # classes, "test" and "train", each mixing both animals.
    monkeypatch.setenv("CNN_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("CNN_CACHE_DIR", str(tmp_path / "cache"))
    data.clear_caches(forget_registered=True)
    sizes = dict(zip(split_names, (40, 6, 8)))
    _kaggle_pets(tmp_path / "data" / "pets", sizes)
    info = data.get_dataset_info("pets")
    assert info.class_names == ("cat", "dog")
    assert "split folders found" in info.description
    loaded = {split: data.load_split("pets", split, image_size=12) for split in ("train", "val", "test")}
    for split in loaded.values():  # dark images are cats, bright ones dogs, in every split
        assert ((split.images.float().mean(dim=(1, 2, 3)) > 100).long() == split.labels).all()
    given = {folders_layout_split(name): size * 2 for name, size in sizes.items()}
    if "test" in given:
        assert len(loaded["test"]) == given["test"]
    if "val" in given:
        assert len(loaded["val"]) == given["val"]
        carved_total = given["train"]
    else:  # val carved from train/ (stratified): 10 of 90 parts of the train folder's 80 images
        carved_total = given["train"]
        assert len(loaded["val"]) == round(given["train"] * 0.1 / 0.9) and set(loaded["val"].labels.tolist()) == {0, 1}
    if "test" not in given:
        assert set(loaded["test"].labels.tolist()) == {0, 1}
    assert sum(len(loaded[s]) for s in ("train", "val", "test")) == sum(given.values())
    assert len(loaded["train"]) + (0 if "val" in given else len(loaded["val"])) + (
        0 if "test" in given else len(loaded["test"])) == carved_total


def _named_pets(folder: Path, count: int, names=("cat.{}.png", "dog.{}.png")) -> None:
    """Images whose file names carry their class, as Kaggle's "Dogs vs. Cats": cats dark, dogs bright."""
    folder.mkdir(parents=True, exist_ok=True)
    for pattern, base in zip(names, (30, 180)):
        for i in range(count):
            Image.fromarray(np.full((12, 12), base + i, np.uint8)).save(folder / pattern.format(i))


def test_classes_in_file_names_stand_in_for_class_folders(tmp_path, monkeypatch):
    # Kaggle's "Dogs vs. Cats": train/cat.0.jpg, train/dog.0.jpg and an unlabelled test1/1.jpg. Read as class
    # folders, "train" and "test1" were two classes that each mixed both animals, and it trained without a word.
    monkeypatch.setenv("CNN_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("CNN_CACHE_DIR", str(tmp_path / "cache"))
    data.clear_caches(forget_registered=True)
    root = tmp_path / "data" / "dogs_vs_cats"
    _named_pets(root / "train", 30)
    (root / "test1").mkdir()
    for i in range(5):
        Image.fromarray(np.full((12, 12), 100, np.uint8)).save(root / "test1" / f"{i + 1}.png")
    info = data.get_dataset_info("dogs_vs_cats")  # found under CNN_DATA_DIR like any image folder
    assert info.class_names == ("cat", "dog") and sum(info.n_samples.values()) == 60
    assert "whose classes come from the file names (cat.0.png: cat, ...)" in info.description
    assert info.layout.startswith("classes from the file names (cat.0.png: cat, ...); split folders found (train); val "
                                  "and test carved from train")  # said as a fact of the layout, not as a warning
    assert info.classes_from == "the file names (cat.0.png: cat, ...)"
    assert ("left out 5 image(s) in test1/, with no class in their names or a label table"
            in data.data_notes("dogs_vs_cats"))
    for split in ("train", "val", "test"):
        loaded = data.load_split("dogs_vs_cats", split, image_size=12)
        assert ((loaded.images.float().mean(dim=(1, 2, 3)) > 100).long() == loaded.labels).all()
    # all images in one folder, named "Normal (3).png" and "pneumonia_3.png" (any case): the names' classes
    flat = tmp_path / "flat"
    _named_pets(flat, 6, names=("Normal ({}).png", "PNEUMONIA_{}.png"))
    for i in range(2):
        Image.fromarray(np.full((12, 12), 180, np.uint8)).save(flat / f"Pneumonia_{10 + i}.png")
    info = data.get_dataset_info(str(flat))
    assert info.class_names == ("Normal", "PNEUMONIA") and info.layout.startswith(
        "classes from the file names (Normal (0).png: Normal, ...); split by this app")
    assert [len(data.load_split(str(flat), split, image_size=12)) for split in ("train", "val", "test")] == [10, 2, 2]


def test_file_names_without_classes_give_none(tmp_path, monkeypatch):
    monkeypatch.setenv("CNN_CACHE_DIR", str(tmp_path / "cache"))
    phone = tmp_path / "phone"  # a camera's names: IMG_0001.jpg, IMG_20240101_1200.jpg, PXL_...
    _named_pets(phone, 6, names=("IMG_{:04d}.png", "IMG_2024010{}_1200.png"))
    with pytest.raises(DataError, match="needs one sub-folder per class"):
        data.get_dataset_info(str(phone))
    (phone / "train.zip").write_bytes(b"PK\x05\x06" + bytes(18))  # a Kaggle download, still zipped inside
    with pytest.raises(DataError, match=r"It holds archives \(train\.zip\): unzip them first\."):
        data.get_dataset_info(str(phone))
    mixed = tmp_path / "mixed"  # train/ named by class beside another folder named by class: split or class?
    _named_pets(mixed / "train", 6)
    _named_pets(mixed / "extra", 6)
    with pytest.raises(DataError, match=r"names the classes in its file names \(train/cat\.0\.png\) but also holds "
                                        r"extra/, whose names carry classes too but which is not named as a split"):
        data.get_dataset_info(str(mixed))
    assert folders._count_image_classes(mixed) == 2  # under CNN_DATA_DIR it is listed, and its message shown
    # a small val/ (4 images) is read against train's classes, and training_set/ and test_set/ are splits
    sets = tmp_path / "sets"
    _named_pets(sets / "training_set", 8)
    _named_pets(sets / "Validation", 2, names=("Cat.{}.png", "dog.{}.png"))
    _named_pets(sets / "test_set", 3)
    info = data.get_dataset_info(str(sets))
    assert info.class_names == ("cat", "dog") and info.n_samples == {"train": 16, "val": 4, "test": 6}
    brain = tmp_path / "brain"  # class folders win, whatever their files are called (Y1.jpg, No11.jpg, no 90.jpg)
    _named_pets(brain / "no", 6, names=("No{}.png", "no {}.png"))
    _named_pets(brain / "yes", 6, names=("Y{}.png", "y{}.png"))
    assert data.get_dataset_info(str(brain)).class_names == ("no", "yes")


def test_a_label_table_beside_image_folders_gives_the_classes(tmp_path, monkeypatch):
    # HAM10000 (DermaMNIST's source) ships HAM10000_metadata.csv (lesion_id, image_id, dx, ...) beside two image
    # folders, HAM10000_images_part_1/ and _part_2/: read as class folders they were two classes mixing every lesion.
    monkeypatch.setenv("CNN_CACHE_DIR", str(tmp_path / "cache"))
    root = tmp_path / "ham"
    rows = ["lesion_id,image_id,dx,dx_type,age,sex,localization"]
    for i in range(24):
        part = root / f"HAM10000_images_part_{1 + i % 2}"
        part.mkdir(parents=True, exist_ok=True)
        dx, value = ("nv", 30 + i) if i % 3 else ("mel", 180 + i)
        Image.fromarray(np.full((12, 12), value, np.uint8)).save(part / f"ISIC_{i:07d}.jpg")
        rows.append(f"HAM_{i:07d},ISIC_{i:07d},{dx},histo,45.0,male,back")
    (root / "HAM10000_metadata.csv").write_text("\ufeff" + "\n".join(rows) + "\n", encoding="utf-8")  # Excel's BOM
    info = data.get_dataset_info(str(root))
    assert info.class_names == ("mel", "nv") and sum(info.n_samples.values()) == 24
    assert "the label table HAM10000_metadata.csv (image_id → dx)" in info.layout
    for split in ("train", "val", "test"):
        loaded = data.load_split(str(root), split, image_size=12)
        assert ((loaded.images.float().mean(dim=(1, 2, 3)) > 100).long() == 1 - loaded.labels).all()  # mel is 0
    rows[1:4] = [row.replace(",mel,", ",bkl,").replace(",nv,", ",bkl,") for row in rows[1:4]]  # a corrected table
    (root / "HAM10000_metadata.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    assert data.get_dataset_info(str(root)).class_names == ("bkl", "mel", "nv")  # not the listing cached before


def test_which_label_table_column_is_the_class():
    from cnn_core.data.layout import labels_from_tables, parse_table

    def tables(**texts: str) -> dict:
        return {name.replace("_csv", ".csv"): parse_table(text.encode()) for name, text in texts.items()}

    ids = [f"{i:012x}" for i in range(20)]
    images = {"train_images": [f"{name}.png" for name in ids[:16]], "test_images": [f"{name}.png" for name in ids[16:]]}
    aptos = "id_code,diagnosis\n" + "".join(f"{name},{i % 5}\n" for i, name in enumerate(ids[:16]))
    found = labels_from_tables("z", tables(train_csv=aptos, test_csv="id_code\n" + "\n".join(ids[16:])), [], images)
    assert found.source == "the label table train.csv (id_code → diagnosis)" and found.table == "train.csv"
    assert found.labels["test_images"] == {} and found.labels["train_images"][f"{ids[7]}.png"] == "2"
    unnamed = "file,width,site\n" + "".join(f"{name}.png,{100 + i},{'ab'[i % 2]}\n" for i, name in enumerate(ids))
    assert labels_from_tables("z", tables(sizes_csv=unnamed), [], images).source.endswith("(file → site)")  # 2 values
    unclear = "file,site,scanner\n" + "".join(f"{name}.png,{'ab'[i % 2]},{'xyz'[i % 3]}\n" for i, name in enumerate(ids))
    with pytest.raises(DataError, match=r"sizes.csv names the images \(column 'file'\) but it is unclear which column"):
        labels_from_tables("z", tables(sizes_csv=unclear), [], images)
    assert labels_from_tables("z", tables(notes_csv="a,b\n1,2\n"), [], images) is None  # it names no image
    # ISIC 2019's one-hot ground truth; European Excel's semicolons; "1.0" is "1"
    onehot = "image;MEL;NV;BCC\n" + "".join(f"{name};{float(i % 3 == 0)};{float(i % 3 == 1)};{float(i % 3 == 2)}\n"
                                              for i, name in enumerate(ids))
    found = labels_from_tables("z", tables(isic_csv=onehot), [], images)
    assert found.source == "the label table isic.csv (image → the one of MEL, NV, BCC that is 1)"
    assert found.labels["train_images"][f"{ids[4]}.png"] == "NV"
    with pytest.raises(DataError, match="gives some images several classes"):  # Chest X-ray 14's "Effusion|Mass"
        labels_from_tables("z", tables(x_csv="image,label\n" + "".join(f"{n}.png,{'A|B' if i else 'A'}\n"
                                                                        for i, n in enumerate(ids))), [], images)
    assert parse_table(b'a,b\n"unclosed' + b"x" * 200_000) is None  # csv.Error: not a table, no traceback
    # Excel's short total line names nothing; Plant Pathology's test.csv (image_id only) names as many images
    # as its one-hot train.csv and gives way to it
    short = "diagnosis,id_code\n" + "".join(f"{i % 2},{name}\n" for i, name in enumerate(ids)) + "2\n"
    assert labels_from_tables("z", tables(train_csv=short), [], images).source.endswith("(id_code → diagnosis)")
    twice = aptos + f"{ids[0]},4\n{ids[1]},4\n"  # RSNA-style repeated rows, two of them disagreeing
    assert labels_from_tables("z", tables(train_csv=twice), [], images).source == (
        "the label table train.csv (id_code → diagnosis; 2 image(s) named twice with two classes take the last row's)")
    flat = {"images": [f"{name}.jpg" for name in ids]}
    plants = "image_id,healthy,rust,scab\n" + "".join(f"{n},{int(i % 3 == 0)},{int(i % 3 == 1)},{int(i % 3 == 2)}\n"
                                                       for i, n in enumerate(ids))
    found = labels_from_tables("z", tables(train_csv=plants, test_csv="image_id\n" + "\n".join(ids)), [], flat)
    assert found.source == "the label table train.csv (image_id → the one of healthy, rust, scab that is 1)"


def test_a_label_table_never_overrides_class_folders_it_does_not_split_or_a_name_layout():
    from cnn_core.data.layout import classes_without_folders, labels_from_tables, parse_table

    # Kaggle's Dogs vs. Cats ships sampleSubmission.csv (id,label: every row 0) naming test1/'s images
    names = {"train": [f"{kind}.{i}.jpg" for kind in ("cat", "dog") for i in range(10)],
             "test1": [f"{i + 1}.jpg" for i in range(10)]}
    sample = parse_table(("id,label\n" + "".join(f"{i + 1},0\n" for i in range(10))).encode())
    assert classes_without_folders("z", {"sampleSubmission.csv": sample}, [], names).source.startswith("the file names")
    # class folders of numbered images beside a training log: the folders stay the classes
    folders = {"cat": [f"{i}.jpg" for i in range(20)], "dog": [f"{i}.jpg" for i in range(20)]}
    log = parse_table(("epoch,loss,phase\n" + "".join(f"{i},{1 / (i + 1)},{'train' if i % 2 else 'val'}\n"
                                                        for i in range(20))).encode())
    assert labels_from_tables("z", {"log.csv": log}, [], folders) is None
    # healthy/ holds the table's grade 0, sick/ grades 1-4: the folders agree with the table, they stay
    graded = {"healthy": [f"h{i}.png" for i in range(10)], "sick": [f"s{i}.png" for i in range(10)]}
    grades = parse_table(("image,level\n" + "".join(f"h{i}.png,0\n" for i in range(10))
                          + "".join(f"s{i}.png,{1 + i % 4}\n" for i in range(10))).encode())
    assert labels_from_tables("z", {"grades.csv": grades}, [], graded) is None
    # train.csv labels train/0.png, not test/0.png of the same name
    split = {"train": [f"{i}.png" for i in range(10)], "test": [f"{i}.png" for i in range(5)]}
    train = parse_table(("id,label\n" + "".join(f"{i},{'ab'[i % 2]}\n" for i in range(10))).encode())
    labels = labels_from_tables("z", {"train.csv": train}, [], split).labels
    assert len(labels["train"]) == 10 and labels["test"] == {}
    # the table names each image by its folder too (patient01/slice_00.png): names that repeat across folders
    # are told apart by it (the folders became the classes before); a longer path or backslashes are alike
    patients = {f"patient{p}": [f"slice_{i:02d}.png" for i in range(5)] for p in range(4)}
    windows = "data\\"
    rows = "path,label\n" + "".join(f"{windows if p == 3 else ''}patient{p}/slice_{i:02d}.png,"
                                    f"{'tumour' if p % 2 else 'healthy'}\n" for p in range(4) for i in range(5))
    found = labels_from_tables("z", {"labels.csv": parse_table(rows.encode())}, [], patients)
    assert found.labels["patient1"]["slice_03.png"] == "tumour" and found.labels["patient3"]["slice_00.png"] == "tumour"
    assert found.labels["patient2"]["slice_04.png"] == "healthy"
    # macOS writes file names decomposed (NFD), a table holds them composed (NFC)
    import unicodedata

    accents = {"images": [unicodedata.normalize("NFD", f"élève_{i}.png") for i in range(10)]}
    table = parse_table(("file,label\n" + "".join(f"élève_{i}.png,{'ab'[i % 2]}\n" for i in range(10))).encode())
    found = labels_from_tables("z", {"t.csv": table}, [], accents)
    assert found.labels["images"][unicodedata.normalize("NFD", "élève_3.png")] == "b"


@pytest.mark.parametrize(("name", "label"), [
    ("cat.0.jpg", "cat"), ("dog.12500.jpg", "dog"), ("Normal (3).jpeg", "Normal"), ("covid19_12.png", "covid"),
    ("tumour-007.tif", "tumour"), ("benign (1).png", "benign"),  # Kaggle's breast ultrasound names
    ("rock01-000.png", "rock"), ("Viral Pneumonia-1.png", "Viral Pneumonia"), ("cloudy1.jpg", "cloudy"),
    ("american_pit_bull_terrier_10.jpg", "american_pit_bull_terrier"), ("кот.1.jpg", "кот"), ("猫.1.jpg", "猫"),
    ("FB_IMG_1712345.jpg", None), ("received_123.jpeg", None), ("unnamed (1).png", None), ("OIP (3).jpg", None),
    ("1.jpg", None), ("IMG_0001.JPG", None), ("IMG_20240101_120000.jpg", None), ("PXL_20231224_101010.jpg", None),
    ("Screenshot 2024-01-01 at 10.00.00.png", None), ("scan.png", None), ("x_1.png", None), ("Y1.jpg", None),
    ("IM-0115-0001.jpeg", None),  # Kaggle's chest X-ray names: an id, not a class
])
def test_the_class_a_file_name_carries(name, label):
    from cnn_core.data.layout import name_label

    assert name_label(name) == label


def test_a_wrapper_inside_each_split_folder_is_not_a_class(tmp_path, monkeypatch):
    # Kaggle's "Cat and Dog" unpacks to training_set/training_set/{cats,dogs} and test_set/test_set/{cats,dogs}:
    # the inner folder was the split's only class, and test_set's had no train folder of its name.
    monkeypatch.setenv("CNN_CACHE_DIR", str(tmp_path / "cache"))
    root = tmp_path / "cat_and_dog"
    for split, count in (("training_set", 8), ("test_set", 3)):
        for name, base in (("cats", 30), ("dogs", 180)):
            folder = root / split / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                Image.fromarray(np.full((12, 12), base + i, np.uint8)).save(folder / f"{name}.{i}.png")
    info = data.get_dataset_info(str(root))
    assert info.class_names == ("cats", "dogs") and info.n_samples["test"] == 6
    one_class = tmp_path / "one_class_test"  # test/ holding one class with sub-folders is that class, no wrapper
    for split, kinds in (("train", ("cat", "dog")), ("test", ("cat",))):
        for kind in kinds:
            for place in ("indoor", "outdoor"):
                folder = one_class / split / kind / place
                folder.mkdir(parents=True)
                for i in range(3):
                    Image.fromarray(np.full((12, 12), 30 + i, np.uint8)).save(folder / f"{i}.png")
    assert data.get_dataset_info(str(one_class)).n_samples["test"] == 6
    loaded = data.load_split(str(root), "test", image_size=12)
    assert ((loaded.images.float().mean(dim=(1, 2, 3)) > 100).long() == loaded.labels).all()


@pytest.mark.parametrize("name, split", [
    ("trainset", "train"), ("TrainSet", "train"), ("trainingset", "train"), ("validset", "val"),
    ("seg_train", "train"), ("seg_test", "test"), ("training_set", "train"), ("test-images", "test"),
    ("seg_pred", None), ("tests", None), ("dataset", None), ("test1", None), ("images", None),
])
def test_split_folder_names_as_kaggle_sets_spell_them(name, split):
    assert folders_layout_split(name) == split


def test_a_flat_folder_beside_split_folders_is_left_out_as_unlabelled(tmp_path, monkeypatch):
    # The Intel Image Classification set: seg_train/seg_train/<class>, seg_test/seg_test/<class> and unlabelled
    # seg_pred/seg_pred/*.jpg were three classes, seg_pred, seg_test and seg_train, each mixing every scene.
    # Fruits-360 ships Training/<class>, Test/<class> and a flat test-multiple_fruits/: refused as a mixed layout.
    monkeypatch.setenv("CNN_CACHE_DIR", str(tmp_path / "cache"))

    def write(folder, count, base):
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(count):
            Image.fromarray(np.full((12, 12), base + i, np.uint8)).save(folder / f"{base}_{i}.png")

    intel = tmp_path / "intel"
    for split, count in (("seg_train", 6), ("seg_test", 3)):
        for name, base in (("forest", 30), ("sea", 180)):
            write(intel / split / split / name, count, base)
    write(intel / "seg_pred" / "seg_pred", 5, 100)
    info = data.get_dataset_info(str(intel))
    assert info.class_names == ("forest", "sea") and info.n_samples["test"] == 6 and sum(info.n_samples.values()) == 18
    assert any("seg_pred/" in note for note in data.data_notes(str(intel)))
    fruits = tmp_path / "fruits"
    for split in ("Training", "Test"):
        for name, base in (("Apple", 30), ("Kiwi", 180)):
            write(fruits / split / name, 4, base)
    write(fruits / "test-multiple_fruits", 3, 100)
    assert data.get_dataset_info(str(fruits)).class_names == ("Apple", "Kiwi")
    mixed = tmp_path / "mixed"  # a flat cat/ beside train/cat/ is a class: still a mixed layout, refused
    for name, base in (("cat", 30), ("dog", 180)):
        write(mixed / "train" / name, 4, base)
    write(mixed / "cat", 3, 40)
    with pytest.raises(DataError, match="mixes split folders"):
        data.get_dataset_info(str(mixed))


def test_segmentation_masks_beside_their_images_are_left_out(tmp_path, monkeypatch):
    # Kaggle's Breast Ultrasound Images (BUSI, BreastMNIST's source): benign/benign (1).png beside
    # benign (1)_mask.png and benign (4)_mask_1.png. The masks were trained as images of their class (twice the
    # images, and "normal"'s all-black masks gave that class away); flat, they kept the names from naming classes.
    monkeypatch.setenv("CNN_CACHE_DIR", str(tmp_path / "cache"))
    busi, flat = tmp_path / "busi", tmp_path / "busi_flat"
    for kind, base in (("benign", 40), ("malignant", 200)):
        (busi / kind).mkdir(parents=True)
        flat.mkdir(exist_ok=True)
        for i in range(1, 7):
            for folder in (busi / kind, flat):
                Image.fromarray(np.full((12, 12), base + i, np.uint8)).save(folder / f"{kind} ({i}).png")
                Image.fromarray(np.full((12, 12), 255, np.uint8)).save(folder / f"{kind} ({i})_mask.png")
                if i == 4:
                    Image.fromarray(np.zeros((12, 12), np.uint8)).save(folder / f"{kind} ({i})_mask_1.png")
    (busi / "benign" / "._benign (1)_mask.png").write_bytes(b"\0" * 4096)  # macOS's resource fork on exFAT
    (busi / "with_mask").mkdir()  # the Face Mask Detection set's class: no image of that name beside these
    for i in range(3):
        Image.fromarray(np.full((12, 12), 120, np.uint8)).save(busi / "with_mask" / f"with_mask_{i}.png")
    info = data.get_dataset_info(str(busi))
    assert info.class_names == ("benign", "malignant", "with_mask") and sum(info.n_samples.values()) == 15
    assert any("left out 14 segmentation mask(s) (e.g. benign (1)_mask.png)" in note for note in data.data_notes(str(busi)))
    info = data.get_dataset_info(str(flat))
    assert info.class_names == ("benign", "malignant") and sum(info.n_samples.values()) == 12
    assert info.classes_from.startswith("the file names")


def test_wrapper_folders_around_the_classes_are_skipped(tmp_path, monkeypatch):
    # Windows' "Extract All" of pets.zip makes pets/pets/{cat,dog}/: a folder data set of one class, "pets", was
    # refused as "not an image folder data set" (the zip import skipped the wrapper already)
    monkeypatch.setenv("CNN_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("CNN_CACHE_DIR", str(tmp_path / "cache"))
    data.clear_caches(forget_registered=True)
    root = tmp_path / "data" / "pets"
    for name, base in (("cat", 30), ("dog", 180)):
        (root / "pets" / "pets" / name).mkdir(parents=True)
        for i in range(4):
            Image.fromarray(np.full((12, 12), base + i, np.uint8)).save(root / "pets" / "pets" / name / f"{i}.png")
    info = data.get_dataset_info(str(root))
    assert info.class_names == ("cat", "dog") and sum(info.n_samples.values()) == 8
    assert "pets" in {info.name for info in data.list_datasets()}  # found by `datasets` as well
    assert data.get_dataset_info("pets").class_names == ("cat", "dog")
    flat = tmp_path / "flat"  # a folder of images beside the only folder is no wrapper
    for place in ("indoor", "outdoor"):
        (flat / "cat" / place).mkdir(parents=True)
        Image.new("L", (8, 8)).save(flat / "cat" / place / "0.png")
    Image.new("L", (8, 8)).save(flat / "cover.png")
    with pytest.raises(DataError, match="is not an image folder data set"):
        data.get_dataset_info(str(flat))


def test_a_split_folder_without_a_class_is_noted(tmp_path, monkeypatch):
    # test/ holds cats only: training ended with "ROC-AUC n/a (no 'dog' image ...)" and the gallery said nothing
    monkeypatch.setenv("CNN_CACHE_DIR", str(tmp_path / "cache"))
    root = tmp_path / "pets"
    _kaggle_pets(root, {"train": 6})
    (root / "test" / "cat").mkdir(parents=True)
    for i in range(3):
        Image.fromarray(np.full((12, 12), 30 + i, np.uint8)).save(root / "test" / "cat" / f"{i}.png")
    assert "the test folder holds no image of dog: its recall and ROC-AUC on test are n/a" in data.data_notes(str(root))


def test_a_label_table_beside_a_chain_of_single_folders_labels_their_images(tmp_path, monkeypatch):
    # labels.csv at the top, the images in data/images/: a folder data set of one class, "data" (a zip was fine)
    monkeypatch.setenv("CNN_CACHE_DIR", str(tmp_path / "cache"))
    root = tmp_path / "scans"
    (root / "data" / "images").mkdir(parents=True)
    rows = ["image,label"]
    for i in range(12):
        Image.fromarray(np.full((12, 12), 30 if i % 2 else 200, np.uint8)).save(root / "data" / "images" / f"s{i}.png")
        rows.append(f"s{i}.png,{'dark' if i % 2 else 'bright'}")
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    info = data.get_dataset_info(str(root))
    assert info.class_names == ("bright", "dark") and sum(info.n_samples.values()) == 12
    assert "the label table labels.csv (image → label)" in info.layout


def folders_layout_split(name: str) -> str:
    from cnn_core.data.layout import split_of_folder

    return split_of_folder(name)


def test_a_folder_repeating_its_siblings_is_left_out_with_a_note(tmp_path, monkeypatch):
    # Kaggle's "Brain MRI Images for Brain Tumor Detection" unpacks to yes/, no/ and brain_tumor_dataset/{yes,no}:
    # read as a class, brain_tumor_dataset mixed tumours with healthy scans and the model learnt three classes.
    monkeypatch.setenv("CNN_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("CNN_CACHE_DIR", str(tmp_path / "cache"))
    data.clear_caches(forget_registered=True)
    root = tmp_path / "data" / "brain"
    for copy in (root, root / "brain_tumor_dataset"):
        for name, base in (("no", 30), ("yes", 180)):
            (copy / name).mkdir(parents=True)
            for i in range(5):
                Image.fromarray(np.full((12, 12), base + i, np.uint8)).save(copy / name / f"{i}.png")
    info = data.get_dataset_info(str(root))
    assert info.class_names == ("no", "yes") and sum(info.n_samples.values()) == 10
    assert any("left out brain_tumor_dataset/, which repeats the folders beside it" in note
               for note in data.data_notes(str(root)))
    # Kaggle's chest X-rays hold their split folders twice: chest_xray/{train,test} and chest_xray/chest_xray/...
    chest = tmp_path / "chest_xray"
    _kaggle_pets(chest, {"train": 6, "test": 2})
    _kaggle_pets(chest / "chest_xray", {"train": 6, "test": 2})
    assert data.get_dataset_info(str(chest)).class_names == ("cat", "dog")
    assert len(data.load_split(str(chest), "test", image_size=12)) == 4


def test_split_folders_spell_a_class_in_two_cases_or_lack_its_train_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("CNN_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("CNN_CACHE_DIR", str(tmp_path / "cache"))
    data.clear_caches(forget_registered=True)
    root = tmp_path / "xray"
    for split, names, count in (("train", ("Normal", "Pneumonia"), 8), ("test", ("NORMAL", "PNEUMONIA"), 3)):
        for name, base in zip(names, (30, 180)):
            (root / split / name).mkdir(parents=True)
            for i in range(count):
                Image.fromarray(np.full((12, 12), base + i, np.uint8)).save(root / split / name / f"{i}.png")
    info = data.get_dataset_info(str(root))
    assert info.class_names == ("Normal", "Pneumonia")
    test = data.load_split(str(root), "test", image_size=12)
    assert ((test.images.float().mean(dim=(1, 2, 3)) > 100).long() == test.labels).all() and len(test) == 6
    (root / "test" / "Covid").mkdir()
    Image.new("L", (12, 12)).save(root / "test" / "Covid" / "c.png")
    data.clear_caches(forget_registered=True)
    with pytest.raises(DataError, match=r"no train/ folder of the same name \(Covid in the test folder\)"):
        data.get_dataset_info(str(root))


def test_class_folders_named_in_other_encodings_are_one_class_each(tmp_path, monkeypatch):
    # Info-ZIP's unzip leaves a Windows zip's code-page bytes in names (not UTF-8: Python's surrogate escapes), which
    # crashed `datasets` for every data set; a Mac writes Ö decomposed (O + U+0308), a PC composed: one class.
    monkeypatch.setenv("CNN_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("CNN_CACHE_DIR", str(tmp_path / "cache"))
    data.clear_caches(forget_registered=True)
    root = tmp_path / "data" / "food"
    _kaggle_pets(Path(os.fsdecode(os.fsencode(tmp_path / "data") + b"/p\xe9ts")), {"": 3})  # a data set's own name
    for name, base in ((b"Caf\xe9", 30), (b"tea", 120), ("Ödem".encode(), 180), ("O\u0308dem".encode(), 181)):
        folder = os.fsencode(root) + b"/" + name
        os.makedirs(folder)
        for i in range(4):
            Image.fromarray(np.full((12, 12), base + i, np.uint8)).save(os.fsdecode(folder + b"/r\xe9sum\xe9%d.png" % i))
    names = [info.name for info in data.list_datasets()]
    assert "food" in names and "p\\xe9ts" in names
    assert data.get_dataset_info("p\\xe9ts").class_names == ("cat", "dog")
    info = data.get_dataset_info("food")
    assert info.class_names == ("Caf\\xe9", "tea", "Ödem") and sum(info.n_samples.values()) == 16
    train = data.load_split("food", "train", image_size=12)
    assert len(train) > 0 and set(train.labels.tolist()) <= {0, 1, 2}


def test_a_folder_named_like_a_built_in_set_is_listed_and_a_zip_path_is_explained(tmp_path, monkeypatch):
    monkeypatch.setenv("CNN_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("CNN_CACHE_DIR", str(tmp_path / "cache"))
    data.clear_caches(forget_registered=True)
    _kaggle_pets(tmp_path / "data" / "pneumoniamnist", {"": 4})  # hidden behind the built-in entry before
    names = [info.name for info in data.list_datasets()]
    assert "pneumoniamnist" in names and "pneumoniamnist-folder" in names
    assert data.get_dataset_info("pneumoniamnist-folder").class_names == ("cat", "dog")
    archive = tmp_path / "pets.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("cat/1.png", b"")
    with pytest.raises(DataError, match="is a zip file: unpack it and give the folder"):
        data.get_dataset_info(str(archive))


def test_split_folders_mixed_with_class_folders_are_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("CNN_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("CNN_CACHE_DIR", str(tmp_path / "cache"))
    data.clear_caches(forget_registered=True)
    _kaggle_pets(tmp_path / "data" / "pets", {"train": 4})
    _kaggle_pets(tmp_path / "data" / "pets" / "extra", {"": 2})  # pets/extra/{cat,dog}
    (tmp_path / "data" / "pets" / "bird").mkdir()
    Image.new("L", (8, 8)).save(tmp_path / "data" / "pets" / "bird" / "b.png")
    # bird/ holds images and no class folder, like Intel's seg_pred/: left out as unlabelled, not named here
    with pytest.raises(DataError, match=r"mixes split folders \(train\) with other folders \(extra\)"):
        data.load_split(str(tmp_path / "data" / "pets"), "train")
    both = tmp_path / "two_vals"
    _kaggle_pets(both, {"train": 4, "val": 2, "valid": 2})
    with pytest.raises(DataError, match=r"two folders for the val split \(val and valid\)"):
        data.load_split(str(both), "train")


def test_a_class_named_train_beside_other_classes_is_a_class(tmp_path, monkeypatch):
    # CIFAR-100 and vehicle sets have a class "train" (bus, car, train): a flat train/ beside class folders was
    # refused as "mixes split folders", and the set was not even listed.
    monkeypatch.setenv("CNN_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("CNN_CACHE_DIR", str(tmp_path / "cache"))
    data.clear_caches(forget_registered=True)
    for number, name in enumerate(("bus", "car", "train")):
        (tmp_path / "data" / "vehicles" / name).mkdir(parents=True)
        for i in range(4):
            Image.fromarray(np.full((8, 8), 60 * number + i, np.uint8)).save(
                tmp_path / "data" / "vehicles" / name / f"{i}.png")
    assert data.get_dataset_info("vehicles").class_names == ("bus", "car", "train")
    assert sum(len(data.load_split("vehicles", split, image_size=8)) for split in data.SPLITS) == 12


def test_grayscale_only_folder_has_one_channel(tmp_path, monkeypatch):
    monkeypatch.setenv("CNN_DATA_DIR", str(tmp_path / "data"))
    root = tmp_path / "data" / "xray"
    for name, value in (("normal", 40), ("opaque", 200)):
        (root / name).mkdir(parents=True)
        for i in range(5):
            Image.fromarray(np.full((30, 20), value, np.uint8)).save(root / name / f"{i}.png")
        ramp = np.linspace(0, 4095, 600).reshape(30, 20).astype(np.uint16)  # 12-bit data in 16 bits
        Image.fromarray(ramp).save(root / name / "deep.png")
        gray_palette = Image.fromarray(np.full((30, 20), value, np.uint8)).convert("P")
        gray_palette.save(root / name / "palette.png")
    info = data.get_dataset_info("xray")
    assert info.channels == 1
    train = data.load_split("xray", "train", image_size=16)
    assert train.images.shape[1:] == (1, 16, 16)
    assert len(train) == 10 and train.skipped == 0  # 14 files, 7 per class: 5 / 1 / 1 each (every split has both)
    for label, value in ((0, 40), (1, 200)):  # the 8-bit and palette files keep their gray value
        assert int(train.images[train.labels == label].median()) == value


def test_exif_rotation_is_applied():
    stored = np.zeros((40, 40), np.uint8)
    stored[:20] = 255  # top half bright as stored
    exif = Image.Exif()
    exif[0x0112] = 6  # display rotated 90° clockwise: the bright half ends up on the right
    import io

    buffer = io.BytesIO()
    Image.fromarray(stored).save(buffer, format="JPEG", exif=exif, quality=95)
    with Image.open(buffer) as image:
        array = data.fit_image(image, 20, 1)[0].astype(float)
    assert array[:, 12:].mean() > 200 and array[:, :8].mean() < 50
    # turned once only: predict reads the file (turned), then fits it (which turned it back, sideways, until the
    # orientation was dropped from the turned picture's metadata)
    from cnn_core.data.images import read_image, to_grayscale_float

    upright = read_image(buffer.getvalue())
    assert np.array_equal(data.fit_image(upright, 20, 1)[0], array.astype(np.uint8))
    assert to_grayscale_float(upright)[:, 30:].mean() > 0.8


def test_a_damaged_exif_block_is_no_rotation_not_a_crash():
    """Pillow's exif_transpose raised TypeError or struct.error on damaged EXIF blocks (python-pillow/Pillow#3973,
    #7839, #8965) though the pixels decode: a zip upload with one such phone photo failed with a traceback."""
    import io
    import random

    from cnn_core.data.images import read_image
    from cnn_core.errors import ImageError

    pixels = (np.random.default_rng(0).random((32, 48, 3)) * 255).astype(np.uint8)
    exif = Image.Exif()
    exif[0x0112], exif[0x010F], exif[0x8769] = 6, "Canon", {0x9003: "2020:01:01 00:00:00"}
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", exif=exif.tobytes())
    whole = buffer.getvalue()
    assert read_image(whole).size == (32, 48)  # orientation 6: stored 48 wide, shown 32 wide
    start = whole.find(b"Exif")
    end = start + 2 + int.from_bytes(whole[start - 2:start], "big")
    rng, outcomes = random.Random(1), set()
    for _ in range(1500):  # 1-4 bytes of the EXIF block changed: an image, or an ImageError, never another error
        damaged = bytearray(whole)
        for _ in range(rng.randint(1, 4)):
            damaged[rng.randrange(start + 6, end - 2)] = rng.randrange(256)
        try:
            outcomes.add(read_image(bytes(damaged), name="phone.jpg").size)
        except ImageError:
            outcomes.add("refused")
    assert {(32, 48), (48, 32)} <= outcomes  # rotated when the tag survives, as stored when it does not


def test_a_huge_file_or_a_folder_is_refused_before_anything_is_read(tmp_path):
    # predict read a 3 GB non-image whole (3.7 GB of memory) to say "not an image"; a folder was "not found"
    from cnn_core.data.images import read_image
    from cnn_core.errors import ImageError

    huge = tmp_path / "scan.png"
    with open(huge, "wb") as file:
        file.truncate(400 * 2**20)  # sparse: no disk, no memory
    with pytest.raises(ImageError, match=r"'scan.png' is 400 MB, more than the 320 MB an image file may be here"):
        read_image(huge)
    (tmp_path / "photos.jpg").mkdir()
    with pytest.raises(ImageError, match="'photos.jpg' is a folder, not an image file"):
        read_image(tmp_path / "photos.jpg")


def test_fit_image_keeps_aspect_by_center_crop():
    wide = np.zeros((20, 60), np.uint8)
    wide[:, 20:40] = 255  # the middle third is bright
    array = data.fit_image(Image.fromarray(wide), 20, 1)[0]
    assert array.shape == (20, 20) and array[:, 2:18].min() > 200  # only the center survives


def test_decompression_bombs_and_oversized_images_are_skipped(tiny_data_dir, monkeypatch):
    bomb = Image.new("1", (14_000, 14_000))  # 196 megapixels in a few kilobytes of PNG
    bomb.save(tiny_data_dir / "scans" / "a" / "bomb.png", optimize=False)
    assert (tiny_data_dir / "scans" / "a" / "bomb.png").stat().st_size < 2_000_000
    splits = [data.load_split("scans", s) for s in data.SPLITS]
    assert sum(s.skipped for s in splits) == TINY_FOLDER_UNREADABLE + 1
    assert sum(len(s) for s in splits) == 2 * TINY_FOLDER_READABLE_PER_CLASS
    # our own, lower limit (checked from the header, before decoding)
    photo = tiny_data_dir / "scans" / "a" / "photo.jpg"  # 48 x 40
    assert folders.read_folder_image(photo, 32, 3).shape == (3, 32, 32)
    monkeypatch.setattr(folders, "MAX_IMAGE_PIXELS", 48 * 40 - 1)
    assert folders.read_folder_image(photo, 32, 3) is None
    assert folders.read_folder_image(tiny_data_dir / "scans" / "a" / "tiny.bmp", 32, 3) is not None


def test_every_class_of_three_or_more_images_reaches_every_split():
    # 30 normal and 2 tumour images: a proportional split gives tumour no test image (sensitivity 0/0)
    assert folders.split_quotas([30, 3], (0.8, 0.1, 0.1)) == [[24, 1], [3, 1], [3, 1]]
    assert folders.split_quotas([30, 2], (0.8, 0.1, 0.1)) == [[24, 2], [3, 0], [3, 0]]  # cannot: a warning says so
    assert folders.small_classes({"normal": 30, "tumour": 2}) == [
        "class 'tumour' has only 2 image(s): some of the train/val/test splits get none of it, so its scores there "
        "are n/a; add images"]
    for sizes in ([500, 3], [3, 3, 3], [1000, 7, 4]):
        quotas = folders.split_quotas(sizes, (0.8, 0.1, 0.1))
        assert [sum(split[i] for split in quotas) for i in range(len(sizes))] == sizes
        assert all(split[i] >= 1 for split in quotas for i in range(len(sizes)))


def test_stratified_split_quotas_match_the_brain_mri_numbers():
    quotas = folders.split_quotas([98, 155], (0.8, 0.1, 0.1))  # brain_mri: no 98, yes 155
    assert [sum(q) for q in quotas] == [202, 25, 26]
    assert quotas == [[78, 124], [10, 15], [10, 16]]
    assert folders.split_quotas([10, 10], (0.8, 0.1, 0.1)) == [[8, 8], [1, 1], [1, 1]]


def test_stratified_split_is_deterministic_and_ignores_file_order(tmp_path, monkeypatch):
    monkeypatch.setenv("CNN_DATA_DIR", str(tmp_path / "empty"))
    names = [f"img {i:02d}.png" for i in range(30)]
    first, second = tmp_path / "first", tmp_path / "second"
    for root, order in ((first, names), (second, list(reversed(names)))):
        for cls in ("cat", "dog", "eel"):
            (root / cls).mkdir(parents=True)
            for name in order:  # written (and so listed by the file system) in opposite orders
                Image.fromarray(np.full((8, 8), len(name), np.uint8)).save(root / cls / name)

    def assignment(root: Path, seed: int) -> dict[str, str]:
        scan = folders.scan_folder(root)
        return {path: split for (path, _), split in zip(scan.files, folders.folder_assignment(scan, seed))}

    a, b = assignment(first, 0), assignment(second, 0)
    assert a == b == assignment(first, 0)
    assert assignment(first, 1) != a  # another seed, another split
    for cls in ("cat", "dog", "eel"):
        in_class = [split for path, split in a.items() if path.startswith(cls)]
        assert (in_class.count("train"), in_class.count("val"), in_class.count("test")) == (24, 3, 3)
    info = data.register_image_folder("pets", first, seed=1)
    assert info.n_samples == {"train": 72, "val": 9, "test": 9}


def test_path_as_name_and_runtime_registration(tiny_data_dir, tmp_path):
    by_path = data.get_dataset_info(str(tiny_data_dir / "scans"))
    assert by_path.name == "scans"
    upload = shutil.copytree(tiny_data_dir / "scans", tmp_path / "unzipped upload")
    info = data.register_image_folder("my_upload", upload)
    assert info.name == "my_upload" and info.family == "folder" and info.root == str(upload)
    assert "my_upload" in [i.name for i in data.list_datasets()]
    assert len(data.load_split("my_upload", "train")) > 0
    assert data.dataset_status("my_upload").available
    loaded = data.load_split(str(upload), "test")  # the same folder by path: same entry
    assert loaded.info.name == "my_upload"
    with pytest.raises(DataError, match="built-in"):
        data.register_image_folder("mnist", upload)
    with pytest.raises(DataError, match="one sub-folder per class"):
        data.register_image_folder("flat", tiny_data_dir / "one_class_only")
    with pytest.raises(DataError):
        data.register_image_folder("ghost", tmp_path / "does not exist")


def test_tiny_folder_with_empty_split_is_explained(tmp_path, monkeypatch):
    monkeypatch.setenv("CNN_DATA_DIR", str(tmp_path / "data"))
    for cls in ("x", "y"):
        write_class_folder(tmp_path / "few" / cls, bright=cls == "x")
        for path in sorted((tmp_path / "few" / cls).rglob("*.*"))[2:]:
            path.unlink()
    data.register_image_folder("few", tmp_path / "few")
    assert len(data.load_split("few", "train")) == 3  # 4 images: 3 / 0 / 1
    with pytest.raises(DataError, match="too few"):
        data.load_split("few", "val")


# --------------------------------------------------------------------------------------------------
# Caches, read-only data


def test_second_load_reads_no_source(tiny_data_dir, monkeypatch):
    first = {name: data.load_split(name, "train") for name in ("mnist", "pathmnist", "scans")}
    assert data.load_split("mnist", "train") is first["mnist"]  # in-process LRU: the same object
    data.clear_caches()

    def fail(*args, **kwargs):
        raise AssertionError("a source was read again")

    import torchvision.datasets

    monkeypatch.setattr(torchvision.datasets, "MNIST", fail)
    monkeypatch.setattr(np, "load", fail)
    monkeypatch.setattr(Image, "open", fail)
    monkeypatch.setattr(folders, "read_folder_image", fail)
    for name, loaded in first.items():
        again = data.load_split(name, "train")
        assert again is not loaded and torch.equal(again.images, loaded.images)
        assert torch.equal(again.labels, loaded.labels) and again.skipped == loaded.skipped
    data.clear_caches()
    monkeypatch.setattr(cache, "CACHE_MMAP_BYTES", 0)  # big cache files are memory-mapped instead
    assert torch.equal(data.load_split("pathmnist", "train").images, first["pathmnist"].images)
    data.load_split("mnist", "train")
    monkeypatch.setattr(torch, "load", fail)  # and the in-process cache needs not even the disk
    assert torch.equal(data.load_split("mnist", "train").images, first["mnist"].images)


def test_changed_source_invalidates_the_cache(tiny_data_dir):
    before = data.load_split("scans", "train")
    Image.fromarray(np.full((40, 40, 3), 250, np.uint8)).save(tiny_data_dir / "scans" / "a" / "extra.png")
    after = [data.load_split("scans", s) for s in data.SPLITS]
    assert sum(len(s) for s in after) == 2 * TINY_FOLDER_READABLE_PER_CLASS + 1
    assert len(before) in (len(after[0]), len(after[0]) - 1)
    data.load_split("breastmnist", "test")
    write_npz(tiny_data_dir / "breastmnist.npz", tiny_breastmnist_arrays({"train": 6, "val": 4, "test": 2}))
    os.utime(tiny_data_dir / "breastmnist.npz", ns=(1, 1))  # a different mtime, whatever the clock
    assert len(data.load_split("breastmnist", "test")) == 2
    assert data.get_dataset_info("breastmnist").n_samples == {"train": 6, "val": 4, "test": 2}


def test_read_only_data_dir_is_never_written(tiny_data_dir):
    before = _snapshot(tiny_data_dir)
    paths = [tiny_data_dir, *tiny_data_dir.rglob("*")]
    modes = {p: p.stat().st_mode for p in paths}
    try:
        for p in paths:
            p.chmod(stat.S_IMODE(modes[p]) & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
        for name in ("mnist", "pathmnist", "breastmnist", "chestmnist", "scans"):
            for split in data.SPLITS:
                assert len(data.load_split(name, split)) > 0
        assert data.channel_stats("scans")
    finally:
        for p in reversed(paths):
            p.chmod(stat.S_IMODE(modes[p]))
    assert _snapshot(tiny_data_dir) == before


def test_channel_stats_are_right_and_cached(tiny_data_dir, monkeypatch):
    mean, std = data.channel_stats("pathmnist")
    images = data.load_split("pathmnist", "train").images.double() / 255
    assert np.allclose(mean, images.mean(dim=(0, 2, 3)).tolist(), atol=1e-9)
    assert np.allclose(std, images.std(dim=(0, 2, 3), unbiased=False).tolist(), atol=1e-6)
    assert len(data.channel_stats("mnist")[0]) == 1
    data.clear_caches()

    def fail(*args, **kwargs):
        raise AssertionError("statistics recomputed")

    monkeypatch.setattr(registry, "load_split", fail)
    assert data.channel_stats("pathmnist") == (mean, std)  # from CNN_CACHE_DIR/stats


def test_a_medmnist_split_tells_its_progress_while_it_is_decompressed_once(tiny_data_dir, monkeypatch):
    from cnn_core.data import medmnist

    monkeypatch.setattr(medmnist, "NPY_CHUNK_BYTES", 28 * 28 * 3 * 16)  # 16 images a chunk: several reports
    heard: list[float] = []
    train = data.load_split("pathmnist", "train", progress=heard.append)
    assert len(train) == 180 and heard == sorted(heard) and heard[-1] == 1.0 and len(heard) == -(-180 // 16)
    expected = tiny_pathmnist_arrays()
    assert torch.equal(train.images, torch.from_numpy(expected["train_images"]).permute(0, 3, 1, 2))
    assert torch.equal(train.labels, torch.from_numpy(expected["train_labels"][:, 0].astype(np.int64)))
    data.clear_caches()  # the next load reads the tensor cache: nothing decompressed, nothing to tell
    heard.clear()
    assert torch.equal(data.load_split("pathmnist", "train", progress=heard.append).images, train.images)
    assert heard == []


# --------------------------------------------------------------------------------------------------
# Real data (CNN_DATA_DIR=/work/shared/data)


def _real(*relative: str) -> Path:
    root = settings.data_dir()
    if not all((root / r).exists() for r in relative):
        pytest.skip(f"real data not under CNN_DATA_DIR ({root})")
    return root


@pytest.mark.realdata
def test_real_mnist_counts():
    _real("MNIST/raw/train-images-idx3-ubyte.gz")
    data.clear_caches()
    train, val, test = (data.load_split("mnist", split) for split in data.SPLITS)
    assert (len(train), len(val), len(test)) == (55_000, 5_000, 10_000)
    assert len(train) + len(val) == 60_000
    assert train.images.shape[1:] == (1, 28, 28)
    assert torch.equal(torch.cat([train.labels, val.labels]).bincount().sum(), torch.tensor(60_000))
    assert data.get_dataset_info("mnist").n_samples == {"train": 55_000, "val": 5_000, "test": 10_000}


@pytest.mark.realdata
def test_real_pathmnist_counts():
    root = _real("medmnist/pathmnist.npz")
    info = data.get_dataset_info("pathmnist")
    assert info.n_samples == {"train": 89_996, "val": 10_004, "test": 7_180}  # read from the npz headers
    with np.load(root / "medmnist" / "pathmnist.npz") as archive:  # labels only: skips the 12-s images
        assert archive["train_labels"].shape == (89_996, 1)
    val, test = data.load_split("pathmnist", "val"), data.load_split("pathmnist", "test")
    assert (len(val), len(test)) == (10_004, 7_180)
    assert val.images.shape[1:] == (3, 28, 28) and int(val.labels.max()) == 8


@pytest.mark.realdata
def test_real_brain_mri():
    _real("brain_mri/yes", "brain_mri/no")
    info = data.get_dataset_info("brain_mri")
    assert info.class_names == ("no", "yes") and info.channels == 3
    assert info.n_samples == {"train": 202, "val": 25, "test": 26}
    splits = [data.load_split("brain_mri", split) for split in data.SPLITS]
    assert sum(len(s) for s in splits) == 253 and sum(s.skipped for s in splits) == 0
    labels = torch.cat([s.labels for s in splits])
    assert labels.bincount().tolist() == [98, 155]
    assert all(s.images.shape[1:] == (3, 128, 128) for s in splits)


def test_class_counts_are_read_once_and_again_when_the_file_changes(tiny_data_dir, monkeypatch):
    from cnn_core.data.medmnist import MedmnistSource

    reads = []
    original = MedmnistSource.class_counts
    monkeypatch.setattr(MedmnistSource, "class_counts", lambda self: reads.append(self.flag) or original(self))
    first = data.class_counts("breastmnist")
    first["train"][0] = -1  # a caller's change stays the caller's
    assert data.class_counts("breastmnist") == {"train": [20, 20], "val": [5, 5], "test": [5, 5]}
    assert reads == ["breastmnist"]
    write_npz(tiny_data_dir / "breastmnist.npz", tiny_breastmnist_arrays({"train": 50, "val": 10, "test": 10}))
    assert data.class_counts("breastmnist")["train"] == [25, 25]
    assert reads == ["breastmnist", "breastmnist"]


@pytest.mark.parametrize("name", ["mnist", "pathmnist", "breastmnist", "scans"])
def test_class_counts_from_labels_alone_match_the_loaded_splits(tiny_data_dir, name):
    counts = data.class_counts(name)
    n = data.get_dataset_info(name).n_classes
    for split in ("train", "val", "test"):
        loaded = data.load_split(name, split)
        assert counts[split] == torch.bincount(loaded.labels, minlength=n).tolist(), split


def test_one_medmnist_set_at_two_sizes_holds_the_same_kind_of_images():
    # Predict judged a DermaMNIST (28) model on a DermaMNIST (64) test image as "trained on other data".
    assert data.same_images_kind("dermamnist", "dermamnist_64") and data.same_images_kind("breastmnist_224", "breastmnist")
    assert data.same_images_kind("scans", "scans") and not data.same_images_kind("dermamnist", "bloodmnist")
    assert not data.same_images_kind("scans", "scans_64") and not data.same_images_kind("mnist", "pathmnist")


def test_a_resize_works_in_chunks_of_bounded_memory_with_the_same_result(monkeypatch):
    # 2,048 images of 224 px a chunk took 1.2 GB of float32 on top of the split itself.
    images = torch.randint(0, 256, (40, 3, 64, 64), dtype=torch.uint8)
    whole = cache.resize_uint8(images, 28, chunk=40)
    monkeypatch.setattr(cache, "RESIZE_CHUNK_BYTES", 3 * 4 * 3 * 64 * 64)  # three images a chunk
    blocks = []
    original = torch.nn.functional.interpolate
    monkeypatch.setattr(torch.nn.functional, "interpolate", lambda x, **k: blocks.append(len(x)) or original(x, **k))
    assert torch.equal(cache.resize_uint8(images, 28), whole)
    assert blocks == [3] * 13 + [1]
