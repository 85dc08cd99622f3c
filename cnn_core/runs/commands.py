"""Checks and records made before a run starts: options a student can act on, where its checkpoint goes,
the CLI command that repeats it, and how many runs train at once."""

from __future__ import annotations

import json
import os
import re
import shlex
import time
from pathlib import Path

from .. import data as data_registry
from ..errors import CnnError, ConfigError, DataError
from ..settings import portable_path, runs_dir
from ..training import ResolvedConfig, TrainConfig, resolve_config
from .worker import max_run_seconds

ENV_MAX_CONCURRENT = "CNN_MAX_CONCURRENT_RUNS"


def default_max_concurrent() -> int:
    """`CNN_MAX_CONCURRENT_RUNS`, else 2 when training runs on a CUDA GPU and 1 otherwise."""
    raw = os.environ.get(ENV_MAX_CONCURRENT, "").strip()
    if raw:
        try:
            value = int(raw)
        except ValueError:
            value = 0
        if value < 1:
            raise ConfigError(f"{ENV_MAX_CONCURRENT} must be a whole number of at least 1; got {raw!r}.")
        return value
    from ..device import pick_device

    try:
        return 2 if pick_device().type == "cuda" else 1
    except CnnError:
        return 1


def server_setting_problems() -> list[str]:
    """What is wrong with the server's own settings (environment variables), each in one sentence: said when
    the server starts, not to the first student who uploads or trains."""
    from ..data.uploads import ZipLimits

    problems = []
    for check in (default_max_concurrent, ZipLimits, max_run_seconds):
        try:
            check()
        except CnnError as exc:
            problems.append(str(exc))
    return problems


def check_run_config(config: TrainConfig) -> tuple[ResolvedConfig, data_registry.DatasetInfo]:
    """Everything that can be checked before a run starts, with a message a student can act on.

    The data set must exist and be on this computer, the options in range, and the batch no larger
    than the training set (when its size is known without loading it).
    """
    info = data_registry.get_dataset_info(config.dataset)
    status = data_registry.dataset_status(config.dataset)
    if not status.available:
        raise DataError(f"{info.title} is not on this computer (any more). {status.how_to_get}".strip())
    if info.multi_label:
        raise ConfigError(
            f"{info.title} is a multi-label data set (each image may have several labels); "
            "training multi-label tasks is not supported yet. Choose a binary or multi-class data set."
        )
    resolved = resolve_config(config, info)
    n_train = data_registry.split_sizes(config.dataset).get("train")  # folders: readable files only
    if n_train is not None and config.limit is not None:
        n_train = min(n_train, config.limit)
    if n_train is not None and resolved.batch_size > n_train:
        raise ConfigError(
            f"Batch size {resolved.batch_size} is larger than the training set ({n_train} images"
            f"{' with this subset size' if config.limit is not None else ''}); choose at most {n_train}."
        )
    return resolved, info


def checkpoint_path_for(config: TrainConfig, model: str, run_id: str) -> Path:
    """Where the app saves a run's checkpoint: the runs folder, named after data set, model and time."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    dataset = data_registry.shown_name(config.dataset)  # an upload's without its owner tag
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{dataset}-{model}-{stamp}-{run_id[:6]}")
    return runs_dir() / f"{stem}.safetensors"


def cli_command(config: TrainConfig, resolved: ResolvedConfig, family: str, task: str) -> str:
    """The `python -m cnn_core train ...` line that repeats this run, recorded in the checkpoint card.

    It names every option that changes the run, defaults filled in, so the CLI's parser gives back this run's
    TrainConfig (tested as a round trip) even if defaults change later; where the device and the checkpoint
    go is left to whoever runs it. `family` and `task` are kept for callers; the augmentation is spelled out.
    A browser's upload is named by its folder (`$CNN_CACHE_DIR/uploads/...`), which the command line can read.
    """
    upload = data_registry.registered_folder(config.dataset)  # a browser's upload: no name the command line knows
    data = portable_path(upload[1] if upload and upload[3] is not None else config.dataset)
    parts = ["python", "-m", "cnn_core", "train", "--data", data, "--model", resolved.model,
             "--epochs", str(resolved.epochs), "--batch-size", str(resolved.batch_size),
             "--lr", _number(resolved.lr), "--optimizer", resolved.optimizer, "--schedule", resolved.schedule,
             "--monitor", resolved.monitor, "--seed", str(config.seed)]
    for key, value in (config.model_args or {}).items():
        parts += ["--model-arg", f"{key}={_model_arg_text(value)}"]
    if config.weight_decay != TrainConfig.weight_decay:
        parts += ["--weight-decay", _number(config.weight_decay)]
    if config.momentum != TrainConfig.momentum:
        parts += ["--momentum", _number(config.momentum)]
    if resolved.label_smoothing or config.label_smoothing is not None:
        parts += ["--label-smoothing", _number(resolved.label_smoothing)]
    if resolved.ema_decay or config.ema_decay is not None:
        parts += ["--ema-decay", _number(resolved.ema_decay)]
    if config.class_weights != TrainConfig.class_weights:
        parts += ["--class-weights", config.class_weights]
    if config.patience is not None:
        parts += ["--patience", str(config.patience)]
    if config.limit is not None:
        parts += ["--limit", str(config.limit)]
    if resolved.image_size is not None:  # the asked side, or the default one: defaults may change later
        parts += ["--image-size", str(resolved.image_size)]
    if config.augment is not None:  # as chosen; None lets the trainer pick what suits the data set
        a = config.augment
        parts += ["--shift", str(a.shift), "--hflip" if a.hflip else "--no-hflip",
                  "--vflip" if a.vflip else "--no-vflip", "--color-jitter", _number(a.color_jitter),
                  "--rotate90" if a.rotate90 else "--no-rotate90", "--grayscale", _number(a.grayscale)]
    if not config.tta:
        parts.append("--no-tta")
    return shlex.join(parts)


def _number(value: float) -> str:
    """A float as the CLI reads it back exactly ("0.003", "0.0005", "0.3333333333333333")."""
    return repr(float(value))


def _model_arg_text(value: object) -> str:
    """A --model-arg value the CLI reads back as the same value: it parses JSON and keeps other text as is."""
    if isinstance(value, str):
        try:
            json.loads(value)
        except ValueError:
            return value  # plain text: "frozen"
        return json.dumps(value)  # text that reads as JSON ("3", "true") keeps its quotes
    return json.dumps(value)  # numbers, true/false, lists



def augment_options(family: str, task: str) -> dict[str, bool]:
    """Which augmentation toggles make sense for a data set: no flips or rotations for digits (a flipped 2 is
    no 2, a turned 6 is a 9)."""
    digits = family == "mnist"
    return {"shift": True, "hflip": not digits, "vflip": not digits, "rotate90": not digits, "color_jitter": True}

