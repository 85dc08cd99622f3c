"""cnn_core.inference.explain: MNIST-style drawing preprocessing, Grad-CAM, saliency, MC dropout and the trust hint."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw
from torch import nn

from cnn_core.inference import explain
from cnn_core.models.card import Card
from cnn_core.models.checkpoints import LoadedCheckpoint, load_checkpoint, save_checkpoint
from cnn_core.errors import CnnError, ConfigError, ImageError
from cnn_core.models import build_model
from cnn_core.settings import models_dir

MNIST_CARD = Card(
    model="fastnet", dataset="mnist", family="mnist", class_names=tuple(str(i) for i in range(10)),
    channels=1, image_size=28, normalization={"mean": [0.1307], "std": [0.3081]}, task="multi-class",
)
RGB_CARD = Card(
    model="resnet_small", dataset="pathmnist", family="medmnist", class_names=tuple("abcdefghi"),
    channels=3, image_size=28, normalization={"mean": [0.74, 0.53, 0.71], "std": [0.12, 0.18, 0.12]},
    task="multi-class",
)


def _canvas(kind: str, side: int = 280, offset: tuple[int, int] = (0, 0), mode: str = "black") -> np.ndarray:
    """A drawn digit as the canvas returns it: RGBA [side, side, 4].

    mode "black": white ink on an opaque black background; "paper": black ink on white;
    "transparent": black ink on a transparent background.
    """
    background = {"black": (0, 0, 0, 255), "paper": (255, 255, 255, 255), "transparent": (0, 0, 0, 0)}[mode]
    ink = (255, 255, 255, 255) if mode == "black" else (0, 0, 0, 255)
    image = Image.new("RGBA", (side, side), background)
    draw = ImageDraw.Draw(image)
    dx, dy = offset
    if kind == "1":
        draw.line([(140 + dx, 40 + dy), (140 + dx, 240 + dy)], fill=ink, width=20)
    elif kind == "7":
        draw.line([(70 + dx, 50 + dy), (210 + dx, 50 + dy), (120 + dx, 240 + dy)], fill=ink, width=20,
                  joint="curve")
    elif kind == "0":
        draw.ellipse([80 + dx, 40 + dy, 200 + dx, 240 + dy], outline=ink, width=20)
    elif kind == "box":
        draw.rectangle([40 + dx, 60 + dy, 99 + dx, 219 + dy], fill=ink)  # 60 wide, 160 tall
    return np.asarray(image)


def _bbox(array: np.ndarray, threshold: int = 40) -> tuple[int, int, int, int]:
    rows = np.flatnonzero((array >= threshold).any(axis=1))
    cols = np.flatnonzero((array >= threshold).any(axis=0))
    return rows[0], rows[-1], cols[0], cols[-1]


def _centre_of_mass(array: np.ndarray) -> tuple[float, float]:
    values = array.astype(np.float64)
    total = values.sum()
    return (float((values.sum(axis=1) * np.arange(values.shape[0])).sum() / total),
            float((values.sum(axis=0) * np.arange(values.shape[1])).sum() / total))


def _loaded(model: nn.Module, card: Card) -> LoadedCheckpoint:
    return LoadedCheckpoint(model=model.eval(), card=card, path=None)  # type: ignore[arg-type]


def _no_hooks_left(model: nn.Module) -> bool:
    return all(not module._forward_hooks and not module._backward_hooks for module in model.modules())


# --------------------------------------------------------------------------------------------------
# Drawing preprocessing


@pytest.mark.parametrize("mode", ["black", "paper", "transparent"])
def test_ink_map_is_bright_ink_on_black_whatever_the_colours(mode):
    ink = explain.ink_map(_canvas("box", mode=mode))
    assert ink.dtype == np.float32 and ink.shape == (280, 280)
    assert ink[140, 70] == pytest.approx(1.0)  # inside the box
    assert ink[10, 10] == pytest.approx(0.0)  # background
    np.testing.assert_allclose(ink, explain.ink_map(_canvas("box", mode="black")), atol=1e-6)


def test_ink_map_reads_pil_images_and_gray_arrays():
    gray = _canvas("box", mode="paper")[..., 0]
    from_array = explain.ink_map(gray)
    from_image = explain.ink_map(Image.fromarray(gray, mode="L"))
    np.testing.assert_allclose(from_array, from_image)
    assert from_array[140, 70] == pytest.approx(1.0)
    with pytest.raises(ImageError, match="shape"):
        explain.ink_map(np.zeros((4, 4, 2), np.uint8))


def test_center_digit_scales_the_longer_side_to_20_and_keeps_the_aspect():
    digit = explain.center_digit(explain.ink_map(_canvas("box")))
    assert digit.shape == (28, 28) and digit.dtype == np.uint8
    top, bottom, left, right = _bbox(digit)
    height, width = bottom - top + 1, right - left + 1
    assert height == 20  # the longer side
    assert width == pytest.approx(20 * 60 / 160, abs=1)  # 7.5 px: the aspect ratio is kept


@pytest.mark.parametrize("kind", ["1", "7", "0", "box"])
def test_center_digit_puts_the_centre_of_mass_in_the_middle(kind):
    digit = explain.center_digit(explain.ink_map(_canvas(kind)))
    row, col = _centre_of_mass(digit)
    assert abs(row - 14) <= 0.75 and abs(col - 14) <= 0.75  # where MNIST puts it


def test_where_and_how_big_you_draw_does_not_matter():
    centred = explain.center_digit(explain.ink_map(_canvas("7")))
    moved = explain.center_digit(explain.ink_map(_canvas("7", offset=(-60, 30))))
    # the same pixels, give or take one gray level (the local background is estimated on a thumbnail)
    assert np.abs(centred.astype(int) - moved.astype(int)).max() <= 2
    small = np.asarray(Image.fromarray(_canvas("7")).resize((140, 140), Image.Resampling.LANCZOS))
    shrunk = explain.center_digit(explain.ink_map(small))
    assert np.abs(shrunk.astype(int) - centred.astype(int)).mean() < 12  # the same digit, give or take antialiasing


@pytest.mark.parametrize("empty", [
    np.zeros((280, 280, 4), np.uint8),  # a fresh canvas: nothing, fully transparent
    np.dstack([np.zeros((280, 280, 3), np.uint8), np.full((280, 280), 255, np.uint8)]),  # black, opaque
    np.full((280, 280, 4), 255, np.uint8),  # white paper
    np.full((64, 64), 128, np.uint8),  # one flat gray
])
def test_an_empty_canvas_says_draw_a_digit_first(empty):
    with pytest.raises(explain.EmptyDrawingError, match="draw a digit first"):
        explain.prepare_drawing(empty, MNIST_CARD)


def test_a_stray_click_is_not_a_digit_and_the_message_can_be_changed():
    canvas = np.zeros((280, 280), np.uint8)
    canvas[100, 100] = 255
    with pytest.raises(explain.EmptyDrawingError, match="blank upload"):
        explain.prepare_drawing(canvas, MNIST_CARD, empty_message="blank upload")
    assert issubclass(explain.EmptyDrawingError, CnnError)


def test_prepare_drawing_normalizes_with_the_card():
    model_input = explain.prepare_drawing(_canvas("1"), MNIST_CARD)
    assert model_input.pixels.shape == (1, 28, 28) and model_input.pixels.dtype == np.uint8
    expected = (model_input.pixels.astype(np.float32) / 255 - 0.1307) / 0.3081
    assert tuple(model_input.tensor.shape) == (1, 1, 28, 28)
    np.testing.assert_allclose(model_input.tensor[0].numpy(), expected, atol=1e-5)
    assert tuple(model_input.batch.shape) == (1, 1, 28, 28) and model_input.batch.dtype == torch.uint8
    assert "centre of mass" in model_input.notes[0]


def test_prepare_drawing_follows_the_cards_size_and_channels():
    card = replace(RGB_CARD, image_size=56)
    model_input = explain.prepare_drawing(_canvas("box"), card)
    assert model_input.pixels.shape == (3, 56, 56)
    np.testing.assert_array_equal(model_input.pixels[0], model_input.pixels[2])
    top, bottom, _, _ = _bbox(model_input.pixels[0])
    assert bottom - top + 1 == 40  # 20/28 of 56
    with pytest.raises(ConfigError, match="4-channel"):
        explain.prepare_drawing(_canvas("box"), replace(MNIST_CARD, channels=4))


def test_prepare_image_says_what_it_did():
    photo = Image.fromarray(np.random.default_rng(0).integers(0, 255, (60, 90, 3), dtype=np.uint8), mode="RGB")
    model_input = explain.prepare_image(photo, MNIST_CARD)
    assert model_input.pixels.shape == (1, 28, 28)
    assert any("colour turned into gray" in note for note in model_input.notes)
    assert any("90×60 and centre-cropped" in note for note in model_input.notes)
    rgb = explain.prepare_image(photo.convert("L"), RGB_CARD)
    assert rgb.pixels.shape == (3, 28, 28)
    assert any("3 channels" in note for note in rgb.notes)


def test_prepare_pixels_passes_matching_samples_through_and_converts_others():
    sample = np.random.default_rng(1).integers(0, 255, (1, 28, 28), dtype=np.uint8)
    same = explain.prepare_pixels(sample, MNIST_CARD)
    np.testing.assert_array_equal(same.pixels, sample)
    assert same.notes == ()
    converted = explain.prepare_pixels(sample, RGB_CARD)
    assert converted.pixels.shape == (3, 28, 28) and converted.notes


def test_predict_input_returns_every_class():
    torch.manual_seed(0)
    loaded = _loaded(build_model("fastnet", 1, 10, 28), MNIST_CARD)
    prediction = explain.predict_input(loaded, explain.prepare_drawing(_canvas("7"), MNIST_CARD))
    assert tuple(prediction.probabilities) == MNIST_CARD.class_names
    assert sum(prediction.probabilities.values()) == pytest.approx(1.0, abs=1e-5)
    assert prediction.label == MNIST_CARD.class_names[prediction.index]
    assert prediction.probability == max(prediction.probabilities.values())


@pytest.mark.realdata
def test_real_mnist_digits_survive_the_recipe():
    """MNIST's digits were made with this recipe, so redoing it on an enlarged MNIST digit changes little."""
    from cnn_core import data

    if not data.dataset_status("mnist").available:
        pytest.skip("MNIST not found under CNN_DATA_DIR")
    images = data.load_split("mnist", "test").images[:40, 0].numpy()
    correlations = []
    for digit in images:
        enlarged = np.asarray(Image.fromarray(digit).resize((280, 280), Image.Resampling.BICUBIC))
        redone = explain.center_digit(explain.ink_map(enlarged))
        correlations.append(np.corrcoef(redone.ravel().astype(float), digit.ravel().astype(float))[0, 1])
    # A one-pixel shift of 2-px strokes drops the correlation to about 0.5; faint edge pixels left out of
    # the bounding box cost a little on a few digits.
    assert np.median(correlations) > 0.95 and min(correlations) > 0.65


def _shipped_mnist() -> LoadedCheckpoint:
    path = models_dir() / "mnist_fastnet.safetensors"
    if not path.is_file():
        pytest.skip(f"the shipped MNIST checkpoint {path} is not there yet")
    return load_checkpoint(path, expect_dataset="mnist")


@pytest.mark.parametrize("kind", ["1", "7", "0"])
def test_the_shipped_mnist_model_reads_drawn_digits(kind):
    loaded = _shipped_mnist()
    for mode in ("black", "paper"):
        prediction = explain.predict_input(loaded, explain.prepare_drawing(_canvas(kind, mode=mode), loaded.card))
        assert prediction.label == kind
        assert explain.assess_trust(prediction.probabilities).trustworthy


# --------------------------------------------------------------------------------------------------
# Grad-CAM and saliency


class BlobNet(nn.Module):
    """A 1x1 conv copying the image, ReLU, global average pooling; class 0 likes brightness, class 1 hates it."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 1, 1), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(1, 2)
        with torch.no_grad():
            self.features[0].weight.fill_(1.0)
            self.features[0].bias.zero_()
            self.classifier.weight.copy_(torch.tensor([[1.0], [-1.0]]))
            self.classifier.bias.zero_()

    def forward(self, x):
        return self.classifier(self.pool(self.features(x)).flatten(1))


def _blob_input() -> torch.Tensor:
    x = torch.zeros(1, 1, 28, 28)
    x[0, 0, 3:9, 4:10] = 1.0  # a bright square in the top-left corner
    return x


def test_grad_cam_lights_up_where_the_evidence_is():
    model = BlobNet().eval()
    heat = explain.grad_cam(model, _blob_input(), 0)
    assert heat.method == "grad-cam" and heat.layer == "features" and not heat.empty
    assert heat.values.shape == (28, 28) and heat.values.max() == pytest.approx(1.0, abs=1e-3)
    assert heat.values[3:9, 4:10].mean() > 0.8
    assert heat.values[15:, 15:].max() < 0.05


def test_grad_cam_is_empty_for_a_class_nothing_speaks_for():
    heat = explain.grad_cam(BlobNet().eval(), _blob_input(), 1)
    assert heat.empty and heat.peak == 0 and float(heat.values.max()) == 0.0
    assert heat.skipped == ()  # every layer was tried; the last one is reported


def test_grad_cam_picks_the_last_conv_block_and_leaves_the_model_as_it_was():
    torch.manual_seed(0)
    model = build_model("fastnet", 1, 10, 28).eval()
    x = explain.prepare_drawing(_canvas("0"), MNIST_CARD).tensor
    layers = explain.cam_layers(model, x)
    assert [layer.name for layer in layers] == ["features.0", "features.3", "features.6", "features"]
    assert layers[-1].shape == (64, 4, 4)
    assert layers[-1].label == "features: a block's output, after ReLU (64 maps of 4×4)"
    assert layers[-2].label == "features.6: a convolution's output (64 maps of 4×4)"
    before = {name: value.clone() for name, value in model.state_dict().items()}
    heat = explain.grad_cam(model, x, 3)
    assert heat.layer == "features" or heat.skipped == ("features",)
    chosen = explain.grad_cam(model, x, 3, layer="features.3")
    assert chosen.layer == "features.3" and chosen.skipped == ()
    assert 0.0 <= chosen.values.min() and chosen.values.max() <= 1.0
    assert not model.training and _no_hooks_left(model)
    assert all(parameter.grad is None for parameter in model.parameters())
    for name, value in model.state_dict().items():
        assert torch.equal(value, before[name]), name


def test_grad_cam_rejects_unknown_layers_and_classes():
    model = build_model("simple_cnn", 1, 10, 28).eval()
    x = torch.zeros(1, 1, 28, 28)
    assert [layer.name for layer in explain.cam_layers(model, x)] == ["conv1", "conv2"]
    with pytest.raises(ConfigError, match="conv1, conv2"):
        explain.grad_cam(model, x, 0, layer="fc1")
    with pytest.raises(ConfigError, match="classes 0 to 9"):
        explain.grad_cam(model, x, 10)
    with pytest.raises(ConfigError, match=r"\[1, C, H, W\]"):
        explain.grad_cam(model, torch.zeros(2, 1, 28, 28), 0)


def test_grad_cam_works_through_frozen_layers():
    torch.manual_seed(0)
    model = build_model("resnet_small", 3, 9, 28, width=8).eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    x = explain.prepare_pixels(np.full((3, 28, 28), 180, np.uint8), RGB_CARD).tensor
    heat = explain.grad_cam(model, x, 2, layer="features")
    assert heat.values.shape == (28, 28) and heat.layer == "features"


def test_gradient_saliency_is_the_weight_of_each_pixel():
    model = nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 2))
    with torch.no_grad():
        model[1].weight.zero_()
        model[1].weight[0].view(28, 28)[10:14, 5:20] = -2.0  # negative weights count too: |gradient|
        model[1].weight[0].view(28, 28)[20, 20] = 1.0
    heat = explain.gradient_saliency(model, torch.rand(1, 1, 28, 28), 0)
    assert heat.method == "saliency" and heat.peak == pytest.approx(2.0)
    assert np.all(heat.values[10:14, 5:20] == 1.0) and heat.values[20, 20] == pytest.approx(0.5)
    assert np.count_nonzero(heat.values) == 4 * 15 + 1
    assert explain.gradient_saliency(model, torch.rand(1, 1, 28, 28), 1).empty


def test_overlay_is_an_rgb_picture_of_the_asked_size():
    pixels = np.zeros((1, 28, 28), np.uint8)
    heat = np.zeros((28, 28), np.float32)
    heat[:14] = 1.0
    picture = explain.overlay(pixels, heat, size=112)
    assert picture.shape == (112, 112, 3) and picture.dtype == np.uint8
    assert picture[10, 50, 0] > picture[10, 50, 2]  # red where the heat is
    assert picture[100, 50, 2] > picture[100, 50, 0]  # blue where it is not


# --------------------------------------------------------------------------------------------------
# Monte Carlo dropout


def test_mc_dropout_needs_dropout():
    model = build_model("fastnet", 1, 10, 28).eval()
    assert explain.dropout_layers(model) == []
    with pytest.raises(ConfigError, match="no dropout layers"):
        explain.mc_dropout(model, torch.zeros(1, 1, 28, 28))
    quiet = nn.Sequential(nn.Flatten(), nn.Dropout(0.0), nn.Linear(4, 2))
    assert explain.dropout_layers(quiet) == []


def test_mc_dropout_spreads_the_answer_and_keeps_batchnorm_still():
    torch.manual_seed(0)
    model = build_model("resnet_small", 3, 9, 28, width=8).train()  # left in training mode on purpose
    x = torch.randn(1, 3, 28, 28)
    statistics = {name: value.clone() for name, value in model.state_dict().items() if "running" in name}
    result = explain.mc_dropout(model, x, passes=40, seed=3)
    assert result.dropout_layers == ("classifier.1",) and result.passes == 40
    assert result.mean.shape == (9,) and result.std.shape == (9,)
    assert result.mean.sum() == pytest.approx(1.0, abs=1e-5)
    assert result.std.max() > 0  # the passes differ
    assert 0 < result.agreement <= 1
    for name, value in model.state_dict().items():
        if "running" in name:
            assert torch.equal(value, statistics[name]), f"{name} changed: BatchNorm was not in eval mode"
    assert all(module.training for module in model.modules())  # modes put back
    again = explain.mc_dropout(model, x, passes=40, seed=3)
    np.testing.assert_allclose(again.mean, result.mean)
    other = explain.mc_dropout(model, x, passes=40, seed=4)
    assert not np.allclose(other.mean, result.mean)
    with pytest.raises(ConfigError, match="passes"):
        explain.mc_dropout(model, x, passes=1)


def test_mc_dropout_mean_is_near_the_plain_prediction():
    torch.manual_seed(1)
    model = build_model("resnet_small", 3, 9, 28, width=8).eval()
    x = torch.randn(1, 3, 28, 28)
    with torch.no_grad():
        plain = torch.softmax(model(x), dim=1)[0].numpy()
    result = explain.mc_dropout(model, x, passes=200)
    np.testing.assert_allclose(result.mean, plain, atol=0.05)
    assert not model.training


# --------------------------------------------------------------------------------------------------
# Trust hint


def test_trust_hint():
    sure = explain.assess_trust(np.array([0.97, 0.01, 0.01, 0.01]))
    assert sure.trustworthy and sure.reasons == () and "confident" in sure.message
    unsure = explain.assess_trust({"a": 0.4, "b": 0.35, "c": 0.25})
    assert not unsure.trustworthy and unsure.message.startswith("Not trustworthy")
    assert any("top probability is only 40.0%" in reason for reason in unsure.reasons)
    assert any("spread out" in reason for reason in unsure.reasons)
    coin = explain.assess_trust(np.array([0.62, 0.38]))  # above 60 % but nearly a coin toss
    assert not coin.trustworthy and coin.normalized_entropy > 0.9


def test_a_known_foreign_input_is_never_trustworthy_however_sure_the_model_sounds():
    verdict = explain.assess_trust(np.array([0.999, 0.001]), foreign_input="the image comes from PathMNIST")
    assert not verdict.trustworthy and verdict.confident
    assert verdict.reasons == ("the image comes from PathMNIST",)
    assert "softmax confidence cannot tell" in verdict.message
    unsure = explain.assess_trust(np.array([0.5, 0.5]), foreign_input="the image comes from PathMNIST")
    assert not unsure.confident and "softmax confidence" not in unsure.message


def test_normalized_entropy_bounds():
    assert explain.normalized_entropy(np.full(10, 0.1)) == pytest.approx(1.0)
    assert explain.normalized_entropy(np.eye(10)[3]) == pytest.approx(0.0)
    assert explain.normalized_entropy(np.array([0.5, 0.5])) == pytest.approx(1.0)


def test_trust_hint_uses_mc_dropout_spread():
    mean = np.array([0.9, 0.05, 0.05])
    steady = explain.McDropoutResult(mean=mean, std=np.array([0.02, 0.01, 0.01]), passes=30, agreement=1.0,
                                     dropout_layers=("d",))
    shaky = explain.McDropoutResult(mean=mean, std=np.array([0.3, 0.2, 0.1]), passes=30, agreement=0.7,
                                    dropout_layers=("d",))
    assert explain.assess_trust(mean, mc=steady).trustworthy
    verdict = explain.assess_trust(mean, mc=shaky)
    assert not verdict.trustworthy and "varies by ±30%" in verdict.reasons[0]


def test_a_checkpoint_round_trip_predicts_the_same(tmp_path):
    """The page loads checkpoints from files: a saved model gives the same answer after loading."""
    torch.manual_seed(0)
    model = build_model("fastnet", 1, 10, 28).eval()
    path = save_checkpoint(model, MNIST_CARD, tmp_path / "digits.safetensors")
    model_input = explain.prepare_drawing(_canvas("7"), MNIST_CARD)
    before = explain.predict_input(_loaded(model, MNIST_CARD), model_input)
    after = explain.predict_input(load_checkpoint(path, expect_dataset="mnist"), model_input)
    assert after.index == before.index
    assert after.probability == pytest.approx(before.probability, abs=1e-5)


def test_one_image_work_runs_on_one_thread_and_puts_the_setting_back():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with explain.single_threaded():
            assert torch.get_num_threads() == 1
            with explain.single_threaded():  # nesting is harmless
                assert torch.get_num_threads() == 1
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == 2
        seen = []
        model = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))
        model.register_forward_hook(lambda *args: seen.append(torch.get_num_threads()))
        explain.gradient_saliency(model, torch.zeros(1, 1, 2, 2), 0)
        assert seen == [1] and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("probability, text", [(0.9991, "99.9%"), (0.99951, "> 99.9%"), (1.0, "100%"), (0.0, "0%"),
                                               (0.0004, "< 0.1%"), (0.4, "40.0%"), (0.12345, "12.3%")])
def test_one_rounding_rule_for_probabilities(probability, text):
    assert explain.percent(probability) == text


def test_the_trust_message_and_the_prediction_round_the_same_way():
    sure = explain.assess_trust(np.array([0.9996, 0.0004]))
    assert "top probability > 99.9%" in sure.message and "100%" not in sure.message


def _shipped_card(name: str):
    from cnn_core.models.card import Card
    from cnn_core.settings import models_dir

    return Card.from_dict(json.loads((models_dir() / f"{name}.json").read_text()))


def test_uploads_unlike_the_training_images_are_not_called_confident():
    # An MNIST digit given to the PathMNIST model was "debris, 90.4 %, The model is confident"; a 1×1 white
    # PNG given to the brain-MRI model was "no, > 99.9 %, confident"; a blank image given to the MNIST model
    # as it is was called "dark on a light background".
    from PIL import Image

    from cnn_core.inference.prepare import prepare_input

    path, brain, digits = (_shipped_card(n) for n in ("pathmnist_fastnet32", "brain_mri_efficientnet_lite0",
                                                      "mnist_fastnet"))
    digit = Image.fromarray(np.pad(np.full((12, 4), 255, np.uint8), 8))  # a gray "1" on black, 28×28
    assert "the picture is gray, and the model was trained on colour images" in prepare_input(digit, path).unlike_training
    tissue = Image.fromarray(np.random.default_rng(0).integers(0, 256, (28, 28, 3), dtype=np.uint8))
    assert prepare_input(tissue, path).unlike_training is None  # colour, at its own size
    scan = Image.fromarray(np.random.default_rng(1).integers(0, 256, (300, 300), dtype=np.uint8))
    assert prepare_input(scan, brain).unlike_training is None  # gray is fine: ImageNet's normalization says nothing
    dot = prepare_input(Image.new("RGB", (1, 1), (255, 255, 255)), brain).unlike_training
    assert dot.startswith("the picture is only 1×1 pixels, enlarged about 288 times")
    assert prepare_input(Image.new("L", (72, 72), 255), brain).unlike_training is None  # 4× is the limit: 288/72
    blank = prepare_input(Image.new("L", (28, 28), 255), digits, raw=True).unlike_training
    assert blank.startswith("the image is one flat colour, with nothing drawn on it")


def test_an_animation_says_its_first_frame_was_read_and_a_damaged_header_is_called_damaged():
    # An animated GIF was read from its first frame without a word; a PNG whose header chunk fails its CRC was
    # "not an image this app can read", as if it were a text file.
    import io
    import zlib

    from cnn_core.errors import ImageError
    from cnn_core.inference.prepare import prepare_input, read_input

    frames = [Image.new("L", (28, 28), 0) for _ in range(3)]
    for i, frame in enumerate(frames):
        ImageDraw.Draw(frame).line((14, 4 + i, 14, 24), fill=255, width=3)
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:])
    digits = _shipped_card("mnist_fastnet")
    for raw in (False, True):
        notes = prepare_input(read_input(buffer.getvalue(), name="one.gif"), digits, raw=raw).notes
        assert "read from the first of its 3 frames (the file is an animation or holds several pages)" in notes
    still = io.BytesIO()
    frames[0].save(still, format="PNG")
    assert not any("frames" in note for note in prepare_input(read_input(still.getvalue()), digits).notes)
    damaged = bytearray(still.getvalue())
    damaged[29] ^= 0xFF  # IHDR's checksum
    assert zlib.crc32(bytes(damaged[12:29])) != int.from_bytes(damaged[29:33], "big")
    with pytest.raises(ImageError, match="'bad.png' starts like a PNG file but is damaged: its header cannot be read"):
        read_input(bytes(damaged), name="bad.png")
    with pytest.raises(ImageError, match="is not an image this app can read"):
        read_input(b"just some text, not a picture\n" * 4, name="notes.png")
