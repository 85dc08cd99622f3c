"""The Predict page in headless Chromium: drawing digits with the mouse, uploads, sample buttons, bad input."""

from __future__ import annotations

import io
import math
import re
from pathlib import Path

import numpy as np
import pytest
from image_samples import png_bomb
from PIL import Image
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

from browser_fixtures import (assert_no_exception, download_onnx, finish_page, open_app_page, save_screenshot,
                              wait_for_app)
from cnn_core.settings import models_dir, runs_dir

pytestmark = pytest.mark.browser

PAGE = "predict"
FIRST_RUN_TIMEOUT_MS = 90_000  # the first prediction imports pytorch-grad-cam and loads the model
SHIPPED_MNIST = models_dir() / "mnist_fastnet.safetensors"

#: The card of an untrained digits model the tests write (for the page's flow, not its accuracy).
DIGITS_CARD = {"model": "fastnet", "dataset": "mnist", "family": "mnist", "class_names": [str(i) for i in range(10)],
               "channels": 1, "image_size": 28, "normalization": {"mean": [0.1307], "std": [0.3081]},
               "task": "multi-class", "dataset_title": "MNIST handwritten digits (28×28)"}

#: Strokes in canvas fractions (0-1): each stroke is a list of points the mouse moves through.
STROKES: dict[str, list[list[tuple[float, float]]]] = {
    "1": [[(0.50, 0.15), (0.50, 0.85)]],
    "7": [[(0.25, 0.20), (0.75, 0.20), (0.45, 0.85)]],
    "0": [[(0.5 + 0.22 * math.sin(2 * math.pi * t / 24), 0.5 - 0.33 * math.cos(2 * math.pi * t / 24))
           for t in range(25)]],
}


def _expect():
    from playwright.sync_api import expect

    return expect


def _prediction(page):
    return page.get_by_test_id("stMetric").filter(has_text="Predicted class").get_by_test_id("stMetricValue")


def _model_box(page):
    return page.get_by_role("combobox", name="Model")


def _choose_source(page, label: str) -> None:
    page.get_by_test_id("stButtonGroup").get_by_text(label, exact=True).click()
    wait_for_app(page)


def _choose_model(page, text: str) -> None:
    """Open the model picker and pick `text`; a rerun that redraws the open list is retried, not a failure."""
    for attempt in range(3):
        wait_for_app(page)
        page.get_by_test_id("stSelectbox").filter(has_text="Model").click()
        try:
            page.get_by_role("option").filter(has_text=text).first.click(timeout=20_000)
            break
        except PlaywrightTimeoutError:
            if attempt == 2:
                raise
            page.keyboard.press("Escape")
    wait_for_app(page)


def _draw(page, digit: str) -> None:
    """Draw `digit` with mouse strokes on the canvas (Fabric.js listens on its upper canvas)."""
    canvas = page.locator("canvas.upper-canvas")
    canvas.scroll_into_view_if_needed()
    box = canvas.bounding_box()
    assert box and box["width"] > 100, "the drawing canvas did not render"
    for stroke in STROKES[digit]:
        x, y = stroke[0]
        page.mouse.move(box["x"] + x * box["width"], box["y"] + y * box["height"])
        page.mouse.down()
        for x, y in stroke[1:]:
            page.mouse.move(box["x"] + x * box["width"], box["y"] + y * box["height"], steps=6)
        page.mouse.up()


def _upload(page, name: str, data: bytes, mime: str = "image/png") -> None:
    page.get_by_test_id("stFileUploaderDropzoneInput").set_input_files(
        files=[{"name": name, "mimeType": mime, "buffer": data}])


def _browser_owner(context) -> str:
    """The browser id the app gave this context (its cookie): the owner of what it trains."""
    return next(cookie["value"] for cookie in context.cookies() if cookie["name"] == "cnn_explorer_browser")


@pytest.fixture
def made_checkpoints(browser_context, warm_app):
    """Checkpoints a test writes into the app's runs folder, recorded as trained by the test's browser (the app
    shows each browser the shipped checkpoints and its own); removed afterwards so other tests never see them."""
    from cnn_core import data
    from cnn_core.runs import RunStatus, RunStore
    from cnn_core.training import TrainConfig, resolve_config

    written: list[Path] = []
    store, owner = RunStore(), _browser_owner(browser_context)

    def write(model_name: str, card: dict, file_name: str, *, model_card: dict | None = None) -> Path:
        import torch

        from cnn_core.models import build_model
        from cnn_core.models.card import Card
        from cnn_core.models.checkpoints import save_checkpoint

        torch.manual_seed(0)
        shape = model_card or card
        model = build_model(model_name, int(shape["channels"]), len(shape["class_names"]), int(shape["image_size"]))
        path = save_checkpoint(model.eval(), Card.from_dict(card), runs_dir() / file_name)
        written.extend([path, path.with_suffix(".json"), path.with_suffix(".md")])
        config = TrainConfig(dataset="mnist", model=model_name)
        run_id = path.stem
        resolved = resolve_config(config, data.get_dataset_info("mnist"))
        store.create_run(run_id, owner, config, resolved, "(written by a test)",
                         origin="test", status=RunStatus.FINISHED)  # fmt: skip
        store.update(run_id, checkpoint=str(path))
        recorded.append(run_id)
        return path

    def label(path: Path) -> str:
        """How the pickers name it: by the number of the browser's run that made it."""
        return f"run #{store.run_numbers(owner)[path.stem]} · yours"

    recorded: list[str] = []
    write.label = label
    yield write
    store.forget(recorded)
    for path in written:
        path.unlink(missing_ok=True)


def _pathmnist_card() -> dict:
    from cnn_core import data

    info = data.get_dataset_info("pathmnist")
    mean, std = data.channel_stats("pathmnist")
    return {"model": "resnet_small", "model_args": {}, "dataset": "pathmnist", "dataset_title": info.title,
            "family": info.family, "task": info.task, "class_names": list(info.class_names), "channels": 3,
            "image_size": 28, "normalization": {"mean": mean, "std": std}, "metrics": {},
            "command": "tests/test_browser_predict.py (untrained, for the page's flow only)"}


def _shipped_card(dataset: str):
    """The first shipped checkpoint (models/) trained on `dataset` (a CheckpointEntry), or None."""
    from cnn_core.models.checkpoints import list_checkpoints

    return next((entry for entry in list_checkpoints([models_dir()]) if entry.card.dataset == dataset), None)


def _pathmnist_checkpoint(made_checkpoints) -> dict:
    """The card of the shipped PathMNIST checkpoint, or of an untrained one with a real PathMNIST card: the
    page's flow (upload, preprocessing, prediction, Grad-CAM) is what is tested, not the model's accuracy."""
    from cnn_core import data

    if not data.dataset_status("pathmnist").available:
        pytest.skip("PathMNIST not found under CNN_DATA_DIR")
    shipped = _shipped_card("pathmnist")
    if shipped is not None:
        return {**shipped.card.to_dict(), "name": shipped.name}
    path = made_checkpoints("resnet_small", _pathmnist_card(), "test_predict_pathmnist.safetensors")
    return {**_pathmnist_card(), "name": made_checkpoints.label(path)}


def _has_dropout(card: dict) -> bool:
    from cnn_core.inference.explain import dropout_layers
    from cnn_core.models.card import Card
    from cnn_core.models.checkpoints import build_from_card

    return bool(dropout_layers(build_from_card(Card.from_dict(card))))


def _pathmnist_test_image(index: int) -> tuple[np.ndarray, str]:
    from cnn_core import data

    split = data.load_split("pathmnist", "test")
    image = split.images[index].numpy().transpose(1, 2, 0)
    return image, split.info.class_names[int(split.labels[index])]


# --------------------------------------------------------------------------------------------------


def test_drawing_digits_with_the_mouse(page):
    if not SHIPPED_MNIST.is_file():
        pytest.skip(f"needs the shipped MNIST checkpoint {SHIPPED_MNIST}; it is not there yet")
    expect = _expect()
    open_app_page(page, PAGE)
    _choose_model(page, "mnist_fastnet")
    expect(page.get_by_text("draw a digit first")).to_be_visible()
    for digit in ("1", "7", "0"):
        _draw(page, digit)
        expect(_prediction(page)).to_have_text(digit, timeout=FIRST_RUN_TIMEOUT_MS)
        wait_for_app(page)
        assert_no_exception(page)
        expect(page.get_by_text("What the model sees")).to_be_visible()
        cam_caption = page.get_by_test_id("stImageCaption").filter(has_text=f"Grad-CAM for {digit} (predicted)")
        expect(cam_caption).to_be_visible()
        expect(page.get_by_text("has no dropout layers")).to_be_visible()  # FastNet: MC dropout does not apply
        save_screenshot(page, f"predict-drawn-{digit}")
        page.get_by_role("button", name="Clear").click()
        expect(page.get_by_text("draw a digit first")).to_be_visible()
        expect(page.get_by_test_id("stMetric")).to_have_count(0)
        wait_for_app(page)
    # The model as ONNX, for onnxruntime and Netron: the shipped digits model, its input preparation included.
    onnx_file = download_onnx(page, channels=1, size=28, n_classes=10)
    assert onnx_file.stat().st_size > 10_000
    assert_no_exception(page)


def _photo_of(digit: str, side: int = 600) -> bytes:
    """The mouse strokes of `digit` written with a dark pen on gray paper and photographed in a shadow
    (brightness falling from 250 to 140 across the paper), saved as a JPEG like a phone's."""
    from PIL import ImageDraw, ImageFilter

    paper = Image.new("L", (side, side), 255)
    pen = ImageDraw.Draw(paper)
    margin = side * 0.2  # the digit is written in the middle 60 % of the sheet
    for stroke in STROKES[digit]:
        points = [(margin + x * side * 0.6, margin + y * side * 0.6) for x, y in stroke]
        pen.line(points, fill=0, width=side // 30, joint="curve")
    ink = 1 - np.asarray(paper.filter(ImageFilter.GaussianBlur(1.5)), dtype=np.float32) / 255
    light = np.linspace(250, 140, side, dtype=np.float32)[None, :] * np.linspace(1.0, 0.9, side)[:, None]
    gray = light * 0.8 * (1 - ink) + 25 * ink  # gray paper (80 %), a dark pen
    noisy = gray + np.random.default_rng(0).normal(0, 4, gray.shape)
    rgb = np.repeat(np.clip(np.rint(noisy), 0, 255).astype(np.uint8)[..., None], 3, axis=2)
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="JPEG", quality=70)
    return buffer.getvalue()


def test_a_photo_of_a_digit_on_gray_paper_in_a_shadow(page):
    """What a phone delivers: the page finds the ink, reads the digit, and with the digit option off says the
    image is unlike the model's training digits."""
    if not SHIPPED_MNIST.is_file():
        pytest.skip(f"needs the shipped MNIST checkpoint {SHIPPED_MNIST}; it is not there yet")
    expect = _expect()
    open_app_page(page, PAGE)
    _choose_source(page, "Upload an image")
    _choose_model(page, "mnist_fastnet")
    for digit in ("7", "0"):
        _upload(page, f"photo of a {digit}.jpg", _photo_of(digit), "image/jpeg")
        expect(page.get_by_test_id("stImageCaption").filter(has_text=f"photo of a {digit}.jpg")).to_be_visible(
            timeout=FIRST_RUN_TIMEOUT_MS)
        expect(_prediction(page)).to_have_text(digit, timeout=FIRST_RUN_TIMEOUT_MS)
        wait_for_app(page)
        expect(page.get_by_text("cropped to the ink")).to_be_visible()
        assert_no_exception(page)
        save_screenshot(page, f"predict-photo-{digit}")
    # Off: only resized, as `predict --raw`: a dark digit on light paper is not what MNIST's digits look like.
    page.get_by_test_id("stCheckbox").filter(has_text="Treat it as a handwritten digit").locator("label").click()
    wait_for_app(page)
    expect(page.get_by_text("the image is dark on a light background")).to_be_visible(timeout=30_000)
    # A file that cannot be read hides the switch for a run; the next photo still finds it off (it was back on).
    _upload(page, "notes.png", b"not an image at all\n" * 20)
    expect(page.get_by_role("alert").first).to_be_visible(timeout=30_000)
    _upload(page, "photo of a 7.jpg", _photo_of("7"), "image/jpeg")
    expect(page.get_by_text("the image is dark on a light background")).to_be_visible(timeout=FIRST_RUN_TIMEOUT_MS)
    expect(page.get_by_test_id("stCheckbox").filter(has_text="Treat it as a handwritten digit").locator("input")
           ).not_to_be_checked()
    # A visit to another page keeps the input kind and the model (it came back on "Draw a digit").
    page.get_by_role("link", name="Convolution Lab").click()
    page.get_by_role("heading", name="Convolution Lab").first.wait_for()
    wait_for_app(page)
    page.get_by_role("link", name="Predict").click()
    expect(page.get_by_test_id("stFileUploader")).to_be_visible(timeout=FIRST_RUN_TIMEOUT_MS)
    expect(page.get_by_role("combobox", name="Model")).to_have_value(re.compile(r"^mnist_fastnet"))
    finish_page(page, "predict-photo-raw")


@pytest.mark.realdata
def test_upload_a_pathmnist_scan_and_see_why(page, made_checkpoints, tmp_path):
    card = _pathmnist_checkpoint(made_checkpoints)
    # An untrained small ResNet (it has dropout) for the Monte Carlo dropout chart, whatever is shipped.
    dropout = made_checkpoints("resnet_small", _pathmnist_card(), "test_predict_dropout.safetensors")
    from cnn_core import data

    class_names = data.get_dataset_info("pathmnist").class_names
    image, truth = _pathmnist_test_image(7)
    saved = tmp_path / "pathmnist_test_7.png"
    Image.fromarray(image).resize((224, 224), Image.Resampling.BICUBIC).save(saved)  # a "scan" of another size
    expect = _expect()
    open_app_page(page, PAGE)
    _choose_source(page, "Upload an image")
    _choose_model(page, card["name"])
    page.get_by_test_id("stFileUploaderDropzoneInput").set_input_files(str(saved))
    expect(_prediction(page)).to_be_visible(timeout=FIRST_RUN_TIMEOUT_MS)
    wait_for_app(page)
    assert _prediction(page).inner_text() in class_names
    expect(page.get_by_text("scaled from 224×224 to 28×28")).to_be_visible()
    expect(page.get_by_test_id("stImageCaption").filter(has_text="(predicted) at")).to_be_visible()
    expect(page.get_by_test_id("stImageCaption").filter(has_text="Saliency for")).to_be_visible()
    if _has_dropout(card):
        expect(page.get_by_text("Mean and standard deviation (sd) over 50 dropout passes")).to_be_visible()
    else:
        expect(page.get_by_text("has no dropout layers")).to_be_visible()
    expect(page.get_by_text("trustworthy").or_(page.get_by_text("The model is confident")).first).to_be_visible()
    finish_page(page, "predict-upload-pathmnist")

    # The same patch as a 16-bit grayscale TIFF: another mode, converted for the RGB model.
    gray = np.asarray(Image.fromarray(image).convert("L"), dtype=np.uint16) * 257
    buffer = io.BytesIO()
    Image.fromarray(gray).resize((300, 200)).save(buffer, format="TIFF")
    _upload(page, "gray16.tif", buffer.getvalue(), "image/tiff")
    expect(page.get_by_text("gray copied into 3 channels")).to_be_visible(timeout=30_000)
    expect(page.get_by_text("300×200 and centre-cropped")).to_be_visible()
    expect(_prediction(page)).to_be_visible()
    finish_page(page, "predict-upload-tiff")

    _choose_model(page, made_checkpoints.label(dropout))
    expect(page.get_by_text("Mean and standard deviation (sd) over 50 dropout passes")).to_be_visible(timeout=30_000)
    expect(page.get_by_text("of the passes agree on the top class")).to_be_visible()
    finish_page(page, "predict-upload-mc-dropout")


@pytest.mark.realdata
def test_sample_buttons_pick_test_images_with_their_labels(page, made_checkpoints):
    _pathmnist_checkpoint(made_checkpoints)
    digits = made_checkpoints("fastnet", DIGITS_CARD, "test_predict_sample_digits.safetensors")
    expect = _expect()
    open_app_page(page, PAGE)
    _choose_source(page, "Test image")
    buttons = page.get_by_role("button").filter(has_text="Random ")
    expect(buttons.first).to_be_visible()
    page.get_by_role("button", name="Random PathMNIST (28×28)").click()
    expect(page.get_by_text("True label:")).to_be_visible(timeout=FIRST_RUN_TIMEOUT_MS)
    expect(_prediction(page)).to_be_visible(timeout=FIRST_RUN_TIMEOUT_MS)
    wait_for_app(page)
    expect(_model_box(page)).to_have_value(re.compile("PathMNIST"))  # switched to a PathMNIST model
    expect(page.get_by_text("Right: the true label").or_(page.get_by_text("Wrong: the true label"))).to_be_visible()
    expect(page.get_by_test_id("stImageCaption").filter(has_text="PathMNIST (28×28), test image #")).to_be_visible()
    finish_page(page, "predict-sample-pathmnist")
    # The same image for a digits model: the page knows it is foreign, whatever the model's confidence.
    _choose_model(page, made_checkpoints.label(digits))
    expect(page.get_by_text("Not trustworthy: the image comes from PathMNIST (28×28)")).to_be_visible(timeout=30_000)
    expect(page.get_by_text("its classes are different")).to_be_visible()
    finish_page(page, "predict-sample-foreign")
    first_caption = page.get_by_test_id("stImageCaption").filter(has_text="test image #").inner_text()
    for _ in range(3):  # another press, another image (3 tries: two draws of 7,180 may coincide)
        page.get_by_role("button", name="Random PathMNIST (28×28)").click()
        wait_for_app(page)
        if page.get_by_test_id("stImageCaption").filter(has_text="test image #").inner_text() != first_caption:
            break
    else:
        pytest.fail("pressing the sample button again did not pick another test image")
    from cnn_core import data

    if SHIPPED_MNIST.is_file() and data.dataset_status("mnist").available:
        page.get_by_role("button", name="Random MNIST handwritten digits (28×28)").click()
        expect(page.get_by_text("MNIST handwritten digits (28×28), test image #")).to_be_visible(timeout=60_000)
        expect(_model_box(page)).to_have_value(re.compile("^mnist_fastnet"))
        verdict = page.get_by_text("Right: the true label").or_(page.get_by_text("Wrong: the true label"))
        expect(verdict).to_be_visible()
        truth = re.search(r"True label: (\S+)", page.get_by_text("True label:").inner_text()).group(1)
        assert ("Right:" in verdict.inner_text()) == (_prediction(page).inner_text() == truth)
        finish_page(page, "predict-sample-mnist")


def test_bad_uploads_and_checkpoints_get_clear_messages(page, made_checkpoints):
    mnist_card = DIGITS_CARD
    digits = made_checkpoints("fastnet", mnist_card, "test_predict_digits.safetensors")
    # A card that names FastNet but weights of a small ResNet: the card does not match the file.
    mismatch = made_checkpoints("resnet_small", mnist_card, "test_predict_mismatch.safetensors")
    expect = _expect()
    open_app_page(page, PAGE)
    _choose_source(page, "Upload an image")
    _choose_model(page, made_checkpoints.label(digits))

    _upload(page, "notes.png", b"These are my lecture notes, not a picture.\n")
    expect(page.get_by_text("'notes.png' is not an image this app can read")).to_be_visible(timeout=30_000)
    assert_no_exception(page)
    save_screenshot(page, "predict-text-as-png")

    _upload(page, "bomb.png", png_bomb(30_000))
    expect(page.get_by_text("decompression bomb")).to_be_visible(timeout=30_000)
    assert_no_exception(page)

    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), (255, 255, 255)).save(buffer, format="JPEG")
    _upload(page, "blank.jpg", buffer.getvalue(), "image/jpeg")
    expect(page.get_by_text("No digit found in 'blank.jpg'")).to_be_visible(timeout=30_000)
    said = page.get_by_text("No digit found in 'blank.jpg'").inner_text()
    assert said.count("switch off") == 1 and "predict --raw" not in said  # once, and in the page's words
    assert_no_exception(page)

    _choose_model(page, made_checkpoints.label(mismatch))
    expect(page.get_by_text("do not fit the 'fastnet' model its card names")).to_be_visible(timeout=30_000)
    finish_page(page, "predict-card-mismatch")


SHIPPED_EFFICIENTNET = models_dir() / "brain_mri_efficientnet_lite0.safetensors"


def _axis_title_clear_of_ticks(page, chart) -> dict:
    """Where the x-axis title of a plotly chart sits against its tick labels (it must be below them)."""
    return chart.evaluate("""c => { const title = c.querySelector('.xtitle').getBoundingClientRect();
        const ticks = [...c.querySelectorAll('.xtick text')].map(t => t.getBoundingClientRect());
        return {title_middle: (title.top + title.bottom) / 2, ticks_bottom: Math.max(...ticks.map(t => t.bottom))}; }""")


def test_drawing_on_a_phone_and_on_a_projector(browser, warm_app):
    if not SHIPPED_MNIST.is_file():
        pytest.skip(f"needs the shipped MNIST checkpoint {SHIPPED_MNIST}")
    expect = _expect()
    phone = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    try:
        tab = phone.new_page()
        tab.app_url = warm_app
        open_app_page(tab, PAGE)
        expect(tab.get_by_text("Tap or hover over the canvas for its toolbar")).to_be_visible()
        clear = tab.get_by_role("button", name="Clear").bounding_box()
        canvas = tab.locator("canvas.upper-canvas").bounding_box()
        # the canvas's toolbar pops up about 34 px above its top edge: that room is free, "Clear" is above it
        assert canvas["y"] - (clear["y"] + clear["height"]) >= 36, (clear, canvas)
        save_screenshot(tab, "predict-phone")
    finally:
        phone.close()

    projector = browser.new_context(viewport={"width": 1920, "height": 1080})
    try:
        tab = projector.new_page()
        tab.set_default_timeout(60_000)
        tab.app_url = warm_app
        open_app_page(tab, PAGE)
        _choose_model(tab, "mnist_fastnet")
        assert round(tab.locator("canvas.upper-canvas").bounding_box()["width"]) == 280
        tab.get_by_test_id("stSidebar").get_by_text("Classroom display").click()
        wait_for_app(tab)
        expect(tab.locator("canvas.upper-canvas")).to_have_attribute("width", re.compile(r"^476$"))
        _draw(tab, "7")
        expect(_prediction(tab)).to_be_visible(timeout=FIRST_RUN_TIMEOUT_MS)
        wait_for_app(tab)
        cam = tab.get_by_test_id("stImage").filter(has=tab.get_by_test_id("stImageCaption").filter(
            has_text="(predicted) at")).locator("img")
        assert cam.bounding_box()["width"] >= 360  # 224 px on a laptop, 381 px for the room
        chart = tab.locator(".st-key-predict_probabilities")
        box = _axis_title_clear_of_ticks(tab, chart)
        assert box["title_middle"] > box["ticks_bottom"], box  # the title's text lies below the tick labels
        # one rounding rule: the sentence and the top bar's label say the same number
        sentence = re.search(r"with probability (.+%)", tab.get_by_text("with probability").inner_text()).group(1)
        assert sentence in chart.locator(".bartext").evaluate_all("texts => texts.map(t => t.textContent)")
        assert_no_exception(tab)
        save_screenshot(tab, "predict-projector-classroom")
        # a reload starts a new session: the address keeps the setting (it switched itself off)
        assert "classroom=on" in tab.url
        tab.reload()
        wait_for_app(tab)
        _choose_model(tab, "mnist_fastnet")
        expect(tab.locator("canvas.upper-canvas")).to_have_attribute("width", re.compile(r"^476$"))
        expect(tab.get_by_test_id("stSidebar").locator("label", has_text="Classroom display")
               .locator("input[type=checkbox]")).to_be_checked()
    finally:
        projector.close()


@pytest.mark.realdata
def test_efficientnet_feature_maps_are_picked_from_a_select_box(page):
    if not SHIPPED_EFFICIENTNET.is_file():
        pytest.skip(f"needs the shipped checkpoint {SHIPPED_EFFICIENTNET}")
    pytest.importorskip("efficientnet_lite_pytorch")
    expect = _expect()
    open_app_page(page, PAGE)
    _choose_source(page, "Upload an image")
    _choose_model(page, "brain_mri_efficientnet_lite0")
    yy, xx = np.mgrid[0:200, 0:200]
    scan = (120 + 100 * np.exp(-((yy - 90) ** 2 + (xx - 110) ** 2) / 900)).astype(np.uint8)
    _upload(page, "scan.png", _png_bytes(scan))
    expect(_prediction(page)).to_be_visible(timeout=FIRST_RUN_TIMEOUT_MS * 2)
    wait_for_app(page)
    layer_box = page.get_by_test_id("stSelectbox").filter(has_text=re.compile(r"Layer \(\d+ conv layers"))
    expect(layer_box).to_be_visible(timeout=FIRST_RUN_TIMEOUT_MS)
    assert page.get_by_test_id("stRadio").filter(has_text="stages.").count() == 0  # no wall of radio buttons
    wait_for_app(page)
    layer_box.scroll_into_view_if_needed()
    options = page.get_by_role("option")
    for attempt in range(3):  # a click that lands while the box is redrawn does not open it
        layer_box.get_by_role("combobox").click()
        try:
            expect(options.first).to_be_visible(timeout=10_000)
            break
        except AssertionError:
            if attempt == 2:
                raise
            page.keyboard.press("Escape")
    assert options.count() > 8 and "stages.2 · expand conv" in options.all_inner_texts()[3]  # a scrolling list
    options.nth(3).click()
    wait_for_app(page)
    expect(page.get_by_test_id("stImageCaption").filter(has_text="stages.2._expand_conv:")).to_be_visible()
    assert_no_exception(page)
    save_screenshot(page, "predict-efficientnet-layers")


def _png_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()
