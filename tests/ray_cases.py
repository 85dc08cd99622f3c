"""Ray back-end cases, run by tests/test_ray.py inside a fresh network namespace that has only loopback
(`unshare -n`): a real Ray head is started here, on 127.0.0.1, in its own process group, and stopped by that
group's id. Not collected on its own (the file name does not start with test_)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from cnn_core.cli import main
from cnn_core.runs import RunManager, RunStatus
from cnn_core.settings import runs_dir
from cnn_core.training import TrainConfig
from ray_background import HEAD_PID_FILE_ENV, kill_session

QUICK = dict(dataset="mnist", model="fastnet", epochs=1, batch_size=32, lr=0.01)
LONG = dict(dataset="mnist", model="fastnet", epochs=1000, batch_size=8, lr=0.01)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def ray_head():
    """`ray start --head --block` on 127.0.0.1, usage statistics off; its process group ends it."""
    port = _free_port()
    temp = tempfile.mkdtemp(prefix="cnnray-", dir="/tmp")  # Ray's socket paths must stay short
    ray_cli = Path(sys.executable).with_name("ray")
    head = subprocess.Popen(
        [str(ray_cli), "start", "--head", "--block", f"--port={port}", "--node-ip-address=127.0.0.1",
         "--disable-usage-stats", "--include-dashboard=false", "--num-cpus=2", f"--temp-dir={temp}"],
        env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}, start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    if os.environ.get(HEAD_PID_FILE_ENV):
        Path(os.environ[HEAD_PID_FILE_ENV]).write_text(str(head.pid))
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or head.poll() is not None:
                    raise RuntimeError("the Ray head did not start")
                time.sleep(0.3)
        yield f"127.0.0.1:{port}"
    finally:
        import ray

        ray.shutdown()
        kill_session(head.pid)  # on SIGTERM the head took about 34 s to end
        head.wait(timeout=30)
        shutil.rmtree(temp, ignore_errors=True)


@pytest.fixture
def on_ray(ray_head, monkeypatch):
    monkeypatch.setenv("CNN_RAY_ADDRESS", ray_head)
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    return ray_head


def test_the_cli_trains_on_the_cluster_and_brings_the_checkpoint_back(tiny_data_dir, on_ray, tmp_path, capsys):
    out = tmp_path / "digits.safetensors"
    code = main(["train", "--data", "mnist", "--epochs", "2", "--batch-size", "32", "--out", str(out),
                 "--backend", "ray", "--json"])  # fmt: skip
    captured = capsys.readouterr()
    assert code == 0, captured.err
    summary = json.loads(captured.out.strip().splitlines()[-1])
    assert summary["epochs_run"] == 2 and summary["checkpoint"] == str(out)
    assert out.is_file() and out.with_suffix(".json").is_file() and out.with_suffix(".md").is_file()
    assert "epoch 2:" in captured.err and f"Ray cluster at {on_ray}" in captured.err
    assert main(["evaluate", "--checkpoint", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["accuracy"] == pytest.approx(summary["test_metrics"]["accuracy"])
    assert main(["runs", "list", "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["backend"] == "ray" and row["origin"] == "cli" and row["status"] == "finished"


def test_the_studios_run_interface_uses_the_cluster(tiny_data_dir, on_ray):
    manager = RunManager(max_concurrent=2)
    assert manager.backend.name == "ray" and manager.notice is None
    run_id = manager.submit("ada", TrainConfig(**QUICK))
    snap = manager.wait(run_id, timeout=180)
    assert snap.status is RunStatus.FINISHED, snap.error
    assert snap.backend == "ray" and len(snap.epochs) == 1 and snap.test_accuracy is not None
    assert len(snap.misclassified) == min(32, round((1 - snap.test_accuracy) * 60)) and snap.note is None
    assert Path(snap.checkpoint_path).is_file() and Path(snap.checkpoint_path).parent == runs_dir()
    # A stop reaches the task through its control queue and keeps the best weights so far.
    long_id = manager.submit("bea", TrainConfig(**LONG))
    deadline = time.monotonic() + 120
    while not manager.snapshot(long_id).epochs:
        assert time.monotonic() < deadline, "no epoch on the cluster"
        time.sleep(0.2)
    assert manager.cancel(long_id)
    stopped = manager.wait(long_id, timeout=60)
    assert stopped.status is RunStatus.CANCELLED and stopped.end.best_epoch >= 1
    assert Path(stopped.checkpoint_path).is_file()
