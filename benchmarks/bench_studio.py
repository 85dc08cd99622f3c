"""The Training Studio against the CLI, and a classroom on one server; prints numbers (run by hand).

(a) `race`: the studio's default MNIST run with its page open in Chromium, against `python -m cnn_core train
    --data mnist` in the same run, one after the other on the same machine. Reports both runs' training seconds
    (the trainer's own clock, loading excluded) and their ratio (target at most 1.1, the check fails above 1.5).
(b) `classroom`: 5 browser contexts on one server for a fixed time: 2 train the studio's default MNIST run one
    after another, 3 open pages and use a widget. Reports runs finished, p50/p95 seconds from a click to the page
    settling, and the server process's RSS and CPU. With `--cli-trainer` the second trainer runs the CLI instead,
    so the studio's runs are compared with the CLI's under the same load (not only with the CLI on an idle machine).

Start it from a checkout set up with the README's command (its `.venv` inside), as users start the app:

    CNN_DATA_DIR=../shared/data .venv/bin/python benchmarks/bench_studio.py race
    CNN_DATA_DIR=../shared/data .venv/bin/python benchmarks/bench_studio.py classroom --minutes 4

Only loopback traffic: the server listens on 127.0.0.1; Chromium runs with background networking off.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from browser_fixtures import CHROMIUM_ARGS, CHROMIUM_PATH, _free_port, _healthy, _stop  # noqa: E402

SETTLED_JS = "() => document.querySelector('[data-testid=\"stApp\"]')?.getAttribute('data-test-script-state') === 'notRunning'"


def start_server(env: dict[str, str]) -> tuple[subprocess.Popen, str]:
    """`streamlit run app.py` as the README starts it (its settings from .streamlit/config.toml), on 127.0.0.1."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port),
               "--server.address", "127.0.0.1"]  # fmt: skip
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 180
    while not _healthy(url):
        if time.monotonic() > deadline or process.poll() is not None:
            _stop(process)
            raise SystemExit("the app did not start")
        time.sleep(0.25)
    return process, url


def fresh_cache_env(prefix: str) -> tuple[Path, dict[str, str]]:
    """A new empty CNN_CACHE_DIR (runs, database, tensor cache) and the environment that points the app at it."""
    cache = Path(tempfile.mkdtemp(prefix=prefix))
    return cache, {**os.environ, "CNN_CACHE_DIR": str(cache), "CNN_RUNS_DIR": str(cache / "runs")}


CLI_DEFAULT_RUN = [sys.executable, "-m", "cnn_core", "train", "--data", "mnist", "--json"]


def train_seconds(cli_stdout: str) -> float:
    """The training seconds in the CLI's `--json` summary (its last line)."""
    return json.loads(cli_stdout.strip().splitlines()[-1])["train_seconds"]


def cli_train_seconds(env: dict[str, str]) -> float:
    result = subprocess.run(CLI_DEFAULT_RUN, cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    return train_seconds(result.stdout)


def studio_run(page, url: str, timeout_s: float = 900) -> None:
    """Open the studio (MNIST and its default model are preselected), press Start, wait until the run ends."""
    if not page.url.endswith("/training-studio"):
        page.goto(f"{url}/training-studio")
    page.wait_for_function(SETTLED_JS, timeout=120_000)
    page.get_by_role("button", name="Start training").click()
    # "Leave the queue" while another person's run holds the trainer (CNN_MAX_CONCURRENT_RUNS), then "Stop training"
    active = page.get_by_role("button", name=re.compile(r"^(Stop training|Leave the queue)$"))
    active.first.wait_for(timeout=120_000)
    active.first.wait_for(state="detached", timeout=timeout_s * 1000)
    page.get_by_role("button", name="Stop training").wait_for(state="detached", timeout=timeout_s * 1000)
    page.get_by_text("Finished:").first.wait_for(timeout=60_000)


def _finished_runs(cache_dir: Path, origin: str) -> list:
    """Snapshots of the finished runs of `origin` ("app" or "cli") in the run store, oldest first."""
    sys.path.insert(0, str(ROOT))
    from cnn_core.runs import RunStore

    store = RunStore(cache_dir / "cnn-explorer.sqlite3")
    return [store.snapshot(row["id"]) for row in store.summaries()
            if row["origin"] == origin and row["status"] == "finished"]  # fmt: skip


def app_run_seconds(cache_dir: Path) -> list[float]:
    """Training seconds of the app's finished runs, oldest first (the trainer's own clock)."""
    return [snap.end.seconds for snap in _finished_runs(cache_dir, "app")]


def epoch_seconds(cache_dir: Path, origin: str) -> list[list[float]]:
    """Per finished run of `origin`, oldest first: the training seconds each of its epochs took."""
    runs = []
    for snap in _finished_runs(cache_dir, origin):
        ends = [epoch.seconds for epoch in snap.epochs]
        runs.append([b - a for a, b in zip([0.0, *ends], ends)])
    return runs


def _per_epoch(runs: list[list[float]]) -> str:
    """Median seconds of each epoch across runs, e.g. "2.10 / 1.85 / 1.86"."""
    depth = min(len(run) for run in runs)
    return " / ".join(f"{statistics.median(run[i] for run in runs):.2f}" for i in range(depth))


def race(args: argparse.Namespace) -> None:
    """CLI and studio runs alternate (`--repeats` of each, a CLI run first and last), so a slow moment of the
    machine hits both; the ratio is of the medians."""
    from playwright.sync_api import sync_playwright

    cache, env = fresh_cache_env("bench-studio-")
    cli = [cli_train_seconds(env)]  # also fills the tensor cache both then read
    server, url = start_server(env)
    walls = []
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM_PATH), args=CHROMIUM_ARGS)
            page = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
            for visit in ("", "convolution-lab", "dataset-gallery", "model-graph", "predict"):
                page.goto(f"{url}/{visit}")  # "whichever pages were visited before"
                page.wait_for_function(SETTLED_JS, timeout=120_000)
            browser_cpu, server_cpu, idle_cpu, idle_server = [], [], [], []
            for _ in range(args.repeats):
                started, cpu_before, server_before = time.monotonic(), browser_cpu_seconds({server.pid}), _cpu_seconds(server.pid)
                studio_run(page, url)
                walls.append(time.monotonic() - started)
                browser_cpu.append(browser_cpu_seconds({server.pid}) - cpu_before)
                server_cpu.append(_cpu_seconds(server.pid) - server_before)
                idle_before, server_before = browser_cpu_seconds({server.pid}), _cpu_seconds(server.pid)
                cli.append(cli_train_seconds(env))  # the server and the page stay up, idle
                idle_cpu.append(browser_cpu_seconds({server.pid}) - idle_before)  # the CLI has ended: not counted
                idle_server.append(_cpu_seconds(server.pid) - server_before)
            rss_finished = _rss_mib(server.pid)
            page.get_by_role("button", name="Start training").click()  # finished runs, and one training
            page.get_by_role("button", name="Stop training").wait_for(timeout=120_000)
            time.sleep(5)
            rss_training = _rss_mib(server.pid)
            page.get_by_role("button", name="Stop training").click()
            browser.close()
        app = app_run_seconds(cache)
        epochs_app, epochs_cli = epoch_seconds(cache, "app"), epoch_seconds(cache, "cli")
    finally:
        _stop(server)
    print(f"CLI training seconds: {', '.join(f'{s:.2f}' for s in cli)} (median {statistics.median(cli):.2f})")
    print(f"Studio runs with the page open: {', '.join(f'{s:.2f}' for s in app)} s of training (median "
          f"{statistics.median(app):.2f}; {statistics.median(walls):.1f} s from Start to the results)")
    print(f"CPU seconds per studio run, Start to results (medians): browser {statistics.median(browser_cpu):.2f}, "
          f"app server {statistics.median(server_cpu):.2f}")
    print(f"CPU seconds while the page sits idle during a CLI run (medians): browser {statistics.median(idle_cpu):.2f}, "
          f"app server {statistics.median(idle_server):.2f}")
    print(f"seconds per epoch (medians): CLI {_per_epoch(epochs_cli)}; studio {_per_epoch(epochs_app)}")
    print(f"ratio studio / CLI (medians): {statistics.median(app) / statistics.median(cli):.2f}  "
          "(target <= 1.1, fails > 1.5)")
    print(f"server RSS: {rss_finished:.0f} MiB after {len(app)} finished runs; {rss_training:.0f} MiB with those and one "
          "training (target < 1 GB)")


def _rss_mib(pid: int) -> float:
    """Resident memory of one process, from /proc (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of one process, from /proc/<pid>/stat (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_busy_seconds() -> float:
    """CPU seconds every core of the machine has spent busy since boot (all processes), from /proc/stat."""
    ticks = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")  # less idle and iowait


def browser_cpu_seconds(skip: set[int]) -> float:
    """CPU seconds of this process's living descendants (Chromium and Playwright's driver), leaving out the
    `skip` pids and their descendants (the app server)."""
    parents = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parents[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
    def under_us(pid: int) -> bool:
        while pid in parents and pid not in skip:
            pid = parents[pid]
            if pid == os.getpid():
                return True
        return False
    total = 0.0
    for pid in parents:
        try:
            total += _cpu_seconds(pid) if under_us(pid) else 0.0
        except OSError:
            continue
    return total


def sidebar_link_selector(path: str) -> str:
    """CSS for the sidebar's link to a page ('' is Home), as a student clicks it."""
    return f'[data-testid="stSidebarNav"] a[href$="/{path}"]'


@contextlib.contextmanager
def browsers_cpu_shares(shares: int):
    """Run the block (and every process it starts) in a new cgroup-v1 `cpu` group with `shares` (1024 is a
    peer's); back in the root group and the group removed afterwards. Needs root; nothing happens for 0."""
    if not shares:
        yield
        return
    root = Path("/sys/fs/cgroup/cpu")
    group = root / f"cnn-bench-browsers-{os.getpid()}"
    group.mkdir()
    try:
        (group / "cpu.shares").write_text(str(shares))
        (group / "cgroup.procs").write_text(str(os.getpid()))
        try:
            yield
        finally:
            (root / "cgroup.procs").write_text(str(os.getpid()))
    finally:
        for _ in range(50):  # the Chromiums may take a moment to leave it
            try:
                group.rmdir()
                break
            except OSError:
                time.sleep(0.2)


def _out_of_the_browsers_cgroup() -> None:
    """In a child before it runs its program: back into the root `cpu` group, where the server and its workers
    are (this driver, and so its children, sit in the browsers' group with `--browser-cpu-shares`)."""
    Path("/sys/fs/cgroup/cpu/cgroup.procs").write_text(str(os.getpid()))


def classroom(args: argparse.Namespace) -> None:
    """Five browser contexts, driven from one asyncio loop: 2 train the studio's default run one after another,
    3 open pages and use a widget. Each context has its own Chromium (`--browsers separate`, the default and how
    every earlier figure was measured) or all five share one (`--browsers one`: measured slower on 2 cores,
    p95 4.6 s against 3.9 s, as its single browser process serialises the five pages' work)."""
    import asyncio

    from playwright.async_api import async_playwright

    cache, env = fresh_cache_env("bench-class-")
    cli_train_seconds(env)  # the tensor cache, as a class's server would have it
    cli_seconds = cli_train_seconds(env)  # the same run by the CLI on the idle machine, for comparison
    server, url = start_server(env)
    latencies: list[float] = []
    by_page: dict[str, list[float]] = {}
    finished = [0, 0]
    cli_under_load: list[float] = []
    samples: list[tuple[float, float]] = []
    cpu_split: dict[str, float] = {}

    async def settled(page, timeout_ms: float = 60_000) -> None:
        await page.wait_for_function(SETTLED_JS, timeout=timeout_ms)

    async def sample(stop_at: float) -> None:
        last_cpu, last_time = _cpu_seconds(server.pid), time.monotonic()
        while time.monotonic() < stop_at:
            await asyncio.sleep(2)
            cpu, now = _cpu_seconds(server.pid), time.monotonic()
            samples.append((_rss_mib(server.pid), 100 * (cpu - last_cpu) / (now - last_time)))
            last_cpu, last_time = cpu, now

    async def trainer(context, index: int, stop_at: float) -> None:
        page = await context.new_page()
        while time.monotonic() < stop_at:
            try:
                if not page.url.endswith("/training-studio"):
                    await page.goto(f"{url}/training-studio")
                await settled(page, 120_000)
                await page.get_by_role("button", name="Start training").click()
                active = page.get_by_role("button", name=re.compile(r"^(Stop training|Leave the queue)$"))
                await active.first.wait_for(timeout=120_000)
                left = max(5.0, stop_at - time.monotonic()) * 1000
                await active.first.wait_for(state="detached", timeout=left)
                await page.get_by_role("button", name="Stop training").wait_for(state="detached", timeout=left)
                await page.get_by_text("Finished:").first.wait_for(timeout=60_000)
            except Exception as exc:  # noqa: BLE001 - the time ran out mid-run, or a run went wrong
                if time.monotonic() < stop_at - 5:
                    print(f"trainer {index}: {type(exc).__name__}: {str(exc).splitlines()[0][:300]}", flush=True)
                    await page.screenshot(path=str(cache / f"trainer-{index}-failed.png"), full_page=True)
                break
            finished[index] += 1

    async def cli_trainer(stop_at: float) -> None:
        """The CLI's default run, again and again, in a session of its own (as an app worker is): what a run
        gets from this machine under the same load, without the app."""
        while time.monotonic() < stop_at:
            process = await asyncio.create_subprocess_exec(
                *CLI_DEFAULT_RUN, cwd=ROOT, env=env,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, start_new_session=True,
                preexec_fn=_out_of_the_browsers_cgroup if args.browser_cpu_shares else None)
            try:
                out, err = await asyncio.wait_for(process.communicate(), timeout=max(1.0, stop_at - time.monotonic()))
            except asyncio.TimeoutError:
                if process.returncode is None:
                    with contextlib.suppress(ProcessLookupError):  # it may end just now
                        os.killpg(process.pid, signal.SIGTERM)  # its own group, by its id
                await process.wait()
                break
            if process.returncode != 0:
                print(f"the CLI's run failed ({process.returncode}): {err.decode(errors='replace')[-500:]}", flush=True)
                break
            cli_under_load.append(train_seconds(out.decode()))

    async def student(context, path: str, widget: str, stop_at: float) -> None:
        page = await context.new_page()
        await page.goto(f"{url}/{path}", timeout=120_000)  # a starved browser (--browser-cpu-shares) is slow
        await settled(page, 120_000)
        while time.monotonic() < stop_at:
            clicked = time.monotonic()
            try:
                if widget == "reload" and args.open == "sidebar":  # to Home and back, as a student moves
                    going_home = page.url.rstrip("/").endswith(path)
                    await page.locator(sidebar_link_selector("" if going_home else path)).first.click()
                elif widget == "reload":
                    await page.reload()
                else:
                    await page.get_by_role("button", name=widget).first.click()
                await page.wait_for_timeout(50)
                await settled(page)
            except Exception:  # noqa: BLE001 - counted as the time it took to fail
                pass
            latencies.append(time.monotonic() - clicked)
            action = widget if widget != "reload" or args.open == "reload" else "sidebar link, and Home's"
            by_page.setdefault(f"{path} ({action})", []).append(latencies[-1])
            await asyncio.sleep(args.think)

    async def main() -> None:
        async with async_playwright() as playwright:
            launch = lambda: playwright.chromium.launch(executable_path=str(CHROMIUM_PATH), args=CHROMIUM_ARGS)  # noqa: E731
            browsers = [await launch() for _ in range(1 if args.browsers == "one" else 5)]
            contexts = [await browsers[i % len(browsers)].new_context(viewport={"width": 1400, "height": 1000})
                        for i in range(5)]
            stop_at = time.monotonic() + args.minutes * 60
            busy, browsers_cpu, server_cpu = machine_busy_seconds(), browser_cpu_seconds({server.pid}), _cpu_seconds(server.pid)
            await asyncio.gather(
                sample(stop_at),
                trainer(contexts[0], 0, stop_at),
                cli_trainer(stop_at) if args.cli_trainer else trainer(contexts[1], 1, stop_at),
                *(student(contexts[2 + i], path, widget, stop_at) for i, (path, widget) in enumerate(
                    (("dataset-gallery", "Reshuffle"), ("convolution-lab", "reload"), ("predict", "reload")))))
            cpu_split["machine"] = machine_busy_seconds() - busy
            cpu_split["browsers"] = browser_cpu_seconds({server.pid}) - browsers_cpu
            cpu_split["server"] = _cpu_seconds(server.pid) - server_cpu
            for browser in browsers:
                await browser.close()

    try:
        with browsers_cpu_shares(args.browser_cpu_shares):  # the server started outside it
            asyncio.run(main())
    finally:
        _stop(server)
    latencies.sort()
    p95 = latencies[max(0, int(round(0.95 * len(latencies))) - 1)] if latencies else float("nan")
    rss = [s[0] for s in samples]
    cpu = [s[1] for s in samples]
    print(f"{args.minutes:g} minutes, 5 browser contexts in {'one Chromium' if args.browsers == 'one' else 'five Chromiums'}"
          f" (2 training, 3 using pages, {args.think:g} s between a page settling and their next click; pages "
          f"opened by {'reloading' if args.open == 'reload' else 'sidebar links'}"
          f"{f'; browsers in a cgroup with {args.browser_cpu_shares} CPU shares' if args.browser_cpu_shares else ''})")
    seen = f"{finished[0]}" if args.cli_trainer else f"{finished[0]} + {finished[1]}"
    app_seconds = app_run_seconds(cache)  # the run store's count: a run that ends as the time runs out counts
    print(f"studio runs finished: {len(app_seconds)} (seen finished on the trainers' pages: {seen}); their training "
          f"seconds: {', '.join(f'{seconds:.1f}' for seconds in app_seconds)} (the CLI alone before: {cli_seconds:.1f};"
          f" CNN_MAX_CONCURRENT_RUNS {os.environ.get('CNN_MAX_CONCURRENT_RUNS', 'unset: one run at a time on a CPU')})")
    if args.cli_trainer:
        print(f"the CLI's runs under the same load, in place of the second trainer: {len(cli_under_load)}; their "
              f"training seconds: {', '.join(f'{seconds:.1f}' for seconds in cli_under_load)}")
        if app_seconds and cli_under_load:
            print(f"studio / CLI under the same load, ratio of medians: "
                  f"{statistics.median(app_seconds) / statistics.median(cli_under_load):.2f}")
    print(f"interactions: {len(latencies)}, p50 {statistics.median(latencies):.2f} s, p95 {p95:.2f} s")
    for page_widget, values in by_page.items():
        values.sort()
        print(f"  {page_widget}: {len(values)}, p50 {statistics.median(values):.2f} s, "
              f"p95 {values[max(0, int(round(0.95 * len(values))) - 1)]:.2f} s")
    print(f"server RSS: median {statistics.median(rss):.0f} MiB, max {max(rss):.0f} MiB; "
          f"server CPU: median {statistics.median(cpu):.0f} %, max {max(cpu):.0f} %")
    wall = args.minutes * 60
    rest = cpu_split["machine"] - cpu_split["browsers"] - cpu_split["server"]
    print(f"where the cores went (of {os.cpu_count()} cores x {wall:.0f} s = {os.cpu_count() * wall:.0f} CPU-s; "
          f"{cpu_split['machine']:.0f} busy): browsers and their driver {cpu_split['browsers']:.0f}, "
          f"app server {cpu_split['server']:.0f}, training workers and the rest {rest:.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="what", required=True)
    duel = sub.add_parser("race", help="(a) the studio's default MNIST run with its page open against the CLI")
    duel.add_argument("--repeats", type=int, default=3, help="studio runs (and CLI runs after each)")
    load = sub.add_parser("classroom", help="(b) five browsers on one server")
    load.add_argument("--minutes", type=float, default=4.0)
    load.add_argument("--think", type=float, default=1.0,
                      help="seconds a student waits after a page settled before the next click (default 1, as "
                           "measured since the issue was filed: three such students keep about 1.7 of the 2 cores "
                           "busy in their browsers)")
    load.add_argument("--open", choices=("reload", "sidebar"), default="reload",
                      help="how two of the students open their page again and again: by reloading it (default, as "
                           "measured since the issue was filed; the browser parses the whole frontend each time) or "
                           "by its link in the sidebar, to Home and back, as students move between pages "
                           "(bench_pages.py: 0.2-0.4 CPU-s of Chromium per click against 0.7-1.3 per reload)")
    load.add_argument("--browser-cpu-shares", type=int, default=0,
                      help="put this driver and the five Chromiums in a CPU cgroup with these shares (the server "
                           "has 1024), e.g. 64, to model a class whose browsers run on the students' own machines: "
                           "they then get only the cores the server leaves. Linux, cgroup v1 'cpu', root. Default "
                           "0: no cgroup, they compete with the server and the trainers as equals. (A nice level "
                           "does not do this: each Chromium is its own session, so the kernel's autogroups give "
                           "it an equal share whatever its nice level; measured, runs took as long at nice 10.)")
    load.add_argument("--cli-trainer", action="store_true",
                      help="the second trainer runs the CLI's default MNIST run again and again (in a session of its "
                           "own) instead of the studio's: the studio's runs against the CLI's under the same load")
    load.add_argument("--browsers", choices=("one", "separate"), default="separate",
                      help="one Chromium per context (default, as measured since the issue was filed) or the five "
                           "contexts in one Chromium (measured: slower, its one browser process serialises them)")
    args = parser.parse_args()
    {"race": race, "classroom": classroom}[args.what](args)


if __name__ == "__main__":
    main()
