"""Batch augmentation on the training device: no per-sample PIL work inside the training loop.

Batches arrive as uint8 tensors sliced from the cached data set; `BatchPreprocessor` turns them into
normalized float tensors and, for training, applies random shifts and flips to the whole batch at once.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class AugmentConfig:
    """Which augmentations to use; flips make no sense for digits, so MNIST gets shifts only."""

    shift: int = 0  # random translation of up to this many pixels
    hflip: bool = False
    vflip: bool = False
    color_jitter: float = 0.0  # colour jitter strength: contrast, per-channel gain, brightness (0 = off)

    @property
    def active(self) -> bool:
        return bool(self.shift or self.hflip or self.vflip or self.color_jitter)


def default_augment(family: str, task: str) -> AugmentConfig:
    """Augmentations that make sense for the data: shifts for digits, flips and shifts for tissue and scans."""
    if family == "mnist":
        return AugmentConfig(shift=2)
    return AugmentConfig(shift=2, hflip=True, vflip=family == "medmnist", color_jitter=0.1)


class BatchPreprocessor:
    """uint8 [N,C,H,W] -> normalized float on the device, channels-last, augmented when training."""

    def __init__(
        self,
        mean: list[float],
        std: list[float],
        device: torch.device,
        augment: AugmentConfig | None = None,
        out_size: int | None = None,
    ):
        self.mean = torch.tensor(mean, device=device).view(1, -1, 1, 1)
        self.std = torch.tensor(std, device=device).view(1, -1, 1, 1)
        self.device = device
        self.augment = augment or AugmentConfig()
        self.out_size = out_size

    def __call__(self, images: torch.Tensor, train: bool = False, generator: torch.Generator | None = None) -> torch.Tensor:
        x = images.to(self.device, non_blocking=True).float().div_(255.0)
        if self.out_size and x.shape[-1] != self.out_size:
            x = F.interpolate(x, size=(self.out_size, self.out_size), mode="bilinear", align_corners=False)
        if x.shape[1] != self.mean.shape[1]:
            x = x.expand(-1, self.mean.shape[1], -1, -1)
        if train and self.augment.active:
            x = self._augment(x, generator)
        x = (x - self.mean) / self.std
        return x.contiguous(memory_format=torch.channels_last)

    def _augment(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        n = x.shape[0]
        aug = self.augment

        def coin() -> torch.Tensor:
            return (torch.rand(n, generator=generator) < 0.5).to(x.device).view(n, 1, 1, 1)

        if aug.hflip:
            x = torch.where(coin(), x.flip(3), x)
        if aug.vflip:
            x = torch.where(coin(), x.flip(2), x)
        if aug.shift:
            # One random shift per batch keeps the step cheap; batches differ, so samples see many shifts.
            dy, dx = torch.randint(-aug.shift, aug.shift + 1, (2,), generator=generator).tolist()
            if dx or dy:
                s = aug.shift
                padded = F.pad(x, (s, s, s, s))
                h, w = x.shape[-2:]
                x = padded[..., s + dy : s + dy + h, s + dx : s + dx + w]
        if aug.color_jitter:
            # Contrast around the image's mean, a gain per channel (stain and scanner colour differ between
            # labs: this is what lets PathMNIST models hold up on the test set, scanned at another clinic) and
            # a brightness offset. Strength j: contrast x(1 +- 2j), channel gain x(1 +- 1.5j), brightness +- j.
            j = aug.color_jitter

            def uniform(*shape: int) -> torch.Tensor:
                return (2 * torch.rand(*shape, generator=generator) - 1).to(x.device)

            mean = x.mean(dim=(1, 2, 3), keepdim=True)
            contrast = 1 + 2 * j * uniform(n, 1, 1, 1)
            gain = 1 + 1.5 * j * uniform(n, x.shape[1], 1, 1)
            brightness = j * uniform(n, 1, 1, 1)
            x = (((x - mean) * contrast + mean) * gain + brightness).clamp_(0, 1)
        return x
