"""What every data family hands out: descriptions, split tensors, availability, and the shared constants."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import torch

SPLITS: tuple[str, ...] = ("train", "val", "test")

#: The 12 two-dimensional MedMNIST data sets (medmnist's flags) and the sizes the package offers.
MEDMNIST_2D_FLAGS: tuple[str, ...] = (
    "pathmnist", "chestmnist", "dermamnist", "octmnist", "pneumoniamnist", "retinamnist",
    "breastmnist", "bloodmnist", "tissuemnist", "organamnist", "organcmnist", "organsmnist",
)  # fmt: skip
MEDMNIST_SIZES: tuple[int, ...] = (28, 64, 128, 224)

#: Folder data sets: default side of the cached square images, split proportions and seed.
FOLDER_IMAGE_SIZE = 128
FOLDER_SPLIT_FRACTIONS: tuple[float, float, float] = (0.8, 0.1, 0.1)
FOLDER_SPLIT_SEED = 0

#: An upload's registry name ends in "@" and six hex digits of its owner's digest (`uploads.owned_name`): two
#: students' zips of one name never collide, so the name one gets never tells of another's upload.
OWNER_TAG = re.compile(r"@[0-9a-f]{6}$")


def shown_name(name: str) -> str:
    """`name` as people read it: an upload's without its owner tag ("cats@3f9a2c" -> "cats")."""
    return OWNER_TAG.sub("", name)


#: Sides accepted for `image_size`, in pixels.
MIN_IMAGE_SIZE, MAX_IMAGE_SIZE = 8, 1024


@dataclass(frozen=True)
class DatasetInfo:
    """One uniform description per data set, whatever its family."""

    name: str
    title: str
    family: str  # "mnist" | "medmnist" | "folder"
    class_names: tuple[str, ...]
    channels: int
    image_size: int
    task: str  # medmnist's words: "multi-class", "binary-class", "multi-label, binary-class", ...
    splits: tuple[str, ...]
    source: str
    description: str
    license: str
    n_samples: dict[str, int] | None
    root: str | None
    layout: str = ""  # image folders: how the splits were found ("split folders found (train, test); ...")
    classes_from: str | None = None  # image folders without class folders: "the file names (cat.0.jpg: cat, ...)"

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    @property
    def multi_label(self) -> bool:
        return self.task.startswith("multi-label")


@dataclass(frozen=True, eq=False)
class SplitData:
    """One split as tensors: images uint8 [N, C, H, W] (CPU), labels int64 [N] or [N, L] (multi-label)."""

    images: torch.Tensor
    labels: torch.Tensor
    info: DatasetInfo  # image_size is the side of `images`
    skipped: int = 0  # files of this split that could not be read (folders only)

    def __len__(self) -> int:
        return int(self.images.shape[0])


@dataclass(frozen=True)
class DatasetStatus:
    """Whether a data set can be loaded without a download, found by looking at files only."""

    info: DatasetInfo
    available: bool
    location: Path | None
    searched: list[Path]
    missing: list[str]
    how_to_get: str
    download_size: str | None
