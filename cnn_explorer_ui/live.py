"""A training run's live progress, drawn by the browser from a small JSON endpoint instead of by reruns.

Why: on a 2-core laptop the browser, the app server and the training worker share the cores. A Streamlit
fragment that reruns every second or two to move a progress bar makes the browser re-render part of the page
each time (about 0.1 s of CPU, measured), and every such burst stalls one of PyTorch's two threads while the
other waits for it. Here the page draws the run panel once; a small component polls
`GET /_cnn/runs/<id>/progress?token=…` every `POLL_SECONDS` (a few hundred bytes of JSON, no rerun) and moves
its bar. It asks Streamlit for a rerun of the panel only when the page has something new to draw: the run left
the queue or ended, or there are new points and the charts are `CHART_REFRESH_SECONDS` old. If the endpoint
cannot be reached (e.g. a proxy that passes only Streamlit's own paths), the panel falls back to rerunning
every `FALLBACK_SECONDS`.

Privacy: the token is an HMAC of the run id under a key made when the server starts, handed only to the page
that shows the run (its owner's), so nobody reads another browser's progress by guessing ids.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import secrets

import streamlit as st

from cnn_core import runs

POLL_SECONDS = 1.0  # how often the browser asks for the run's progress (a fetch of ~300 bytes, no rerun)
CHART_REFRESH_SECONDS = 10.0  # the charts are redrawn at most this often while the run trains ...
#: ... once they show `EARLY_POINTS` batch points; before, every `EARLY_REFRESH_SECONDS`, and at once when the first
#: points arrive: a default MNIST run or a small upload's ends in about 10 s, and its charts stayed empty until done.
EARLY_REFRESH_SECONDS = 2.0
EARLY_POINTS = 20
FALLBACK_SECONDS = 3.0  # the panel reruns this often when the endpoint cannot be reached
PROGRESS_PATH = "/_cnn/runs/{run_id}/progress"
_KEY = secrets.token_bytes(32)  # per server process: a restarted server hands out new tokens with new pages

_JS = """
export default function(component) {
  const { data, parentElement, setTriggerValue } = component;
  let root = parentElement.querySelector('.live-progress');
  if (!root) {
    root = document.createElement('div');
    root.className = 'live-progress';
    root.setAttribute('data-testid', 'liveProgress');
    root.setAttribute('role', 'progressbar');
    root.setAttribute('aria-valuemin', '0');
    root.setAttribute('aria-valuemax', '100');
    root.innerHTML = '<div class="text"></div><div class="track"><div class="fill"></div></div>';
    parentElement.appendChild(root);
  }
  if (root.stopPolling) root.stopPolling();  // one poller per panel, however often it is redrawn
  const text = root.querySelector('.text'), fill = root.querySelector('.fill');
  const show = (p) => {
    text.textContent = p.text;
    fill.style.width = (100 * p.fraction).toFixed(1) + '%';
    root.setAttribute('aria-valuenow', String(Math.round(100 * p.fraction)));
  };
  show(data);
  const drawnAt = Date.now();
  let timer = null, stopped = false;
  const rerun = (why) => { if (!stopped) { stopped = true; setTriggerValue('changed', why + ' ' + Date.now()); } };
  const poll = async () => {
    if (stopped) return;
    try {
      const response = await fetch(data.url, { cache: 'no-store', credentials: 'same-origin' });
      if (!response.ok) throw new Error('HTTP ' + response.status);
      const p = await response.json();
      if (stopped) return;
      show(p);
      if (p.status !== data.status) return rerun('status');
      if ((p.epochs > data.epochs || p.steps > data.steps) && Date.now() - drawnAt >= data.redraw_ms) return rerun('charts');
    } catch (error) {
      if (Date.now() - drawnAt >= data.fallback_ms) return rerun('fallback');
    }
    if (!stopped) timer = setTimeout(poll, data.poll_ms);
  };
  timer = setTimeout(poll, data.poll_ms);
  root.stopPolling = () => { stopped = true; clearTimeout(timer); };
  return root.stopPolling;
}
"""

_CSS = """
.live-progress .text { font-size: 0.875rem; margin-bottom: 0.25rem; }
.live-progress .track { height: 0.5rem; border-radius: 0.25rem; overflow: hidden;
  background: var(--st-secondary-background-color, #f0f2f6); }
.live-progress .fill { height: 100%; width: 0; background: var(--st-primary-color, #ff4b4b);
}
"""


@functools.cache
def run_manager() -> runs.RunManager:
    """The one run manager of this server process: every session, tab and the progress endpoint see the same
    runs and queue. Raises `CnnError` for bad settings (e.g. CNN_MAX_CONCURRENT_RUNS is not a number)."""
    return runs.RunManager()


def run_token(run_id: str) -> str:
    """The token that lets a page read `run_id`'s progress: HMAC-SHA256 of the id, 32 hex digits."""
    return hmac.new(_KEY, run_id.encode(), hashlib.sha256).hexdigest()[:32]


def progress_text(snap: runs.RunSnapshot) -> str:
    """The line above a run's progress bar: where it is, how long it took or how long is left."""
    progress = snap.progress()
    elapsed = runs.format_seconds(progress.elapsed)
    where = f"step {progress.step:,} of {progress.total_steps:,} (epoch {max(progress.epoch, 1)})"
    if snap.status is runs.RunStatus.QUEUED:
        return f"Waiting for the trainer: {snap.queue_ahead} ahead of you"
    if snap.start is None and snap.status.active:
        return f"Loading {snap.dataset_title} and building the model… {elapsed}"
    if snap.status is runs.RunStatus.RUNNING and not snap.batches and snap.status_message:
        return f"{snap.status_message} · {elapsed} elapsed"  # e.g. a transfer model's features, before the first step
    if snap.status is runs.RunStatus.FINISHED:
        return (f"Done: {snap.end.epochs_run} of {progress.epochs} epoch(s)"
                + (", stopped early" if snap.end.stopped_early else "")
                + f", {progress.step:,} steps, {elapsed} from start to end (loading and testing included)")
    if snap.status is runs.RunStatus.CANCELLED:
        return f"Stopped at {where}, {elapsed} from the start" if snap.start else "Stopped before it started"
    if snap.status is runs.RunStatus.FAILED:
        return f"Failed at {where} after {elapsed}" if snap.start else f"Failed after {elapsed}"
    if snap.status is runs.RunStatus.INTERRUPTED:
        return f"Interrupted at {where}: the server stopped" if snap.start else "Interrupted: the server stopped"
    eta = "estimating…" if progress.eta is None else f"about {runs.format_seconds(progress.eta)} left"
    return (f"Epoch {max(progress.epoch, 1)} of {progress.epochs} · step {progress.step:,} of "
            f"{progress.total_steps:,} · {elapsed} elapsed · {eta}")


def progress_state(snap: runs.RunSnapshot) -> dict:
    """What the endpoint returns and the component starts from: status, fraction done (0-1), the text line,
    epochs ended and the last step recorded (the component compares these to decide on a redraw)."""
    return {"status": snap.status.value, "active": snap.status.active, "fraction": snap.progress().fraction,
            "text": progress_text(snap), "epochs": len(snap.epochs),
            "steps": snap.batches[-1].step if snap.batches else 0}


def progress_json(run_id: str, token: str) -> tuple[int, dict]:
    """(HTTP status, body) for the progress endpoint: 404 for a wrong token or an unknown run, alike, so the
    answer says nothing about other browsers' runs."""
    if not hmac.compare_digest(run_token(run_id), token or ""):
        return 404, {"error": "no such run"}
    try:
        return 200, progress_state(run_manager().progress_snapshot(run_id))
    except KeyError:
        return 404, {"error": "no such run"}


_component = st.components.v2.component("cnn_live_progress", js=_JS, css=_CSS)


def chart_refresh_seconds(points: int) -> float:
    """How long the charts showing `points` batch points wait before they are redrawn with newer ones."""
    return 0.0 if points == 0 else EARLY_REFRESH_SECONDS if points < EARLY_POINTS else CHART_REFRESH_SECONDS


def live_progress(snap: runs.RunSnapshot) -> None:
    """Mount the self-updating progress bar for an active run. The enclosing fragment reruns when the bar
    asks for it (`on_changed_change`): the caller draws what changed."""
    base = (st.get_option("server.baseUrlPath") or "").strip("/")
    url = ("/" + base if base else "") + PROGRESS_PATH.format(run_id=snap.id) + f"?token={run_token(snap.id)}"
    data = {**progress_state(snap), "url": url, "poll_ms": int(POLL_SECONDS * 1000),
            "redraw_ms": int(1000 * chart_refresh_seconds(len(snap.batches))), "fallback_ms": int(FALLBACK_SECONDS * 1000)}
    _component(key=f"studio_live_{snap.id}", data=data, on_changed_change=lambda: None)
