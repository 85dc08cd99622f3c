"""The Dataset Gallery's caches and its larger parts: a data set that is not here (and its download), the
counts chart, one image enlarged with its pixel values.

View code only: every number and picture comes from `cnn_core.gallery`. State lives under "gallery_*" keys.
"""

from __future__ import annotations

import time

import plotly.graph_objects as go
import streamlit as st

from cnn_core import data, gallery
from cnn_core.errors import CnnError

from .data_sets import forget_dataset_statuses
from .grids import grid_html, render_html
from .widgets import literal, show_error, show_server_paths, without_server_paths

ENLARGED_PX = 280
CROP_SIDES = (16, 24)  # squares of a large image whose pixel values are printed
SPLIT_COLOURS = {"train": "#3b6ea5", "val": "#e39b3b", "test": "#5aa469"}
CHANNEL_NAMES = ("red", "green", "blue")


# ------------------------------------------------------------------------------------------ caches
PROGRESS_AFTER_S = 1.0  # loads that take longer show a progress bar
_LOADED: set[tuple[str, str]] = set()  # (name, version) whose splits and statistics this process has read


def load_with_progress(info: data.DatasetInfo, version: str) -> None:
    """Read every split and the channel statistics before `summary` needs them, with a progress bar (step
    and fraction) once it takes over a second: a MedMNIST file is decompressed once into CNN_CACHE_DIR
    (about ten seconds for PathMNIST), two splits at a time; later loads read the cached tensors."""
    if (info.name, version) in _LOADED:
        return
    weights = {split: max(1, (info.n_samples or {}).get(split, 1)) for split in info.splits}
    place, started = st.empty(), time.monotonic()

    def show(fraction: float, text: str) -> None:
        if time.monotonic() - started > PROGRESS_AFTER_S:
            place.progress(min(1.0, fraction), text=text)

    def show_splits(heard: dict[str, float]) -> None:
        total = sum(heard[split] * weights[split] for split in heard) / sum(weights.values())
        splits = ", ".join(f"{split} {fraction:.0%}" for split, fraction in heard.items())
        show(total, f"Step 1 of 2 · Reading {info.title} ({splits}). The first time its file is decompressed "
                    f"into the cache; later visits read it from there. {total:.0%}")

    data.load_splits(info.name, progress=show_splits)
    show(1.0, "Step 2 of 2 · Channel statistics and per-class averages…")
    data.channel_stats(info.name)
    place.empty()
    _LOADED.add((info.name, version))


@st.cache_resource(show_spinner="Computing the statistics…", max_entries=4)
def summary(name: str, version: str) -> tuple[dict[str, data.SplitData], gallery.DatasetSummary]:
    info = data.get_dataset_info(name)
    splits = {split: data.load_split(name, split) for split in info.splits}
    return splits, gallery.summarize(splits, mean_std=data.channel_stats(name))


@st.cache_resource(show_spinner=False, max_entries=16)
def samples(name: str, version: str, split: str, per_class: int, seed: int) -> gallery.SampleGrid:
    splits, _ = summary(name, version)
    return gallery.sample_grid(splits[split], split, per_class, seed)


@st.cache_data(show_spinner=False, max_entries=16)
def grid_png(name: str, version: str, split: str, per_class: int, seed: int, scale: int) -> bytes:
    return gallery.png_bytes(gallery.grid_picture(samples(name, version, split, per_class, seed), scale=scale))


@st.cache_data(ttl=300, show_spinner="Checking the internet connection…")
def _online(server: str, _name: str) -> bool:
    """Whether `server` (where `_name` would come from) answers; cached per server, not per data set."""
    return data.download_server_reachable(_name)


# ------------------------------------------------------------------------------------------ missing
def show_description(info: data.DatasetInfo) -> None:
    own = info.family == "folder"  # named by whoever made the folder or zip: shown as written
    st.subheader(literal(info.title) if own else info.title)
    st.markdown(literal(info.description) if own else info.description)
    st.markdown(f"**Task:** {info.task} · **Modality:** {gallery.modality(info)} · **Licence:** {info.license}")


def show_missing(status: data.DatasetStatus) -> None:
    """What the data set is, where its files were looked for, and a download button when the server answers."""
    info = status.info
    show_description(info)
    st.caption(f"{info.image_size}×{info.image_size} pixels · {info.channels} channel(s) · classes: "
               f"{', '.join(map(literal, info.class_names))}")
    st.warning(f"**{info.title}** is not on this computer yet.", icon=":material/cloud_off:")
    missing = ", ".join(status.missing) or "its files"
    if show_server_paths():  # the server's folders, for a browser on its own machine only
        looked = "\n".join(f"- `{path}`" for path in status.searched)
        st.markdown(f"Looked for **{missing}** in:\n{looked}")
    else:
        st.markdown(f"**{missing}** is not in this server's data folder.")
    if status.download_size:
        st.markdown(f"Download size: **{status.download_size}**.")
    try:
        server = data.download_server(info.name)
    except CnnError as exc:  # a malformed CNN_DOWNLOAD_MIRROR
        show_error(exc)
        st.caption(without_server_paths(status.how_to_get))
        return
    if server and _online(server, info.name):
        if st.button(f"Download {info.title}", icon=":material/download:", key=f"gallery_download_{info.name}",
                     type="primary"):
            download(info, server)
        st.caption(without_server_paths(status.how_to_get))
    else:
        st.info(f"This computer cannot reach {server or 'the download server'}, so the app cannot download it. "
                f"{without_server_paths(status.how_to_get)}", icon=":material/wifi_off:")


def download(info: data.DatasetInfo, server: str) -> None:
    """Download with a progress bar of the bytes received; when done, rerun so the gallery shows the data set."""
    note = st.empty()
    bar = st.progress(0.0, text=f"Connecting to {server}…")

    def show_bytes(progress: data.DownloadProgress) -> None:
        fraction = progress.fraction
        if fraction is None:
            bar.progress(0.0, text=f"Downloading {progress.filename}: {progress.describe()}")
        else:
            bar.progress(fraction, text=f"Downloading {progress.filename}: {progress.describe()} ({fraction:.0%})")

    try:
        data.download_dataset(info.name, progress=note.caption, on_bytes=show_bytes)
    except CnnError as exc:
        bar.empty()
        show_error(exc)
        return
    forget_dataset_statuses()
    st.session_state["gallery_relabel"] = True
    st.rerun()


# ------------------------------------------------------------------------------------------ present
def counts_figure(info: data.DatasetInfo, counts: dict[str, list[int]]) -> go.Figure:
    """Images per class, one bar per split."""
    figure = go.Figure()
    for split, split_counts in counts.items():
        figure.add_bar(name=split, x=list(info.class_names), y=split_counts, marker_color=SPLIT_COLOURS.get(split),
                       hovertemplate="%{x}<br>%{y:,} images<extra>" + split + "</extra>")
    figure.update_layout(barmode="group", height=360, margin=dict(l=10, r=10, t=10, b=10),
                         legend=dict(orientation="h", y=1.08), yaxis_title="images",
                         # category: MNIST's classes "0".."9" read as numbers got a tick every second class
                         xaxis=dict(type="category", tickangle=-30 if max(map(len, info.class_names)) > 6 else 0))
    return figure


@st.dialog("Image", width="large")
def show_image(name: str, version: str, split: str, index: int) -> None:
    """One image enlarged, its label, and every pixel value as a number grid: all of a small image, a crop
    the student moves over a large one (outlined on the image)."""
    splits, _ = summary(name, version)
    split_data = splits[split]
    info = split_data.info
    image = split_data.images[index]
    label = gallery.label_text(split_data.labels[index], info.class_names)
    height, width = image.shape[-2:]
    crop = None
    if max(height, width) > gallery.PIXEL_GRID_MAX_SIDE:
        crop = _choose_crop(height, width)
    left, right = st.columns([1, 2], gap="large")
    with left:
        scale = gallery.display_scale(max(height, width), ENLARGED_PX)
        picture = gallery.to_display(image, scale)
        if crop is not None:
            picture = gallery.outline_square(picture, crop[0] * scale, crop[1] * scale, crop[2] * scale,
                                             width=max(2, scale))
        st.image(picture, output_format="PNG")
        st.markdown(f"**{split} image #{index}**  \nLabel: **{literal(label)}**")
        st.caption(f"uint8 tensor of shape {tuple(image.shape)} (channels, height, width); values "
                   f"{int(image.min())}–{int(image.max())}.")
    with right:
        channel = 0
        if info.channels > 1:
            channel = st.radio("Channel", range(info.channels), format_func=CHANNEL_NAMES.__getitem__,
                               horizontal=True, key="gallery_pixel_channel")
        values = gallery.pixel_grid(image, channel)
        what = "" if info.channels == 1 else f" ({CHANNEL_NAMES[channel]} channel)"
        first = (0, 0)
        if crop is not None:
            top, start, side = crop
            values, first = values[top:top + side, start:start + side], (top, start)
            what += (f" of the {side}×{side} crop outlined on the image (rows {top}–{top + side - 1}, columns "
                     f"{start}–{start + side - 1})")
        render_html(grid_html(values, title=f"Pixel values{what}, 0 = black … 255 = full brightness",
                              fmt=lambda v: str(int(v)), value_range=(0, 255), first_index=first,
                              test_id="gallery-pixel-grid"))
        st.caption("This is what the network receives: a grid of numbers (scaled to 0–1 and normalized), "
                   f"labelled **{label}**.")


def _choose_crop(height: int, width: int) -> tuple[int, int, int]:
    """(top, left, side) of the square whose pixel values are printed: the image has too many to print them
    all, so the student picks the size and moves the square (it starts in the middle)."""
    st.caption(f"At {height}×{width} this image has {height * width:,} pixels: too many numbers to print. "
               "Pick a square of it (outlined in orange on the image) and move it to see its pixel values.")
    sizes = [side for side in CROP_SIDES if side <= min(height, width)] or [min(height, width)]
    columns = st.columns([1, 2, 2])
    side = columns[0].segmented_control("Crop", sizes, default=sizes[0], required=True, key="gallery_crop_side",
                                        format_func=lambda s: f"{s}×{s}")
    shape = f"{height}_{width}_{side}"  # a slider's range changes with these: a fresh slider then
    top = columns[1].slider("Crop's top row", 0, height - side, (height - side) // 2, key=f"gallery_crop_top_{shape}")
    left = columns[2].slider("Crop's left column", 0, width - side, (width - side) // 2,
                             key=f"gallery_crop_left_{shape}")
    return top, left, side
