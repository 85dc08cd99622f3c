"""The trainer: real loaders on tiny data sets in the real formats, events, early stopping, cancel."""

import math
import threading

import pytest
import torch

from cnn_core import data
from cnn_core.data.augment import AugmentConfig
from cnn_core.errors import ConfigError
from cnn_core.training import (
    BatchEvent,
    EndEvent,
    EpochEvent,
    StartEvent,
    StatusEvent,
    TrainConfig,
    TrainingError,
    run_training,
    steps_per_epoch,
    train,
)
from data_fixtures import tiny_breastmnist_arrays, write_npz


def _events(config, cancel=None):
    return list(train(config, cancel=cancel))


def test_training_on_tiny_mnist_lowers_the_loss_and_reports_events(tiny_data_dir, tmp_path):
    config = TrainConfig(dataset="mnist", model="fastnet", epochs=4, batch_size=32, lr=0.01, out=str(tmp_path / "m.safetensors"))
    events = _events(config)
    assert isinstance(events[0], StartEvent) and isinstance(events[-1], EndEvent)
    epochs = [e for e in events if isinstance(e, EpochEvent)]
    batches = [e for e in events if isinstance(e, BatchEvent)]
    assert len(epochs) == 4 and batches
    assert [e.step for e in batches] == sorted(e.step for e in batches)
    assert epochs[-1].train_loss < epochs[0].train_loss
    end = events[-1]
    assert end.test_metrics["accuracy"] > 0.5  # 10 classes: chance is 0.1
    assert end.checkpoint_path and (tmp_path / "m.json").is_file()
    assert end.card.class_names[:2] == ("0", "1") or end.card.n_classes == 10
    assert end.test_probs.shape == (end.test_metrics["n"], 10)


def test_binary_medmnist_reports_sensitivity_and_specificity(tiny_data_dir):
    end = run_training(TrainConfig(dataset="breastmnist", model="simple_cnn", epochs=2, batch_size=8, lr=0.01))
    for key in ("sensitivity", "specificity", "auroc", "accuracy", "kappa"):
        assert key in end.test_metrics


def test_a_binary_set_keeps_the_epoch_with_the_best_balanced_accuracy_and_the_card_says_so(tiny_data_dir):
    # 10 validation images per class: enough for "auto" to trust a validation score (fewer keep the last epoch)
    write_npz(tiny_data_dir / "breastmnist.npz", tiny_breastmnist_arrays({"train": 40, "val": 20, "test": 10}))
    data.clear_caches()
    events = _events(TrainConfig(dataset="breastmnist", model="simple_cnn", epochs=3, batch_size=8, lr=0.01))
    end, epochs = events[-1], [e for e in events if isinstance(e, EpochEvent)]
    assert end.card.training["monitor"] == "val_balanced_accuracy"
    assert "val_balanced_accuracy" in end.card.metrics["best_val"]
    scores = [e.val_score for e in epochs]
    assert all(0 <= score <= 1 for score in scores)
    assert epochs[end.best_epoch - 1].val_score == max(scores)
    assert len(scores) - 1 - scores[::-1].index(max(scores)) == end.best_epoch - 1  # the last of equal bests
    auroc = run_training(TrainConfig(dataset="breastmnist", model="simple_cnn", epochs=2, batch_size=8, lr=0.01,
                                     monitor="val_auroc"))
    assert auroc.card.training["monitor"] == "val_auroc" and "val_auroc" in auroc.card.metrics["best_val"]


def test_a_tie_keeps_the_later_epoch_but_does_not_count_as_progress():
    from types import SimpleNamespace

    from cnn_core.training.loop import _Best, _keep_if_better

    weights = torch.nn.Linear(2, 2)
    loop = SimpleNamespace(resolved=SimpleNamespace(monitor="val_accuracy"), kept_model=lambda: weights)
    best = _Best()
    assert _keep_if_better(best, loop, 1, {"val_accuracy": 1.0, "val_loss": 0.5})
    with torch.no_grad():
        weights.weight.add_(1.0)  # epoch 2 trains on, same score: its weights are kept
    assert _keep_if_better(best, loop, 2, {"val_accuracy": 1.0, "val_loss": 0.4})
    assert best.epoch == 2 and torch.equal(best.state["weight"], weights.weight) and best.stale_epochs == 1
    assert not _keep_if_better(best, loop, 3, {"val_accuracy": 0.9, "val_loss": 0.3})
    assert best.epoch == 2 and best.stale_epochs == 2  # patience 2 would stop here


def test_same_seed_gives_the_same_run(tiny_data_dir):
    config = dict(dataset="pathmnist", model="simple_cnn", epochs=1, batch_size=16, lr=0.005, seed=3)
    a = run_training(TrainConfig(**config))
    b = run_training(TrainConfig(**config))
    assert torch.equal(a.test_probs, b.test_probs)


def test_early_stopping_stops_and_keeps_the_best_epoch(tiny_data_dir):
    # A learning rate this small cannot improve validation accuracy for long: patience 1 must trigger.
    end = run_training(TrainConfig(dataset="mnist", model="lenet", epochs=30, batch_size=64, lr=1e-6, patience=1))
    assert end.stopped_early
    assert end.epochs_run < 30
    assert 1 <= end.best_epoch <= end.epochs_run


def test_cancel_stops_within_one_batch(tiny_data_dir):
    cancel = threading.Event()
    seen = []
    for event in train(TrainConfig(dataset="mnist", model="fastnet", epochs=50, batch_size=8, lr=0.01), cancel=cancel):
        seen.append(event)
        if isinstance(event, BatchEvent) and event.step == 3:
            cancel.set()
    end = seen[-1]
    assert isinstance(end, EndEvent) and end.cancelled
    assert max(e.step for e in seen if isinstance(e, BatchEvent)) <= 4
    assert end.epochs_run <= 1
    start = seen[0]
    assert 3 <= end.steps <= 4 < start.steps_per_epoch  # the steps taken: part of epoch 1, as the studio says


def test_divergence_is_reported_clearly(tiny_data_dir):
    with pytest.raises(TrainingError, match="diverged"):
        run_training(TrainConfig(dataset="mnist", model="simple_cnn", epochs=3, batch_size=16, lr=10.0, optimizer="sgd", log_every=1))


@pytest.mark.parametrize(
    "options,message",
    [
        ({"lr": 0}, "Learning rate"),
        ({"lr": float("nan")}, "Learning rate"),
        ({"batch_size": 0}, "Batch size"),
        ({"batch_size": 1}, "Batch size must be at least 2"),
        ({"batch_size": 100000}, "Batch size"),
        ({"batch_size": 5000}, "larger than the training set"),
        ({"optimizer": "lion"}, "Unknown optimizer"),
        ({"schedule": "triangle"}, "Unknown schedule"),
        ({"epochs": 0}, "Epochs"),
        ({"patience": 0}, "Patience"),
        ({"patience": 2, "monitor": "last"}, "never stop early"),
        ({"augment": AugmentConfig(shift=-1)}, "Random shift"),
        ({"augment": AugmentConfig(color_jitter=0.6)}, "Colour jitter must be between 0 and 0.5"),
    ],
)
def test_bad_options_are_config_errors(tiny_data_dir, options, message):
    with pytest.raises(ConfigError, match=message):
        run_training(TrainConfig(dataset="mnist", model="fastnet", **{"epochs": 1, **options}))


def test_multilabel_is_refused_clearly(tiny_data_dir):
    with pytest.raises(ConfigError, match="multi-label"):
        run_training(TrainConfig(dataset="chestmnist", epochs=1))


@pytest.mark.parametrize("optimizer", ["adam", "adamw", "sgd", "rmsprop"])
@pytest.mark.parametrize("schedule", ["none", "onecycle", "cosine"])
def test_every_optimizer_and_schedule_runs(tiny_data_dir, optimizer, schedule):
    end = run_training(
        TrainConfig(dataset="pathmnist", model="simple_cnn", epochs=1, batch_size=32, lr=0.001,
                    optimizer=optimizer, schedule=schedule, label_smoothing=0.1)
    )
    assert math.isfinite(end.card.metrics["best_val"]["val_loss"])


def test_image_folder_trains_with_skipped_files(tiny_data_dir):
    end = run_training(TrainConfig(dataset="scans", model="simple_cnn", epochs=1, batch_size=4, image_size=32))
    assert end.card.image_size == 32
    assert end.card.class_names == ("a", "b")


def test_batch_size_one_is_refused_with_the_reason(tiny_data_dir):
    """One-image batches cannot train BatchNorm: such a run used to skip every batch and report loss 0."""
    with pytest.raises(ConfigError, match=r"at least 2 .*BatchNorm.*got 1"):
        run_training(TrainConfig(dataset="mnist", model="fastnet", epochs=1, batch_size=1))


def test_a_last_batch_of_one_image_is_no_step_and_the_epoch_end_is_still_logged(tiny_data_dir):
    # 17 images in batches of 8: 8 + 8 + 1; the single image is skipped (BatchNorm), so 2 steps per epoch.
    events = _events(TrainConfig(dataset="mnist", model="fastnet", epochs=2, batch_size=8, lr=0.01, limit=17,
                                 log_every=5))
    start = events[0]
    assert start.n_train == 17 and start.steps_per_epoch == 2 == steps_per_epoch(17, 8)
    assert [(b.epoch, b.step) for b in events if isinstance(b, BatchEvent)] == [(1, 2), (2, 4)]
    assert steps_per_epoch(16, 8) == 2 and steps_per_epoch(18, 8) == 3 and steps_per_epoch(9, 4) == 2


def test_plain_models_need_no_preparation_status(tiny_data_dir):
    events = _events(TrainConfig(dataset="mnist", model="fastnet", epochs=1, batch_size=64, limit=64))
    assert not [e for e in events if isinstance(e, StatusEvent)]


def test_test_metrics_average_the_orientations_the_augmentation_taught(tiny_data_dir, tmp_path):
    """Test-time augmentation: PathMNIST's default trains with flips and 90° rotations, so its test metrics
    average all 8 orientations; the card says so and predictions from the checkpoint use the same views."""
    from cnn_core.data.augment import orient
    from cnn_core.models.checkpoints import load_checkpoint
    from cnn_core.data import load_split
    from cnn_core.inference.predict import card_views, predict_tensor

    base = dict(dataset="pathmnist", model="simple_cnn", epochs=1, batch_size=16, lr=0.005)
    end = run_training(TrainConfig(**base, out=str(tmp_path / "tta.safetensors")))
    views = end.card.test_time_augmentation
    assert len(views) == 8 and views[0] == "identity"
    assert end.card.training["tta"] is True
    assert "predictions average 8 orientations (identity, hflip" in (tmp_path / "tta.md").read_text()
    loaded = load_checkpoint(tmp_path / "tta.safetensors")
    assert card_views(loaded.card) == tuple(views)
    test_images = load_split("pathmnist", "test").images
    torch.testing.assert_close(predict_tensor(loaded, test_images), end.test_probs)
    # Averaged over the 8 views, a prediction does not depend on the image's orientation.
    torch.testing.assert_close(predict_tensor(loaded, orient(test_images, "rotate90").contiguous()), end.test_probs)
    # One view: the same weights give different probabilities (the average really is over several views).
    single = run_training(TrainConfig(**base, tta=False))
    assert single.card.test_time_augmentation == ()
    assert not torch.allclose(single.test_probs, end.test_probs)


def test_runs_without_flips_or_cached_features_predict_from_one_view(tiny_data_dir):
    digits = run_training(TrainConfig(dataset="mnist", model="fastnet", epochs=1, batch_size=64, limit=64))
    assert digits.card.test_time_augmentation == ()  # shifts only: nothing to average
    scans = run_training(TrainConfig(dataset="scans", model="simple_cnn", epochs=1, batch_size=4, image_size=32))
    assert scans.card.test_time_augmentation == ("identity", "hflip")


def test_card_views_ignore_what_they_do_not_know():
    from cnn_core.inference.predict import card_views
    from cnn_core.models.card import Card

    base = {"model": "fastnet", "dataset": "mnist", "class_names": ["0", "1"], "channels": 1, "image_size": 28,
            "normalization": {"mean": [0.13], "std": [0.31]}}
    assert card_views(Card.from_dict(base)) == ("identity",)
    assert card_views(Card.from_dict({**base, "test_time_augmentation": "hflip"})) == ("identity",)
    views = ["identity", "spin", 3, "hflip"]
    assert card_views(Card.from_dict({**base, "test_time_augmentation": views})) == ("identity", "hflip")


def test_cpu_threads_follow_the_cores_other_processes_leave(monkeypatch):
    import torch

    from cnn_core.device import CpuThreads

    before = torch.get_num_threads()
    monkeypatch.setattr("os.cpu_count", lambda: 4)
    torch.set_num_threads(4)
    try:
        samples = iter([(0.0, 0.0, 0.0),  # start: (seconds, busy CPU-seconds of the machine, of this process)
                        (2.0, 2 * 3.0, 2 * 1.0),  # 3 busy cores, 1 of them ours: others use 2 -> 2 threads
                        (4.0, 6.0 + 2 * 1.0, 2.0 + 2 * 1.0),  # only ours busy -> back to 4
                        ])
        monkeypatch.setattr(CpuThreads, "_sample", staticmethod(lambda: next(samples)))
        monkeypatch.setattr("time.monotonic", lambda: 10.0)  # always "a second has passed"
        threads = CpuThreads()
        threads.enabled = True
        assert threads.max_threads == 4
        assert threads.adjust() == 2 and torch.get_num_threads() == 2
        assert threads.adjust() == 4 and torch.get_num_threads() == 4
        monkeypatch.setenv("CNN_ADAPT_THREADS", "0")
        assert not CpuThreads().enabled
    finally:
        torch.set_num_threads(before)


def test_small_sets_get_a_step_budget_within_a_pixel_budget_and_big_ones_the_models_recipe_within_a_pass_budget():
    from cnn_core.data.types import DatasetInfo
    from cnn_core.training import TrainConfig
    from cnn_core.models import MODEL_REGISTRY
    from cnn_core.training.config import MAX_AUTO_EPOCHS, MIN_DEFAULT_STEPS, default_recipe

    from dataclasses import replace

    def info(n_train: int, side: int = 28) -> DatasetInfo:
        return DatasetInfo(name="x", title="x", family="medmnist", class_names=("a", "b"), channels=1, image_size=side,
                           task="binary-class", splits=("train", "val", "test"), source="", description="",
                           license="", n_samples={"train": n_train, "val": 10, "test": 10}, root=None)

    model = {"epochs": 24, "batch_size": 128}
    config = TrainConfig(dataset="x")
    assert default_recipe(model, info(546), config) == (240, 128)  # 5 steps per epoch (a ragged last batch counts)
    assert 240 * 5 >= MIN_DEFAULT_STEPS
    assert default_recipe(model, info(89_996), config) == (24, 128)  # PathMNIST: 703 steps per epoch already
    # FastNet-32's defaults grow big sets towards 32 epochs within PathMNIST's 24 epochs of passes
    fastnet32 = {"epochs": 24, "max_epochs": 32, "batch_size": 128}
    assert default_recipe(fastnet32, info(89_996), config) == (24, 128)  # PathMNIST
    assert default_recipe(fastnet32, info(67_000), config) == (32, 128)
    assert default_recipe(fastnet32, info(80_000), config) == (27, 128)
    assert default_recipe(fastnet32, info(97_477), config) == (24, 128)  # OCTMNIST
    assert default_recipe(fastnet32, info(11_959), config) == (32, 128)  # BloodMNIST
    assert default_recipe(fastnet32, info(165_466), config) == (24, 128)  # TissueMNIST: never fewer than 24
    assert default_recipe(fastnet32, info(89_996, side=64), config) == (24, 128)  # 64 px: 5.2x the pixels
    assert default_recipe(fastnet32, info(5_000), config) == (32, 128)  # just above the small-set recipe (4,708: 32)
    # MNIST keeps its 3 epochs of 256 (5-6 s on a laptop CPU)
    assert default_recipe({"epochs": 3, "batch_size": 256}, info(55_000), config) == (3, 256)
    assert default_recipe(model, info(4_708), config) == (32, 128)  # 37 steps per epoch; 153,600 passes at most
    # a default batch never exceeds the training set: 12 images train in batches of 12, not of 128 (refused)
    assert default_recipe(model, info(40), config) == (MAX_AUTO_EPOCHS, 40)
    assert default_recipe(model, info(546), TrainConfig(dataset="x", limit=100)) == (MAX_AUTO_EPOCHS, 100)
    assert default_recipe(model, info(12), config)[1] == 12
    assert default_recipe(model, info(25, side=32), config)[1] == 25
    assert default_recipe(model, info(12), TrainConfig(dataset="x", batch_size=64))[1] == 64  # asked: kept
    # 128-px images cost ~21x the pixels: 7,350 passes, in batches of 16 (the brain-MRI folder: 18 s, not 124 s)
    at_128 = TrainConfig(dataset="x", image_size=128)
    assert default_recipe(model, info(202, side=128), at_128) == (36, 16)
    assert default_recipe(model, info(4_999, side=128), at_128) == (1, 16)  # the budget holds for the largest
    assert default_recipe(model, info(1_000, side=64), replace(config, image_size=64)) == (29, 24)
    assert default_recipe(model, info(202), at_128) == (36, 16)  # the asked side
    assert default_recipe(model, info(202, side=128), replace(at_128, batch_size=64)) == (36, 64)
    # unless asked, a small set's side is halved while the half is 28 px or more
    assert default_recipe(model, info(202, side=128), config) == default_recipe(model, info(202, side=32), config)
    assert default_recipe(model, info(546, side=224), config) == (240, 128)  # at 28 px
    # the Small ResNet costs ~4x per image: 240 steps, and as many passes as 240 batches of 64 at 28 px
    resnet = MODEL_REGISTRY["resnet_small"].defaults
    assert default_recipe(resnet, info(546), config) == (27, 64)  # BreastMNIST's size: 9 steps per epoch
    assert default_recipe(resnet, info(500), config) == (30, 64)
    assert default_recipe(resnet, info(2_000), config) == (7, 64)  # 15,360 passes: the pass budget binds
    assert default_recipe(resnet, info(4_708), config) == (3, 64)  # PneumoniaMNIST's size
    assert default_recipe(resnet, info(546, side=64), replace(config, image_size=64)) == (5, 16)  # 5.2x the pixels
    assert default_recipe(resnet, info(546, side=64), config) == default_recipe(resnet, info(546, side=32), config)
    assert default_recipe(model, info(202), TrainConfig(dataset="x", model="transfer:efficientnet_lite0")) == (24, 128)


def test_a_small_set_of_large_images_trains_at_a_side_the_budget_can_teach_unless_a_side_is_asked():
    # breastmnist_224 (546 images) got one epoch at 224 px by default: a small set's side is halved while the half
    # is 28 px or more; large sets, asked sides and transfer models keep theirs.
    from dataclasses import replace

    from cnn_core.data.types import DatasetInfo
    from cnn_core.training import TrainConfig
    from cnn_core.training.config import default_image_size

    def info(n_train: int, side: int, family: str = "medmnist") -> DatasetInfo:
        return DatasetInfo(name="x", title="x", family=family, class_names=("a", "b"), channels=1, image_size=side,
                           task="binary-class", splits=("train", "val", "test"), source="", description="",
                           license="", n_samples={"train": n_train, "val": 10, "test": 10}, root=None)

    config = TrainConfig(dataset="x")
    sides = (28, 32, 48, 55, 56, 64, 96, 128, 224, 256, 1024)
    assert [default_image_size(info(546, side), config) for side in sides] == [None, None, None, None, 28, 32, 48, 32,
                                                                                 28, 32, 32]  # fmt: skip
    assert default_image_size(info(202, 128, "folder"), config) == 32  # the brain-MRI folder
    assert default_image_size(info(4_999, 224), replace(config, model="resnet_small")) == 28
    assert default_image_size(info(5_000, 224), config) is None  # not a small set
    assert default_image_size(info(89_996, 224), replace(config, limit=500)) == 28  # a quick run is
    assert default_image_size(info(546, 224), replace(config, image_size=224)) is None  # asked
    assert default_image_size(info(546, 224), replace(config, model="transfer:efficientnet_lite0")) is None


def test_a_default_side_is_trained_recorded_and_said(tiny_data_dir):
    # A 64-px MedMNIST file of 40 training images: the Small ResNet trains it at 32 px, and the card and the
    # notes say so; --image-size 64 keeps 64.
    import numpy as np

    write_npz(tiny_data_dir / "medmnist" / "breastmnist_64.npz",
              {k: (np.repeat(np.repeat(v, 3, 1), 3, 2)[:, :64, :64] if "images" in k else v)
               for k, v in tiny_breastmnist_arrays().items()})  # fmt: skip
    statuses = []
    end = run_training(TrainConfig(dataset="breastmnist_64", epochs=1, device="cpu"),
                       lambda event: statuses.append(getattr(event, "message", "")))
    assert end.card.model == "resnet_small" and end.card.image_size == 32 and end.card.training["image_size"] == 32
    assert "Note: the images are trained at 32×32, not 64×64: with a set this small, many epochs at a small size " \
           "learn more than a few at full size in the same time (to keep 64×64: --image-size 64, or 64 px in the " \
           "studio)." in statuses, statuses
    asked = run_training(TrainConfig(dataset="breastmnist_64", epochs=1, device="cpu", image_size=64))
    assert asked.card.image_size == 64 and not any("trained at" in note for note in asked.card.training.get("data_notes", []))


def test_label_smoothing_defaults_to_a_tenth_for_binary_and_large_medmnist_sets_from_scratch_and_is_recorded(tiny_data_dir):
    from cnn_core.data.registry import get_dataset_info
    from cnn_core.runs.commands import cli_command
    from cnn_core.training import TrainConfig, resolve_config
    from cnn_core.training.config import default_label_smoothing

    from dataclasses import replace

    from cnn_core.data.types import DatasetInfo

    def medmnist(classes: int, n_train: int, family: str = "medmnist") -> DatasetInfo:
        return DatasetInfo(name="x", title="x", family=family, class_names=tuple("abcdefghi"[:classes]), channels=1,
                           image_size=28, task="multi-class", splits=("train", "val", "test"), source="",
                           description="", license="", n_samples={"train": n_train, "val": 10, "test": 10}, root=None)

    assert default_label_smoothing(medmnist(9, 89_996), "fastnet32") == 0.1  # PathMNIST
    assert default_label_smoothing(medmnist(2, 546), "fastnet32") == 0.1  # two classes, any size
    assert default_label_smoothing(medmnist(7, 500), "fastnet32") == 0.0  # small multi-class sets: hard targets
    assert default_label_smoothing(medmnist(9, 89_996), "transfer:efficientnet_lite0") == 0.0
    assert default_label_smoothing(medmnist(9, 89_996, family="folder"), "fastnet32") == 0.0
    assert default_label_smoothing(replace(medmnist(10, 60_000), family="mnist"), "fastnet") == 0.0  # stays 99 %+
    info = get_dataset_info("mnist")
    assert resolve_config(TrainConfig(dataset="mnist"), info).label_smoothing == 0.0
    asked = resolve_config(TrainConfig(dataset="mnist", label_smoothing=0.2), info)
    assert asked.label_smoothing == 0.2
    # The recorded command says the value whenever it is not 0 or was asked for, so a rerun trains the same.
    assert "--label-smoothing 0.2" in cli_command(TrainConfig(dataset="mnist", label_smoothing=0.2), asked, "mnist",
                                                  info.task)
    plain = TrainConfig(dataset="mnist")
    assert "--label-smoothing" not in cli_command(plain, resolve_config(plain, info), "mnist", info.task)
    with pytest.raises(ConfigError, match="Label smoothing must be in"):
        resolve_config(TrainConfig(dataset="mnist", label_smoothing=1.0), info)


def test_auto_class_weights_are_square_root_for_two_imbalanced_classes_and_none_for_more(tiny_data_dir):
    import numpy as np

    from cnn_core.training import resolve_config

    def imbalanced(n_classes: int, largest: int) -> dict:
        arrays = {}
        for split in ("train", "val", "test"):
            labels = np.concatenate([np.full(largest if c == 0 else 10, c) for c in range(n_classes)]).astype(np.uint8)
            arrays[f"{split}_images"] = np.zeros((len(labels), 28, 28, 3), np.uint8)
            arrays[f"{split}_labels"] = labels[:, None]
        return arrays

    write_npz(tiny_data_dir / "breastmnist.npz", tiny_breastmnist_arrays({"train": 40, "val": 20, "test": 10}))
    write_npz(tiny_data_dir / "medmnist" / "dermamnist.npz", imbalanced(7, 300))  # 30:1, DermaMNIST's kind
    write_npz(tiny_data_dir / "medmnist" / "pneumoniamnist.npz", imbalanced(2, 30))  # 3:1
    data.clear_caches()
    resolved = {name: resolve_config(TrainConfig(dataset=name), data.get_dataset_info(name)).class_weights
                for name in ("breastmnist", "dermamnist", "pneumoniamnist")}
    assert resolved == {"breastmnist": "none", "dermamnist": "none", "pneumoniamnist": "sqrt"}
    asked = TrainConfig(dataset="dermamnist", class_weights="balanced")
    assert resolve_config(asked, data.get_dataset_info("dermamnist")).class_weights == "balanced"


def test_balanced_class_weights_make_each_class_weigh_the_same():
    import torch

    from cnn_core.training.loop import loss_weights

    labels = torch.tensor([0] * 30 + [1] * 10)
    weights = loss_weights("balanced", labels, 3)  # class 2 absent
    assert torch.allclose(weights, torch.tensor([40 / (3 * 30), 40 / (3 * 10), 0.0]))
    assert torch.allclose(weights[labels].sum() / len(labels), torch.tensor(2 / 3))  # 30 * w0 == 10 * w1
    assert torch.allclose(loss_weights("sqrt", labels, 3), weights.sqrt())  # halfway on a log scale
    assert loss_weights("none", labels, 3) is None


def test_weight_average_is_an_exponential_moving_average_of_weights_and_batchnorm_statistics():
    from cnn_core.training.loop import weight_average

    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.BatchNorm1d(2))
    assert weight_average(model, 0.0) is None
    average = weight_average(model, 0.9)
    snapshots = []
    for value in (1.0, 3.0, 5.0):
        with torch.no_grad():
            model[0].weight.fill_(value)
            model[1].running_mean.fill_(value)
        average.update_parameters(model)
        snapshots.append(value)
    # the first update copies; then average = d * average + (1 - d) * weights, d = min(0.9, (1 + n) / (10 + n))
    expected = 1.0
    for n, value in enumerate(snapshots[1:], start=1):
        decay = min(0.9, (1 + n) / (10 + n))  # 2/11, then 3/12: the warm-up
        expected = decay * expected + (1 - decay) * value
    assert torch.allclose(average.module[0].weight, torch.full((2, 2), expected))
    assert torch.allclose(average.module[1].running_mean, torch.full((2,), expected))
    assert model[0].weight[0, 0].item() == 5.0  # the model itself is untouched


def test_a_run_with_an_ema_validates_and_saves_the_average_and_records_its_decay(tiny_data_dir, tmp_path):
    from cnn_core.models.checkpoints import load_checkpoint
    from cnn_core.runs.commands import cli_command
    from cnn_core.training import TrainConfig, resolve_config, run_training
    from cnn_core.data.registry import get_dataset_info

    # 8 steps: with the warm-up the average is a blend of all of them, unlike the last step's weights
    frozen = run_training(TrainConfig(dataset="mnist", model="simple_cnn", epochs=2, batch_size=16, limit=64,
                                      monitor="last", ema_decay=0.999999, out=str(tmp_path / "ema.safetensors")))
    plain = run_training(TrainConfig(dataset="mnist", model="simple_cnn", epochs=2, batch_size=16, limit=64,
                                     monitor="last", out=str(tmp_path / "plain.safetensors")))
    assert frozen.card.training["ema_decay"] == 0.999999 and plain.card.training["ema_decay"] == 0.0
    ema_state = load_checkpoint(tmp_path / "ema.safetensors").model.state_dict()
    plain_state = load_checkpoint(tmp_path / "plain.safetensors").model.state_dict()
    moved = [name for name, value in plain_state.items() if value.is_floating_point()
             and not torch.allclose(value, ema_state[name], atol=1e-4)]
    assert moved, "the saved weights are the trained ones, not their average"
    info = get_dataset_info("mnist")
    config = TrainConfig(dataset="mnist", ema_decay=0.999)
    assert "--ema-decay 0.999" in cli_command(config, resolve_config(config, info), "mnist", info.task)
    with pytest.raises(ConfigError, match="EMA decay must be in"):
        resolve_config(TrainConfig(dataset="mnist", ema_decay=1.0), info)


def test_resizing_a_fixed_size_set_says_so():
    # `--image-size 64` on DermaMNIST trained on 28-px images scaled up, and nothing said so.
    from cnn_core import data
    from cnn_core.training.prepare import _resize_note

    derma = data.get_dataset_info("dermamnist")
    assert _resize_note(derma, 28, 64) == ("its 28×28 images are resized to 64×64 (--image-size), which adds no "
                                           "detail; MedMNIST's own 64×64 images are the set dermamnist_64",)
    assert _resize_note(derma, 28, 20) == ("its 28×28 images are resized to 20×20 (--image-size)",)
    assert _resize_note(derma, 28, None) == () and _resize_note(derma, 28, 28) == ()
