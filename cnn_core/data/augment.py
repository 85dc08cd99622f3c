"""Batch augmentation on the training device: no per-sample PIL work inside the training loop.

Batches arrive as uint8 tensors sliced from the cached data set; `BatchPreprocessor` turns them into
normalized float tensors and, for training, applies random shifts and flips to the whole batch at once.
"""

from __future__ import annotations

import itertools
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
    rotate90: bool = False  # random transposes: with both flips, all 8 orientations (rotations by 90° and mirrors)
    grayscale: float = 0.0  # probability that a colour image is shown in gray (0 = off)

    @property
    def active(self) -> bool:
        return bool(self.shift or self.hflip or self.vflip or self.color_jitter or self.rotate90 or self.grayscale)


#: MedMNIST sets whose pictures have a fixed up and down (chest X-rays, breast ultrasound, retinal OCT scans):
#: mirrored left to right they are still plausible pictures of their class; upside down or turned they are not.
MIRROR_ONLY_MEDMNIST: tuple[str, ...] = ("chestmnist", "pneumoniamnist", "breastmnist", "octmnist")
#: MedMNIST sets whose labels depend on orientation: CT slices of organs labelled left and right (kidney-left,
#: lung-right, femur-left): a mirrored left kidney is a right one. No flips or turns at all.
FIXED_ORIENTATION_MEDMNIST: tuple[str, ...] = ("organamnist", "organcmnist", "organsmnist")


def default_augment(family: str, task: str, name: str = "") -> AugmentConfig:
    """Augmentations that make sense for the data: shifts for digits (a mirrored 2 is no 2); flips and shifts
    for image folders; for MedMNIST (`name`: its flag, with or without a size suffix such as "_64") every
    orientation for what is seen from above (tissue, cells, skin, the retina's fundus), plus gray copies so that
    stain colour, which differs between labs, is not all the network looks at; left-right mirrors only for
    scans with an up and down (`MIRROR_ONLY_MEDMNIST`); none for sets whose classes are left and right
    (`FIXED_ORIENTATION_MEDMNIST`). Test-time augmentation follows (`orientations_taught`)."""
    if family == "mnist":
        return AugmentConfig(shift=2)
    if family == "medmnist":
        flag = name.split("_")[0]
        if flag in FIXED_ORIENTATION_MEDMNIST:
            return AugmentConfig(shift=2, color_jitter=0.1)
        if flag in MIRROR_ONLY_MEDMNIST:
            return AugmentConfig(shift=2, hflip=True, color_jitter=0.1)
        return AugmentConfig(shift=2, hflip=True, vflip=True, color_jitter=0.1, rotate90=True, grayscale=0.25)
    return AugmentConfig(shift=2, hflip=True, color_jitter=0.1)


#: The orientations test-time augmentation averages over, by name: (transpose, flip left-right, flip up-down).
ORIENTATIONS: dict[str, tuple[bool, bool, bool]] = {
    "identity": (False, False, False),
    "hflip": (False, True, False),
    "vflip": (False, False, True),
    "rotate180": (False, True, True),
    "transpose": (True, False, False),
    "rotate90": (True, False, True),  # counter-clockwise, as torch.rot90
    "rotate270": (True, True, False),
    "anti-transpose": (True, True, True),
}


def orientations_taught(augment: AugmentConfig) -> tuple[str, ...]:
    """The orientations a network trained with `augment` has learnt to treat alike: the group its flips and
    transposes generate ("identity" only when it used none). Averaging its predictions over them is test-time
    augmentation: cheap, and steadier than one view (on PathMNIST, 8 views add about a point of accuracy)."""
    options = [(False, True) if on else (False,) for on in (augment.rotate90, augment.hflip, augment.vflip)]
    wanted = set(itertools.product(*options))
    if augment.rotate90 and (augment.hflip or augment.vflip):  # a transpose and one flip generate all 8
        wanted = set(ORIENTATIONS.values())
    return tuple(name for name, key in ORIENTATIONS.items() if key in wanted)


def orient(x: torch.Tensor, view: str) -> torch.Tensor:
    """Images [N, C, H, W] seen in orientation `view` (a name from ORIENTATIONS)."""
    transpose, hflip, vflip = ORIENTATIONS[view]
    if transpose:
        x = x.transpose(2, 3)
    if hflip:
        x = x.flip(3)
    if vflip:
        x = x.flip(2)
    return x


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

        if aug.rotate90 and x.shape[-1] == x.shape[-2]:
            x = torch.where(coin(), x.transpose(2, 3), x)
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
        if aug.grayscale and x.shape[1] == 3:
            # Luma as in PIL's convert("L"), copied to the three channels (torchvision's RandomGrayscale).
            gray = (0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]).expand_as(x)
            pick = (torch.rand(n, generator=generator) < aug.grayscale).to(x.device).view(n, 1, 1, 1)
            x = torch.where(pick, gray, x)
        return x
