"""Fixtures that serve the app and drive headless Chromium, plus helpers for Streamlit pages.

`app_server` runs `streamlit run app.py` once per test session on a free port; `page` is a fresh Chromium
tab (Python playwright on Debian's /usr/bin/chromium). Browser tests are marked `@pytest.mark.browser`
and skip with a reason when Chromium or playwright is missing. Screenshots go to `test-artifacts/`.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS_DIR = REPO_ROOT / "test-artifacts"
CHROMIUM_PATH = Path(os.environ.get("CNN_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SERVER_START_TIMEOUT_S = 90
DEFAULT_TIMEOUT_MS = 60_000  # generous: a shared 2-core CI machine can take seconds per rerun
EXPECT_TIMEOUT_MS = 20_000

_RUNNING_SELECTOR = '[data-testid="stStatusWidgetRunningIcon"]'
_IDLE_APP_SELECTOR = '[data-testid="stApp"][data-test-script-state="notRunning"]'


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def _stop(process: subprocess.Popen) -> None:
    """Stop the server we started, by its process id: terminate, then kill if it lingers."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


@contextlib.contextmanager
def serve_app(env: dict[str, str], log_name: str) -> Iterator[str]:
    """`streamlit run app.py` from the repository root with `env`; yields its base URL once it answers its
    health check and stops it afterwards. Every app server of the tests starts here."""
    ARTIFACTS_DIR.mkdir(exist_ok=True)
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    command = [
        sys.executable, "-m", "streamlit", "run", "app.py",
        "--server.headless", "true",
        "--server.port", str(port),
        "--server.address", "127.0.0.1",
        "--server.fileWatcherType", "none",
        "--browser.gatherUsageStats", "false",
    ]
    log_path = ARTIFACTS_DIR / log_name
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + SERVER_START_TIMEOUT_S
            while not _healthy(url):
                if process.poll() is not None:
                    pytest.fail(f"streamlit exited with code {process.returncode} before it was healthy:\n"
                                f"{log_path.read_text(errors='replace')[-3000:]}")
                if time.monotonic() > deadline:
                    pytest.fail(f"streamlit was not healthy after {SERVER_START_TIMEOUT_S} s:\n"
                                f"{log_path.read_text(errors='replace')[-3000:]}")
                time.sleep(0.25)
            yield url
        finally:
            _stop(process)


@pytest.fixture(scope="session")
def app_server(tmp_path_factory) -> str:
    """Base URL of `streamlit run app.py` served from the repository root for the whole test session."""
    env = os.environ.copy()
    # Session fixtures start before conftest's per-test cache isolation, so isolate the server here too.
    base = tmp_path_factory.getbasetemp()
    env.setdefault("CNN_CACHE_DIR", str(base / "cache"))
    env.setdefault("CNN_RUNS_DIR", str(base / "runs"))
    with serve_app(env, "streamlit-server.log") as url:
        yield url


@pytest.fixture(scope="session")
def browser():
    """Headless Debian Chromium driven by Python playwright (never `playwright install`)."""
    if not CHROMIUM_PATH.exists():
        pytest.skip(f"Chromium not found at {CHROMIUM_PATH} (apt-get install chromium; CI installs it).")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("Python playwright is not installed (pip install playwright; CI installs it).")
    from playwright.sync_api import expect

    expect.set_options(timeout=EXPECT_TIMEOUT_MS)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM_PATH), headless=True,
                                              args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture(scope="session")
def browser_context(browser):
    """One browser context for the session: tabs share its HTTP cache (Streamlit's and plotly's scripts
    load once), while each tab is still its own Streamlit session with its own state."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    try:
        yield context
    finally:
        context.close()


@pytest.fixture(scope="session")
def warm_app(browser_context, app_server) -> str:
    """Open the home page once before any test, so the server's first run (which imports torch and friends)
    is not charged to a test's timeouts. Deep links work on a fresh server too: see test_browser_deeplink.py.
    """
    tab = browser_context.new_page()
    try:
        tab.goto(app_server)
        wait_for_app(tab, timeout_ms=90_000)  # the first run imports torch and friends
    finally:
        tab.close()
    return app_server


@pytest.fixture
def page(browser_context, warm_app, request):
    """A fresh tab (a new Streamlit session) 1400x1000; a screenshot of its last state is kept per test."""
    tab = browser_context.new_page()
    tab.set_default_timeout(DEFAULT_TIMEOUT_MS)
    tab.app_url = warm_app  # type: ignore[attr-defined]
    try:
        yield tab
    finally:
        try:
            save_screenshot(tab, f"{request.node.name}-last")
        except Exception:  # noqa: BLE001 - a failed last screenshot must not hide the test's own result
            pass
        tab.close()


def wait_for_app(page, timeout_ms: int = DEFAULT_TIMEOUT_MS) -> None:
    """Wait until Streamlit has finished running the script and drawing its widgets.

    No run in progress, no running icon, and no loading skeletons (widgets whose code is still loading).
    After an interaction, first wait for something the interaction must change (`expect(...)`): the rerun
    may not have started yet when this is called.
    """
    page.wait_for_selector(_IDLE_APP_SELECTOR, state="attached", timeout=timeout_ms)
    page.wait_for_selector(_RUNNING_SELECTOR, state="detached", timeout=timeout_ms)
    page.wait_for_function("() => !document.querySelector('[data-testid=\"stSkeleton\"]')", timeout=timeout_ms)


_WATCH_RERUN_JS = """() => {
    const app = document.querySelector('[data-testid="stApp"]');
    window.__cnnRerunSeen = false;
    window.__cnnActionAt = performance.now();
    window.__cnnTextBefore = document.body.innerText;
    if (window.__cnnRerunObserver) window.__cnnRerunObserver.disconnect();
    // Any change of the run state means a run started, even if it already ended before this callback.
    window.__cnnRerunObserver = new MutationObserver((records) => {
        if (records.length) window.__cnnRerunSeen = true;
    });
    window.__cnnRerunObserver.observe(app, {attributes: true, attributeFilter: ['data-test-script-state']});
}"""
LOST_ACTION_S = 10  # seconds without any change of the run state after which an action counts as lost
# Done: the app is idle after a run state change, or (when a quick rerun's start and end reached the browser
# together, so React drew them in one go and the state attribute never changed) idle with the page's text changed
# since the action, once LOST_ACTION_S have passed. Seen in CI: a slider step and a sidebar click whose new page was
# drawn, yet no state change was observed.
_RERUN_DONE_JS = """(lostMs) => {
    if (document.querySelector('[data-testid="stApp"]').getAttribute('data-test-script-state') !== 'notRunning')
        return false;
    if (window.__cnnRerunSeen) return true;
    return performance.now() - window.__cnnActionAt > lostMs && document.body.innerText !== window.__cnnTextBefore;
}"""


def rerun_after(page, action, timeout_ms: int = DEFAULT_TIMEOUT_MS, *, retries: int = 0) -> None:
    """Do `action` (a click, a key press, an upload) and wait for the rerun it causes to finish.

    Watches the app's run state from before the action, so a rerun that starts late is not missed and
    elements of the previous run are gone when this returns. With `retries`, an action after which the run
    state did not change at all within `LOST_ACTION_S` (the browser took the click but the app never heard
    of it, as happens now and then with the first click on a freshly loaded page under load) is done again;
    only for actions that are harmless to repeat when they were lost.
    """
    page.evaluate(_WATCH_RERUN_JS)
    action()
    for _ in range(retries):
        try:
            page.wait_for_function("() => window.__cnnRerunSeen || document.body.innerText !== window.__cnnTextBefore",
                                   timeout=LOST_ACTION_S * 1000, polling=250)
            break
        except Exception:  # noqa: BLE001 - playwright's TimeoutError: nothing happened, so do it again
            action()
    try:
        page.wait_for_function(_RERUN_DONE_JS, arg=LOST_ACTION_S * 1000, timeout=timeout_ms, polling=250)
    except Exception as exc:  # noqa: BLE001 - playwright's TimeoutError; say what we waited for
        raise AssertionError(f"No finished rerun seen within {timeout_ms / 1000:.0f} s after the action "
                             "(did it change a widget?)") from exc
    wait_for_app(page, timeout_ms)


def assert_no_exception(page) -> None:
    """Fail when Streamlit shows its exception box anywhere on the page."""
    boxes = page.locator('[data-testid="stException"]')
    if boxes.count():
        raise AssertionError("Streamlit showed an exception:\n" + "\n---\n".join(boxes.all_inner_texts()))


def open_app_page(page, path: str = "") -> None:
    """Go to `path` under the app, wait for the first run to finish and check it raised nothing."""
    page.goto(f"{page.app_url}/{path.lstrip('/')}")
    page.wait_for_selector('[data-testid="stAppViewContainer"]', state="attached")
    wait_for_app(page)
    assert_no_exception(page)


def save_screenshot(page, name: str, *, whole_page: bool = True) -> Path:
    """A PNG in test-artifacts/ (not committed).

    Streamlit scrolls inside its main container, not the document, so for the whole page the viewport
    is stretched to the content's height for the shot and put back afterwards.
    """
    ARTIFACTS_DIR.mkdir(exist_ok=True)
    path = ARTIFACTS_DIR / (re.sub(r"[^A-Za-z0-9_.-]+", "_", name) + ".png")
    page.mouse.move(0, 0)  # no hover tooltip in the picture
    viewport = page.viewport_size
    height = 0
    if whole_page and viewport:
        height = page.evaluate(
            "() => Math.max(document.body.scrollHeight, ...[...document.querySelectorAll("
            "'[data-testid=\"stMain\"], [data-testid=\"stAppViewContainer\"]')].map(e => e.scrollHeight))")
    if height > (viewport or {}).get("height", 0):
        page.set_viewport_size({"width": viewport["width"], "height": min(int(height), 16_000)})
        try:
            page.wait_for_timeout(300)  # let plotly resize to the new viewport
            page.screenshot(path=str(path))
        finally:
            page.set_viewport_size(viewport)
    else:
        page.screenshot(path=str(path))
    return path


def finish_page(page, name: str) -> None:
    """End of a browser step: the app is idle, shows no exception box, and a screenshot is saved."""
    wait_for_app(page)
    assert_no_exception(page)
    save_screenshot(page, name)


def download_onnx(page, channels: int, size: int, n_classes: int) -> Path:
    """Click the page's "Download ONNX" button and check the file runs in onnxruntime: uint8 images of any
    batch size in, one row of probabilities per image out. Returns the downloaded file."""
    import numpy as np
    import onnxruntime

    with page.expect_download(timeout=DEFAULT_TIMEOUT_MS) as download_info:
        page.get_by_role("button", name="Download ONNX").click()
    download = download_info.value
    assert download.suggested_filename.endswith(".onnx")
    path = Path(download.path())
    session = onnxruntime.InferenceSession(path.read_bytes(), providers=["CPUExecutionProvider"])
    probs = session.run(None, {"images": np.zeros((3, channels, size, size), np.uint8)})[0]
    assert probs.shape == (3, n_classes) and np.allclose(probs.sum(axis=1), 1, atol=1e-5)
    return path
