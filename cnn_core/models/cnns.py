"""The registry's own CNNs: LeNet-5, the 8/16-filter tutorial CNN, FastNet and a small ResNet.

Each takes the data set's shape (input channels, class count, image size) so the same name works for
MNIST, MedMNIST and image folders.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import ConfigError
from .spec import Classifier


def _conv_bn_relu(c_in: int, c_out: int, kernel: int = 3, stride: int = 1) -> list[nn.Module]:
    return [
        nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    ]


class LeNet(Classifier):
    """LeNet-5 (LeCun et al., 1998, as in d2l.ai's LeNet chapter): sigmoid activations, average pooling,
    6/16 filters of 5x5, dense layers of 120 and 84 units."""

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


class SimpleCNN(Classifier):
    """The 8/16-filter tutorial CNN: two 3x3 conv layers with 8 and 16 filters, ReLU and 2x2 max pooling,
    then one linear layer."""

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


class FastNet(Classifier):
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


class SmallResNet(Classifier):
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
