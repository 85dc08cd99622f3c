"""CNN Explorer's entry point: `streamlit run app.py`.

The app itself is `cnn_explorer_ui/frame.py` (page config, navigation, sidebar; the home page is
`cnn_explorer_ui/home.py`), with one script per page in `pages/`. Streamlit serves it as an `st.App` whose main
script does not sit beside `pages/`: that keeps Streamlit's legacy `pages/` folder discovery out of the way,
so a page's address (/dataset-gallery) opens that page even as the first visit to a freshly started server.

One route of its own: a training run's progress as JSON (`cnn_explorer_ui.live`), which the Training Studio's
progress bar polls instead of rerunning the page.
"""

import contextlib
import threading

import streamlit as st
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route


async def run_progress(request: Request) -> JSONResponse:
    from cnn_explorer_ui.live import progress_json  # imported on first use: the server starts without PyTorch

    status, body = await run_in_threadpool(progress_json, request.path_params["run_id"],
                                           request.query_params.get("token", ""))
    return JSONResponse(body, status_code=status, headers={"Cache-Control": "no-store"})


def _warm_up() -> None:
    from cnn_explorer_ui.warmup import start_warm_imports  # in this thread: importing the package takes seconds

    start_warm_imports()


@contextlib.asynccontextmanager
async def lifespan(_app: st.App):
    """At server start: the pages' slow imports begin in the background (`cnn_explorer_ui.warmup`)."""
    threading.Thread(target=_warm_up, name="cnn-warm-up-start", daemon=True).start()
    yield


app = st.App("cnn_explorer_ui/frame.py", lifespan=lifespan, routes=[Route("/_cnn/runs/{run_id}/progress", run_progress)])
