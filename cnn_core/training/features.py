"""The frozen-feature cache: what a transfer model's frozen stages output is computed once per image.

In "frozen" mode the pooled features, in "finetune" mode the activations entering the first trained stage,
are cached per image (keyed by a hash of its pixels) under `CNN_CACHE_DIR/features/`, so re-splits and
`--limit` runs reuse them and the head trains on a CPU in seconds. Flips, the augmentation that survives
caching, become cached flipped copies (`VIEWS`); the trainer then picks a random copy per image and step.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import math
import os
import threading
import uuid
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file
from torch import nn

from ..data.augment import BatchPreprocessor, orient
from ..models.spec import Classifier
from ..models.transfer import MAX_VIEWS, TransferModel, freeze_batchnorm
from ..settings import cache_dir
from .prepare import PreparedData

log = logging.getLogger(__name__)

#: Cached activations beyond this (all splits and views together) are not kept: "finetune" then runs the
#: frozen stages on every batch instead, like "full" does.
FEATURE_CACHE_MAX_BYTES = 3 * 1024**3
CACHE_FORMAT = 1


class _Cancelled(Exception):
    """Feature extraction stopped because the run was cancelled; nothing half-done is cached."""


class _TrainedPart(Classifier):
    """The stages of a TransferModel from `first_stage` on, its pooling and head: what trains on cached
    activations. It shares the parent's modules, so training it trains the parent."""

    def __init__(self, parent: TransferModel, first_stage: int):
        super().__init__()
        self.first_stage = first_stage
        self.stages = nn.ModuleList(parent.stages[first_stage:])
        self.pool = parent.pool
        self.head = parent.head
        self._backbone_lr = parent.backbone_lr

    def train(self, mode: bool = True) -> "_TrainedPart":
        super().train(mode)
        freeze_batchnorm(self.stages)
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if len(self.stages) == 0:
            return self.head(x)
        for stage in self.stages:
            x = stage(x)
        return self.head(self.pool(x))

    def param_groups(self, lr: float) -> list[dict]:
        backbone = [p for p in self.stages.parameters() if p.requires_grad]
        groups = [{"params": backbone, "lr": lr * self._backbone_lr}] if backbone else []
        return groups + [{"params": list(self.head.parameters()), "lr": lr}]


class _ViewPicker:
    """The trainer's preprocessing for cached activations [N, V, ...]: a random view per image when
    training (the cached form of augmentation), the plain view otherwise."""

    def __init__(self, device: torch.device):
        self.device = device

    def __call__(self, x: torch.Tensor, train: bool = False, generator: torch.Generator | None = None) -> torch.Tensor:
        x = x.to(self.device)
        if not train or x.shape[1] == 1:
            return x[:, 0]
        choice = torch.randint(0, x.shape[1], (x.shape[0],), generator=generator).to(self.device)
        return x[torch.arange(x.shape[0], device=self.device), choice]


# --------------------------------------------------------------------------------------------------
# Cached views and the feature store


@dataclass(frozen=True)
class View:
    """A fixed transform of preprocessed images whose frozen activations are cached (augmentation)."""

    name: str
    needs: str  # the AugmentConfig field that must be on for this view ("" for the plain view)
    orientation: str = "identity"  # augment.ORIENTATIONS: how the images are turned

    def applies(self, augment) -> bool:
        return not self.needs or bool(getattr(augment, self.needs, False))

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        return orient(x, self.orientation)


#: The names are the feature cache's keys (cache_key), so they stay as they are.
VIEWS: tuple[View, ...] = (
    View("plain", ""),
    View("hflip", "hflip", "hflip"),
    View("vflip", "vflip", "vflip"),
    View("hvflip", "vflip", "rotate180"),
)
assert len(VIEWS) == MAX_VIEWS


def image_digests(images: torch.Tensor) -> list[bytes]:
    """A 16-byte hash of each uint8 image [N, C, H, W]: the feature cache's key, whatever split it is in."""
    array = images.detach().cpu().contiguous().numpy()
    return [hashlib.blake2b(row.tobytes(), digest_size=16, person=bytes(str(row.shape), "ascii")[:16]).digest() for row in array]


class FeatureStore:
    """Cached activations per image hash, as safetensors shards under CNN_CACHE_DIR/features/<key>/.

    Shards are written whole (a temporary file renamed into place), so processes sharing the cache never
    read half a file; loading never unpickles.
    """

    def __init__(self, key: str):
        self.folder = cache_dir() / "features" / key

    def lookup(self, digests: list[bytes]) -> dict[bytes, torch.Tensor]:
        wanted = set(digests)
        found: dict[bytes, torch.Tensor] = {}
        if not self.folder.is_dir() or not wanted:
            return found
        for shard in sorted(self.folder.glob("*.safetensors")):
            try:
                tensors = load_file(str(shard))
                keys, values = tensors["digests"], tensors["features"]
            except (SafetensorError, OSError, KeyError, ValueError, RuntimeError):
                log.warning("Ignoring unreadable feature cache shard %s", shard)
                continue
            for row, key in enumerate(keys.numpy()):
                digest = key.tobytes()
                if digest in wanted and digest not in found:
                    found[digest] = values[row]
            if len(found) == len(wanted):
                break
        return found

    def count_cached(self, digests: list[bytes]) -> int:
        """How many of `digests` the cache holds, reading only the shards' hash lists (not their activations)."""
        wanted = set(digests)
        found: set[bytes] = set()
        if not self.folder.is_dir() or not wanted:
            return 0
        for shard in sorted(self.folder.glob("*.safetensors")):
            try:
                with safe_open(str(shard), framework="pt") as handle:
                    keys = handle.get_tensor("digests")
            except (SafetensorError, OSError, KeyError, ValueError, RuntimeError):
                continue  # `lookup` logs it
            found.update(wanted.intersection(row.tobytes() for row in keys.numpy()))
            if len(found) == len(wanted):
                break
        return sum(1 for d in digests if d in found)

    def add(self, digests: list[bytes], features: torch.Tensor) -> None:
        if not digests:
            return
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            keys = torch.frombuffer(bytearray(b"".join(digests)), dtype=torch.uint8).view(len(digests), -1)
            name = hashlib.blake2b(b"".join(sorted(digests)), digest_size=12).hexdigest()
            tmp = self.folder / f".{name}.{uuid.uuid4().hex}.tmp"
            save_file({"digests": keys.clone(), "features": features.contiguous()}, str(tmp))
            os.replace(tmp, self.folder / f"{name}.safetensors")
        except OSError as exc:  # a full or read-only cache costs speed, not the run
            log.warning("Could not write the feature cache in %s (%s)", self.folder, exc)


def adapt_for_training(
    model: Classifier, prepared: PreparedData, cancel: threading.Event | None = None
) -> tuple[Classifier, PreparedData]:
    """The module the loop trains and the data it trains on.

    A model with its own `input_normalization` (a transfer model: ImageNet's) gets it instead of the data
    set's. A transfer model with a feature cache trains a view of itself from the first trained stage on
    (sharing its weights) on the cached activations of the frozen stages; without one (mode "full", or
    activations too large) it trains whole on the images, like every other model.
    """
    if model.input_normalization is not None:
        norm = model.input_normalization
        pre = BatchPreprocessor(norm["mean"], norm["std"], prepared.preprocess.device, prepared.preprocess.augment)
        prepared = replace(prepared, preprocess=pre, normalization=dict(norm))
    if not isinstance(model, TransferModel):
        return model, prepared
    pre = prepared.preprocess
    device = pre.device
    plan = _feature_plan(model, prepared)
    if plan is None:
        return model, prepared
    cut, views = plan
    extract = functools.partial(cached_activations, model, cut=cut, preprocess=pre, cancel=cancel)
    try:
        train_x = torch.stack([extract(prepared.train[0], view=v) for v in views], dim=1)
        val_x = extract(prepared.val[0], view=VIEWS[0]).unsqueeze(1)
        test_x = extract(prepared.test[0], view=VIEWS[0]).unsqueeze(1)
    except _Cancelled:  # the training loop sees the cancel before its first step
        return model, prepared
    cached = replace(
        prepared,
        train=(train_x.to(device), prepared.train[1]),
        val=(val_x, prepared.val[1]),
        test=(test_x, prepared.test[1]),
        preprocess=_ViewPicker(device),
    )
    return _TrainedPart(model, cut), cached


def _feature_plan(model: TransferModel, prepared: PreparedData, warn: bool = True) -> tuple[int, list[View]] | None:
    """(the first trained stage, the cached views of the training images) when the frozen stages' output is
    computed once and cached; None when every batch runs them (mode "full", no cache, too large)."""
    if model.mode == "full" or not model.feature_cache:
        return None
    cut = model.trainable_from
    views = [v for v in VIEWS if v.applies(prepared.preprocess.augment)][: model.views]
    n_images = prepared.train[1].shape[0] * len(views) + prepared.val[1].shape[0] + prepared.test[1].shape[0]
    if n_images * math.prod(model.activation_shape(cut)) * 4 > FEATURE_CACHE_MAX_BYTES:
        if warn:
            log.warning("Activations of %d images do not fit the feature cache; running the frozen stages per batch.", n_images)
        return None
    return cut, views


def preparation_status(model: Classifier, prepared: PreparedData) -> str | None:
    """What `adapt_for_training` is about to compute, for the run's status line (the trainer's StatusEvent):
    frozen features take seconds to minutes on a CPU before the first step. None when nothing is precomputed.

    Counts images through the backbone (a flipped copy counts as one) and how many the cache already holds;
    reading the cache's image hashes is cheap next to running the backbone.
    """
    if not isinstance(model, TransferModel):
        return None
    plan = _feature_plan(model, prepared, warn=False)  # adapt_for_training warns
    if plan is None:
        return None
    cut, views = plan
    batches = [(prepared.train[0], v) for v in views] + [(prepared.val[0], VIEWS[0]), (prepared.test[0], VIEWS[0])]
    total = cached = 0
    for images, view in batches:
        digests = image_digests(images)
        total += len(digests)
        cached += FeatureStore(cache_key(model, cut, view.name)).count_cached(digests)
    pooled = cut >= model.info.n_stages
    if cached == total:
        what = f"{model.info.title} features" if pooled else f"output of the {cut} frozen stages of {model.info.title}"
        return f"Loading the cached {what} for {total} images…"
    flips = " (flipped copies included)" if len(views) > 1 else ""
    work = (f"Computing {model.info.title} features for" if pooled
            else f"Running the {cut} frozen stages of {model.info.title} on")
    message = f"{work} {total - cached} images{flips}, cached for later runs"
    return message + (f"; {cached} more come from the cache…" if cached else "…")


def cached_activations(
    model: TransferModel,
    images: torch.Tensor,
    *,
    cut: int,
    preprocess: Callable,
    view: View,
    cancel: threading.Event | None = None,
    batch_size: int = 32,
) -> torch.Tensor:
    """Frozen activations of uint8 images [N, C, H, W] (CPU, float32), from the per-image cache."""
    store = FeatureStore(cache_key(model, cut, view.name))
    digests = image_digests(images)
    found = store.lookup(digests)
    missing = [i for i, d in enumerate(digests) if d not in found]
    if missing:
        was_training = model.training
        model.eval()
        computed = []
        device = preprocess.device
        for start in range(0, len(missing), batch_size):
            if cancel is not None and cancel.is_set():
                break
            index = torch.tensor(missing[start : start + batch_size])
            x = view.apply(preprocess(images[index].to(device), train=False))
            computed.append(model.frozen_activations(x, cut).float().cpu())
        model.train(was_training)
        if sum(len(c) for c in computed) < len(missing):
            raise _Cancelled
        new = torch.cat(computed)
        store.add([digests[i] for i in missing], new)
        found.update({digests[i]: row for i, row in zip(missing, new)})
    if not digests:
        return torch.zeros((0, *model.activation_shape(cut)))
    return torch.stack([found[d] for d in digests])


def cache_key(model: TransferModel, cut: int, view: str) -> str:
    where = "pooled" if cut >= model.info.n_stages else f"stage{cut}"
    weights = Path(model.info.weights_file).stem
    return f"v{CACHE_FORMAT}-{weights}-{model.input_size}px-{where}-{view}"
