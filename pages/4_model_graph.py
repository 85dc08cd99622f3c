"""Model Graph: what a network is made of, how data flows through it, and what its conv layers see.

A thin view: the summary, the autograd graph and the feature maps come from `cnn_core.graph` (cached in
`cnn_explorer_ui.graph_views`); models from the registry (`cnn_core.models`) or a checkpoint
(`cnn_core.checkpoints`, never unpickled). State lives under "graph_*" keys.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from cnn_core import data, runs
from cnn_core.inference import explain, graph
from cnn_core.errors import CnnError
from cnn_core.models import backbones
from cnn_explorer_ui import browser_datasets, checkpoint_entries, is_present, present_datasets, show_error
from cnn_explorer_ui.session import browser_id
from cnn_explorer_ui.widgets import keep, kept, literal
from cnn_explorer_ui.cards import dataset_title
from cnn_explorer_ui.graph_views import (MAPS_PER_LAYER, ModelChoice, checkpoint_choice, feature_maps, graph_files,
                                         graph_html, held_model, model_summary, registry_choice)
from cnn_explorer_ui.exports import onnx_download
from cnn_explorer_ui.pickers import checkpoint_picker, dataset_picker, model_arg_picker, model_picker

MAX_LAYERS_SHOWN = 12  # feature-map grids shown at first; a picker offers the rest
GRAPH_FRAME_PX = 720

st.title(":material/account_tree: Model Graph")
st.markdown(
    "A CNN is a stack of layers, each turning a block of numbers into another. Here you see each layer's "
    "output shape and number of weights, the graph of operations PyTorch records to compute gradients, "
    "and the **feature maps** every convolution layer produces for an image."
)


# ------------------------------------------------------------------------------------------ choosing
def choose_registry_model() -> ModelChoice | None:
    present = set(present_datasets())
    infos = sorted(browser_datasets(), key=lambda info: info.name not in present)  # the ones here first
    left, right = st.columns(2)
    with left:
        info = dataset_picker(infos, key="graph_dataset", label="Data set (gives the input shape and the classes)",
                              present=present)
    with right:
        spec = model_picker(info, key="graph_model")
    if spec is None:
        return None
    model_args = model_arg_picker(spec, key_prefix="graph_arg")
    random_backbone = False
    if spec.name.startswith(backbones.PREFIX):  # a transfer model: an ImageNet backbone, a new head
        backbone = backbones.get_backbone(spec.name)
        side = model_args.get("input_size", backbone.input_size)
        resize = (f"Each image is first resized to {side} × {side} px"
                  + (", its gray repeated into 3 channels," if info.channels == 1 else "")
                  + " and normalized as ImageNet's were: the first layer below sees that, not the data set's size.")
        available = backbones.weights_status(spec.name)[0]
        random_backbone = not available and not backbone.offline  # an offline one lacks its package: said below
        if random_backbone:
            st.caption(f"This server does not have {backbone.title}'s ImageNet weights, so the architecture is "
                       "shown with random weights; training it needs them (EfficientNet-Lite0's ship with the app). "
                       + resize)
        elif available:
            st.caption(f"The backbone's weights are ImageNet's ({backbone.title}, pretrained); only the new "
                       f"classification head is random (untrained). {resize}")
    else:
        st.caption("The weights are random (untrained): pick a checkpoint to see what a trained network's layers "
                   "respond to.")
    mean, std = ((0.5,) * info.channels, (0.5,) * info.channels)
    if info.name in present:
        try:
            mean, std = (tuple(v) for v in data.channel_stats(info.name))
        except CnnError:
            pass
    return registry_choice(spec, info, model_args, mean, std, random_backbone)


def _uploaded_checkpoint() -> Path | None:
    uploaded = st.file_uploader("…or upload a checkpoint", type=["safetensors", "pt", "pth"], key="graph_upload",
                                help="A CNN Explorer checkpoint. Files holding pickled Python objects are refused, "
                                     "never unpickled.")
    if uploaded is None:
        return None
    refused = st.session_state.setdefault("graph_refused_uploads", {})  # file id -> its message
    if uploaded.file_id in refused:  # refused once: not written to the server's disk again on every rerun
        show_error(refused[uploaded.file_id])
        return REFUSED
    stored = st.session_state.setdefault("graph_stored_uploads", {})  # file id -> path: hashed and written once
    if uploaded.file_id not in stored or not stored[uploaded.file_id].is_file():
        stored[uploaded.file_id] = runs.store_uploaded_checkpoint(uploaded.getvalue(), uploaded.name, browser_id())
    return stored[uploaded.file_id]


REFUSED = Path("refused")  # `_uploaded_checkpoint`'s answer for an upload already refused (its error shown)


def choose_checkpoint() -> ModelChoice | None:
    left, right = st.columns(2)
    with left:
        entry = checkpoint_picker(checkpoint_entries(), key=kept("graph_checkpoint"))
        if entry is None:
            st.info("No checkpoint yet: train one in the Training Studio, or upload one.")
    with right:
        uploaded = _uploaded_checkpoint()
    path = uploaded or (entry.path if entry else None)
    if path is None:
        return None
    instead = " Remove the file (×) to see the checkpoint chosen on the left." if entry is not None else ""
    if path is REFUSED:
        st.caption(instead)
        return None
    try:
        choice, card = checkpoint_choice(path)
    except (CnnError, OSError) as exc:
        message = exc if isinstance(exc, CnnError) else f"Cannot read {path.name}: {exc}"
        show_error(f"{message}{instead if uploaded is not None else ''}")
        if uploaded is not None:  # a refused upload is not kept, nor written again on the next rerun
            shutil.rmtree(uploaded.parent, ignore_errors=True)
            st.session_state["graph_refused_uploads"][st.session_state["graph_upload"].file_id] = str(message)
        return None
    if uploaded is not None:
        if uploaded.parent not in st.session_state.setdefault("graph_pruned", set()):  # once, now that it loaded
            runs.prune_uploaded_checkpoints(browser_id(), shown=uploaded)
            st.session_state["graph_pruned"].add(uploaded.parent)
        if entry is not None:  # the upload wins over the picker: say so
            st.caption(f"Your uploaded file is shown, not the checkpoint chosen on the left.{instead}")
    name = f"{entry.title} ({path.name})" if uploaded is None and entry.run_number else path.name  # "run #3 (...)"
    st.caption(f"{literal(name)}: {literal(card.model)} trained on {literal(dataset_title(card))}, "
               f"{card.channels}×{card.image_size}×{card.image_size} input.")
    onnx_download(path, key="graph_download_onnx")
    return choice


# ------------------------------------------------------------------------------------------ showing
def show_summary(choice: ModelChoice) -> int:
    """The layer table and its totals; returns the number of frozen parameters (`show_graph` says why they are
    missing from the autograd graph)."""
    st.subheader(":material/table: Layers")
    summary = model_summary(choice.key, choice.input_shape)
    cols = st.columns(5)
    cols[0].metric("Parameters", f"{summary.total_parameters:,}")
    cols[1].metric("Trainable", f"{summary.trainable_parameters:,}")
    cols[2].metric("Frozen", f"{summary.frozen_parameters:,}")
    cols[3].metric("Model size", f"{summary.size_mb:.2f} MB",
                   help="Weights plus buffers (e.g. BatchNorm's running statistics), as 32-bit floats.")
    cols[4].metric("Mult-adds", f"{summary.mult_adds / 1e6:,.2f} M",
                   help="Multiply-accumulate operations for one image: the work of one forward pass.")
    st.markdown(f"In: one image of **{' × '.join(map(str, summary.input_shape[1:]))}** (channels × height × "
                f"width); out: **{summary.output_shape[-1] if summary.output_shape else '?'}** class scores.")
    table = pd.DataFrame([{"layer": row.name, "type": row.kind, "output shape": row.output_shape,
                           "parameters": row.parameters, "mult-adds": row.mult_adds, "weights": row.trainable}
                          for row in summary.rows])
    st.dataframe(table, hide_index=True, width="stretch", height=min(36 * (len(table) + 1) + 4, 520),
                 key="graph_summary_table",
                 column_config={"parameters": st.column_config.NumberColumn(format="localized"),
                                "mult-adds": st.column_config.NumberColumn(
                                    format="localized", help="multiply-accumulate operations of this call"),
                                "output shape": st.column_config.TextColumn(help="batch × channels × height × width")})
    st.caption("Output shapes are batch × channels × height × width, measured on one image by torchinfo. "
               "A layer used twice (such as one pooling layer) has a row per call; its weights count once.")
    return summary.frozen_parameters


def show_graph(choice: ModelChoice, frozen: int = 0) -> None:
    st.subheader(":material/account_tree: Autograd graph")
    st.markdown("What PyTorch records during the forward pass so it can compute gradients: blue boxes are weights "
                "(named after the layer), gray boxes are operations, the green box is the output. Read from top "
                "(weights and input) to bottom (the class scores).")
    with st.expander("What do the names in the gray boxes mean?"):
        st.markdown("Each gray box is the backward step of one operation: its name, `Backward`, and a version "
                    "number. Backpropagation walks the graph from the output back to every `AccumulateGrad`.\n"
                    + "".join(f"- `{name}`: {meaning}\n" for name, meaning in graph.AUTOGRAD_BOX_MEANINGS.items()))
    try:
        svg, png = graph_files(choice.key, choice.input_shape)
    except CnnError as exc:
        show_error(exc)
        return
    if frozen:
        st.info(f"{frozen:,} parameters are frozen (the pretrained backbone: `requires_grad=False`). Autograd records "
                "no backward step for them, so the graph below holds only the layers that train; the table above "
                "lists them all.", icon=":material/ac_unit:")
    stem = "".join(c if c.isalnum() or c in "-_" else "_" for c in choice.title)[:60]
    buttons = st.container(horizontal=True)
    buttons.download_button("SVG", svg, file_name=f"{stem}.svg", mime="image/svg+xml", icon=":material/download:",
                            on_click="ignore", key="graph_download_svg")
    buttons.download_button("PNG", png, file_name=f"{stem}.png", mime="image/png", icon=":material/download:",
                            on_click="ignore", key="graph_download_png")
    st.iframe(graph_html(graph.svg_for_page(svg)), height=GRAPH_FRAME_PX, alt="Autograd graph of the model")
    st.caption("Zoom with the buttons or Ctrl + mouse wheel; scroll inside the frame. The SVG download opens in any "
               "browser.")


def _title(name: str) -> str:
    """A data set's title ("PathMNIST (64×64)"), or its name when this server does not know it."""
    try:
        return data.get_dataset_info(name).title
    except CnnError:
        return data.shown_name(name)


def show_feature_maps(choice: ModelChoice) -> None:
    st.subheader(":material/layers: Feature maps")
    if not is_present(choice.dataset):
        st.info(f"No sample image: the data set {literal(_title(choice.dataset))} is not on this computer. The home page "
                "says how to get it.")
        return
    try:
        n_test = len(data.load_split(choice.dataset, "test", image_size=choice.image_size))
    except CnnError as exc:
        show_error(exc)
        return
    left, right = st.columns([1, 4])
    with left:
        index = st.number_input(f"Test image (0–{n_test - 1})", 0, n_test - 1, 0, key=f"graph_sample_{choice.dataset}")
        try:
            picture, label, grids, probs = feature_maps(choice, int(index))
        except CnnError as exc:
            show_error(exc)
            return
        st.image(picture, width="stretch", output_format="PNG")
        if 0 <= label < len(choice.class_names):
            st.caption(f"True class: **{literal(choice.class_names[label])}**")
        top = int(np.argmax(probs))
        if choice.trained:  # the pass the maps come from; Predict averages the card's test-time views
            other = (f" Predict averages the card's {choice.views} test-time views (flips, turns), so it may say a "
                     "slightly different figure." if choice.views > 1 else "")
            st.caption(f"In this one pass the model says **{literal(choice.class_names[top])}** "
                       f"({explain.percent(probs[top])}).{other}")
    with right:
        if not grids:
            st.info("This model has no convolution layers.")
            return
        names = [name for name, _, _ in grids]
        if len(grids) > MAX_LAYERS_SHOWN:
            spread = [names[round(i * (len(names) - 1) / (MAX_LAYERS_SHOWN - 1))] for i in range(MAX_LAYERS_SHOWN)]
            picked = set(st.multiselect("Conv layers shown", names, default=list(dict.fromkeys(spread)),
                                        key=f"graph_layers_{choice.key}"))
        else:
            picked = set(names)
        st.caption("Each small square is one channel of a conv layer's output for this image, scaled to its own "
                   "range (white = strongest). Early layers respond to edges and blobs; later ones to larger parts.")
        shown = [grid for grid in grids if grid[0] in picked]
        for start in range(0, len(shown), 2):
            cols = st.columns(2)
            for col, (name, shape, grid) in zip(cols, shown[start : start + 2]):
                channels, height, width = shape
                col.image(grid, width="stretch", output_format="PNG")
                col.caption(f"`{name}`: {channels} maps of {height}×{width}"
                            + (f" (first {MAPS_PER_LAYER} shown)" if channels > MAPS_PER_LAYER else ""))


# ------------------------------------------------------------------------------------------ page
source = st.segmented_control("Look at", ["registry", "checkpoint"], required=True,
                              key=kept("graph_source", "registry"),
                              format_func={"registry": "An architecture (untrained)",
                                           "checkpoint": "A trained checkpoint"}.get)
model_choice = choose_registry_model() if source == "registry" else choose_checkpoint()
keep()  # what was looked at, still there after a visit to another page
if model_choice is not None:
    try:
        held_model(model_choice.key)
    except CnnError as exc:
        show_error(exc)
        st.stop()
    show_graph(model_choice, frozen=show_summary(model_choice))
    show_feature_maps(model_choice)
