"""Runs outside the web server, as browsers see them: a server killed mid-run forgets nothing, and each
browser sees the shipped checkpoints and only its own, on every page that lists checkpoints."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from browser_fixtures import ARTIFACTS_DIR, REPO_ROOT, _free_port, _healthy, _stop, save_screenshot, wait_for_app
from cnn_core.runs import RunStatus, RunStore
from data_fixtures import build_tiny_data
from test_browser_studio import RUN_TIMEOUT_MS, STUDIO, _configure_run, _data_frame_rows, _expect, _open, _start

pytestmark = pytest.mark.browser

HOME, GALLERY, GRAPH, PREDICT = "", "dataset-gallery", "model-graph", "predict"


def _environment(base: Path) -> dict[str, str]:
    return {**os.environ, "CNN_DATA_DIR": str(build_tiny_data(base / "data")), "CNN_CACHE_DIR": str(base / "cache"),
            "CNN_RUNS_DIR": str(base / "runs"), "CNN_DEVICE": "cpu", "CNN_MAX_CONCURRENT_RUNS": "1"}  # fmt: skip


def _start_server(env: dict[str, str], log_name: str) -> tuple[subprocess.Popen, str]:
    """The app as the README starts it (its own settings file), on a free loopback port; returns its process
    too, so that a test can kill it the hard way."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    ARTIFACTS_DIR.mkdir(exist_ok=True)
    log = open(ARTIFACTS_DIR / log_name, "wb")  # noqa: SIM115 - the server writes it until it ends
    process = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port),
                                "--server.address", "127.0.0.1"], cwd=REPO_ROOT, env=env, stdout=log,
                               stderr=subprocess.STDOUT)  # fmt: skip
    deadline = time.monotonic() + 120
    while not _healthy(url):
        if process.poll() is not None or time.monotonic() > deadline:
            _stop(process)
            pytest.fail(f"the app did not start: {(ARTIFACTS_DIR / log_name).read_text(errors='replace')[-2000:]}")
        time.sleep(0.25)
    return process, url


def _store(env: dict[str, str]) -> RunStore:
    return RunStore(Path(env["CNN_CACHE_DIR"]) / "cnn-explorer.sqlite3")


def _quick_run(person, url: str):
    """One tiny MNIST run in the studio, to its end; returns the studio's tab."""
    tab = _open(person, url, STUDIO)
    _configure_run(tab, epochs=1, batch=16, subset=50)
    _start(tab)
    _expect()(tab.get_by_text(re.compile(r"^Finished: 1 epoch"))).to_be_visible(timeout=RUN_TIMEOUT_MS)
    wait_for_app(tab)
    return tab


def test_a_server_killed_mid_run_forgets_nothing_and_each_browser_sees_only_its_own_checkpoints(browser, tmp_path):
    # one server start and one finished run serve both checks (a server start with its warm-up and a run took
    # about 20 s of CI each)
    expect = _expect()
    env = _environment(tmp_path)
    server, url = _start_server(env, "streamlit-server-restart-1.log")
    person = browser.new_context(viewport={"width": 1400, "height": 1000})
    try:
        tab = _quick_run(person, url)
        finished = _data_frame_rows(tab, 1)[0]
        _configure_run(tab, epochs=1000, batch=8, subset=0)
        _start(tab)
        expect(tab.get_by_test_id("liveProgress")).to_contain_text(re.compile(r"step [\d,]+ of 28,000"),
                                                                 timeout=RUN_TIMEOUT_MS)  # fmt: skip
        store = _store(env)
        (worker,) = store.worker_pids((RunStatus.RUNNING,)).values()
        assert worker not in (None, server.pid)  # it trains in a process of its own
    finally:
        server.send_signal(signal.SIGKILL)  # the hard way: no clean-up runs in the server
        server.wait(timeout=30)
    deadline = time.monotonic() + 30  # the worker notices that its server is gone and stops
    while _alive(worker) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _alive(worker)

    server, url = _start_server(env, "streamlit-server-restart-2.log")
    try:
        tab = _open(person, url, STUDIO)  # the same browser: its cookie names the same owner
        expect(tab.get_by_text(re.compile(r"^Interrupted: "))).to_be_visible()
        save_screenshot(tab, "studio-after-restart")
        expect(tab.get_by_role("button", name="Stop training")).to_have_count(0)
        expect(tab.get_by_text("Your run is training")).to_have_count(0)  # nothing holds this person's slot
        rows = _data_frame_rows(tab, 2)
        assert [row[1] for row in rows] == ["finished", "interrupted"], rows
        # its results and settings as before the restart (the columns the grid draws without scrolling)
        assert rows[0][:9] == finished[:9]
        # No checkpoint is lost: the finished run's, and the best weights the interrupted run had when its worker
        # saw the server go (a worker killed too would have left none, and its run would still say interrupted).
        from cnn_core.models.checkpoints import load_checkpoint

        recorded = {row["status"]: row for row in _store(env).summaries()}
        assert set(recorded) == {"finished", "interrupted"}
        assert Path(recorded["finished"]["checkpoint"]).is_file()
        if recorded["interrupted"]["checkpoint"]:
            assert load_checkpoint(recorded["interrupted"]["checkpoint"]).card.stopped_early
            expect(tab.get_by_text(re.compile(r"The checkpoint keeps the best weights so far"))).to_be_visible()
        _only_its_own(browser, url, person, Path(recorded["finished"]["checkpoint"]).stem)
        _forget_this_browser(person, url, env, Path(recorded["finished"]["checkpoint"]))
    finally:
        _stop(server)
        person.close()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/status")
    return status.exists() and "zombie" not in status.read_text().lower()


def _only_its_own(browser, url: str, alice, name: str, label: str = "run #1 · yours") -> None:
    """Each browser sees the shipped checkpoints and only its own (`alice` trained the checkpoint `name`, her
    run #1, which the pickers call `label`), on every page that lists checkpoints, and nothing of another
    browser's: no file, no path, no id."""
    bob = browser.new_context(viewport={"width": 1400, "height": 1000})
    try:
        alice_id = next(c["value"] for c in alice.cookies() if c["name"] == "cnn_explorer_browser")
        for who, sees in ((alice, True), (bob, False)):
            home = _open(who, url, HOME)  # its table of checkpoints draws the shipped ones for everybody
            home.wait_for_function("() => document.body.innerHTML.includes('mnist_fastnet')", timeout=60_000)
            assert ("run #1" in home.content()) is sees  # the table names a run as the studio does
            if sees:
                home.get_by_text("Trained models").scroll_into_view_if_needed()
                save_screenshot(home, "home-own-checkpoint")
            predict = _open(who, url, PREDICT)
            predict.get_by_test_id("stSelectbox").filter(has_text="Model").click()
            options = predict.get_by_role("option").all_inner_texts()
            predict.keyboard.press("Escape")
            assert any(option.startswith(label) for option in options) is sees, options
            assert any("mnist_fastnet" in option for option in options)  # the shipped one, for everybody
            graph = _open(who, url, GRAPH)
            graph.get_by_role("radio", name="A trained checkpoint").click()
            wait_for_app(graph)
            graph.get_by_test_id("stSelectbox").filter(has_text="Checkpoint").click()
            options = graph.get_by_role("option").all_inner_texts()
            graph.keyboard.press("Escape")
            assert any(option.startswith(label) for option in options) is sees, options
            for page in (home, predict, graph):  # nothing of another browser's: no file, no path, no id
                assert sees or (name not in page.content() and alice_id not in page.content())
            save_screenshot(graph, f"privacy-{'alice' if sees else 'bob'}-graph")
    finally:
        bob.close()


def _forget_this_browser(person, url: str, env: dict[str, str], checkpoint: Path) -> None:
    """Home's "Forget this browser": the runs and checkpoints are deleted, the browser gets a new cookie, and
    Predict no longer offers the checkpoint (a shared lab computer's next student inherits the cookie)."""
    expect = _expect()
    old_id = next(c["value"] for c in person.cookies() if c["name"] == "cnn_explorer_browser")
    stale = _open(person, url, GALLERY)  # a tab left open meanwhile
    home = _open(person, url, HOME)
    home.get_by_text("Forget this browser", exact=True).click()  # the expander
    forget = home.get_by_role("button", name="Forget this browser now")
    expect(forget).to_be_disabled()  # not without saying yes
    home.get_by_text("Yes, delete them").click()
    wait_for_app(home)
    save_screenshot(home, "home-forget-browser")
    home.get_by_role("button", name="Forget this browser now").click()
    expect(home.get_by_text(re.compile(r"^Forgotten: 0 upload\(s\), 2 run\(s\) and [12] checkpoint\(s\)\."))).to_be_visible()
    assert not checkpoint.exists() and _store(env).run_ids() == []
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and old_id in {c["value"] for c in person.cookies()}:
        time.sleep(0.2)
    assert old_id not in {c["value"] for c in person.cookies()}  # a new identity, in a new cookie
    predict = _open(person, url, PREDICT)
    predict.get_by_test_id("stSelectbox").filter(has_text="Model").click()
    options = predict.get_by_role("option").all_inner_texts()
    assert not any("yours" in option for option in options) and any("mnist_fastnet" in o for o in options)
    # The tab left open still holds the forgotten id: its next click says so and makes nothing under it; a reload
    # goes on as the browser's new identity.
    stale.get_by_test_id("stSelectbox").filter(has_text="Data set").click()
    stale.get_by_role("option").nth(1).click()
    warning = stale.get_by_text(re.compile(r"were deleted from another tab .* Reload this page"))
    expect(warning).to_be_visible()
    save_screenshot(stale, "forgotten-stale-tab")
    stale.reload()
    wait_for_app(stale)
    expect(stale.get_by_test_id("stSelectbox").filter(has_text="Data set")).to_be_visible()
    expect(warning).to_have_count(0)
