"""What whoever runs a class server does from the command line: see every run, and stop runs (a student's
1,000 epochs holding the trainer while the class waits, a browser that lost the cookie of its run)."""

from __future__ import annotations

import time

from ..errors import ConfigError
from ..reports import metric_text
from .records import RunStatus
from .store import CLI_OWNER, RunStore


def run_rows(store: RunStore) -> list[dict]:
    """`RunStore.summaries`, each browser named by a digest of its id (the id is its cookie: never shown)."""
    from ..data.uploads import owner_digest

    rows = store.summaries()
    for row in rows:
        if row["owner"] != CLI_OWNER:
            row["owner"] = "browser " + owner_digest(row["owner"])[:8]
    return rows


def run_table(rows: list[dict]) -> str:
    """`run_rows` as `runs list` prints them: one line per run, the id cut to the 8 characters `runs stop` takes."""
    lines = [f"{'id':<10} {'owner':<17} {'data set':<16} {'model':<28} {'status':<12} {'test acc':>8}  checkpoint"]
    for row in rows:
        accuracy = metric_text("accuracy", row["test_accuracy"], decimals=2) if row["test_accuracy"] is not None else "—"
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(row["created"]))
        lines.append(f"{row['id'][:8]:<10} {row['owner']:<17} {row['dataset'][:16]:<16} {row['model'][:28]:<28} "
                     f"{row['status']:<12} {accuracy:>8}  {row['checkpoint'] or '—'}   ({when})")
    return "\n".join(lines)


def stop_runs(prefixes: list[str], store: RunStore) -> list[str]:
    """Ask the app's queued or training runs named by `prefixes` (an id, or its first characters as `runs list`
    shows them; "active": all of them) to stop: the server's worker stops within a second and keeps the best
    weights, a queued run leaves the queue. Returns their ids. ConfigError, before any is asked, for a prefix
    that names no run or several, a run that is over, or a command line's run (Ctrl+C stops it where it runs)."""
    runs = {row["id"]: row for row in store.summaries()}
    stoppable = [run_id for run_id, row in runs.items() if RunStatus(row["status"]).active and row["origin"] == "app"]
    if prefixes == ["active"]:
        chosen = stoppable
    else:
        chosen = []
        for prefix in prefixes:
            named = [run_id for run_id in runs if prefix and run_id.startswith(prefix)]
            if len(named) != 1:
                raise ConfigError(f"{prefix!r} names {'no run' if not named else f'{len(named)} runs'}; "
                                  "`python -m cnn_core runs list` shows their ids.")
            row = runs[named[0]]
            if not RunStatus(row["status"]).active:
                raise ConfigError(f"Run {prefix!r} is {row['status']}: only a queued or training run can be stopped.")
            if named[0] not in stoppable:
                raise ConfigError(f"Run {prefix!r} was started from a command line: stop it there (Ctrl+C).")
            chosen.append(named[0])
    for run_id in chosen:
        store.request_cancel(run_id)
    return chosen
