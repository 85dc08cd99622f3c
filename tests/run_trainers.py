"""Stand-ins for `training.train` that tests hand to `RunManager(trainer=...)`. Runs train in worker
processes, so these live at module level (the worker imports them by name) and wait for files, not
threading events: a test releases a trainer by creating `release_file()`."""

from __future__ import annotations

import os
import time
from pathlib import Path

from cnn_core.models.card import Card
from cnn_core.training import BatchEvent, EndEvent, StartEvent, StatusEvent, train

CARD = Card(model="fastnet", dataset="mnist", class_names=("0", "1"), channels=1, image_size=28,
            normalization={"mean": [0.13], "std": [0.31]})  # fmt: skip


def release_file() -> Path:
    """The file a waiting trainer waits for: in CNN_CACHE_DIR, which the worker shares with the test."""
    return Path(os.environ["CNN_CACHE_DIR"]) / "release-the-trainer"


def _wait_for_release(timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not release_file().exists() and time.monotonic() < deadline:
        time.sleep(0.01)


def cancelled_at_once(config, cancel):
    cancel.set()
    return train(config, cancel=cancel)


def broken(config, cancel):
    yield StartEvent("mnist", "fastnet", "CPU", 10, 1, 1, 1, 10, {})
    raise RuntimeError("disk on fire")


def halfway(config, cancel):
    yield StartEvent("mnist", "fastnet", "CPU", 100, 10, 10, 2, 5, {})
    for step in range(1, 6):
        yield BatchEvent(step=step, epoch=1 + (step - 1) // 5, loss=1.0, accuracy=0.5, lr=0.01, seconds=step)
    _wait_for_release()
    yield EndEvent(1, 1, 1.0, None, None, False, True, CARD)


def preparing(config, cancel):
    yield StartEvent("scans", "transfer:efficientnet_lite0", "CPU", 16, 2, 2, 1, 2, {})
    yield StatusEvent("Computing EfficientNet-Lite0 (ImageNet) features for 36 images, cached for later runs…")
    _wait_for_release()
    yield StatusEvent("Ready in 0.2 s.")
    yield BatchEvent(step=1, epoch=1, loss=1.0, accuracy=0.5, lr=0.01, seconds=0.1)
    yield EndEvent(1, 1, 1.0, None, None, False, False, CARD)
