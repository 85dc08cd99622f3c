"""Shared fixtures: tiny data sets in the real file formats, and the app served to headless Chromium."""

import os
from pathlib import Path

import pytest

# Fixture modules live beside this file (pytest puts this folder on sys.path).
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
