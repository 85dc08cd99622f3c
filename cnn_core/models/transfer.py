"""Transfer learning: an ImageNet backbone (`backbones`) with a new head, frozen, partly or fully fine-tuned.

Backbones are registry models named `transfer:<backbone>`; their model_args are `mode` ("frozen": feature
extraction, "finetune": the last `finetune_blocks` stages train too, "full": everything trains),
`finetune_blocks`, `input_size` (the side the backbone sees), `dropout`, `backbone_lr` (the backbone's
learning rate as a fraction of the head's), `views` (cached augmented views per training image) and
`feature_cache`.

Inputs are normalized with ImageNet's mean and standard deviation (grayscale becomes three equal channels)
and resized to the backbone's input size inside the model, so a checkpoint predicts from any image size
its card names. BatchNorm layers keep ImageNet's statistics in every mode (their scale and shift train
where their stage trains): batches of a few dozen medical images cannot estimate them better.

Whatever does not train is computed once by the trainer (`cnn_core.training.features`): a checkpoint
stores only the head and the trained stages; the frozen part comes from the backbone again when loaded.
"""

from __future__ import annotations

import functools
import math
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from .backbones import BACKBONES, PREFIX, build_stages, get_backbone, package_versions
from .spec import Classifier, ModelSpec

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

MODES = ("frozen", "finetune", "full")
MODE_TITLES = {
    "frozen": "Feature extraction (frozen backbone, new head)",
    "finetune": "Fine-tune the last blocks (and the head)",
    "full": "Fine-tune everything",
}
MIN_INPUT_SIZE = 32  # every backbone here halves the image five times
MAX_INPUT_SIZE = 512
MIN_IMAGE_SIZE = 16  # smaller images carry too little to upsample for an ImageNet backbone
#: Cached views of each training image at most (plain, horizontal flip, vertical flip, both).
MAX_VIEWS = 4


def freeze_batchnorm(module: nn.Module) -> None:
    """BatchNorm layers in inference mode: they keep ImageNet's running statistics."""
    for layer in module.modules():
        if isinstance(layer, nn.modules.batchnorm._BatchNorm):
            layer.eval()


def _number(value, name: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a number; got {value!r}.") from None
    if math.isnan(number):
        raise ConfigError(f"{name} must be a number; got {value!r}.")
    return number


class TransferModel(Classifier):
    """An ImageNet backbone cut into stages, global average pooling and a new head (dropout + linear).

    Stages before `trainable_from` are frozen (no gradients, inference mode); the rest and the head train,
    the backbone's stages at `backbone_lr` times the head's learning rate.
    """

    stores_partial_weights = True

    def __init__(
        self,
        backbone: str,
        in_channels: int = 3,
        num_classes: int = 2,
        image_size: int = 224,
        mode: str = "frozen",
        finetune_blocks: int | None = None,
        input_size: int | None = None,
        dropout: float = 0.5,
        backbone_lr: float = 0.1,
        views: int = 2,
        feature_cache: bool = True,
    ):
        super().__init__()
        info = get_backbone(backbone)
        mode = str(mode).lower()
        if mode not in MODES:
            raise ConfigError(f"Unknown transfer mode {mode!r}; choose one of {', '.join(MODES)}.")
        if in_channels not in (1, 3):
            raise ConfigError(f"{info.title} takes 1- or 3-channel images; got {in_channels} channels.")
        if image_size < MIN_IMAGE_SIZE:
            raise ConfigError(
                f"The images are {image_size} px: too small for {info.title}, which sees {info.input_size} px "
                f"images. Use images of at least {MIN_IMAGE_SIZE} px (e.g. --image-size {info.input_size})."
            )
        blocks = info.default_finetune_blocks if finetune_blocks is None else finetune_blocks
        if isinstance(blocks, bool) or not isinstance(blocks, int) or not 1 <= blocks <= info.n_stages:
            raise ConfigError(f"finetune_blocks must be a whole number from 1 to {info.n_stages} for {info.title}; got {blocks!r}.")
        size = info.input_size if input_size is None else input_size
        if isinstance(size, bool) or not isinstance(size, int) or not MIN_INPUT_SIZE <= size <= MAX_INPUT_SIZE:
            raise ConfigError(
                f"input_size must be a whole number of pixels from {MIN_INPUT_SIZE} to {MAX_INPUT_SIZE} "
                f"({info.title} halves the image five times); got {size!r}."
            )
        dropout = _number(dropout, "dropout")
        if not 0 <= dropout < 1:
            raise ConfigError(f"dropout must be in [0, 1); got {dropout!r}.")
        backbone_lr = _number(backbone_lr, "backbone_lr")
        if not 0 < backbone_lr <= 10:
            raise ConfigError(f"backbone_lr (a fraction of the head's learning rate) must be in (0, 10]; got {backbone_lr!r}.")
        if isinstance(feature_cache, str) and feature_cache.lower() in ("true", "false", "1", "0", "yes", "no"):
            feature_cache = feature_cache.lower() in ("true", "1", "yes")
        if not isinstance(feature_cache, (bool, int)):
            raise ConfigError(f"feature_cache must be true or false; got {feature_cache!r}.")
        if isinstance(views, bool) or not isinstance(views, int) or not 1 <= views <= MAX_VIEWS:
            raise ConfigError(f"views must be a whole number from 1 to {MAX_VIEWS}; got {views!r}.")
        self.info = info
        self.mode = mode
        self.requested_blocks = blocks
        self.finetune_blocks = blocks if mode == "finetune" else (info.n_stages if mode == "full" else 0)
        self.input_size = size
        self.dropout = float(dropout)
        self.backbone_lr = float(backbone_lr)
        self.views = views
        self.feature_cache = bool(feature_cache)
        self.trainable_from = info.n_stages - self.finetune_blocks
        self.input_normalization = {"mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)}

        self.stages = nn.ModuleList(build_stages(info.name))
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Sequential(nn.Dropout(self.dropout), nn.Linear(info.feature_dim, num_classes))
        for stage in self.stages[: self.trainable_from]:
            stage.requires_grad_(False)
        self.train()

    def train(self, mode: bool = True) -> "TransferModel":
        super().train(mode)
        freeze_batchnorm(self.stages)
        for stage in self.stages[: self.trainable_from]:
            stage.eval()
        return self

    def resize(self, x: torch.Tensor) -> torch.Tensor:
        """Normalized images [N, C, H, W] as the backbone's input: 3 channels at input_size."""
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        if tuple(x.shape[-2:]) != (self.input_size, self.input_size):
            shrink = x.shape[-1] > self.input_size
            x = F.interpolate(x, size=(self.input_size, self.input_size), mode="bilinear", align_corners=False, antialias=shrink)
        return x.contiguous(memory_format=torch.channels_last)

    def forward_from(self, x: torch.Tensor, first_stage: int) -> torch.Tensor:
        """Logits from the activations entering stage `first_stage`."""
        for stage in self.stages[first_stage:]:
            x = stage(x)
        return self.head(self.pool(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_from(self.resize(x), 0)

    def trainable_stage_names(self) -> list[str]:
        return [f"stages.{i}." for i in range(self.trainable_from, self.info.n_stages)]

    def param_groups(self, lr: float) -> list[dict]:
        """The head at `lr`, the trained backbone stages at `lr * backbone_lr` (the head's group last)."""
        backbone = [p for stage in self.stages[self.trainable_from :] for p in stage.parameters() if p.requires_grad]
        groups = [{"params": backbone, "lr": lr * self.backbone_lr}] if backbone else []
        return groups + [{"params": list(self.head.parameters()), "lr": lr}]

    def checkpoint_state_dict(self) -> dict[str, torch.Tensor]:
        """What training changed: the head and the trained stages (the frozen rest comes from the backbone)."""
        keep = ("head.", *self.trainable_stage_names())
        return {k: v for k, v in self.state_dict().items() if k.startswith(keep)}

    def resolved_args(self) -> dict:
        return {
            "mode": self.mode,
            "finetune_blocks": self.requested_blocks,
            "input_size": self.input_size,
            "dropout": self.dropout,
            "backbone_lr": self.backbone_lr,
            "views": self.views,
            "feature_cache": self.feature_cache,
        }

    def card_info(self) -> dict:
        """What the checkpoint card records beyond the trainer's fields: every model_arg, and the backbone."""
        info = self.info
        return {
            "model_args": self.resolved_args(),
            "backbone": {
                "name": info.name,
                "title": info.title,
                "source": info.source,
                "weights_file": info.weights_file,
                "packages": package_versions(info),
                "input_size": self.input_size,
                "mode": self.mode,
                "trained_stages": self.finetune_blocks,
                "stages": info.n_stages,
                "note": "The checkpoint holds the head and the trained stages only; the frozen stages are the "
                "backbone's ImageNet weights, loaded from "
                + ("its pip package." if info.offline else "the torch hub cache."),
            },
        }

    def activation_shape(self, cut: int) -> tuple[int, ...]:
        """Shape of one image's activations entering stage `cut` (pooled features when cut == n_stages)."""
        if cut >= self.info.n_stages:
            return (self.info.feature_dim,)
        with torch.no_grad():
            x = torch.zeros(1, 3, self.input_size, self.input_size)
            was_training = self.training
            self.eval()
            device = next(self.parameters()).device
            x = x.to(device)
            for stage in self.stages[:cut]:
                x = stage(x)
            self.train(was_training)
        return tuple(x.shape[1:])

    @torch.no_grad()
    def frozen_activations(self, x: torch.Tensor, cut: int) -> torch.Tensor:
        """Activations entering stage `cut` for preprocessed images (pooled features when cut == n_stages)."""
        x = self.resize(x)
        for stage in self.stages[:cut]:
            x = stage(x)
        return self.pool(x) if cut >= self.info.n_stages else x


# --------------------------------------------------------------------------------------------------
# Registry entries


def _builder(name: str) -> Callable[..., Classifier]:
    def build(in_channels: int = 3, num_classes: int = 2, image_size: int = 224, **kwargs) -> Classifier:
        return TransferModel(name, in_channels=in_channels, num_classes=num_classes, image_size=image_size, **kwargs)

    build.__name__ = f"transfer_{name}"
    return build


#: Training defaults shared by every backbone (the head trains on cached features: many cheap epochs).
TRAIN_DEFAULTS = {"epochs": 30, "batch_size": 32, "lr": 0.003, "optimizer": "adamw", "schedule": "cosine"}


@functools.lru_cache(maxsize=None)
def transfer_spec(name: str) -> ModelSpec:
    """The registry entry `transfer:<backbone>`."""
    backbone = get_backbone(name)
    return ModelSpec(
        name=PREFIX + backbone.name,
        title=backbone.title,
        description=backbone.description
        + " Modes: frozen (feature extraction: only the head trains, on features computed once and cached), "
        "finetune (the last finetune_blocks stages train too, at a tenth of the head's learning rate), "
        "full (everything trains; slow on a CPU).",
        builder=_builder(backbone.name),
        source=backbone.source,
        min_image_size=MIN_IMAGE_SIZE,
        defaults={
            **TRAIN_DEFAULTS,
            # image folders are loaded at the backbone's input size instead of the usual 128 px
            "folder_image_size": backbone.input_size,
            "model_args": {
                "mode": "frozen",
                "finetune_blocks": backbone.default_finetune_blocks,
                "input_size": backbone.input_size,
            },
            "model_arg_choices": {
                "mode": list(MODES),
                "finetune_blocks": list(range(1, backbone.n_stages + 1)),
            },
            "offline": backbone.offline,
            # a hint for front ends: with validation sets of a few dozen images keep the last epoch (--monitor last)
            "monitor": "last",
        },
        modes=MODES,
    )


def list_transfer_specs() -> list[ModelSpec]:
    """Every transfer model, EfficientNet-Lite0 (offline) first."""
    return [transfer_spec(name) for name in BACKBONES]


def is_transfer_model(name: str | None) -> bool:
    return bool(name) and name.startswith(PREFIX)


#: What cached frozen features keep of the augmentation options: flips, as cached flipped copies.
CACHED_AUGMENTATIONS = frozenset({"hflip", "vflip"})


def augmentations_used(model: str | None, model_args: dict | None) -> frozenset[str] | None:
    """The AugmentConfig fields a run of `model` honours, or None when it honours all of them.

    With cached features (modes "frozen" and "finetune") the frozen stages never see a training batch, so
    random shifts and brightness jitter cannot apply; flips do, as up to `views` cached flipped copies.
    Mode "full" and `feature_cache=false` augment every batch like any other model.
    """
    if not is_transfer_model(model):
        return None
    args = model_args or {}
    cache = args.get("feature_cache", True)
    if isinstance(cache, str):
        cache = cache.strip().lower() in ("true", "1", "yes")
    if str(args.get("mode", "frozen")).lower() == "full" or not cache:
        return None
    return CACHED_AUGMENTATIONS
