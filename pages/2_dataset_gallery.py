"""Dataset Gallery: what is in a data set before a network ever sees it.

A thin view: the registry is `cnn_core.data`, every number and picture comes from `cnn_core.gallery`
(cached, with the download and the pixel-value dialog, in `cnn_explorer_ui.gallery_views`), zip uploads go
through `cnn_core.data.zipfolder` (via `cnn_explorer_ui.widgets`). State lives in `st.session_state`
under "gallery_*" keys.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from cnn_core import data, gallery
from cnn_core.errors import CnnError
from cnn_core.training import TrainConfig, default_model
from cnn_core.training.config import default_image_size, small_side_reason
from cnn_explorer_ui import browser_datasets, browser_id, dataset_statuses, import_zip_upload, is_present, show_error
from cnn_explorer_ui.thumbnails import ThumbnailRow, thumbnail_rows
from cnn_explorer_ui.widgets import (REMOVED_KEY, keep, kept, literal, own_upload_controls, scaled, show_folder_notes,
                                     show_server_paths)
from cnn_explorer_ui.data_sets import dataset_version
from cnn_explorer_ui.gallery_views import (CHANNEL_NAMES, counts_figure, grid_png,
                                           load_with_progress, samples, show_description, show_image, show_missing,
                                           summary)

DEFAULT_SEED = 0
DEFAULT_PER_CLASS = 8
MAX_PER_CLASS = 12
THUMBNAIL_PX = 84        # small images are enlarged by whole pixels to about this size
FAMILY_LABELS = {"mnist": "MNIST", "medmnist": "MedMNIST"}

st.title(":material/photo_library: Dataset Gallery")
st.markdown(
    "Before training a network, look at the data: what the classes are, how many images each has, what "
    "typical and average images look like, and which numbers a network really receives."
)


# ------------------------------------------------------------------------------------------ registry
def _catalogue() -> dict[str, gallery.PickerEntry]:
    """The picker's entries by key, in registry order: the shared data sets and this browser's uploads."""
    return {entry.key: entry for entry in gallery.picker_entries(browser_datasets())}


# ------------------------------------------------------------------------------------------ zip upload
def import_upload() -> None:
    """The zip uploader; a newly imported zip is selected in the picker."""
    st.markdown(
        "Zip a folder with **one sub-folder per class** (`cats/…`, `dogs/…`; a single wrapper folder around "
        "them, and split folders `train/`, `test/` above them, are fine), or images named by class "
        "(`cat.0.jpg`, `dog.0.jpg`, as Kaggle's Dogs vs. Cats), or images beside a CSV label table (a column of "
        "file names, a column called `label`, `class`, `diagnosis`...). It becomes a data set for you only (other people "
        "using this app do not see it), also offered by the training studio. Files that are not images are "
        "skipped and counted."
    )
    imported = import_zip_upload("gallery_zip", "Zip of images (class folders, names by class or a CSV label table)")
    if imported:
        st.session_state["gallery_base"] = imported
        st.session_state.pop("gallery_unknown_link", None)


# ------------------------------------------------------------------------------------------ picker
def choose_dataset() -> str | None:
    """The registry name to show, from the picker (and `?dataset=` in the address, for shared links)."""
    catalogue = _catalogue()
    if not catalogue:
        st.info("The registry lists no data sets.")
        return None
    wanted = st.query_params.get("dataset")
    if "gallery_base" not in st.session_state and wanted:
        if linked := _linked_entry(catalogue, wanted):
            base, size = linked
            st.session_state["gallery_base"] = base
            st.session_state[f"gallery_size_{base}"] = size
        else:
            st.session_state["gallery_unknown_link"] = wanted
    kept("gallery_base")  # back from another page: the data set chosen before (Streamlit dropped the widget's state)
    if unknown := st.session_state.get("gallery_unknown_link"):
        st.info(f"The link asked for a data set called “{literal(unknown[:80])}”, which this app does not have (an uploaded "
                "zip is only offered in the browser that uploaded it). Choose one below.",
                icon=":material/link_off:")
    if st.session_state.get("gallery_base") not in catalogue:
        st.session_state["gallery_base"] = next(iter(catalogue))
    elif st.session_state.pop("gallery_relabel", False):
        # After a download the chosen entry's label loses "(not downloaded)", but the selectbox keeps showing
        # the old text (streamlit/streamlit PR #13788); setting its value from Python redraws it.
        st.session_state["gallery_base"] = st.session_state["gallery_base"]

    def label(key: str) -> str:
        entry = catalogue[key]
        family = "" if entry.family == "folder" else f"  ·  {FAMILY_LABELS.get(entry.family, entry.family)}"
        here = any(is_present(name) for name in entry.sizes.values())
        return entry.title + family + ("" if here else "  (not downloaded)")

    left, right = st.columns([3, 2])
    with left:
        base = st.selectbox("Data set", list(catalogue), format_func=label, key="gallery_base",
                            on_change=lambda: st.session_state.pop("gallery_unknown_link", None),
                            help="MNIST, the 12 two-dimensional MedMNIST sets, image folders found under "
                                 "CNN_DATA_DIR and zips you uploaded.")
    keep()
    sizes = catalogue[base].sizes
    with right:
        if len(sizes) > 1:
            here = [side for side, size_name in sizes.items() if is_present(size_name)]  # only _224 downloaded
            size = st.segmented_control("Image size", list(sizes), format_func=lambda s: f"{s}×{s}",
                                        default=None if f"gallery_size_{base}" in st.session_state
                                        else min(here or sizes),
                                        required=True, key=f"gallery_size_{base}",
                                        help="MedMNIST comes in 28, 64, 128 and 224 pixels a side; each "
                                             "size is its own download.")
        else:
            size = next(iter(sizes))
            st.caption(f"Images are prepared at {size}×{size} pixels.")
    name = sizes[size]
    linked = data.shown_name(name)  # an upload's link without its owner tag, where that still names it
    st.query_params["dataset"] = linked if _linked_entry(catalogue, linked) == (base, size) else name
    return name


def _linked_entry(catalogue: dict, wanted: str) -> tuple[str, int] | None:
    """(catalogue key, image size) of the data set a link names: by its registry name, else one of this browser's
    uploads by the name shown for it (`data.shown_name`: a link copied without the owner tag)."""
    entries = [(key, side, name) for key, entry in catalogue.items() for side, name in entry.sizes.items()]
    found = next((e for e in entries if e[2] == wanted), None) or next(
        (e for e in entries if data.shown_name(e[2]) == wanted), None)
    return found[:2] if found else None


# ------------------------------------------------------------------------------------------ present
def show_overview(info: data.DatasetInfo, status: data.DatasetStatus, splits: dict[str, data.SplitData]) -> None:
    show_description(info)
    n_images = sum(len(split) for split in splits.values())
    metrics = st.columns(4)
    read_as = ("Each image is scaled so its shorter side fits this size and centre-cropped to a square when the "
               "folder is read, whatever its own size." if info.family == "folder" else None)
    metrics[0].metric("Image size" + (" (as read)" if read_as else ""), f"{info.image_size}×{info.image_size}",
                      help=read_as)
    metrics[1].metric(f"Channels ({'grayscale' if info.channels == 1 else 'RGB'})", info.channels)
    metrics[2].metric("Classes", len(info.class_names))
    metrics[3].metric("Images", f"{n_images:,}")
    default = TrainConfig(dataset=info.name, model=default_model(info))
    if (side := default_image_size(info, default)) is not None:  # a small set of large images trains smaller
        reason = small_side_reason(info.image_size, side)
        shown = "as read" if read_as else "at full size"
        st.caption(f":material/photo_size_select_small: Shown here {shown}. In the Training Studio it is "
                   f"{reason} (raise the studio's image size to keep more detail, at the cost of fewer epochs).")
    paths = show_server_paths()  # a server path, for its own machine only (a folder's source is its path)
    source = info.source if paths or info.family != "folder" else "an image folder on the server"
    where = f" · Read from `{status.location}`" if paths and str(status.location) != info.source else ""
    st.caption(f"Source: {source}{where}")


def show_counts(info: data.DatasetInfo, summary: gallery.DatasetSummary) -> None:
    st.markdown("#### Images per class and split")
    if info.multi_label:
        st.caption("Multi-label: an image can carry several labels (or none), so it can count in several bars.")
    left, right = st.columns([3, 2])
    with left:
        st.plotly_chart(counts_figure(info, summary.counts), key="gallery_counts_chart")
    with right:
        table = pd.DataFrame({"class": [literal(name) for name in info.class_names], **summary.counts})  # Markdown
        table.insert(0, "label", range(len(info.class_names)))
        table["total"] = table[list(summary.counts)].sum(axis=1)
        st.table(table, hide_index=True)


def show_channel_stats(info: data.DatasetInfo, summary: gallery.DatasetSummary) -> None:
    st.markdown("#### Channel mean and standard deviation")
    names = ["gray"] if info.channels == 1 else list(CHANNEL_NAMES[: info.channels])
    columns = st.columns(2 * len(names))
    for index, channel in enumerate(names):
        columns[2 * index].metric(f"Mean ({channel})", f"{summary.mean[index]:.4f}")
        columns[2 * index + 1].metric(f"Std ({channel})", f"{summary.std[index]:.4f}")
    st.caption(f"Pixel values scaled to 0–1, over the {summary.stats_split} split. Training normalizes "
               "every pixel as (value − mean) / std, so the network's inputs are centred on 0 with spread 1.")


def _reshuffle() -> None:
    st.session_state["gallery_seed"] = gallery.next_seed(st.session_state.get("gallery_seed"))


def _sample_controls(info: data.DatasetInfo, splits: dict[str, data.SplitData]) -> tuple[str, int, int]:
    st.session_state.setdefault("gallery_seed", DEFAULT_SEED)
    columns = st.columns([2, 3, 2, 2], vertical_alignment="bottom")
    split = columns[0].selectbox("Split", list(splits), key=f"gallery_split_{info.name}",
                                 format_func=lambda s: f"{s} ({len(splits[s]):,} images)")
    per_class = columns[1].slider("Samples per class", 1, MAX_PER_CLASS, DEFAULT_PER_CLASS,
                                  key="gallery_per_class")
    seed = columns[2].number_input("Seed", 0, 2**31 - 1, key="gallery_seed", step=1,
                                   help="The same seed shows everyone the same images: handy in a classroom.")
    columns[3].button("Reshuffle", icon=":material/shuffle:", key="gallery_reshuffle", width="stretch",
                      on_click=_reshuffle, help="Pick other random images (a new seed).")
    return split, int(per_class), int(seed)


def _class_title(index: int, name: str) -> str:
    """MNIST's classes are their digits ("3"); other classes get their number too ("3: lymphocytes")."""
    return name if name == str(index) else f"{index}: {name}"


def _sample_rows(info: data.DatasetInfo, grid: gallery.SampleGrid, splits: dict[str, data.SplitData],
                 split: str) -> tuple[str, int] | None:
    """One row per class: its name, then its samples; clicking a sample returns (split, its index)."""
    rows = [ThumbnailRow(_class_title(c, name), list(grid.images[c]),
                         [f"{_class_title(c, name)}, {split} image #{i}" for i in grid.indices[c]],
                         ids=[f"{split}/{i}" for i in grid.indices[c]],
                         note="" if len(grid.indices[c]) else f"no {split} images of this class")
            for c, name in enumerate(info.class_names)]  # fmt: skip
    picked = thumbnail_rows(rows, key="gallery_samples", side_px=scaled(THUMBNAIL_PX),
                            image_size=info.image_size, clickable=True, hint="Enlarge and show its pixel values")
    if picked is None:
        return None
    # the id of the picture clicked, which a rerun in between (a reshuffle) may no longer show
    picked_split, _, index = picked.partition("/")
    if picked_split not in splits or not index.isdigit() or int(index) >= len(splits[picked_split]):
        return None
    return picked_split, int(index)


def show_samples(info: data.DatasetInfo, status: data.DatasetStatus,
                 splits: dict[str, data.SplitData]) -> tuple[str, int] | None:
    """The grid of random samples per class; returns (split, index) of the image clicked in this run."""
    st.markdown("#### Random samples per class")
    split, per_class, seed = _sample_controls(info, splits)
    grid = samples(info.name, dataset_version(status), split, per_class, seed)
    clicked = _sample_rows(info, grid, splits, split)
    left, right = st.columns([4, 1], vertical_alignment="center")
    left.caption(f"Seed {seed}: {per_class} random {split} images per class (fewer where a class has fewer). "
                 "Click an image to enlarge it and see its pixel values.")
    scale = gallery.display_scale(info.image_size, THUMBNAIL_PX)
    picture = grid_png(info.name, dataset_version(status), split, per_class, seed, scale)
    right.download_button("Save grid as PNG", picture,
                          file_name=f"{data.shown_name(info.name)}-{split}-seed{seed}.png", mime="image/png",
                          icon=":material/download:", key="gallery_save_grid", width="stretch",
                          on_click="ignore")
    return clicked


def show_class_means(info: data.DatasetInfo, summary: gallery.DatasetSummary) -> None:
    st.markdown("#### Average image per class")
    titles = [_class_title(c, name) for c, name in enumerate(info.class_names)]
    means = ThumbnailRow("", list(summary.class_means), [f"average of class {t}" for t in titles], captions=titles)
    thumbnail_rows([means], key="gallery_class_means", side_px=scaled(THUMBNAIL_PX), image_size=info.image_size)
    st.caption(f"Every pixel averaged over all {summary.stats_split} images of the class: what the class "
               "looks like 'on average', and how much its images differ from the other classes'.")


# ------------------------------------------------------------------------------------------ page
picker_area = st.container()
with st.expander("Add your own image folder (upload a zip)", icon=":material/upload_file:",
                 expanded=bool(st.session_state.get("gallery_zip"))):
    import_upload()

with picker_area:
    if removed := st.session_state.pop(REMOVED_KEY, None):
        st.success(f"Removed your upload {literal(data.shown_name(removed))}.", icon=":material/delete:")
    chosen = choose_dataset()

if chosen is not None:
    found = dataset_statuses(browser_id())[chosen]
    if found.status is None:
        show_error(found.problem)
        st.stop()
    dataset_status, dataset_info = found.status, found.info
    if not dataset_status.available:
        show_missing(dataset_status)
        st.stop()
    version = dataset_version(dataset_status)
    try:
        load_with_progress(dataset_info, version)
        loaded_splits, dataset_summary = summary(chosen, version)
    except CnnError as exc:
        show_error(exc)
        st.stop()
    show_overview(dataset_info, dataset_status, loaded_splits)
    if dataset_info.family == "folder":  # its layout, unreadable files (named) and too-small classes
        show_folder_notes(dataset_info)
        own_upload_controls(chosen)
    show_counts(dataset_info, dataset_summary)
    show_channel_stats(dataset_info, dataset_summary)
    picked = show_samples(dataset_info, dataset_status, loaded_splits)
    show_class_means(dataset_info, dataset_summary)
    if picked is not None:
        show_image(chosen, version, *picked)
