"""The one training loop of CNN Explorer, on the model of torchvision's references/classification.

`train(config)` is a generator of events (start, status, batch, epoch, end): `train_one_epoch` takes the
steps, `evaluate` scores the validation split, and the best epoch's weights are tested and saved. A data set
is sliced in batches from one uint8 tensor that lives on the training device; augmentation runs on the
device too, so the loop does no per-sample Python work.
"""

from __future__ import annotations

import copy
import math
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import torch
import torch.nn.functional as F
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from .. import data as data_registry
from .. import settings
from ..data.augment import BatchPreprocessor, orientations_taught
from ..data.types import DatasetInfo
from ..device import CpuThreads, autocast, describe_device, pick_device
from ..inference.evaluate import loss_and_accuracy, predict_probs
from ..inference.metrics import classification_metrics
from ..models import Classifier, build_model
from ..models.card import Card, library_versions
from ..models.checkpoints import check_checkpoint_target, save_checkpoint
from .config import ResolvedConfig, TrainConfig, TrainingError, resolve_config, steps_per_epoch
from .events import BatchEvent, EndEvent, EpochEvent, Event, StartEvent, StatusEvent
from .features import adapt_for_training, preparation_status
from .optim import make_optimizer, make_scheduler
from .prepare import PreparedData, prepare_data


#: Monitors scored by a test metric of `inference.metrics` on the validation split: monitor -> metric key.
VALIDATION_METRICS = {"val_balanced_accuracy": "balanced_accuracy", "val_auroc": "auroc"}


@dataclass
class _Loop:
    """What the epochs share: the model, its data and optimizer, and where training stands."""

    config: TrainConfig
    resolved: ResolvedConfig
    model: Classifier
    prepared: PreparedData
    optimizer: torch.optim.Optimizer
    scheduler: object | None
    device: torch.device
    generator: torch.Generator
    cancel: threading.Event | None
    log_every: int
    threads: CpuThreads | None = None  # CPU runs: the thread pool follows the cores other processes leave
    class_weights: torch.Tensor | None = None  # per-class loss weights [C] (float32, on the device), or None
    ema: AveragedModel | None = None  # the weights' moving average (`ema_decay`), validated and kept instead
    step: int = 0
    seconds: float = 0.0
    cancelled: bool = False

    def cancel_requested(self) -> bool:
        return self.cancel is not None and self.cancel.is_set()

    def kept_model(self) -> torch.nn.Module:
        """The weights validation scores and the checkpoint keeps: the moving average when there is one."""
        return self.ema.module if self.ema is not None else self.model


@dataclass
class _Best:
    """The epoch a checkpoint keeps, by the run's monitor."""

    score: float = -math.inf
    epoch: int = 0
    state: dict = field(default_factory=dict)
    val: dict = field(default_factory=dict)
    stale_epochs: int = 0


def build_for_data(model_name: str, info: DatasetInfo, model_args: dict) -> Classifier:
    """A registry model shaped for this data set (channels, classes, image size)."""
    return build_model(model_name, info.channels, len(info.class_names), info.image_size, **model_args)


def train(config: TrainConfig, cancel: threading.Event | None = None) -> Iterator[Event]:
    """Train one model and yield events; the last event is an EndEvent.

    Raises CnnError subclasses (ConfigError, DataError, TrainingError) with a clear message. Setting `cancel`
    stops within one batch, keeping the best weights so far.
    """
    device = pick_device(config.device)
    resolved = resolve_config(config, data_registry.get_dataset_info(config.dataset))
    if config.out:
        check_checkpoint_target(Path(config.out))
    torch.manual_seed(config.seed)
    prepared = prepare_data(config, resolved, device)
    info = prepared.info
    network = build_for_data(resolved.model, info, config.model_args).to(device)
    network = network.to(memory_format=torch.channels_last)
    epoch_steps = steps_per_epoch(prepared.train[1].shape[0], resolved.batch_size)
    run_config = _run_config(config, resolved)
    yield StartEvent(
        dataset=info.name, model=resolved.model, device=describe_device(device), n_train=int(prepared.train[1].shape[0]),
        n_val=int(prepared.val[1].shape[0]), n_test=int(prepared.test[1].shape[0]), epochs=resolved.epochs,
        steps_per_epoch=epoch_steps, config=run_config, network=network,
    )  # fmt: skip

    for note in prepared.notes:
        yield StatusEvent(f"Note: {note}.")
    status = preparation_status(network, prepared)
    if status:
        yield StatusEvent(status)
    preparing = time.perf_counter()
    model, prepared = adapt_for_training(network, prepared, cancel=cancel)
    if status and not (cancel is not None and cancel.is_set()):
        yield StatusEvent(f"Ready in {time.perf_counter() - preparing:.1f} s.")
    optimizer = make_optimizer(resolved.optimizer, model.param_groups(resolved.lr), resolved.lr,
                               config.weight_decay, config.momentum)  # fmt: skip
    # watches the cores from the first step: a burst of other work while the data loaded (the page drawing the new
    # run) must not shrink the pool for the first epoch
    threads = CpuThreads() if device.type == "cpu" else None
    loop = _Loop(
        config, resolved, model, prepared, optimizer,
        make_scheduler(resolved.schedule, optimizer, resolved.lr, epoch_steps * resolved.epochs),
        device, torch.Generator().manual_seed(config.seed), cancel, config.log_every or max(1, epoch_steps // 50),
        threads, loss_weights(resolved.class_weights, prepared.train[1], len(info.class_names)),
        weight_average(model, resolved.ema_decay),
    )  # fmt: skip

    best, epoch, stopped_early = _Best(state=copy.deepcopy(model.state_dict())), 0, False
    for epoch in range(1, resolved.epochs + 1):
        summary = yield from train_one_epoch(loop, epoch)
        if summary is None:  # cancelled before the epoch's first step
            epoch -= 1
            break
        val = evaluate(loop)
        improved = _keep_if_better(best, loop, epoch, val)
        yield EpochEvent(epoch=epoch, train_loss=summary[0], train_accuracy=summary[1], val_loss=val["val_loss"],
                         val_accuracy=val["val_accuracy"], lr=optimizer.param_groups[-1]["lr"], seconds=loop.seconds,
                         improved=improved, val_score=val.get(resolved.monitor))  # fmt: skip
        if loop.cancelled:
            break
        if config.patience and best.stale_epochs >= config.patience:
            stopped_early = True
            break

    if best.epoch:
        model.load_state_dict(best.state)
    views, test_probs, test_metrics = _test(loop)
    card = build_card(loop, network, run_config, best, epoch, stopped_early, views, test_metrics)
    checkpoint_path = str(save_checkpoint(network, card, Path(config.out))) if config.out else None
    tested = test_probs is not None
    yield EndEvent(
        best_epoch=best.epoch, epochs_run=epoch, seconds=loop.seconds, test_metrics=test_metrics,
        checkpoint_path=checkpoint_path, stopped_early=stopped_early, cancelled=loop.cancelled, card=card,
        steps=loop.step,
        test_probs=test_probs, test_labels=loop.prepared.test[1] if tested else None,
        test_indices=loop.prepared.test_indices if tested else None,
    )  # fmt: skip


def train_one_epoch(loop: _Loop, epoch: int) -> Iterator[Event]:
    """Take one epoch's steps, yielding BatchEvents; returns (train loss, train accuracy), or None when the
    run was cancelled before its first step. A ragged last batch of one image is skipped (`steps_per_epoch`)."""
    model, prepared, batch_size = loop.model, loop.prepared, loop.resolved.batch_size
    train_x, train_y = prepared.train
    n_train = train_y.shape[0]
    last_start = (steps_per_epoch(n_train, batch_size) - 1) * batch_size  # the epoch's last batch that trains
    model.train()
    started = time.perf_counter()
    order = torch.randperm(n_train, generator=loop.generator).to(loop.device)
    loss_sum = torch.zeros((), device=loop.device)
    correct_sum = torch.zeros((), device=loop.device)
    seen = 0
    for start in range(0, last_start + 1, batch_size):
        if loop.cancel_requested():
            loop.cancelled = True
            break
        if loop.threads is not None:
            loop.threads.adjust()
        index = order[start : start + batch_size]
        x = prepared.preprocess(train_x[index], train=True, generator=loop.generator)
        y = train_y[index]
        with autocast(loop.device):
            logits = model(x)
            loss = F.cross_entropy(logits.float(), y, weight=loop.class_weights,
                                   label_smoothing=loop.resolved.label_smoothing)
        loop.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        loop.optimizer.step()
        if loop.ema is not None:
            loop.ema.update_parameters(model)
        if loop.scheduler is not None:
            loop.scheduler.step()
        loop.step += 1
        batch_correct = (logits.argmax(1) == y).sum()
        loss_sum += loss.detach() * y.shape[0]
        correct_sum += batch_correct
        seen += y.shape[0]
        if loop.step % loop.log_every == 0 or start == last_start:
            loss_value = loss.item()
            _check_finite(loss_value, loop, f"at step {loop.step} (epoch {epoch})")
            yield BatchEvent(step=loop.step, epoch=epoch, loss=loss_value, accuracy=batch_correct.item() / y.shape[0],
                             lr=loop.optimizer.param_groups[-1]["lr"],
                             seconds=loop.seconds + time.perf_counter() - started)  # fmt: skip
    loop.seconds += time.perf_counter() - started
    if seen == 0:
        return None
    train_loss = (loss_sum / seen).item()
    _check_finite(train_loss, loop, f"in epoch {epoch}")
    return train_loss, (correct_sum / seen).item()


def evaluate(loop: _Loop) -> dict[str, float]:
    """The validation split's figures, one view: "val_loss" (mean negative log-likelihood), "val_accuracy" in
    [0, 1], and the run's monitor when it is "val_balanced_accuracy" or "val_auroc", computed as the test metrics
    are (nan where undefined: a class missing from the split; absent without validation images)."""
    prepared = loop.prepared
    probs = predict_probs(loop.kept_model(), prepared.val[0], _eval_preprocess(prepared), loop.device)
    val_loss, val_accuracy = loss_and_accuracy(probs, prepared.val[1])
    figures = {"val_loss": val_loss, "val_accuracy": val_accuracy}
    monitor = loop.resolved.monitor
    if monitor in VALIDATION_METRICS and probs.numel():  # the test report's definitions (inference.metrics)
        metrics = classification_metrics(probs, prepared.val[1], len(prepared.info.class_names))
        value = metrics[VALIDATION_METRICS[monitor]]
        figures[monitor] = math.nan if value is None else value
    return figures


def weight_average(model: torch.nn.Module, decay: float) -> AveragedModel | None:
    """An exponential moving average of `model`'s weights and BatchNorm statistics (PyTorch's
    `torch.optim.swa_utils.AveragedModel`; Polyak & Juditsky 1992), updated after every step as
    average = d * average + (1 - d) * weights, with d = min(decay, (1 + n) / (10 + n)) after n updates
    (TensorFlow's `ExponentialMovingAverage` with `num_updates`): the first steps' nearly untrained weights
    fade at once instead of weighing 0.999^steps. None when `decay` is 0."""
    if not decay:
        return None

    def update(averaged: list[torch.Tensor], current: list[torch.Tensor], n_averaged: torch.Tensor | int) -> None:
        n = int(n_averaged)
        get_ema_multi_avg_fn(min(decay, (1 + n) / (10 + n)))(averaged, current, n_averaged)

    return AveragedModel(model, multi_avg_fn=update, use_buffers=True)


def loss_weights(kind: str, labels: torch.Tensor, n_classes: int) -> torch.Tensor | None:
    """"balanced": n / (C * n_c) per class (King & Zeng 2001; scikit-learn's "balanced"), so each class weighs
    as much in the loss as if the classes were equal in size; "sqrt": the square root of that, halfway on a log
    scale (square-root re-balancing, Mahajan et al. 2018); classes absent from `labels` get 0. "none": None."""
    if kind not in ("balanced", "sqrt"):
        return None
    counts = torch.bincount(labels, minlength=n_classes).float()
    weights = torch.where(counts > 0, labels.numel() / (n_classes * counts.clamp_min(1)), torch.zeros_like(counts))
    return (weights.sqrt() if kind == "sqrt" else weights).to(labels.device)


def _eval_preprocess(prepared: PreparedData) -> Callable[[torch.Tensor], torch.Tensor]:
    return lambda x: prepared.preprocess(x, train=False)


def _check_finite(loss: float, loop: _Loop, where: str) -> None:
    if not math.isfinite(loss):
        raise TrainingError(
            f"Training diverged: the loss became {loss} {where}. "
            f"Lower the learning rate (now {loop.resolved.lr:g}) and try again."
        )


def _keep_if_better(best: _Best, loop: _Loop, epoch: int, val: dict[str, float]) -> bool:
    """Remember this epoch's weights when its monitored score is the best so far, or equals it: on a small
    validation split (a dozen images) the score reaches its top within a few epochs and stays there, and the
    later of two equal epochs has trained longer (a 70-image upload kept epoch 1 of 131 when the first best won
    ties). A tie does not count as progress for early stopping: stale epochs are counted until a better one."""
    monitor = loop.resolved.monitor
    score = -val["val_loss"] if monitor == "val_loss" else val.get(monitor, val["val_accuracy"])
    if math.isnan(score) and monitor in VALIDATION_METRICS:  # a class missing from the split: fall back
        score = val["val_accuracy"]
    if monitor == "last" or math.isnan(score):  # no validation images: the last epoch counts as best
        score = epoch
    if score < best.score:
        best.stale_epochs += 1
        return False
    best.stale_epochs = best.stale_epochs + 1 if score == best.score else 0
    best.score, best.epoch = score, epoch
    best.state = copy.deepcopy(loop.kept_model().state_dict())
    best.val = dict(val)
    return True


def _test(loop: _Loop) -> tuple[tuple[str, ...], torch.Tensor | None, dict | None]:
    """(views, probabilities [N, C], metrics) on the test split, averaging the orientations the augmentation
    taught (test-time augmentation); cached transfer features are one view already. Nothing when cancelled."""
    prepared = loop.prepared
    on_images = isinstance(prepared.preprocess, BatchPreprocessor)
    views = orientations_taught(loop.resolved.augment) if loop.config.tta and on_images else ("identity",)
    if loop.cancelled:
        return views, None, None
    probs = predict_probs(loop.model, prepared.test[0], _eval_preprocess(prepared), loop.device, views=views)
    metrics = (classification_metrics(probs, prepared.test[1], len(prepared.info.class_names), prepared.info.class_names)
               if probs.numel() else None)
    return views, probs, metrics


def _run_config(config: TrainConfig, resolved: ResolvedConfig) -> dict:
    """The options recorded in the card: what was asked, with every default filled in."""
    recorded = {
        **{k: v for k, v in asdict(config).items() if k not in ("augment", "command")},
        **{k: v for k, v in asdict(resolved).items() if k != "augment"},
        "augment": asdict(resolved.augment),
    }  # folders as $CNN_CACHE_DIR/...: a downloaded card names no server folder (settings.local_path reads them)
    return {k: settings.portable_path(v) if isinstance(v, str) else v for k, v in recorded.items()}


def build_card(
    loop: _Loop, network: Classifier, run_config: dict, best: _Best, epochs_run: int, stopped_early: bool,
    views: tuple[str, ...], test_metrics: dict | None,
) -> Card:
    """The checkpoint card of a finished (or stopped) run."""
    info, config = loop.prepared.info, loop.config
    extra = network.card_info()
    return Card(
        model=loop.resolved.model,
        model_args=extra.pop("model_args", dict(config.model_args)),
        dataset=info.name,
        dataset_title=info.title,
        family=info.family,
        task=info.task,
        class_names=tuple(info.class_names),
        channels=info.channels,
        image_size=info.image_size,
        normalization=loop.prepared.normalization,
        test_time_augmentation=tuple(views) if len(views) > 1 else (),
        metrics={"test": test_metrics, "best_val": best.val},
        training={
            **run_config,
            "best_epoch": best.epoch,
            "epochs_run": epochs_run,
            "train_seconds": round(loop.seconds, 2),
            "stopped_early": stopped_early,
            "cancelled": loop.cancelled,
            "device": describe_device(loop.device),
            "n_train": int(loop.prepared.train[1].shape[0]),
            **({"data_notes": list(loop.prepared.notes)} if loop.prepared.notes else {}),
        },
        command=config.command,
        versions=library_versions(),
        created=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        backbone=extra.pop("backbone", None),
        extra=extra,
    )


def run_training(
    config: TrainConfig,
    on_event: Callable[[Event], None] | None = None,
    cancel: threading.Event | None = None,
) -> EndEvent:
    """Consume `train()` and return its EndEvent; `on_event` sees every event on the way."""
    end = None
    for event in train(config, cancel=cancel):
        if on_event is not None:
            on_event(event)
        if isinstance(event, EndEvent):
            end = event
    assert end is not None
    return end
