"""The Training Studio's live progress endpoint (`cnn_explorer_ui.live`): the JSON its bar polls, and who may
read it. The browser side is in test_browser_studio (the bar moves without a rerun; a wrong token gets 404)."""

from __future__ import annotations

import re

import pytest

from cnn_core.runs import RunManager, RunStatus
from cnn_core.training import TrainConfig
from cnn_explorer_ui import live

QUICK = dict(dataset="mnist", model="fastnet", epochs=1, batch_size=32, lr=0.01)
LONG = dict(QUICK, epochs=1000, batch_size=8)  # still training when the test reads it


@pytest.fixture
def manager(tiny_data_dir, monkeypatch):
    manager = RunManager(max_concurrent=1)
    monkeypatch.setattr(live, "run_manager", lambda: manager)
    return manager


def test_tokens_are_per_run_and_hold_no_id():
    assert live.run_token("a") == live.run_token("a")
    assert live.run_token("a") != live.run_token("b")
    token = live.run_token("3f2a9c")
    assert len(token) == 32 and int(token, 16) >= 0


def test_the_endpoint_answers_the_owner_page_only_and_the_same_for_unknown_runs(manager):
    run_id = manager.submit("alice", TrainConfig(**QUICK))
    manager.wait(run_id, timeout=120)
    status, body = live.progress_json(run_id, live.run_token(run_id))
    assert status == 200
    assert body["status"] == "finished" and body["active"] is False and body["fraction"] == 1.0
    assert body["text"].startswith("Done: 1 of 1 epoch(s)") and body["epochs"] == 1 and body["steps"] > 0
    # The endpoint reads one batch row, yet says what the full snapshot says.
    full = manager.snapshot(run_id)
    assert body == live.progress_state(full) and len(manager.progress_snapshot(run_id).batches) == 1
    # A guessed token, no token, or a real token for an unknown run: one answer, which says nothing.
    for args in ((run_id, "0" * 32), (run_id, ""), ("nosuchrun", live.run_token("nosuchrun"))):
        assert live.progress_json(*args) == (404, {"error": "no such run"})


def test_a_queued_run_says_how_many_are_ahead_and_a_training_one_where_it_is(manager):
    first = manager.submit("a", TrainConfig(**LONG))
    second = manager.submit("b", TrainConfig(**LONG))
    try:
        body = live.progress_json(second, live.run_token(second))[1]
        assert body == {**body, "status": "queued", "active": True, "fraction": 0.0, "epochs": 0, "steps": 0}
        assert body["text"] == "Waiting for the trainer: 1 ahead of you"
        body = None
        for _ in range(600):  # the first run's steps, as the bar shows them
            body = live.progress_json(first, live.run_token(first))[1]
            if body["steps"]:
                break
            manager.wait(first, timeout=0.1)
        assert body["status"] == "running" and body["steps"] > 0
        # a loaded machine may poll only after the first epoch (28 steps) ended
        assert re.match(r"Epoch \d+ of 1000 · step [\d,]+ of 28,000 · ", body["text"]), body["text"]
        assert 0 < body["fraction"] < 1
    finally:
        manager.cancel(second)
        manager.cancel(first)
        assert manager.wait(first, timeout=30).status is RunStatus.CANCELLED
    left = live.progress_json(second, live.run_token(second))[1]  # it left the queue: no step 0 of 0
    assert left["text"] == "Stopped before it started", left["text"]


def test_a_stopped_run_says_whether_its_last_epoch_finished():
    from types import SimpleNamespace as Run

    from cnn_explorer_ui.studio_views import _kept_at_stop, stop_point

    partial = Run(end=Run(epochs_run=1, steps=100, best_epoch=1, checkpoint_path="run.safetensors"),
                  start=Run(steps_per_epoch=215), resolved=Run(epochs=3))
    assert stop_point(partial) == "Stopped during epoch 1, at step 100 of 645"
    assert _kept_at_stop(partial) == " The checkpoint keeps the weights at the stop (checked on the validation split)."
    whole = Run(end=Run(epochs_run=2, steps=430, best_epoch=1, checkpoint_path="run.safetensors"),
                start=Run(steps_per_epoch=215), resolved=Run(epochs=3))
    assert stop_point(whole) == "Stopped after 2 epochs"
    assert _kept_at_stop(whole) == " The checkpoint keeps the best weights so far (epoch 1)."
    whole.end.checkpoint_path = None
    assert _kept_at_stop(whole) == ""


def test_charts_are_drawn_when_their_first_points_come_then_less_and_less_often():
    # a default MNIST run ends in about 10 s: redrawn only every 10 s, its "live" charts stayed empty until done
    assert live.chart_refresh_seconds(0) == 0.0
    assert live.chart_refresh_seconds(1) == live.EARLY_REFRESH_SECONDS < live.CHART_REFRESH_SECONDS
    assert live.chart_refresh_seconds(live.EARLY_POINTS) == live.CHART_REFRESH_SECONDS
    assert "data.redraw_ms" in live._JS  # the component waits what the panel says
