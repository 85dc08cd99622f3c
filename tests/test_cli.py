"""The CLI's commands and its errors: one clear line and exit status 2, never a traceback."""

import json
import re
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cnn_core.cli import build_parser, config_from_args, main
from cnn_core.data.augment import AugmentConfig
from data_fixtures import tiny_breastmnist_arrays, write_npz

ROOT = Path(__file__).resolve().parents[1]


def run_cli(*args, env=None):
    """The CLI as a user runs it, in a subprocess."""
    return subprocess.run(
        [sys.executable, "-m", "cnn_core", *args], cwd=ROOT, capture_output=True, text=True, env=env or os.environ.copy(), timeout=300
    )


def test_help_on_every_command():
    for command in ([], ["datasets"], ["models"], ["train"], ["evaluate"], ["predict"], ["download"], ["export"],
                    ["summary"]):
        result = run_cli(*command, "--help")
        assert result.returncode == 0, result.stderr
        assert "usage:" in result.stdout


def test_datasets_and_models(tiny_data_dir, capsys):
    assert main(["datasets", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["mnist"]["available"] and rows["pathmnist"]["available"] and rows["scans"]["available"]
    assert not rows["dermamnist"]["available"] and "dermamnist" in rows["dermamnist"]["how_to_get"]
    assert main(["models"]) == 0
    assert "fastnet" in capsys.readouterr().out


def test_train_evaluate_predict(tiny_data_dir, tmp_path, capsys):
    out = tmp_path / "digits.safetensors"
    assert main(["train", "--data", "mnist", "--epochs", "2", "--batch-size", "32", "--out", str(out), "--json"]) == 0
    captured = capsys.readouterr()
    summary = json.loads(captured.out.strip().splitlines()[-1])
    assert summary["epochs_run"] == 2 and summary["train_seconds"] > 0
    assert f"Checkpoint: {out}" in captured.err
    # without --out nothing is saved, and the last line says so (a student looked for the file to evaluate)
    assert main(["train", "--data", "mnist", "--epochs", "1", "--batch-size", "32"]) == 0
    assert capsys.readouterr().err.rstrip().endswith("No checkpoint was saved: add --out FILE.safetensors to keep one.")
    assert 0 <= summary["test_metrics"]["accuracy"] <= 1
    card = json.loads(out.with_suffix(".json").read_text())
    assert card["command"].startswith("python -m cnn_core train --data mnist")
    assert main(["evaluate", "--checkpoint", str(out), "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["accuracy"] == pytest.approx(summary["test_metrics"]["accuracy"], abs=1e-6)
    for key in ("auroc", "kappa"):
        assert key in metrics
    # as `train` and the studio say them: rates in percent, Cohen's kappa (-1 to 1) a number
    assert main(["evaluate", "--checkpoint", str(out)]) == 0
    lines = {line.split()[0]: line.split(maxsplit=1)[1] for line in capsys.readouterr().out.splitlines()[1:]}
    assert lines["accuracy"] == f"{100 * metrics['accuracy']:.2f} %" and lines["auroc"].endswith(" %")
    assert lines["kappa"] == f"{metrics['kappa']:.4f}"
    from PIL import Image, ImageDraw

    image = tmp_path / "digit seven.png"
    seven = Image.new("L", (40, 40), 255)
    ImageDraw.Draw(seven).line([(10, 8), (30, 8), (18, 34)], fill=0, width=3)
    seven.save(image)
    assert main(["predict", "--checkpoint", str(out), str(image), "--json"]) == 0
    line = json.loads(capsys.readouterr().out)
    assert line["label"] in card["class_names"]
    assert isinstance(line["trustworthy"], bool) and line["trust"] and "centre of mass" in line["prepared"][0]
    blank = tmp_path / "blank.png"
    Image.new("L", (40, 40), 0).save(blank)
    assert main(["predict", "--checkpoint", str(out), str(blank), str(image), "--json"]) == 2  # one refused
    first, second = (json.loads(text) for text in capsys.readouterr().out.splitlines())
    assert "No digit found in 'blank.png'" in first["error"] and second["label"] in card["class_names"]
    assert main(["predict", "--checkpoint", str(out), str(blank), "--raw", "--json"]) == 0  # only resized
    assert "scaled from 40×40" in json.loads(capsys.readouterr().out)["prepared"][0]


def test_a_checkpoint_of_a_folder_named_by_its_path_is_evaluated_on_it(tiny_data_dir, tmp_path, capsys):
    from data_fixtures import write_class_folder

    from cnn_core import data

    folder = tmp_path / "my_scans"
    write_class_folder(folder / "calm", bright=False)
    write_class_folder(folder / "storm", bright=True)
    out = tmp_path / "scans.safetensors"
    assert main(["train", "--data", str(folder), "--model", "simple_cnn", "--epochs", "1", "--batch-size", "4",
                 "--image-size", "16", "--out", str(out)]) == 0
    data.clear_caches(forget_registered=True)  # a new process: the folder's name is registered no more
    capsys.readouterr()
    assert main(["evaluate", "--checkpoint", str(out), "--json"]) == 0  # the card's path
    assert json.loads(capsys.readouterr().out)["n"] >= 1
    assert main(["evaluate", "--checkpoint", str(out), "--data", str(folder), "--json"]) == 0  # the path again
    assert json.loads(capsys.readouterr().out)["n"] >= 1
    # The folder changed since training (ultralytics#13936): a class added shifts every label (a torchmetrics
    # traceback before), a class renamed swapped them (a silent 0 %). Either is refused with what changed.
    (folder / "storm").rename(folder / "breeze")
    data.clear_caches(forget_registered=True)
    assert main(["evaluate", "--checkpoint", str(out), "--json"]) == 2
    assert "has the classes breeze, calm, but the checkpoint was trained on calm, storm (new: breeze; gone: storm)" \
        in capsys.readouterr().err


def test_a_card_names_the_data_and_cache_folders_by_their_variables(tiny_data_dir, capsys):
    # A student's downloaded card (and the checkpoint holding it, and its TensorBoard hparams) named the
    # server's folders: training.out /srv/.../runs/x.safetensors, training.dataset /srv/.../uploads/<id>/cats.
    from data_fixtures import write_class_folder

    from cnn_core import data, settings
    from cnn_core.models.checkpoints import load_checkpoint

    folder = tiny_data_dir / "weather"
    write_class_folder(folder / "calm", bright=False)
    write_class_folder(folder / "storm", bright=True)
    out = settings.cache_dir() / "mine" / "weather.safetensors"
    assert main(["train", "--data", str(folder), "--model", "simple_cnn", "--epochs", "1", "--batch-size", "4",
                 "--image-size", "16", "--out", str(out)]) == 0
    training = load_checkpoint(out).card.training
    assert training["dataset"] == "$CNN_DATA_DIR/weather" and training["out"] == "$CNN_CACHE_DIR/mine/weather.safetensors"
    assert str(tiny_data_dir) not in json.dumps(training)  # the command keeps what the CLI's user typed
    data.clear_caches(forget_registered=True)
    capsys.readouterr()
    assert main(["evaluate", "--checkpoint", str(out), "--json"]) == 0  # the card's folder, found again
    assert json.loads(capsys.readouterr().out)["n"] >= 1
    assert main(["train", "--data", "$CNN_DATA_DIR/weather", "--model", "simple_cnn", "--epochs", "1",
                 "--batch-size", "4", "--image-size", "16", "--out", str(out)]) == 0  # as a studio card's command says
    by_number = settings.cache_dir() / "by_number"  # folders named by label number, as MedMNIST labels are
    write_class_folder(by_number / "0", bright=False)
    write_class_folder(by_number / "1", bright=True)
    capsys.readouterr()
    assert main(["evaluate", "--checkpoint", str(out), "--images", str(by_number), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["n"] >= 2
    write_class_folder(by_number / "2", bright=True)
    assert main(["evaluate", "--checkpoint", str(out), "--images", str(by_number)]) == 2
    assert "classes ('calm', 'storm') or by their numbers (0 to 1), or images whose label table or file names " \
        "give those classes; 2 is none of them." in capsys.readouterr().err
    # no class folders: a label table gives the classes, as a training folder's may (Kaggle's train.csv)
    from PIL import Image

    tabled = settings.cache_dir() / "tabled"
    (tabled / "images").mkdir(parents=True)
    for index in range(7):
        Image.new("RGB", (20, 20), (40 if index % 2 else 220,) * 3).save(tabled / "images" / f"scan{index}.png")
    rows = ["file,label"] + [f"scan{index},{'calm' if index % 2 else 'storm'}" for index in range(6)]  # one unlabelled
    (tabled / "labels.csv").write_text("\n".join(rows) + "\n")
    capsys.readouterr()
    assert main(["evaluate", "--checkpoint", str(out), "--images", str(tabled), "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["files"] == 6 and metrics["unlabelled"] == 1 and metrics["n"] == 6
    wrapped = settings.cache_dir() / "wrapped"  # Windows' Extract All: wrapped/wrapped/{calm,storm}
    for name, bright in (("calm", False), ("storm", True)):
        write_class_folder(wrapped / "wrapped" / name, bright=bright)
    assert main(["evaluate", "--checkpoint", str(out), "--images", str(wrapped), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["files"] == 2 * len(list((wrapped / "wrapped" / "calm").rglob("*.*")))
    named = settings.cache_dir() / "named"  # or the file names do (Kaggle's Dogs vs. Cats: cat.0.jpg)
    named.mkdir()
    for index in range(2):  # too few to name classes on their own: read against the checkpoint's
        for name, value in (("calm", 40), ("Storm", 220)):
            Image.new("RGB", (20, 20), (value,) * 3).save(named / f"{name}.{index}.png")
    Image.new("RGB", (20, 20)).save(named / "IMG_0001.png")
    assert main(["evaluate", "--checkpoint", str(out), "--images", str(named), "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["files"] == 4 and metrics["unlabelled"] == 1


def test_binary_evaluate_has_sensitivity_and_specificity(tiny_data_dir, tmp_path, capsys):
    out = tmp_path / "breast.safetensors"
    assert main(["train", "--data", "breastmnist", "--model", "simple_cnn", "--epochs", "1", "--batch-size", "8", "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["evaluate", "--checkpoint", str(out), "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert {"sensitivity", "specificity", "accuracy", "auroc", "kappa"} <= set(metrics)


@pytest.mark.parametrize(
    "args,message",
    [
        (["train", "--data", "nosuchdata", "--out", "x"], "nosuchdata"),
        (["train", "--data", "dermamnist", "--out", "x"], "dermamnist"),
        (["train", "--data", "mnist", "--model", "nosuchmodel"], "Unknown model"),
        (["train", "--data", "mnist", "--lr", "-1"], "Learning rate"),
        (["train", "--data", "mnist", "--batch-size", "1"], "Batch size must be at least 2"),
        (["evaluate", "--checkpoint", "/nonexistent/ckpt.safetensors"], "No checkpoint"),
        (["predict", "--checkpoint", "/nonexistent/ckpt.safetensors", "x.png"], "No checkpoint"),
        (["train", "--data"], "expected one argument"),
        (["summary", "--model", "fastnet"], "--model NAME with --data NAME"),
        (["summary", "--checkpoint", "x.safetensors", "--model", "fastnet", "--data", "mnist"], "--checkpoint PATH"),
        (["summary", "--model", "nosuchmodel", "--data", "mnist"], "Unknown model"),
        (["summary", "--checkpoint", "/nonexistent/ckpt.safetensors"], "No checkpoint"),
        (["frobnicate"], "invalid choice"),
        (["train", "--data", "mnist", "--optimizer", "sgd", "--momentum", "-5"], "Momentum must be in [0, 1)"),
        (["train", "--data", "mnist", "--weight-decay", "nan"], "Weight decay must be between 0 and 1"),
        (["train", "--data", "mnist", "--weight-decay", "inf"], "Weight decay must be between 0 and 1"),
        (["train", "--data", "mnist", "--seed", "99999999999999999999"], "The seed must be a whole number"),
        (["train", "--data", "mnist", "--model-arg", "width=abc"], "must be a whole number (default 16); got 'abc'"),
        (["train", "--data", "mnist", "--model-arg", "colour=3"], "takes no argument 'colour'"),
        # found before training, not after it with the weights lost
        (["train", "--data", "mnist", "--out", "/dev/null/digits.safetensors"], "cannot be saved as /dev/null/"),
        (["train", "--data", "mnist", "--out", "x" * 300], "File name too long"),
        (["predict", "--checkpoint", "README.md", "README.md"], "is a text file, not a checkpoint"),
    ],
)
def test_errors_are_one_clear_line_with_status_2(tiny_data_dir, args, message, capfd):
    """In this process (an exception that escaped would fail the test; `capfd` also sees what C libraries
    write to the error stream); `test_errors_in_a_real_process_are_one_line_and_status_2` runs two of them as
    a user does."""
    try:
        code = main(args)
    except SystemExit as exit_:  # argparse's usage errors
        code = exit_.code
    stderr = capfd.readouterr().err
    assert code == 2
    assert message in stderr
    assert len(stderr.strip().splitlines()) <= 2


@pytest.mark.parametrize("args,message", [(["frobnicate"], "invalid choice"),
                                          (["train", "--data", "nosuchdata"], "nosuchdata")])
def test_errors_in_a_real_process_are_one_line_and_status_2(tiny_data_dir, args, message):
    result = run_cli(*args)
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) <= 2, result.stderr


def test_bad_checkpoint_file(tiny_data_dir, tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"garbage" * 10)
    result = run_cli("evaluate", "--checkpoint", str(bad))
    assert result.returncode == 2 and "Traceback" not in result.stderr and "bad.safetensors" in result.stderr


def _train_config(*args):
    """The TrainConfig `train` builds from these arguments (nothing trains)."""
    return config_from_args(build_parser().parse_args(["train", *args]))


def _monitor(*args):
    """The monitor the run of these arguments keeps its checkpoint by, "auto" resolved (nothing trains)."""
    from cnn_core import data
    from cnn_core.training import resolve_config

    config = _train_config(*args)
    return resolve_config(config, data.get_dataset_info(config.dataset)).monitor


def test_monitor_follows_the_models_hint_and_the_data_unless_given(tiny_data_dir):
    lite0 = "transfer:efficientnet_lite0"
    assert _train_config("--data", "scans", "--model", lite0).monitor == "auto"
    assert _monitor("--data", "scans", "--model", lite0) == "last"  # tiny validation sets
    assert _monitor("--data", "scans", "--model", lite0, "--monitor", "val_accuracy") == "val_accuracy"
    assert _monitor("--data", "scans", "--model", lite0, "--monitor", "val_loss") == "val_loss"
    # early stopping watches a validation score: --patience alone means the best validation balanced accuracy
    # for this two-class set (plain accuracy would reward guessing the larger class)
    assert _monitor("--data", "scans", "--model", lite0, "--patience", "3") == "val_balanced_accuracy"
    # the tiny sets' validation classes hold a few images each: their scores cannot choose an epoch
    assert _monitor("--data", "scans", "--model", "fastnet") == "last"
    assert _monitor("--data", "mnist") == "last"
    assert _monitor("--data", "mnist", "--patience", "2") == "val_accuracy"
    assert _monitor("--data", "mnist", "--model", "lenet", "--monitor", "val_auroc") == "val_auroc"


def test_monitor_keeps_the_last_epoch_when_a_validation_class_has_under_ten_images(tiny_data_dir):
    from cnn_core import data
    from cnn_core.training.config import MIN_VAL_IMAGES_PER_CLASS, smallest_validation_class

    assert MIN_VAL_IMAGES_PER_CLASS == 10
    # binary: 10 validation images per class is enough for balanced accuracy (plain accuracy rewards guessing
    # the larger class); 9 in one class is not
    write_npz(tiny_data_dir / "breastmnist.npz", tiny_breastmnist_arrays({"train": 40, "val": 20, "test": 4}))
    data.clear_caches()
    assert smallest_validation_class(data.get_dataset_info("breastmnist")) == 10
    assert _monitor("--data", "breastmnist") == "val_balanced_accuracy"
    assert _monitor("--data", "breastmnist", "--limit", "18") == "last"  # 9 per class after the subset
    write_npz(tiny_data_dir / "breastmnist.npz", tiny_breastmnist_arrays({"train": 40, "val": 19, "test": 4}))
    data.clear_caches()
    assert smallest_validation_class(data.get_dataset_info("breastmnist")) == 9  # labels alternate: 10 and 9
    assert _monitor("--data", "breastmnist") == "last"
    # more classes: accuracy, even when imbalanced (a recall averaged over classes with a few validation images
    # each picked worse epochs on PathMNIST subsets)
    for n_val, smallest, monitor in ((70, 10, "val_accuracy"), (69, 9, "last"), (28, 0, "last")):
        arrays = tiny_breastmnist_arrays({"train": 14, "val": n_val, "test": 4})
        arrays["train_labels"] = (np.arange(14) % 7).astype(np.uint8)[:, None]
        arrays["val_labels"] = (np.arange(n_val) % (7 if n_val > 28 else 4)).astype(np.uint8)[:, None]
        write_npz(tiny_data_dir / "dermamnist.npz", arrays)  # 28: three of the seven classes have none
        data.clear_caches()
        assert smallest_validation_class(data.get_dataset_info("dermamnist")) == smallest
        assert _monitor("--data", "dermamnist") == monitor
    assert smallest_validation_class(data.get_dataset_info("chestmnist")) is None  # multi-label: no rule


def test_augmentation_flags_start_from_the_data_sets_default(tiny_data_dir):
    assert _train_config("--data", "mnist").augment is None  # the trainer picks what suits the data set
    assert _train_config("--data", "mnist", "--shift", "3").augment == AugmentConfig(shift=3)
    assert _train_config("--data", "pathmnist", "--no-vflip", "--color-jitter", "0").augment == AugmentConfig(
        shift=2, hflip=True, vflip=False, color_jitter=0.0, rotate90=True, grayscale=0.25)
    assert _train_config("--data", "pathmnist", "--no-rotate90", "--grayscale", "0.5").augment == AugmentConfig(
        shift=2, hflip=True, vflip=True, color_jitter=0.1, rotate90=False, grayscale=0.5)
    assert _train_config("--data", "pathmnist").tta and not _train_config("--data", "pathmnist", "--no-tta").tta
    assert _train_config("--data", "mnist", "--shift", "0", "--hflip", "--no-vflip", "--color-jitter", "0.2"
                         ).augment == AugmentConfig(shift=0, hflip=True, vflip=False, color_jitter=0.2)


def test_one_epoch_reads_in_the_singular(tiny_data_dir, capsys):
    assert main(["train", "--data", "mnist", "--epochs", "1", "--batch-size", "32", "--limit", "64"]) == 0
    err = capsys.readouterr().err
    assert " for 1 epoch\n" in err and " 1 epoch (best 1)" in err
    assert "1 epochs" not in err


def test_a_web_page_saved_as_a_checkpoint_is_named_in_one_line(tiny_data_dir, tmp_path):
    page = tmp_path / "model.pt"
    page.write_text("<!DOCTYPE html><html><body>Too many requests</body></html>")
    result = run_cli("predict", "--checkpoint", str(page), str(tmp_path / "x.png"))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "model.pt is a web page, not a checkpoint" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def _class_of_pictures(folder, count: int, value: int) -> None:
    folder.mkdir(parents=True)
    for i in range(count):
        Image.fromarray(np.full((16, 16), (value + 7 * i) % 256, np.uint8)).save(folder / f"{i}.png")


def test_a_too_small_class_is_warned_about_and_its_undefined_metrics_are_na(tiny_data_dir):
    # 30 normal and 2 tumour images (from a public report): both tumour images must not silently yield
    # "Test accuracy 100 %, sensitivity 0.0"; the run warns and reports what cannot be measured as n/a.
    root = tiny_data_dir / "scans_small"
    _class_of_pictures(root / "normal", 30, 20)
    _class_of_pictures(root / "tumour", 2, 220)
    result = run_cli("train", "--data", "scans_small", "--model", "simple_cnn", "--epochs", "1", "--batch-size", "8",
                     "--out", str(tiny_data_dir.parent / "ckpt" / "small.safetensors"), "--json")
    assert result.returncode == 0, result.stderr
    assert "Note: class 'tumour' has only 2 image(s)" in result.stderr
    assert "ROC-AUC n/a (no 'tumour' image in the split)" in result.stderr
    metrics = json.loads(result.stdout.strip().splitlines()[-1])["test_metrics"]
    assert metrics["sensitivity"] is None and metrics["auroc"] is None and metrics["f1"] is None
    assert metrics["undefined"]["sensitivity"] == "no 'tumour' image in the split"
    model_card = (tiny_data_dir.parent / "ckpt" / "small.md").read_text()
    assert "| sensitivity (tumour) | n/a (no 'tumour' image in the split) |" in model_card
    assert "- Data note: class 'tumour' has only 2 image(s)" in model_card


def test_a_class_without_a_readable_image_is_refused_before_training(tiny_data_dir):
    root = tiny_data_dir / "pets_broken"
    _class_of_pictures(root / "cat", 12, 40)
    (root / "dog").mkdir()
    for i in range(4):
        (root / "dog" / f"IMG_{i}.jpg").write_bytes(b"\xff\xd8\xff\xe0 cut off after the header")
    result = run_cli("train", "--data", "pets_broken", "--model", "simple_cnn", "--epochs", "1")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Class 'dog' (4 unreadable file(s), e.g. dog/IMG_0.jpg, dog/IMG_1.jpg, dog/IMG_2.jpg) of pets_broken " \
           "has no readable image" in result.stderr


def test_training_on_a_kaggle_split_folder_uses_its_test_folder(tiny_data_dir):
    root = tiny_data_dir / "pets_split"
    for split, count in (("train", 24), ("test", 5)):
        _class_of_pictures(root / split / "cat", count, 30)
        _class_of_pictures(root / split / "dog", count, 180)
    result = run_cli("train", "--data", "pets_split", "--model", "simple_cnn", "--epochs", "1", "--batch-size", "8",
                     "--out", str(tiny_data_dir.parent / "pets.safetensors"), "--json")
    assert result.returncode == 0, result.stderr
    metrics = json.loads(result.stdout.strip().splitlines()[-1])["test_metrics"]
    assert metrics["n"] == 10  # the test/ folder's images, not a split carved from everything
    card = json.loads((tiny_data_dir.parent / "pets.json").read_text())
    assert card["class_names"] == ["cat", "dog"]


def test_running_out_of_memory_is_one_line_and_status_2(monkeypatch, capsys):
    # A MedMNIST_224 split on a laptop: torch's allocator raised a RuntimeError and the CLI printed a traceback
    # (exit status 1); a bug keeps its traceback.
    from cnn_core import cli

    for failure in (RuntimeError("[enforce fail at alloc_cpu.cpp:121] data. DefaultCPUAllocator: can't allocate "
                                 "memory: you tried to allocate 147456000 bytes. Error code 12"), MemoryError()):
        def raise_it(args, failure=failure):
            raise failure

        monkeypatch.setattr(cli, "cmd_datasets", raise_it)
        assert cli.main(["datasets"]) == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: this computer ran out of memory (")
        assert "--batch-size" in lines[0]

    def bug(args):
        raise RuntimeError("mat1 and mat2 shapes cannot be multiplied")

    monkeypatch.setattr(cli, "cmd_datasets", bug)
    with pytest.raises(RuntimeError, match="shapes cannot be multiplied"):
        cli.main(["datasets"])


def test_in_a_log_the_progress_bar_is_redrawn_around_the_epoch_lines_not_at_every_step(tiny_data_dir):
    # Captured output (a log file, a notebook, a job scheduler) filled with one tqdm redraw per step: 16,896 for
    # PathMNIST. Off a terminal the bar redraws every 30 s, and around the epoch lines.
    result = run_cli("train", "--data", "mnist", "--model", "simple_cnn", "--epochs", "3", "--batch-size", "2")
    assert result.returncode == 0, result.stderr
    steps = int(re.search(r"\| (\d+)/\1 \[", result.stderr).group(1))
    assert steps >= 300 and result.stderr.count("\r") <= 12, result.stderr[-2000:]  # one carriage return a redraw
    assert result.stderr.count("epoch 3: train loss") == 1


def test_output_that_cannot_be_written_is_one_line_not_a_traceback(tmp_path):
    # `predict --json ... | head -1` ended in a BrokenPipeError traceback; `> /dev/full` in an OSError one
    import subprocess
    import sys

    command = [sys.executable, "-m", "cnn_core", "models"]
    piped = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    piped.stdout.close()  # the reader has gone before the output comes, as `head -1` after its line
    assert piped.wait(timeout=120) == 1 and piped.stderr.read() == b""
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full on this system")
    with open("/dev/full", "w") as full:
        done = subprocess.run(command, stdout=full, stderr=subprocess.PIPE, text=True, timeout=120)
    assert done.returncode == 2 and done.stderr == "error: the output could not be written (No space left on device).\n"
