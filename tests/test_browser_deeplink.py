"""A page's address works as the very first request to a freshly started server.

Streamlit reads a `pages/` folder beside its main script in the legacy multipage mode until some session
has called `st.navigation`; the app's main script (`cnn_explorer_ui/frame.py`, served by `app.py` as an
`st.App`) has no such folder beside it, so a shared link such as /dataset-gallery opens the gallery on a
server nobody has visited yet, not a "Page not found" dialog over the home page. Each test starts its own
server on tiny data sets and opens the deep link before anything else.
"""

from __future__ import annotations

import os
import re
from urllib.parse import quote

import pytest

from browser_fixtures import assert_no_exception, save_screenshot, serve_app, wait_for_app
from data_fixtures import build_tiny_data

pytestmark = pytest.mark.browser

FIRST_RUN_TIMEOUT_MS = 120_000  # the first run of a fresh server imports torch and friends
NOT_FOUND = re.compile(r"Page not found|does not seem to exist")


def _expect():
    from playwright.sync_api import expect

    return expect


@pytest.fixture
def fresh_server(tmp_path):
    """A server started for this test alone, on the tiny data sets: no session has run on it yet."""
    data_dir = build_tiny_data(tmp_path / "data")
    env = {**os.environ, "CNN_DATA_DIR": str(data_dir), "CNN_CACHE_DIR": str(tmp_path / "cache"),
           "CNN_RUNS_DIR": str(tmp_path / "runs"), "CNN_DEVICE": "cpu"}
    with serve_app(env, f"streamlit-deeplink-{os.getpid()}.log") as url:
        yield url


def _first_visit(browser, url: str, path: str, shot: str):
    """Open `url/path` in a new browser (no cookie, no earlier session) and wait until the run ends."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    tab = context.new_page()
    tab.goto(f"{url}/{path}", timeout=FIRST_RUN_TIMEOUT_MS)
    tab.wait_for_selector('[data-testid="stAppViewContainer"]', state="attached", timeout=FIRST_RUN_TIMEOUT_MS)
    wait_for_app(tab, FIRST_RUN_TIMEOUT_MS)
    return context, tab, shot


def _check_no_page_not_found(tab, path: str) -> None:
    tab.wait_for_timeout(1_500)  # a "Page not found" dialog would have arrived with the first run
    assert tab.get_by_role("dialog").filter(has_text=NOT_FOUND).count() == 0, "Streamlit said: Page not found"
    assert tab.get_by_text(NOT_FOUND).count() == 0
    assert tab.url.split("?")[0].rstrip("/").endswith(f"/{path}")  # still the page asked for, not the home page
    assert_no_exception(tab)


def test_the_gallery_address_opens_the_gallery_on_a_fresh_server(browser, fresh_server):
    expect = _expect()
    context, tab, shot = _first_visit(browser, fresh_server, "dataset-gallery", "deeplink-gallery-first-visit")
    try:
        expect(tab.get_by_role("heading", name="Dataset Gallery", level=1)).to_be_visible()
        # The gallery's content for its first data set (the tiny MNIST), not the home page behind a dialog.
        expect(tab.get_by_role("heading", name="Images per class and split")).to_be_visible(timeout=60_000)
        expect(tab.get_by_role("combobox", name="Data set")).to_have_value(re.compile(r"^MNIST handwritten digits"))
        expect(tab.get_by_role("heading", name="CNN Explorer", level=1)).to_have_count(0)
        _check_no_page_not_found(tab, "dataset-gallery")
        # The frame ran too: the navigation marks the gallery as the current page.
        nav_link = tab.get_by_test_id("stSidebarNav").get_by_role("link", name="Dataset Gallery")
        expect(nav_link).to_have_attribute("href", re.compile(r"/dataset-gallery$"))
    finally:
        save_screenshot(tab, shot)
        context.close()


def test_a_shared_gallery_link_with_a_data_set_opens_it_on_a_fresh_server(browser, fresh_server):
    expect = _expect()
    context, tab, shot = _first_visit(browser, fresh_server, "dataset-gallery?dataset=scans",
                                      "deeplink-gallery-dataset-first-visit")
    try:
        expect(tab.get_by_role("heading", name="scans (image folder)")).to_be_visible(timeout=60_000)
        expect(tab.get_by_role("heading", name="Images per class and split")).to_be_visible(timeout=60_000)
        _check_no_page_not_found(tab, "dataset-gallery")
        # Then another page by its address, in the same browser: the navigation owns every address.
        tab.goto(f"{fresh_server}/convolution-lab", timeout=FIRST_RUN_TIMEOUT_MS)
        wait_for_app(tab, FIRST_RUN_TIMEOUT_MS)
        expect(tab.get_by_role("heading", name="Convolution Lab", level=1)).to_be_visible()
        _check_no_page_not_found(tab, "convolution-lab")
        # A link made to fool classmates: the unknown name is shown as written, with no link, image or red notice
        # (it was Markdown inside the info box: a live sign-in link and an image fetched from another server).
        payload = "x` :red[Notice] **Expired** ![](http://127.0.0.1:9/t.png) [Sign in](https://evil.example/l) `y"
        tab.goto(f"{fresh_server}/dataset-gallery?dataset={quote(payload)}", timeout=FIRST_RUN_TIMEOUT_MS)
        wait_for_app(tab, FIRST_RUN_TIMEOUT_MS)
        notice = tab.get_by_test_id("stAlert").filter(has_text="The link asked for a data set called")
        expect(notice).to_contain_text(":red[Notice] **Expired** ![](http")  # shown as written, cut at 80 characters
        assert tab.locator('a[href*="evil.example"], img[src*="127.0.0.1:9"]').count() == 0
        assert notice.locator("a, img, strong, .katex").count() == 0
    finally:
        save_screenshot(tab, shot)
        context.close()
