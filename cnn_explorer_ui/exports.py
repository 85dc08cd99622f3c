"""Downloads that take a model or a run out of the app: a checkpoint as ONNX, a studio run's TensorBoard log.

View code only: the files come from `cnn_core.inference.export` and `cnn_core.runs.logs`. The bytes are made
when the button is clicked (Streamlit calls the function on its own thread), and cached per file version.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from cnn_core.inference.export import export_onnx_bytes
from cnn_core.models.checkpoints import load_checkpoint


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
