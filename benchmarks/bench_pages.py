"""What opening each page costs: seconds to settle, and CPU seconds in Chromium and in the app server (run by hand).

On a 2-core machine that also runs the browsers (a classroom demo, `bench_studio.py classroom`), Chromium's
rendering, not the server, is most of the cost of a page: this prints both so a page can be made lighter where
it matters. One Chromium, one page at a time, each page loaded `--reloads` times after a first, warming load.

    CNN_DATA_DIR=../shared/data .venv/bin/python benchmarks/bench_pages.py [--reloads 5] [--page dataset-gallery]

Only loopback traffic: the server listens on 127.0.0.1; Chromium runs with background networking off.
"""

from __future__ import annotations

import argparse
import statistics
import time

from bench_studio import SETTLED_JS, _cpu_seconds, _stop, browser_cpu_seconds, fresh_cache_env, start_server

PAGES = ("", "convolution-lab", "dataset-gallery", "training-studio", "model-graph", "predict")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reloads", type=int, default=5)
    parser.add_argument("--page", action="append", help="a page's path (default: every page; '' is Home)")
    args = parser.parse_args()

    from playwright.sync_api import sync_playwright

    from browser_fixtures import CHROMIUM_ARGS, CHROMIUM_PATH

    _, env = fresh_cache_env("bench-pages-")
    server, url = start_server(env)
    rows = []
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM_PATH), args=CHROMIUM_ARGS)
            page = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
            for path in args.page if args.page is not None else PAGES:
                page.goto(f"{url}/{path}")
                page.wait_for_function(SETTLED_JS, timeout=180_000)
                page.wait_for_timeout(1500)
                walls, browser_cpu, server_cpu = [], [], []
                for _ in range(args.reloads):
                    b0, s0, t0 = browser_cpu_seconds({server.pid}), _cpu_seconds(server.pid), time.monotonic()
                    page.reload()
                    page.wait_for_timeout(50)
                    page.wait_for_function(SETTLED_JS, timeout=120_000)
                    walls.append(time.monotonic() - t0)
                    page.wait_for_timeout(1500)  # late drawing (charts, images) counts against the page
                    browser_cpu.append(browser_cpu_seconds({server.pid}) - b0)
                    server_cpu.append(_cpu_seconds(server.pid) - s0)
                rows.append((path or "home", statistics.median(walls), statistics.median(browser_cpu),
                             statistics.median(server_cpu)))
            browser.close()
    finally:
        _stop(server)
    print(f"{'page':<18} {'settled s':>9} {'browser CPU-s':>14} {'server CPU-s':>13}   (medians of {args.reloads} reloads)")
    for name, wall, browser_s, server_s in rows:
        print(f"{name:<18} {wall:>9.2f} {browser_s:>14.2f} {server_s:>13.2f}")


if __name__ == "__main__":
    main()
