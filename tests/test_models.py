"""The model registry builds every model for every data-set shape, and rejects bad requests clearly."""

import pytest
import torch

from cnn_core.errors import ConfigError
from cnn_core.models import MODEL_REGISTRY, build_model, count_parameters, default_model_for


@pytest.mark.parametrize("name", list(MODEL_REGISTRY))  # transfer models: tests/test_transfer.py
@pytest.mark.parametrize("channels,classes,size", [(1, 10, 28), (3, 9, 28), (3, 2, 64)])
def test_every_model_gives_logits_of_the_right_shape(name, channels, classes, size):
    model = build_model(name, channels, classes, size)
    out = model(torch.randn(3, channels, size, size))
    assert out.shape == (3, classes)
    assert torch.isfinite(out).all()


def test_lenet_and_simple_cnn_match_the_seeds():
    lenet = build_model("lenet", 1, 10, 28)
    convs = [m for m in lenet.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [6, 16]
    assert any(isinstance(m, torch.nn.Sigmoid) for m in lenet.modules())
    assert any(isinstance(m, torch.nn.AvgPool2d) for m in lenet.modules())
    dense = [m.out_features for m in lenet.modules() if isinstance(m, torch.nn.Linear)]
    assert dense == [120, 84, 10]
    simple = build_model("simple_cnn", 1, 10, 28)
    assert [c.out_channels for c in simple.modules() if isinstance(c, torch.nn.Conv2d)] == [8, 16]
    assert [m.in_features for m in simple.modules() if isinstance(m, torch.nn.Linear)] == [16 * 7 * 7]


def test_fastnet_is_small_enough_to_ship():
    total, trainable = count_parameters(build_model("fastnet", 1, 10, 28))
    assert total == trainable
    assert total * 4 < 5 * 1024 * 1024


def test_bad_requests_are_config_errors():
    with pytest.raises(ConfigError, match="Known models"):
        build_model("resnet9000", 1, 10, 28)
    with pytest.raises(ConfigError, match="at least two classes"):
        build_model("fastnet", 1, 1, 28)
    with pytest.raises(ConfigError, match="at least 12 px"):
        build_model("lenet", 1, 10, 8)


def test_defaults_per_family_and_size():
    assert default_model_for("mnist", 28) == "fastnet"
    assert default_model_for("mnist", 28, 546) == "fastnet"  # a small MNIST is still digits
    assert default_model_for("medmnist", 28) == "fastnet32"  # size unknown
    assert default_model_for("medmnist", 28, 89_996) == "fastnet32"  # PathMNIST: the ResNet is ~4x slower
    # two classes: the ResNet below 5,000 training images (BreastMNIST 546, PneumoniaMNIST 4,708)
    assert default_model_for("medmnist", 28, 5_000, 2) == "fastnet32"
    assert default_model_for("medmnist", 28, 4_999, 2) == "resnet_small"
    assert default_model_for("medmnist", 64, 546, 2) == "resnet_small"  # BreastMNIST at 64 px
    # more classes (or unknown): below 1,000 (RetinaMNIST's 1,080 and larger sets take FastNet-32)
    assert default_model_for("medmnist", 28, 999, 5) == "resnet_small"
    assert default_model_for("medmnist", 28, 1_080, 5) == "fastnet32"
    assert default_model_for("medmnist", 28, 4_999) == "fastnet32"
    assert default_model_for("folder", 128, 202) == "fastnet32"  # image folders: not measured with the ResNet
