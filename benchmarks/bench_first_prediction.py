"""How long a student's first drawing on Predict waits for its answer, on a freshly started server (run by hand).

A fresh server (`streamlit run app.py`, a new empty cache) and a fresh Chromium: Home opens, the student reads it
for `--read-s` seconds, clicks Predict in the sidebar and draws a 7 with the mouse; the figure is the seconds from
lifting the mouse to the page settled with "Predicted class" on it, then the same for a second drawing (and the
seconds Home took to settle, opened as soon as the server answers). Each round
runs the app twice, side by side: with the background imports of pages' slow modules
(`cnn_explorer_ui.warmup`, started when the server starts) and without them (`CNN_WARM_IMPORTS=0`).

    CNN_DATA_DIR=../shared/data .venv/bin/python benchmarks/bench_first_prediction.py [--rounds 2] [--read-s 10]

Only loopback traffic: the server listens on 127.0.0.1; Chromium runs with background networking off.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import time

from bench_studio import SETTLED_JS, _stop, fresh_cache_env, sidebar_link_selector, start_server
from playwright.sync_api import sync_playwright

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]  # fmt: skip
#: A 7 in canvas fractions: a bar and a stem, two strokes.
SEVEN = [[(0.3, 0.25), (0.7, 0.25)], [(0.7, 0.25), (0.45, 0.8)]]


def draw_seven(page, shift: float = 0.0) -> float:
    """Draw the 7 (moved right by `shift` of the canvas) and return the monotonic time the mouse went up."""
    box = page.locator("canvas.upper-canvas").bounding_box()
    for stroke in SEVEN:
        x, y = stroke[0]
        page.mouse.move(box["x"] + (x + shift) * box["width"], box["y"] + y * box["height"])
        page.mouse.down()
        for x, y in stroke[1:]:
            page.mouse.move(box["x"] + (x + shift) * box["width"], box["y"] + y * box["height"], steps=8)
        page.mouse.up()
    return time.monotonic()


def answered(page, lifted: float, previous: str) -> float:
    """Seconds from `lifted` until the page settled on a prediction other than `previous` text."""
    page.wait_for_function(
        "(previous) => { const app = document.querySelector('[data-testid=\"stApp\"]');"
        " const m = document.querySelector('[data-testid=\"stMetricValue\"]');"
        " return app?.getAttribute('data-test-script-state') === 'notRunning' && m && m.innerText !== previous; }",
        arg=previous, timeout=120_000)
    return time.monotonic() - lifted


def one_try(chromium, warm: bool, read_s: float) -> tuple[float, float, float]:
    cache, env = fresh_cache_env("bench-first-prediction-")
    env["CNN_WARM_IMPORTS"] = "1" if warm else "0"
    server, url = start_server(env)
    context = chromium.new_context(viewport={"width": 1400, "height": 1000})
    try:
        page = context.new_page()
        opened = time.monotonic()
        page.goto(url, timeout=120_000)
        page.wait_for_function(SETTLED_JS, timeout=120_000)
        home = time.monotonic() - opened
        time.sleep(read_s)  # the student reads Home
        page.locator(sidebar_link_selector("predict")).first.click()
        page.locator("canvas.upper-canvas").wait_for(timeout=120_000)
        page.wait_for_function(SETTLED_JS, timeout=120_000)
        first = answered(page, draw_seven(page), "")
        text = page.locator('[data-testid="stMetricValue"]').first.inner_text()
        page.get_by_role("button", name="Clear").click()
        page.locator("canvas.upper-canvas").wait_for(timeout=60_000)
        page.wait_for_function(SETTLED_JS, timeout=60_000)
        second = answered(page, draw_seven(page, 0.05), "")
        print(f"  {'warm imports' if warm else 'no warm-up  '}: Home {home:5.2f} s, first drawing {first:5.2f} s, "
              f"second {second:5.2f} s (answer {text})", flush=True)
        return home, first, second
    finally:
        context.close()
        _stop(server)
        shutil.rmtree(cache, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--read-s", type=float, default=10.0, help="seconds the student spends on Home first")
    args = parser.parse_args()
    results: dict[bool, list[tuple[float, float, float]]] = {True: [], False: []}
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path="/usr/bin/chromium", headless=True, args=CHROMIUM_ARGS)
        try:
            for round_number in range(args.rounds):
                print(f"round {round_number + 1}", flush=True)
                for warm in (False, True) if round_number % 2 == 0 else (True, False):
                    results[warm].append(one_try(chromium, warm, args.read_s))
        finally:
            chromium.close()
    for warm in (False, True):
        homes, firsts, seconds = ([r[i] for r in results[warm]] for i in range(3))
        print(f"{'warm imports' if warm else 'no warm-up  '}: Home median {statistics.median(homes):.2f} s, first "
              f"drawing median {statistics.median(firsts):.2f} s, second {statistics.median(seconds):.2f} s "
              f"({len(firsts)} fresh servers)")


if __name__ == "__main__":
    main()
