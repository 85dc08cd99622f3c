"""What opening each page costs: seconds to settle, and CPU seconds in Chromium and in the app server (run by hand).

On a 2-core machine that also runs the browsers (a classroom demo, `bench_studio.py classroom`), Chromium's
rendering, not the server, is most of the cost of a page: this prints both so a page can be made lighter where
it matters. One Chromium, one page at a time, each page opened `--reloads` times after a first, warming load:
by reloading it (`--open reload`, the default: the browser parses Streamlit's whole frontend again) or, as a
student moves between pages, by clicking its link in the sidebar (`--open sidebar`: the page is left for Home,
or Home for the Convolution Lab, by the sidebar too, and only the click onto the page is counted).

    CNN_DATA_DIR=../shared/data .venv/bin/python benchmarks/bench_pages.py [--reloads 5] [--page dataset-gallery]
        [--open sidebar]

Only loopback traffic: the server listens on 127.0.0.1; Chromium runs with background networking off.
"""

from __future__ import annotations

import argparse
import statistics
import time

from bench_studio import (SETTLED_JS, _cpu_seconds, _stop, browser_cpu_seconds, fresh_cache_env, sidebar_link_selector,
                          start_server)

PAGES = ("", "convolution-lab", "dataset-gallery", "training-studio", "model-graph", "predict")


def sidebar_link(page, path: str):
    """The sidebar's link to a page ('' is Home), as a student clicks it."""
    return page.locator(sidebar_link_selector(path)).first


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reloads", type=int, default=5)
    parser.add_argument("--page", action="append", help="a page's path (default: every page; '' is Home)")
    parser.add_argument("--open", choices=("reload", "sidebar"), default="reload",
                        help="open each page by reloading it or by its sidebar link (see above)")
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
                elsewhere = "convolution-lab" if path == "" else ""
                for _ in range(args.reloads):
                    if args.open == "sidebar":
                        sidebar_link(page, elsewhere).click()
                        page.wait_for_timeout(50)
                        page.wait_for_function(SETTLED_JS, timeout=120_000)
                        page.wait_for_timeout(1500)
                    b0, s0, t0 = browser_cpu_seconds({server.pid}), _cpu_seconds(server.pid), time.monotonic()
                    if args.open == "sidebar":
                        sidebar_link(page, path).click()
                    else:
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
    print(f"{'page':<18} {'settled s':>9} {'browser CPU-s':>14} {'server CPU-s':>13}   (medians of {args.reloads} "
          f"{'reloads' if args.open == 'reload' else 'clicks on its sidebar link'})")
    for name, wall, browser_s, server_s in rows:
        print(f"{name:<18} {wall:>9.2f} {browser_s:>14.2f} {server_s:>13.2f}")


if __name__ == "__main__":
    main()
