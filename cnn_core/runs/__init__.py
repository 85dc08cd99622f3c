"""Training runs in the background, for the app: the run outlives the page script that started it.

A Streamlit script reruns on every click, and every browser tab is its own session, so a training loop
inside a page would die (or start twice) when the student touches a widget. Instead, `RunManager` keeps
a process-wide registry of runs: each one is a worker thread that consumes `cnn_core.training.train()` and
stores its events under a lock, with a `threading.Event` to cancel it. The page keeps only the run id and
polls `RunManager.snapshot()` for a consistent copy to draw.

Each owner (a browser) has at most one active run; at most `max_concurrent` runs train at once
(`CNN_MAX_CONCURRENT_RUNS`; 1 on a CPU, 2 on a GPU) and the rest wait in a first-come queue, told how
many runs are ahead of them. Errors a person can act on (`CnnError`: a missing data set, a diverging
loss) end the run with their message; anything else is logged and reported as an unexpected failure.
"""

from .commands import ENV_MAX_CONCURRENT, augment_options, check_run_config, checkpoint_path_for, cli_command, default_max_concurrent
from .manager import RUNS_KEPT_IN_ALL, RUNS_KEPT_PER_OWNER, RunBusyError, RunManager
from .records import MISCLASSIFIED_KEPT, Misclassified, Progress, RunSnapshot, RunStatus, format_seconds, misclassified_examples, run_progress, smooth

__all__ = [
    "ENV_MAX_CONCURRENT",
    "MISCLASSIFIED_KEPT",
    "RUNS_KEPT_IN_ALL",
    "RUNS_KEPT_PER_OWNER",
    "Misclassified",
    "Progress",
    "RunBusyError",
    "RunManager",
    "RunSnapshot",
    "RunStatus",
    "augment_options",
    "check_run_config",
    "checkpoint_path_for",
    "cli_command",
    "default_max_concurrent",
    "format_seconds",
    "misclassified_examples",
    "run_progress",
    "smooth",
]
