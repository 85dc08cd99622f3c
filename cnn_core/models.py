"""The model registry: every network the app, the CLI and the tests can build, by name.

Each builder takes the data set's shape (input channels, class count, image size) so the same name
works for MNIST, MedMNIST and image folders. `build_model` is the one entry point.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn

from .errors import ConfigError


@dataclass(frozen=True)
class ModelSpec:
    """One registry entry: how to build it and what to tell a student about it."""

    name: str
    title: str
    description: str
    builder: Callable[..., nn.Module]
    source: str
    min_image_size: int = 8
    defaults: dict = field(default_factory=dict)
    modes: tuple[str, ...] = ()  # transfer models: the `mode` model_arg's choices, default first


def _conv_bn_relu(c_in: int, c_out: int, kernel: int = 3, stride: int = 1) -> list[nn.Module]:
    return [
        nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    ]


class LeNet(nn.Module):
    """LeNet-5 as in seed 000: sigmoid activations, average pooling, 6/16 filters, 120/84 dense units."""

    def __init__(self, in_channels: int = 1, num_classes: int = 10, image_size: int = 28):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 6, kernel_size=5, padding=2),
            nn.Sigmoid(),
            nn.AvgPool2d(2, 2),
            nn.Conv2d(6, 16, kernel_size=5),
            nn.Sigmoid(),
            nn.AvgPool2d(2, 2),
        )
        side = ((image_size // 2) - 4) // 2
        if side < 1:
            raise ConfigError(f"LeNet needs images of at least 12 px; got {image_size} px.")
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(16 * side * side, 120),
            nn.Sigmoid(),
            nn.Linear(120, 84),
            nn.Sigmoid(),
            nn.Linear(84, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class SimpleCNN(nn.Module):
    """Seed 004's network: two 3x3 conv layers with 8 and 16 filters, max pooling, one linear layer."""

    def __init__(self, in_channels: int = 1, num_classes: int = 10, image_size: int = 28):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 8, kernel_size=3, stride=1, padding=1)
        self.pool = nn.MaxPool2d(kernel_size=2, stride=2)
        self.conv2 = nn.Conv2d(8, 16, kernel_size=3, stride=1, padding=1)
        side = image_size // 4
        self.fc1 = nn.Linear(16 * side * side, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(torch.relu(self.conv1(x)))
        x = self.pool(torch.relu(self.conv2(x)))
        return self.fc1(torch.flatten(x, 1))


class FastNet(nn.Module):
    """CNN Explorer's own fast MNIST net: three strided conv-BN-ReLU blocks and one linear layer.

    Strided convolutions instead of pooling layers and channels-last memory make it about 3x faster
    per epoch than the same net with max pooling on a laptop CPU; it passes 99 % on MNIST in 3 epochs.
    """

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 10,
        image_size: int = 28,
        width: int = 16,
        stem_stride: int = 2,
        blocks: int = 3,
    ):
        super().__init__()
        # A stride-1 3x3 stem keeps fine texture (tissue) at full resolution; a stride-2 5x5 stem is cheaper (digits).
        stem_kernel = 5 if stem_stride == 2 else 3
        layers = [*_conv_bn_relu(in_channels, width, kernel=stem_kernel, stride=stem_stride)]
        channels = width
        for _ in range(blocks - 1):
            layers += _conv_bn_relu(channels, 2 * channels, stride=2)
            channels *= 2
        self.features = nn.Sequential(*layers)
        side = image_size
        for stride in [stem_stride] + [2] * (blocks - 1):
            side = (side - 1) // stride + 1
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(channels * side * side, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class BasicBlock(nn.Module):
    """ResNet's basic block (two 3x3 convs and a shortcut), as in torchvision's resnet18."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1):
        super().__init__()
        self.body = nn.Sequential(
            *_conv_bn_relu(c_in, c_out, stride=stride),
            nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False),
            nn.BatchNorm2d(c_out),
        )
        self.shortcut = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.body(x) + self.shortcut(x))


class SmallResNet(nn.Module):
    """A ResNet for 28x28 MedMNIST images: a 3x3 stem and three stages of basic blocks.

    MedMNIST v2's baseline is ResNet-18 at 28 px (90.7 % on PathMNIST); this keeps its design
    (3x3 stem, no max pool at 28 px, basic blocks) at a width a CPU can train in minutes.
    """

    def __init__(
        self,
        in_channels: int = 3,
        num_classes: int = 9,
        image_size: int = 28,
        width: int = 32,
        blocks: tuple[int, ...] = (1, 1, 1),
    ):
        super().__init__()
        stem_stride = 2 if image_size >= 64 else 1
        layers: list[nn.Module] = [*_conv_bn_relu(in_channels, width, stride=stem_stride)]
        channels = width
        for stage, count in enumerate(blocks):
            out = width * (2**stage)
            for index in range(count):
                stride = 2 if (index == 0 and stage > 0) else 1
                layers.append(BasicBlock(channels, out, stride))
                channels = out
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Flatten(), nn.Dropout(0.2), nn.Linear(channels, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.pool(self.features(x)))


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
            "FastNet at twice the width (32/64/128 filters): the CPU-friendly default for MedMNIST and image "
            "folders, where colour and texture need more filters than digits.",
            functools.partial(FastNet, width=32),
            "CNN Explorer",
            defaults={"epochs": 24, "batch_size": 128, "lr": 0.005, "optimizer": "adamw", "schedule": "onecycle"},
        ),
        ModelSpec(
            "lenet",
            "LeNet-5",
            "LeCun's 1998 network as in seed 000: 5x5 convs with 6 and 16 filters, sigmoid, average pooling, "
            "dense layers of 120 and 84 units.",
            LeNet,
            "Seed 000 (LeCun et al., 1998)",
            min_image_size=12,
            defaults={"epochs": 10, "batch_size": 64, "lr": 0.002, "optimizer": "adam", "schedule": "none"},
        ),
        ModelSpec(
            "simple_cnn",
            "Simple CNN (8/16 filters)",
            "Seed 004's network: two 3x3 conv layers with 8 and 16 filters, ReLU and 2x2 max pooling, "
            "then one linear layer.",
            SimpleCNN,
            "Seed 004",
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
            defaults={"epochs": 6, "batch_size": 128, "lr": 0.004, "optimizer": "adamw", "schedule": "onecycle"},
        ),
    )
}


def list_models() -> list[ModelSpec]:
    """Every model in the registry, then the transfer models (`transfer:<backbone>`, cnn_core.transfer)."""
    from .transfer import list_transfer_specs

    return list(MODEL_REGISTRY.values()) + list_transfer_specs()


def get_model_spec(name: str) -> ModelSpec:
    """The registry entry for `name`, or a ConfigError that lists the known names."""
    if isinstance(name, str) and name.startswith("transfer:"):
        from .transfer import transfer_spec

        return transfer_spec(name)
    try:
        return MODEL_REGISTRY[name]
    except KeyError:
        known = ", ".join(s.name for s in list_models())
        raise ConfigError(f"Unknown model {name!r}. Known models: {known}.") from None


def build_model(name: str, in_channels: int, num_classes: int, image_size: int, **kwargs) -> nn.Module:
    """Build a registry model for a data set of this shape; kwargs go to the model's constructor."""
    spec = get_model_spec(name)
    if image_size < spec.min_image_size:
        raise ConfigError(f"{spec.title} needs images of at least {spec.min_image_size} px; got {image_size} px.")
    if num_classes < 2:
        raise ConfigError(f"A classifier needs at least two classes; the data set has {num_classes}.")
    try:
        return spec.builder(in_channels=in_channels, num_classes=num_classes, image_size=image_size, **kwargs)
    except TypeError as exc:
        raise ConfigError(f"Bad arguments for model {name!r}: {exc}") from None


def default_model_for(family: str, image_size: int) -> str:
    """The default model for a data set: FastNet for MNIST, the wider FastNet-32 otherwise.

    Both train in minutes on a laptop CPU; `resnet_small` is stronger per epoch but about 4x slower on a CPU.
    """
    if family == "mnist":
        return "fastnet"
    return "fastnet32"


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(total, trainable) parameter counts."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return total, trainable
