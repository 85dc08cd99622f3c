"""Shared fixtures: tiny data sets in the real file formats, and the app served to headless Chromium."""

import os
from pathlib import Path

import pytest

# Fixture modules live beside this file (pytest puts this folder on sys.path).
import ray_background
from data_fixtures import *  # noqa: F401,F403
from browser_fixtures import *  # noqa: F401,F403

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Unit tests never write into the user's cache: each test session gets its own CNN_CACHE_DIR,
    unless CI points CNN_CACHE_DIR somewhere on purpose (kept across real-data tests)."""
    if not os.environ.get("CNN_CACHE_DIR"):
        monkeypatch.setenv("CNN_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "cache"))
    monkeypatch.setenv("CNN_RUNS_DIR", str(tmp_path_factory.getbasetemp() / "runs"))


def pytest_collection_modifyitems(config, items):
    """Tests marked `gpu` run the device path on CUDA (benchmarks/gpu_check.sh runs them); without a CUDA
    device they skip, so the CPU suite never needs a GPU."""
    marked = [item for item in items if "gpu" in item.keywords]
    if not marked:
        return
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device (benchmarks/gpu_check.sh runs these on one)")
    for item in marked:
        item.add_marker(skip)


_START_RAY_AT = pytest.StashKey()


def pytest_collection_finish(session):
    """The Ray cases start in the background at the first test after the browser tests, if the Ray test is
    among the tests that run (after -k, -m, --deselect) and comes later (tests/ray_background.py)."""
    items = session.items
    ray_at = next((n for n, item in enumerate(items) if item.name == ray_background.TEST_NAME), None)
    if ray_at is None:
        return
    last_browser = max((n for n, item in enumerate(items[:ray_at]) if "browser" in item.keywords), default=-1)
    session.config.stash[_START_RAY_AT] = items[last_browser + 1].nodeid


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    if item.config.stash.get(_START_RAY_AT, None) == item.nodeid:
        ray_background.start()


def pytest_sessionfinish(session):
    ray_background.stop()
