"""The trainer's progress as typed events: the CLI prints them, the studio draws them, the tests assert on
them. A consumer ignores event types it does not know."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from ..models.card import Card


@dataclass
class StartEvent:
    kind = "start"
    dataset: str
    model: str
    device: str
    n_train: int
    n_val: int
    n_test: int
    epochs: int
    steps_per_epoch: int
    config: dict
    network: nn.Module | None = field(default=None, repr=False)  # the live model, e.g. for a benchmark's probe


@dataclass
class StatusEvent:
    """What the run is doing while no step is taken, in words for people: e.g. a transfer model computing its
    frozen backbone's features before the first step (seconds to minutes on a CPU)."""

    kind = "status"
    message: str


@dataclass
class BatchEvent:
    kind = "batch"
    step: int  # global step, from 1
    epoch: int  # from 1
    loss: float
    accuracy: float
    lr: float
    seconds: float


@dataclass
class EpochEvent:
    kind = "epoch"
    epoch: int
    train_loss: float
    train_accuracy: float
    val_loss: float
    val_accuracy: float
    lr: float
    seconds: float  # training seconds so far (evaluation excluded)
    improved: bool
    val_score: float | None = None  # the run's monitored validation figure when not loss or accuracy (e.g. balanced accuracy)


@dataclass
class EndEvent:
    kind = "end"
    best_epoch: int
    epochs_run: int
    seconds: float  # training seconds (evaluation and loading excluded)
    test_metrics: dict | None
    checkpoint_path: str | None
    stopped_early: bool
    cancelled: bool
    card: Card
    steps: int = 0  # optimizer steps taken: a cancelled run's last epoch may have stopped part of the way
    test_probs: torch.Tensor | None = None  # [N, C] on the CPU, for confusion matrices and galleries
    test_labels: torch.Tensor | None = None
    test_indices: torch.Tensor | None = None  # indices into the test split (after --limit)


Event = StartEvent | StatusEvent | BatchEvent | EpochEvent | EndEvent
