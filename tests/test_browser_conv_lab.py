"""The home page and the Convolution Lab in real headless Chromium (see browser_fixtures.py)."""

from __future__ import annotations

import io
import re

import numpy as np
import pytest
from image_samples import png_bomb
from PIL import Image

from browser_fixtures import (ARTIFACTS_DIR, assert_no_exception, finish_page, open_app_page, rerun_after, save_screenshot,
                              wait_for_app)
from cnn_core import conv

pytestmark = pytest.mark.browser

LAB = "convolution-lab"


def _expect():
    from playwright.sync_api import expect

    return expect


def _see(page, text, *, timeout: float | None = None) -> None:
    """Wait until `text` (a string or regex) is visible; the first match, since while Streamlit reruns
    the previous run's elements can linger beside the new ones."""
    kwargs = {"timeout": timeout} if timeout else {}
    _expect()(page.get_by_text(text).first).to_be_visible(**kwargs)


def _expect_metric(page, label: str, value: str) -> None:
    """Wait until the metric labelled `label` shows exactly `value`."""
    exact_value = page.get_by_test_id("stMetricValue").filter(has_text=re.compile(rf"^\s*{re.escape(value)}\s*$"))
    metric = page.get_by_test_id("stMetric").filter(has_text=label).filter(has=exact_value)
    _expect()(metric.first).to_be_visible()


def _slider(page, label: str):
    return page.get_by_test_id("stSlider").filter(has_text=label).get_by_role("slider")


def _choose(page, label: str, option: str) -> None:
    """Pick `option` in the select box labelled `label` and wait for the rerun. Under load the list can close
    before the click lands on the option (seen in CI: no rerun for 60 s), so a pick the box does not show after
    20 s is made again."""
    box = page.get_by_test_id("stSelectbox").filter(has_text=label)
    for attempt in range(3):
        box.click()
        try:
            rerun_after(page, lambda: page.get_by_role("option", name=option, exact=True).click(), timeout_ms=20_000)
            return
        except AssertionError:
            if box.get_by_role("combobox").input_value() == option:  # it took; its rerun was only slow
                wait_for_app(page)
                return
            page.keyboard.press("Escape")  # close a list left open before trying again
    raise AssertionError(f"Could not pick {option!r} in {label!r} in three tries")


def _set_number(page, label: str, value: int) -> None:
    field = page.get_by_label(label, exact=True)
    field.fill(str(value))
    rerun_after(page, lambda: field.press("Enter"))


def _press(page, slider_label: str, key: str) -> None:
    rerun_after(page, lambda: _slider(page, slider_label).press(key))


def _read_map(page, title: str, row: int, column: int, size: tuple[int, int], *, tap: bool = False) -> str:
    """Point at (tap on) cell (row, column) of the value map titled `title`, `size` = (height, width) cells,
    and return its readout. Retried: while the page reruns, the map can be redrawn under the pointer."""
    import time

    wait_for_app(page)
    value_map = page.get_by_test_id("valueMap").filter(has_text=title).first
    picture, readout = value_map.locator("img"), value_map.locator(".readout")
    deadline = time.monotonic() + 30
    while True:
        picture.scroll_into_view_if_needed()
        box = picture.bounding_box()
        where = {"x": box["width"] * (column + 0.5) / size[1], "y": box["height"] * (row + 0.5) / size[0]}
        picture.tap(position=where) if tap else picture.hover(position=where)
        page.wait_for_timeout(200)
        text = readout.inner_text()
        if text.startswith(f"row {row}, col {column}:") or time.monotonic() > deadline:
            return text


def _click(page, locator) -> None:
    rerun_after(page, locator.click, retries=2)


def _click_to(page, locator, shows: re.Pattern) -> None:
    """Click until the page shows `shows`: a click that lands while the button is being redrawn is lost
    (no rerun), so it is repeated, but only when the page has not moved on."""
    for attempt in range(3):
        try:
            rerun_after(page, locator.click, timeout_ms=20_000)
            break
        except AssertionError:
            if page.get_by_text(shows).count():
                break  # it did move on; the rerun was just not seen
            if attempt == 2:
                raise
    _see(page, shows)


def _png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def _upload(page, name: str, data: bytes, mime: str = "image/png") -> None:
    rerun_after(page, lambda: page.get_by_test_id("stFileUploaderDropzoneInput").set_input_files(
        files=[{"name": name, "mimeType": mime, "buffer": data}]))


def test_home_page_lists_pages_device_and_data(page):
    expect = _expect()
    open_app_page(page)
    expect(page.get_by_role("heading", name="CNN Explorer")).to_be_visible()
    expect(page.get_by_text("Training and prediction run on")).to_contain_text(re.compile(r"CPU|GPU|MPS"))
    expect(page.get_by_role("heading", name="Data sets")).to_be_visible()
    expect(page.get_by_role("heading", name="Trained models")).to_be_visible()
    sidebar = page.get_by_test_id("stSidebarNav")
    expect(sidebar.get_by_role("link", name="Home")).to_be_visible()
    expect(sidebar.get_by_role("link", name="Convolution Lab")).to_be_visible()
    finish_page(page, "home")
    page.get_by_test_id("stPageLink").filter(has_text="Open Convolution Lab").click()
    page.wait_for_url(re.compile(rf"/{LAB}$"))
    expect(page.get_by_role("heading", name="Convolution Lab", level=1)).to_be_visible()
    finish_page(page, "home-to-lab")


def test_every_page_in_the_sidebar_opens_without_an_exception(page):
    open_app_page(page)
    links = page.get_by_test_id("stSidebarNav").get_by_role("link")
    _expect()(links.first).to_be_visible()
    # a link's text is "<icon name>\n\n<title>": the title is its last line
    pages = [(link.inner_text().strip().splitlines()[-1].strip(), link.get_attribute("href"))
             for link in links.all()]
    assert len(pages) >= 2 and pages[0][0] == "Home"
    for title, href in pages[1:] + pages[:1]:  # by the sidebar, as a student would, ending at home
        link = page.get_by_test_id("stSidebarNav").get_by_role("link", name=title, exact=True)
        rerun_after(page, link.click, retries=2)  # a lost click (seen once in a full run) is clicked again
        assert page.url.split("?")[0].rstrip("/") == href.rstrip("/")  # pages may add query parameters
        heading = "CNN Explorer" if title == "Home" else title
        _expect()(page.get_by_role("heading", name=re.compile(re.escape(heading)), level=1)).to_be_visible()
        assert_no_exception(page)
        save_screenshot(page, f"page-{title.lower().replace(' ', '-')}")


def test_output_size_follows_stride_padding_and_dilation(page):
    expect = _expect()
    open_app_page(page, LAB)
    # The tiny 7x7 digit with a 3x3 Sobel kernel, stride 1, no padding: (7 - 3)/1 + 1 = 5.
    _expect_metric(page, "Input (H × W)", "7 × 7")
    _expect_metric(page, "Formula says", "5 × 5")
    _expect_metric(page, "conv2d returns", "5 × 5")

    _set_number(page, "Padding p", 1)                  # (7 + 2 - 2 - 1)/1 + 1 = 7
    _expect_metric(page, "Padded input", "9 × 9")
    _expect_metric(page, "Formula says", "7 × 7")
    _expect_metric(page, "conv2d returns", "7 × 7")

    _press(page, "Stride s", "ArrowRight")      # stride 2: floor(6/2) + 1 = 4
    _expect_metric(page, "Formula says", "4 × 4")
    _expect_metric(page, "conv2d returns", "4 × 4")
    _see(page, "the same as the formula")

    _press(page, "Dilation d", "ArrowRight")    # dilation 2, span 5: floor((9 - 5)/2) + 1 = 3
    _expect_metric(page, "Formula says", "3 × 3")
    _click(page, page.get_by_role("button", name="same", exact=True))   # same padding for span 5 is 2
    expect(page.get_by_label("Padding p", exact=True)).to_have_value("2")
    _expect_metric(page, "Formula says", "4 × 4")   # floor((11 - 5)/2) + 1
    _click(page, page.get_by_text("reflect", exact=True))
    _see(page, "padding (reflect)")
    _click(page, page.get_by_role("button", name="valid", exact=True))
    _expect_metric(page, "Padded input", "7 × 7")
    _expect_metric(page, "Formula says", "2 × 2")   # floor((7 - 5)/2) + 1
    # Padding 10: a 27×27 padded input. Every column stays inside the page's column, numbers over them too
    # (the column numbers were wider than their cells, and columns 20-26 hid behind a scrollbar).
    _click(page, page.get_by_text("zeros", exact=True))  # reflect cannot pad more than the image's side - 1
    _set_number(page, "Padding p", 10)
    _expect_metric(page, "Padded input", "27 × 27")
    grid = page.get_by_test_id("conv-padded-input")
    sizes = grid.evaluate("g => ({shown: g.clientWidth, needed: g.scrollWidth, right: "
                          "g.querySelector('tr th:last-child').getBoundingClientRect().right, "
                          "edge: g.getBoundingClientRect().right})")
    assert sizes["needed"] <= sizes["shown"] and sizes["right"] <= sizes["edge"] + 1, sizes
    finish_page(page, "lab-stride-padding")


def test_step_through_steps_and_plays(page):
    expect = _expect()
    open_app_page(page, LAB)
    expected = conv.convolve(conv.DIGIT_GRID_7X7, conv.preset_kernel("sobel_x")).output
    _see(page, "Output cell (0, 0) — step 1 of 25")
    _click(page, page.get_by_role("button", name="Step", exact=True))
    _see(page, "Output cell (0, 1) — step 2 of 25")
    value = conv.format_number(expected[0, 1])
    _see(page, f"Output (0, 1) = {value}, exactly the sum")
    expect(page.get_by_test_id("conv-products").first).to_be_visible()
    for step in range(3, 8):  # one at a time: a click during a rerun would be merged into it
        _click_to(page, page.get_by_role("button", name="Step", exact=True), re.compile(rf"— step {step} of 25"))
    _see(page, "Output cell (1, 1) — step 7 of 25")
    _see(page, f"Output (1, 1) = {conv.format_number(expected[1, 1])}, exactly")

    play = page.get_by_test_id("stMain").get_by_test_id("stCheckbox").filter(has_text="Play")
    play.click()                                                   # the timer keeps it running
    _see(page, re.compile(r"— step (9|1[0-4]) of 25"), timeout=30_000)   # it moved on by itself
    _click(page, play)                                                   # pause
    expect(play.locator("input")).not_to_be_checked()
    page.wait_for_timeout(1_500)  # a step already in flight when Pause was clicked may still land
    wait_for_app(page)
    stopped_at = page.get_by_text(re.compile(r"— step \d+ of 25")).first.inner_text()
    page.wait_for_timeout(2_500)  # three timer periods: no more steps once paused
    assert page.get_by_text(re.compile(r"— step \d+ of 25")).first.inner_text() == stopped_at
    finish_page(page, "lab-step-through")


def test_preset_switch_changes_the_kernel_and_the_sums(page):
    open_app_page(page, LAB)
    _choose(page, "Kernel preset", "Box blur")
    _see(page, "Every weight is 1/k²")
    # Window [[0,0,0],[0,9,9],[0,0,0]] averaged: 18/9 = 2.
    _see(page, "Output (0, 0) = 2, exactly the sum")
    _choose(page, "Kernel preset", "Laplacian")
    _see(page, "The neighbours minus a multiple of the centre")
    # The Laplacian comes in two sizes: a slider that moves, not one that collapses to a dot.
    _expect()(_slider(page, "Kernel size k")).to_have_attribute("aria-valuetext", "3")
    _choose(page, "Kernel preset", "Sharpen")  # one size only: the page says so instead of a slider
    _see(page, "Sharpen is defined as 3×3 only")
    _expect()(_slider(page, "Kernel size k")).to_have_count(0)
    save_screenshot(page, "lab-preset-fixed-size", whole_page=False)
    _choose(page, "Kernel preset", "Laplacian")
    laplacian = conv.convolve(conv.DIGIT_GRID_7X7, conv.preset_kernel("laplacian")).output
    _see(page, f"Output (0, 0) = {conv.format_number(laplacian[0, 0])}, exactly")
    # Pooling: average instead of max changes the function PyTorch ran.
    _click(page, page.get_by_text("average", exact=True))
    _see(page, "PyTorch's avg_pool2d returned shape (1, 1, 3, 3)")
    # The self-check: LeNet-5's first layer on an MNIST digit is 24 wide.
    _set_number(page, "Your answer", 24)
    _click(page, page.get_by_role("button", name="Check"))
    _see(page, re.compile(r"^Right: "))
    finish_page(page, "lab-presets")


def test_kernel_larger_than_padded_input_is_explained(page):
    open_app_page(page, LAB)
    _choose(page, "Kernel preset", "Custom")
    _press(page, "Kernel size k", "End")                        # k = 7: span 7 on a 7x7 input still fits
    _see(page, "Kernel weights (7×7)")
    _expect_metric(page, "Formula says", "1 × 1")
    _press(page, "Dilation d", "ArrowRight")             # span 13 > 7
    _see(page, "No output.")
    _see(page, re.compile(r"The kernel covers 13 cells .* only 7 \+ 2·0 = 7 cells"))
    _expect_metric(page, "Formula says", "no output")
    finish_page(page, "lab-kernel-too-large")


def test_uploads_bad_and_good(page):
    expect = _expect()
    open_app_page(page, LAB)
    _click(page, page.get_by_role("radio", name="Your own image"))
    expect(page.get_by_test_id("stFileUploaderDropzoneInput")).to_be_attached()

    _upload(page, "notes.png", b"this is a text file, renamed to .png\n" * 20)
    _see(page, "'notes.png' is not an image this app can read")
    assert_no_exception(page)

    noisy = np.random.default_rng(1).integers(0, 255, (64, 80), dtype=np.uint8)
    data = _png(noisy)
    _upload(page, "cut.png", data[: len(data) // 2])
    _see(page, re.compile(r"'cut.png' is (truncated|damaged)"))

    _upload(page, "bomb.png", png_bomb(20_000))
    _see(page, re.compile(r"'bomb.png' declares 400 megapixels: .*decompression bomb"))
    save_screenshot(page, "lab-upload-bomb")

    rgba = np.zeros((30, 40, 4), np.uint8)
    rgba[..., 3] = 255
    rgba[:, 20:, :3] = 255
    clear = np.zeros((30, 40, 4), np.uint8)  # a white stroke on a transparent sheet was a blank white image
    clear[10:20, 5:35] = 255
    _upload(page, "stroke.png", _png(clear))
    _see(page, "stroke.png: 40×30 grayscale; its transparent background is shown black so the drawing stays visible.")
    assert _read_map(page, "Input 30×40", 15, 20, (30, 40)) == "row 15, col 20: value 255"
    _upload(page, "edge.png", _png(rgba))
    _see(page, "edge.png: 40×30 grayscale.")  # black and white pixels stored as RGB
    _expect_metric(page, "Input (H × W)", "30 × 40")
    _expect_metric(page, "conv2d returns", "28 × 38")
    # The input's map is 40 wide and 30 tall: the pointer's column and row come from the right axes.
    assert _read_map(page, "Input 30×40", 5, 30, (30, 40)) == "row 5, col 30: value 255"
    assert _read_map(page, "Input 30×40", 25, 10, (30, 40)) == "row 25, col 10: value 0"
    # A 10x10 window from the middle with "same" padding: its border is the photo's own pixels (image
    # columns 14-25: black up to 19, white from 20), no hatched padding, and all 12 columns on screen.
    _click(page, page.get_by_role("button", name="same", exact=True))
    _see(page, re.compile(r"^Padded window 12×12: image rows 9–20, columns 14–25"))
    # "same" sets the padding through session state: the server logs no widget-state warning for it
    log = (ARTIFACTS_DIR / "streamlit-server.log").read_text(errors="replace")
    assert "conv_padding" not in log and "created with a default value" not in log
    grid = page.get_by_test_id("conv-padded-input")
    expect(grid.locator("td.pad")).to_have_count(0)
    first_row = grid.locator("tr").nth(1).locator("td")
    assert first_row.all_inner_texts() == ["0"] * 6 + ["255"] * 6
    sizes = grid.evaluate("g => ({shown: g.clientWidth, needed: g.scrollWidth, right: "
                          "g.querySelector('tr th:last-child').getBoundingClientRect().right, "
                          "edge: g.getBoundingClientRect().right})")
    assert sizes["needed"] <= sizes["shown"] and sizes["right"] <= sizes["edge"], sizes  # column 11 is in view
    # Moved to the top-left corner: padding only above row 0 and left of column 0.
    _press(page, "Window top row", "Home")
    _press(page, "Window left column", "Home")
    _see(page, re.compile(r"^Padded window 12×12: image rows -1–10, columns -1–10"))
    expect(grid.locator("td.pad")).to_have_count(12 + 11)
    finish_page(page, "lab-upload-good")


def test_sample_photo_full_image_and_sobel_magnitude(page):
    expect = _expect()
    open_app_page(page, LAB)
    _click(page, page.get_by_role("radio", name="Sample photo"))
    _expect_metric(page, "Input (H × W)", "512 × 512")
    _expect_metric(page, "conv2d returns", "510 × 510")
    expect(page.get_by_test_id("valueMap")).to_have_count(2)
    # Hovering a map reads its value: the input's pixel under the pointer, with its row and column.
    assert re.fullmatch(r"row 300, col 100: value \d+", _read_map(page, "Input 512×512", 300, 100, (512, 512)))
    _see(page, "Window top row")
    _see(page, re.compile(r"^Window 10×10: image rows 251–260, columns 251–260"))
    _click(page, page.get_by_text("Sobel edge magnitude √(gx² + gy²)"))
    expect(page.get_by_test_id("valueMap")).to_have_count(3)
    _see(page, "Their magnitude lights up every edge")
    # A visit to another page keeps the lab's settings (Streamlit drops a widget's state on another page).
    _press(page, "Stride s", "ArrowRight")
    _expect_metric(page, "conv2d returns", "255 × 255")
    _click(page, page.get_by_role("link", name="Model Graph"))
    page.get_by_role("heading", name="Model Graph").first.wait_for()
    _click(page, page.get_by_role("link", name="Convolution Lab"))
    _expect_metric(page, "conv2d returns", "255 × 255")  # the photo, at stride 2
    expect(page.get_by_role("slider", name="Stride s").first).to_have_attribute("aria-valuetext", "2")
    log = (ARTIFACTS_DIR / "streamlit-server.log").read_text(errors="replace")
    assert "created with a default value" not in log  # the kept values are given as the widgets' only value
    finish_page(page, "lab-photo-sobel")


@pytest.mark.realdata
def test_mnist_digit_as_input(page):
    from cnn_core import data

    if not data.dataset_status("mnist").available:
        pytest.skip("MNIST not found under CNN_DATA_DIR")
    open_app_page(page, LAB)
    _click(page, page.get_by_role("radio", name="Data-set image"))
    _see(page, "Test image 0: class 7.", timeout=60_000)
    _expect_metric(page, "Input (H × W)", "28 × 28")
    _expect_metric(page, "conv2d returns", "26 × 26")
    finish_page(page, "lab-mnist")


PHONE = {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True}


def _main_overflow(page) -> list[str]:
    """Elements of the main area (tables, charts, grids) whose right edge passes the viewport's."""
    return page.evaluate("""() => [...document.querySelectorAll('[data-testid="stMain"] [data-testid="stDataFrame"],'
        + '[data-testid="stMain"] [data-testid="stTable"], [data-testid="stMain"] [data-testid="stPageLink"]')]
        .filter(e => e.getBoundingClientRect().right > window.innerWidth + 1)
        .map(e => e.getAttribute('data-testid') + ' ' + Math.round(e.getBoundingClientRect().right))""")


def test_home_on_a_phone_keeps_the_sidebar_order_and_fits_its_tables(browser, warm_app):
    from cnn_explorer_ui.navigation import available_pages

    context = browser.new_context(**PHONE)
    tab = context.new_page()
    try:
        tab.goto(warm_app)
        wait_for_app(tab)
        links = tab.get_by_test_id("stMain").get_by_test_id("stPageLink")
        _expect()(links.first).to_be_visible()
        cards = [re.sub(r"^Open ", "", text.strip().splitlines()[-1].strip()) for text in links.all_inner_texts()]
        assert cards == [spec.title for spec in available_pages()]  # stacked in the sidebar's order
        tab.get_by_role("heading", name="Trained models").scroll_into_view_if_needed()
        assert _main_overflow(tab) == []  # every table within the phone's width (wide ones scroll inside)
        assert_no_exception(tab)
        save_screenshot(tab, "home-phone")
    finally:
        context.close()


def test_the_lab_on_a_phone_says_tap_or_hover(browser, warm_app):
    context = browser.new_context(**PHONE)
    tab = context.new_page()
    tab.app_url = warm_app
    try:
        open_app_page(tab, LAB)
        _see(tab, "Tap or hover to read any value")
        # a tap reads a value, and the value stays after the finger lifts
        assert re.fullmatch(r"row 0, col 0: value \d+", _read_map(tab, "Input 7×7", 0, 0, (7, 7), tap=True))
        grid = tab.get_by_test_id("conv-padded-input")
        sizes = grid.evaluate("g => ({shown: g.clientWidth, needed: g.scrollWidth})")
        assert sizes["needed"] <= sizes["shown"], sizes  # the step-through grid fits a phone too
        save_screenshot(tab, "lab-phone")
    finally:
        context.close()
