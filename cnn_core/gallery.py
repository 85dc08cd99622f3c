"""What the Dataset Gallery shows, computed from a data set's uint8 tensors: random samples per class,
counts per class, channel statistics, per-class average images, montages and pixel-value grids.

Pure functions on tensors (and on `SplitData`, which carries them), so the page only lays the results out
and the unit tests and the benchmark call exactly what the page calls.
"""

from __future__ import annotations

import io
import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image

from .errors import DataError

# Images this small show every pixel value as a number (28×28 = 784 numbers still fit on a screen).
PIXEL_GRID_MAX_SIDE = 32
# Rows summed at once: exact in uint32 (8192 × 255 < 2**32), and a large split is never copied whole.
_CHUNK = 8192


#: Imaging modality of every 2D MedMNIST set (MedMNIST v2, Yang et al. 2023, Table 1); medmnist's INFO
#: does not carry it.
MEDMNIST_MODALITIES = {
    "pathmnist": "Colon pathology (H&E-stained tissue patches)",
    "chestmnist": "Chest X-ray",
    "dermamnist": "Dermatoscope (skin lesion photographs)",
    "octmnist": "Retinal OCT (optical coherence tomography)",
    "pneumoniamnist": "Chest X-ray (paediatric)",
    "retinamnist": "Fundus camera (retina photographs)",
    "breastmnist": "Breast ultrasound",
    "bloodmnist": "Blood cell microscopy",
    "tissuemnist": "Kidney cortex microscopy",
    "organamnist": "Abdominal CT (axial slices)",
    "organcmnist": "Abdominal CT (coronal slices)",
    "organsmnist": "Abdominal CT (sagittal slices)",
}


def modality(info: Any) -> str:
    """What kind of picture a data set holds, in words."""
    if info.family == "mnist":
        return "Scanned handwriting (grayscale digits)"
    if info.family == "medmnist":
        return MEDMNIST_MODALITIES.get(info.name.split("_")[0], "Medical images")
    return "Your own images (an image folder or zip)"


@dataclass(frozen=True)
class PickerEntry:
    """One line of the data-set picker: a data set with all its sizes (MedMNIST comes in four)."""

    key: str                       # "pathmnist", "mnist", "brain_mri"
    title: str                     # "PathMNIST", "MNIST handwritten digits (28×28)"
    family: str
    sizes: dict[int, str]          # image side -> registry name ("pathmnist_64")


def picker_entries(infos: Sequence[Any]) -> list[PickerEntry]:
    """Registry entries (`data.list_datasets()`) grouped so each MedMNIST set appears once with its sizes."""
    grouped: dict[str, PickerEntry] = {}
    for info in infos:
        medmnist = info.family == "medmnist"
        key = info.name.split("_")[0] if medmnist else info.name
        title = info.title.rsplit(" (", 1)[0] if medmnist else info.title
        entry = grouped.setdefault(key, PickerEntry(key, title, info.family, {}))
        entry.sizes[info.image_size] = info.name
    for entry in grouped.values():
        ordered = dict(sorted(entry.sizes.items()))
        entry.sizes.clear()
        entry.sizes.update(ordered)
    return list(grouped.values())


def is_multi_label(labels: torch.Tensor) -> bool:
    """Multi-label data sets (ChestMNIST) carry one 0/1 column per class instead of one class index."""
    return labels.ndim == 2 and labels.shape[1] > 1


def _flat_labels(labels: torch.Tensor) -> torch.Tensor:
    """Class indices as a 1-D tensor, accepting medmnist's [N, 1] shape too."""
    if labels.ndim == 2 and labels.shape[1] == 1:
        return labels[:, 0]
    return labels


def _class_indices(labels: torch.Tensor, n_classes: int) -> np.ndarray | None:
    """Checked class indices [N] of single-label data (None for multi-label data)."""
    if is_multi_label(labels):
        if labels.shape[1] != n_classes:
            raise DataError(f"Labels have {labels.shape[1]} columns but the data set names {n_classes} classes.")
        return None
    flat = _flat_labels(labels).numpy()
    if flat.size and (int(flat.min()) < 0 or int(flat.max()) >= n_classes):
        raise DataError(
            f"Labels run from {int(flat.min())} to {int(flat.max())}, "
            f"outside the {n_classes} classes of this data set."
        )
    return flat


def class_membership(labels: torch.Tensor, n_classes: int) -> torch.Tensor:
    """A [N, n_classes] bool matrix: which classes each image belongs to (one per row unless multi-label)."""
    flat = _class_indices(labels, n_classes)
    if flat is None:
        return labels > 0
    membership = np.zeros((flat.size, n_classes), dtype=bool)
    membership[np.arange(flat.size), flat] = True
    return torch.from_numpy(membership)


def class_counts(labels: torch.Tensor, n_classes: int) -> list[int]:
    """Images per class (for multi-label data: images carrying each label)."""
    flat = _class_indices(labels, n_classes)
    if flat is None:
        return [int(c) for c in (labels > 0).sum(dim=0)]
    return [int(c) for c in np.bincount(flat, minlength=n_classes)]


def counts_by_split(labels_by_split: Mapping[str, torch.Tensor], n_classes: int) -> dict[str, list[int]]:
    """`{split: counts per class}` for the bar chart of class balance."""
    return {split: class_counts(labels, n_classes) for split, labels in labels_by_split.items()}


def class_members(labels: torch.Tensor, n_classes: int) -> list[np.ndarray]:
    """The indices of every class's images, in index order."""
    flat = _class_indices(labels, n_classes)
    if flat is None:
        positive = (labels > 0).numpy()
        return [np.flatnonzero(positive[:, class_index]) for class_index in range(n_classes)]
    order = np.argsort(flat, kind="stable")
    bounds = np.cumsum(np.bincount(flat, minlength=n_classes))[:-1]
    return np.split(order, bounds)


def sample_per_class(labels: torch.Tensor, n_classes: int, per_class: int, seed: int) -> list[list[int]]:
    """Up to `per_class` random image indices for every class; the same seed always picks the same images,
    so a whole classroom sees the same grid, and a new seed reshuffles it."""
    if per_class < 1:
        raise DataError("Ask for at least one sample per class.")
    generator = np.random.default_rng(int(seed))
    picks: list[list[int]] = []
    for members in class_members(labels, n_classes):
        chosen = generator.choice(members.size, size=min(per_class, members.size), replace=False)
        picks.append([int(members[i]) for i in chosen])
    return picks


def next_seed(current: int | None = None) -> int:
    """A fresh seed for "reshuffle", different from the current one (seeds stay small enough to read out)."""
    while True:
        seed = random.SystemRandom().randrange(10_000)
        if seed != current:
            return seed


def channel_mean_std(images: torch.Tensor) -> tuple[list[float], list[float]]:
    """Per-channel mean and standard deviation of uint8 images [N, C, H, W], on the 0..1 scale the models see.

    Exact integer sums in numpy (uint8 reduced straight into wide integers, no float copy of the data):
    ~0.5 s for PathMNIST's 90,000 training images where a float64 pass takes several seconds.
    """
    if images.ndim != 4 or images.shape[0] == 0:
        raise DataError("Channel statistics need a non-empty batch of images shaped [N, C, H, W].")
    array = images.numpy()
    n_images, channels = array.shape[:2]
    total = np.zeros(channels, dtype=np.float64)
    total_sq = np.zeros(channels, dtype=np.float64)
    for start in range(0, n_images, _CHUNK):
        block = array[start : start + _CHUNK].reshape(-1, channels, array.shape[2] * array.shape[3])
        total += np.add.reduce(block, axis=0, dtype=np.uint64).sum(axis=1)
        total_sq += np.add.reduce(np.square(block, dtype=np.uint16), axis=0, dtype=np.uint64).sum(axis=1)
    count = n_images * array.shape[2] * array.shape[3]
    mean = total / count
    var = np.clip(total_sq / count - mean * mean, 0, None)
    return [float(m) / 255 for m in mean], [float(s) / 255 for s in np.sqrt(var)]


def class_mean_images(images: torch.Tensor, labels: torch.Tensor, n_classes: int) -> torch.Tensor:
    """The average image of every class, uint8 [n_classes, C, H, W] (all zeros for a class without images).

    Exact integer sums per class in numpy, a chunk of rows at a time so a large split is never copied whole.
    """
    if images.ndim != 4:
        raise DataError("Average images need images shaped [N, C, H, W].")
    membership = class_membership(labels, n_classes).numpy()
    array = images.numpy().reshape(images.shape[0], -1)
    sums = np.zeros((n_classes, array.shape[1]), dtype=np.uint64)
    for start in range(0, array.shape[0], _CHUNK):
        block = array[start : start + _CHUNK]
        members = membership[start : start + _CHUNK]
        for class_index in range(n_classes):
            mask = members[:, class_index]
            if mask.any():
                sums[class_index] += np.add.reduce(block[mask], axis=0, dtype=np.uint32)
    counts = np.maximum(membership.sum(axis=0), 1).astype(np.float64)[:, None]
    means = np.clip(np.rint(sums / counts), 0, 255).astype(np.uint8)
    return torch.from_numpy(means).reshape(n_classes, *images.shape[1:])


def to_display(image: torch.Tensor, scale: int = 1) -> np.ndarray:
    """A [C, H, W] uint8 tensor as what `st.image`/PIL take ([H, W] grey or [H, W, 3] colour), enlarged
    `scale` times by repeating pixels so small images stay crisp instead of blurred."""
    if image.ndim != 3:
        raise DataError(f"Expected one image shaped [C, H, W], got shape {tuple(image.shape)}.")
    array = image.numpy()
    if scale > 1:
        array = array.repeat(scale, axis=1).repeat(scale, axis=2)
    if array.shape[0] == 1:
        return np.ascontiguousarray(array[0])
    return np.ascontiguousarray(array.transpose(1, 2, 0))


def repeat_pixels(picture: np.ndarray, scale: int) -> np.ndarray:
    """A [H, W] or [H, W, C] picture enlarged `scale` times by repeating pixels (no blur)."""
    if scale <= 1:
        return picture
    return picture.repeat(scale, axis=0).repeat(scale, axis=1)


def square_picture(pixels: np.ndarray | torch.Tensor, side: int) -> np.ndarray:
    """A uint8 [C, H, W] image as a `side`×`side` picture ([H, W] grey or [H, W, 3]): small images are
    blown up with visible pixels (nearest neighbour), large ones shrunk smoothly (Lanczos)."""
    picture = Image.fromarray(to_display(torch.as_tensor(np.asarray(pixels, dtype=np.uint8))))
    smaller = picture.width > side
    resample = Image.Resampling.LANCZOS if smaller else Image.Resampling.NEAREST
    return np.asarray(picture.resize((side, side), resample))


def display_scale(image_size: int, target: int = 84) -> int:
    """How many times to enlarge an image so a thumbnail is about `target` pixels wide (never shrinks)."""
    return max(1, round(target / max(1, image_size)))


def montage(
    images: torch.Tensor, columns: int, *, padding: int = 2, scale: int = 1, pad_value: int = 255
) -> np.ndarray:
    """Images [N, C, H, W] tiled into one picture `columns` wide, with white gaps between them: the layout of
    torchvision's `make_grid` (`padding` pixels around every image, a single image too), drawn here because
    importing torchvision would cost the web server about 190 MiB for this one function."""
    if images.ndim != 4 or images.shape[0] == 0:
        raise DataError("A montage needs at least one image shaped [N, C, H, W].")
    n, channels, height, width = images.shape
    wide = max(1, min(columns, n))
    tall = math.ceil(n / wide)
    step_y, step_x = height + padding, width + padding
    grid = torch.full((channels, tall * step_y + padding, wide * step_x + padding), pad_value, dtype=images.dtype)
    for index, image in enumerate(images):
        row, column = divmod(index, wide)
        top, left = padding + row * step_y, padding + column * step_x
        grid[:, top : top + height, left : left + width] = image
    return to_display(grid, scale)


def label_text(label: torch.Tensor | int, class_names: Sequence[str]) -> str:
    """A label as words: the class name, or the names of every positive label for multi-label data."""
    tensor = torch.as_tensor(label)
    if tensor.ndim == 1 and tensor.numel() > 1:
        names = [class_names[i] for i in torch.nonzero(tensor > 0).flatten().tolist()]
        return ", ".join(names) if names else "no finding (all labels 0)"
    index = int(tensor.reshape(-1)[0])
    name = class_names[index] if 0 <= index < len(class_names) else "?"
    return name if name == str(index) else f"{index}: {name}"


def pixel_grid(image: torch.Tensor, channel: int = 0) -> np.ndarray:
    """The integer values (0..255) one channel of a [C, H, W] image holds: what the network really receives
    before it scales them."""
    if image.ndim != 3 or not 0 <= channel < image.shape[0]:
        raise DataError(f"No channel {channel} in an image shaped {tuple(image.shape)}.")
    return image[channel].to(torch.int64).numpy()


def outline_square(picture: np.ndarray, top: int, left: int, size: int, *, width: int = 2,
                   colour: tuple[int, int, int] = (249, 115, 22)) -> np.ndarray:
    """A copy of a [H, W] or [H, W, 3] uint8 picture, in colour, with a `size`×`size` square outlined
    `width` pixels thick inside it (where a crop of its pixels is taken)."""
    rgb = np.repeat(picture[..., None], 3, axis=2) if picture.ndim == 2 else picture[..., :3].copy()
    bottom, right = min(top + size, rgb.shape[0]), min(left + size, rgb.shape[1])
    for rows, cols in (((top, top + width), (left, right)), ((bottom - width, bottom), (left, right)),
                       ((top, bottom), (left, left + width)), ((top, bottom), (right - width, right))):
        rgb[max(rows[0], 0):rows[1], max(cols[0], 0):cols[1]] = colour
    return rgb


@dataclass(frozen=True)
class DatasetSummary:
    """What does not change on reshuffle: class balance, channel statistics and average images."""

    class_names: tuple[str, ...]
    counts: dict[str, list[int]]     # split -> images per class
    stats_split: str                 # the split the statistics and averages come from
    mean: list[float]                # per channel, 0..1
    std: list[float]
    class_means: torch.Tensor        # uint8 [n_classes, C, H, W]


@dataclass(frozen=True)
class SampleGrid:
    """Random samples per class from one split, reproducible from its seed."""

    split: str
    seed: int
    per_class: int
    indices: list[list[int]]         # class -> indices into the split
    images: list[torch.Tensor]       # class -> uint8 [k, C, H, W]
    labels: list[torch.Tensor]       # class -> the samples' labels


def summarize(
    splits: Mapping[str, Any],
    *,
    stats_split: str | None = None,
    mean_std: tuple[list[float], list[float]] | None = None,
) -> DatasetSummary:
    """Counts for every split, plus channel statistics and per-class averages of `stats_split` (the train
    split when there is one) from loaded splits (`{split: SplitData}`). Pass `mean_std` when it is known
    already (`data.channel_stats` keeps it on disk) to skip recomputing it."""
    if not splits:
        raise DataError("This data set has no splits to summarize.")
    class_names = tuple(next(iter(splits.values())).info.class_names)
    n_classes = len(class_names)
    stats_split = stats_split or ("train" if "train" in splits else next(iter(splits)))
    if stats_split not in splits:
        raise DataError(f"No {stats_split!r} split here; this data set has {', '.join(splits)}.")
    stats_data = splits[stats_split]
    counts = counts_by_split({name: data.labels for name, data in splits.items()}, n_classes)
    mean, std = mean_std if mean_std is not None else channel_mean_std(stats_data.images)
    class_means = class_mean_images(stats_data.images, stats_data.labels, n_classes)
    return DatasetSummary(class_names, counts, stats_split, mean, std, class_means)


def sample_grid(split_data: Any, split: str, per_class: int, seed: int) -> SampleGrid:
    """`per_class` random images of every class of one loaded split (`SplitData`)."""
    n_classes = len(split_data.info.class_names)
    indices = sample_per_class(split_data.labels, n_classes, per_class, seed)
    index_tensors = [torch.tensor(chosen, dtype=torch.long) for chosen in indices]
    return SampleGrid(
        split=split,
        seed=int(seed),
        per_class=per_class,
        indices=indices,
        images=[split_data.images[chosen] for chosen in index_tensors],
        labels=[split_data.labels[chosen] for chosen in index_tensors],
    )


def grid_picture(grid: SampleGrid, *, scale: int = 1) -> np.ndarray:
    """The sample grid as one picture, a row per class (white where a class has fewer images), for
    handing out or pasting into slides."""
    present = [images for images in grid.images if len(images)]
    if not present:
        raise DataError("The sample grid is empty: no class has images in this split.")
    blank = torch.full_like(present[0][:1], 255)
    rows = [
        torch.cat([images, blank.expand(grid.per_class - len(images), -1, -1, -1)]) if len(images) < grid.per_class
        else images
        for images in grid.images
    ]
    return montage(torch.cat(rows), grid.per_class, scale=scale)


def png_bytes(picture: np.ndarray) -> bytes:
    """A [H, W] or [H, W, 3] uint8 picture as PNG file bytes."""
    buffer = io.BytesIO()
    Image.fromarray(picture).save(buffer, format="PNG")
    return buffer.getvalue()
