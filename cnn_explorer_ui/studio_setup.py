"""The Training Studio's set-up: data set, model and its options, every training option and augmentation.

View code only: defaults come from the model registry (`cnn_core.models`) and the data set's family
(`cnn_core.augment`), checks from `cnn_core.runs`. State lives under "studio_*" keys.
"""

from __future__ import annotations

from dataclasses import replace

import streamlit as st

from cnn_core import data, models, reports, runs
from cnn_core.models import backbones, transfer
from cnn_core.data.augment import AugmentConfig, default_augment
from cnn_core.errors import CnnError
from cnn_core.training import (MIN_BATCH_SIZE, MONITORS, OPTIMIZERS, SCHEDULES, TrainConfig, checkpoint_keeps,
                               resolve_monitor)
from cnn_core.training.config import (MIN_DEFAULT_SIDE, MIN_DEFAULT_STEPS, MIN_VAL_IMAGES_PER_CLASS, SMALL_SET_IMAGES,
                                     default_image_size, default_recipe, small_side_reason)

from .data_sets import present_datasets
from .pickers import dataset_picker, model_arg_picker, model_picker
from .widgets import device_label, keep, kept, literal, show_folder_notes, without_server_paths

FOLDER_SIZES = (32, 64, 96, 128)
FEW_IMAGES = 20  # training images per class below which the studio warns
MAX_CLASSES_LISTED = 12
MONITOR_LABELS = {"auto": "auto (suits the data)", "val_accuracy": "best val. accuracy",
                  "val_balanced_accuracy": "best val. balanced accuracy", "val_auroc": "best val. ROC-AUC",
                  "val_loss": "lowest val. loss", "last": "last epoch"}
CACHED_FEATURES_HELP = ("The frozen backbone's features are computed once per image, so they cannot change "
                        "from batch to batch; flips are kept as cached flipped copies.")


def training_images(info: data.DatasetInfo) -> int | None:
    """Images the training split will really have: image folders leave out unreadable files, found by decoding
    each file once per folder listing (cnn_core.data remembers the answer, so reruns decode nothing)."""
    try:
        if info.family == "folder":
            with st.spinner(f"Checking which images of {info.title} can be read…"):
                return data.split_sizes(info.name).get("train")
        return data.split_sizes(info.name).get("train")
    except CnnError:
        return (info.n_samples or {}).get("train")


def choose_dataset(default: str | None = None) -> data.DatasetInfo | None:
    """A data set on this computer that can be trained (multi-label ones cannot yet); a new tab starts at
    `default` (the data set of the run it shows: a reload goes on with an upload, not with MNIST)."""
    present = present_datasets()
    trainable = {name: info for name, info in present.items() if not info.multi_label}
    multi_label = [info.title for info in present.values() if info.multi_label]
    kept("studio_dataset")  # back from another page: the data set chosen before, not the run's or the first
    if "studio_dataset" not in st.session_state and default in trainable:
        st.session_state["studio_dataset"] = default
    chosen = st.session_state.get("studio_dataset")
    if chosen is not None and chosen not in trainable:
        st.warning(f"The data set `{chosen}` is not on this computer any more (deleted or moved); choose another.",
                   icon=":material/warning:")
        del st.session_state["studio_dataset"]
    if not trainable:
        st.warning("No trainable data set was found under CNN_DATA_DIR. The home page lists where the data sets "
                   "were looked for and how to get them; or upload a zip of class folders below.")
        return None
    info = dataset_picker(list(trainable.values()), key="studio_dataset",
                          help="Data sets found on this computer, image folders under CNN_DATA_DIR and the zips you "
                               "uploaded (only you see them). Multi-label sets (ChestMNIST) cannot be trained here yet.")
    keep()
    st.caption(f"{info.task} · {len(info.class_names)} classes · {info.channels} channel(s) · "
               f"{info.image_size}×{info.image_size} px" + (f" · left out (multi-label): {', '.join(multi_label)}"
                                                           if multi_label else ""))
    if info.family == "folder":
        show_folder_notes(info)
    show_class_counts(info)
    return info


@st.cache_data(ttl=60, show_spinner=False)
def _class_counts(name: str) -> dict[str, list[int]] | None:
    try:
        return data.class_counts(name)
    except CnnError:
        return None


def show_class_counts(info: data.DatasetInfo) -> None:
    """Training images per class, and a word when the classes are imbalanced or a class has few images."""
    counts = _class_counts(info.name)
    if not counts or not sum(counts.get("train", [])):
        return
    train = counts["train"]
    # Words, not a chart: the set-up stays short and costs the browser nothing to draw.
    shown = ", ".join(f"{literal(name)} {count:,}" for name, count in list(zip(info.class_names, train))[:MAX_CLASSES_LISTED])
    more = f" and {len(train) - MAX_CLASSES_LISTED} more classes" if len(train) > MAX_CLASSES_LISTED else ""
    st.caption(f":material/bar_chart: Training images per class: {shown}{more}.")
    present = [c for c in train if c]
    ratio = max(present) / min(present) if present else 1.0
    if ratio >= reports.IMBALANCE_RATIO:
        st.caption(f":material/balance: Imbalanced: the largest class has {ratio:.1f}× the training images of the "
                   "smallest. Accuracy then flatters a model that favours the big classes; the test results add "
                   "balanced accuracy (the mean of the per-class recalls).")
    few = [f"{literal(name)} ({count})" for name, count in zip(info.class_names, train) if count < FEW_IMAGES]
    if few:
        st.warning(f"Few training images in {', '.join(few)}: a CNN learns little from under {FEW_IMAGES} examples "
                   "of a class. Add images if you can.", icon=":material/warning:")


def choose_model(info: data.DatasetInfo) -> tuple[models.ModelSpec, dict] | None:
    """The model and its options; options come from the registry entry, so models that join the registry
    (e.g. transfer backbones) bring their own."""
    spec = model_picker(info, key=f"studio_model_{info.name}", folder_sizes=FOLDER_SIZES)
    if spec is None:
        return None
    if transfer.is_transfer_model(spec.name):
        weights_here, where = backbones.weights_status(spec.name)
        if weights_here:
            st.caption(f":material/check_circle: {without_server_paths(where)}")
        else:  # before the run, so nobody waits for a run that fails offline
            st.warning(without_server_paths(where), icon=":material/cloud_off:")
    return spec, model_arg_picker(spec, key_prefix="studio_arg")


def choose_image_size(info: data.DatasetInfo, spec: models.ModelSpec) -> int | None:
    """The side images are resized to, for image folders and for sets of images larger than 28 px (MedMNIST at
    64-224 px); it starts where the command line's default does (`default_image_size`; a transfer backbone
    wants its own input size). None where there is nothing to choose (MNIST, 28-px MedMNIST)."""
    limit_now = st.session_state.get(f"studio_limit_{info.name}") or None  # the subset counts, as in the CLI
    side = default_image_size(info, TrainConfig(dataset=info.name, model=spec.name, limit=limit_now))
    if info.family == "folder":
        wanted = int(spec.defaults.get("folder_image_size") or side or info.image_size)
        sizes = {*FOLDER_SIZES, info.image_size, wanted}
    elif info.family == "medmnist" and info.image_size > 28 and not transfer.is_transfer_model(spec.name):
        wanted = side or info.image_size
        sizes = {info.image_size >> halvings for halvings in range(4) if info.image_size >> halvings >= 28}
    else:
        return None
    sizes = sorted(s for s in sizes if s >= spec.min_image_size)
    chosen = st.select_slider("Image size for training (pixels a side)", sizes, value=wanted if wanted in sizes else
                              sizes[-1], key=f"studio_size_{info.name}_{spec.name}",
                              help=f"The images ({info.image_size}×{info.image_size}) are resized to this square; "
                                   f"smaller trains faster. A set under {SMALL_SET_IMAGES:,} images starts at its side "
                                   f"halved while the half is at least {MIN_DEFAULT_SIDE} px (128 → 32, 224 → 28): in "
                                   "the same time, many epochs at a small "
                                   "size learned more than a few at full size.")
    if side is not None and chosen == side:
        reason = small_side_reason(info.image_size, side)
        st.caption(f":material/photo_size_select_small: {reason[0].upper()}{reason[1:]}. Move the slider to keep "
                   "more detail.")
    return chosen


def choose_options(info: data.DatasetInfo, spec: models.ModelSpec, model_args: dict,
                   image_size: int | None) -> TrainConfig:
    """Every training option, starting from the model's defaults for this data set."""
    d = spec.defaults
    key = f"{info.name}_{spec.name}"
    # rows that wrap on a narrow page (a sidebar, 150-200 % zoom on a projector): columns squeezed each field
    # until 0.0005 read 0.000 and labels broke mid-word
    row = st.container(horizontal=True)
    limit_now = st.session_state.get(f"studio_limit_{info.name}") or None
    suggested, suggested_batch = default_recipe(d, info, TrainConfig(dataset=info.name, model=spec.name, limit=limit_now,
                                                                     image_size=image_size))  # the CLI's recipe
    epochs = row.number_input("Epochs", value=suggested, step=1, key=f"studio_epochs_{key}_{image_size}",
                                  help="Passes over the training set (1–1000). As on the command line, a training "
                                       f"set under {SMALL_SET_IMAGES:,} images gets more epochs "
                                       f"({int(d.get('small_set_steps', MIN_DEFAULT_STEPS)):,} gradient steps for "
                                       "this model) within a budget of image passes that keeps it under a minute "
                                       "on a laptop CPU.")
    batch_size = row.number_input("Batch size", value=suggested_batch, min_value=MIN_BATCH_SIZE,
                                      step=8, key=f"studio_batch_{key}_{image_size}",
                                      help=f"Images per gradient step ({MIN_BATCH_SIZE}–65536, at most the training "
                                           "set; BatchNorm layers cannot learn from one image at a time).")
    lr = row.number_input("Learning rate", value=float(d.get("lr", 1e-3)), step=0.0005, format="%g",
                              key=f"studio_lr_{key}",
                              help="Step size of the optimizer (above 0, at most 10); the peak rate for one-cycle.")
    optimizer = row.selectbox("Optimizer", OPTIMIZERS, index=OPTIMIZERS.index(d.get("optimizer", "adamw")),
                                  key=f"studio_optimizer_{key}")
    schedule = row.selectbox("Schedule", SCHEDULES, index=SCHEDULES.index(d.get("schedule", "none")),
                                 key=f"studio_schedule_{key}",
                                 help="onecycle: warm up, then anneal; cosine: anneal from the start.")
    row = st.container(horizontal=True)
    keeps = row.container(width=240)  # squeezed, it read "auto (suits the c"
    monitor = keeps.selectbox("Checkpoint keeps", MONITORS, index=0, format_func=MONITOR_LABELS.get,
                                key=f"studio_monitor_{key}",
                                help="Which epoch's weights the checkpoint keeps. auto: the last epoch for transfer "
                                     "models and when a class has fewer than "
                                     f"{MIN_VAL_IMAGES_PER_CLASS} validation images (such small validation sets "
                                     "score mostly noise), the best balanced accuracy for two classes (plain "
                                     "accuracy rewards guessing the larger class), else the best accuracy.")
    if monitor == "auto":  # what auto means for this model and data, before the run resolves it the same way
        patience_now = st.session_state.get(f"studio_patience_{key}") or None
        kept = checkpoint_keeps(resolve_monitor("auto", spec.name, patience_now, info, limit_now))
        keeps.caption(f"auto: {kept}")
    patience = row.number_input("Patience", value=0, min_value=0, step=1,
                                    key=f"studio_patience_{key}", disabled=monitor == "last",
                                    help="Early stopping: stop after this many epochs without a better validation "
                                         "score (0: never stop early; not when keeping the last epoch).")
    weight_decay = row.number_input("Weight decay", value=5e-4, min_value=0.0, max_value=1.0, step=1e-4,
                                        format="%g", key=f"studio_wd_{key}")
    n_train = training_images(info)
    limit = row.number_input("Subset (images per split)", value=0, min_value=0, step=100,
                                 key=f"studio_limit_{info.name}",
                                 help="Use at most this many images of each split for a quick classroom run "
                                      f"(0: all{f', {n_train:,} training images' if n_train else ''}).")
    seed = row.number_input("Seed", value=0, min_value=0, max_value=2**31 - 1, step=1, key="studio_seed",
                                help="The same seed gives the same run: same subset, shuffling and weights.")
    row.markdown(f"**Device**  \n:material/memory: {device_label()}", width="content")
    augment = choose_augment(info, transfer.augmentations_used(spec.name, model_args))
    return TrainConfig(
        dataset=info.name, model=spec.name, model_args=model_args, epochs=int(epochs), batch_size=int(batch_size),
        lr=float(lr), optimizer=optimizer, schedule=schedule, weight_decay=float(weight_decay),
        patience=(int(patience) or None) if monitor != "last" else None, monitor=monitor, seed=int(seed),
        limit=int(limit) or None, augment=augment, image_size=image_size,
    )


def choose_augment(info: data.DatasetInfo, used: frozenset[str] | None = None) -> AugmentConfig:
    """Augmentation toggles that make sense for the data: flips are off and locked for digits; options the
    model cannot honour (`used` leaves them out: cached transfer features) are off and locked too."""
    default = default_augment(info.family, info.task, info.name)
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
