"""A run's own folder of logs: where a studio run writes its TensorBoard log, and that folder as a zip file.

`run_log_dir(run_id)` is `<runs folder>/tensorboard/<run id>`; the worker of a local run writes there
(`training.tensorboard`), and `tensorboard_zip` packs it for a download (unzip, then `tensorboard --logdir .`).
"""

from __future__ import annotations

import io
import re
import zipfile
from pathlib import Path

from ..errors import CnnError
from ..settings import runs_dir

TENSORBOARD_FOLDER = "tensorboard"
_RUN_ID = re.compile(r"[0-9a-f]{8,64}")


def run_log_dir(run_id: str) -> Path:
    """The TensorBoard log folder of a run (not created here). Raises CnnError for an id that is not a run id
    (hex digits), so no path outside the runs folder can be named."""
    if not isinstance(run_id, str) or not _RUN_ID.fullmatch(run_id):
        raise CnnError(f"{run_id!r} is not a run id.")
    return runs_dir() / TENSORBOARD_FOLDER / run_id


def has_tensorboard_log(run_id: str) -> bool:
    """Whether the run's log folder holds at least one TensorBoard event file."""
    folder = run_log_dir(run_id)
    return folder.is_dir() and any(folder.rglob("events.out.tfevents.*"))


def tensorboard_zip(run_id: str) -> bytes:
    """The run's log folder as zip bytes, its files under `<first 8 characters of the id>/`.

    Raises CnnError when the run has no TensorBoard log (a run on a Ray cluster, or from before logs)."""
    folder = run_log_dir(run_id)
    if not has_tensorboard_log(run_id):
        raise CnnError(f"Run {run_id[:8]} has no TensorBoard log.")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for file in sorted(folder.rglob("*")):
            if file.is_file():
                archive.write(file, arcname=str(Path(run_id[:8]) / file.relative_to(folder)))
    return buffer.getvalue()
