"""The CLI's commands and its errors: one clear line and exit status 2, never a traceback."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cnn_core.cli import main

ROOT = Path(__file__).resolve().parents[1]


def run_cli(*args, env=None):
    """The CLI as a user runs it, in a subprocess."""
    return subprocess.run(
        [sys.executable, "-m", "cnn_core", *args], cwd=ROOT, capture_output=True, text=True, env=env or os.environ.copy(), timeout=300
    )


def test_help_on_every_command():
    for command in ([], ["datasets"], ["models"], ["train"], ["evaluate"], ["predict"], ["download"]):
        result = run_cli(*command, "--help")
        assert result.returncode == 0, result.stderr
        assert "usage:" in result.stdout


def test_datasets_and_models(tiny_data_dir, capsys):
    assert main(["datasets", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["mnist"]["available"] and rows["pathmnist"]["available"] and rows["scans"]["available"]
    assert not rows["dermamnist"]["available"] and "dermamnist" in rows["dermamnist"]["how_to_get"]
    assert main(["models"]) == 0
    assert "fastnet" in capsys.readouterr().out


def test_train_evaluate_predict(tiny_data_dir, tmp_path, capsys):
    out = tmp_path / "digits.safetensors"
    assert main(["train", "--data", "mnist", "--epochs", "2", "--batch-size", "32", "--out", str(out), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["epochs_run"] == 2 and summary["train_seconds"] > 0
    assert 0 <= summary["test_metrics"]["accuracy"] <= 1
    card = json.loads(out.with_suffix(".json").read_text())
    assert card["command"].startswith("python -m cnn_core train --data mnist")
    assert main(["evaluate", "--checkpoint", str(out), "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["accuracy"] == pytest.approx(summary["test_metrics"]["accuracy"], abs=1e-6)
    for key in ("auroc", "kappa"):
        assert key in metrics
    from PIL import Image

    image = tmp_path / "digit seven.png"
    Image.new("L", (40, 40), 0).save(image)
    assert main(["predict", "--checkpoint", str(out), str(image), "--json"]) == 0
    line = json.loads(capsys.readouterr().out)
    assert line["label"] in card["class_names"]


def test_binary_evaluate_has_sensitivity_and_specificity(tiny_data_dir, tmp_path, capsys):
    out = tmp_path / "breast.safetensors"
    assert main(["train", "--data", "breastmnist", "--model", "simple_cnn", "--epochs", "1", "--batch-size", "8", "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["evaluate", "--checkpoint", str(out), "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert {"sensitivity", "specificity", "accuracy", "auroc", "kappa"} <= set(metrics)


@pytest.mark.parametrize(
    "args,message",
    [
        (["train", "--data", "nosuchdata", "--out", "x"], "nosuchdata"),
        (["train", "--data", "dermamnist", "--out", "x"], "dermamnist"),
        (["train", "--data", "mnist", "--model", "nosuchmodel"], "Unknown model"),
        (["train", "--data", "mnist", "--lr", "-1"], "Learning rate"),
        (["evaluate", "--checkpoint", "/nonexistent/ckpt.safetensors"], "No checkpoint"),
        (["predict", "--checkpoint", "/nonexistent/ckpt.safetensors", "x.png"], "No checkpoint"),
        (["train", "--data"], "expected one argument"),
        (["frobnicate"], "invalid choice"),
    ],
)
def test_errors_are_one_clear_line_with_status_2(tiny_data_dir, args, message):
    result = run_cli(*args)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) <= 2


def test_bad_checkpoint_file(tiny_data_dir, tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"garbage" * 10)
    result = run_cli("evaluate", "--checkpoint", str(bad))
    assert result.returncode == 2 and "Traceback" not in result.stderr and "bad.safetensors" in result.stderr
