"""Every checkpoint shipped in models/ loads, is small, and reproduces its card's test accuracy."""

import json
from pathlib import Path

import pytest

from cnn_core import data
from cnn_core.models.checkpoints import list_checkpoints, load_checkpoint
from cnn_core.inference.metrics import classification_metrics
from cnn_core.inference.predict import predict_tensor
from cnn_core.settings import models_dir

SHIPPED = sorted(models_dir().glob("*.safetensors"))


def test_models_folder_ships_mnist_pathmnist_and_brain_mri():
    names = {p.stem for p in SHIPPED}
    assert any(n.startswith("mnist") for n in names)
    assert any(n.startswith("pathmnist") for n in names)
    assert "brain_mri_efficientnet_lite0" in names


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_shipped_checkpoint_loads_offline_and_is_small(path: Path):
    assert path.stat().st_size <= 5 * 1024 * 1024
    loaded = load_checkpoint(path)
    card = json.loads(path.with_suffix(".json").read_text())
    assert card["command"].startswith("python -m cnn_core train")
    assert card["metrics"]["test"]["accuracy"] > 0.5
    assert path.with_suffix(".md").is_file()
    assert loaded.card.dataset == card["dataset"]
    assert any(entry.path == path and entry.shipped for entry in list_checkpoints())


@pytest.mark.realdata
@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_shipped_checkpoint_reproduces_its_card(path: Path):
    loaded = load_checkpoint(path)
    card = loaded.card
    if not data.is_available(card.dataset):
        pytest.skip(f"{card.dataset} is not under CNN_DATA_DIR")
    test = data.load_split(card.dataset, "test", image_size=card.image_size)
    metrics = classification_metrics(predict_tensor(loaded, test.images), test.labels, card.n_classes)
    assert metrics["n"] == card.test_metrics["n"]
    assert metrics["accuracy"] == pytest.approx(card.test_accuracy, abs=0.005)
