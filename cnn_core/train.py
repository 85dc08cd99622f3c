"""The one training loop of CNN Explorer, on the model of torchvision's references/classification.

`train(config)` is a generator of events (start, status, batch, epoch, end). The CLI prints them with a
progress bar, the training studio turns them into live plotly charts, and the tests assert on them:
all three consume the same stream. A data set is sliced in batches from one uint8 tensor that lives on
the training device; augmentation runs on the device too, so the loop does no per-sample Python work.
"""

from __future__ import annotations

import copy
import math
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from . import data as data_registry
from .augment import AugmentConfig, BatchPreprocessor, default_augment, orient, orientations_taught
from .device import autocast, describe_device, pick_device
from .errors import CnnError, ConfigError
from .metrics import classification_metrics
from .models import build_model, default_model_for, get_model_spec

OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop")
SCHEDULES = ("none", "onecycle", "cosine")
MONITORS = ("val_accuracy", "val_loss", "last")  # "last": keep the final epoch (tiny validation sets)


class TrainingError(CnnError):
    """Training could not go on (e.g. the loss became NaN)."""


@dataclass
class TrainConfig:
    """Every option of a run; None means "the model's default for this data set"."""

    dataset: str
    model: str | None = None
    model_args: dict = field(default_factory=dict)
    epochs: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    optimizer: str | None = None
    schedule: str | None = None
    weight_decay: float = 5e-4
    momentum: float = 0.9
    label_smoothing: float = 0.0
    patience: int | None = None  # early stopping: epochs without improvement of `monitor`
    monitor: str = "val_accuracy"  # which epoch the checkpoint keeps; front ends start from `default_monitor(model)`
    seed: int = 0
    device: str | None = None
    limit: int | None = None  # use at most this many images per split (quick classroom runs)
    augment: AugmentConfig | None = None  # None: what suits the data set
    tta: bool = True  # test metrics average the orientations the augmentation taught (augment.orientations_taught)
    image_size: int | None = None  # image folders only: side the images are resized to
    out: str | None = None  # checkpoint path (".safetensors"); None: not saved
    command: str = ""  # how the run was started, recorded in the checkpoint card
    log_every: int | None = None  # batch events every N steps (None: about 50 per epoch)


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
    card: dict
    test_probs: torch.Tensor | None = None  # [N, C] on the CPU, for confusion matrices and galleries
    test_labels: torch.Tensor | None = None
    test_indices: torch.Tensor | None = None  # indices into the test split (after --limit)


Event = StartEvent | StatusEvent | BatchEvent | EpochEvent | EndEvent

#: Fewest images per batch: BatchNorm layers cannot learn from a batch of one (its variance is zero).
MIN_BATCH_SIZE = 2
#: Largest random shift accepted, in pixels (the studio offers 0-4).
MAX_AUGMENT_SHIFT = 16
#: Strongest colour jitter accepted: augment.py scales contrast by 1 ± 2·strength, which must not invert images.
MAX_COLOR_JITTER = 0.5


@dataclass
class ResolvedConfig:
    """The run's options with every default filled in, as recorded in the card."""

    model: str
    epochs: int
    batch_size: int
    lr: float
    optimizer: str
    schedule: str
    augment: AugmentConfig


def resolve_config(config: TrainConfig, info: data_registry.DatasetInfo) -> ResolvedConfig:
    """Fill in the model's defaults for this data set and check every option is in range."""
    model = config.model or default_model_for(info.family, info.image_size)
    spec = get_model_spec(model)
    d = spec.defaults
    resolved = ResolvedConfig(
        model=model,
        epochs=config.epochs if config.epochs is not None else d.get("epochs", 5),
        batch_size=config.batch_size if config.batch_size is not None else d.get("batch_size", 128),
        lr=config.lr if config.lr is not None else d.get("lr", 1e-3),
        optimizer=(config.optimizer or d.get("optimizer", "adamw")).lower(),
        schedule=(config.schedule or d.get("schedule", "none")).lower(),
        augment=config.augment if config.augment is not None else default_augment(info.family, info.task),
    )
    check_options(resolved, config)
    return resolved


def check_options(r: ResolvedConfig, config: TrainConfig) -> None:
    """ConfigError with a clear message for any option out of range."""
    if not 1 <= r.epochs <= 1000:
        raise ConfigError(f"Epochs must be between 1 and 1000; got {r.epochs}.")
    if r.batch_size < MIN_BATCH_SIZE:
        raise ConfigError(
            f"Batch size must be at least {MIN_BATCH_SIZE} (BatchNorm layers cannot learn from one image at a time); "
            f"got {r.batch_size}."
        )
    if r.batch_size > 65536:
        raise ConfigError(f"Batch size must be between {MIN_BATCH_SIZE} and 65536; got {r.batch_size}.")
    if not (0 < r.lr <= 10) or math.isnan(r.lr):
        raise ConfigError(f"Learning rate must be above 0 and at most 10; got {r.lr}.")
    if r.optimizer not in OPTIMIZERS:
        raise ConfigError(f"Unknown optimizer {r.optimizer!r}; choose one of {', '.join(OPTIMIZERS)}.")
    if r.schedule not in SCHEDULES:
        raise ConfigError(f"Unknown schedule {r.schedule!r}; choose one of {', '.join(SCHEDULES)}.")
    if config.monitor not in MONITORS:
        raise ConfigError(f"Unknown monitor {config.monitor!r}; choose one of {', '.join(MONITORS)}.")
    if config.patience is not None and config.patience < 1:
        raise ConfigError(f"Patience must be at least 1 epoch; got {config.patience}.")
    if config.patience is not None and config.monitor == "last":
        raise ConfigError(
            "Patience (early stopping) watches a validation score, but this run keeps the last epoch (monitor "
            "'last'), so it would never stop early: choose monitor val_accuracy or val_loss, or no patience."
        )
    if not 0 <= config.label_smoothing < 1:
        raise ConfigError(f"Label smoothing must be in [0, 1); got {config.label_smoothing}.")
    if config.weight_decay < 0:
        raise ConfigError(f"Weight decay must not be negative; got {config.weight_decay}.")
    if config.limit is not None and config.limit < 2:
        raise ConfigError(f"--limit must be at least 2 images; got {config.limit}.")
    if not 0 <= r.augment.shift <= MAX_AUGMENT_SHIFT:
        raise ConfigError(f"Random shift must be between 0 and {MAX_AUGMENT_SHIFT} pixels; got {r.augment.shift}.")
    if not 0 <= r.augment.color_jitter <= MAX_COLOR_JITTER:
        raise ConfigError(
            f"Colour jitter must be between 0 and {MAX_COLOR_JITTER:g}; got {r.augment.color_jitter:g}."
        )
    if not 0 <= r.augment.grayscale <= 1:
        raise ConfigError(f"The grayscale probability must be between 0 and 1; got {r.augment.grayscale:g}.")


def default_monitor(model: str) -> str:
    """Which epoch a run of `model` keeps unless told otherwise: the registry entry's hint (transfer models:
    "last", for validation sets of a few dozen images), else the best validation accuracy."""
    hint = get_model_spec(model).defaults.get("monitor", TrainConfig.monitor)
    return hint if hint in MONITORS else TrainConfig.monitor


def steps_per_epoch(n_train: int, batch_size: int) -> int:
    """Gradient steps in one epoch: a ragged last batch of a single image is skipped (BatchNorm cannot
    learn from it), so 17 images in batches of 8 make 2 steps. Estimates (the studio's) use this too."""
    full, rest = divmod(n_train, batch_size)
    return full + (1 if rest >= MIN_BATCH_SIZE else 0)


@dataclass
class PreparedData:
    """Splits as uint8 tensors plus the preprocessing that turns a batch into model input."""

    info: data_registry.DatasetInfo
    train: tuple[torch.Tensor, torch.Tensor]
    val: tuple[torch.Tensor, torch.Tensor]
    test: tuple[torch.Tensor, torch.Tensor]
    test_indices: torch.Tensor
    preprocess: BatchPreprocessor
    normalization: dict
    skipped: int = 0


def _subset(split: data_registry.SplitData, limit: int | None, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    n = split.labels.shape[0]
    if limit is None or limit >= n:
        index = torch.arange(n)
    else:
        index = torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:limit].sort().values
    return split.images[index], split.labels[index], index


def prepare_data(config: TrainConfig, resolved: ResolvedConfig, device: torch.device) -> PreparedData:
    """Load (cached) splits, check they fit the task, and put the training images on the device."""
    info = data_registry.get_dataset_info(config.dataset)
    if "multi-label" in info.task:
        raise ConfigError(
            f"{info.title} is a multi-label data set (each image may have several labels); "
            "training multi-label tasks is not supported yet. Choose a binary or multi-class data set."
        )
    splits = {}
    skipped = 0
    image_size = config.image_size
    if image_size is None and info.family == "folder":  # e.g. transfer models: the backbone's input size
        image_size = folder_image_size(resolved.model, config.model_args)
    for name in ("train", "val", "test"):
        split = data_registry.load_split(config.dataset, name, image_size=image_size)
        skipped += getattr(split, "skipped", 0) or 0
        splits[name] = _subset(split, config.limit, config.seed)
    info = split.info
    n_train = splits["train"][1].shape[0]
    if n_train == 0:
        raise ConfigError(f"{info.title} has no training images.")
    if resolved.batch_size > n_train:
        raise ConfigError(
            f"Batch size {resolved.batch_size} is larger than the training set ({n_train} images); "
            f"choose at most {n_train}."
        )
    mean, std = data_registry.channel_stats(config.dataset)
    preprocess = BatchPreprocessor(mean, std, device, resolved.augment)
    train_x, train_y, _ = splits["train"]
    return PreparedData(
        info=info,
        train=(train_x.to(device), train_y.to(device)),
        val=splits["val"][:2],
        test=splits["test"][:2],
        test_indices=splits["test"][2],
        preprocess=preprocess,
        normalization={"mean": list(mean), "std": list(std)},
        skipped=skipped,
    )


def folder_image_size(model: str, model_args: dict | None) -> int | None:
    """The side image-folder pictures are loaded at when the run names none: a transfer model's `input_size`
    (so `--model-arg input_size=288` reads the files at 288 px instead of enlarging 224-px copies), else the
    model's own default (None: the data set's usual 128 px)."""
    default = get_model_spec(model).defaults.get("folder_image_size")
    asked = (model_args or {}).get("input_size")
    if default is not None and isinstance(asked, int) and not isinstance(asked, bool) and asked > 0:
        return asked
    return default


def make_optimizer(name: str, params, lr: float, weight_decay: float, momentum: float) -> torch.optim.Optimizer:
    """The optimizer by name, with the options torchvision's reference script exposes."""
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, nesterov=momentum > 0, weight_decay=weight_decay)
    return torch.optim.RMSprop(params, lr=lr, momentum=momentum, weight_decay=weight_decay)


def make_scheduler(name: str, optimizer: torch.optim.Optimizer, lr: float, total_steps: int):
    """A per-step learning-rate schedule, or None."""
    if name == "onecycle":
        if total_steps <= 4:  # too short to warm up and anneal (OneCycleLR divides by zero at 4 steps): constant rate
            return None
        max_lrs = [group["lr"] for group in optimizer.param_groups] if len(optimizer.param_groups) > 1 else lr
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=max_lrs, total_steps=total_steps, pct_start=0.25)
    if name == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps)
    return None


@torch.no_grad()
def predict_probs(
    model: nn.Module,
    images: torch.Tensor,
    preprocess: Callable[[torch.Tensor], torch.Tensor],
    device: torch.device,
    batch_size: int = 512,
    views: tuple[str, ...] = ("identity",),
) -> torch.Tensor:
    """Class probabilities [N, C] (on the CPU) for uint8 images, in eval mode, averaged over `views`
    (orientations, augment.ORIENTATIONS: test-time augmentation)."""
    model.eval()
    out = []
    for start in range(0, images.shape[0], batch_size):
        x = preprocess(images[start : start + batch_size].to(device))
        probs = 0
        for view in views:
            seen = x if view == "identity" else orient(x, view).contiguous(memory_format=torch.channels_last)
            with autocast(device):
                logits = model(seen)
            probs = probs + torch.softmax(logits.float(), dim=1)
        out.append((probs / len(views)).cpu())
    if not out:
        return torch.empty(0, 0)
    return torch.cat(out)


def _eval_loss_accuracy(probs: torch.Tensor, labels: torch.Tensor) -> tuple[float, float]:
    if probs.numel() == 0:
        return float("nan"), float("nan")
    labels = labels.cpu()
    loss = F.nll_loss(torch.log(probs.clamp_min(1e-12)), labels).item()
    accuracy = (probs.argmax(1) == labels).float().mean().item()
    return loss, accuracy


def library_versions() -> dict:
    """Versions recorded in every card, so a checkpoint says what made it."""
    import torchvision

    from . import __version__

    return {
        "cnn_explorer": __version__,
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "python": sys.version.split()[0],
    }


def build_for_data(model_name: str, info: data_registry.DatasetInfo, model_args: dict) -> nn.Module:
    """A registry model shaped for this data set (channels, classes, image size)."""
    return build_model(model_name, info.channels, len(info.class_names), info.image_size, **model_args)


def train(config: TrainConfig, cancel: threading.Event | None = None) -> Iterator[Event]:
    """Train one model and yield events; the last event is an EndEvent.

    Raises CnnError subclasses (ConfigError, DataError, TrainingError) with a clear message.
    """
    device = pick_device(config.device)
    info = data_registry.get_dataset_info(config.dataset)
    resolved = resolve_config(config, info)
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    prepared = prepare_data(config, resolved, device)
    info = prepared.info
    model = build_for_data(resolved.model, info, config.model_args).to(device)
    model = model.to(memory_format=torch.channels_last)

    train_x, train_y = prepared.train
    n_train = train_y.shape[0]
    epoch_steps = steps_per_epoch(n_train, resolved.batch_size)
    total_steps = epoch_steps * resolved.epochs
    last_start = (epoch_steps - 1) * resolved.batch_size  # the epoch's last batch that trains
    log_every = config.log_every or max(1, epoch_steps // 50)
    run_config = {
        **{k: v for k, v in asdict(config).items() if k not in ("augment", "command")},
        **{k: v for k, v in asdict(resolved).items() if k != "augment"},
        "augment": asdict(resolved.augment),
    }

    yield StartEvent(
        dataset=info.name,
        model=resolved.model,
        device=describe_device(device),
        n_train=n_train,
        n_val=int(prepared.val[1].shape[0]),
        n_test=int(prepared.test[1].shape[0]),
        epochs=resolved.epochs,
        steps_per_epoch=epoch_steps,
        config=run_config,
        network=model,
    )

    checkpoint_model = model
    adapt_training = getattr(model, "adapt_training", None)
    if callable(adapt_training):  # transfer models: their normalization; frozen stages computed once, cached
        describe = getattr(model, "preparation_status", None)
        status = describe(prepared) if callable(describe) else None
        if status:
            yield StatusEvent(status)
        preparing = time.perf_counter()
        model, prepared = adapt_training(prepared, seed=config.seed, cancel=cancel)
        train_x, train_y = prepared.train
        if status and not (cancel is not None and cancel.is_set()):
            yield StatusEvent(f"Ready in {time.perf_counter() - preparing:.1f} s.")
    param_groups = getattr(model, "param_groups", None)
    params = param_groups(resolved.lr) if callable(param_groups) else model.parameters()
    optimizer = make_optimizer(resolved.optimizer, params, resolved.lr, config.weight_decay, config.momentum)
    scheduler = make_scheduler(resolved.schedule, optimizer, resolved.lr, total_steps)

    best_score = -math.inf
    best_state = copy.deepcopy(model.state_dict())
    best_epoch = 0
    best_val: dict = {}
    epochs_without_improvement = 0
    stopped_early = cancelled = False
    train_seconds = 0.0
    step = 0
    epoch = 0
    eval_preprocess = lambda x: prepared.preprocess(x, train=False)  # noqa: E731

    for epoch in range(1, resolved.epochs + 1):
        model.train()
        started = time.perf_counter()
        order = torch.randperm(n_train, generator=generator).to(device)
        loss_sum = torch.zeros((), device=device)
        correct_sum = torch.zeros((), device=device)
        seen = 0
        for start in range(0, n_train, resolved.batch_size):
            if cancel is not None and cancel.is_set():
                cancelled = True
                break
            if start > last_start:
                break  # a ragged tail of one image: BatchNorm cannot learn from it (see steps_per_epoch)
            index = order[start : start + resolved.batch_size]
            x = prepared.preprocess(train_x[index], train=True, generator=generator)
            y = train_y[index]
            with autocast(device):
                logits = model(x)
                loss = F.cross_entropy(logits.float(), y, label_smoothing=config.label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            step += 1
            batch_correct = (logits.argmax(1) == y).sum()
            loss_sum += loss.detach() * y.shape[0]
            correct_sum += batch_correct
            seen += y.shape[0]
            if step % log_every == 0 or start == last_start:
                loss_value = loss.item()
                if not math.isfinite(loss_value):
                    raise TrainingError(
                        f"Training diverged: the loss became {loss_value} at step {step} (epoch {epoch}). "
                        f"Lower the learning rate (now {resolved.lr:g}) and try again."
                    )
                yield BatchEvent(
                    step=step,
                    epoch=epoch,
                    loss=loss_value,
                    accuracy=batch_correct.item() / y.shape[0],
                    lr=optimizer.param_groups[-1]["lr"],
                    seconds=train_seconds + time.perf_counter() - started,
                )
        train_seconds += time.perf_counter() - started
        if cancelled and seen == 0:
            epoch -= 1
            break
        val_probs = predict_probs(model, prepared.val[0], eval_preprocess, device)
        val_loss, val_accuracy = _eval_loss_accuracy(val_probs, prepared.val[1])
        train_loss = (loss_sum / max(seen, 1)).item()
        if not math.isfinite(train_loss):
            raise TrainingError(
                f"Training diverged: the loss became {train_loss} in epoch {epoch}. "
                f"Lower the learning rate (now {resolved.lr:g}) and try again."
            )
        score = -val_loss if config.monitor == "val_loss" else val_accuracy
        if config.monitor == "last":
            score = epoch
        if math.isnan(score):  # no validation images: the last epoch counts as best
            score = epoch
        improved = score > best_score
        if improved:
            best_score, best_epoch = score, epoch
            best_state = copy.deepcopy(model.state_dict())
            best_val = {"val_loss": val_loss, "val_accuracy": val_accuracy}
            epochs_without_improvement = 0
        else:
            epochs_without_improvement += 1
        yield EpochEvent(
            epoch=epoch,
            train_loss=train_loss,
            train_accuracy=(correct_sum / max(seen, 1)).item(),
            val_loss=val_loss,
            val_accuracy=val_accuracy,
            lr=optimizer.param_groups[-1]["lr"],
            seconds=train_seconds,
            improved=improved,
        )
        if cancelled:
            break
        if config.patience and epochs_without_improvement >= config.patience:
            stopped_early = True
            break

    if best_epoch:
        model.load_state_dict(best_state)
    test_probs = test_metrics = None
    # Test-time augmentation needs images: cached transfer features (a _ViewPicker) are one view already.
    on_images = isinstance(prepared.preprocess, BatchPreprocessor)
    views = orientations_taught(resolved.augment) if config.tta and on_images else ("identity",)
    if not cancelled:
        test_probs = predict_probs(model, prepared.test[0], eval_preprocess, device, views=views)
        if test_probs.numel():
            test_metrics = classification_metrics(test_probs, prepared.test[1], len(info.class_names))

    card = {
        "model": resolved.model,
        "model_args": dict(config.model_args),
        "dataset": info.name,
        "dataset_title": info.title,
        "family": info.family,
        "task": info.task,
        "class_names": list(info.class_names),
        "channels": info.channels,
        "image_size": info.image_size,
        "normalization": prepared.normalization,
        "test_time_augmentation": list(views) if len(views) > 1 else [],
        "metrics": {"test": test_metrics, "best_val": best_val},
        "training": {
            **run_config,
            "best_epoch": best_epoch,
            "epochs_run": epoch,
            "train_seconds": round(train_seconds, 2),
            "stopped_early": stopped_early,
            "cancelled": cancelled,
            "device": describe_device(device),
            "n_train": n_train,
        },
        "command": config.command,
        "versions": library_versions(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        **(checkpoint_model.card_info() if callable(getattr(checkpoint_model, "card_info", None)) else {}),
    }
    checkpoint_path = None
    if config.out:
        from .checkpoints import save_checkpoint

        checkpoint_path = str(save_checkpoint(checkpoint_model, card, Path(config.out)))
    yield EndEvent(
        best_epoch=best_epoch,
        epochs_run=epoch,
        seconds=train_seconds,
        test_metrics=test_metrics,
        checkpoint_path=checkpoint_path,
        stopped_early=stopped_early,
        cancelled=cancelled,
        card=card,
        test_probs=test_probs,
        test_labels=prepared.test[1] if test_probs is not None else None,
        test_indices=prepared.test_indices if test_probs is not None else None,
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
