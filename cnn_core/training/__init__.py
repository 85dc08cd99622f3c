"""The training layer: `config` (options and their checks), `events` (typed progress), `prepare` (the
splits on the device), `features` (the frozen-feature cache of transfer models), `optim` (optimizers and
schedules), `loop` (`train()`, the one training loop) and `tensorboard` (a TensorBoard log written from the
events). Imports only from the layers below it.
"""

from .config import (
    MIN_BATCH_SIZE,
    MONITORS,
    OPTIMIZERS,
    SCHEDULES,
    ResolvedConfig,
    TrainConfig,
    TrainingError,
    checkpoint_keeps,
    default_model,
    resolve_monitor,
    folder_image_size,
    resolve_config,
    steps_per_epoch,
)
from .events import BatchEvent, EndEvent, EpochEvent, Event, StartEvent, StatusEvent
from .loop import run_training, train

__all__ = [
    "MIN_BATCH_SIZE",
    "MONITORS",
    "OPTIMIZERS",
    "SCHEDULES",
    "BatchEvent",
    "EndEvent",
    "EpochEvent",
    "Event",
    "ResolvedConfig",
    "StartEvent",
    "StatusEvent",
    "TrainConfig",
    "TrainingError",
    "checkpoint_keeps",
    "default_model",
    "folder_image_size",
    "resolve_config",
    "resolve_monitor",
    "run_training",
    "steps_per_epoch",
    "train",
]
