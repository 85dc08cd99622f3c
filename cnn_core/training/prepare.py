"""Data for a run: the splits as uint8 tensors (training images on the training device), the limit for
quick runs, and the preprocessing that turns a batch into model input."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .. import data as data_registry
from ..data.augment import BatchPreprocessor
from ..errors import ConfigError
from ..data.registry import builtin_name
from .config import ResolvedConfig, TrainConfig, folder_image_size, small_side_reason


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
    notes: tuple[str, ...] = ()  # warnings about the data for people: unreadable files, too-small classes


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
    if info.multi_label:
        raise ConfigError(
            f"{info.title} is a multi-label data set (each image may have several labels); "
            "training multi-label tasks is not supported yet. Choose a binary or multi-class data set."
        )
    splits = {}
    skipped = 0
    native = info.image_size
    image_size = resolved.image_size  # the asked side, else `default_image_size`
    if image_size is None and info.family == "folder":  # e.g. transfer models: the backbone's input size
        image_size = folder_image_size(resolved.model, config.model_args)
    loaded = []
    for name in ("train", "val", "test"):
        split = data_registry.load_split(config.dataset, name, image_size=image_size)
        skipped += split.skipped
        splits[name] = _subset(split, config.limit, config.seed)
        loaded.append(split)
    info = split.info
    _refuse_empty_classes(config.dataset, info, loaded)
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
        notes=_classes_note(info) + tuple(data_registry.data_notes(config.dataset))
        + _resize_note(info, native, config.image_size)
        + _small_set_note(native, resolved.image_size if config.image_size is None else None),
    )


def _classes_note(info: data_registry.DatasetInfo) -> tuple[str, ...]:
    """Where an image folder's classes came from when it had no class folders, for the CLI and the card."""
    return (f"with no class folders, the classes come from {info.classes_from}",) if info.classes_from else ()


def _resize_note(info: data_registry.DatasetInfo, native: int, size: int | None) -> tuple[str, ...]:
    """A note when --image-size resizes a set whose images have one size (MNIST, MedMNIST): upsampling adds no
    detail, and MedMNIST has its own larger versions (dermamnist_64)."""
    if size is None or size == native or info.family == "folder":
        return ()
    note = f"its {native}×{native} images are resized to {size}×{size} (--image-size)"
    if size > native:
        note += ", which adds no detail"
        larger = builtin_name(info.name)
        if info.family == "medmnist" and larger and size in data_registry.MEDMNIST_SIZES:
            note += f"; MedMNIST's own {size}×{size} images are the set {larger[0]}_{size}"
    return (note,)


def _small_set_note(native: int, side: int | None) -> tuple[str, ...]:
    """A note when the default recipe trains a small set below its own side (`default_image_size`)."""
    if side is None or side == native:
        return ()
    return (f"the images are {small_side_reason(native, side)} (to keep {native}×{native}: --image-size {native}, "
            f"or {native} px in the studio)",)


def _refuse_empty_classes(name: str, info: data_registry.DatasetInfo, splits: list) -> None:
    """A class without one readable image (e.g. all HEIC without the plugin) cannot be learned: refuse it."""
    if info.multi_label or info.family != "folder":
        return
    counts = sum(torch.bincount(split.labels, minlength=info.n_classes) for split in splits)
    empty = [info.class_names[i] for i in range(info.n_classes) if int(counts[i]) == 0]
    if empty:
        raise data_registry.empty_class_error(name, empty)
