"""The Dataset Gallery in headless Chromium: real MNIST and PathMNIST (when CNN_DATA_DIR has them), a
missing data set, downloading one with a progress bar (from a loopback mirror), and zip uploads (a good
image folder and a path-traversal zip)."""

from __future__ import annotations

import io
import os
import re
import time
import zipfile
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from browser_fixtures import (
    DEFAULT_TIMEOUT_MS,
    assert_no_exception,
    rerun_after,
    save_screenshot,
    serve_app,
    wait_for_app,
)
from data_fixtures import md5_line, npz_bytes, serve_files, tiny_dermamnist_arrays, zip_with_raw_names

pytestmark = pytest.mark.browser

PAGE = "dataset-gallery"
LOAD_TIMEOUT_MS = 300_000  # a cold data set (PathMNIST: ~12 s of LZMA alone) on a busy 2-core machine
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]  # the official t10k labels


REAL_FILES = {  # where CI's CNN_DATA_DIR (shared/data, see its README) keeps them
    "mnist": ["MNIST/raw/train-images-idx3-ubyte.gz", "MNIST/raw/train-labels-idx1-ubyte.gz",
              "MNIST/raw/t10k-images-idx3-ubyte.gz", "MNIST/raw/t10k-labels-idx1-ubyte.gz"],
    "pathmnist": ["medmnist/pathmnist.npz"],
}


def _missing(name: str) -> str:
    """Why a real data set cannot be used here ("" when it can). Decided at collection time by looking
    at files only, so a skipped test starts no app server and nothing writes a cache folder."""
    from cnn_core import settings

    absent = [path for path in REAL_FILES[name] if not (settings.data_dir() / path).is_file()]
    return f"{name} is not under CNN_DATA_DIR ({settings.data_dir()}): {', '.join(absent)} missing" if absent else ""


def _open_gallery(page, dataset: str | None = None) -> None:
    """The gallery page, `?dataset=` choosing what it shows (the `page` fixture has warmed the server up)."""
    page.goto(f"{page.app_url}/{PAGE}" + (f"?dataset={dataset}" if dataset else ""))
    page.wait_for_selector('[data-testid="stAppViewContainer"]', state="attached", timeout=LOAD_TIMEOUT_MS)
    wait_for_app(page, LOAD_TIMEOUT_MS)
    assert_no_exception(page)
    page.get_by_role("heading", name="Dataset Gallery").wait_for(timeout=LOAD_TIMEOUT_MS)


def _wait_for_gallery(page) -> None:
    """Until the last section is there and every picture has loaded."""
    page.get_by_text("Every pixel averaged over all").wait_for(timeout=LOAD_TIMEOUT_MS)
    wait_for_app(page, LOAD_TIMEOUT_MS)
    # the pictures live in the thumbnail elements' shadow roots, which Playwright's locators (not
    # document.querySelectorAll) look into
    pictures = page.locator('[data-testid="gallery_samples"] img, [data-testid="gallery_class_means"] img')
    deadline = time.monotonic() + LOAD_TIMEOUT_MS / 1000
    while not pictures.evaluate_all("all => all.length > 0 && all.every(i => i.complete && i.naturalWidth > 0)"):
        assert time.monotonic() < deadline, "the gallery's pictures did not load"
        page.wait_for_timeout(100)
    assert_no_exception(page)


def _progress_while_loading(page) -> list[tuple[str, int]]:
    """(text, value 0-100) of the loading progress bar, read every 100 ms until the gallery's last section
    shows; empty when the data set loaded without one (from the cache, in under a second)."""
    seen = []
    deadline = time.monotonic() + LOAD_TIMEOUT_MS / 1000
    while time.monotonic() < deadline and not page.get_by_text("Every pixel averaged over all").count():
        bar = page.evaluate("""() => { const bar = document.querySelector('[data-testid="stProgress"]');
            const value = bar && bar.querySelector('[role="progressbar"]');
            return bar && value ? [bar.innerText.trim(), Number(value.getAttribute('aria-valuenow'))] : null; }""")
        if bar and (not seen or tuple(bar) != seen[-1]):
            seen.append(tuple(bar))
            if len(seen) == 3:
                save_screenshot(page, "gallery-loading-progress", whole_page=False)
        page.wait_for_timeout(100)
    return seen


def _counts_table(page) -> list[list[str]]:
    rows = page.locator('[data-testid="stTable"] tbody tr')
    return [[cell.strip() for cell in row.split("\t")] for row in rows.all_inner_texts()]


def _sample_sources(page) -> list[str]:
    """The picture addresses of the sample grid (Streamlit names media files by their content)."""
    return page.locator('[data-testid="gallery_samples"] img').evaluate_all(
        "images => images.map(i => i.getAttribute('src'))")


def _enlarge(page, row: int, column: int) -> None:
    """Click sample `column` of class row `row`: the picture itself is the button that enlarges it."""
    picture = page.get_by_test_id("gallery_samples").locator(".row").nth(row).get_by_role("button").nth(column)
    assert "image #" in picture.get_attribute("alt")
    picture.click()


def _pixel_grid(page) -> np.ndarray:
    rows = page.locator('[role="dialog"] [data-testid="gallery-pixel-grid"] tr').all()
    values = []
    for row in rows:
        cells = row.locator("td").all_inner_texts()
        if cells:
            values.append([int(cell) for cell in cells])
    return np.array(values)


def _check_overview(page, info) -> None:
    page.get_by_role("heading", name=info.title).wait_for()
    table = _counts_table(page)
    assert [row[1] for row in table] == list(info.class_names)
    header = page.locator('[data-testid="stTable"] thead th').all_inner_texts()
    for split in info.splits:
        column = [row[header.index(split)] for row in table]
        assert sum(int(value) for value in column) == info.n_samples[split], split


@pytest.mark.realdata
@pytest.mark.skipif(bool(_missing("mnist")), reason=_missing("mnist") or "present")
def test_mnist_gallery_counts_reshuffle_and_pixel_grid(page):
    from cnn_core import data

    info = data.get_dataset_info("mnist")
    _open_gallery(page, "mnist")
    _wait_for_gallery(page)
    _check_overview(page, info)
    header = page.locator('[data-testid="stTable"] thead th').all_inner_texts()
    assert [int(row[header.index("test")]) for row in _counts_table(page)] == MNIST_TEST_COUNTS
    assert page.get_by_text("0.1307").count() and page.get_by_text("0.3081").count()  # MNIST's mean and std
    save_screenshot(page, "gallery-mnist")

    # Reshuffle: a new seed, other images; the old seed brings the same images back.
    first = _sample_sources(page)
    assert len(first) == 10 * 8
    seed_box = page.locator(".st-key-gallery_seed input")
    assert seed_box.input_value() == "0"
    page.locator(".st-key-gallery_reshuffle button:visible").click()
    page.wait_for_function("() => document.querySelector('.st-key-gallery_seed input').value !== '0'")
    _wait_for_gallery(page)
    reshuffled = _sample_sources(page)
    assert len(reshuffled) == 80 and reshuffled != first
    seed_box.fill("0")
    seed_box.press("Enter")
    deadline = time.monotonic() + LOAD_TIMEOUT_MS / 1000
    while _sample_sources(page) != first:
        assert time.monotonic() < deadline, "seed 0 did not bring the first pictures back"
        page.wait_for_timeout(100)

    # Select the first "3": the dialog enlarges it and prints its 28×28 pixel values with the label.
    _enlarge(page, 3, 0)
    dialog = page.locator('[role="dialog"]')
    dialog.locator('[data-testid="gallery-pixel-grid"]').wait_for(timeout=LOAD_TIMEOUT_MS)
    text = dialog.inner_text()
    assert re.search(r"Label: 3(?!:)", text), text
    index = int(re.search(r"train image #(\d+)", text).group(1))
    grid = _pixel_grid(page)
    assert grid.shape == (28, 28)
    save_screenshot(page, "gallery-mnist-pixel-grid")

    expected = data.load_split("mnist", "train").images[index, 0].numpy()
    np.testing.assert_array_equal(grid, expected)
    assert_no_exception(page)


@pytest.mark.realdata
@pytest.mark.skipif(bool(_missing("pathmnist")), reason=_missing("pathmnist") or "present")
def test_pathmnist_gallery_and_colour_pixel_grid(page):
    from cnn_core import data

    info = data.get_dataset_info("pathmnist")
    started = time.monotonic()
    page.goto(f"{page.app_url}/{PAGE}?dataset=pathmnist")
    seen = _progress_while_loading(page)
    _wait_for_gallery(page)
    print(f"first PathMNIST view of this server: {time.monotonic() - started:.1f} s, progress seen: {seen[-3:]}")
    if seen:  # an empty cache: the npz is decompressed, with a bar that says the step and how far it got
        assert all(re.match(r"Step [12] of 2 · ", text) for text, _ in seen), seen
        values = [value for text, value in seen if text.startswith("Step 1")]
        assert values == sorted(values) and any(0 < value < 100 for value in values), seen
    _check_overview(page, info)
    for name in ("adipose", "lymphocytes", "colorectal adenocarcinoma epithelium"):
        assert page.get_by_text(name).count() >= 1
    for label in ("Mean (red)", "Std (green)", "Mean (blue)"):
        assert page.get_by_text(label, exact=True).count() == 1
    assert len(_sample_sources(page)) == 9 * 8
    save_screenshot(page, "gallery-pathmnist")

    _enlarge(page, 0, 1)
    dialog = page.locator('[role="dialog"]')
    dialog.locator('[data-testid="gallery-pixel-grid"]').wait_for(timeout=LOAD_TIMEOUT_MS)
    assert "Label: 0: adipose" in dialog.inner_text()
    red = _pixel_grid(page)
    assert red.shape == (28, 28) and red.min() >= 0 and red.max() <= 255
    dialog.get_by_text("blue", exact=True).click()
    dialog.get_by_text("Pixel values (blue channel)").wait_for(timeout=LOAD_TIMEOUT_MS)
    blue = _pixel_grid(page)
    assert blue.shape == (28, 28) and not np.array_equal(red, blue)
    save_screenshot(page, "gallery-pathmnist-pixel-grid")
    assert_no_exception(page)


def test_missing_dataset_says_where_it_looked_and_how_to_get_it(page):
    from cnn_core import data

    status = data.dataset_status("chestmnist_224")
    if status.available:
        pytest.skip("ChestMNIST 224 is present here; this test needs a missing data set.")
    _open_gallery(page, "chestmnist_224")
    page.get_by_text("is not on this computer yet").wait_for(timeout=LOAD_TIMEOUT_MS)
    wait_for_app(page, LOAD_TIMEOUT_MS)
    body = page.locator('[data-testid="stMain"]').inner_text()
    assert "chestmnist_224.npz" in body
    assert str(status.searched[0]) in body
    assert "Download size" in body
    if data.download_server_reachable("chestmnist_224"):
        assert page.locator(".st-key-gallery_download_chestmnist_224 button:visible").count() == 1
    else:
        assert "cannot reach zenodo.org" in body and "Put chestmnist_224.npz in" in body
        assert page.locator(".st-key-gallery_download_chestmnist_224").count() == 0
    save_screenshot(page, "gallery-missing")
    assert_no_exception(page)


def _png(value: int, shape: str) -> bytes:
    pixels = np.full((20, 20), 30, dtype=np.uint8)
    if shape == "square":
        pixels[5:15, 5:15] = value
    else:
        yy, xx = np.mgrid[0:20, 0:20]
        pixels[np.hypot(yy - 9.5, xx - 9.5) < 6] = value
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def _zip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, payload in members.items():
            archive.writestr(name, payload)
    return buffer.getvalue()


def _upload(page, file_name: str, payload: bytes) -> None:
    page.get_by_text("Add your own image folder (upload a zip)").click()
    page.locator('.st-key-gallery_zip input[type="file"]').set_input_files(
        {"name": file_name, "mimeType": "application/zip", "buffer": payload})


def test_upload_zip_of_class_folders_becomes_a_dataset(page):
    members = {f"shapes/{shape}s/{i}.png": _png(150 + 10 * i, shape) for shape in ("square", "circle")
               for i in range(10)}
    members["shapes/readme.txt"] = b"two classes of shapes"
    _open_gallery(page, "retinamnist_224")  # a small entry: quick to show whether present or not
    _upload(page, "classroom_shapes.zip", _zip(members))
    page.get_by_text("is now the data set").wait_for(timeout=LOAD_TIMEOUT_MS)
    message = page.locator('[data-testid="stAlert"]').first.inner_text()
    assert "20 images in 2 classes" in message and "1 non-image file" in message
    page.get_by_role("heading", name="classroom_shapes (your upload)").wait_for(timeout=LOAD_TIMEOUT_MS)
    _wait_for_gallery(page)
    table = _counts_table(page)
    assert [row[1] for row in table] == ["circles", "squares"]
    assert [row[-1] for row in table] == ["10", "10"]
    page.get_by_text("Layout: class folders; split by this app per class (stratified) 80%/10%/10%.").wait_for()
    save_screenshot(page, "gallery-upload")

    # A folder's images are 128x128: too large to print every value, so a crop's pixel grid is printed,
    # the crop outlined on the image, its row and column numbers the image's own.
    _enlarge(page, 0, 0)
    dialog = page.locator('[role="dialog"]')
    dialog.locator('[data-testid="gallery-pixel-grid"]').wait_for(timeout=LOAD_TIMEOUT_MS)
    assert "Pick a square of it" in dialog.inner_text()
    grid = dialog.locator('[data-testid="gallery-pixel-grid"]')
    assert "16×16 crop outlined on the image (rows 56–71, columns 56–71)" in grid.inner_text()
    assert _pixel_grid(page).shape == (16, 16)
    assert grid.locator("tr").first.locator("th").all_inner_texts()[1:3] == ["56", "57"]
    slider = dialog.get_by_test_id("stSlider").filter(has_text="Crop's top row").get_by_role("slider")
    slider.press("Home")
    dialog.get_by_text("rows 0–15, columns 56–71").wait_for(timeout=LOAD_TIMEOUT_MS)
    dialog.get_by_text("24×24", exact=True).click()
    dialog.get_by_text("24×24 crop outlined on the image (rows 52–75").wait_for(timeout=LOAD_TIMEOUT_MS)
    wait_for_app(page)
    assert _pixel_grid(page).shape == (24, 24)
    sizes = grid.evaluate("g => ({shown: g.clientWidth, needed: g.scrollWidth})")
    assert sizes["needed"] <= sizes["shown"], sizes  # every column in view
    save_screenshot(page, "gallery-upload-crop-pixel-grid")
    assert_no_exception(page)

    # The student removes the upload: the server keeps no copy, and the picker no longer offers it.
    page.keyboard.press("Escape")
    page.get_by_text(re.compile(r"Your uploads take \d+ MB of the 1,024 MB each person may use")).wait_for()
    page.get_by_role("button", name="Remove this upload").click()
    page.get_by_role("button", name="Remove", exact=True).click()
    page.get_by_text("Removed your upload classroom_shapes.").wait_for(timeout=LOAD_TIMEOUT_MS)
    wait_for_app(page)
    page.get_by_text("was the data set classroom_shapes, which you removed").wait_for()  # not "is now"
    page.get_by_role("combobox", name="Data set").click()
    assert page.get_by_role("option").filter(has_text="classroom_shapes").count() == 0
    page.keyboard.press("Escape")
    save_screenshot(page, "gallery-upload-removed")
    assert_no_exception(page)


def test_a_zip_named_like_dogs_vs_cats_gets_its_classes_from_the_file_names(page):
    # Kaggle's "Dogs vs. Cats" layout: train/cat.0.jpg, train/dog.0.jpg, an unlabelled test1/. It became two
    # classes, "train" and "test1", each mixing both kinds.
    members = {f"shapes-kaggle/train/{shape}.{i}.png": _png(150 + 10 * i, shape) for shape in ("square", "circle")
               for i in range(10)}
    members |= {f"shapes-kaggle/test1/{i + 1}.png": _png(200, "square") for i in range(4)}
    _open_gallery(page, "retinamnist_224")
    _upload(page, "named_shapes.zip", _zip(members))
    page.get_by_text("is now the data set").wait_for(timeout=LOAD_TIMEOUT_MS)
    message = page.locator('[data-testid="stAlert"]').first.inner_text()
    assert "20 images in 2 classes" in message and "4 image(s) in test1/ with no class in their names" in message
    assert "the classes come from the file names (square.0.png: square, ...)" in message
    page.get_by_role("heading", name="named_shapes (your upload)").wait_for(timeout=LOAD_TIMEOUT_MS)
    _wait_for_gallery(page)
    assert [row[1] for row in _counts_table(page)] == ["circle", "square"]
    page.get_by_text(re.compile(r"Layout: classes from the file names \(square\.0\.png: square, \.\.\.\); split folders "
                                r"found \(train\); val and test carved from train")).wait_for()
    page.get_by_text("In the Training Studio it is trained at 32×32, not 128×128", exact=False).wait_for()
    save_screenshot(page, "gallery-upload-named-files")
    assert_no_exception(page)
    page.get_by_role("link", name="Convolution Lab").click()  # a visit to another page: the Gallery keeps the upload
    page.get_by_role("heading", name="Convolution Lab").first.wait_for()
    wait_for_app(page)
    page.get_by_role("link", name="Dataset Gallery").click()
    page.get_by_role("heading", name="named_shapes (your upload)").wait_for(timeout=LOAD_TIMEOUT_MS)
    wait_for_app(page)
    page.get_by_role("link", name="Training Studio").click()  # the studio starts at the upload, not at MNIST
    page.wait_for_function("() => document.querySelector('input[aria-label=\"Data set\"]')?.value.includes('named_shapes')",
                           timeout=LOAD_TIMEOUT_MS)
    page.goto(page.app_url + "/")  # Home lists it as the student's own upload (page.url may still be the Gallery's)
    page.wait_for_function("() => document.body.innerHTML.includes('named_shapes (your upload)')",
                           timeout=LOAD_TIMEOUT_MS)  # in the table's accessible copy
    assert "your upload" in page.content() and "/uploads/" not in page.content()


def test_file_names_of_a_windows_zip_can_be_read_in_another_code_page(page):
    # A Greek Windows zips γάτα/ and σκύλος/ in CP737 and says nothing of it; names this short read as Cyrillic
    # words just as well, so the guess is CP866. The student sees garbled classes and picks the language.
    members = {f"{name}/scan{i}.png".encode("cp737"): _png(150 + 10 * i, shape)
               for name, shape in (("γάτα", "circle"), ("σκύλος", "square")) for i in range(6)}
    _open_gallery(page, "retinamnist_224")
    _upload(page, "greek_pets.zip", zip_with_raw_names(members))
    page.get_by_text("is now the data set").wait_for(timeout=LOAD_TIMEOUT_MS)
    assert "written in Cyrillic (CP866), not UTF-8" in page.locator('[data-testid="stAlert"]').first.inner_text()
    wait_for_app(page)
    page.get_by_role("combobox", name="File names read as").click()
    page.get_by_role("option").filter(has_text="Greek (CP737)").click()
    page.get_by_text("written in Greek (CP737), not UTF-8").wait_for(timeout=LOAD_TIMEOUT_MS)
    page.get_by_role("heading", name="greek_pets (your upload)").wait_for(timeout=LOAD_TIMEOUT_MS)
    _wait_for_gallery(page)
    assert [row[1] for row in _counts_table(page)] == ["γάτα", "σκύλος"]
    save_screenshot(page, "gallery-upload-code-page")
    assert_no_exception(page)


def test_upload_zip_with_path_traversal_is_refused(page):
    _open_gallery(page, "retinamnist_224")  # a small entry: quick to show whether present or not
    evil = _zip({"a/1.png": _png(200, "square"), "b/1.png": _png(200, "circle"), "../../escape.png": b"x"})
    _upload(page, "evil.zip", evil)
    refusal = page.locator('[data-testid="stAlert"]').filter(has_text="evil.zip was refused")
    refusal.wait_for(timeout=LOAD_TIMEOUT_MS)
    assert "path traversal" in refusal.inner_text()
    assert page.get_by_role("heading", name="evil (your upload)").count() == 0
    save_screenshot(page, "gallery-upload-refused")
    assert_no_exception(page)


def _type_into_picker(page, text: str):
    """Open the data set picker and type `text` (the list is filtered as one types); its options."""
    page.get_by_role("combobox", name="Data set").click()
    page.keyboard.type(text)
    page.wait_for_timeout(300)
    return page.locator('[role="option"]')


def _picker_matches(page, text: str) -> list[str]:
    """The names of the picker's options that match `text`."""
    options = [option for option in _type_into_picker(page, text).all_inner_texts() if option != "No results"]
    page.keyboard.press("Escape")
    return options


def _open_studio(page) -> None:
    page.goto(f"{page.app_url}/training-studio")
    page.get_by_role("heading", name="Set up a run").wait_for(timeout=LOAD_TIMEOUT_MS)
    wait_for_app(page, LOAD_TIMEOUT_MS)
    assert_no_exception(page)


def _pick(page, text: str) -> None:
    _type_into_picker(page, text).first.click()


def test_an_upload_is_offered_in_its_own_browser_only(page, browser, warm_app):
    members = {f"{shape}s/{i}.png": _png(150 + 10 * i, shape) for shape in ("square", "circle") for i in range(4)}
    _open_gallery(page, "retinamnist_224")
    _upload(page, "private_shapes.zip", _zip(members))
    page.get_by_role("heading", name="private_shapes (your upload)").wait_for(timeout=LOAD_TIMEOUT_MS)
    assert any("private_shapes" in option for option in _picker_matches(page, "private"))

    same_browser = page.context.new_page()  # another tab of this browser: shares its cookie, so its uploads
    same_browser.app_url = warm_app
    try:
        _open_gallery(same_browser, "private_shapes")
        same_browser.get_by_role("heading", name="private_shapes (your upload)").wait_for(timeout=LOAD_TIMEOUT_MS)
        assert_no_exception(same_browser)
        _open_studio(same_browser)
        assert any("private_shapes" in option for option in _picker_matches(same_browser, "private"))
    finally:
        same_browser.close()

    other = browser.new_context(viewport={"width": 1400, "height": 1000})  # another student's browser
    try:
        stranger = other.new_page()
        stranger.set_default_timeout(DEFAULT_TIMEOUT_MS)
        stranger.app_url = warm_app
        stranger.goto(warm_app)  # its first visit sets its own cookie
        wait_for_app(stranger, timeout_ms=90_000)
        _open_gallery(stranger, "private_shapes")
        stranger.get_by_role("heading", name="MNIST").wait_for(timeout=LOAD_TIMEOUT_MS)  # the first entry instead
        assert stranger.get_by_role("heading", name="private_shapes (your upload)").count() == 0
        notice = stranger.locator('[data-testid="stAlert"]').filter(has_text="asked for a data set called")
        assert "private_shapes" in notice.inner_text()
        assert _picker_matches(stranger, "private") == [] and _picker_matches(stranger, "retina") != []
        save_screenshot(stranger, "gallery-upload-other-browser")
        rerun_after(stranger, lambda: _pick(stranger, "Retina"))
        assert notice.count() == 0  # gone once a data set is chosen
        assert_no_exception(stranger)
        _open_studio(stranger)
        if stranger.get_by_role("combobox", name="Data set").count():  # CNN_DATA_DIR has data sets to train
            assert _picker_matches(stranger, "private") == []
        else:  # none here, and the other browser's upload is not one of them
            stranger.get_by_text("No trainable data set was found").wait_for()
    finally:
        other.close()


# ------------------------------------------------------------------------------------------ download
MIRROR_DERMA_PER_CLASS = {"train": 60, "val": 10, "test": 10}  # 560 images, an npz of about 1.2 MB


@pytest.fixture(scope="module")
def mirror_app(tmp_path_factory, browser):
    """A second app server whose CNN_DATA_DIR is empty and whose CNN_DOWNLOAD_MIRROR is a loopback server
    holding dermamnist.npz (with its .md5), sent slowly (about 3 s) so the progress bar can be watched.
    Its own server, because the session's app_server was started without a mirror."""
    payload = npz_bytes(tiny_dermamnist_arrays(MIRROR_DERMA_PER_CLASS))
    files = {"dermamnist.npz": payload, "dermamnist.npz.md5": md5_line(payload, "dermamnist.npz")}
    base = tmp_path_factory.mktemp("mirror-app")
    data_dir, cache_dir = base / "data", base / "cache"
    data_dir.mkdir()
    with serve_files(files, chunk_bytes=32 * 1024, chunk_delay_s=0.08) as mirror:
        env = dict(os.environ, CNN_DATA_DIR=str(data_dir), CNN_CACHE_DIR=str(cache_dir),
                   CNN_RUNS_DIR=str(base / "runs"), CNN_DOWNLOAD_MIRROR=mirror.url)
        with serve_app(env, "streamlit-mirror-server.log") as url:
            yield SimpleNamespace(url=url, mirror=mirror, payload=payload, data_dir=data_dir, cache_dir=cache_dir)


def _progress_values(page, until_gone_ms: int) -> list[int]:
    """Read the progress bar's value (0-100) every 50 ms until it has disappeared."""
    values = []
    deadline = time.monotonic() + until_gone_ms / 1000
    while time.monotonic() < deadline:
        value = page.evaluate("""() => { const bar = document.querySelector('[data-testid="stProgress"] [role="progressbar"]');
                                        return bar ? Number(bar.getAttribute('aria-valuenow')) : null; }""")
        if value is None:
            return values
        values.append(int(value))
        page.wait_for_timeout(50)
    raise AssertionError(f"the progress bar was still there after {until_gone_ms / 1000:.0f} s: {values[-5:]}")


def test_download_button_shows_progress_then_the_gallery(browser_context, mirror_app):
    from cnn_core import data

    tab = browser_context.new_page()
    tab.set_default_timeout(DEFAULT_TIMEOUT_MS)
    tab.app_url = mirror_app.url
    try:
        tab.goto(mirror_app.url)  # a first visit, as `warm_app` does for the session's server
        wait_for_app(tab, timeout_ms=90_000)
        _open_gallery(tab, "dermamnist")
        tab.get_by_text("is not on this computer yet").wait_for(timeout=LOAD_TIMEOUT_MS)
        assert "(not downloaded)" in tab.locator(".st-key-gallery_base input").input_value()
        button = tab.locator(".st-key-gallery_download_dermamnist button:visible")
        assert "Download DermaMNIST" in button.inner_text()

        button.click()
        partial = tab.get_by_text(re.compile(r"Downloading dermamnist\.npz: \d+\.\d of 1\.\d MB \(([1-9]|[1-9]\d)%\)"))
        partial.wait_for(timeout=LOAD_TIMEOUT_MS)  # part-way: neither 0 % nor 100 %
        assert tab.locator('[data-testid="stProgress"]').count() == 1
        save_screenshot(tab, "gallery-download-progress")
        values = _progress_values(tab, until_gone_ms=LOAD_TIMEOUT_MS)
        assert values == sorted(values) and any(0 < value < 100 for value in values), values

        # the rerun shows the gallery of the now-present data set, read from the cache
        tab.get_by_role("heading", name="DermaMNIST (28×28)").wait_for(timeout=LOAD_TIMEOUT_MS)
        _wait_for_gallery(tab)
        table = _counts_table(tab)
        assert [row[1] for row in table] == list(data.get_dataset_info("dermamnist").class_names)
        n_per_class = sum(MIRROR_DERMA_PER_CLASS.values())
        assert [row[-1] for row in table] == [str(n_per_class)] * 7
        assert "(not downloaded)" not in tab.locator(".st-key-gallery_base input").input_value()
        assert str(mirror_app.cache_dir / "medmnist") in tab.locator('[data-testid="stMain"]').inner_text()
        save_screenshot(tab, "gallery-downloaded")
        assert_no_exception(tab)
    finally:
        tab.close()
    assert (mirror_app.cache_dir / "medmnist" / "dermamnist.npz").read_bytes() == mirror_app.payload
    assert not any(mirror_app.data_dir.iterdir())  # nothing written into CNN_DATA_DIR
    assert not list(mirror_app.cache_dir.rglob("*.part"))


def test_download_failure_is_an_error_message(browser_context, mirror_app):
    """BloodMNIST is not on the mirror: the button's download ends in a red message, not a traceback."""
    tab = browser_context.new_page()
    tab.set_default_timeout(DEFAULT_TIMEOUT_MS)
    tab.app_url = mirror_app.url
    try:
        tab.goto(mirror_app.url)
        wait_for_app(tab, timeout_ms=90_000)
        _open_gallery(tab, "bloodmnist")
        tab.locator(".st-key-gallery_download_bloodmnist button:visible").click()
        error = tab.locator('[data-testid="stAlert"]').filter(has_text="Downloading bloodmnist.npz failed")
        error.wait_for(timeout=LOAD_TIMEOUT_MS)
        assert "answered 404" in error.inner_text() and "bloodmnist.npz" in error.inner_text()
        assert tab.locator('[data-testid="stProgress"]').count() == 0
        save_screenshot(tab, "gallery-download-failed")
        assert_no_exception(tab)
    finally:
        tab.close()
    assert not (mirror_app.cache_dir / "medmnist" / "bloodmnist.npz").exists()
    assert not list(mirror_app.cache_dir.rglob("*.part"))
