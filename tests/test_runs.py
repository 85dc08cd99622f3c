"""The background run manager: real training on the tiny data sets, cancel, the queue, errors."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import sqlite3
import sys
import threading
import time
import types
from contextlib import closing
from dataclasses import fields, replace
from pathlib import Path

import pytest
import run_trainers
import torch

from cnn_core import data
from cnn_core.errors import CnnError, ConfigError, DataError
from cnn_core.data.augment import AugmentConfig
from cnn_core.cli import build_parser, config_from_args
from cnn_core.runs import (
    RunBusyError,
    RunManager,
    RunStatus,
    RunStore,
    check_run_config,
    cli_command,
    default_max_concurrent,
    format_seconds,
    misclassified_examples,
    smooth,
)
from cnn_core.runs.worker import process_token
from cnn_core.settings import runs_dir
from cnn_core.training import TrainConfig, train

QUICK = dict(dataset="mnist", model="fastnet", epochs=1, batch_size=32, lr=0.01)
# Long enough to still be training when a test acts on it (tiny MNIST: 28 steps per epoch at batch 8).
LONG = dict(dataset="mnist", model="fastnet", epochs=1000, batch_size=8, lr=0.01)


def _wait_until(predicate, timeout: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def test_a_run_completes_with_events_metrics_gallery_and_checkpoint(tiny_data_dir):
    manager = RunManager(max_concurrent=1)
    run_id = manager.submit("alice", TrainConfig(**QUICK))
    snap = manager.wait(run_id, timeout=120)
    assert snap.status is RunStatus.FINISHED, snap.error
    assert snap.start is not None and snap.start.n_train == 220 and snap.start.epochs == 1
    assert snap.batches and [b.step for b in snap.batches] == sorted(b.step for b in snap.batches)
    assert len(snap.epochs) == 1
    assert snap.end.test_metrics["n"] == 60
    assert snap.end.test_probs is None  # the big tensors are let go once the gallery is built
    # Kept runs pin no live model (the trainer's start event carries the network being trained).
    assert not any(isinstance(getattr(snap.start, f.name), torch.nn.Module) for f in fields(snap.start))
    progress = snap.progress()
    assert progress.fraction == 1.0 and progress.eta == 0.0 and progress.elapsed > 0
    # The checkpoint lands in the runs folder (what list_checkpoints shows the prediction page).
    path = Path(snap.checkpoint_path)
    assert path.parent == runs_dir() and path.is_file() and path.with_suffix(".json").is_file()
    card = json.loads(path.with_suffix(".json").read_text())
    assert card["command"].startswith("python -m cnn_core train --data mnist --model fastnet --epochs 1")
    assert card["dataset"] == "mnist" and card["metrics"]["test"]["n"] == 60
    # Misclassified images: really wrong, most confident first, images of the test split.
    wrong = snap.misclassified
    n_wrong = round((1 - snap.test_accuracy) * 60)
    assert len(wrong) == min(n_wrong, 32)
    assert all(m.true_label != m.predicted_label for m in wrong)
    assert [m.confidence for m in wrong] == sorted((m.confidence for m in wrong), reverse=True)
    test_images = data.load_split("mnist", "test").images
    for m in wrong:
        assert m.image.dtype == torch.uint8 and torch.equal(m.image, test_images[m.index])
    assert manager.latest_run("alice").id == run_id and manager.active_run("alice") is None


def test_cancel_stops_a_run_within_a_second_and_keeps_the_best_weights(tiny_data_dir):
    manager = RunManager(max_concurrent=1)
    run_id = manager.submit("bob", TrainConfig(**LONG))
    _wait_until(lambda: len(manager.snapshot(run_id).batches) >= 3, what="the first batches")
    asked = time.monotonic()
    assert manager.cancel(run_id)
    steps_at_cancel = manager.snapshot(run_id).batches[-1].step
    snap = manager.wait(run_id, timeout=5.0)
    # The loop checks the flag before every batch: at most the batch in flight finishes. Stopping takes
    # 0.1-0.4 s here; the bound leaves room for a shared, busy test machine.
    assert time.monotonic() - asked < 2.0
    assert snap.batches[-1].step <= steps_at_cancel + 1
    assert snap.status is RunStatus.CANCELLED and snap.end.cancelled
    assert snap.end.epochs_run < 1000 and snap.end.best_epoch >= 1
    progress = snap.progress()  # the steps taken, as the stop line says them (batch events may lag a step or two)
    assert progress.step == snap.end.steps >= snap.batches[-1].step and progress.epoch == -(-snap.end.steps // 28)
    assert progress.fraction == snap.end.steps / (1000 * 28) and progress.eta is None
    assert Path(snap.checkpoint_path).is_file()
    assert not manager.cancel(run_id)  # already over


def test_a_run_cancelled_before_its_first_batch_keeps_no_checkpoint(tiny_data_dir):
    manager = RunManager(max_concurrent=1, trainer=run_trainers.cancelled_at_once)
    run_id = manager.submit("carol", TrainConfig(**QUICK))
    snap = manager.wait(run_id, timeout=60)
    assert snap.status is RunStatus.CANCELLED
    assert snap.checkpoint_path is None and "no checkpoint" in snap.note
    assert not [path for path in runs_dir().iterdir() if run_id[:6] in path.name]  # weights, card, model card


def test_the_concurrency_limit_queues_runs_and_says_how_many_are_ahead(tiny_data_dir):
    manager = RunManager(max_concurrent=1)
    first = manager.submit("a", TrainConfig(**LONG))
    second = manager.submit("b", TrainConfig(**LONG))
    third = manager.submit("c", TrainConfig(**LONG))
    assert manager.snapshot(first).status is RunStatus.RUNNING
    assert manager.snapshot(second).status is RunStatus.QUEUED and manager.snapshot(second).queue_ahead == 1
    assert manager.snapshot(third).queue_ahead == 2
    assert manager.load() == (1, 2)
    # A queued run stops at once; the one behind it moves up.
    assert manager.cancel(third)
    assert manager.snapshot(third).status is RunStatus.CANCELLED and manager.snapshot(third).start is None
    manager.cancel(first)
    _wait_until(lambda: manager.snapshot(second).status is RunStatus.RUNNING, what="the queued run to start")
    assert manager.snapshot(second).queue_ahead == 0
    manager.cancel(second)
    assert manager.wait(second, timeout=10).status is RunStatus.CANCELLED


def test_one_active_run_per_owner(tiny_data_dir):
    manager = RunManager(max_concurrent=2)
    run_id = manager.submit("dave", TrainConfig(**LONG))
    with pytest.raises(RunBusyError, match="already have a run"):
        manager.submit("dave", TrainConfig(**QUICK))
    manager.cancel(run_id)
    manager.wait(run_id, timeout=10)
    again = manager.submit("dave", TrainConfig(**QUICK))  # allowed once the first is over
    assert manager.wait(again, timeout=120).status is RunStatus.FINISHED
    assert [(number, snap.id) for number, snap in manager.runs_for("dave")] == [(1, run_id), (2, again)]


def test_a_run_keeps_its_number_when_more_runs_come_than_the_studio_shows(tiny_data_dir):
    # The compare table numbered its last 10 runs 1-10 by position: the 11th run renamed every run before it.
    from cnn_core.runs import RUNS_SHOWN_PER_OWNER

    store, config = RunStore(), TrainConfig(**QUICK)
    resolved, info = check_run_config(config)
    ids = [f"{index:032x}" for index in range(RUNS_SHOWN_PER_OWNER + 2)]
    for index, run_id in enumerate(ids):
        store.create_run(run_id, "una", config, resolved, info.title, status=RunStatus.FINISHED)
        if index == 3:  # somebody else's run in between takes no number of hers
            store.create_run("f" * 32, "vic", config, resolved, info.title, status=RunStatus.FINISHED)
    shown = RunManager(max_concurrent=1, store=store).runs_for("una")
    assert [(number, snap.id) for number, snap in shown] == list(enumerate(ids, 1))[2:]
    assert store.run_numbers("una") == {run_id: number for number, run_id in enumerate(ids, 1)}
    assert store.run_numbers("vic") == {"f" * 32: 1}


def test_a_four_step_one_cycle_run_finishes(tiny_data_dir):
    # A classroom quick run: OneCycleLR cannot schedule 4 steps (it divided by zero); the rate stays constant.
    config = TrainConfig(dataset="mnist", model="fastnet", epochs=1, batch_size=16, lr=0.01, limit=50,
                         schedule="onecycle")
    manager = RunManager(max_concurrent=1)
    snap = manager.wait(manager.submit("jo", config), timeout=120)
    assert snap.status is RunStatus.FINISHED, snap.error
    assert [b.lr for b in snap.batches] == [0.01] * 4


def test_divergence_ends_the_run_with_its_message(tiny_data_dir):
    manager = RunManager(max_concurrent=1)
    config = TrainConfig(dataset="mnist", model="simple_cnn", epochs=3, batch_size=16, lr=10.0, optimizer="sgd",
                         log_every=1)
    snap = manager.wait(manager.submit("erin", config), timeout=120)
    assert snap.status is RunStatus.FAILED
    assert "diverged" in snap.error and "Lower the learning rate" in snap.error
    assert manager.active_run("erin") is None  # the slot is free again


def test_an_unexpected_failure_is_reported_not_swallowed(tiny_data_dir):
    manager = RunManager(max_concurrent=1, trainer=run_trainers.broken)
    snap = manager.wait(manager.submit("fay", TrainConfig(**QUICK)), timeout=10)
    assert snap.status is RunStatus.FAILED and snap.error == "Training failed unexpectedly: RuntimeError: disk on fire"


@pytest.mark.parametrize(
    "options,error,message",
    [
        ({"lr": 0.0}, ConfigError, "Learning rate must be above 0"),
        ({"lr": 50.0}, ConfigError, "Learning rate must be above 0 and at most 10"),
        ({"batch_size": 0}, ConfigError, "Batch size must be at least 2"),
        ({"batch_size": 1}, ConfigError, "Batch size must be at least 2"),
        # 18 files are listed for training, 2 of them unreadable: the run would have 16 images
        ({"dataset": "scans", "model": "simple_cnn", "batch_size": 17}, ConfigError,
         "larger than the training set \\(16 images\\); choose at most 16"),
        ({"batch_size": 500}, ConfigError, "larger than the training set \\(220 images\\)"),
        ({"batch_size": 64, "limit": 50}, ConfigError, "50 images with this subset size"),
        ({"dataset": "pathmnist_64"}, DataError, "not on this computer"),
        ({"dataset": "chestmnist"}, ConfigError, "multi-label"),
        ({"dataset": "no_such_set"}, DataError, "Unknown data set"),
    ],
)
def test_bad_options_are_refused_before_queuing(tiny_data_dir, options, error, message):
    manager = RunManager(max_concurrent=1)
    with pytest.raises(error, match=message):
        manager.submit("gus", TrainConfig(**{**QUICK, **options}))
    assert manager.runs_for("gus") == []


def test_a_data_set_deleted_after_it_was_chosen_gets_a_clear_message(tiny_data_dir, tmp_path):
    folder = shutil.copytree(tiny_data_dir / "scans", tmp_path / "my_scans")
    data.register_image_folder("my_scans", folder)
    shutil.rmtree(folder)
    with pytest.raises(DataError):
        RunManager(max_concurrent=1).submit("hal", TrainConfig(dataset="my_scans", model="simple_cnn"))


def test_smooth_is_a_bias_corrected_moving_average():
    assert smooth([2.0, 2.0, 2.0], 0.9) == pytest.approx([2.0, 2.0, 2.0])
    assert smooth([1.0, 3.0], 0.0) == [1.0, 3.0]
    assert smooth([4.0, 0.0], 0.5) == pytest.approx([4.0, (0.25 * 4.0) / 0.75])  # (0.5·0.5·4 + 0.5·0) / 0.75
    values = smooth([1.0, float("nan"), 1.0], 0.5)
    assert values[0] == 1.0 and values[2] == pytest.approx(1.0) and values[1] != values[1]
    with pytest.raises(ConfigError):
        smooth([1.0], 1.0)


def test_progress_extrapolates_the_time_per_step(tiny_data_dir):
    manager = RunManager(max_concurrent=1, trainer=run_trainers.halfway)
    run_id = manager.submit("ivy", TrainConfig(**QUICK), save=False)
    _wait_until(lambda: len(manager.snapshot(run_id).batches) == 5, what="five batches")
    snap = manager.snapshot(run_id)
    loading = snap.training_at - snap.started_at  # before the start event: not extrapolated
    now = snap.training_at + 20.0
    progress = snap.progress(now)
    assert (progress.step, progress.total_steps, progress.epoch, progress.epochs) == (5, 10, 1, 2)
    assert progress.fraction == 0.5 and progress.elapsed == pytest.approx(20.0 + loading)
    assert progress.eta == pytest.approx(20.0)  # 5 steps took 20 s, 5 more to go
    run_trainers.release_file().touch()
    assert manager.wait(run_id, timeout=10).status is RunStatus.CANCELLED


def test_misclassified_examples_are_the_confident_mistakes_first():
    probs = torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.4, 0.6], [0.3, 0.7]])
    labels = torch.tensor([0, 0, 1, 0])
    images = torch.arange(4, dtype=torch.uint8).view(4, 1, 1, 1)
    wrong = misclassified_examples(probs, labels, images)
    assert [m.index for m in wrong] == [1, 3]
    assert wrong[0].predicted_label == 1 and wrong[0].true_label == 0 and wrong[0].confidence == pytest.approx(0.8)
    assert int(wrong[1].image) == 3
    assert misclassified_examples(probs, labels, images, limit=1)[0].index == 1


def test_the_concurrency_limit_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("CNN_MAX_CONCURRENT_RUNS", "3")
    assert default_max_concurrent() == 3
    monkeypatch.setenv("CNN_MAX_CONCURRENT_RUNS", "many")
    with pytest.raises(ConfigError, match="CNN_MAX_CONCURRENT_RUNS must be a whole number"):
        default_max_concurrent()
    monkeypatch.delenv("CNN_MAX_CONCURRENT_RUNS")
    monkeypatch.setenv("CNN_DEVICE", "cpu")
    assert default_max_concurrent() == 1


def test_format_seconds():
    assert [format_seconds(s) for s in (None, 0, 42.4, 725, 3723)] == ["—", "0:00", "0:42", "12:05", "1:02:03"]


# --------------------------------------------------------------------------------------------------
# The command recorded in the card


STUDIO_CONFIGS = {
    # what the Training Studio submits: every option explicit (see pages/3_training_studio.py choose_options)
    "digits": TrainConfig(dataset="mnist", model="fastnet", model_args={}, epochs=3, batch_size=64, lr=0.002,
                          optimizer="adamw", schedule="onecycle", weight_decay=5e-4, patience=2,
                          monitor="val_loss", seed=7, limit=100, augment=AugmentConfig(shift=1)),
    "transfer": TrainConfig(dataset="scans", model="transfer:efficientnet_lite0",
                            model_args={"mode": "finetune", "finetune_blocks": 2, "input_size": 224},
                            epochs=30, batch_size=8, lr=0.003, optimizer="sgd", schedule="cosine",
                            weight_decay=1.25e-4, patience=None, monitor="last", seed=0, limit=None,
                            augment=AugmentConfig(shift=0, hflip=True, vflip=True, color_jitter=0.0),
                            image_size=96),
    "odd values": TrainConfig(dataset="pathmnist", model="simple_cnn",
                              model_args={"dropout": 0.25, "note": "3", "flag": True, "name": "a b"},
                              epochs=1, batch_size=2, lr=1 / 3, optimizer="rmsprop", schedule="none",
                              weight_decay=0.0, label_smoothing=0.1, momentum=0.8, monitor="val_accuracy",
                              ema_decay=0.99,
                              seed=123, limit=40, augment=AugmentConfig(shift=4, hflip=False, vflip=True,
                                                                       color_jitter=0.35, rotate90=True,
                                                                       grayscale=0.3), tta=False),
    "auto monitor": TrainConfig(dataset="mnist", model="fastnet", epochs=2, batch_size=32, lr=0.01,
                                optimizer="adamw", schedule="onecycle", monitor="auto"),
}


@pytest.mark.parametrize("name", list(STUDIO_CONFIGS))
def test_the_recorded_command_gives_back_the_runs_config(tiny_data_dir, name):
    """Round trip: the card's command, read by the CLI's own parser, is the studio's run again."""
    import shlex

    config = STUDIO_CONFIGS[name]
    resolved, info = check_run_config(config)
    command = cli_command(config, resolved, info.family, info.task)
    words = shlex.split(command)
    assert words[:4] == ["python", "-m", "cnn_core", "train"] and "#" not in command
    again = config_from_args(build_parser().parse_args(words[3:]))
    # the command names the monitor "auto" resolved to, so it repeats the run if the rule changes later
    assert replace(again, command="", out=None) == replace(config, command="", out=None, monitor=resolved.monitor)


def test_a_submitted_run_records_its_command(tiny_data_dir):
    manager = RunManager(max_concurrent=1)
    config = replace(STUDIO_CONFIGS["digits"], epochs=1, limit=64)
    snap = manager.wait(manager.submit("kim", config, save=False), timeout=120)
    assert snap.status is RunStatus.FINISHED, snap.error
    assert "--monitor val_loss" in snap.end.card.command and "--shift 1" in snap.end.card.command


# --------------------------------------------------------------------------------------------------
# Status events


def test_status_events_are_shown_and_the_step_clock_starts_after_them(tiny_data_dir):
    manager = RunManager(max_concurrent=1, trainer=run_trainers.preparing)
    run_id = manager.submit("lee", TrainConfig(**QUICK), save=False)
    _wait_until(lambda: manager.snapshot(run_id).status_message is not None, what="the status")
    snap = manager.snapshot(run_id)
    assert snap.status_message.startswith("Computing EfficientNet-Lite0") and snap.progress().eta is None
    clock = snap.training_at
    time.sleep(0.05)
    run_trainers.release_file().touch()
    snap = manager.wait(run_id, timeout=10)
    assert snap.status is RunStatus.FINISHED, snap.error
    assert snap.status_message == "Ready in 0.2 s."
    assert snap.statuses[0].startswith("Computing EfficientNet-Lite0") and len(snap.statuses) == 2
    assert snap.training_at > clock  # feature extraction is not extrapolated as if it were steps
    assert len(snap.batches) == 1 and snap.start is not None


# --------------------------------------------------------------------------------------------------
# Worker processes and the run store


def _worker_pid(manager: RunManager, run_id: str) -> int | None:
    return manager.store.worker_pids((RunStatus.RUNNING,)).get(run_id)


def test_a_run_trains_in_a_worker_process_and_its_memory_goes_with_it(tiny_data_dir):
    manager = RunManager(max_concurrent=1)
    run_id = manager.submit("mia", TrainConfig(**LONG))
    _wait_until(lambda: len(manager.snapshot(run_id).batches) >= 2, what="the first batches")
    pid = _worker_pid(manager, run_id)
    assert pid is not None and pid != os.getpid()
    assert [t.name for t in threading.enumerate() if t.name.startswith("cnn-run")] == ["cnn-run-monitor"]  # no trainer here
    if hasattr(os, "getsid"):  # its own session: the scheduler's share for it, not a part of the server's
        assert os.getsid(pid) == pid != os.getsid(0)
    manager.cancel(run_id)
    assert manager.wait(run_id, timeout=10).status is RunStatus.CANCELLED
    _wait_until(lambda: not _process_exists(pid), timeout=10, what="the worker to exit")


def test_a_worker_never_runs_the_page_script_that_streamlit_installed_as_main(tiny_data_dir, tmp_path, monkeypatch):
    """Streamlit's script runner installs each page as `__main__` (AppTest: a temporary file it deletes, and a
    worker that re-ran it died with status 1). A worker started then must not re-run that script."""
    marker = tmp_path / "the-page-ran"
    page_script = tmp_path / "page.py"
    page_script.write_text(f"open({str(marker)!r}, 'w').close()\nraise SystemExit(1)  # as a deleted script\n")
    page = types.ModuleType("__main__")
    page.__file__ = str(page_script)
    monkeypatch.setitem(sys.modules, "__main__", page)
    manager = RunManager(max_concurrent=1)
    snap = manager.wait(manager.submit("mia", TrainConfig(**QUICK)), timeout=120)
    assert snap.status is RunStatus.FINISHED, snap.error
    assert not marker.exists()
    assert sys.modules["__main__"] is page  # Streamlit's module stays


def test_a_trainer_defined_in_main_is_refused():
    def trainer(config, cancel):
        return train(config, cancel=cancel)

    trainer.__module__ = "__main__"  # as when a script run as `python script.py` defines it
    with pytest.raises(ConfigError, match="importable module"):
        RunManager(max_concurrent=1, trainer=trainer)


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").exists() and "zombie" not in Path(f"/proc/{pid}/status").read_text().lower()


def test_a_killed_worker_ends_its_run_as_failed_and_the_next_run_starts(tiny_data_dir):
    manager = RunManager(max_concurrent=1)
    first = manager.submit("ned", TrainConfig(**LONG))
    waiting = manager.submit("ola", TrainConfig(**QUICK))
    _wait_until(lambda: len(manager.snapshot(first).batches) >= 1, what="the first batch")
    os.kill(_worker_pid(manager, first), signal.SIGKILL)
    snap = manager.wait(first, timeout=10)
    assert snap.status is RunStatus.FAILED and "killed by signal 9" in snap.error
    assert manager.wait(waiting, timeout=120).status is RunStatus.FINISHED  # the slot was given on


def test_runs_outlive_their_manager_and_dead_ones_are_marked_interrupted(tiny_data_dir):
    """What a server restart sees: finished runs with their curves and metrics; a run left training by a
    process that is gone is interrupted, never shown as running."""
    first = RunManager(max_concurrent=1)
    done = first.wait(first.submit("pia", TrainConfig(**QUICK)), timeout=120)
    assert done.status is RunStatus.FINISHED, done.error
    store = first.store
    orphan = "f" * 32
    store.create_run(orphan, "pia", TrainConfig(**QUICK), check_run_config(TrainConfig(**QUICK))[0], "MNIST",
                     status=RunStatus.RUNNING, holder=process_token(_a_dead_pid()))  # fmt: skip

    again = RunManager(max_concurrent=1, store=RunStore(store.path))
    assert again.interrupted == [orphan]
    runs = {snap.id: again.snapshot(snap.id) for _, snap in again.runs_for("pia")}
    assert runs[orphan].status is RunStatus.INTERRUPTED and "server stopped" in runs[orphan].note
    kept = runs[done.id]
    assert kept.status is RunStatus.FINISHED and len(kept.epochs) == 1 and kept.batches == done.batches
    assert kept.test_accuracy == done.test_accuracy and kept.end.card.to_dict() == done.end.card.to_dict()
    assert [m.index for m in kept.misclassified] == [m.index for m in done.misclassified]
    assert Path(kept.checkpoint_path).is_file()


def _a_dead_pid() -> int:
    import subprocess

    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def test_cli_runs_are_recorded_and_listed(tiny_data_dir, tmp_path, capsys):
    from cnn_core.cli import main

    out = tmp_path / "digits.safetensors"
    assert main(["train", "--data", "mnist", "--epochs", "1", "--batch-size", "32", "--out", str(out)]) == 0
    assert main(["train", "--data", "mnist", "--batch-size", "1"]) == 2  # refused before anything is recorded
    capsys.readouterr()
    assert main(["runs", "list", "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["owner"] == "cli" and row["origin"] == "cli" and row["status"] == "finished"
    assert row["dataset"] == "mnist" and row["model"] == "fastnet" and row["checkpoint"] == str(out)
    assert 0 <= row["test_accuracy"] <= 1
    assert main(["runs", "list"]) == 0
    table = capsys.readouterr().out
    assert row["id"][:8] in table and "cli" in table and "finished" in table


def test_a_damaged_run_database_is_set_aside_and_a_new_one_started(tiny_data_dir, tmp_path, capfd):
    from cnn_core.cli import main

    damaged = os.urandom(5000)
    path = Path(os.environ["CNN_CACHE_DIR"]) / "cnn-explorer.sqlite3"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(damaged)
    assert main(["runs", "list", "--json"]) == 0
    captured = capfd.readouterr()
    assert json.loads(captured.out) == []
    (kept,) = path.parent.glob("cnn-explorer.sqlite3.damaged-*")
    assert kept.read_bytes() == damaged and f"moved to {kept}" in captured.err  # nothing lost
    store = RunStore()
    assert store.set_aside is None and store.summaries() == []
    # the server's threads and the workers may all find it damaged at once: one moves it aside, once
    store._close()
    for leftover in path.parent.glob("cnn-explorer.sqlite3*"):
        if "damaged" not in leftover.name:
            leftover.unlink()
    path.write_bytes(damaged)
    stores: list = []
    openers = [threading.Thread(target=lambda: stores.append(RunStore())) for _ in range(4)]
    for opener in openers:
        opener.start()
    for opener in openers:
        opener.join(timeout=60)
    assert len(stores) == 4 and len([s for s in stores if s.set_aside is not None]) == 1
    assert len(list(path.parent.glob("cnn-explorer.sqlite3.damaged-*"))) == 2  # this one and the first
    stores[0].record_upload("quinn", "pets", Path("/tmp/pets"), 0)
    assert [name for _, name, _, _ in stores[-1].uploads("quinn")] == ["pets"]  # all on the one new database
    manager = RunManager(max_concurrent=1, store=stores[0])  # and the app's runs are recorded again
    run_id = manager.submit("quinn", TrainConfig(**QUICK), save=False)
    assert manager.wait(run_id, timeout=120).status is RunStatus.FINISHED


def test_an_app_owner_is_listed_by_a_digest_never_by_its_id(tiny_data_dir, capsys):
    from cnn_core.cli import main

    owner = "0123456789abcdef0123456789abcdef"
    manager = RunManager(max_concurrent=1)
    manager.wait(manager.submit(owner, TrainConfig(**QUICK), save=False), timeout=120)
    assert main(["runs", "list", "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["owner"].startswith("browser ") and owner not in json.dumps(row)


def test_each_owner_sees_the_shipped_checkpoints_and_only_their_own(tiny_data_dir):
    from cnn_core.runs import checkpoint_label, checkpoints_for
    from cnn_core.settings import models_dir

    manager = RunManager(max_concurrent=1)
    mine = manager.wait(manager.submit("quinn", TrainConfig(**QUICK)), timeout=120)
    theirs = manager.wait(manager.submit("rosa", TrainConfig(**QUICK)), timeout=120)
    stopped_id = manager.submit("quinn", TrainConfig(**LONG))
    _wait_until(lambda: len(manager.snapshot(stopped_id).epochs) >= 1, timeout=60, what="one epoch")
    manager.cancel(stopped_id)
    stopped = manager.wait(stopped_id, timeout=10)

    entries = checkpoints_for("quinn", manager.store)
    shipped = [e for e in entries if e.shipped]
    assert {e.path for e in shipped} == set(models_dir().glob("*.safetensors"))
    own = [e for e in entries if not e.shipped]
    assert [str(e.path) for e in own] == [mine.checkpoint_path, stopped.checkpoint_path]
    assert theirs.checkpoint_path not in {str(e.path) for e in entries}
    labels = [checkpoint_label(e) for e in own]
    assert "stopped at epoch" not in labels[0] and "stopped at epoch" in labels[1]
    numbers = manager.store.run_numbers("quinn")  # as the studio numbers them: 1 and 2 (rosa's run between is hers)
    assert [e.run_number for e in own] == [1, 2] and numbers == {mine.id: 1, stopped_id: 2}
    assert labels[0].startswith("run #1 · yours · test accuracy ")  # before the long data set title
    assert checkpoints_for("nobody", manager.store) == shipped


def test_forgetting_a_browser_deletes_its_uploads_runs_checkpoints_and_logs_and_nobody_elses(tiny_data_dir, tmp_path):
    # On a shared lab computer the next student inherits the cookie, and with it the last one's work.
    from cnn_core.data.zipfolder import import_zip
    from cnn_core.data.uploads import upload_root
    from cnn_core.runs import checkpoints_for, forget_owner, record_upload, run_log_dir

    manager = RunManager(max_concurrent=1)
    mine_id, theirs_id = manager.submit("quinn", TrainConfig(**QUICK)), manager.submit("rosa", TrainConfig(**QUICK))
    mine, theirs = manager.wait(mine_id, timeout=120), manager.wait(theirs_id, timeout=120)
    archive = shutil.make_archive(str(tmp_path / "scans"), "zip", tiny_data_dir / "scans")
    for owner, name in (("quinn", "q_scans"), ("rosa", "r_scans")):
        record_upload(owner, import_zip(Path(archive).read_bytes(), name, owner=owner).info, 0, manager.store)
    assert len(data.load_split("q_scans", "train")) > 0  # its decoded tensors are cached too
    data.channel_stats("q_scans")  # and its channel statistics
    from cnn_core.runs import store_uploaded_checkpoint
    from cnn_core.settings import cache_dir

    looked_at = {owner: store_uploaded_checkpoint(Path(mine.checkpoint_path).read_bytes(), "my model.safetensors", owner)
                 for owner in ("quinn", "rosa")}  # Model Graph: a checkpoint downloaded, then uploaded to look at
    assert looked_at["quinn"].name == "my_model.safetensors" and looked_at["quinn"] != looked_at["rosa"]
    assert any("q_scans" in path.name for path in (cache_dir() / "stats").iterdir())
    training = manager.submit("quinn", TrainConfig(**LONG))
    _wait_until(lambda: len(manager.snapshot(training).epochs) >= 1, timeout=60, what="one epoch")
    with pytest.raises(ConfigError, match="A run of yours is queued or training: stop it in the Training Studio"):
        forget_owner("quinn", manager.store)  # its worker would still write a checkpoint
    manager.cancel(training)
    stopped = manager.wait(training, timeout=30)
    assert stopped.checkpoint_path and run_log_dir(mine_id).is_dir()

    forgotten = forget_owner("quinn", manager.store)
    assert (forgotten.uploads, forgotten.runs, forgotten.checkpoints) == (("q_scans",), 2, 2)
    for path in (mine.checkpoint_path, stopped.checkpoint_path):
        assert not list(Path(path).parent.glob(Path(path).stem + ".*"))  # weights, card and model card
    assert not run_log_dir(mine_id).exists() and not upload_root("q_scans", "quinn").parent.exists()
    assert manager.store.run_ids("quinn") == [] and manager.store.uploads("quinn") == []
    assert [e for e in checkpoints_for("quinn", manager.store) if not e.shipped] == []
    assert "q_scans" not in {info.name for info in data.list_datasets(owner="quinn")}
    assert not looked_at["quinn"].exists() and looked_at["rosa"].is_file()
    assert not any("q_scans" in path.name for path in cache_dir().rglob("*"))  # no cache named after the upload
    with pytest.raises(DataError):
        data.load_split("q_scans", "train")
    # everybody else's stays
    assert Path(theirs.checkpoint_path).is_file() and run_log_dir(theirs_id).is_dir()
    assert upload_root("r_scans", "rosa").is_dir() and manager.store.run_ids("rosa") == [theirs_id]
    assert [owner for owner, *_ in manager.store.uploads()] == ["rosa"]
    # remembered by digest (the id is a cookie), so a tab or a cookie still holding it is not taken for a browser
    assert manager.store.was_forgotten("quinn") and not manager.store.was_forgotten("rosa")
    with closing(sqlite3.connect(manager.store.path)) as db:
        assert [row[0] for row in db.execute("SELECT digest FROM forgotten_owners")] == [
            hashlib.sha256(b"quinn").hexdigest()]
        assert not any("quinn" in line for line in db.iterdump())  # the id itself is nowhere in the database
    with pytest.raises(ConfigError, match="This browser was forgotten on this server: reload the page"):
        manager.submit("quinn", TrainConfig(**QUICK))  # a stale tab's click at the moment of forgetting


def test_uploads_are_offered_again_to_their_owner_after_a_restart(tiny_data_dir, tmp_path):
    from cnn_core.runs import record_upload, restore_uploads

    folder = shutil.copytree(tiny_data_dir / "scans", tmp_path / "uploads" / "my_scans")
    info = data.register_image_folder("my_scans", folder, seed=3, owner="sam")
    store = RunStore()
    record_upload("sam", info, 3, store)
    data.clear_caches(forget_registered=True)  # what a restart does to the in-process registry
    assert "my_scans" not in {i.name for i in data.list_datasets(owner="sam")}
    assert restore_uploads("tia", store) == []
    assert restore_uploads("sam", store) == ["my_scans"]
    assert "my_scans" in {i.name for i in data.list_datasets(owner="sam")}
    assert "my_scans" not in {i.name for i in data.list_datasets(owner="tia")}
    assert data.registered_folder("my_scans") == ("my_scans", str(folder.resolve()), 3, "sam")
    assert restore_uploads("sam", store) == []  # already registered


def _leftover(store: RunStore, run_id: str, holder: str | None, status: RunStatus = RunStatus.QUEUED) -> None:
    config = TrainConfig(**QUICK)
    store.create_run(run_id, "uma", config, check_run_config(config)[0], "MNIST", status=status, holder=holder)


def test_leftovers_are_told_apart_by_process_start_time_and_host(tiny_data_dir):
    """A restarted server may get its old process id back (PID 1 in a container): the process's start time
    tells it apart. Runs held by another machine's processes are left alone: nothing here can tell."""
    import socket

    store = RunStore()
    reused_pid = f"{socket.gethostname()}:{os.getpid()}:1"  # this process id, but not this process
    _leftover(store, "a" * 32, reused_pid)
    _leftover(store, "b" * 32, "another-host:1:123", RunStatus.RUNNING)
    _leftover(store, "c" * 32, process_token())  # this very process holds it
    manager = RunManager(max_concurrent=1, store=store)
    assert manager.interrupted == ["a" * 32]
    assert store.status("b" * 32) is RunStatus.RUNNING and store.status("c" * 32) is RunStatus.QUEUED
    # A queued run that no manager serves any more ends at once when stopped, and frees its owner.
    assert manager.cancel("c" * 32) and store.status("c" * 32) is RunStatus.CANCELLED


def test_a_run_whose_worker_cannot_start_fails_with_the_reason_and_the_queue_goes_on(tiny_data_dir):
    from cnn_core.runs.worker import LocalBackend

    class Flaky(LocalBackend):
        calls = 0

        def start(self, job):
            Flaky.calls += 1
            if Flaky.calls == 1:
                raise OSError("Cannot allocate memory")
            return super().start(job)

    manager = RunManager(max_concurrent=1, backend=Flaky())
    failed = manager.wait(manager.submit("val", TrainConfig(**QUICK)), timeout=10)
    assert failed.status is RunStatus.FAILED and "could not be started: Cannot allocate memory" in failed.error
    assert manager.active_run("val") is None  # the owner may try again
    assert manager.wait(manager.submit("val", TrainConfig(**QUICK)), timeout=120).status is RunStatus.FINISHED


def test_after_a_restart_an_uploads_name_stays_its_owners(tiny_data_dir):
    from cnn_core.data import uploads
    from cnn_core.runs import record_upload, restore_uploads

    flowers = uploads.available_name("flowers", "wes")
    folder = shutil.copytree(tiny_data_dir / "scans", uploads.upload_root(flowers, "wes"))
    record_upload("wes", data.register_image_folder(flowers, folder, owner="wes"), 0, RunStore())
    data.clear_caches(forget_registered=True)  # a restart
    assert restore_uploads(None, RunStore()) == [flowers]  # what the app does once when it starts
    assert data.folder_owner(flowers) == "wes" and uploads.available_name("flowers", "wes") == flowers
    with pytest.raises(DataError, match="another user's"):
        data.register_image_folder(flowers, folder, owner="xia")
    assert uploads.available_name("flowers", "xia") != flowers


def test_a_run_database_of_an_older_layout_gains_what_is_new_and_a_newer_one_is_refused(tmp_path):
    path = tmp_path / "runs.sqlite3"
    RunStore(path)
    with closing(sqlite3.connect(path)) as db:  # as the first layout left it: no forgotten_owners
        db.execute("DROP TABLE forgotten_owners")
        db.execute("PRAGMA user_version = 1")
        db.commit()
    store = RunStore(path)
    store.mark_forgotten("wes")
    assert store.was_forgotten("wes")
    with closing(sqlite3.connect(path)) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == 2
        db.execute("PRAGMA user_version = 3")
        db.commit()
    with pytest.raises(CnnError, match="written by a newer CNN Explorer"):
        RunStore(path)


def test_uploaded_checkpoints_are_kept_per_owner_newest_first(tmp_path):
    # One shared folder of the last 20 uploads: another student's uploads pushed out the one a student looked at,
    # and "Forget this browser" could not tell whose were whose.
    import os

    from cnn_core.runs import prune_uploaded_checkpoints, store_uploaded_checkpoint

    paths = [store_uploaded_checkpoint(bytes([i]) * 10, f"m{i}.safetensors", "uli") for i in range(4)]
    for age, path in enumerate(reversed(paths)):  # m3 newest
        os.utime(path.parent, (1_000_000 - age, 1_000_000 - age))
    theirs = store_uploaded_checkpoint(bytes([9]) * 10, "m9.safetensors", "vera")
    prune_uploaded_checkpoints("uli", shown=paths[0], keep=2)
    assert [path.exists() for path in paths] == [True, False, False, True]  # the shown one, and the newest
    assert theirs.is_file()
    legacy = theirs.parent.parent.parent / "0123456789abcdef" / "old.safetensors"  # from before owners had folders
    legacy.parent.mkdir()
    legacy.write_bytes(b"x")
    os.utime(legacy.parent, (1, 1))
    prune_uploaded_checkpoints("uli", shown=paths[0], keep=20, keep_in_all=3)  # a new cookie, a new owner:
    assert not legacy.exists() and paths[0].exists() and paths[3].exists() and theirs.exists()  # so a total too
    assert store_uploaded_checkpoint(bytes([3]) * 10, "..", "uli").name == "checkpoint.safetensors"


def test_a_server_can_cap_how_long_a_run_trains(tiny_data_dir, monkeypatch):
    # One student's 1,000 epochs held a class server's only trainer for hours while the others waited.
    monkeypatch.setenv("CNN_MAX_RUN_MINUTES", "0.05")  # 3 s
    manager = RunManager(max_concurrent=1)
    long_run = manager.submit("wren", TrainConfig(**LONG))
    waiting = manager.submit("xavi", TrainConfig(**QUICK))
    ended = manager.wait(long_run, timeout=120)
    assert ended.status is RunStatus.CANCELLED and ended.checkpoint_path and Path(ended.checkpoint_path).is_file()
    assert "time limit of 0.05 minute(s) per run (CNN_MAX_RUN_MINUTES" in ended.note
    assert manager.wait(waiting, timeout=120).status is RunStatus.FINISHED  # the queue moved on
    monkeypatch.setenv("CNN_MAX_RUN_MINUTES", "0.001")  # 60 ms: over before the first epoch ends
    early = manager.wait(manager.submit("wren", TrainConfig(**LONG)), timeout=120)
    assert early.status is RunStatus.CANCELLED and early.checkpoint_path is None
    assert early.note.endswith("it stopped before the first epoch ended, so no checkpoint was kept.")
    mine = manager.submit("cli", TrainConfig(**QUICK), save=False, origin="cli")  # `train --backend ray`'s way
    assert manager.wait(mine, timeout=120).status is RunStatus.FINISHED  # a command line's run has no cap


def test_whoever_runs_the_server_can_stop_any_run_from_the_command_line(tiny_data_dir, capsys):
    # A student who lost the cookie of a 1,000-epoch run had no Stop button, and the CLI could only list runs.
    from cnn_core.cli import main
    from cnn_core.runs.worker import LocalBackend

    class Told(LocalBackend):  # a Ray task reads only what its backend tells it, not the store's flag
        stops: list = []

        def request_stop(self, process, signal_ready):
            Told.stops.append(process.pid)
            return super().request_stop(process, signal_ready)

    manager = RunManager(max_concurrent=1, backend=Told())
    training, queued = manager.submit("yara", TrainConfig(**LONG)), manager.submit("zeno", TrainConfig(**LONG))
    _wait_until(lambda: len(manager.snapshot(training).batches) > 0, timeout=60, what="training")
    assert main(["runs", "stop", queued[:8]]) == 0
    _wait_until(lambda: manager.snapshot(queued).status is RunStatus.CANCELLED, timeout=10, what="the queue left")
    assert manager.snapshot(queued).note == "Stopped before it started." and manager.snapshot(training).status.active
    assert main(["runs", "stop", "active", "--json"]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[-1]) == [training]
    stopped = manager.wait(training, timeout=30)
    assert stopped.status is RunStatus.CANCELLED and stopped.checkpoint_path  # its best weights kept
    assert len(Told.stops) == 1  # the backend was told, once
    for args, said in (([training[:8]], "is cancelled: only a queued or training run"), (["zz"], "'zz' names no run"),
                       ([], "Name the runs to stop")):
        assert main(["runs", "stop", *args]) == 2
        assert said in capsys.readouterr().err
    assert main(["runs", "stop", "active"]) == 0 and "No run is queued or training." in capsys.readouterr().out
