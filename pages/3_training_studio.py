"""Training Studio: train a CNN on a data set and watch it learn, live.

A thin view. The run trains in a worker process (or on a Ray cluster) started by `cnn_core.runs`, never in
the web server, and is recorded in the run store, so changing a widget, switching pages, opening a second tab
or restarting the server neither stops nor repeats nor forgets it; this page keeps only the id of the run it
shows in `st.session_state` and reads the run from a fragment. The set-up
widgets are `cnn_explorer_ui.studio_setup`, the run panel `cnn_explorer_ui.studio_views`.
State lives under "studio_*" keys.
"""

from __future__ import annotations

import streamlit as st

from cnn_core import runs
from cnn_core.errors import CnnError
from cnn_core.training import steps_per_epoch
from cnn_core.training.config import SMALL_SET_IMAGES
from cnn_explorer_ui import browser_id, import_zip_upload, live, show_error
from cnn_explorer_ui.widgets import LAST_UPLOAD_KEY
from cnn_explorer_ui.studio_setup import (choose_dataset, choose_image_size, choose_model, choose_options,
                                          training_images)
from cnn_explorer_ui.studio_views import compare_runs, show_live, show_results

st.title(":material/model_training: Training Studio")
st.markdown(
    "Pick a data set and a network, set the training options and press **Start**: the loss and accuracy "
    "are drawn while the network learns. The run goes on in the background, so you can change the options, "
    "visit other pages or open a second tab meanwhile."
)


def setup(owner: str, manager: runs.RunManager, active: runs.RunSnapshot | None, dataset: str | None) -> None:
    st.subheader(":material/tune: Set up a run")
    with st.expander("Add your own image folder (upload a zip)", icon=":material/upload:",
                     expanded=bool(st.session_state.get("studio_zip"))):
        imported = import_zip_upload("studio_zip", "Zip of images: one sub-folder per class, names by class "
                                     "(cat.0.jpg, dog.0.jpg), or a CSV label table beside them")
        if imported:
            st.session_state["studio_dataset"] = imported
    info = choose_dataset(default=dataset or st.session_state.get(LAST_UPLOAD_KEY))  # a run's, else the last upload
    if info is None:
        return
    picked = choose_model(info)
    if picked is None:
        return
    spec, model_args = picked
    image_size = choose_image_size(info, spec)
    config = choose_options(info, spec, model_args, image_size)
    problem = None
    try:
        resolved, _ = runs.check_run_config(config)
    except CnnError as exc:
        problem = str(exc)
    if problem:
        show_error(problem)
    else:
        n_train = training_images(info)
        if n_train:
            n_train = min(n_train, config.limit or n_train)
            steps = steps_per_epoch(n_train, resolved.batch_size)  # as the trainer counts them
            small = (" A set this small gets many short epochs, so that the network takes enough steps to learn."
                     if n_train < SMALL_SET_IMAGES and resolved.epochs >= 20 else "")
            st.caption(f"{n_train:,} training images in batches of {resolved.batch_size}: {steps:,} "
                       f"step{'s' if steps != 1 else ''} per epoch, {steps * resolved.epochs:,} in all.{small}")
    if limit := time_limit():
        st.caption(f":material/timer: This server stops each run after {limit / 60:g} minute(s) from its start; "
                   "the checkpoint then keeps the best weights so far.")
    running, waiting = manager.load()
    if active is not None:
        st.info("Your run is " + ("waiting for a free slot" if active.status is runs.RunStatus.QUEUED else "training")
                + ": stop it or let it finish before you start another (one run per person). Its live charts are "
                "below, under [Your run](#your-run).",
                icon=":material/hourglass_top:")
    elif running >= manager.max_concurrent:
        st.caption(f":material/group: The trainer is busy ({running} run(s) training, {waiting} waiting); a new run "
                   f"waits its turn: {running + waiting} ahead of you.")
    if st.button("Start training", type="primary", icon=":material/play_arrow:", key="studio_start",
                 disabled=bool(problem) or active is not None):
        try:
            st.session_state["studio_run"] = manager.submit(owner, config)
        except CnnError as exc:
            show_error(exc)
            return
        st.rerun()


def time_limit() -> float | None:
    """The server's `CNN_MAX_RUN_MINUTES` in seconds (None: none, or a bad value the server named at start)."""
    try:
        return runs.max_run_seconds()
    except CnnError:
        return None


# ------------------------------------------------------------------------------------------ page
try:
    run_manager = live.run_manager()  # one for the whole server: every session and tab sees the same runs
except CnnError as exc:  # e.g. CNN_MAX_CONCURRENT_RUNS is not a number
    show_error(exc)
    st.stop()
browser_owner = browser_id()
if run_manager.notice:  # CNN_RAY_ADDRESS names a cluster that cannot be reached
    st.warning(run_manager.notice, icon=":material/cloud_off:")

# One look at the manager for the whole script run, so the set-up and the run panel agree about it.
active_run = run_manager.active_run(browser_owner)
shown = st.session_state.get("studio_run")
if active_run is not None:
    shown = active_run.id  # a run started here or in another tab of this browser takes the stage
elif not (run_manager.has_run(shown) and run_manager.snapshot(shown).owner == browser_owner):
    latest = run_manager.latest_run(browser_owner)  # a new tab, or a run forgotten since
    shown = latest.id if latest else None
st.session_state["studio_run"] = shown

with st.container(border=True):
    first_look = shown is not None and "studio_dataset" not in st.session_state  # a new tab: the shown run's data
    setup(browser_owner, run_manager, active_run, run_manager.snapshot(shown).config.dataset if first_look else None)

if shown is not None:
    st.subheader(":material/monitoring: Your run", anchor="your-run")
    shown_active = active_run is not None and active_run.id == shown
    show_live(run_manager, shown, was_active=shown_active)
    if not shown_active:
        show_results(run_manager.snapshot(shown))
    compare_runs(run_manager, browser_owner)

