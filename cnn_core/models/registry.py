"""The model registry: every network the app, the CLI and the tests can build, by name.

`build_model` is the one entry point; `transfer:<backbone>` names come from `transfer.transfer_spec`.
"""

from __future__ import annotations

import functools
import inspect

import torch
from torch import nn

from ..errors import ConfigError
from .cnns import FastNet, LeNet, SimpleCNN, SmallResNet
from .spec import Classifier, ModelSpec
from .transfer import PREFIX, list_transfer_specs, transfer_spec


#: The Small ResNet's optimizer steps and batch on a set under 5,000 images (the default recipe's budget; FastNet
#: gets 1,200 steps of 128): 240 steps of 64 images at 28 px took 27-44 s on the idle 2-core development CPU
#: (an AMD EPYC; batches of 128 took up to 70 s there, and 37 s on an earlier, faster machine).
SMALL_RESNET_STEPS = 240
SMALL_RESNET_BATCH = 64
#: Two-class MedMNIST sets with fewer training images than this default to the Small ResNet (`default_model_for`).
SMALL_RESNET_BELOW = 5000
#: Sets of more classes do below this: at 2,000 images FastNet-32's 1,200 steps beat the ResNet's 240.
SMALL_RESNET_MULTICLASS_BELOW = 1000

MODEL_REGISTRY: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            "fastnet",
            "FastNet (CNN Explorer)",
            "Three strided conv-BN-ReLU blocks (16/32/64 filters) and one linear layer. Built for speed on a "
            "CPU: 99 % on MNIST in about 15 s of training.",
            FastNet,
            "CNN Explorer",
            defaults={"epochs": 3, "batch_size": 256, "lr": 0.01, "optimizer": "adamw", "schedule": "onecycle"},
        ),
        ModelSpec(
            "fastnet32",
            "FastNet-32 (CNN Explorer)",
            "FastNet at twice the width (32/64/128 filters): the CPU-friendly default for image folders and for "
            "MedMNIST sets (but the smallest, which get the Small ResNet), where colour and texture need more "
            "filters than digits.",
            functools.partial(FastNet, width=32),
            "CNN Explorer",
            defaults={"epochs": 24, "max_epochs": 32, "batch_size": 128, "lr": 0.005, "optimizer": "adamw",
                      "schedule": "onecycle"},
        ),
        ModelSpec(
            "lenet",
            "LeNet-5",
            "LeCun et al.'s 1998 network: 5x5 convs with 6 and 16 filters, sigmoid, average pooling, "
            "dense layers of 120 and 84 units.",
            LeNet,
            "LeCun et al., 1998",
            min_image_size=12,
            defaults={"epochs": 10, "batch_size": 64, "lr": 0.002, "optimizer": "adam", "schedule": "none"},
        ),
        ModelSpec(
            "simple_cnn",
            "Simple CNN (8/16 filters)",
            "The 8/16-filter tutorial CNN: two 3x3 conv layers with 8 and 16 filters, ReLU and 2x2 max "
            "pooling, then one linear layer.",
            SimpleCNN,
            "The classic PyTorch MNIST tutorial network",
            min_image_size=4,
            defaults={"epochs": 3, "batch_size": 60, "lr": 0.001, "optimizer": "adam", "schedule": "none"},
        ),
        ModelSpec(
            "resnet_small",
            "Small ResNet",
            "A ResNet for small medical images: 3x3 stem, three stages of basic residual blocks "
            "(32/64/128 filters), global average pooling, dropout and a linear layer.",
            SmallResNet,
            "After MedMNIST v2's ResNet-18 (28 px)",
            defaults={"epochs": 6, "batch_size": 128, "lr": 0.004, "optimizer": "adamw", "schedule": "onecycle",
                      "small_set_steps": SMALL_RESNET_STEPS, "small_set_batch": SMALL_RESNET_BATCH},
        ),
    )
}


def list_models() -> list[ModelSpec]:
    """Every model in the registry, then the transfer models (`transfer:<backbone>`)."""
    return list(MODEL_REGISTRY.values()) + list_transfer_specs()


def get_model_spec(name: str) -> ModelSpec:
    """The registry entry for `name`, or a ConfigError that lists the known names."""
    if isinstance(name, str) and name.startswith(PREFIX):
        return transfer_spec(name)
    try:
        return MODEL_REGISTRY[name]
    except KeyError:
        known = ", ".join(s.name for s in list_models())
        raise ConfigError(f"Unknown model {name!r}. Known models: {known}.") from None


def build_model(name: str, in_channels: int, num_classes: int, image_size: int, **kwargs) -> Classifier:
    """Build a registry model for a data set of this shape; kwargs go to the model's constructor."""
    spec = get_model_spec(name)
    if image_size < spec.min_image_size:
        raise ConfigError(f"{spec.title} needs images of at least {spec.min_image_size} px; got {image_size} px.")
    if num_classes < 2:
        raise ConfigError(f"A classifier needs at least two classes; the data set has {num_classes}.")
    if _check_model_args(name, spec.builder, kwargs):
        _check_model_size(name, spec.builder, in_channels, num_classes, image_size, kwargs)
    try:
        return spec.builder(in_channels=in_channels, num_classes=num_classes, image_size=image_size, **kwargs)
    except (TypeError, ValueError, RuntimeError, ZeroDivisionError) as exc:
        given = ", ".join(f"{key}={value!r}" for key, value in kwargs.items())
        raise ConfigError(f"Bad arguments for model {name!r} ({given}): {exc}") from None


#: Most parameters a registry model may have (VGG-16, the largest backbone offered, has 138 million).
MAX_MODEL_PARAMETERS = 200_000_000


def _check_model_size(name: str, builder, in_channels: int, num_classes: int, image_size: int, kwargs: dict) -> None:
    """ConfigError when the model these arguments make would have more than `MAX_MODEL_PARAMETERS` parameters
    (FastNet with blocks=12 doubles its filters 11 times: 5 billion parameters, 20 GB, and the process was
    killed). Built on PyTorch's meta device first: shapes only, no memory."""
    try:
        with torch.device("meta"):
            model = builder(in_channels=in_channels, num_classes=num_classes, image_size=image_size, **kwargs)
        size = sum(parameter.numel() for parameter in model.parameters())
    except (TypeError, ValueError, RuntimeError, ZeroDivisionError, OverflowError) as exc:
        given = ", ".join(f"{key}={value!r}" for key, value in kwargs.items())
        raise ConfigError(f"Bad arguments for model {name!r} ({given}): {exc}") from None
    if size > MAX_MODEL_PARAMETERS:
        given = ", ".join(f"{key}={value!r}" for key, value in kwargs.items())
        raise ConfigError(f"Model {name!r} with {given} would have {size:,} parameters, more than the "
                          f"{MAX_MODEL_PARAMETERS:,} allowed here; use smaller values.")


def _check_model_args(name: str, builder, kwargs: dict) -> bool:
    """ConfigError naming an argument the model does not take, a value of another type than its default's
    (`width=abc` where a whole number is meant), or a count or size under 1 (`stem_stride=0` divided by zero,
    `width=0` made empty layers). True when the builder's arguments were all checked here (the registry's own
    CNNs); False for builders that check their own (transfer models)."""
    try:
        parameters = inspect.signature(builder).parameters
    except (TypeError, ValueError):  # a builder without a signature: its own errors will tell
        return False
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return False
    own = {key: p for key, p in parameters.items() if key not in ("in_channels", "num_classes", "image_size")}
    for key, value in kwargs.items():
        if key not in own:
            accepted = ", ".join(own) or "none"
            raise ConfigError(f"Model {name!r} takes no argument {key!r}; its arguments: {accepted}.")
        default = own[key].default
        kind, allowed = _ARG_KINDS.get(type(default), ("", object))
        if not isinstance(value, allowed) or (isinstance(value, bool) and type(default) is not bool):
            raise ConfigError(f"Model argument {key} of {name!r} must be {kind} (default {default!r}); got {value!r}.")
        if isinstance(value, int) and not isinstance(value, bool) and value < 1:  # a stage of a tuple may be 0
            raise ConfigError(f"Model argument {key} of {name!r} must be at least 1 (default {default!r}); got {value!r}.")
    return True


#: What a model argument's default says its values must be: words for people, and the types that fit.
_ARG_KINDS = {bool: ("true or false", bool), int: ("a whole number", int), float: ("a number", (int, float))}


def default_model_for(family: str, image_size: int, n_train: int | None = None, n_classes: int | None = None
                      ) -> str:
    """The default model for a data set of `n_train` training images in `n_classes` classes (None: unknown).

    FastNet for MNIST. The Small ResNet for MedMNIST sets under `SMALL_RESNET_BELOW` training images with two
    classes, or under `SMALL_RESNET_MULTICLASS_BELOW` with more: its `SMALL_RESNET_STEPS` steps of
    `SMALL_RESNET_BATCH` take 27-44 s on a 2-core CPU. FastNet-32 otherwise, which trains PathMNIST's 90,000
    images in minutes (the ResNet is about 4x slower per image), and for image folders (not measured).

    Measured on PathMNIST subsets (`benchmarks/bench_small_sets.py --seeds 3`, test accuracy / ROC-AUC, means of
    seeds 0-2; the ResNet on an idle AMD EPYC 2-core machine, FastNet-32's 1,200 steps the day before on another
    2-core machine, before the small-validation rule of `resolve_monitor`):
    - two classes 3:1, 546 images: 92.5 % / 0.976 against 87.0 % / 0.939;
    - two classes 10:1, 546 images: 83.4 % / 0.932 against 84.0 % / 0.912;
    - two classes 3:1, 4,708 images: 92.5 % / 0.980 against 89.2 % / 0.974;
    - seven classes 10:1, 500 images: 67.4 % / 0.920 against 64.8 % / 0.883;
    - eight classes 3:1, 2,000 images: 64.8 % / 0.921 against 74.7 % / 0.950, hence FastNet-32 from 1,000
      images for more than two classes (a cut between the two measured sizes, not measured itself).
    """
    if family == "mnist":
        return "fastnet"
    below = SMALL_RESNET_BELOW if n_classes == 2 else SMALL_RESNET_MULTICLASS_BELOW
    if family == "medmnist" and n_train is not None and 0 < n_train < below:
        return "resnet_small"
    return "fastnet32"


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(total, trainable) parameter counts."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return total, trainable
