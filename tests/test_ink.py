"""Handwritten digits as people deliver them, through the one preparation the CLI and the Predict page share.

Every kind of rendering (tests/handwriting_renders.py: gray, tinted, shadowed, ruled and squared paper,
transparent PNGs, pencil, specks, small/large/off-centre, photos, light on dark) is read by the shipped MNIST
model with its right answer: synthetic strokes always, real MNIST digits when CNN_DATA_DIR has MNIST.
"""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image, ImageDraw
from scipy import ndimage

import handwriting_renders as renders
from cnn_core.inference import explain, ink
from cnn_core.inference.predict import predict_inputs, prepare_files
from cnn_core.models.card import Card
from cnn_core.models.checkpoints import LoadedCheckpoint, load_checkpoint
from cnn_core.settings import models_dir

KINDS = {**renders.INK_KINDS, **renders.SIZE_KINDS}
DIGITS = ("1", "7", "0", "4")
STRENGTHS = range(6)  # each kind cycles through its own strengths: 6 covers them all


@pytest.fixture(scope="module")
def shipped() -> LoadedCheckpoint:
    path = models_dir() / "mnist_fastnet.safetensors"
    if not path.is_file():
        pytest.skip(f"the shipped MNIST checkpoint {path} is not there")
    return load_checkpoint(path, expect_dataset="mnist")


def _render(kind: str, ink_of, strength: int, seed: int) -> tuple[bytes, str]:
    """A rendering of `kind` at `strength`; `ink_of(how, scale)` gives the digit's ink."""
    rng = np.random.default_rng((seed, strength))
    if kind in renders.INK_KINDS:
        return renders.INK_KINDS[kind](ink_of("normal", renders.SCALE), strength, rng)
    return renders.SIZE_KINDS[kind](ink_of, strength, rng)


def _synthetic(digit: str):
    def ink_of(how: str, scale: float) -> np.ndarray:
        if how == "tight":
            return renders.tight(renders.synthetic_ink(digit))
        side = round(28 * scale)
        return renders.synthetic_ink(digit, side=side, width=max(2, round(side / 11)))
    return ink_of


def _answer(loaded: LoadedCheckpoint, payload: bytes, name: str, tmp_path) -> str:
    """The CLI's answer (`prepare_files`, the function `predict` calls) for the file."""
    path = tmp_path / name
    path.write_bytes(payload)
    (result,) = prepare_files(loaded, [path])
    assert result.error is None, result.error
    return predict_inputs(loaded, [result.model_input])[0].label


@pytest.mark.parametrize("kind", list(KINDS))
def test_every_kind_of_delivery_reads_right(kind, shipped, tmp_path):
    wrong = []
    for digit in DIGITS:
        for strength in STRENGTHS:
            payload, name = _render(kind, _synthetic(digit), strength, seed=int(digit))
            said = _answer(shipped, payload, f"{digit}_{strength}_{name}", tmp_path)
            if said != digit:
                wrong.append(f"{digit} at strength {strength} ({name}) read as {said}")
    assert not wrong, wrong


@pytest.fixture(scope="module")
def mnist_digits():
    from cnn_core import data

    if not data.dataset_status("mnist").available:
        pytest.skip("MNIST not found under CNN_DATA_DIR")
    split = data.load_split("mnist", "test")
    pick = np.random.default_rng(13).choice(len(split.labels), size=24, replace=False)
    return split.images[pick], split.labels[pick].numpy()


@pytest.mark.realdata
@pytest.mark.parametrize("kind", list(KINDS))
def test_real_mnist_digits_delivered_every_way_read_right(kind, shipped, mnist_digits, tmp_path):
    from cnn_core.inference.predict import predict_tensor

    images, labels = mnist_digits
    readable = predict_tensor(shipped, images).argmax(1).numpy() == labels  # what the model reads as MNIST
    wrong = []
    for index in np.flatnonzero(readable):
        digit = images[index, 0].numpy()

        def ink_of(how, scale, digit=digit):
            big = renders.enlarge(digit, renders.SCALE if how == "tight" else scale)
            return renders.tight(big) if how == "tight" else big

        payload, name = _render(kind, ink_of, int(index) % 6, seed=int(index))
        said = _answer(shipped, payload, f"{index}_{name}", tmp_path)
        if said != str(labels[index]):
            wrong.append(f"test digit {labels[index]} ({name}) read as {said}")
    assert len(wrong) <= 1, wrong  # one slip in 20-odd digits is within the 3-point target


# --------------------------------------------------------------------------------------------------
# No digit only when there is no ink


def _encode(array: np.ndarray, quality: int | None = None) -> bytes:
    return renders.encode(array, "x", quality)[0]


def _blank_pages():
    rng = np.random.default_rng(0)
    y = np.linspace(1.0, 0.56, 160)[:, None, None]
    squared = np.full((160, 160, 3), 250, np.uint8)
    squared[::12] = squared[:, ::12] = (170, 200, 230)
    noisy = np.clip(200 + rng.normal(0, 6, (160, 160, 3)), 0, 255).astype(np.uint8)
    return {
        "white paper": _encode(np.full((120, 90), 255, np.uint8)),
        "dark gray paper": _encode(np.full((120, 90, 3), 120, np.uint8)),
        "paper in a shadow": _encode(np.rint(np.full((160, 160, 3), 250.0) * y).astype(np.uint8)),
        "squared paper": _encode(squared),
        "a noisy JPEG of paper": _encode(noisy, quality=40),
        "a transparent PNG": _encode(np.zeros((64, 64, 4), np.uint8)),
    }


@pytest.mark.parametrize("what", list(_blank_pages()))
def test_no_digit_found_only_without_ink(what, shipped, tmp_path):
    path = tmp_path / "page.png"
    path.write_bytes(_blank_pages()[what])
    (result,) = prepare_files(shipped, [path])
    assert isinstance(result.error, explain.EmptyDrawingError)
    assert "No digit found in 'page.png'" in str(result.error)


def _canvas_with(shape: str) -> bytes:
    """The drawing canvas's export (white strokes on transparency, 280 px) holding one tap or a filled shape."""
    image = Image.new("RGBA", (280, 280), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    if shape == "a tap of the pen":
        draw.ellipse([130, 130, 150, 150], fill=(255, 255, 255, 255))
    elif shape == "a filled square":
        draw.rectangle([100, 100, 170, 170], fill=(255, 255, 255, 255))
    else:  # a small 0 drawn with a thick pen: a ring, not a blob
        draw.ellipse([110, 100, 170, 180], outline=(255, 255, 255, 255), width=14)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.mark.parametrize("shape", ["a tap of the pen", "a filled square", "a thick small 0"])
def test_a_dot_or_a_blob_is_not_read_as_a_confident_digit(shape, shipped, tmp_path):
    # a single tap, enlarged to a digit's size, was read as "0, 92.6 %" and marked confident
    path = tmp_path / "canvas.png"
    path.write_bytes(_canvas_with(shape))
    (result,) = prepare_files(shipped, [path])
    if shape == "a thick small 0":
        assert result.error is None and predict_inputs(shipped, [result.model_input])[0].label == "0"
    else:
        assert isinstance(result.error, explain.EmptyDrawingError) and "a dot or a filled blob" in str(result.error)


@pytest.mark.parametrize("brush", [20, 30, 40])
def test_a_bold_digit_on_the_opaque_black_canvas_is_not_taken_for_a_sheet(brush, shipped, tmp_path):
    # the canvas exports white strokes on opaque black: a bold digit's strokes passed for a sheet of paper on a
    # dark desk and were painted over ("No digit found")
    image = Image.new("RGB", (280, 280), (0, 0, 0))
    ImageDraw.Draw(image).line([(80, 80), (140, 50), (200, 90), (90, 220), (210, 220)], fill=(255, 255, 255),
                               width=brush, joint="curve")
    path = tmp_path / "canvas.png"
    image.save(path)
    (result,) = prepare_files(shipped, [path])
    assert result.error is None and predict_inputs(shipped, [result.model_input])[0].label == "2"


@pytest.mark.realdata
def test_no_mnist_test_digit_white_on_black_is_taken_for_a_sheet_on_a_desk():
    from cnn_core import data

    if not data.dataset_status("mnist").available:
        pytest.skip("MNIST not found under CNN_DATA_DIR")
    changed = []
    for index, digit in enumerate(data.load_split("mnist", "test").images[:1000, 0].numpy()):
        for side in (28, 112, 280):
            gray = np.asarray(Image.fromarray(digit).resize((side, side), Image.Resampling.BICUBIC), np.float32) / 255
            if not np.array_equal(ink.paper_only(gray), gray):
                changed.append((index, side))
    assert changed == []


@pytest.mark.realdata
def test_no_mnist_test_digit_is_taken_for_a_blob():
    from cnn_core import data
    from cnn_core.inference.prepare import INK_THRESHOLD, is_blob

    if not data.dataset_status("mnist").available:
        pytest.skip("MNIST not found under CNN_DATA_DIR")
    images = data.load_split("mnist", "test").images[:, 0].numpy()
    blobs = []
    for index, image in enumerate(images):
        mask = image >= INK_THRESHOLD * 255
        rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
        if is_blob(mask[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]):
            blobs.append(index)
    assert blobs == []


def test_a_white_digit_on_a_transparent_png_keeps_its_ink():
    payload, _ = renders.transparent_white(renders.synthetic_ink("7"), 0, None)
    picture = explain.read_input(payload, name="white.png")
    assert picture.mode == "RGBA"  # not composited over white, where a white digit would vanish
    assert ink.ink_map(picture).max() == pytest.approx(1.0)


def test_ink_is_found_on_either_side_of_the_paper():
    stroke = renders.place(renders.synthetic_ink("1"))
    dark_on_gray = renders.on_paper(stroke, 140, 20)[..., 0]
    light_on_dark = renders.on_paper(stroke, 40, 230)[..., 0]
    for picture in (dark_on_gray, light_on_dark):
        found = ink.ink_map(picture)
        assert found[stroke > 0.9].min() > 0.9 and found[stroke == 0].max() < 0.05


def test_lines_are_removed_and_strokes_across_them_kept():
    stroke = renders.place(renders.synthetic_ink("7"))
    payload, _ = renders.squared_paper(renders.synthetic_ink("7"), 1, np.random.default_rng(0))
    found = ink.ink_map(Image.open(io.BytesIO(payload)))
    away = ndimage.distance_transform_edt(stroke < 0.05) > 4  # (a stroke's edge may have grown a little)
    assert found[away].max() < 0.05  # no line left
    assert (found[stroke > 0.9] > 0.5).mean() > 0.9  # the stroke; where it crosses a line it may lose a pixel


def test_specks_far_from_the_digit_are_dropped():
    stroke = renders.place(renders.synthetic_ink("1"))
    picture = renders.on_paper(stroke, 250, 15)
    picture[5:9, 5:9] = 30
    picture[150:153, 140:143] = 30
    found = ink.ink_map(picture)
    assert found[:20, :20].max() == 0 and found[145:, 135:].max() == 0


def test_thin_strokes_are_thickened_to_mnists_share():
    thin = renders.synthetic_ink("7", side=112, width=2)
    mask = ink.ink_map(renders.on_paper(renders.place(thin), 250, 0)) > 0.5
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    box = max(rows[-1] - rows[0], cols[-1] - cols[0]) + 1
    assert ink.stroke_width(mask) / box > 0.6 * ink.MNIST_STROKE_SHARE


def test_otsu_splits_two_groups():
    values = np.concatenate([np.full(900, 0.1), np.full(100, 0.8)])
    assert 0.1 < ink.otsu_threshold(values) < 0.8


# --------------------------------------------------------------------------------------------------
# One preparation for the CLI and the page


def _page_input(payload: bytes, name: str, card: Card, raw: bool = False) -> explain.ModelInput:
    """What pages/5_predict.py does with an upload."""
    picture = explain.read_input(payload, name=name)
    return explain.prepare_input(picture, card, raw=raw, name=name)


@pytest.mark.parametrize("kind", ["shadow 250->140", "transparent, white strokes", "photo (blur, noise, JPEG)",
                                  "squared paper"])
@pytest.mark.parametrize("raw", [False, True])
def test_the_cli_and_the_page_prepare_identical_tensors(kind, raw, shipped, tmp_path):
    payload, name = _render(kind, _synthetic("7"), 3, seed=0)
    path = tmp_path / name
    path.write_bytes(payload)
    (cli,) = prepare_files(shipped, [path], raw=raw)
    page = _page_input(payload, name, shipped.card, raw=raw)
    assert cli.model_input.pixels.shape == (1, 28, 28)
    np.testing.assert_array_equal(cli.model_input.pixels, page.pixels)
    assert torch_equal(cli.model_input.tensor, page.tensor)
    assert cli.model_input.notes == page.notes


def torch_equal(a, b) -> bool:
    import torch

    return bool(torch.equal(a, b))


def test_other_checkpoints_keep_their_own_preparation(tmp_path):
    card = Card(model="resnet_small", dataset="pathmnist", family="medmnist", class_names=tuple("abcdefghi"),
                channels=3, image_size=28, normalization={"mean": [0.5] * 3, "std": [0.2] * 3})
    payload, name = renders.shadow(renders.synthetic_ink("7"), 3, np.random.default_rng(0))
    model_input = _page_input(payload, name, card)
    assert model_input.pixels.shape == (3, 28, 28)
    assert "scaled from 160×160 to 28×28" in model_input.notes
    assert model_input.pixels.mean() > 100  # the paper is still there: nothing was cropped to ink


def test_cli_predict_reads_a_shadowed_photo_and_says_how_sure(shipped, tmp_path, capsys):
    from cnn_core.cli import main

    payload, name = renders.shadow(renders.synthetic_ink("7"), 3, np.random.default_rng(0))
    path = tmp_path / name
    path.write_bytes(payload)
    checkpoint = str(shipped.path)
    assert main(["predict", "--checkpoint", checkpoint, str(path), "--json"]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer["label"] == "7" and answer["trustworthy"] is True
    assert "centre of mass" in answer["prepared"][0]
    # --raw: only resized, dark on light paper: the answer is flagged whatever its probability
    assert main(["predict", "--checkpoint", checkpoint, str(path), "--raw", "--json"]) == 0
    raw = json.loads(capsys.readouterr().out)
    assert raw["trustworthy"] is False and "dark on a light background" in raw["trust"]
    assert main(["predict", "--checkpoint", checkpoint, str(path), "--raw"]) == 0
    text = capsys.readouterr().out
    assert "(unsure)" in text and "Not trustworthy" in text.splitlines()[1]
    # a photo of leaves given as it is: gray, not white on black ("8, 100 %" with the green badge)
    leaves = (np.random.default_rng(3).random((60, 80, 3)) * [60, 160, 60]).astype(np.uint8)
    Image.fromarray(leaves).save(tmp_path / "forest.jpg")
    assert main(["predict", "--checkpoint", checkpoint, str(tmp_path / "forest.jpg"), "--raw", "--json"]) == 0
    raw = json.loads(capsys.readouterr().out)
    assert raw["trustworthy"] is False and "on a gray or textured background, not black" in raw["trust"]


def test_evaluate_reads_image_files_in_class_folders_like_predict(shipped, tmp_path, capsys):
    from cnn_core.cli import main

    for digit in ("1", "7", "0"):
        (tmp_path / digit).mkdir()
        for strength, kind in enumerate(("shadow 250->140", "squared paper", "light on dark (inverted)")):
            payload, name = _render(kind, _synthetic(digit), strength, seed=1)
            (tmp_path / digit / name).write_bytes(payload)
    (tmp_path / "0" / "blank.png").write_bytes(_encode(np.full((50, 50), 200, np.uint8)))
    # what a data set does not count is not counted here either (open-mmlab/mmpretrain#507): macOS's ._ files and
    # __MACOSX/, Jupyter's .ipynb_checkpoints/ copies
    clutter = _encode(np.full((50, 50), 90, np.uint8))
    for path in ("7/._a.png", "7/.ipynb_checkpoints/a.png", "__MACOSX/7/._b.png"):
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_bytes(clutter)
    assert main(["evaluate", "--checkpoint", str(shipped.path), "--images", str(tmp_path), "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["files"] == 10 and metrics["n"] == 9 and metrics["accuracy"] == 1.0
    assert metrics["refused"] == [str(tmp_path / "0" / "blank.png")] and metrics["accuracy_all"] == 0.9
    assert main(["evaluate", "--checkpoint", str(shipped.path), "--images", str(tmp_path)]) == 0
    shown = capsys.readouterr()
    assert "(9 images; 1 refused, accuracy with them 90.00 %):" in shown.out
    assert f"refused {tmp_path / '0' / 'blank.png'}: No digit found" in shown.err  # which, and why
    from cnn_core.inference.answers import _class_key

    assert _class_key("smooth_muscle") == _class_key("Smooth  muscle") == _class_key("smooth-muscle")  # PathMNIST
    (tmp_path / "eight").mkdir()
    (tmp_path / "eight" / "a.png").write_bytes(clutter)
    assert main(["evaluate", "--checkpoint", str(shipped.path), "--images", str(tmp_path)]) == 2
    assert "named like the checkpoint's classes" in capsys.readouterr().err


def test_a_forms_box_around_the_digit_is_not_the_digit(shipped, tmp_path):
    """A scanned form: the digit written in a printed box that does not reach the picture's edges."""
    from PIL import ImageDraw

    picture = Image.fromarray(renders.on_paper(renders.place(renders.synthetic_ink("7", side=90, width=8)), 245, 20))
    ImageDraw.Draw(picture).rectangle([22, 18, 138, 142], outline=(60, 60, 60), width=2)
    found = ink.ink_map(picture)
    assert found[18:20, 30:130].max() < 0.05 and found[30:130, 136:139].max() < 0.05
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    assert _answer(shipped, buffer.getvalue(), "form.png", tmp_path) == "7"


def test_two_digits_side_by_side_are_flagged_not_read_as_one(shipped, tmp_path):
    # "14" on one sheet read as 4 at 99.8 %, nothing said it held two digits
    from cnn_core.inference.answers import answer_files

    four, seven = renders.synthetic_ink("4"), renders.synthetic_ink("7")
    pair = np.concatenate([four, np.zeros((four.shape[0], 30), four.dtype), seven], axis=1)  # "47"
    paper = np.full(pair.shape + (3,), 245.0) * (1 - pair[..., None]) + 20 * pair[..., None]
    Image.fromarray(np.pad(paper, ((40, 40), (40, 40), (0, 0)), constant_values=245).astype(np.uint8)).save(
        tmp_path / "47.png")
    Image.fromarray(renders.on_paper(renders.place(four), 245, 20)).save(tmp_path / "4.png")  # alone: not flagged
    pair_answer, one_answer = answer_files(shipped, [tmp_path / "47.png", tmp_path / "4.png"])
    assert pair_answer["trustworthy"] is False and "seems to hold 2 digits side by side" in pair_answer["trust"]
    assert one_answer["label"] == "4" and one_answer["trustworthy"] is True
