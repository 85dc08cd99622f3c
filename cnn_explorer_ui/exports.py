"""Downloads that take a model or a run out of the app: a checkpoint as ONNX, a studio run's TensorBoard log.

View code only: the files come from `cnn_core.inference.export` and `cnn_core.runs.logs`. The bytes are made
when the button is clicked (Streamlit calls the function on its own thread), and cached per file version.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from cnn_core.inference.export import export_onnx_bytes
from cnn_core.models.checkpoints import load_checkpoint
from cnn_core.runs import RunSnapshot, has_tensorboard_log, run_log_dir, tensorboard_zip


@st.cache_data(max_entries=4, show_spinner=False)
def onnx_file(path: str, mtime_ns: int) -> bytes:
    """The .onnx file of a checkpoint (input card in its metadata); `mtime_ns` makes a rewritten file a new entry.

    Raises CheckpointError when the file is not a checkpoint, ExportError when the exporter fails."""
    return export_onnx_bytes(load_checkpoint(path)).model_bytes


def onnx_download(path: Path, key: str) -> None:
    """A "Download ONNX" button for a checkpoint file, with a help text saying what the graph takes and gives."""
    path = Path(path)
    mtime_ns = path.stat().st_mtime_ns if path.is_file() else 0
    st.download_button(
        "Download ONNX", lambda: onnx_file(str(path), mtime_ns), file_name=f"{path.stem}.onnx",
        mime="application/octet-stream", icon=":material/download:", on_click="ignore", key=key,
        help="The network with its input preparation, for onnxruntime or Netron: input `images`, uint8 "
             "[batch, channels, height, width] at the checkpoint's size; output `probabilities`. The class names "
             "and the full input card are in the file's metadata (`python -m cnn_core export` writes the card as "
             "JSON beside it).",
    )  # fmt: skip


@st.cache_data(max_entries=4, show_spinner=False)
def tensorboard_file(run_id: str, stamp: tuple) -> bytes:
    """The run's TensorBoard log folder as zip bytes; `stamp` (newest file's time, file count) makes a grown
    log a new entry. Raises CnnError when the run has no log."""
    return tensorboard_zip(run_id)


def _log_stamp(run_id: str) -> tuple[int, int]:
    files = [path for path in run_log_dir(run_id).rglob("*") if path.is_file()]
    return max((path.stat().st_mtime_ns for path in files), default=0), len(files)


def tensorboard_download(run: str | RunSnapshot, key: str | None = None) -> None:
    """A "TensorBoard log" button for a studio run (its id, or its snapshot): the run's log folder as a zip,
    to unzip and open with `tensorboard --logdir .`. Says so in a caption instead when the run has no log (a
    run on a Ray cluster, or one from before logs were written)."""
    run_id = run.id if isinstance(run, RunSnapshot) else run
    if not has_tensorboard_log(run_id):
        st.caption("No TensorBoard log for this run.")
        return
    stamp = _log_stamp(run_id)
    st.download_button(
        "TensorBoard log", lambda: tensorboard_file(run_id, stamp), file_name=f"tensorboard-{run_id[:8]}.zip",
        mime="application/zip", icon=":material/download:", on_click="ignore", key=key or f"tensorboard_{run_id}",
        help="The run's TensorBoard log (loss, accuracy and learning rate per step and epoch, the model graph, the "
             "confusion matrix, misclassified test images, options and final metrics) as a zip: unzip it and run "
             "`tensorboard --logdir .`.",
    )  # fmt: skip
