"""Importing what the pages need before a student asks for it, in one background thread per server.

PyTorch, torchvision and the pages' own slow modules take seconds to import on a 2-core CPU (Grad-CAM's
package pulls in matplotlib). `app.py` starts this when the server starts (its lifespan hook), so a student who
opens Predict right after Home does not wait for them; the frame starts it again after the first page, which
does nothing when it already ran. `CNN_WARM_IMPORTS=0` turns it off (benchmarks/bench_first_prediction.py
compares both).
"""

from __future__ import annotations

import gc
import importlib
import logging
import os
import threading

#: Bottom-up, as the layers import each other (`cnn_core` before the views), so that a page script importing
#: the same modules at the same time waits for this thread's import of a module, never the other way round.
WARM_MODULES = (
    "torch", "torchvision", "cnn_core", "cnn_core.data", "cnn_core.models", "cnn_core.inference", "cnn_core.runs",
    "cnn_explorer_ui.home", "cnn_explorer_ui.predict_views", "cnn_explorer_ui.graph_views",
    "cnn_explorer_ui.studio_views", "cnn_explorer_ui.gallery_views", "cnn_explorer_ui.conv_views",
    "pytorch_grad_cam", "pytorch_grad_cam.utils.image", "scipy.ndimage", "streamlit_drawable_canvas", "torchinfo",
    "torchviz",
)  # fmt: skip

_started: threading.Thread | None = None
_lock = threading.Lock()


def enabled() -> bool:
    return os.environ.get("CNN_WARM_IMPORTS", "1") != "0"


def start_warm_imports() -> threading.Thread | None:
    """Start the background imports once per process (None when `CNN_WARM_IMPORTS=0`); later calls return the
    same thread. After importing, the imported objects are moved out of the garbage collector's reach
    (`gc.freeze`), so its full collections stay milliseconds instead of 0.3-0.7 s each."""
    global _started
    if not enabled():
        return None
    with _lock:
        if _started is None:
            _started = threading.Thread(target=_import_all, name="cnn-warm-imports", daemon=True)
            _started.start()
        return _started


def _import_all() -> None:
    for name in WARM_MODULES:
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001 - a page imports it again and says what is missing
            logging.getLogger(__name__).info("warm-up import of %s failed", name, exc_info=True)
    gc.collect()
    gc.freeze()
