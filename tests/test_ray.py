"""The Ray back-end. The cluster cases (tests/ray_cases.py) run in a fresh network namespace with only
loopback, so that neither Ray's head nor its client can reach or report to anything but this machine."""

from __future__ import annotations

import socket

import pytest

import ray_background
from cnn_core.runs import RunManager
from ray_background import HAS_RAY, unshare_permitted


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]  # closed again when the with-block ends: nothing listens there


@pytest.mark.skipif(not HAS_RAY, reason="ray is not installed (pip install -e '.[cluster]')")
@pytest.mark.skipif(not unshare_permitted(), reason="unshare -n is not permitted here (needs root or user namespaces)")
@pytest.mark.timeout(900)
def test_ray_cases_in_a_loopback_only_network_namespace():
    """The cases started in the background after the browser tests (see tests/ray_background.py), or now."""
    ray_background.start()
    code, output = ray_background.outcome(timeout_s=840)  # then up to 30 s to end them, within the 900
    report = output[-6000:]
    assert code == 0, report
    assert "2 passed" in output, report


def test_an_unreachable_cluster_falls_back_to_this_machine_with_a_notice(monkeypatch, tiny_data_dir):
    port = _closed_port()
    monkeypatch.setenv("CNN_RAY_ADDRESS", f"127.0.0.1:{port}")
    manager = RunManager(max_concurrent=1)
    assert manager.backend.name == "local"
    if HAS_RAY:
        assert f"Cannot reach the Ray cluster at 127.0.0.1:{port}" in manager.notice
        assert "ray start --head" in manager.notice and "on this machine instead" in manager.notice
    else:
        assert "Ray is not installed" in manager.notice


def test_the_cli_says_in_one_line_that_the_cluster_is_unreachable(monkeypatch, tiny_data_dir, capsys):
    from cnn_core.cli import main

    port = _closed_port()
    monkeypatch.setenv("CNN_RAY_ADDRESS", f"127.0.0.1:{port}")
    assert main(["train", "--data", "mnist", "--epochs", "1", "--backend", "ray"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ")
    assert f"127.0.0.1:{port}" in err[0] if HAS_RAY else "not installed" in err[0]
    monkeypatch.delenv("CNN_RAY_ADDRESS")
    assert main(["train", "--data", "mnist", "--backend", "ray"]) == 2
    assert "needs CNN_RAY_ADDRESS" in capsys.readouterr().err
