"""The Ray cases (tests/ray_cases.py) in a fresh network namespace that has only loopback, as a background
process. They mostly wait for Ray's processes to start (about 17 CPU-s in a minute), so the suite starts them
once its browser tests are over (those are the timing-sensitive part) and lets them overlap the unit tests;
`tests/test_ray.py` collects the outcome. Run alone, the test starts them itself."""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HAS_RAY = importlib.util.find_spec("ray") is not None
TEST_NAME = "test_ray_cases_in_a_loopback_only_network_namespace"
_running: dict = {}


def unshare_permitted() -> bool:
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return False
    probe = subprocess.run(["unshare", "-n", "true"], capture_output=True)
    return probe.returncode == 0


def start() -> None:
    """Start the cases unless they are running already (or cannot run here: the test skips then)."""
    if _running or not HAS_RAY or not unshare_permitted():
        return
    folder = Path(tempfile.mkdtemp(prefix="cnn-ray-cases-"))
    script = ("set -e; ip link set lo up; "
              f"exec {sys.executable} -m pytest -q -p no:cacheprovider --basetemp={folder / 'tmp'} "
              f"{ROOT / 'tests' / 'ray_cases.py'}")  # fmt: skip
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    env.pop("CNN_RAY_ADDRESS", None)
    log = open(folder / "ray-cases.log", "w+")  # noqa: SIM115 - the cases write it until they end
    process = subprocess.Popen(["unshare", "-n", "bash", "-c", script], cwd=ROOT, env=env, stdout=log,
                               stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
    _running.update(process=process, log=log, folder=folder)


def outcome(timeout_s: float) -> tuple[int, str]:
    """Wait for the cases: their exit status and output. Past `timeout_s` they are interrupted (SIGINT to
    their process group, so that pytest's teardown ends the Ray head), then killed."""
    process, log, folder = _running.pop("process"), _running.pop("log"), _running.pop("folder")
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        _end(process)
    log.seek(0)
    text = log.read()
    log.close()
    shutil.rmtree(folder, ignore_errors=True)
    return process.returncode, text


def stop() -> None:
    """End the cases if the session ends before the test collected them (e.g. `-x` stopped earlier)."""
    if _running:
        _end(_running["process"])
        outcome(0)


def _end(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGINT)
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    except ProcessLookupError:
        process.wait()
