"""Checkpoints round-trip, and anything that is not one of ours is refused without being unpickled."""

import io
import json
from pathlib import Path
import os
import pickle
import re
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

from cnn_core.errors import CheckpointError
from cnn_core.inference.predict import predict_images
from cnn_core.models import build_model
from cnn_core.models.card import Card
from cnn_core.models.checkpoints import (
    list_checkpoints,
    load_checkpoint,
    save_checkpoint,
)
from cnn_core.training import TrainConfig, run_training


def _card(**over):
    card = {
        "model": "simple_cnn", "model_args": {}, "dataset": "mnist", "class_names": [str(i) for i in range(10)],
        "channels": 1, "image_size": 28, "normalization": {"mean": [0.13], "std": [0.31]}, "task": "multi-class",
    }
    card.update(over)
    return Card.from_dict(card)


def test_round_trip_gives_the_same_outputs(tmp_path):
    model = build_model("simple_cnn", 1, 10, 28).eval()
    path = save_checkpoint(model, _card(), tmp_path / "digits")
    assert path.suffix == ".safetensors" and path.with_suffix(".json").is_file()
    loaded = load_checkpoint(path)
    x = torch.randn(2, 1, 28, 28)
    assert torch.allclose(loaded.model(x), model(x))
    assert loaded.card.dataset == "mnist"
    assert json.loads(path.with_suffix(".json").read_text())["model"] == "simple_cnn"


def test_trained_checkpoint_predicts_images(tiny_data_dir, tmp_path):
    from PIL import Image

    end = run_training(TrainConfig(dataset="mnist", model="fastnet", epochs=2, batch_size=32, out=str(tmp_path / "c")))
    loaded = load_checkpoint(end.checkpoint_path, expect_dataset="mnist")
    blank, red = Image.new("L", (50, 40), 0), Image.new("RGBA", (28, 28), (255, 0, 0, 128))
    preds = predict_images(loaded, [blank, red], raw=True)  # raw: only resized (no digit to find in them)
    assert len(preds) == 2
    assert abs(sum(preds[0].probabilities.values()) - 1) < 1e-4


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > /tmp/cnn_explorer_pwned",))


def test_a_pickle_carrying_code_is_refused_and_never_run(tmp_path):
    marker = "/tmp/cnn_explorer_pwned"
    if os.path.exists(marker):
        os.remove(marker)
    path = tmp_path / "evil.pt"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "card": _card().to_dict(), "payload": _Evil()}, path)
    with pytest.raises(CheckpointError, match="pickled Python objects"):
        load_checkpoint(path)
    assert not os.path.exists(marker)
    raw = tmp_path / "evil.pkl"
    raw.write_bytes(pickle.dumps(_Evil()))
    with pytest.raises(CheckpointError, match="pickled Python objects"):
        load_checkpoint(raw)
    assert not os.path.exists(marker)
    legacy = tmp_path / "legacy.pt"  # torch.save before PyTorch 1.6: a bare pickle stream
    torch.save({"payload": _Evil()}, legacy, _use_new_zipfile_serialization=False)
    with pytest.raises(CheckpointError, match="pickled Python objects"):
        load_checkpoint(legacy)
    assert not os.path.exists(marker)


@pytest.mark.parametrize("head", [b"\x17\x03", b"PK\x03\x04junk", b"\x80\x09"])
def test_random_bytes_named_pt_are_not_called_a_pickle(tmp_path, head):
    # 4 kB of random bytes as random.pt was "Refused: it holds pickled Python objects, which could run code".
    path = tmp_path / "random.pt"
    path.write_bytes(head + np.random.default_rng(0).bytes(4096))
    with pytest.raises(CheckpointError, match="is not a checkpoint") as refused:
        load_checkpoint(path)
    assert "pickle" not in str(refused.value)


def test_not_a_checkpoint_and_wrong_fits_are_refused(tmp_path):
    text = tmp_path / "notes.safetensors"
    text.write_text("hello, I am not a checkpoint at all")
    with pytest.raises(CheckpointError):
        load_checkpoint(text)
    with pytest.raises(CheckpointError, match="No checkpoint"):
        load_checkpoint(tmp_path / "missing.safetensors")
    model = build_model("simple_cnn", 1, 10, 28)
    path = save_checkpoint(model, _card(), tmp_path / "digits")
    with pytest.raises(CheckpointError, match="trained on 'mnist', not 'pathmnist'"):
        load_checkpoint(path, expect_dataset="pathmnist")
    with pytest.raises(CheckpointError, match="not 'lenet'"):
        load_checkpoint(path, expect_model="lenet")
    # weights of one model under a card naming another
    other = save_checkpoint(build_model("lenet", 1, 10, 28), _card(), tmp_path / "liar")
    with pytest.raises(CheckpointError, match="do not fit"):
        load_checkpoint(other)
    # a plain torch file of tensors without a card
    plain = tmp_path / "plain.pt"
    torch.save(model.state_dict(), plain)
    with pytest.raises(CheckpointError, match="not a CNN Explorer checkpoint"):
        load_checkpoint(plain)


def test_list_checkpoints_reads_cards(tmp_path):
    save_checkpoint(build_model("simple_cnn", 1, 10, 28), _card(), tmp_path / "a")
    (tmp_path / "junk.safetensors").write_bytes(b"\x00" * 20)
    entries = list_checkpoints([tmp_path])
    assert [entry.name for entry in entries] == ["a"]
    assert entries[0].path.name == "a.safetensors" and entries[0].card.model == "simple_cnn"
    assert not entries[0].shipped


@pytest.mark.parametrize("change, says", [
    ({"model_args": [1]}, "model_args is not a mapping"),
    ({"normalization": {"mean": "abc", "std": [0.3]}}, "normalization mean must be 1 finite number(s)"),
    ({"normalization": {"mean": None, "std": None}}, "normalization mean must be"),
    ({"normalization": {"mean": [], "std": []}}, "normalization mean must be"),
    ({"normalization": {"mean": [0.1], "std": [0.0]}}, "std is 0 or negative"),
    ({"normalization": {"mean": [float("nan")], "std": [0.3]}}, "normalization mean must be"),
    ({"image_size": 100_000}, "image_size is 100000, not 8 to 1024 px"),
    ({"channels": 4}, "channels is 4, not 1 or 3"),
    ({"class_names": ["a", "a", "b"]}, "two or more different class names"),
    ({"class_names": ["only"]}, "two or more different class names"),
    ({"dataset": None}, "card lacks dataset"),  # a TypeError traceback from Card()
    ({"model": 5}, "model is 5, not a name"),
    ({"normalization": {"mean": [0.1, 0.2, 0.3], "std": [0.3] * 3}}, "normalization mean must be 1 finite"),  # 1 channel
])
def test_a_damaged_card_is_refused_before_a_model_is_built_from_it(change, says):
    # each of these gave a traceback, NaN outputs, duplicate answers or a 400 GB allocation
    with pytest.raises(CheckpointError, match=re.escape(says)):
        _card(**change)


@pytest.mark.parametrize("args, says", [
    ({"stem_stride": 0}, "stem_stride of 'fastnet' must be at least 1"),  # ZeroDivisionError
    ({"width": 0}, "width of 'fastnet' must be at least 1"),  # torchinfo's RuntimeError
    ({"blocks": 12}, "would have 6,442,908,538 parameters, more than the 200,000,000 allowed"),  # 20 GB, killed
    ({"blocks": 100}, "Bad arguments for model 'fastnet'"),  # shapes past 2**63
])
def test_model_arguments_out_of_range_are_refused_before_memory_is_asked_for(args, says):
    from cnn_core.errors import ConfigError
    from cnn_core.models.checkpoints import build_from_card

    with pytest.raises(ConfigError, match=re.escape(says)):
        build_model("fastnet", 1, 10, 28, **args)
    with pytest.raises(CheckpointError, match=re.escape(says)):  # a card that asks for them
        build_from_card(_card(model="fastnet", model_args=args))


@pytest.mark.parametrize("damage, says", [
    (lambda t: t.to(torch.int32), "not floating point"),
    (lambda t: t > 0, "not floating point"),
    (lambda t: t * float("nan"), "not finite numbers"),
])
def test_weights_that_are_not_finite_floats_are_refused(tmp_path, damage, says):
    from safetensors.torch import load_file, save_file
    from safetensors import safe_open

    path = _saved(tmp_path)
    with safe_open(str(path), "pt") as handle:
        metadata = handle.metadata()
    weights = load_file(str(path))
    save_file({key: damage(value) if value.is_floating_point() else value for key, value in weights.items()},
              str(path), metadata=metadata)
    with pytest.raises(CheckpointError, match=says):
        load_checkpoint(path)
    torch.save({"state_dict": {key: 1 for key in weights}, "card": json.loads(metadata["card"])}, tmp_path / "ints.pt")
    with pytest.raises(CheckpointError, match="is not a tensor of weights"):
        load_checkpoint(tmp_path / "ints.pt")


def _image_bytes(image_format: str) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (10, 20, 30)).save(buffer, format=image_format)
    return buffer.getvalue()


def _zip_of_images() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("cats/1.png", _image_bytes("PNG"))
    return buffer.getvalue()


def _saved(tmp_path):
    return save_checkpoint(build_model("simple_cnn", 1, 10, 28), _card(), tmp_path / "digits")


@pytest.mark.parametrize("name, content, says", [
    # what people pass instead of a checkpoint (from public reports: failed downloads saved as .pt,
    # clones without `git lfs pull`, the card passed for the weights)
    ("model.pt", b"\n<!DOCTYPE html>\n<html><head><title>Sign in</title>", "is a web page, not a checkpoint"),
    ("model.pth", b"<html><body>404 Not Found</body></html>", "download probably failed"),
    ("model.safetensors", b"version https://git-lfs.github.com/spec/v1\noid sha256:4d7a\nsize 133\n",
     "run `git lfs pull`"),
    ("notes.safetensors", b"hello, I am not a checkpoint at all", "is a text file, not a checkpoint"),
    ("other.json", b'{"epochs": 3}', "is a JSON file, not a checkpoint"),
    ("empty.pt", b"", "is empty (0 bytes)"),
    # the picture and the checkpoint swapped on the command line, the ONNX export passed back, a data zip
    ("scan.png", _image_bytes("PNG"), "is an image (PNG), not a checkpoint"),
    ("scan.JPG", _image_bytes("JPEG"), "is an image (JPEG), not a checkpoint"),
    ("scan.webp", _image_bytes("WEBP"), "is an image (WebP or HEIC), not a checkpoint"),
    ("scan.tif", _image_bytes("TIFF"), "is an image (TIFF), not a checkpoint"),
    ("digits.onnx", b"\x08\x08\x12\x0ccnn-explorer\x1a\x062.14.1:\xb5\xb2\x08\n0\n\x06images" + bytes(64),
     "is an ONNX export"),
    ("pets.zip", _zip_of_images(), "is a zip archive, not a checkpoint"),
])
def test_files_that_are_not_checkpoints_are_named_for_what_they_are(tmp_path, name, content, says):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=re.escape(says)) as refused:
        load_checkpoint(path)
    assert "pickled" not in str(refused.value)  # not the security refusal: nothing here holds code


@pytest.mark.filterwarnings("ignore::FutureWarning")  # torch.jit is deprecated, and people still save with it
def test_whole_programs_and_pickled_models_are_named_for_what_they_are(tmp_path):
    """TorchScript and torch.export files are zips like torch.save's; torch's own refusal of TorchScript under
    weights_only talks of PyTorch 2.6's defaults, and a whole model's refusal names a class allow-list."""
    model = build_model("simple_cnn", 1, 10, 28).eval()
    example = torch.zeros(1, 1, 28, 28)
    torch.jit.save(torch.jit.trace(model, example), tmp_path / "traced.pt")
    torch.jit.save(torch.jit.script(torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3))), tmp_path / "scripted.pt")
    torch.export.save(torch.export.export(model, (example,)), tmp_path / "exported.pt2")
    torch.save(model, tmp_path / "whole.pt")
    for name, says in [("traced.pt", "is a TorchScript model"), ("scripted.pt", "is a TorchScript model"),
                       ("exported.pt2", "is a torch.export program"),
                       ("whole.pt", "Refused whole.pt: it holds a whole pickled model (saved with torch.save(model))")]:
        with pytest.raises(CheckpointError, match=re.escape(says)) as refused:
            load_checkpoint(tmp_path / name)
        assert "2.6" not in str(refused.value) and "zip archive" not in str(refused.value)


def test_the_card_passed_for_the_weights_points_at_the_weights(tmp_path):
    weights = _saved(tmp_path)
    with pytest.raises(CheckpointError, match=r"is a checkpoint's card .* pass the \.safetensors file beside it "
                                              r"\(digits\.safetensors\)"):
        load_checkpoint(weights.with_suffix(".json"))


def test_cut_off_checkpoints_say_the_copy_did_not_finish(tmp_path):
    weights = _saved(tmp_path)
    whole = weights.read_bytes()
    for keep in (40, len(whole) - 100):  # inside the header; inside the tensors
        cut = tmp_path / f"cut{keep}.safetensors"
        cut.write_bytes(whole[:keep])
        with pytest.raises(CheckpointError, match="cut off"):
            load_checkpoint(cut)
    torch_file = tmp_path / "weights.pt"
    torch.save({"w": torch.zeros(1000)}, torch_file)
    data = torch_file.read_bytes()
    torch_file.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="cut off or damaged"):
        load_checkpoint(torch_file)


def test_an_earlier_cards_class_numbers_match_their_names_now():
    # RetinaMNIST's classes were "0"-"4" (medmnist's INFO) and are named by their grade now: earlier checkpoints
    # still evaluate; other renames are still refused
    names = ("0 no DR", "1 mild NPDR", "2 moderate NPDR", "3 severe NPDR", "4 proliferative DR")
    _card(class_names=[str(i) for i in range(5)]).check_classes(names, "RetinaMNIST")
    with pytest.raises(CheckpointError, match="new: cat food"):
        _card(class_names=["cat", "dog"]).check_classes(("cat food", "dog"), "pets")
    with pytest.raises(CheckpointError):
        _card(class_names=["0", "1"]).check_classes(("1 mild", "0 none"), "swapped")


def test_a_data_sets_classes_must_be_the_checkpoints_by_name_and_order():
    from dataclasses import replace

    from cnn_core.models.card import Card

    models = Path(__file__).resolve().parents[1] / "models"
    card = replace(Card.from_dict(json.loads((models / "mnist_fastnet.json").read_text())),
                   class_names=("Ödem", "normal"))
    card.check_classes(("O\u0308dem", "normal"), "The data set scans")  # a Mac's decomposed Ö is the same class
    with pytest.raises(CheckpointError, match=r"has the classes normal, Ödem, .*\(in another order\)"):
        card.check_classes(("normal", "Ödem"), "The data set scans")
