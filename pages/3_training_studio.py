"""Training Studio: train a CNN on a data set and watch it learn, live.

A thin view. The run lives in `cnn_core.runs` (a background worker outside Streamlit's reruns), so
changing a widget, switching pages or opening a second tab neither stops nor repeats it; this page keeps
only the id of the run it shows in `st.session_state` and polls the run manager from a fragment.
State lives under "studio_*" keys.
"""

from __future__ import annotations

import copy
import functools
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st
from plotly.subplots import make_subplots

from cnn_core import data, gallery, models, runs, transfer
from cnn_core.augment import AugmentConfig, default_augment
from cnn_core.device import describe_device, pick_device
from cnn_core.errors import CnnError
from cnn_core.metrics import METRIC_LABELS
from cnn_core.train import MIN_BATCH_SIZE, MONITORS, OPTIMIZERS, SCHEDULES, TrainConfig, default_monitor, steps_per_epoch
from cnn_explorer_ui import browser_datasets, browser_id, import_zip_upload, show_error

REFRESH_SECONDS = 1.0  # how often the live charts poll the run
FOLDER_SIZES = (32, 64, 96, 128)
GALLERY_COLUMNS = 8
MAX_CHART_POINTS = 1000  # per curve; longer runs are thinned for the browser
TRAIN_COLOUR, VAL_COLOUR, RAW_COLOUR, LR_COLOUR = "#3b6ea5", "#e39b3b", "#b8c7da", "#5aa469"
RUN_COLOURS = ("#3b6ea5", "#e39b3b", "#5aa469", "#c0504d", "#8064a2", "#4bacc6", "#f79646", "#7f7f7f")
STATUS_LABELS = {
    runs.RunStatus.QUEUED: "waiting",
    runs.RunStatus.RUNNING: "training",
    runs.RunStatus.FINISHED: "finished",
    runs.RunStatus.CANCELLED: "stopped",
    runs.RunStatus.FAILED: "failed",
}

MONITOR_LABELS = {"val_accuracy": "best val. accuracy", "val_loss": "lowest val. loss", "last": "last epoch"}
MONITOR_SENTENCES = {"val_accuracy": "the best validation accuracy", "val_loss": "the lowest validation loss"}

st.title(":material/model_training: Training Studio")
st.markdown(
    "Pick a data set and a network, set the training options and press **Start**: the loss and accuracy "
    "are drawn while the network learns. The run goes on in the background, so you can change the options, "
    "visit other pages or open a second tab meanwhile."
)


# ------------------------------------------------------------------------------------------ plumbing
@st.cache_resource(show_spinner=False)
def _manager() -> runs.RunManager:
    """One run manager for the whole server: every session and tab sees the same runs and queue."""
    return runs.RunManager()


@st.cache_data(ttl=60, show_spinner=False)
def _device_label() -> str:
    return describe_device(pick_device())


def _training_images(info: data.DatasetInfo) -> int | None:
    """Images the training split will really have: image folders leave out unreadable files, found by decoding
    each file once per folder listing (cnn_core.data remembers the answer, so reruns decode nothing)."""
    try:
        if info.family == "folder":
            with st.spinner(f"Checking which images of {info.title} can be read…"):
                return data.split_sizes(info.name).get("train")
        return data.split_sizes(info.name).get("train")
    except CnnError:
        return (info.n_samples or {}).get("train")


def _trainable_datasets() -> tuple[dict[str, data.DatasetInfo], list[str]]:
    """Data sets on this computer that can be trained ({name: info}), and titles of multi-label ones left out.

    Checked on every run (it only looks at files), so a data set deleted a moment ago disappears at once.
    """
    present: dict[str, data.DatasetInfo] = {}
    multi_label: list[str] = []
    for info in browser_datasets():
        try:
            if not data.dataset_status(info.name).available:
                continue
        except CnnError:
            continue
        if info.multi_label:
            multi_label.append(info.title)
        else:
            present[info.name] = info
    return present, multi_label


# ------------------------------------------------------------------------------------------ setup
def choose_dataset() -> data.DatasetInfo | None:
    present, multi_label = _trainable_datasets()
    chosen = st.session_state.get("studio_dataset")
    if chosen is not None and chosen not in present:
        st.warning(f"The data set `{chosen}` is not on this computer any more (deleted or moved); choose another.",
                   icon=":material/warning:")
        del st.session_state["studio_dataset"]
    if not present:
        st.warning("No trainable data set was found under CNN_DATA_DIR. The home page lists where the data sets "
                   "were looked for and how to get them; or upload a zip of class folders below.")
        return None

    def label(name: str) -> str:
        info = present[name]
        count = sum((info.n_samples or {}).values())
        family = {"mnist": "digits", "medmnist": "MedMNIST", "folder": "image folder"}.get(info.family, info.family)
        return f"{info.title} · {family}" + (f" · {count:,} images" if count else "")

    name = st.selectbox("Data set", list(present), format_func=label, key="studio_dataset",
                        help="Data sets found on this computer, image folders under CNN_DATA_DIR and the zips "
                             "you uploaded (only you see them). Multi-label sets (ChestMNIST) cannot be trained here yet.")
    info = present[name]
    st.caption(f"{info.task} · {len(info.class_names)} classes · {info.channels} channel(s) · "
               f"{info.image_size}×{info.image_size} px" + (f" · left out (multi-label): {', '.join(multi_label)}"
                                                           if multi_label else ""))
    return info


def _model_choices(info: data.DatasetInfo) -> dict[str, models.ModelSpec]:
    """Registry models that can take this data set's images (folders can be resized to any of FOLDER_SIZES)."""
    largest = max(info.image_size, *FOLDER_SIZES) if info.family == "folder" else info.image_size
    return {spec.name: spec for spec in models.list_models() if largest >= spec.min_image_size}


def _model_title(spec: models.ModelSpec) -> str:
    return spec.title + ("  (needs downloaded weights)" if spec.defaults.get("offline") is False else "")


MODEL_ARG_HELP = {
    "mode": "frozen: only the new head trains, on ImageNet features computed once (fast on a CPU); finetune: the "
            "backbone's last blocks train too, at a lower learning rate; full: everything trains (slow on a CPU).",
    "finetune_blocks": "How many of the backbone's last blocks train in finetune mode.",
}


def choose_model(info: data.DatasetInfo) -> tuple[models.ModelSpec, dict] | None:
    """The model and its options; options come from the registry entry (`model_arg_choices`), so models that
    join the registry (e.g. transfer backbones) bring their own."""
    choices = _model_choices(info)
    if not choices:
        show_error(f"No model in the registry takes {info.image_size}×{info.image_size} images.")
        return None
    default = models.default_model_for(info.family, info.image_size)
    names = list(choices)
    spec = choices[st.selectbox("Model", names, index=names.index(default) if default in names else 0,
                                format_func=lambda n: _model_title(choices[n]), key=f"studio_model_{info.name}",
                                help="Every network in the model registry that fits this data set.")]
    st.caption(f"{spec.description} *Source: {spec.source}.*")
    if transfer.is_transfer_model(spec.name):
        weights_here, where = transfer.weights_status(spec.name)
        if weights_here:
            st.caption(f":material/check_circle: {where}")
        else:  # before the run, so nobody waits for a run that fails offline
            st.warning(where, icon=":material/cloud_off:")
    model_args = dict(spec.defaults.get("model_args") or {})
    arg_choices = dict(spec.defaults.get("model_arg_choices") or {})
    if not arg_choices and getattr(spec, "modes", ()):
        arg_choices = {"mode": list(spec.modes)}
    if arg_choices:
        cols = st.columns(max(2, len(arg_choices)))
        for col, (arg, options) in zip(cols, arg_choices.items()):
            if arg == "finetune_blocks" and model_args.get("mode") != "finetune":
                continue  # only meaningful when fine-tuning
            options = list(options)
            current = model_args.get(arg, options[0])
            model_args[arg] = col.selectbox(arg.replace("_", " ").capitalize(), options,
                                            index=options.index(current) if current in options else 0,
                                            key=f"studio_arg_{arg}_{spec.name}", help=MODEL_ARG_HELP.get(arg))
    return spec, model_args


def choose_image_size(info: data.DatasetInfo, spec: models.ModelSpec) -> int | None:
    """Image folders only: the side images are resized to (a transfer backbone wants its own input size)."""
    if info.family != "folder":
        return None
    wanted = int(spec.defaults.get("folder_image_size", info.image_size))
    sizes = sorted(s for s in {*FOLDER_SIZES, info.image_size, wanted} if s >= spec.min_image_size)
    return st.select_slider("Image size for training (pixels a side)", sizes, value=wanted if wanted in sizes else
                            sizes[-1], key=f"studio_size_{info.name}_{spec.name}",
                            help="Folder images are resized to this square; smaller trains faster.")


def choose_options(info: data.DatasetInfo, spec: models.ModelSpec, model_args: dict,
                   image_size: int | None) -> TrainConfig:
    """Every training option, starting from the model's defaults for this data set."""
    d = spec.defaults
    key = f"{info.name}_{spec.name}"
    cols = st.columns(5)
    epochs = cols[0].number_input("Epochs", value=int(d.get("epochs", 5)), step=1, key=f"studio_epochs_{key}",
                                  help="Passes over the training set (1–1000).")
    batch_size = cols[1].number_input("Batch size", value=int(d.get("batch_size", 128)), min_value=MIN_BATCH_SIZE,
                                      step=8, key=f"studio_batch_{key}",
                                      help=f"Images per gradient step ({MIN_BATCH_SIZE}–65536, at most the training "
                                           "set; BatchNorm layers cannot learn from one image at a time).")
    lr = cols[2].number_input("Learning rate", value=float(d.get("lr", 1e-3)), step=0.0005, format="%g",
                              key=f"studio_lr_{key}",
                              help="Step size of the optimizer (above 0, at most 10); the peak rate for one-cycle.")
    optimizer = cols[3].selectbox("Optimizer", OPTIMIZERS, index=OPTIMIZERS.index(d.get("optimizer", "adamw")),
                                  key=f"studio_optimizer_{key}")
    schedule = cols[4].selectbox("Schedule", SCHEDULES, index=SCHEDULES.index(d.get("schedule", "none")),
                                 key=f"studio_schedule_{key}",
                                 help="onecycle: warm up, then anneal; cosine: anneal from the start.")
    cols = st.columns([1.3, 0.9, 1, 1.1, 0.9, 1.1])
    wanted_monitor = default_monitor(spec.name)  # transfer models: "last" (tiny validation sets); so does the CLI
    monitor = cols[0].selectbox("Checkpoint keeps", MONITORS, index=MONITORS.index(wanted_monitor),
                                format_func=MONITOR_LABELS.get, key=f"studio_monitor_{key}",
                                help="Which epoch's weights the checkpoint keeps. With a validation set of a few "
                                     "dozen images its accuracy is mostly noise: keep the last epoch.")
    patience = cols[1].number_input("Patience", value=0, min_value=0, step=1,
                                    key=f"studio_patience_{key}", disabled=monitor == "last",
                                    help="Early stopping: stop after this many epochs without a better validation "
                                         "score (0: never stop early; not when keeping the last epoch).")
    weight_decay = cols[2].number_input("Weight decay", value=5e-4, min_value=0.0, step=1e-4, format="%g",
                                        key=f"studio_wd_{key}")
    n_train = _training_images(info)
    limit = cols[3].number_input("Subset (images per split)", value=0, min_value=0, step=100,
                                 key=f"studio_limit_{info.name}",
                                 help="Use at most this many images of each split for a quick classroom run "
                                      f"(0: all{f', {n_train:,} training images' if n_train else ''}).")
    seed = cols[4].number_input("Seed", value=0, min_value=0, max_value=2**31 - 1, step=1, key="studio_seed",
                                help="The same seed gives the same run: same subset, shuffling and weights.")
    with cols[5]:
        st.markdown("**Device**")
        st.markdown(f":material/memory: {_device_label()}")
    augment = choose_augment(info, transfer.augmentations_used(spec.name, model_args))
    return TrainConfig(
        dataset=info.name, model=spec.name, model_args=model_args, epochs=int(epochs), batch_size=int(batch_size),
        lr=float(lr), optimizer=optimizer, schedule=schedule, weight_decay=float(weight_decay),
        patience=(int(patience) or None) if monitor != "last" else None, monitor=monitor, seed=int(seed),
        limit=int(limit) or None, augment=augment, image_size=image_size,
    )


CACHED_FEATURES_HELP = ("The frozen backbone's features are computed once per image, so they cannot change "
                        "from batch to batch; flips are kept as cached flipped copies.")


def choose_augment(info: data.DatasetInfo, used: frozenset[str] | None = None) -> AugmentConfig:
    """Augmentation toggles that make sense for the data: flips are off and locked for digits; options the
    model cannot honour (`used` leaves them out: cached transfer features) are off and locked too."""
    default = default_augment(info.family, info.task)
    if used is not None:  # locked widgets get their own keys, so they show 0 without losing the other's value
        default = replace(default, shift=default.shift if "shift" in used else 0,
                          color_jitter=default.color_jitter if "color_jitter" in used else 0.0,
                          rotate90=default.rotate90 and "rotate90" in used,
                          grayscale=default.grayscale if "grayscale" in used else 0.0)
    locked = "" if used is None else "_cached"
    allowed = runs.augment_options(info.family, info.task)
    st.markdown("**Augmentation** (random changes to training images, so the network learns what matters)")
    sliders, switches = st.columns(3), st.columns(3)
    shift_off = used is not None and "shift" not in used
    shift = sliders[0].slider("Random shift (pixels)", 0, 4, default.shift, key=f"studio_shift_{info.name}{locked}",
                              disabled=shift_off, help=CACHED_FEATURES_HELP if shift_off else None)
    jitter_off = used is not None and "color_jitter" not in used
    jitter = sliders[1].slider("Colour jitter", 0.0, 0.4, float(default.color_jitter), step=0.05,
                               key=f"studio_jitter_{info.name}{locked}", disabled=jitter_off,
                               help=CACHED_FEATURES_HELP if jitter_off else None)
    gray_locked = used is not None and "grayscale" not in used
    grayscale = sliders[2].slider(
        "Gray copies", 0.0, 1.0, float(default.grayscale) if info.channels == 3 else 0.0, step=0.05,
        key=f"studio_grayscale_{info.name}{locked}", disabled=gray_locked or info.channels == 1,
        help=CACHED_FEATURES_HELP if gray_locked else "The images are gray already." if info.channels == 1 else
        "How often a colour image is shown in gray, so the network cannot rely on stain colour alone (it differs "
        "between labs).")
    flip_help = None if allowed["hflip"] else "A mirrored 2 or 7 is not a digit any more, so flips are off for digits."
    hflip = switches[0].checkbox("Horizontal flips", value=default.hflip and allowed["hflip"],
                                 disabled=not allowed["hflip"], key=f"studio_hflip_{info.name}", help=flip_help)
    vflip = switches[1].checkbox("Vertical flips", value=default.vflip and allowed["vflip"],
                                 disabled=not allowed["vflip"], key=f"studio_vflip_{info.name}", help=flip_help)
    rotate_locked = used is not None and "rotate90" not in used
    rotate90 = switches[2].checkbox(
        "90° rotations", value=default.rotate90 and allowed["rotate90"], disabled=rotate_locked or not allowed["rotate90"],
        key=f"studio_rotate90_{info.name}{locked}",
        help=CACHED_FEATURES_HELP if rotate_locked else "A turned 6 is a 9, so rotations are off for digits."
        if not allowed["rotate90"] else "Turn images by 90°: with both flips the network sees all 8 orientations, "
        "and its test metrics average them (test-time augmentation).")
    if shift_off or jitter_off:
        st.caption("Random shifts, jitter, rotations and gray copies are off: the frozen backbone's features are "
                   "computed once per image and cached, so only flips (as cached flipped copies) apply. Mode *full* "
                   "augments every batch.")
    if not allowed["hflip"]:
        st.caption("Flips and rotations are off for digits: a mirrored 2 or a turned 6 is not the same digit.")
    return AugmentConfig(shift=int(shift), hflip=bool(hflip), vflip=bool(vflip), color_jitter=float(jitter),
                         rotate90=bool(rotate90), grayscale=float(grayscale))


def setup(owner: str, manager: runs.RunManager, active: runs.RunSnapshot | None) -> None:
    st.subheader(":material/tune: Set up a run")
    with st.expander("Add your own image folder (upload a zip)", icon=":material/upload:",
                     expanded=bool(st.session_state.get("studio_zip"))):
        imported = import_zip_upload("studio_zip", "Zip of class folders (one sub-folder of images per class)")
        if imported:
            st.session_state["studio_dataset"] = imported
    info = choose_dataset()
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
        n_train = _training_images(info)
        if n_train:
            n_train = min(n_train, config.limit or n_train)
            steps = steps_per_epoch(n_train, resolved.batch_size)  # as the trainer counts them
            st.caption(f"{n_train:,} training images in batches of {resolved.batch_size}: {steps:,} steps per "
                       f"epoch, {steps * resolved.epochs:,} in all.")
    running, waiting = manager.load()
    if active is not None:
        st.info("Your run is " + ("waiting for a free slot" if active.status is runs.RunStatus.QUEUED else "training")
                + ": stop it or let it finish before you start another (one run per person).",
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


# ------------------------------------------------------------------------------------------ charts
@functools.lru_cache(maxsize=8)
def _panel_layout(titles: tuple[str, ...]) -> dict:
    """The layout of a row of side-by-side plots, made once: `make_subplots` is too slow to run every poll
    (tens of ms of Python that the training thread, in the same process, would wait for)."""
    layout = make_subplots(rows=1, cols=len(titles), subplot_titles=titles,
                           horizontal_spacing=0.07).layout.to_plotly_json()
    layout.pop("template", None)  # a figure gets the default template cheaply; validating its dict is slow
    return layout


def _panels(titles: tuple[str, ...], height: int) -> go.Figure:
    figure = go.Figure(layout=copy.deepcopy(_panel_layout(titles)))
    figure.update_layout(height=height, margin=dict(l=10, r=10, t=60, b=10), hovermode="x unified",
                         legend=dict(orientation="h", yanchor="bottom", y=1.12, x=0))
    return figure


def _axes(col: int) -> dict:
    """Trace arguments that put it in panel `col` (1-based) of a `_panels` figure."""
    return {"xaxis": "x" if col == 1 else f"x{col}", "yaxis": "y" if col == 1 else f"y{col}"}


def _thin(values: np.ndarray, max_points: int = MAX_CHART_POINTS) -> np.ndarray:
    """Every k-th value (and the last), so a long run's curve stays light for the browser."""
    if len(values) <= max_points:
        return values
    step = -(-len(values) // max_points)
    return np.concatenate([values[::step], values[-1:]]) if (len(values) - 1) % step else values[::step]


def batch_figure(snap: runs.RunSnapshot, smoothing: float) -> go.Figure:
    """Loss and accuracy per logged batch (raw and smoothed) and the learning rate, against the step."""
    steps = np.array([b.step for b in snap.batches])
    loss = np.array([b.loss for b in snap.batches])
    accuracy = np.array([100 * b.accuracy for b in snap.batches])
    lr = np.array([b.lr for b in snap.batches])
    figure = _panels(("Loss per batch", "Accuracy per batch (%)", "Learning rate"), 300)
    x = _thin(steps)
    for col, (name, values) in enumerate((("loss", loss), ("accuracy", accuracy)), 1):
        figure.add_scatter(x=x, y=_thin(values), name=f"{name} (raw)", line=dict(color=RAW_COLOUR, width=1),
                           showlegend=col == 1, legendgroup="raw", **_axes(col))
        figure.add_scatter(x=x, y=_thin(np.array(runs.smooth(values.tolist(), smoothing))),
                           name=f"{name} (smoothed)", line=dict(color=TRAIN_COLOUR, width=2.5), showlegend=col == 1,
                           legendgroup="smoothed", **_axes(col))
    figure.add_scatter(x=x, y=_thin(lr), name="learning rate", line=dict(color=LR_COLOUR, width=2), **_axes(3))
    for col in (1, 2, 3):
        figure.layout[_axes(col)["xaxis"].replace("x", "xaxis")].title = "step"
    figure.layout.yaxis3.update(exponentformat="e", rangemode="tozero")
    return figure


def epoch_figure(snap: runs.RunSnapshot) -> go.Figure:
    """Train vs validation loss and accuracy per epoch: the gap between them is overfitting."""
    epochs = [e.epoch for e in snap.epochs]
    figure = _panels(("Loss per epoch", "Accuracy per epoch (%)"), 300)
    for col, (train_key, val_key, scale) in enumerate((("train_loss", "val_loss", 1),
                                                       ("train_accuracy", "val_accuracy", 100)), 1):
        figure.add_scatter(x=epochs, y=[scale * getattr(e, train_key) for e in snap.epochs], name="train",
                           mode="lines+markers", line=dict(color=TRAIN_COLOUR), showlegend=col == 1, **_axes(col))
        figure.add_scatter(x=epochs, y=[scale * getattr(e, val_key) for e in snap.epochs], name="validation",
                           mode="lines+markers", line=dict(color=VAL_COLOUR), showlegend=col == 1, **_axes(col))
    planned = snap.start.epochs if snap.start else 1
    # A live run's axis spans its planned epochs (when that is a readable number); an ended run's, what ran.
    last = max(epochs[-1] if epochs else 1, planned if snap.end is None and planned <= 50 else 1)
    for axis in ("xaxis", "xaxis2"):
        figure.layout[axis].update(title="epoch", range=[0.8, last + 0.2], dtick=max(1, round(last / 10)))
    return figure


def show_progress(snap: runs.RunSnapshot) -> None:
    progress = snap.progress()
    elapsed = runs.format_seconds(progress.elapsed)
    where = f"step {progress.step:,} of {progress.total_steps:,} (epoch {max(progress.epoch, 1)})"
    if snap.start is None and snap.status.active:
        text = f"Loading {snap.dataset_title} and building the model… {elapsed}"
    elif snap.status is runs.RunStatus.RUNNING and not snap.batches and snap.status_message:
        text = f"{snap.status_message} · {elapsed} elapsed"  # e.g. a transfer model's features, before the first step
    elif snap.status is runs.RunStatus.FINISHED:
        text = (f"Done: {snap.end.epochs_run} of {progress.epochs} epoch(s), {progress.step:,} steps in {elapsed}"
                + (" (stopped early)" if snap.end.stopped_early else ""))
    elif snap.status is runs.RunStatus.CANCELLED:
        text = f"Stopped at {where} after {elapsed}"
    elif snap.status is runs.RunStatus.FAILED:
        text = f"Failed at {where} after {elapsed}" if snap.start else f"Failed after {elapsed}"
    else:
        eta = "estimating…" if progress.eta is None else f"about {runs.format_seconds(progress.eta)} left"
        text = (f"Epoch {max(progress.epoch, 1)} of {progress.epochs} · step {progress.step:,} of "
                f"{progress.total_steps:,} · {elapsed} elapsed · {eta}")
    st.progress(progress.fraction, text=text)


def show_statuses(snap: runs.RunSnapshot) -> None:
    """What the run did before its first step (e.g. computing a backbone's features), once the progress line
    has moved on to the steps: it explains where the time before them went."""
    if snap.statuses and (snap.batches or not snap.status.active):
        st.caption(" ".join(snap.statuses))


def show_charts(snap: runs.RunSnapshot) -> None:
    if not snap.batches:
        return
    smoothing = st.session_state.get("studio_smoothing", 0.8)
    st.plotly_chart(batch_figure(snap, smoothing), key="studio_batch_chart")
    if snap.epochs:
        st.plotly_chart(epoch_figure(snap), key="studio_epoch_chart")
    else:
        st.caption("Train and validation curves per epoch appear when the first epoch ends.")


def show_live(manager: runs.RunManager, run_id: str, was_active: bool) -> None:
    """The run's status, progress and charts; polls every second while the run is active.

    `was_active` is the run's state when this script run began: the rest of the page was drawn for it,
    so the page is redrawn as soon as the run is seen to have ended.
    """

    @st.fragment(run_every=REFRESH_SECONDS if was_active else None)
    def live() -> None:
        snap = manager.snapshot(run_id)
        if was_active and not snap.status.active:
            st.rerun()  # the whole page: results appear and the polling stops
        title = f"{snap.resolved.model} on {snap.dataset_title}"
        if snap.status is runs.RunStatus.QUEUED:
            st.info(f"**{title}**: the trainer is busy, **{snap.queue_ahead} ahead of you**. Your run starts by "
                    f"itself when a slot frees up (at most {manager.max_concurrent} run(s) train at once; "
                    f"`{runs.ENV_MAX_CONCURRENT}` sets it).", icon=":material/hourglass_top:")
        elif snap.status is runs.RunStatus.RUNNING:
            st.markdown(f"**Training {title}** on {snap.start.device if snap.start else _device_label()}")
        else:
            show_outcome(snap)
        if snap.status.active:
            left, right = st.columns([1, 5], vertical_alignment="center")
            stopping = snap.cancel_requested
            queued = snap.status is runs.RunStatus.QUEUED
            label = "Stopping…" if stopping else "Leave the queue" if queued else "Stop training"
            if left.button(label, icon=":material/stop_circle:", key="studio_stop", disabled=stopping,
                           help="Take the run out of the queue." if queued else
                           "End the run now and keep the best weights so far."):
                manager.cancel(run_id)
                manager.wait(run_id, timeout=2.0)
                st.rerun()
            if snap.status is runs.RunStatus.RUNNING:
                with right:
                    show_progress(snap)
                    show_statuses(snap)
        else:
            show_progress(snap)
            show_statuses(snap)
        if snap.batches:
            st.slider("Smoothing of the batch curves", 0.0, 0.98, 0.8, step=0.02, key="studio_smoothing",
                      help="An exponential moving average: 0 shows the raw, noisy batch values.")
        show_charts(snap)

    live()


# ------------------------------------------------------------------------------------------ results
def show_metrics(snap: runs.RunSnapshot) -> None:
    metrics = snap.end.test_metrics
    binary = len(snap.end.card.get("class_names", [])) == 2
    # For two classes recall is the sensitivity of the positive class, shown under that name.
    keys = (["accuracy", "sensitivity", "specificity", "precision", "f1", "auroc", "kappa"] if binary
            else ["accuracy", "precision", "recall", "f1", "auroc", "kappa"])
    st.markdown(f"#### Test metrics ({metrics['n']:,} test images)")
    cols = st.columns(len(keys))
    positive = snap.end.card["class_names"][1] if binary else None
    for col, key in zip(cols, keys):
        label = "Recall" if key == "recall" else METRIC_LABELS.get(key, key)
        if key in ("precision", "recall", "f1"):
            label += f" ({positive})" if binary else " (macro)"
        value = metrics.get(key)
        col.metric(label, "n/a" if value is None else (f"{value:.3f}" if key == "kappa" else f"{100 * value:.1f} %"),
                   help="ROC-AUC is undefined when a class is missing from the test set." if key == "auroc" else None)
    st.caption("Macro scores average the classes equally, so a rare class counts as much as a common one."
               if not binary else f"Sensitivity and specificity treat '{positive}' as the positive class.")
    views = snap.end.card.get("test_time_augmentation") or []
    if len(views) > 1:
        st.caption(f"Test-time augmentation: each test image's class probabilities are the average over the "
                   f"{len(views)} orientations its training taught ({', '.join(views)}); predictions from the "
                   "checkpoint do the same.")


def confusion_figure(matrix: list[list[int]], class_names: list[str]) -> go.Figure:
    names = [str(n) for n in class_names]
    figure = go.Figure(go.Heatmap(z=matrix, x=names, y=names, colorscale="Blues", texttemplate="%{z}",
                                  hovertemplate="true %{y}, predicted %{x}: %{z} images<extra></extra>",
                                  colorbar=dict(title="images")))
    side = min(620, 200 + 40 * len(names))
    long_names = max(map(len, names)) > 3
    figure.update_layout(height=side, margin=dict(l=10, r=10, t=10, b=10),
                         xaxis=dict(title="predicted class", type="category", tickangle=-35 if long_names else 0),
                         yaxis=dict(title="true class", type="category", autorange="reversed"))
    return figure


def show_confusion_and_gallery(snap: runs.RunSnapshot) -> None:
    class_names = [str(n) for n in snap.end.card["class_names"]]
    left, right = st.columns([2, 3], gap="large")
    with left:
        st.markdown("#### Confusion matrix")
        st.plotly_chart(confusion_figure(snap.end.test_metrics["confusion_matrix"], class_names),
                        key="studio_confusion")
        st.caption("Rows: the true class; columns: what the model said. The diagonal is right, everything else "
                   "a mistake.")
    with right:
        wrong = snap.misclassified
        st.markdown(f"#### Misclassified test images ({len(wrong)} shown, most confident mistakes first)"
                    if wrong else "#### Misclassified test images")
        if not wrong:
            if snap.note:
                st.caption(snap.note)
            else:
                st.success("No test image was misclassified.")
            return
        scale = gallery.display_scale(int(wrong[0].image.shape[-1]), 84)
        for start in range(0, len(wrong), GALLERY_COLUMNS):
            cols = st.columns(GALLERY_COLUMNS)
            for col, example in zip(cols, wrong[start : start + GALLERY_COLUMNS]):
                col.image(gallery.to_display(example.image, scale), width="stretch", output_format="PNG")
                col.caption(f"true **{class_names[example.true_label]}** · said "
                            f"**{class_names[example.predicted_label]}** ({100 * example.confidence:.0f} %)")


def show_checkpoint(snap: runs.RunSnapshot) -> None:
    st.markdown("#### Checkpoint")
    path = Path(snap.checkpoint_path) if snap.checkpoint_path else None
    if path is None:
        st.caption(snap.note or "This run saved no checkpoint.")
        return
    if not path.is_file():
        show_error(f"The checkpoint {path.name} is gone from {path.parent} (deleted?).")
        return
    st.markdown(f"Saved as `{path.name}` in `{path.parent}`, with its card beside it. The **Predict** page and the "
                "home page list it.")
    buttons = st.container(horizontal=True)
    buttons.download_button("Download checkpoint", data=path.read_bytes, file_name=path.name,
                            mime="application/octet-stream", icon=":material/download:", key="studio_download",
                            on_click="ignore", help="safetensors weights; the card is stored inside too.")
    card_path = path.with_suffix(".json")
    if card_path.is_file():
        buttons.download_button("Download card (JSON)", data=card_path.read_bytes, file_name=card_path.name,
                                mime="application/json", icon=":material/description:", key="studio_download_card",
                                on_click="ignore")
    with st.expander("The checkpoint's card"):
        st.code(snap.end.card.get("command", ""), language="bash")
        st.json(snap.end.card, expanded=1)


def show_outcome(snap: runs.RunSnapshot) -> None:
    """How an ended run ended: finished, stopped (and what was kept) or failed (and why)."""
    end = snap.end
    if snap.status is runs.RunStatus.FAILED:
        show_error(snap.error or "The run failed.")
        return
    if end is None:
        st.warning(snap.note or "The run ended before it started.", icon=":material/stop_circle:")
        return
    seconds = runs.format_seconds(end.seconds)
    if snap.status is runs.RunStatus.CANCELLED:
        kept = (f" The checkpoint keeps the best weights so far (epoch {end.best_epoch})."
                if end.checkpoint_path else "")
        st.warning(f"Stopped after {end.epochs_run} epoch(s) and {seconds} of training.{kept} "
                   "Test metrics are computed for runs that finish.", icon=":material/stop_circle:")
        if snap.note:
            st.caption(snap.note)
    else:
        early = " (stopped early: validation stopped improving)" if end.stopped_early else ""
        kept = (f"the last epoch ({end.best_epoch})" if snap.config.monitor == "last" else
                f"epoch {end.best_epoch}, the one with {MONITOR_SENTENCES[snap.config.monitor]}")
        st.success(f"Finished: {end.epochs_run} epoch(s) in {seconds} of training{early}; the checkpoint holds "
                   f"{kept}.", icon=":material/check_circle:")


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


def compare_runs(manager: runs.RunManager, owner: str) -> None:
    history = manager.runs_for(owner)
    if len(history) < 1:
        return
    st.subheader(":material/compare_arrows: Compare your runs")
    rows = []
    for number, snap in enumerate(history, 1):
        config, resolved = snap.config, snap.resolved
        a = resolved.augment
        augment = ", ".join(part for part, on in ((f"shift {a.shift}", a.shift), ("h-flip", a.hflip),
                                                  ("v-flip", a.vflip), ("rot-90", a.rotate90),
                                                  (f"jitter {a.color_jitter:g}", a.color_jitter),
                                                  (f"gray {a.grayscale:g}", a.grayscale))
                            if on) or "none"
        best_val = max((e.val_accuracy for e in snap.epochs), default=None)
        rows.append({
            "run": f"#{number}", "status": STATUS_LABELS[snap.status], "data set": config.dataset,
            "model": resolved.model, "epochs": f"{len(snap.epochs)}/{resolved.epochs}",
            "batch": resolved.batch_size, "lr": f"{resolved.lr:g}",
            "optimizer": f"{resolved.optimizer} · {resolved.schedule}", "augmentation": augment,
            "subset": f"{config.limit:,}" if config.limit else "all", "seed": config.seed,
            "best val acc": best_val, "test acc": snap.test_accuracy,
            "time": runs.format_seconds(snap.wall_seconds()) if snap.started_monotonic else "—",
        })
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch", key="studio_compare_table",
                 column_config={"best val acc": st.column_config.NumberColumn(format="percent"),
                                "test acc": st.column_config.NumberColumn(format="percent")})
    figure = _panels(("Validation accuracy (%)", "Validation loss"), 320)
    for number, snap in enumerate(history, 1):
        if not snap.epochs:
            continue
        colour = RUN_COLOURS[(number - 1) % len(RUN_COLOURS)]
        epochs = [e.epoch for e in snap.epochs]
        figure.add_scatter(x=epochs, y=[100 * e.val_accuracy for e in snap.epochs], name=_run_label(number, snap),
                           mode="lines+markers", line=dict(color=colour), legendgroup=str(number), **_axes(1))
        figure.add_scatter(x=epochs, y=[e.val_loss for e in snap.epochs], name=_run_label(number, snap),
                           mode="lines+markers", line=dict(color=colour), legendgroup=str(number), showlegend=False,
                           **_axes(2))
    if figure.data:
        dtick = max(1, round(max(len(s.epochs) for s in history) / 10))
        for axis in ("xaxis", "xaxis2"):
            figure.layout[axis].update(title="epoch", dtick=dtick)
        st.plotly_chart(figure, key="studio_compare_chart")
    if len(history) > 1:
        labels = {snap.id: _run_label(number, snap) for number, snap in enumerate(history, 1)}
        current = st.session_state.get("studio_run")
        st.session_state["studio_pick_run"] = current if current in labels else history[-1].id
        st.selectbox("Show the details of run", list(labels), format_func=labels.get, key="studio_pick_run",
                     on_change=lambda: st.session_state.update(studio_run=st.session_state["studio_pick_run"]))
    st.caption("Runs are kept while the app runs (the last "
               f"{runs.RUNS_KEPT_PER_OWNER}); their checkpoints stay in the runs folder.")


# ------------------------------------------------------------------------------------------ page
try:
    run_manager = _manager()
except CnnError as exc:  # e.g. CNN_MAX_CONCURRENT_RUNS is not a number
    show_error(exc)
    st.stop()
browser_owner = browser_id()

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
    setup(browser_owner, run_manager, active_run)

if shown is not None:
    st.subheader(":material/monitoring: Your run")
    shown_active = active_run is not None and active_run.id == shown
    show_live(run_manager, shown, was_active=shown_active)
    if not shown_active:
        show_results(run_manager.snapshot(shown))
    compare_runs(run_manager, browser_owner)

