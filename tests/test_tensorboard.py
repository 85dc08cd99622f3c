"""TensorBoard logs: `train --tensorboard DIR` and studio runs write them with torch.utils.tensorboard; these
tests read them back with TensorBoard's own reader and check the tags and the values."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch

pytest.importorskip("tensorboard")
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402
from tensorboard.plugins.hparams import plugin_data_pb2  # noqa: E402

from cnn_core.cli import main  # noqa: E402
from cnn_core.errors import CnnError  # noqa: E402
from cnn_core.models.card import Card  # noqa: E402
from cnn_core.runs import RunManager, RunStatus, has_tensorboard_log, run_log_dir, tensorboard_zip  # noqa: E402
from cnn_core.training import BatchEvent, EndEvent, EpochEvent, StartEvent, TrainConfig, steps_per_epoch  # noqa: E402
from cnn_core.training.tensorboard import confident_mistakes, hparams_of, tensorboard_logged  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
STEP_TAGS = {"step/loss", "step/accuracy", "step/learning_rate"}
EPOCH_TAGS = {"epoch/train_loss", "epoch/train_accuracy", "epoch/val_loss", "epoch/val_accuracy", "epoch/learning_rate"}


def _read(folder: Path) -> EventAccumulator:
    accumulator = EventAccumulator(str(folder), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    accumulator.Reload()
    return accumulator


def _values(accumulator: EventAccumulator, tag: str) -> list[tuple[int, float]]:
    return [(event.step, event.value) for event in accumulator.Scalars(tag)]


def _hparams(accumulator: EventAccumulator) -> dict:
    content = accumulator.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    start = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info
    return {key: value.WhichOneof("kind") and getattr(value, value.WhichOneof("kind"))
            for key, value in start.hparams.items()}  # fmt: skip


def test_cli_train_writes_scalars_graph_figures_and_hparams(tiny_data_dir, tmp_path, capsys):
    log = tmp_path / "tb"
    out = tmp_path / "digits.safetensors"
    assert main(["train", "--data", "mnist", "--epochs", "2", "--batch-size", "32", "--out", str(out),
                 "--tensorboard", str(log), "--json"]) == 0  # fmt: skip
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    card = json.loads(out.with_suffix(".json").read_text())
    accumulator = _read(log)
    tags = accumulator.Tags()
    assert STEP_TAGS | EPOCH_TAGS <= set(tags["scalars"])
    # Per epoch: x is the epoch; the losses are the trainer's (the card keeps the best epoch's validation scores).
    val_accuracy = _values(accumulator, "epoch/val_accuracy")
    assert [step for step, _ in val_accuracy] == [1, 2]
    best = card["training"]["best_epoch"]
    assert dict(val_accuracy)[best] == pytest.approx(card["metrics"]["best_val"]["val_accuracy"], abs=1e-6)
    assert dict(_values(accumulator, "epoch/val_loss"))[best] == pytest.approx(card["metrics"]["best_val"]["val_loss"],
                                                                               rel=1e-5)  # fmt: skip
    # Per step: x is the global step, every logged step of both epochs.
    steps = [step for step, _ in _values(accumulator, "step/loss")]
    assert steps == sorted(steps) and steps[-1] == 2 * steps_per_epoch(220, 32)
    assert all(lr > 0 for _, lr in _values(accumulator, "step/learning_rate"))
    # The final metrics, the run's options, the graph, the confusion matrix and the mistakes.
    assert _values(accumulator, "hparam/test_accuracy")[0][1] == pytest.approx(summary["test_metrics"]["accuracy"])
    assert _values(accumulator, "hparam/epochs_run")[0][1] == 2
    hparams = _hparams(accumulator)
    assert hparams["model"] == "fastnet" and hparams["dataset"] == "mnist" and hparams["batch_size"] == 32
    assert tags["graph"] and b"Conv2d" in accumulator.Graph().SerializeToString()
    assert "test/confusion_matrix" in tags["images"]
    n_wrong = round((1 - summary["test_metrics"]["accuracy"]) * 60)
    assert ("test/misclassified" in tags["images"]) == (n_wrong > 0)
    assert accumulator.Images("test/confusion_matrix")[0].encoded_image_string[:4] == b"\x89PNG"
    assert "run/config/text_summary" in tags["tensors"]


def _card() -> Card:
    return Card(model="fastnet", dataset="mnist", class_names=("0", "1"), channels=1, image_size=28,
                normalization={"mean": [0.13], "std": [0.31]})  # fmt: skip


def test_a_log_without_network_or_test_tensors_still_has_its_scalars(tmp_path):
    """Stand-in trainers (and cancelled runs) have no live network and no test predictions."""
    events = [
        StartEvent("mnist", "fastnet", "CPU", 10, 2, 2, 1, 2, {"lr": 0.01, "augment": {"shift": 2}, "limit": None}),
        BatchEvent(step=1, epoch=1, loss=0.7, accuracy=0.5, lr=0.01, seconds=0.1),
        BatchEvent(step=2, epoch=1, loss=0.6, accuracy=0.75, lr=0.005, seconds=0.2),
        EpochEvent(epoch=1, train_loss=0.65, train_accuracy=0.6, val_loss=float("nan"), val_accuracy=float("nan"),
                   lr=0.005, seconds=0.2, improved=True),
        EndEvent(1, 1, 0.2, None, None, False, True, _card()),
    ]
    passed = list(tensorboard_logged(iter(events), tmp_path / "log"))
    assert passed == events  # the stream goes on unchanged
    accumulator = _read(tmp_path / "log")
    assert _values(accumulator, "step/loss") == [(1, pytest.approx(0.7)), (2, pytest.approx(0.6))]
    assert _values(accumulator, "epoch/train_loss") == [(1, pytest.approx(0.65))]
    assert "epoch/val_loss" not in accumulator.Tags()["scalars"]  # no validation images: nothing to draw
    assert _hparams(accumulator)["augment.shift"] == 2


def test_misclassified_test_images_are_logged_with_their_labels(tiny_data_dir, tmp_path):
    """The most confident mistakes, as images of the test split and a table of true and predicted classes."""
    from cnn_core import data

    test = data.load_split("mnist", "test")
    labels = test.labels.reshape(-1)[:6]
    probs = torch.nn.functional.one_hot(labels, 10).float() * 0.9 + 0.01
    probs[2] = torch.nn.functional.one_hot((labels[2] + 1) % 10, 10).float() * 0.5 + 0.05  # wrong, at 0.55
    probs[4] = torch.nn.functional.one_hot((labels[4] + 3) % 10, 10).float() * 0.8 + 0.02  # wrong, at 0.82
    card = Card(model="fastnet", dataset="mnist", class_names=tuple(test.info.class_names), channels=1,
                image_size=28, normalization={"mean": [0.13], "std": [0.31]})  # fmt: skip
    end = EndEvent(1, 1, 0.1, {"accuracy": 4 / 6, "confusion_matrix": [[1] * 10] * 10}, None, False, False, card,
                   test_probs=probs, test_labels=labels, test_indices=torch.arange(6))  # fmt: skip
    list(tensorboard_logged(iter([end]), tmp_path / "log"))
    accumulator = _read(tmp_path / "log")
    image = accumulator.Images("test/misclassified")[0]
    assert (image.width, image.height) == (2 * 28, 28)  # the two mistakes side by side in one grid image
    table = accumulator.Tensors("test/misclassified_labels/text_summary")[0].tensor_proto.string_val[0].decode()
    first, second = [line for line in table.splitlines() if line.startswith("| 1 ") or line.startswith("| 2 ")]
    names = test.info.class_names
    assert f"| {names[int(labels[4])]} | {names[(int(labels[4]) + 3) % 10]} | 0.820 |" in first
    assert f"| {names[int(labels[2])]} | {names[(int(labels[2]) + 1) % 10]} | 0.550 |" in second


def test_confident_mistakes_come_first():
    probs = torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.4, 0.6], [0.05, 0.95]])
    labels = torch.tensor([0, 0, 0, 1])
    assert confident_mistakes(probs, labels, 5).tolist() == [1, 2]
    assert confident_mistakes(probs, labels, 1).tolist() == [1]


def test_hparams_are_flat():
    assert hparams_of({"a": 1, "b": {"c": True, "d": [1, 2]}, "e": None}) == {"a": 1, "b.c": True, "b.d": "[1, 2]",
                                                                             "e": "null"}  # fmt: skip


def test_a_studio_run_logs_into_its_own_folder_and_zips_it(tiny_data_dir):
    manager = RunManager(max_concurrent=1)
    run_id = manager.submit("alice", TrainConfig(dataset="mnist", model="fastnet", epochs=1, batch_size=32, lr=0.01))
    snap = manager.wait(run_id, timeout=120)
    assert snap.status is RunStatus.FINISHED, snap.error
    folder = run_log_dir(run_id)
    assert folder.name == run_id and has_tensorboard_log(run_id)
    accumulator = _read(folder)
    assert STEP_TAGS | EPOCH_TAGS <= set(accumulator.Tags()["scalars"])
    assert _values(accumulator, "epoch/val_accuracy")[0][1] == pytest.approx(snap.epochs[0].val_accuracy, abs=1e-6)
    archive = zipfile.ZipFile(io.BytesIO(tensorboard_zip(run_id)))
    names = archive.namelist()
    assert names and all(name.startswith(f"{run_id[:8]}/") for name in names)
    assert any("events.out.tfevents" in name for name in names)
    unpacked = Path(tiny_data_dir) / "unzipped"
    archive.extractall(unpacked)
    assert _values(_read(unpacked / run_id[:8]), "epoch/val_accuracy") == _values(accumulator, "epoch/val_accuracy")


def test_run_log_folders_are_named_by_run_ids_only():
    for bad in ("../../etc", "", "ALICE"):
        with pytest.raises(CnnError, match="not a run id"):
            run_log_dir(bad)
    with pytest.raises(CnnError, match="no TensorBoard log"):
        tensorboard_zip("0123456789abcdef")


@pytest.mark.parametrize(
    "args,message",
    [
        (["--tensorboard", "/proc/no/such/log"], "Cannot write the TensorBoard log"),
        (["--tensorboard", "log", "--backend", "ray"], "--backend local"),
    ],
)
def test_cli_bad_log_folder_is_one_line_and_status_2(tiny_data_dir, args, message):
    result = subprocess.run([sys.executable, "-m", "cnn_core", "train", "--data", "mnist", "--epochs", "1", *args],
                            cwd=ROOT, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_a_failing_log_never_stops_the_run(tmp_path, monkeypatch):
    """Writing the log fails (a full disk, say): the events still all arrive, with a status line saying so."""
    from cnn_core.training import StatusEvent

    def full_disk(self, tag, value, step):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("torch.utils.tensorboard.SummaryWriter.add_scalar", full_disk)
    events = [BatchEvent(step=s, epoch=1, loss=0.5, accuracy=0.5, lr=0.01, seconds=0.1) for s in (1, 2)]
    passed = list(tensorboard_logged(iter(events), tmp_path / "log"))
    assert passed[1:] == events and isinstance(passed[0], StatusEvent)
    assert "stopped" in passed[0].message and "No space left" in passed[0].message
