"""ONNX export: the file onnxruntime runs gives PyTorch's probabilities (input preparation included), for any
batch size, from uint8 or float input; bad requests end the CLI with one line and status 2."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

onnxruntime = pytest.importorskip("onnxruntime")

from cnn_core import data  # noqa: E402
from cnn_core.cli import main  # noqa: E402
from cnn_core.inference.export import export_checkpoint, export_onnx_bytes  # noqa: E402
from cnn_core.inference.predict import predict_tensor  # noqa: E402
from cnn_core.models.checkpoints import load_checkpoint  # noqa: E402
from cnn_core.training import TrainConfig, run_training  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = sorted((ROOT / "models").glob("*.safetensors"))
TOLERANCE = 1e-4


def _session(model_bytes: bytes):
    return onnxruntime.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])


def _onnx_probs(session, images: np.ndarray) -> np.ndarray:
    return session.run(None, {"images": images})[0]


def _assert_same(onnx_probs: np.ndarray, torch_probs: torch.Tensor) -> float:
    reference = torch_probs.numpy()
    difference = float(np.abs(onnx_probs - reference).max())
    assert difference < TOLERANCE
    assert (onnx_probs.argmax(1) == reference.argmax(1)).all()
    return difference


@pytest.fixture
def digits_checkpoint(tiny_data_dir, tmp_path) -> Path:
    out = tmp_path / "digits.safetensors"
    run_training(TrainConfig(dataset="mnist", model="simple_cnn", epochs=1, batch_size=16, out=str(out)))
    return out


def test_onnx_matches_pytorch_for_any_batch_size(digits_checkpoint):
    loaded = load_checkpoint(digits_checkpoint)
    exported = export_onnx_bytes(loaded)
    session = _session(exported.model_bytes)
    images = data.load_split("mnist", "test", image_size=28).images
    for n in (1, 3, images.shape[0]):
        batch = images[:n]
        _assert_same(_onnx_probs(session, batch.numpy()), predict_tensor(loaded, batch))
    (batch_axis, *rest) = session.get_inputs()[0].shape
    assert isinstance(batch_axis, str) and rest == [1, 28, 28]
    assert session.get_inputs()[0].type == "tensor(uint8)"


def test_float_input_takes_values_from_0_to_1(digits_checkpoint):
    loaded = load_checkpoint(digits_checkpoint)
    exported = export_onnx_bytes(loaded, input_dtype="float32")
    assert exported.card["input"]["dtype"] == "float32" and exported.card["input"]["value_range"] == [0.0, 1.0]
    images = data.load_split("mnist", "test", image_size=28).images[:5]
    probs = _onnx_probs(_session(exported.model_bytes), images.numpy().astype(np.float32) / 255)
    _assert_same(probs, predict_tensor(loaded, images))


def test_test_time_augmentation_views_are_in_the_graph(tiny_data_dir, tmp_path):
    """PathMNIST models average 8 orientations; the exported graph does too."""
    out = tmp_path / "tissue.safetensors"
    run_training(TrainConfig(dataset="pathmnist", model="simple_cnn", epochs=1, batch_size=16, out=str(out)))
    loaded = load_checkpoint(out)
    assert len(loaded.card.test_time_augmentation) == 8
    exported = export_onnx_bytes(loaded)
    assert len(exported.card["input"]["preparation_inside"]["test_time_augmentation"]) == 8
    images = data.load_split("pathmnist", "test", image_size=28).images
    _assert_same(_onnx_probs(_session(exported.model_bytes), images.numpy()), predict_tensor(loaded, images))


def test_cli_writes_the_file_and_its_card(digits_checkpoint, tmp_path, capsys):
    out = tmp_path / "digits.onnx"
    assert main(["export", "--checkpoint", str(digits_checkpoint), "--format", "onnx", "--out", str(out)]) == 0
    assert "digits.onnx" in capsys.readouterr().err
    card = json.loads((tmp_path / "digits.onnx.json").read_text())
    assert card["input"]["name"] == "images" and card["input"]["shape"] == ["batch", 1, 28, 28]
    assert card["input"]["dtype"] == "uint8" and card["input"]["value_range"] == [0, 255]
    assert card["class_names"] == [str(d) for d in range(10)] and card["output"]["name"] == "probabilities"
    session = _session(out.read_bytes())
    probs = _onnx_probs(session, np.zeros((2, 1, 28, 28), np.uint8))
    assert probs.shape == (2, 10) and np.allclose(probs.sum(1), 1, atol=1e-5)


def test_a_transfer_checkpoint_exports_whole(tiny_data_dir, tmp_path):
    """A partial checkpoint (head only) exports with its backbone's weights in the graph."""
    out = tmp_path / "transfer.safetensors"
    torch.set_num_threads(1)
    run_training(TrainConfig(dataset="scans", model="transfer:efficientnet_lite0", epochs=1, batch_size=8,
                             image_size=32, model_args={"input_size": 32}, out=str(out)))  # fmt: skip
    loaded = load_checkpoint(out)
    assert loaded.card.weights == "partial"
    exported = export_onnx_bytes(loaded)
    images = data.load_split("scans", "test", image_size=32).images
    _assert_same(_onnx_probs(_session(exported.model_bytes), images.numpy()), predict_tensor(loaded, images))


def _run_cli(*args):
    return subprocess.run([sys.executable, "-m", "cnn_core", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)  # fmt: skip


@pytest.mark.parametrize(
    "args,message",
    [
        (["--checkpoint", "/nonexistent/x.safetensors", "--out", "x.onnx"], "No checkpoint"),
        (["--checkpoint", "models/mnist_fastnet.safetensors", "--out", "x.txt"], "must end in .onnx"),
        (["--checkpoint", "models/mnist_fastnet.safetensors", "--out", "/nonexistent/x.onnx"], "does not exist"),
        (["--checkpoint", "models/mnist_fastnet.safetensors", "--format", "tflite", "--out", "x.onnx"], "invalid choice"),
        (["--checkpoint", "README.md", "--out", "x.onnx"], "README.md"),
    ],
)
def test_bad_input_is_one_line_and_status_2(args, message):
    result = _run_cli("export", *args)
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_a_failed_export_or_save_keeps_the_earlier_files_whole(digits_checkpoint, tmp_path, monkeypatch):
    # A full disk left a truncated .onnx beside the earlier export's card, and the earlier export was gone; a card
    # path that is a folder had the .onnx written anyway, and the message named the .onnx.
    from cnn_core.errors import CheckpointError
    from cnn_core.inference.export import ExportError
    from cnn_core.models import checkpoints

    out = tmp_path / "digits.onnx"
    export_checkpoint(digits_checkpoint, out)
    before = out.read_bytes(), (tmp_path / "digits.onnx.json").read_text()

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    from cnn_core.inference import export

    exported = export.export_onnx_bytes(load_checkpoint(digits_checkpoint))
    monkeypatch.setattr(export, "export_onnx_bytes", lambda *args: exported)
    monkeypatch.setattr(export.json, "dumps", lambda *args, **kwargs: full_disk())  # the card is written second
    with pytest.raises(ExportError, match=r"Could not write .*digits\.onnx\.json: No space left on device"):
        export_checkpoint(digits_checkpoint, out)  # the file that failed is named
    monkeypatch.undo()
    assert (out.read_bytes(), (tmp_path / "digits.onnx.json").read_text()) == before
    assert sorted(path.name for path in tmp_path.iterdir() if path.name.startswith(".")) == []  # no leftovers
    (tmp_path / "other.onnx.json").mkdir()
    with pytest.raises(ExportError, match=r"Could not write .*other\.onnx\.json: it is a folder"):
        export_checkpoint(digits_checkpoint, tmp_path / "other.onnx")
    assert not (tmp_path / "other.onnx").exists()
    weights = digits_checkpoint.read_bytes()  # a run that saves over an earlier checkpoint and fails midway
    loaded = load_checkpoint(digits_checkpoint)
    monkeypatch.setattr(checkpoints, "model_card_markdown", full_disk)
    with pytest.raises(CheckpointError, match=r"could not be saved as .*digits.safetensors \(No space left on "
                                              r"device\); an earlier file there is kept"):
        checkpoints.save_checkpoint(loaded.model, loaded.card, digits_checkpoint)
    assert digits_checkpoint.read_bytes() == weights


def test_export_checkpoint_refuses_other_formats(tmp_path):
    from cnn_core.inference.export import ExportError

    with pytest.raises(ExportError, match="onnx"):
        export_checkpoint(SHIPPED[0], tmp_path / "x.onnx", fmt="tflite")


@pytest.mark.realdata
@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_shipped_models_give_the_same_probabilities_on_real_test_images(path: Path):
    loaded = load_checkpoint(path)
    card = loaded.card
    if not data.is_available(card.dataset):
        pytest.skip(f"{card.dataset} is not under CNN_DATA_DIR")
    images = data.load_split(card.dataset, "test", image_size=card.image_size).images
    images = images[: 40 if card.image_size > 64 else 1000]
    session = _session(export_onnx_bytes(loaded).model_bytes)
    difference = _assert_same(_onnx_probs(session, images.numpy()), predict_tensor(loaded, images))
    print(f"{path.stem}: {images.shape[0]} test images, largest probability difference {difference:.2e}")
