"""Training runs outside the web server: worker processes, persisted in SQLite, private to their owner.

A Streamlit script reruns on every click and every browser tab is its own session, so a run must outlive the
page that started it, and must not share the server's interpreter: `RunManager` starts each run in a worker
process (`worker.LocalBackend`) that writes its events into the run store (`store.RunStore`, a SQLite file in
CNN_CACHE_DIR). Pages keep only the run id and read `RunManager.snapshot()`; after a server restart the runs
are still there, and a run whose worker died with the server is marked interrupted. The CLI records its runs
in the same store (`record_run`). Each local run writes a TensorBoard log into its own folder (`logs`). `library` says what one owner may see: the shipped checkpoints and their own.
"""

from .commands import (ENV_MAX_CONCURRENT, augment_options, check_run_config, checkpoint_path_for, cli_command,
                       default_max_concurrent, server_setting_problems)
from .library import (Forgotten, checkpoint_label, checkpoints_for, forget_owner, owned_checkpoint_files,
                      prune_uploaded_checkpoints, record_upload, restore_uploads, store_uploaded_checkpoint, was_forgotten)
from .logs import has_tensorboard_log, run_log_dir, tensorboard_zip
from .manager import RUNS_SHOWN_PER_OWNER, RunBusyError, RunManager
from .records import MISCLASSIFIED_KEPT, Misclassified, Progress, RunSnapshot, RunStatus, format_seconds, misclassified_examples, run_progress, smooth
from .store import CLI_OWNER, RunStore, default_db_path
from .worker import max_run_seconds, record_run

__all__ = [
    "CLI_OWNER",
    "ENV_MAX_CONCURRENT",
    "MISCLASSIFIED_KEPT",
    "Forgotten",
    "RUNS_SHOWN_PER_OWNER",
    "Misclassified",
    "Progress",
    "RunBusyError",
    "RunManager",
    "RunSnapshot",
    "RunStatus",
    "RunStore",
    "augment_options",
    "check_run_config",
    "checkpoint_label",
    "checkpoint_path_for",
    "checkpoints_for",
    "cli_command",
    "default_db_path",
    "default_max_concurrent",
    "forget_owner",
    "format_seconds",
    "has_tensorboard_log",
    "misclassified_examples",
    "owned_checkpoint_files",
    "record_run",
    "record_upload",
    "restore_uploads",
    "max_run_seconds",
    "store_uploaded_checkpoint",
    "prune_uploaded_checkpoints",
    "server_setting_problems",
    "was_forgotten",
    "run_log_dir",
    "run_progress",
    "smooth",
    "tensorboard_zip",
]
