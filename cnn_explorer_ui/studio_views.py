"""The Training Studio's run panel: live progress and charts, how a run ended, its test results and
checkpoint, and the comparison of this browser's runs.

View code only: the run lives in `cnn_core.runs`; the numbers shown come from `cnn_core.reports`, the
figures from `studio_charts`. State lives under "studio_*" keys.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st

from cnn_core import data, gallery, reports, runs
from cnn_core.errors import CnnError
from cnn_core.inference.metrics import METRIC_LABELS
from cnn_core.training import checkpoint_keeps

from .exports import tensorboard_download
from .live import CHART_REFRESH_SECONDS, live_progress, progress_text
from .studio_charts import batch_figure, compare_figure, confusion_figure, epoch_figure
from .widgets import device_label, literal, show_error, show_server_paths, without_server_paths

SAFETY_RERUN_SECONDS = 30.0  # an active run's panel reruns at least this often (the live bar asks sooner)
GALLERY_COLUMNS = 10
STATUS_LABELS = {
    runs.RunStatus.QUEUED: "waiting",
    runs.RunStatus.RUNNING: "training",
    runs.RunStatus.FINISHED: "finished",
    runs.RunStatus.CANCELLED: "stopped",
    runs.RunStatus.FAILED: "failed",
    runs.RunStatus.INTERRUPTED: "interrupted",
}
COMPARE_COLUMNS = ("run", "status", "model", "data set", "best val acc", "test acc", "time", "epochs", "batch",
                   "image size", "lr", "optimizer", "augmentation", "subset", "seed")


# ------------------------------------------------------------------------------------------ live
def show_progress(snap: runs.RunSnapshot) -> None:
    """How far the run got, as a still bar (the live one is `live.live_progress`)."""
    st.progress(snap.progress().fraction, text=progress_text(snap))


def show_statuses(snap: runs.RunSnapshot) -> None:
    """What the run did before its first step (e.g. computing a backbone's features), once the progress line
    has moved on to the steps: it explains where the time before them went."""
    if snap.statuses and (snap.batches or not snap.status.active):
        st.caption(without_server_paths(" ".join(snap.statuses)))


def show_charts(snap: runs.RunSnapshot) -> None:
    """The batch and epoch curves. An active run's charts are drawn empty before its first step: the
    browser's first plotly chart costs it about a second of CPU (loading the library), which then falls
    while the data loads instead of in the middle of training, on the cores the worker trains on."""
    if not snap.batches and not snap.status.active:
        return
    smoothing = st.session_state.get("studio_smoothing", 0.8)
    st.plotly_chart(batch_figure(snap, smoothing), key="studio_batch_chart")
    st.plotly_chart(epoch_figure(snap), key="studio_epoch_chart")
    if snap.status.active:
        st.caption(f"While the run trains, the charts are redrawn every {CHART_REFRESH_SECONDS:.0f} s (the bar above "
                   "moves every second): the batch curves start with the first steps, the train and validation "
                   "curves per epoch when the first epoch ends.")


def show_live(manager: runs.RunManager, run_id: str, was_active: bool) -> None:
    """The run's status, live progress and charts, in one fragment that Streamlit reruns only when there is
    something new to draw: the live bar (`live.live_progress`) polls the run by itself and asks for a rerun
    when the run leaves the queue or ends, or when the charts are `live.CHART_REFRESH_SECONDS` old and have new
    points. Reruns are what costs: each redraw makes the browser re-render the page's figures, and on a
    student's laptop the browser shares the cores with the training worker.

    `was_active` is the run's state when this script run began: the rest of the page was drawn for it, so the
    whole page is redrawn as soon as the run is seen to have ended. `SAFETY_RERUN_SECONDS` keeps the panel
    moving even where the bar's script cannot run.
    """

    @st.fragment(run_every=SAFETY_RERUN_SECONDS if was_active else None)
    def panel() -> None:
        snap = manager.snapshot(run_id)
        if was_active and not snap.status.active:
            st.rerun()  # the whole page: results appear and the polling stops
        show_status(manager, snap)
        if snap.batches or snap.status.active:
            st.slider("Smoothing of the batch curves", 0.0, 0.98, 0.8, step=0.02, key="studio_smoothing",
                      help="An exponential moving average: 0 shows the raw, noisy batch values.")
        show_charts(snap)

    panel()


def show_status(manager: runs.RunManager, snap: runs.RunSnapshot) -> None:
    """Where the run stands: waiting (and how many are ahead), training (with a stop button) or how it ended."""
    title = f"{snap.resolved.model} on {snap.dataset_title}"
    if snap.status is runs.RunStatus.QUEUED:
        st.info(f"**{title}**: the trainer is busy. Your run starts by itself when a slot frees up (at most "
                f"{manager.max_concurrent} run(s) train at once; `{runs.ENV_MAX_CONCURRENT}` sets it).",
                icon=":material/hourglass_top:")
    elif snap.status is runs.RunStatus.RUNNING:
        st.markdown(f"**Training {title}** on {snap.start.device if snap.start else device_label()}")
    else:
        show_outcome(snap)
    if not snap.status.active:
        show_progress(snap)
        show_statuses(snap)
        return
    left, right = st.columns([1, 5], vertical_alignment="center")
    stopping = snap.cancel_requested
    queued = snap.status is runs.RunStatus.QUEUED
    label = "Stopping…" if stopping else "Leave the queue" if queued else "Stop training"
    if left.button(label, icon=":material/stop_circle:", key="studio_stop", disabled=stopping,
                   help="Take the run out of the queue." if queued else
                   "End the run now and keep the best weights so far."):
        manager.cancel(snap.id)
        manager.wait(snap.id, timeout=2.0)
        st.rerun()
    with right:
        live_progress(snap)
        show_statuses(snap)


# ------------------------------------------------------------------------------------------ results
def show_metrics(snap: runs.RunSnapshot) -> None:
    metrics = snap.end.test_metrics
    class_names = list(snap.end.card.class_names)
    binary = len(class_names) == 2
    st.markdown(f"#### Test metrics ({metrics['n']:,} test images)")
    tiles = reports.metric_tiles(metrics, class_names, METRIC_LABELS)
    row = st.container(horizontal=True, gap="medium")  # tiles as wide as their text, wrapping: equal columns cut
    for tile in tiles:                                  # "92.3 %" to "92.…" on a 1280-px laptop
        row.metric(literal(tile.label), tile.text, help=f"Undefined here: {tile.why}." if tile.why else None,
                   width="content")
    st.caption(f"Sensitivity and specificity treat “{literal(metrics.get('positive_class', class_names[1]))}” as the "
               "positive class." if binary else
               "Macro scores average the classes equally, so a rare class counts as much as a common one.")
    undefined = {tile.label: tile.why for tile in tiles if tile.why}
    if undefined:
        st.warning("Some metrics are undefined for this test split, so they show n/a rather than a misleading 0 % or "
                   "100 %: " + "; ".join(f"{label}: {why}" for label, why in undefined.items()) + ". A larger or "
                   "better balanced data set gives every class images in the test split.", icon=":material/info:")
    views = list(snap.end.card.test_time_augmentation)
    if len(views) > 1:
        st.caption(f"Test-time augmentation: each test image's class probabilities are the average over the "
                   f"{len(views)} orientations its training taught ({', '.join(views)}); predictions from the "
                   "checkpoint do the same.")


def show_confusion_and_gallery(snap: runs.RunSnapshot) -> None:
    """The confusion matrix across the page (its counts and row shares must be readable when projected),
    then the misclassified test images."""
    class_names = list(snap.end.card.class_names)
    st.markdown("#### Confusion matrix")
    left, _ = st.columns([min(6, 2 + len(class_names) // 3), 1])
    left.plotly_chart(confusion_figure(snap.end.test_metrics["confusion_matrix"], class_names), key="studio_confusion")
    st.caption("Rows: the true class; columns: what the model said. Each cell gives the number of test images and "
               "their share of the row; the diagonal is right (its share is the class's recall), everything else a "
               "mistake.")
    wrong = snap.misclassified
    st.markdown(f"#### Misclassified test images ({len(wrong)} shown, most confident mistakes first)"
                if wrong else "#### Misclassified test images")
    if not wrong:
        if snap.note:
            st.caption(without_server_paths(snap.note))
        else:
            st.success("No test image was misclassified.")
        return
    scale = gallery.display_scale(int(wrong[0].image.shape[-1]), 84)
    for start in range(0, len(wrong), GALLERY_COLUMNS):
        cols = st.columns(GALLERY_COLUMNS)
        for col, example in zip(cols, wrong[start : start + GALLERY_COLUMNS]):
            col.image(gallery.to_display(example.image, scale), width="stretch", output_format="PNG")
            col.caption(f"true **{literal(class_names[example.true_label])}** · said "
                        f"**{literal(class_names[example.predicted_label])}** ({100 * example.confidence:.0f} %)")


def show_checkpoint(snap: runs.RunSnapshot) -> None:
    st.markdown("#### Checkpoint")
    path = Path(snap.checkpoint_path) if snap.checkpoint_path else None
    if path is None:
        st.caption(without_server_paths(snap.note or "This run saved no checkpoint."))
        return
    if not path.is_file():
        show_error(f"The checkpoint {path.name} is gone from the server (deleted?).")
        return
    where = f" in `{path.parent}`" if show_server_paths() else " on the server, for this browser only"
    st.markdown(f"Saved as `{path.name}`{where}, with its card beside it. The **Predict** page and the home page "
                "list it.")
    buttons = st.container(horizontal=True)
    buttons.download_button("Download checkpoint", data=path.read_bytes, file_name=path.name,
                            mime="application/octet-stream", icon=":material/download:", key="studio_download",
                            on_click="ignore", help="safetensors weights; the card is stored inside too.")
    card_path = path.with_suffix(".json")
    if card_path.is_file():
        buttons.download_button("Download card (JSON)", data=card_path.read_bytes, file_name=card_path.name,
                                mime="application/json", icon=":material/description:", key="studio_download_card",
                                on_click="ignore")
    with buttons:
        tensorboard_download(snap, key="studio_tensorboard")
    with st.expander("The checkpoint's card"):
        st.code(without_server_paths(snap.end.card.command), language="bash")
        st.json(without_server_paths(snap.end.card.to_json()), expanded=1)


def show_outcome(snap: runs.RunSnapshot) -> None:
    """How an ended run ended: finished, stopped (and what was kept) or failed (and why)."""
    end = snap.end
    if snap.status is runs.RunStatus.FAILED:
        show_error(snap.error or "The run failed.")
        return
    if snap.status is runs.RunStatus.INTERRUPTED:
        kept = (f" The checkpoint keeps the best weights so far (epoch {end.best_epoch})." if end and end.checkpoint_path
                else " It saved no checkpoint; start it again to get one.")
        note = without_server_paths(snap.note or "The server stopped while this run was training.")
        st.warning(f"Interrupted: {note}{kept} Its curves "
                   "up to that moment are kept.", icon=":material/power_off:")
        return
    if end is None:
        st.warning(without_server_paths(snap.note or "The run ended before it started."), icon=":material/stop_circle:")
        return
    seconds = runs.format_seconds(end.seconds)
    if snap.status is runs.RunStatus.CANCELLED:
        st.warning(f"{stop_point(snap)} ({seconds} of training).{_kept_at_stop(snap)} "
                   "Test metrics are computed for runs that finish.", icon=":material/stop_circle:")
        if snap.note:
            st.caption(without_server_paths(snap.note))
    else:
        early = " (stopped early: validation stopped improving)" if end.stopped_early else ""
        monitor = end.card.training.get("monitor", snap.config.monitor) if end.card else snap.config.monitor
        kept = checkpoint_keeps(monitor, end.best_epoch)
        st.success(f"Finished: {end.epochs_run} epoch(s) in {seconds} of training{early}; the checkpoint holds "
                   f"{kept}.", icon=":material/check_circle:")


def stop_point(snap: runs.RunSnapshot) -> str:
    """Where a stopped run stopped: "Stopped after 2 epochs", or "Stopped during epoch 1, at step 100 of 645"
    when its last epoch did not finish."""
    end, start = snap.end, snap.start
    per_epoch = start.steps_per_epoch if start else 0
    if per_epoch and end.steps and end.steps < end.epochs_run * per_epoch:
        return f"Stopped during epoch {end.epochs_run}, at step {end.steps:,} of {per_epoch * snap.resolved.epochs:,}"
    return f"Stopped after {end.epochs_run} epoch{'s' if end.epochs_run != 1 else ''}"


def _kept_at_stop(snap: runs.RunSnapshot) -> str:
    end = snap.end
    if not end.checkpoint_path:
        return ""
    if not end.best_epoch:  # stopped before a validation: the weights are as they were built
        return " The checkpoint keeps the weights as they were when it stopped (not validated yet)."
    partial = stop_point(snap).startswith("Stopped during") and end.best_epoch == end.epochs_run
    return (" The checkpoint keeps the weights at the stop (checked on the validation split)." if partial
            else f" The checkpoint keeps the best weights so far (epoch {end.best_epoch}).")


def show_results(snap: runs.RunSnapshot) -> None:
    """Test metrics, confusion matrix, misclassified images and the checkpoint of an ended run."""
    end = snap.end
    if end is None or snap.status is runs.RunStatus.FAILED:
        return
    if end.test_metrics:
        show_metrics(snap)
        show_confusion_and_gallery(snap)
    show_checkpoint(snap)


# ------------------------------------------------------------------------------------------ compare
def _run_label(number: int, snap: runs.RunSnapshot) -> str:
    return f"#{number} {snap.resolved.model} on {snap.dataset_title}"


def _own_side(snap: runs.RunSnapshot) -> int | None:
    """The side of a run that resized nothing: its card's (a transfer model's input size), else its data set's."""
    if snap.end is not None and snap.end.card is not None:
        return snap.end.card.image_size
    try:
        return data.get_dataset_info(snap.config.dataset).image_size
    except CnnError:
        return None


def compare_runs(manager: runs.RunManager, owner: str) -> None:
    numbered = manager.runs_for(owner)  # a run keeps its number as newer ones come
    if not numbered:
        return
    numbers, history = [number for number, _ in numbered], [snap for _, snap in numbered]
    st.subheader(":material/compare_arrows: Compare your runs")
    rows = reports.compare_rows(history, describe_status=STATUS_LABELS.get, describe_seconds=runs.format_seconds,
                                numbers=numbers)
    for row, snap in zip(rows, history):  # numbers kept as numbers, so a click on a header sorts 9.5 % below 10 %
        for column in ("best val acc", "test acc"):
            row[column] = None if row[column] is None else 100 * row[column]  # blank: a stopped run has no test
        row["image size"] = row["image size"] or _own_side(snap)
        row["data set"] = data.shown_name(row["data set"])  # an upload's without its owner tag
    percent = st.column_config.NumberColumn(width="small", format="%.1f%%")
    side = st.column_config.NumberColumn("image size", width="small", format="%d px",
                                         help="The side the images were resized to for training (pixels)")
    # What each run achieved first (visible at any width: the options scroll to the right), then its options.
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch", key="studio_compare_table",
                 column_order=COMPARE_COLUMNS,
                 column_config={"run": st.column_config.NumberColumn(pinned=True, width="small", format="#%d"),
                                "best val acc": percent, "test acc": percent, "image size": side,
                                "time": st.column_config.TextColumn(help="From start to end: loading the data, "
                                                                    "training and testing (the run's message gives "
                                                                    "the training alone)"),
                                "augmentation": st.column_config.TextColumn(width="medium")})
    labels = [_run_label(number, snap) for number, snap in zip(numbers, history)]
    figure = compare_figure(history, labels)
    if figure is not None:
        st.plotly_chart(figure, key="studio_compare_chart")
    if len(history) > 1:
        by_id = {snap.id: label for snap, label in zip(history, labels)}
        current = st.session_state.get("studio_run")
        st.session_state["studio_pick_run"] = current if current in by_id else history[-1].id
        st.selectbox("Show the details of run", list(by_id), format_func=by_id.get, key="studio_pick_run",
                     on_change=lambda: st.session_state.update(studio_run=st.session_state["studio_pick_run"]))
    st.caption(f"Your last {runs.RUNS_SHOWN_PER_OWNER} runs. They are recorded, so they are still here after the "
               "app restarts; their checkpoints are yours alone (Predict and Model Graph offer them to you).")
