"""The Ray cases (tests/ray_cases.py) in a fresh network namespace that has only loopback, as a background
process. They mostly wait for Ray's processes to start (about 17 CPU-s in a minute), so the suite starts them
once its browser tests are over (those are the timing-sensitive part) and lets them overlap the unit tests;
`tests/test_ray.py` collects the outcome. Run alone, the test starts them itself."""

from __future__ import annotations

import functools
import importlib.util
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HAS_RAY = importlib.util.find_spec("ray") is not None
TEST_NAME = "test_ray_cases_in_a_loopback_only_network_namespace"
#: ray_cases.py writes its Ray head's pid here, so that the head can be ended if the cases are killed.
HEAD_PID_FILE_ENV = "CNN_TEST_RAY_HEAD_PID_FILE"
_running: dict = {}
_started = False


@functools.cache
def unshare_permitted() -> bool:
    """Whether this user may make a network namespace (asked once: `unshare -n true`)."""
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return False
    probe = subprocess.run(["unshare", "-n", "true"], capture_output=True)
    return probe.returncode == 0


def start() -> None:
    """Start the cases once per session (nothing if they cannot run here: the test skips then)."""
    global _started
    if _started or not HAS_RAY or not unshare_permitted():
        return
    _started = True
    folder = Path(tempfile.mkdtemp(prefix="cnn-ray-cases-"))
    script = ("set -e; ip link set lo up; "
              f"exec {sys.executable} -m pytest -q -p no:cacheprovider --basetemp={folder / 'tmp'} "
              f"{ROOT / 'tests' / 'ray_cases.py'}")  # fmt: skip
    # Ray 2.59+ authenticates local clusters with a token; the cases' own, for the head and its clients alike, so
    # a token left in ~/.ray/auth_token by another cluster (a killed run) cannot lock them out.
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", HEAD_PID_FILE_ENV: str(folder / "head.pid"),
           "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    env.pop("CNN_RAY_ADDRESS", None)
    log = open(folder / "ray-cases.log", "w+")  # noqa: SIM115 - the cases write it until they end
    process = subprocess.Popen(["unshare", "-n", "bash", "-c", script], cwd=ROOT, env=env, stdout=log,
                               stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
    _running.update(process=process, log=log, folder=folder)


def outcome(timeout_s: float) -> tuple[int, str]:
    """Wait for the cases: their exit status and output. Past `timeout_s`, or if the wait is interrupted,
    they are ended (`_end`)."""
    process, log, folder = _running["process"], _running["log"], _running["folder"]
    try:
        try:
            process.wait(timeout=timeout_s)
        except BaseException:  # the time is up, or Ctrl-C / pytest-timeout interrupted the wait
            _end(process, folder)
            if process.returncode is None:
                raise
        log.seek(0)
        return process.returncode, log.read()
    finally:
        _running.clear()
        log.close()
        shutil.rmtree(folder, ignore_errors=True)


def stop() -> None:
    """End the cases if the session ends before the test collected them (e.g. `-x` stopped earlier)."""
    if _running:
        _end(_running["process"], _running["folder"])
        outcome(0)


def kill_session(session_id: int) -> None:
    """SIGKILL every process group of a session (by ids, never by name), again until none is left: Ray's
    raylet starts each worker in a group of its own in the head's session, possibly while this runs."""
    for _ in range(20):
        groups = set()
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()  # after "pid (comm)": state ppid pgrp session
            except OSError:
                continue
            if int(fields[3]) == session_id and fields[0] != "Z":
                groups.add(int(fields[2]))
        if not groups:
            return
        for group in groups:
            try:
                os.killpg(group, signal.SIGKILL)
            except ProcessLookupError:
                pass


def _end(process: subprocess.Popen, folder: Path) -> None:
    """SIGINT to the cases' group (pytest's teardown then ends the Ray head), SIGKILL after 30 s; then the
    head's session by its recorded pid, in case the teardown did not run."""
    try:
        os.killpg(process.pid, signal.SIGINT)
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    except ProcessLookupError:
        process.wait()
    head = folder / "head.pid"
    if head.is_file() and head.read_text().strip().isdigit():
        kill_session(int(head.read_text()))
