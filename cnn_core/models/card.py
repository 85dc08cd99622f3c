"""The checkpoint card: what a checkpoint is (model, data set, classes, input preparation), how it was made
and what it measured. Stored as JSON in the safetensors metadata and beside the weights; its keys and their
meaning are the on-disk format, so `Card.to_dict` writes exactly what `Card.from_dict` reads."""

from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path

import torch

from .. import __version__
from ..errors import CheckpointError
from ..settings import local_path

#: Keys every card has; a file without them is not a CNN Explorer checkpoint.
REQUIRED_KEYS = ("model", "dataset", "class_names", "channels", "image_size", "normalization")
#: The orientations a card may list under `test_time_augmentation` (data.augment.ORIENTATIONS' names).
METRIC_ROWS = ("accuracy", "balanced_accuracy", "precision", "recall", "sensitivity", "specificity", "f1", "auroc",
                "kappa")


@dataclass(frozen=True)
class Card:
    """A checkpoint's card. `normalization` is {"mean": [...], "std": [...]} per channel in [0, 1];
    `metrics` is {"test": {...} or None, "best_val": {...}}; `training` holds the run's resolved options and
    its outcome (best_epoch, epochs_run, train_seconds, device, n_train, ...)."""

    model: str
    dataset: str
    class_names: tuple[str, ...]
    channels: int
    image_size: int
    normalization: dict
    model_args: dict = field(default_factory=dict)
    dataset_title: str = ""
    family: str = ""
    task: str = ""
    test_time_augmentation: tuple[str, ...] = ()
    metrics: dict = field(default_factory=dict)
    training: dict = field(default_factory=dict)
    command: str = ""
    versions: dict = field(default_factory=dict)
    created: str = ""
    weights: str = "full"  # "partial": only what training changed (a transfer model's head and trained stages)
    backbone: dict | None = None  # transfer models: which ImageNet backbone, mode, stages trained
    extra: dict = field(default_factory=dict)  # keys this version does not know, kept as they are

    @classmethod
    def from_dict(cls, data: dict, source: str = "The checkpoint") -> Card:
        """A card from its JSON form; CheckpointError when a required key is missing or of the wrong type."""
        if not isinstance(data, dict):
            raise CheckpointError(f"{source}'s card is not a JSON object; it is not a CNN Explorer checkpoint.")
        missing = [key for key in REQUIRED_KEYS if data.get(key) is None]
        if missing:
            raise CheckpointError(f"{source}'s card lacks {', '.join(missing)}; it is not a CNN Explorer checkpoint.")
        known = {f.name for f in fields(cls)} - {"extra"}
        values = {key: value for key, value in data.items() if key in known and value is not None}
        try:
            values["class_names"] = tuple(str(name) for name in data["class_names"])
            values["channels"] = int(data["channels"])
            values["image_size"] = int(data["image_size"])
            views = data.get("test_time_augmentation")
            values["test_time_augmentation"] = tuple(v for v in views if isinstance(v, str)) if isinstance(views, list) else ()
            normalization = data["normalization"]
            if not isinstance(normalization, dict) or not {"mean", "std"} <= set(normalization):
                raise TypeError("normalization")
        except (TypeError, ValueError):
            raise CheckpointError(f"{source}'s card is damaged (a required entry has the wrong type).") from None
        values["backbone"] = data.get("backbone")
        problem = _card_problem(values, data)
        if problem:
            raise CheckpointError(f"{source}'s card is damaged: {problem}.")
        return cls(**values, extra={key: value for key, value in data.items() if key not in known})

    def to_dict(self) -> dict:
        """The JSON form, in the order the files have always had."""
        data = {
            "model": self.model,
            "model_args": dict(self.model_args),
            "dataset": self.dataset,
            "dataset_title": self.dataset_title,
            "family": self.family,
            "task": self.task,
            "class_names": list(self.class_names),
            "channels": self.channels,
            "image_size": self.image_size,
            "normalization": self.normalization,
            "test_time_augmentation": list(self.test_time_augmentation),
            "metrics": self.metrics,
            "training": self.training,
            "command": self.command,
            "versions": self.versions,
            "created": self.created,
        }
        if self.backbone is not None:
            data["backbone"] = self.backbone
        data["weights"] = self.weights
        return {**data, **self.extra}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, default=_json_default)

    def data_source(self) -> str:
        """What to load the checkpoint's data set by: an image folder by the path it was trained from (its name
        is registered only in the process that trained it), any other set by its name. CheckpointError when
        that folder is not here (any more)."""
        given = local_path(str(self.training.get("dataset") or "")) if isinstance(self.training, dict) else ""
        if self.family != "folder" or not given or given == self.dataset:
            return self.dataset
        if not Path(given).is_dir():
            raise CheckpointError(f"The checkpoint was trained on the image folder {given}, which is not here (any "
                                  "more): pass --data PATH of the folder, or --images PATH of images in class folders.")
        return given

    def check_classes(self, class_names: tuple[str, ...] | list[str], where: str) -> None:
        """CheckpointError unless `class_names` (a data set's, in label order) are the checkpoint's: labels are
        indices into them, so a class added or renamed in an image folder since training would score every image
        against the wrong class (a silent 0 %, or torchmetrics' "more unique values in target")."""
        from ..data.zipnames import readable_name  # names as the data reads them (NFC): a Mac's Ö is a PC's Ö

        ours, theirs = [readable_name(c) for c in self.class_names], [readable_name(c) for c in class_names]
        if ours == theirs or (len(ours) == len(theirs) and all(
                a == b or (a.isdigit() and b.split(" ", 1)[0] == a) for a, b in zip(ours, theirs))):
            return  # an earlier card's class numbers ("0"-"4") against their names now ("0 no DR": RetinaMNIST)
        added, missing = [c for c in theirs if c not in ours], [c for c in ours if c not in theirs]
        change = "; ".join(text for text in (f"new: {', '.join(added)}" if added else "",
                                             f"gone: {', '.join(missing)}" if missing else "") if text)
        raise CheckpointError(f"{where} has the classes {', '.join(theirs)}, but the checkpoint was trained on "
                              f"{', '.join(ours)} ({change or 'in another order'}): its labels would not match. "
                              "Evaluate it on data with the classes it was trained on, or train it again.")

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    @property
    def test_metrics(self) -> dict | None:
        """The test split's metrics (accuracy, auroc, ..., confusion_matrix), or None (a stopped run)."""
        test = (self.metrics or {}).get("test")
        return test if isinstance(test, dict) else None

    @property
    def test_accuracy(self) -> float | None:
        value = (self.test_metrics or {}).get("accuracy")
        return float(value) if isinstance(value, (int, float)) else None

    @property
    def is_digit_model(self) -> bool:
        """Trained on handwritten digits (MNIST): inputs are prepared the MNIST way."""
        return self.family == "mnist" or self.dataset.startswith("mnist")

    @property
    def stopped_early(self) -> bool:
        """Whether the run that made it was stopped by hand (its weights are the best epoch before that)."""
        return bool(self.training.get("cancelled"))


def _card_problem(values: dict, data: dict) -> str | None:
    """What makes a card's required entries unusable, in words, or None: a model built from it must fit the
    images it is given and give finite outputs (a std of 0 divides by zero; an image size of 100,000 asks for
    400 GB)."""
    from ..data.types import MAX_IMAGE_SIZE, MIN_IMAGE_SIZE

    for key in ("model", "dataset"):
        if not isinstance(values[key], str) or not values[key]:
            return f"{key} is {values[key]!r}, not a name"
    names = values["class_names"]
    if len(names) < 2 or len(set(names)) != len(names):
        return f"it needs two or more different class names, not {list(names)[:10]}"
    if values["channels"] not in (1, 3):
        return f"channels is {values['channels']}, not 1 or 3"
    if not MIN_IMAGE_SIZE <= values["image_size"] <= MAX_IMAGE_SIZE:
        return f"image_size is {values['image_size']}, not {MIN_IMAGE_SIZE} to {MAX_IMAGE_SIZE} px"
    if data.get("model_args") is not None and not isinstance(data["model_args"], dict):
        return "model_args is not a mapping of option names to values"
    for key in ("mean", "std"):
        numbers = data["normalization"][key]
        finite = isinstance(numbers, list) and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in numbers)
        # 3 values on a 1-channel card: a transfer model, whose gray input is repeated into ImageNet's 3 channels
        lengths = (1, values["channels"], 3) if values["model"].startswith("transfer:") else (1, values["channels"])
        if not finite or len(numbers) not in lengths:
            return f"normalization {key} must be {values['channels']} finite number(s), not {numbers!r}"
    if any(v <= 0 for v in data["normalization"]["std"]):
        return "a normalization std is 0 or negative"
    return None


def library_versions() -> dict:
    """Versions recorded in every card, so a checkpoint says what made it."""
    import torchvision

    return {
        "cnn_explorer": __version__,
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "python": sys.version.split()[0],
    }


def model_card_markdown(card: Card, filename: str) -> str:
    """A model card for people: what the checkpoint is, the command that made it, its measured metrics."""
    training = card.training
    test = card.test_metrics or {}
    views = card.test_time_augmentation
    lines = [
        f"# {filename}",
        "",
        f"- Model: `{card.model}` {json.dumps(card.model_args)}",
        f"- Data set: `{card.dataset}` ({card.dataset_title}), task {card.task}, "
        f"{card.n_classes} classes, input {card.channels}x{card.image_size}x{card.image_size}",
        f"- Trained on: {training.get('device', '?')}, {training.get('epochs_run', '?')} epochs "
        f"(best {training.get('best_epoch', '?')}), {training.get('train_seconds', '?')} s of training, "
        f"{training.get('n_train', '?')} training images",
        f"- Made by: `{card.command or 'the training studio'}`",
        *([f"- Test-time augmentation: predictions average {len(views)} orientations ({', '.join(views)})"]
          if len(views) > 1 else []),
        *[f"- Data note: {note}" for note in training.get("data_notes", [])],
        f"- Versions: {json.dumps(card.versions)}",
        "",
        f"## Test metrics ({test.get('n', '?')} test images)",
        "",
        "| metric | value |",
        "|---|---|",
    ]
    undefined = test.get("undefined") or {}
    for key in METRIC_ROWS:
        if test.get(key) is not None:
            lines.append(f"| {metric_label(key, test)} | {test[key]:.4f} |")
        elif key in undefined:
            lines.append(f"| {metric_label(key, test)} | n/a ({undefined[key]}) |")
    return "\n".join(lines) + "\n"


def metric_label(key: str, metrics: dict) -> str:
    """A metric's name, with the class it is about for two classes: "sensitivity (malignant)", "specificity
    (normal, benign)" (which class is positive: `inference.metrics.positive_class`)."""
    about = {"sensitivity": "positive_class", "recall": "positive_class", "precision": "positive_class",
             "f1": "positive_class", "specificity": "negative_class"}.get(key)
    return f"{key} ({metrics[about]})" if about and metrics.get(about) else key


def _json_default(value):
    if isinstance(value, torch.Tensor):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serializable: {type(value).__name__}")
