"""Unit tests for the gallery's computations (cnn_core.gallery) and the zip upload (cnn_core.data.zipfolder)."""

from __future__ import annotations

import io
import re
import struct
import time
import zipfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from data_fixtures import zip_with_raw_names
from image_samples import png_bomb
from PIL import Image

from cnn_core import gallery
from cnn_core.errors import DataError
from cnn_core.data import zipfolder
from cnn_core.data.zipfolder import dataset_name_for, import_zip
from cnn_core.data.uploads import ZipLimits, available_name, owned_name, uploads_dir


# --- gallery: counts, sampling, statistics -------------------------------------------------------------


def test_class_counts_multiclass_and_medmnist_shape():
    labels = torch.tensor([0, 2, 2, 1, 2])
    assert gallery.class_counts(labels, 4) == [1, 1, 3, 0]
    assert gallery.class_counts(labels.unsqueeze(1), 4) == [1, 1, 3, 0]  # medmnist's [N, 1]


def test_class_counts_multilabel_counts_every_positive_label():
    labels = torch.tensor([[1, 0, 1], [0, 0, 0], [1, 1, 0]])
    assert gallery.class_counts(labels, 3) == [2, 1, 1]


def test_labels_outside_the_classes_are_refused():
    with pytest.raises(DataError, match="outside the 2 classes"):
        gallery.class_counts(torch.tensor([0, 1, 2]), 2)


def test_counts_by_split():
    counts = gallery.counts_by_split({"train": torch.tensor([0, 0, 1]), "test": torch.tensor([1])}, 2)
    assert counts == {"train": [2, 1], "test": [0, 1]}


def test_sampling_is_reproducible_per_seed_and_only_picks_the_right_class():
    labels = torch.arange(100) % 4
    first = gallery.sample_per_class(labels, 4, 5, seed=7)
    assert first == gallery.sample_per_class(labels, 4, 5, seed=7)
    assert first != gallery.sample_per_class(labels, 4, 5, seed=8)
    for class_index, picks in enumerate(first):
        assert len(picks) == 5 and len(set(picks)) == 5
        assert all(int(labels[i]) == class_index for i in picks)


def test_sampling_with_fewer_images_than_asked_and_an_empty_class():
    labels = torch.tensor([0, 0, 1])
    picks = gallery.sample_per_class(labels, 3, 4, seed=0)
    assert sorted(picks[0]) == [0, 1] and picks[1] == [2] and picks[2] == []
    with pytest.raises(DataError):
        gallery.sample_per_class(labels, 3, 0, seed=0)


def test_next_seed_changes_the_seed():
    assert all(gallery.next_seed(5) != 5 for _ in range(50))


def test_channel_mean_std_matches_numpy():
    images = torch.randint(0, 256, (50, 3, 6, 5), dtype=torch.uint8)
    mean, std = gallery.channel_mean_std(images)
    as_float = images.numpy().astype(np.float64) / 255
    np.testing.assert_allclose(mean, as_float.mean(axis=(0, 2, 3)), rtol=1e-9)
    np.testing.assert_allclose(std, as_float.std(axis=(0, 2, 3)), rtol=1e-9)


def test_channel_mean_std_across_chunks(monkeypatch):
    monkeypatch.setattr(gallery, "_CHUNK", 7)
    images = torch.randint(0, 256, (50, 1, 4, 4), dtype=torch.uint8)
    mean, std = gallery.channel_mean_std(images)
    assert mean[0] == pytest.approx(images.double().mean().item() / 255)
    assert std[0] == pytest.approx(images.double().std(unbiased=False).item() / 255)


def test_class_mean_images_average_each_class():
    images = torch.stack([torch.full((1, 2, 2), v, dtype=torch.uint8) for v in (0, 100, 200, 50)])
    labels = torch.tensor([0, 0, 1, 1])
    means = gallery.class_mean_images(images, labels, 3)
    assert means.dtype == torch.uint8 and means.shape == (3, 1, 2, 2)
    assert means[0].unique().tolist() == [50]
    assert means[1].unique().tolist() == [125]
    assert means[2].unique().tolist() == [0]  # a class without images


def test_class_mean_images_multilabel():
    images = torch.stack([torch.full((1, 1, 1), v, dtype=torch.uint8) for v in (10, 30)])
    labels = torch.tensor([[1, 1], [0, 1]])
    assert gallery.class_mean_images(images, labels, 2).flatten().tolist() == [10, 20]


# --- gallery: pictures and pixel grids ------------------------------------------------------------------


def test_to_display_shapes_and_nearest_upscaling():
    grey = torch.tensor([[[0, 255], [10, 20]]], dtype=torch.uint8)
    shown = gallery.to_display(grey, scale=3)
    assert shown.shape == (6, 6) and shown[0, 0] == 0 and shown[0, 5] == 255 and shown[5, 5] == 20
    colour = torch.zeros(3, 4, 5, dtype=torch.uint8)
    colour[0] = 200
    shown = gallery.to_display(colour)
    assert shown.shape == (4, 5, 3) and shown[..., 0].min() == 200 and shown[..., 1].max() == 0


def test_display_scale():
    assert gallery.display_scale(28) == 3
    assert gallery.display_scale(224) == 1


def test_montage_tiles_images_with_white_gaps():
    images = torch.zeros(5, 1, 4, 4, dtype=torch.uint8)
    picture = gallery.montage(images, columns=3, padding=2)
    assert picture.shape == (2 * 6 + 2, 3 * 6 + 2)
    assert picture[0, 0] == 255 and picture[2, 2] == 0
    assert gallery.montage(torch.zeros(2, 3, 4, 4, dtype=torch.uint8), columns=2).shape[-1] == 3


@pytest.mark.parametrize("shape, columns", [((7, 1, 5, 4), 3), ((4, 3, 6, 6), 4), ((5, 3, 3, 3), 10), ((6, 1, 2, 3), 6)])
def test_montage_lays_images_out_as_torchvision_make_grid(shape, columns):
    from torchvision.utils import make_grid

    images = torch.randint(0, 256, shape, dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    reference = make_grid(images, nrow=columns, padding=2, pad_value=255)[: shape[1]]
    assert np.array_equal(gallery.montage(images, columns), gallery.to_display(reference, 1))


def test_label_text():
    names = ("cat", "dog", "bird")
    assert gallery.label_text(torch.tensor(1), names) == "1: dog"
    assert gallery.label_text(torch.tensor([2]), names) == "2: bird"
    assert gallery.label_text(torch.tensor([1, 0, 1]), names) == "cat, bird"
    assert "no finding" in gallery.label_text(torch.tensor([0, 0, 0]), names)
    assert gallery.label_text(torch.tensor(7), tuple(str(d) for d in range(10))) == "7"  # MNIST: no "7: 7"


def test_pixel_grid_returns_the_exact_values():
    image = torch.arange(2 * 3 * 4, dtype=torch.uint8).reshape(2, 3, 4)
    np.testing.assert_array_equal(gallery.pixel_grid(image, 1), image[1].numpy())
    with pytest.raises(DataError):
        gallery.pixel_grid(image, 2)


# --- gallery: summary and sample grid on a loaded split --------------------------------------------------


def _split(images, labels, class_names):
    return SimpleNamespace(images=images, labels=labels, info=SimpleNamespace(class_names=tuple(class_names)))


def test_summarize_and_sample_grid():
    generator = torch.Generator().manual_seed(0)
    train = _split(torch.randint(0, 256, (40, 1, 8, 8), dtype=torch.uint8, generator=generator),
                   torch.arange(40) % 2, ["a", "b"])
    test = _split(torch.zeros(6, 1, 8, 8, dtype=torch.uint8), torch.tensor([0, 0, 0, 0, 1, 1]), ["a", "b"])
    summary = gallery.summarize({"train": train, "test": test})
    assert summary.counts == {"train": [20, 20], "test": [4, 2]}
    assert summary.stats_split == "train"
    assert summary.mean[0] == pytest.approx(train.images.double().mean().item() / 255)
    assert summary.class_means.shape == (2, 1, 8, 8)

    grid = gallery.sample_grid(train, "train", per_class=3, seed=1)
    assert [len(picks) for picks in grid.indices] == [3, 3]
    for class_index in range(2):
        assert torch.equal(grid.images[class_index], train.images[grid.indices[class_index]])
        assert (grid.labels[class_index] == class_index).all()
    assert gallery.sample_grid(train, "train", 3, seed=1).indices == grid.indices


# --- zip upload -----------------------------------------------------------------------------------------


def _png(value: int = 128, size: int = 8, mode: str = "L") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, (size, size), value if mode == "L" else (value, 0, 0)).save(buffer, format="PNG")
    return buffer.getvalue()


def _zip(members: dict[str, bytes], compression=zipfile.ZIP_DEFLATED) -> bytes:
    """The same members always make the same bytes (a fixed date: a zip made a second later has another digest,
    and an upload's name follows its digest)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        for name, data in members.items():
            archive.writestr(zipfile.ZipInfo(name, date_time=(2026, 1, 1, 0, 0, 0)), data, compress_type=compression)
    return buffer.getvalue()


def test_zip_of_class_folders_becomes_an_image_folder():
    data = _zip({
        "cats/1.png": _png(10), "cats/2.png": _png(20), "dogs/a.png": _png(30, mode="RGB"),
        "dogs/notes.txt": b"hello", "README.md": b"# my data", "dogs/broken.png": b"not really a png",
        "__MACOSX/cats/._1.png": b"\x00\x05", "cats/.DS_Store": b"\x00",
    })
    result = import_zip(data, "pets", register=False)
    assert result.class_counts == {"cats": 2, "dogs": 1}
    assert result.images == 3
    assert result.skipped_non_image == 2 and result.skipped_unreadable == 1  # notes.txt, README.md; broken.png
    assert result.skipped_system == 2
    assert result.root == uploads_dir() / "pets"
    assert sorted(p.relative_to(result.root).as_posix() for p in result.root.rglob("*.png")) == [
        "cats/1.png", "cats/2.png", "dogs/a.png"]
    assert (result.root / "cats" / "1.png").read_bytes() == _png(10)
    assert "2 non-image file(s), 1 file(s) that could not be read as images" in result.summary()


@pytest.mark.parametrize("names, code_page", [
    (["кошки", "собаки"], "cp866"),  # Cyrillic from a Russian Windows Explorer
    (["正常组织", "肿瘤组织"], "gbk"),  # Chinese from a Chinese Windows
    (["ねこ写真", "いぬ写真"], "cp932"),  # Japanese
    (["陽性", "陰性"], "cp932"),  # two kanji each: read as CP866 they were Cyrillic with Latin letters inside, ЧzРл
    (["café_crème", "pâtisserie"], "cp850"),  # accented Latin from a Western European Windows
])
def test_zip_names_in_a_windows_code_page_are_decoded(names, code_page):
    members = {f"{name}/scan{i}.png".encode(code_page): _png(10 * i) for i, name in enumerate(names * 2)}
    result = import_zip(zip_with_raw_names(members), "legacy_names", register=False)
    assert result.class_counts == {name: 2 for name in names}
    assert sorted(p.name for p in result.root.iterdir()) == sorted(names)
    # CP437 and CP850 share their accented letters: either reads these names right
    assert all(name.encode(code_page).decode(result.name_encoding) == name for name in names)
    assert "not UTF-8" in result.summary()


def test_utf8_zip_names_without_the_flag_and_decomposed_accents_read_as_utf8():
    # macOS writes UTF-8 without the flag, and decomposed accents (e + U+0301): "café" must not become "caf├⌐"
    members = {"café/1.png".encode(): _png(1), "cafe\u0301/2.png".encode(): _png(2), "🐱 chats/3.png".encode(): _png(3),
               "🐶 chiens/4.png".encode(): _png(4)}
    result = import_zip(zip_with_raw_names(members), "mac_names", register=False)
    assert result.class_counts == {"café": 2, "🐱 chats": 1, "🐶 chiens": 1}
    assert result.name_encoding is None


def test_flagged_utf8_names_and_a_chosen_code_page():
    flagged = _zip({"正常/1.png": _png(1), "Опухоль/2.png": _png(2)})  # zipfile sets the UTF-8 flag
    assert import_zip(flagged, "flagged", register=False).class_counts == {"Опухоль": 1, "正常": 1}
    korean = {"고양이/1.png".encode("cp949"): _png(1), "강아지/2.png".encode("cp949"): _png(2)}
    result = import_zip(zip_with_raw_names(korean), "korean", register=False, name_encoding="cp949")
    assert result.class_counts == {"강아지": 1, "고양이": 1}
    with pytest.raises(DataError, match="Unknown file-name encoding 'klingon'"):
        import_zip(zip_with_raw_names(korean), "korean2", register=False, name_encoding="klingon")
    # Flagged names are UTF-8 but may be decomposed (a Mac's folders zipped by 7-Zip or Python): one class
    decomposed = _zip({"Ödem/1.png": _png(1), "O\u0308dem/2.png": _png(2), "normal/3.png": _png(3)})
    assert import_zip(decomposed, "flagged_nfd", register=False).class_counts == {"normal": 1, "Ödem": 2}


def test_wrapper_folders_go_even_two_deep_or_beside_a_cover_picture():
    # scalableminds/webknossos#6033, luxonis/modelconverter#211: "this zip has 1 (pets)" for both before
    cover = _zip({"flowers/cover.png": _png(9), "flowers/rose/1.png": _png(1), "flowers/tulip/2.png": _png(2)})
    result = import_zip(cover, "cover", register=False)
    assert result.class_counts == {"rose": 1, "tulip": 1} and result.skipped_outside_classes == 1
    twice = _zip({"pets/pets/cat/1.png": _png(1), "pets/pets/dog/2.png": _png(2)})
    assert import_zip(twice, "twice", register=False).class_counts == {"cat": 1, "dog": 1}
    only_train = _zip({"mydata/train/cat/1.png": _png(1), "mydata/train/dog/2.png": _png(2)})
    assert import_zip(only_train, "only_train", register=False).class_counts == {"cat": 1, "dog": 1}


def test_long_names_are_cut_in_bytes_and_keep_their_ending():
    # File systems count a name's bytes (255 on ext4): 120 Chinese characters are 360 bytes, which failed with
    # "File name too long" (glomatico/gamdl#335); nested folders joined into one file name grow as long.
    long = "とても長いクラスの名前" * 10
    members = {f"{long}/{long}.png": _png(1), f"犬/{'深い' * 30}/{'長い名前' * 30}.png": _png(2)}
    result = import_zip(_zip(members), "long_names", register=False)
    (cut, _), (dog, _) = sorted(result.class_counts.items(), key=lambda item: -len(item[0]))
    assert long.startswith(cut) and len(cut.encode()) <= zipfolder.MAX_NAME_BYTES and dog == "犬"
    files = list(result.root.rglob("*.png"))
    assert len(files) == 2 and all(len(p.name.encode()) <= zipfolder.MAX_NAME_BYTES for p in files)


def _encoded(fmt: str, colour=(200, 30, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (12, 12), colour).save(buffer, format=fmt)
    return buffer.getvalue()


def test_zip_images_count_by_content_not_by_name():
    data = _zip({"cat/a.jfif": _encoded("JPEG"), "cat/b.JPE": _encoded("JPEG"), "dog/IMG_1.jpg": _encoded("HEIF"),
                 "dog/IMG_2": _encoded("PNG"), "dog/IMG_3.heic": _encoded("HEIF"), "dog/fake.jpg": b"<html>",
                 "dog/list.csv": b"a,b"})
    result = import_zip(data, "by_content", register=False)
    assert result.class_counts == {"cat": 2, "dog": 3}
    assert result.skipped_non_image == 1 and result.skipped_unreadable == 1  # list.csv by name, fake.jpg by content
    big = _zip({"cat/a.png": _png(1), "cat/b.png": _png(2), "dog/c.png": _png(3),
                "dog/huge.png": png_bomb(9_000)})  # 81 megapixels in a few kB
    result = import_zip(big, "with_a_huge_one", register=False)
    assert result.skipped_unreadable == 1 and result.skipped_non_image == 0
    assert result.skipped_examples == ["dog/huge.png (too large to read: over 40 megapixels)"]


def test_zip_with_split_folders_keeps_them_as_splits(tiny_data_dir):
    members = {}
    for split, count in (("Train", 10), ("test", 3)):
        for name, value in (("кошка", 20), ("dog", 200)):
            for i in range(count):
                members[f"pets/{split}/{name}/{i}.png"] = _png(value + i)
    members["pets/README.txt"] = b"from Kaggle"
    result = import_zip(_zip(members), "kaggle_pets")
    assert result.class_counts == {"dog": 13, "кошка": 13}
    assert sorted(p.relative_to(result.root).as_posix() for p in result.root.iterdir()) == ["Train", "test"]
    assert result.info.class_names == ("dog", "кошка") and "split folders found (train, test)" in result.info.description
    from cnn_core import data

    assert len(data.load_split("kaggle_pets", "test")) == 6  # the test folder, not a carved split
    mixed = _zip({"train/cat/1.png": _png(1), "train/dog/2.png": _png(2), "cat/3.png": _png(3), "dog/4.png": _png(4)})
    with pytest.raises(DataError, match="mixes split folders"):
        import_zip(mixed, "mixed_layout", register=False)
    vehicles = _zip({f"{name}/{i}.png": _png(60 * number + i) for number, name in enumerate(("bus", "car", "train"))
                     for i in range(4)})  # a class named train, flat beside the others (CIFAR-100 has one)
    assert import_zip(vehicles, "vehicles", register=False).class_counts == {"bus": 4, "car": 4, "train": 4}


def test_zip_with_one_wrapper_folder_and_nested_files():
    data = _zip({"mydata/yes/x.png": _png(), "mydata/yes/sub/x.png": _png(1), "mydata/no/y.jpg": _jpeg()})
    result = import_zip(data, "wrapped", register=False)
    assert result.class_counts == {"no": 1, "yes": 2}
    assert (result.root / "yes" / "sub__x.png").is_file()


def test_shift_jis_names_whose_second_byte_is_a_backslash_stay_whole():
    # "ソ" is 83 5C and "表" 95 5C in Shift JIS: read byte by byte, 5C is a folder separator (rubyzip#308)
    names = ["ソフト", "ソース", "表示"]
    members = {f"{name}/scan{i}.png".encode("cp932"): _png(10 * i) for i, name in enumerate(names * 2)}
    result = import_zip(zip_with_raw_names(members), "sjis_names", register=False)
    assert result.name_encoding == "cp932"
    assert result.class_counts == {name: 2 for name in names}
    assert sorted(p.name for p in result.root.iterdir()) == sorted(names)


def _zip_with_entries(entries: list[tuple[str, bytes | None]]) -> bytes:
    """A zip with these member names as written (None: a folder entry with the DOS directory attribute, as
    some Windows tools write them, backslashes and all)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in entries:
            info = zipfile.ZipInfo(name)
            if data is None:
                info.external_attr = 0x10
            archive.writestr(info, data or b"")
    return buffer.getvalue()


def test_windows_folder_entries_with_backslashes_are_folders():
    entries = [("mydata\\", None), ("mydata\\cat\\", None), ("mydata\\cat\\1.png", _png(1)),
               ("mydata\\cat\\2.png", _png(2)), ("mydata\\dog\\", None), ("mydata\\dog\\1.png", _png(3))]
    result = import_zip(_zip_with_entries(entries), "windows_entries", register=False)
    assert result.class_counts == {"cat": 2, "dog": 1} and result.skipped == 0
    split = [("train\\", None), ("train\\cat\\", None), ("train\\cat\\1.png", _png(1)), ("train\\dog\\1.png", _png(2))]
    result = import_zip(_zip_with_entries(split), "windows_split", register=False)
    assert result.class_counts == {"cat": 1, "dog": 1} and result.skipped == 0


def _kaggle_brain_tumor_members() -> dict[str, bytes]:
    """Kaggle's "Brain MRI Images for Brain Tumor Detection": yes/, no/ and brain_tumor_dataset/{yes,no} again."""
    members = {}
    for top in ("", "brain_tumor_dataset/"):
        for name, value in (("yes", 200), ("no", 20)):
            for i in range(3):
                members[f"{top}{name}/Y{i}.jpg" if name == "yes" else f"{top}{name}/N{i}.jpg"] = _png(value + i)
    return members


def test_a_second_copy_of_the_classes_is_left_out_and_said(tiny_data_dir):
    result = import_zip(_zip(_kaggle_brain_tumor_members()), "brain_tumor")
    assert result.class_counts == {"no": 3, "yes": 3}
    assert result.skipped_copies == 6 and "brain_tumor_dataset/, which repeats the folders" in result.summary()
    assert result.info.class_names == ("no", "yes")
    # Kaggle's chest X-rays: chest_xray/{train,test}/... and chest_xray/chest_xray/{train,test}/... again
    members = {f"chest_xray/{copy}{split}/{cls}/{i}.jpeg": _png(i + (100 if cls == "PNEUMONIA" else 0))
               for copy in ("", "chest_xray/") for split in ("train", "test") for cls in ("NORMAL", "PNEUMONIA")
               for i in range(4)}
    members["__MACOSX/chest_xray/._x"] = b"\x00"
    result = import_zip(_zip(members), "chest_xray")
    assert result.class_counts == {"NORMAL": 8, "PNEUMONIA": 8} and result.copies == ["chest_xray"]
    assert result.info.class_names == ("NORMAL", "PNEUMONIA")


def test_the_same_class_spelt_differently_in_split_folders_is_one_class(tiny_data_dir):
    members = {f"train/{cls}/{i}.png": _png(i + value) for cls, value in (("Normal", 0), ("Pneumonia", 100))
               for i in range(6)}
    members.update({f"test/{cls}/{i}.png": _png(i + value) for cls, value in (("NORMAL", 0), ("PNEUMONIA", 100))
                    for i in range(2)})
    result = import_zip(_zip(members), "case_splits")
    assert result.class_counts == {"Normal": 8, "Pneumonia": 8}
    assert result.info.class_names == ("Normal", "Pneumonia")
    untrained = {**members, "test/Covid/1.png": _png(7)}
    with pytest.raises(DataError, match=r"no train/ folder of the same name \(Covid in the test folder\)"):
        import_zip(_zip(untrained), "untrained_class", register=False)
    # a train folder of unreadable files only: refused before the earlier upload of the name is replaced
    unreadable = {**members, "train/Covid/1.png": b"not a png", "test/Covid/1.png": _png(7)}
    with pytest.raises(DataError, match=r"\(Covid in the test folder\)"):
        import_zip(_zip(unreadable), "case_splits")
    assert result.root.is_dir() and sorted(p.name for p in (result.root / "test").iterdir()) == ["NORMAL", "PNEUMONIA"]


def test_unlabelled_images_in_a_split_folder_are_not_a_class():
    members = {"train/cat/1.png": _png(1), "train/cat/2.png": _png(2), "train/dog/1.png": _png(3),
               "train/dog/2.png": _png(4), "test/1.png": _png(5), "test/2.png": _png(6)}
    result = import_zip(_zip(members), "unlabelled_test", register=False)
    assert result.class_counts == {"cat": 2, "dog": 2} and result.skipped_outside_classes == 2
    assert "test/1.png (directly in test/, unlabelled)" in result.skipped_examples


def test_a_zip_whose_file_names_carry_the_classes_gets_class_folders_by_name(tiny_data_dir):
    # Kaggle's "Dogs vs. Cats" zipped: dogs-vs-cats/train/{cat,dog}.N.jpg and an unlabelled test1/. It became two
    # classes, "train" and "test1", each mixing both animals.
    members = {f"dogs-vs-cats/train/{animal}.{i}.png": _png(value + i)
               for animal, value in (("cat", 10), ("dog", 200)) for i in range(6)}
    members |= {f"dogs-vs-cats/test1/{i + 1}.png": _png(100) for i in range(3)}
    result = import_zip(_zip(members), "dogs_cats")
    assert result.class_counts == {"cat": 6, "dog": 6} and result.unlabelled == {"in test1/": 3}
    assert (result.root / "train" / "dog" / "dog.5.png").read_bytes() == _png(205)
    assert result.summary() == ("12 images in 2 classes; skipped 3 image(s) in test1/ with no class in their names or "
                                "a label table (as in a Kaggle test set); with no class folders, the classes come from "
                                "the file names (cat.0.png: cat, ...).")
    assert "test1/1.png (no class folder, and no class in its name or table)" in result.skipped_examples
    assert result.info.class_names == ("cat", "dog") and "split folders found (train)" in result.info.layout
    # everything at the top of the zip, as a phone's share sheet zips a selection
    flat = import_zip(_zip({f"{kind} ({i}).png": _png(i) for kind in ("benign", "malignant") for i in range(5)}),
                      "ultrasound", register=False)
    assert flat.class_counts == {"benign": 5, "malignant": 5}
    with pytest.raises(DataError, match="No images found in class folders"):  # a camera's names carry no class
        import_zip(_zip({f"IMG_{i:04d}.png": _png(i) for i in range(10)}), "camera_roll", register=False)


def test_a_zip_with_a_label_table_gets_class_folders_by_its_class_column(tiny_data_dir):
    # APTOS 2019 (RetinaMNIST-like grading): train.csv (id_code, diagnosis) beside train_images/<id_code>.png,
    # and an unlabelled test_images/ with test.csv (id_code only).
    ids = [f"{i:012x}" for i in range(12)]
    members = {"aptos/train.csv": ("id_code,diagnosis\n" + "".join(f"{n},{i % 2}\n" for i, n in enumerate(ids[:10])))
               .encode(), "aptos/test.csv": ("id_code\n" + "\n".join(ids[10:])).encode()}
    members |= {f"aptos/train_images/{n}.png": _png(i) for i, n in enumerate(ids[:10])}
    members |= {f"aptos/test_images/{n}.png": _png(i) for i, n in enumerate(ids[10:])}
    result = import_zip(_zip(members), "aptos")
    assert result.class_counts == {"0": 5, "1": 5} and result.unlabelled == {"in test_images/": 2}
    assert result.classes_from == "the label table aptos/train.csv (id_code → diagnosis)"
    assert (result.root / "train_images" / "1" / f"{ids[3]}.png").read_bytes() == _png(3)
    assert result.info.class_names == ("0", "1")
    # the table that gave the classes is no skipped file, and the data set still says where its classes came from
    assert result.skipped_non_image == 1 and not any("train.csv" in text for text in result.skipped_examples)
    members["aptos/deeper/notes.csv"] = b"id_code,diagnosis\n" + b"".join(f"{n},7\n".encode() for n in ids)
    assert import_zip(_zip(members), "aptos_deeper", register=False).class_counts == {"0": 5, "1": 5}  # the top's
    assert "whose classes come from the label table aptos/train.csv (id_code → diagnosis)" in result.info.description
    from cnn_core.data.folders import scan_folder

    restarted = scan_folder(result.root)  # read again from disk, as after a server restart
    assert restarted.classes_from == "the label table aptos/train.csv (id_code → diagnosis)"


def test_a_wrapper_inside_each_split_folder_of_a_zip_is_not_a_class(tiny_data_dir):
    # Kaggle's "Cat and Dog": training_set/training_set/cats/cat.1.jpg, test_set/test_set/dogs/dog.1.jpg
    members = {f"{split}/{split}/{kind}s/{kind}.{i}.png": _png(i) for split in ("training_set", "test_set")
               for kind in ("cat", "dog") for i in range(3)}
    result = import_zip(_zip(members), "cat_and_dog", register=False)
    assert result.class_counts == {"cats": 6, "dogs": 6}
    assert sorted(path.relative_to(result.root).parts[:2] for path in result.root.rglob("*.png"))[0] == (
        "test_set", "cats")


def test_a_flat_folder_beside_split_folders_of_a_zip_is_left_out_as_unlabelled(tiny_data_dir):
    # The Intel Image Classification set's zip: seg_train/seg_train/<class>/, seg_test/seg_test/<class>/ and
    # seg_pred/seg_pred/*.jpg, which became a class beside seg_test and seg_train
    members = {f"{split}/{split}/{kind}/{i}.png": _png(i) for split in ("seg_train", "seg_test")
               for kind in ("forest", "sea") for i in range(3)}
    members.update({f"seg_pred/seg_pred/{i}.png": _png(i) for i in range(4)})
    result = import_zip(_zip(members), "intel", register=False)
    assert result.class_counts == {"forest": 6, "sea": 6} and result.unlabelled == {"in seg_pred/": 4}
    trainset = {f"{split}/{kind}/{i}.png": _png(i) for split in ("trainset", "testset")
                for kind in ("cat", "dog") for i in range(3)}
    result = import_zip(_zip(trainset), "sets", register=False)
    assert result.class_counts == {"cat": 6, "dog": 6}  # not two classes, testset and trainset
    assert sorted(path.relative_to(result.root).parts[0] for path in result.root.glob("*/*/")) == [
        "testset", "testset", "trainset", "trainset"]


def test_segmentation_masks_in_a_zip_are_skipped(tiny_data_dir):
    # Dataset_BUSI_with_GT.zip: benign/benign (1).png beside benign (1)_mask.png
    members = {f"Dataset_BUSI_with_GT/{kind}/{kind} ({i}){mask}.png": _png(i) for kind in ("benign", "normal")
               for i in range(1, 4) for mask in ("", "_mask")}
    result = import_zip(_zip(members), "busi", register=False)
    assert result.class_counts == {"benign": 3, "normal": 3} and result.skipped_masks == 6
    assert "6 segmentation mask(s) beside their images" in result.summary()


def test_a_cover_picture_beside_the_wrapper_folder_does_not_stop_it(tiny_data_dir):
    # pets.zip: pets/{cat,dog}/*.png and a cover.png at the top was "1 class (pets)"
    members = {f"pets/{kind}/{i}.png": _png(i) for kind in ("cat", "dog") for i in range(6)}
    members["cover.png"] = _png(99)
    result = import_zip(_zip(members), "covered", register=False)
    assert result.class_counts == {"cat": 6, "dog": 6} and result.skipped_outside_classes == 1


def test_a_damaged_member_is_skipped_and_counted_not_the_whole_zip(tiny_data_dir):
    # one image's bytes damaged in transfer ("Bad CRC-32"; a garbled deflate stream): the upload was refused whole
    members = {f"{kind}/{i}.png": _png(i + (40 if kind == "dog" else 0)) for kind in ("cat", "dog") for i in range(4)}
    for compression in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        payload = bytearray(_zip(members, compression))
        with zipfile.ZipFile(io.BytesIO(bytes(payload))) as archive:
            info = archive.getinfo("cat/2.png")
        start = info.header_offset + 30 + len(info.filename) + len(info.extra)  # the member's data
        payload[start + info.compress_size // 2] ^= 0xFF
        result = import_zip(bytes(payload), f"damaged_{compression}", register=False)
        assert result.class_counts == {"cat": 3, "dog": 4} and result.skipped_unreadable == 1
        assert any("cat/2.png" in example and "damaged in the zip" in example for example in result.skipped_examples)


def test_class_folders_that_clean_to_one_name_stay_apart():
    result = import_zip(_zip({"cat/1.png": _png(1), "cat./2.png": _png(2), "cat?/3.png": _png(3), "dog/4.png": _png(4)}),
                        "clean_names", register=False)
    assert result.class_counts == {"cat": 1, "cat_2": 1, "cat_3": 1, "dog": 1}
    assert (result.root / "cat" / "1.png").read_bytes() == _png(1)  # the folder already safe keeps its name
    # one name per folder in every split: test/cat joins train/cat, never train/cat? (review)
    members = {"train/cat?/1.png": _png(1), "train/cat/2.png": _png(2), "train/dog/3.png": _png(3),
               "test/cat/4.png": _png(4), "test/dog/5.png": _png(5)}
    result = import_zip(_zip(members), "clean_split_names", register=False)
    assert (result.root / "test" / "cat" / "4.png").is_file() and (result.root / "train" / "cat" / "2.png").is_file()
    assert (result.root / "train" / "cat_2" / "1.png").read_bytes() == _png(1)


def _jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (1, 2, 3)).save(buffer, format="JPEG")
    return buffer.getvalue()


def test_reimporting_a_name_replaces_the_old_folder():
    import_zip(_zip({"a/1.png": _png(), "b/1.png": _png(), "c/1.png": _png()}), "again", register=False)
    result = import_zip(_zip({"a/1.png": _png(), "b/2.png": _png()}), "again", register=False)
    assert sorted(p.name for p in result.root.iterdir()) == ["a", "b"]


@pytest.mark.parametrize("evil", ["../evil.png", "cats/../../evil.png", "..\\evil.png"])
def test_path_traversal_is_refused_and_nothing_is_written(evil, tmp_path):
    data = _zip({"cats/1.png": _png(), "dogs/1.png": _png(), evil: _png()})
    with pytest.raises(DataError, match="path traversal"):
        import_zip(data, "evil", register=False)
    assert not (uploads_dir() / "evil").exists()
    assert not (uploads_dir().parent / "evil.png").exists()
    assert [p.name for p in uploads_dir().iterdir() if p.name.startswith(".evil")] == []


@pytest.mark.parametrize("absolute", ["/tmp/evil.png", "C:/evil.png", "\\evil.png"])
def test_absolute_paths_are_refused(absolute):
    data = _zip({"cats/1.png": _png(), "dogs/1.png": _png(), absolute: _png()})
    with pytest.raises(DataError, match="absolute path"):
        import_zip(data, "absolute", register=False)


def test_symlinks_are_refused():
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("cats/1.png", _png())
        archive.writestr("dogs/1.png", _png())
        link = zipfile.ZipInfo("dogs/link.png")
        link.external_attr = (0o120777 << 16)
        archive.writestr(link, "/etc/passwd")
    with pytest.raises(DataError, match="symbolic link"):
        import_zip(buffer.getvalue(), "links", register=False)


def test_too_many_files_is_refused():
    data = _zip({f"{cls}/{i}.png": _png() for cls in "ab" for i in range(6)})
    with pytest.raises(DataError, match="12 files, more than the 10 allowed"):
        import_zip(data, "many", limits=ZipLimits(max_files=10), register=False)


def test_too_large_uncompressed_is_refused_as_a_zip_bomb():
    bomb = b"\0" * (3 * 2**20)  # 3 MiB of zeros compress to a few KiB
    data = _zip({"a/1.png": _png(), "b/1.png": bomb})
    assert len(data) < 50_000
    with pytest.raises(DataError, match="zip bomb"):
        import_zip(data, "bomb", limits=ZipLimits(max_member_bytes=2**20), register=False)
    with pytest.raises(DataError, match="zip bomb"):
        import_zip(data, "bomb", limits=ZipLimits(max_total_bytes=2**20), register=False)


def test_a_zip_that_understates_its_sizes_is_refused():
    """The declared sizes pass the checks; the bytes actually unpacked must not exceed them."""
    data = _zip({"a/1.png": _png(), "b/1.png": _png(), "b/2.png": _png() + b"\0" * 100_000})
    lying = _patch_uncompressed_size(data, "b/2.png", 100)
    with zipfile.ZipFile(io.BytesIO(lying)) as archive:
        assert archive.getinfo("b/2.png").file_size == 100
    result = import_zip(lying, "liar", register=False)  # zipfile stops at the declared size: a bad CRC-32
    assert result.class_counts == {"a": 1, "b": 1} and result.skipped_unreadable == 1
    assert not (result.root / "b" / "2.png").exists()


def _patch_uncompressed_size(data: bytes, member: str, size: int) -> bytes:
    """Rewrite a member's uncompressed size in its local header and its central-directory record."""
    patched = bytearray(data)
    encoded = member.encode()
    for signature, size_offset, name_offset in ((b"PK\x03\x04", 22, 30), (b"PK\x01\x02", 24, 46)):
        at = patched.find(signature)
        while at >= 0:
            if patched[at + name_offset : at + name_offset + len(encoded)] == encoded:
                struct.pack_into("<I", patched, at + size_offset, size)
            at = patched.find(signature, at + 1)
    return bytes(patched)


def test_a_single_class_is_refused_and_keeps_an_earlier_upload():
    import_zip(_zip({"a/1.png": _png(), "b/1.png": _png()}), "single", register=False)
    with pytest.raises(DataError, match="at least two class folders.*only"):
        import_zip(_zip({"only/1.png": _png(), "only/2.png": _png()}), "single", register=False)
    assert sorted(p.name for p in (uploads_dir() / "single").iterdir()) == ["a", "b"]
    assert [p.name for p in uploads_dir().iterdir() if p.name.startswith(".single")] == []


def test_no_images_is_refused_with_what_was_skipped():
    with pytest.raises(DataError, match=r"No images found.*2 file\(s\) were skipped"):
        import_zip(_zip({"a/notes.txt": b"x", "b/data.csv": b"1,2"}), "noimages", register=False)
    with pytest.raises(DataError, match="no readable images"):
        import_zip(_zip({"a/1.png": b"fake", "b/2.png": b"fake"}), "fakeimages", register=False)


def test_images_outside_class_folders_are_counted():
    data = _zip({"loose.png": _png(), "a/1.png": _png(), "b/1.png": _png()})
    result = import_zip(data, "loose", register=False)
    assert result.skipped_outside_classes == 1 and result.images == 2


def test_not_a_zip_and_bad_names():
    with pytest.raises(DataError, match="not a readable zip"):
        import_zip(b"PK but not really", "junk", register=False)
    with pytest.raises(DataError, match="not a valid data set name"):
        import_zip(_zip({"a/1.png": _png()}), "../escape", register=False)


def test_dataset_name_for_upload_file_names():
    assert dataset_name_for("My X-rays.zip") == "my_x_rays"
    assert dataset_name_for("C:\\Users\\me\\Péché 2.ZIP") == "peche_2"
    assert dataset_name_for("2024 scans.zip") == "upload_2024_scans"
    with pytest.raises(DataError):
        dataset_name_for("!!!.zip")


# --- with the real registry on the tiny data sets ------------------------------------------------------


def test_gallery_on_tiny_registry_data(tiny_data_dir):
    from cnn_core import data

    info = data.get_dataset_info("mnist")
    splits = {split: data.load_split("mnist", split) for split in info.splits}
    summary = gallery.summarize(splits)
    assert summary.counts["test"] == [6] * 10
    assert sum(summary.counts["train"]) + sum(summary.counts["val"]) == 240
    mean, std = data.channel_stats("mnist")
    assert summary.mean == pytest.approx(mean) and summary.std == pytest.approx(std)
    # Class k is a bright block in cell k of a 4×3 grid: its average image is brightest there.
    row, col = divmod(3, 4)
    block = summary.class_means[3, 0, 2 + row * 9 : 8 + row * 9, 1 + col * 7 : 7 + col * 7].float().mean()
    assert block > 150 > summary.class_means[3, 0].float().mean()
    grid = gallery.sample_grid(splits["test"], "test", per_class=4, seed=3)
    assert all(len(picks) == 4 for picks in grid.indices)
    assert all((labels == k).all() for k, labels in enumerate(grid.labels))


def test_gallery_on_multilabel_chestmnist(tiny_data_dir):
    from cnn_core import data

    train = data.load_split("chestmnist", "train")
    assert gallery.is_multi_label(train.labels)
    summary = gallery.summarize({"train": train})
    assert summary.counts["train"] == train.labels.sum(dim=0).tolist()
    grid = gallery.sample_grid(train, "train", per_class=2, seed=0)
    for label, labels in enumerate(grid.labels):
        assert all(row[label] == 1 for row in labels)


def test_modality_for_every_builtin_set():
    from cnn_core import data

    assert set(gallery.MEDMNIST_MODALITIES) == set(data.MEDMNIST_2D_FLAGS)
    assert gallery.modality(data.get_dataset_info("pathmnist_64")).startswith("Colon pathology")
    assert "handwriting" in gallery.modality(data.get_dataset_info("mnist"))


def test_imported_zip_is_registered_and_loads(tiny_data_dir):
    from cnn_core import data

    members = {f"{cls}/{i}.png": _png(40 * i + (100 if cls == "bright" else 0)) for cls in ("bright", "dark")
               for i in range(5)}
    result = import_zip(_zip(members), "my_upload")
    assert result.info is not None and result.info.class_names == ("bright", "dark")
    assert data.get_dataset_info("my_upload").root == str(result.root)
    loaded = data.load_split("my_upload", "train")
    assert loaded.images.shape[1:] == (1, data.FOLDER_IMAGE_SIZE, data.FOLDER_IMAGE_SIZE)
    again = import_zip(_zip(members), "my_upload")  # an earlier upload may be replaced
    assert again.images == 10


@pytest.mark.parametrize("taken", ["mnist", "pathmnist_64", "scans"])
def test_zip_cannot_take_a_builtin_or_data_folder_name(tiny_data_dir, taken):
    with pytest.raises(DataError, match="choose another name"):
        import_zip(_zip({"a/1.png": _png(), "b/1.png": _png()}), taken)
    assert not (uploads_dir() / taken).exists()
    free = available_name(taken)
    assert free == f"{taken}_upload"
    assert import_zip(_zip({"a/1.png": _png(), "b/1.png": _png()}), free).info.name == free
    assert available_name("fresh_name") == "fresh_name"


def _two_class_zip(value: int = 100) -> bytes:
    return _zip({f"{cls}/{i}.png": _png(value + i) for cls in ("a", "b") for i in range(3)})


def test_an_owners_upload_is_listed_for_that_owner_only(tiny_data_dir):
    from cnn_core import data
    from cnn_core.data.uploads import upload_root

    result = import_zip(_two_class_zip(), "pets", owner="alice")
    assert result.root == upload_root("pets", "alice")
    assert result.root.parent.parent == uploads_dir() and "alice" not in str(result.root)  # a digest names it
    assert data.folder_owner("pets") == "alice"
    assert "pets" in [info.name for info in data.list_datasets(owner="alice")]
    assert "pets" not in [info.name for info in data.list_datasets(owner="bob")]
    assert "pets" not in [info.name for info in data.list_datasets()]
    assert "scans" in [info.name for info in data.list_datasets(owner="bob")]  # shared folders stay shared
    assert len(data.load_split("pets", "train").labels) > 0  # a run started by its owner finds it by name
    with pytest.raises(DataError) as unknown:
        data.get_dataset_info("no_such_set")
    assert "pets" not in str(unknown.value)  # the list of known names does not give it away


def test_another_owners_upload_keeps_its_name_and_its_files(tiny_data_dir):
    from cnn_core import data

    first = import_zip(_two_class_zip(100), "pets", owner="alice")
    before = sorted((p.relative_to(first.root).as_posix(), p.read_bytes()) for p in first.root.rglob("*.png"))
    with pytest.raises(DataError, match="another user's upload"):
        import_zip(_two_class_zip(200), "pets", owner="bob")
    with pytest.raises(DataError, match="another user's upload"):
        import_zip(_two_class_zip(200), "pets")  # nor an upload without an owner
    bobs_name = available_name("pets", "bob")
    bobs = import_zip(_two_class_zip(200), bobs_name, owner="bob")
    assert {info.name for info in data.list_datasets(owner="bob") if info.family == "folder"} == {"scans", bobs_name}
    after = sorted((p.relative_to(first.root).as_posix(), p.read_bytes()) for p in first.root.rglob("*.png"))
    assert after == before and bobs.root != first.root
    with pytest.raises(DataError, match="another user's"):
        data.register_image_folder("pets", bobs.root, owner="bob")
    again = import_zip(_zip({f"{cls}/1.png": _png() for cls in "xyz"}), "pets", owner="alice")
    assert again.info.class_names == ("x", "y", "z") and data.folder_owner("pets") == "alice"


def test_the_name_an_upload_gets_never_tells_of_another_students_upload(tiny_data_dir):
    # Bob's pets.zip became "pets_upload" because Alice had uploaded a pets.zip: the name told Bob of an upload
    # he must not know of. Every owner's names now carry the owner's tag, shown without it.
    from cnn_core import data

    before = available_name("pets", "bob")
    alices = import_zip(_two_class_zip(100), available_name("pets", "alice"), owner="alice")
    bobs = import_zip(_two_class_zip(200), available_name("pets", "bob"), owner="bob")
    assert bobs.info.name == before != alices.info.name
    assert data.shown_name(bobs.info.name) == data.shown_name(alices.info.name) == "pets"
    assert bobs.info.title == alices.info.title == "pets (your upload)"  # beside a data folder "pets (image folder)"
    assert bobs.root.parent != alices.root.parent and "bob" not in bobs.info.name  # a digest, not the id
    assert {info.name for info in data.list_datasets(owner="bob") if info.family == "folder"} == {"scans", before}
    assert available_name("scans", "bob") == owned_name("scans", "bob")  # a data folder's name: no collision
    assert available_name("pets") == "pets"  # without an owner (the CLI) names stay plain
    import shlex

    from cnn_core.cli import build_parser, config_from_args
    from cnn_core.runs import check_run_config, cli_command
    from cnn_core.training import TrainConfig

    config = TrainConfig(dataset=bobs.info.name, epochs=1, batch_size=2)
    resolved, info = check_run_config(config)
    command = cli_command(config, resolved, info.family, info.task)  # the card's "Made by": runnable as it is
    assert f"--data '$CNN_CACHE_DIR/uploads/{bobs.root.parent.name}/{bobs.info.name}'" in command
    again = config_from_args(build_parser().parse_args(shlex.split(command)[3:]))
    assert data.get_dataset_info(again.dataset).class_names == bobs.info.class_names
    assert data.shown_name("scans") == "scans" and data.shown_name("x@12345") == "x@12345"


def test_another_zip_under_an_upload_name_of_ones_own_gets_a_new_name(tiny_data_dir):
    # A student uploaded cats.zip, trained on it, then uploaded a different cats.zip: the new images silently
    # replaced the old ones, and Predict judged the old checkpoint on them ("true label: zebra").
    from cnn_core import data
    from cnn_core.data.uploads import zip_digest

    first_zip, other_zip = _two_class_zip(100), _zip({f"{cls}/1.png": _png() for cls in ("ant", "bee", "zebra")})
    first = import_zip(first_zip, available_name("cats", "ana", zip_digest(first_zip)), owner="ana")
    tag = first.info.name.removeprefix("cats")
    assert first.info.name == owned_name("cats", "ana") and tag.startswith("@")
    assert available_name("cats", "ana", zip_digest(first_zip)) == "cats" + tag  # the same zip again: the same set
    second_name = available_name("cats", "ana", zip_digest(other_zip))
    assert second_name == "cats_2" + tag and data.shown_name(second_name) == "cats_2"
    second = import_zip(other_zip, second_name, owner="ana")
    assert first.info.class_names == ("a", "b") and second.info.class_names == ("ant", "bee", "zebra")
    assert sorted(p.name for p in first.root.rglob("*.png")) and first.root.is_dir()
    assert available_name("cats", "ana", zip_digest(_two_class_zip(300))) == "cats_3" + tag


def test_an_owners_uploads_stay_within_a_quota_and_can_be_removed(tiny_data_dir):
    # 453 kB of zipped single-colour BMPs unpacked to 444 MB, and a student could repeat it under new names
    # until the class server's disk was full; there was no way to remove an upload.
    from cnn_core import data
    from cnn_core.data.uploads import owner_upload_bytes, remove_upload

    pets = owned_name("pets", "uma")
    first = import_zip(_two_class_zip(100), pets, owner="uma")
    size = owner_upload_bytes("uma")
    assert size == sum(p.stat().st_size for p in first.root.rglob("*") if p.is_file()) > 0
    tight = ZipLimits(owner_quota_bytes=size + 100)
    with pytest.raises(DataError, match=r"your uploads already take .* Remove an upload you no longer need"):
        import_zip(_two_class_zip(200), "more_pets", owner="uma", limits=tight)
    assert not (uploads_dir() / first.root.parent.name / "more_pets").exists()  # nothing unpacked
    import_zip(_two_class_zip(200), pets, owner="uma", limits=tight)  # replacing the same name fits
    vics = import_zip(_two_class_zip(200), available_name("pets", "vic"), owner="vic", limits=tight)  # their own
    with pytest.raises(DataError, match="not one of your uploads"):
        remove_upload(pets, "vic")  # uma's
    assert vics.root.is_dir()
    data.load_split(pets, "train")  # decoded tensors in the cache: removed with the upload
    from cnn_core.data.uploads import _upload_caches, zip_digest

    assert _upload_caches(pets)
    remove_upload(pets, "uma")
    assert not first.root.exists() and owner_upload_bytes("uma") == 0 and not _upload_caches(pets)
    assert pets not in {info.name for info in data.list_datasets(owner="uma")}
    import_zip(_two_class_zip(200), "more_pets", owner="uma", limits=tight)  # room again
    # A removed name stays with the zip it held: another zip gets a new name (checkpoints name their data by it)
    assert available_name("pets", "uma", zip_digest(_two_class_zip(300))) == owned_name("pets_2", "uma")
    assert available_name("pets", "uma", zip_digest(_two_class_zip(200))) == pets  # the same zip again


def test_a_bad_upload_quota_setting_is_one_clear_message(monkeypatch):
    for variable in ("CNN_UPLOAD_QUOTA_MB", "CNN_UPLOADS_TOTAL_MB"):
        for raw in ("abc", "nan", "inf", "-5", "0"):
            monkeypatch.setenv(variable, raw)
            with pytest.raises(DataError, match=f"{variable} must be a positive number of megabytes"):
                ZipLimits()
        monkeypatch.delenv(variable)
    monkeypatch.setenv("CNN_UPLOAD_QUOTA_MB", "2.5")
    monkeypatch.setenv("CNN_UPLOADS_TOTAL_MB", "100")
    assert ZipLimits().owner_quota_bytes == int(2.5 * 2**20) and ZipLimits().total_quota_bytes == 100 * 2**20
    monkeypatch.delenv("CNN_UPLOADS_TOTAL_MB")
    assert ZipLimits().total_quota_bytes is None  # no total unless the server sets one


def test_uploads_stay_within_a_server_total_and_leave_the_disk_room(tiny_data_dir, monkeypatch):
    # Each new browser cookie got a fresh per-person quota: only a total bounds what a class unpacks, and no
    # upload may fill the disk that runs, checkpoints and the database share.
    import shutil as shell
    from collections import namedtuple

    from cnn_core.data.uploads import owner_upload_bytes

    import_zip(_two_class_zip(100), "pets", owner="uma")
    size = owner_upload_bytes("uma")
    total = ZipLimits(total_quota_bytes=2 * size + 100)
    import_zip(_two_class_zip(110), "pets", owner="uma", limits=total)  # replacing one's own upload fits
    import_zip(_two_class_zip(120), "birds", owner="vic", limits=total)
    with pytest.raises(DataError, match=r"^Refused: this zip unpacks to .*, and the uploads of everybody on this "
                                        r"server already take .* \(CNN_UPLOADS_TOTAL_MB\)\. Ask whoever runs"):
        import_zip(_two_class_zip(130), "fish", owner="wes", limits=total)  # a third browser
    assert not (uploads_dir() / "fish").exists() and "fish" not in {p.name for p in uploads_dir().rglob("fish")}
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shell, "disk_usage", lambda path: usage(10 * 2**30, 9 * 2**30, 2**30 + 10))
    with pytest.raises(DataError, match=r"and the server's disk has 1024.0 MiB free; it keeps 1024.0 MiB free for "):
        import_zip(_two_class_zip(130), "fish", owner="wes")


def test_two_uploads_at_once_cannot_both_pass_the_quota(tiny_data_dir, monkeypatch):
    # Two tabs of one browser: each checked the quota before the other had unpacked, and both landed.
    import threading

    from cnn_core.data import uploads, zipfolder

    import_zip(_two_class_zip(100), "first", owner="uma")
    one = uploads.owner_upload_bytes("uma")
    limits = ZipLimits(owner_quota_bytes=2 * one + one // 2)  # room for one more, not two
    unpack = zipfolder._extract
    monkeypatch.setattr(zipfolder, "_extract", lambda *a, **k: (time.sleep(0.3), unpack(*a, **k))[1])
    outcomes = []

    def upload(name: str, value: int) -> None:
        try:
            import_zip(_two_class_zip(value), name, owner="uma", limits=limits)
            outcomes.append("landed")
        except DataError as exc:
            outcomes.append(str(exc)[:28])

    threads = [threading.Thread(target=upload, args=(name, value)) for name, value in (("second", 120), ("third", 140))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["Refused: this zip unpacks to", "landed"], outcomes
    assert uploads.owner_upload_bytes("uma") <= limits.owner_quota_bytes
    # Two tabs, two different zips, both called cats.zip: each chose the name "cats" before either had unpacked.
    outcomes.clear()
    first_zip, other_zip = _two_class_zip(10), _two_class_zip(30)
    names = [available_name("cats", "ana", uploads.zip_digest(z)) for z in (first_zip, other_zip)]
    assert names == [owned_name("cats", "ana")] * 2

    def upload_cats(payload: bytes) -> None:
        try:
            import_zip(payload, names[0], owner="ana", digest=uploads.zip_digest(payload))
            outcomes.append("landed")
        except DataError as exc:
            outcomes.append(str(exc)[:40])

    threads = [threading.Thread(target=upload_cats, args=(payload,)) for payload in (first_zip, other_zip)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["Another upload named 'cats' arrived at t", "landed"], outcomes
    landed = first_zip if uploads._digest_path(uploads.upload_root(names[0], "ana")).read_text() == \
        uploads.zip_digest(first_zip) else other_zip
    assert available_name("cats", "ana", uploads.zip_digest(landed)) == names[0]  # its record names the zip that landed
    upload_cats(other_zip if landed is first_zip else first_zip)  # afterwards, too (the name was chosen before)
    assert outcomes[-1].startswith("Another upload named 'cats'")


@pytest.mark.parametrize("owner", ["../alice", "a/b", "/etc", "x" * 500])
def test_any_owner_id_stays_inside_the_uploads_folder(tiny_data_dir, owner):
    from cnn_core import data

    result = import_zip(_two_class_zip(), "pets", owner=owner)
    assert result.root.parent.parent == uploads_dir()
    assert "pets" in [info.name for info in data.list_datasets(owner=owner)]


# --- the page itself, run headless by Streamlit's AppTest on the tiny data sets --------------------------

GALLERY_PAGE = Path(__file__).resolve().parents[1] / "pages" / "2_dataset_gallery.py"


def _run_page(dataset: str, monkeypatch):
    from streamlit.testing.v1 import AppTest

    monkeypatch.syspath_prepend(str(GALLERY_PAGE.parents[1]))  # cnn_explorer_ui lives beside app.py
    app = AppTest.from_file(str(GALLERY_PAGE), default_timeout=120)
    app.query_params["dataset"] = dataset
    app.run()
    assert not app.exception, [item.value for item in app.exception]
    return app


def _picture_rows(app, key: str) -> dict:
    """The data a `cnn_explorer_ui.thumbnails` element sent to the browser (AppTest sees it as JSON)."""
    import json

    def find(node):
        for child in getattr(node, "children", {}).values():
            if getattr(child, "key", None) == key:
                return child
            if (found := find(child)) is not None:
                return found
        return None

    element = find(app._tree)
    assert element is not None and element.type == "bidi_component", key
    return json.loads(element.proto.json)


@pytest.mark.parametrize("dataset", ["mnist", "pathmnist", "breastmnist", "chestmnist", "scans"])
def test_page_shows_every_kind_of_data_set(tiny_data_dir, monkeypatch, dataset):
    from cnn_core import data

    app = _run_page(dataset, monkeypatch)
    info = data.get_dataset_info(dataset)
    from cnn_explorer_ui.widgets import literal

    shown = literal(info.title) if info.family == "folder" else info.title  # a folder's name as written
    assert shown in [header.value for header in app.subheader]
    table = app.table[0].value
    assert list(table["class"]) == [literal(name) for name in info.class_names]  # st.table reads Markdown
    for split in info.splits:
        labels = data.load_split(dataset, split).labels
        expected = int(labels.sum()) if info.multi_label else len(labels)  # multi-label: one count per label
        assert table[split].sum() == expected
    assert "gallery_reshuffle" in {button.key for button in app.button}
    samples = _picture_rows(app, "gallery_samples")  # one row per class, each picture a button
    assert samples["clickable"] and len(samples["rows"]) == len(info.class_names)
    assert all(row["images"] and len(row["images"]) == len(row["alts"]) == len(row["ids"]) for row in samples["rows"])
    assert all(re.fullmatch(r"train/\d+", picture) for row in samples["rows"] for picture in row["ids"])
    means = _picture_rows(app, "gallery_class_means")
    assert not means["clickable"] and len(means["rows"][0]["images"]) == len(info.class_names)
    # a small folder is shown at 128 px but trains at 32 px by default: the page says so, as the studio does
    sizes = [caption.value for caption in app.caption if "Shown here" in caption.value]
    assert sizes == ([":material/photo_size_select_small: Shown here as read. In the Training Studio it is "
                      "trained at 32×32, not 128×128: with a set this small, many epochs at a small size learn more "
                      "than a few at full size in the same time (raise the studio's image size to keep more detail, "
                      "at the cost of fewer epochs)."]
                     if dataset == "scans" else [])
    size = next(metric for metric in app.metric if metric.label.startswith("Image size"))
    assert (size.label == "Image size (as read)") == (info.family == "folder")  # 64-px files read at 128 px


def test_page_reshuffle_changes_the_seed(tiny_data_dir, monkeypatch):
    app = _run_page("mnist", monkeypatch)
    assert app.number_input(key="gallery_seed").value == 0
    app.button(key="gallery_reshuffle").click().run()
    assert app.number_input(key="gallery_seed").value != 0
    assert not app.exception


def test_page_for_a_missing_data_set(tiny_data_dir, monkeypatch):
    from cnn_explorer_ui import widgets

    for on_this_machine in (True, False):  # the folders looked in, for a browser on the server's machine only
        monkeypatch.setattr(widgets, "show_server_paths", lambda: on_this_machine)
        monkeypatch.setattr("cnn_explorer_ui.gallery_views.show_server_paths", lambda: on_this_machine)
        app = _run_page("dermamnist", monkeypatch)
        text = " ".join(item.value for item in app.markdown)
        assert "dermamnist.npz" in text and (str(tiny_data_dir / "medmnist") in text) is on_this_machine
        assert any("not on this computer yet" in item.value for item in app.warning)


def test_picker_groups_medmnist_sizes(tiny_data_dir):
    from cnn_core import data

    entries = {entry.key: entry for entry in gallery.picker_entries(data.list_datasets())}
    assert list(entries)[:2] == ["mnist", "pathmnist"]
    assert entries["pathmnist"].title == "PathMNIST"
    assert entries["pathmnist"].sizes == {28: "pathmnist", 64: "pathmnist_64", 128: "pathmnist_128",
                                          224: "pathmnist_224"}
    assert entries["mnist"].sizes == {28: "mnist"}
    assert entries["scans"].family == "folder" and entries["scans"].sizes == {128: "scans"}
    assert len([e for e in entries.values() if e.family == "medmnist"]) == 12


def test_grid_picture_pads_short_classes_and_encodes_png():
    split = _split(torch.stack([torch.full((1, 4, 4), 10 * i, dtype=torch.uint8) for i in range(5)]),
                   torch.tensor([0, 0, 0, 1, 1]), ["a", "b", "c"])
    grid = gallery.sample_grid(split, "train", per_class=3, seed=0)
    picture = gallery.grid_picture(grid)
    assert picture.shape == (3 * 6 + 2, 3 * 6 + 2)  # 3 rows (classes) × 3 columns of 4 px + 2 px gaps
    assert picture[2 + 2 * 6 : 6 + 2 * 6, 2:6].min() == 255  # class "c" has no images: a white row
    decoded = np.asarray(Image.open(io.BytesIO(gallery.png_bytes(picture))))
    np.testing.assert_array_equal(decoded, picture)


def test_outline_square_marks_the_crop_in_colour_and_leaves_the_rest():
    picture = np.full((8, 8), 100, dtype=np.uint8)
    outlined = gallery.outline_square(picture, 2, 3, 4, width=1, colour=(255, 0, 0))
    assert outlined.shape == (8, 8, 3) and picture.max() == 100  # a colour copy; the original is untouched
    red = (outlined == (255, 0, 0)).all(axis=2)
    expected = np.zeros((8, 8), dtype=bool)
    expected[2, 3:7] = expected[5, 3:7] = expected[2:6, 3] = expected[2:6, 6] = True
    np.testing.assert_array_equal(red, expected)
    assert (outlined[~expected] == 100).all()


def test_wrong_server_settings_are_named_when_the_server_starts(monkeypatch):
    # A bad CNN_UPLOADS_TOTAL_MB was found only when the first student uploaded, and told to that student.
    from cnn_core.runs import server_setting_problems

    assert server_setting_problems() == []
    monkeypatch.setenv("CNN_UPLOADS_TOTAL_MB", "20GB")
    monkeypatch.setenv("CNN_MAX_CONCURRENT_RUNS", "0")
    monkeypatch.setenv("CNN_MAX_RUN_MINUTES", "half an hour")
    assert server_setting_problems() == [
        "CNN_MAX_CONCURRENT_RUNS must be a whole number of at least 1; got '0'.",
        "CNN_UPLOADS_TOTAL_MB must be a positive number of megabytes; got '20GB'.",
        "CNN_MAX_RUN_MINUTES must be a positive number of minutes; got 'half an hour'."]


def test_the_uploader_says_both_limits_an_upload_meets(monkeypatch):
    # The widget's own "Limit 50MB per file" sat beside a caption about 1,024 MB per person, unexplained.
    import streamlit as st

    from cnn_explorer_ui.widgets import upload_limits_help

    monkeypatch.setenv("CNN_UPLOAD_QUOTA_MB", "200")
    per_file = st.get_option("server.maxUploadSize")
    assert upload_limits_help() == (f"Each zip may be up to {per_file:,} MB (this server's limit per file); "
                                    "together, your unpacked uploads may use up to 200 MB on this server.")
    monkeypatch.setenv("CNN_UPLOAD_QUOTA_MB", "lots")  # the sidebar names a bad setting; the help keeps what it knows
    assert upload_limits_help() == f"Each zip may be up to {per_file:,} MB (this server's limit per file)."


def test_a_kaggle_download_of_zips_in_a_zip_says_to_unzip_it_first(tiny_data_dir):
    # Kaggle's Dogs vs. Cats download is dogs-vs-cats.zip holding train.zip, test1.zip and sampleSubmission.csv:
    # "No images found in class folders" did not say why.
    inner = _zip({f"train/cat.{i}.png": _png(i) for i in range(3)})
    outer = _zip({"train.zip": inner, "test1.zip": inner, "sampleSubmission.csv": b"id,label\n1,0\n"})
    with pytest.raises(DataError, match=r"The zip holds other archives \(train\.zip, test1\.zip\) and no images beside "
                                        r"them, as Kaggle's downloads do\. Unzip it, then upload the archive with the "
                                        r"images \(e\.g\. train\.zip\)"):
        import_zip(outer, "dogs_vs_cats_download", register=False)


def test_a_zip_and_its_unpacked_folder_agree_that_two_plain_folders_are_the_classes(tiny_data_dir, tmp_path):
    # Named images at the top beside cat/ and dog/: the folders are the classes in the zip as on disk (the zip
    # had left both folders out as unlabelled)
    members = {f"{kind}/{i}.png": _png(i) for kind in ("cat", "dog") for i in range(6)}
    members |= {f"bird.{i}.png": _png(i) for i in range(6)} | {f"fish.{i}.png": _png(i) for i in range(6)}
    assert import_zip(_zip(members), "plain_folders", register=False).class_counts == {"cat": 6, "dog": 6}
    from cnn_core.data.folders import scan_folder

    with zipfile.ZipFile(io.BytesIO(_zip(members))) as archive:
        archive.extractall(tmp_path / "unpacked")
    assert scan_folder(tmp_path / "unpacked").class_names == ("cat", "dog")
