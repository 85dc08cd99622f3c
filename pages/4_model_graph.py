"""Model Graph: what a network is made of, how data flows through it, and what its conv layers see.

A thin view: the summary, the autograd graph and the feature maps come from `cnn_core.graph`; models from
the registry (`cnn_core.models`) or a checkpoint (`cnn_core.checkpoints`, never unpickled). State lives
under "graph_*" keys.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st
import torch

from cnn_core import data, graph, models
from cnn_core.augment import BatchPreprocessor
from cnn_core.checkpoints import list_checkpoints, load_checkpoint
from cnn_core.errors import CnnError
from cnn_core.settings import cache_dir
from cnn_explorer_ui import browser_datasets, show_error

MAX_LAYERS_SHOWN = 12  # feature-map grids shown at first; a picker offers the rest
MAPS_PER_LAYER = 32
MAP_COLUMNS = 8
MAP_MIN_PX = 56  # small feature maps are enlarged by whole pixels to about this size
GRAPH_FRAME_PX = 720

st.title(":material/account_tree: Model Graph")
st.markdown(
    "A CNN is a stack of layers, each turning a block of numbers into another. Here you see each layer's "
    "output shape and number of weights, the graph of operations PyTorch records to compute gradients, "
    "and the **feature maps** every convolution layer produces for an image."
)


@dataclass(frozen=True)
class ModelChoice:
    """What to look at: `key` identifies the model for the caches below; the rest describes its input."""

    key: tuple
    title: str
    dataset: str
    channels: int
    image_size: int
    class_names: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    trained: bool


@dataclass
class _HeldModel:
    model: torch.nn.Module
    lock: threading.Lock  # hooks are added for one pass at a time: sessions share the cached model
    card: dict | None = None  # a checkpoint's card


# ------------------------------------------------------------------------------------------ caches
@st.cache_resource(max_entries=4, show_spinner="Building the model…")
def _held_model(key: tuple) -> _HeldModel:
    if key[0] == "registry":
        _, name, channels, classes, size, args_json = key
        torch.manual_seed(0)  # the same untrained weights on every visit
        model = models.build_model(name, channels, classes, size, **json.loads(args_json))
        return _HeldModel(model.eval(), threading.Lock())
    loaded = load_checkpoint(key[1])  # refuses pickles and cards that do not fit the weights
    return _HeldModel(loaded.model.eval(), threading.Lock(), loaded.card)


@st.cache_data(max_entries=8, show_spinner="Running one image through every layer…")
def _summary(key: tuple, input_shape: tuple[int, ...]) -> graph.ModelSummary:
    held = _held_model(key)
    with held.lock:
        return graph.summarize_model(held.model, torch.zeros(input_shape))


@st.cache_data(max_entries=8, show_spinner="Drawing the autograd graph with Graphviz…")
def _graph_files(key: tuple, input_shape: tuple[int, ...]) -> tuple[bytes, bytes]:
    held = _held_model(key)
    with held.lock:
        dot = graph.autograd_graph(held.model, torch.zeros(input_shape))
    return graph.render_graph(dot, "svg"), graph.render_graph(dot, "png")


@st.cache_data(max_entries=16, show_spinner="Computing the feature maps…")
def _feature_maps(choice: ModelChoice, index: int) -> tuple[np.ndarray, int, list[tuple[str, tuple, np.ndarray]],
                                                            list[float]]:
    """(the sample image, its label, [(layer, map shape, grid image)], class probabilities)."""
    split = data.load_split(choice.dataset, "test", image_size=choice.image_size)
    image = split.images[index]
    label = int(split.labels[index].reshape(-1)[0]) if split.labels[index].numel() == 1 else -1
    x = BatchPreprocessor(list(choice.mean), list(choice.std), torch.device("cpu"))(image[None], train=False)
    held = _held_model(choice.key)
    with held.lock:
        maps = graph.activation_maps(held.model, x)
        with torch.no_grad():
            probs = torch.softmax(held.model(x).float(), dim=1)[0].tolist()
    grids = []
    for name, fmap in maps:
        grid = graph.feature_map_grid(fmap, columns=MAP_COLUMNS, max_maps=MAPS_PER_LAYER)
        scale = max(1, MAP_MIN_PX // max(1, fmap.shape[-1]))
        grids.append((name, tuple(fmap.shape), grid.repeat(scale, axis=0).repeat(scale, axis=1)))
    picture = image.numpy()
    picture = picture[0] if picture.shape[0] == 1 else picture.transpose(1, 2, 0)
    return picture, label, grids, probs


@st.cache_data(ttl=30, show_spinner=False)
def _available(name: str) -> bool:
    return data.is_available(name)


# ------------------------------------------------------------------------------------------ choosing
MODEL_ARG_HELP = {
    "mode": "frozen: the backbone's weights are fixed; finetune: its last blocks train too; full: everything trains.",
    "finetune_blocks": "How many of the backbone's last blocks train in finetune mode.",
}


def _model_args(spec: models.ModelSpec) -> dict:
    """Options a registry entry offers (e.g. a transfer model's mode), as the Training Studio shows them."""
    model_args = dict(spec.defaults.get("model_args") or {})
    choices = dict(spec.defaults.get("model_arg_choices") or {})
    if choices:
        cols = st.columns(max(2, len(choices)))
        for col, (arg, options) in zip(cols, choices.items()):
            if arg == "finetune_blocks" and model_args.get("mode") != "finetune":
                continue
            options = list(options)
            current = model_args.get(arg, options[0])
            model_args[arg] = col.selectbox(arg.replace("_", " ").capitalize(), options,
                                            index=options.index(current) if current in options else 0,
                                            key=f"graph_arg_{arg}_{spec.name}", help=MODEL_ARG_HELP.get(arg))
    return model_args


def choose_registry_model() -> ModelChoice | None:
    infos = {info.name: info for info in browser_datasets()}
    names = sorted(infos, key=lambda n: (not _available(n), list(infos).index(n)))
    left, right = st.columns(2)
    with left:
        name = st.selectbox("Data set (gives the input shape and the classes)", names, key="graph_dataset",
                            format_func=lambda n: infos[n].title + ("" if _available(n) else "  (not here: shape only)"))
    info = infos[name]
    specs = {spec.name: spec for spec in models.list_models() if info.image_size >= spec.min_image_size}
    if not specs:
        show_error(f"No registry model takes {info.image_size}×{info.image_size} images.")
        return None
    default = models.default_model_for(info.family, info.image_size)
    with right:
        model_name = st.selectbox("Model", list(specs), format_func=lambda n: specs[n].title, key="graph_model",
                                  index=list(specs).index(default) if default in specs else 0)
    spec = specs[model_name]
    st.caption(f"{spec.description} *Source: {spec.source}.* The weights are random (untrained): pick a checkpoint "
               "to see what a trained network's layers respond to.")
    model_args = _model_args(spec)
    mean, std = ((0.5,) * info.channels, (0.5,) * info.channels)
    if _available(name):
        try:
            mean, std = (tuple(v) for v in data.channel_stats(name))
        except CnnError:
            pass
    key = ("registry", spec.name, info.channels, len(info.class_names), info.image_size,
           json.dumps(model_args, sort_keys=True))
    return ModelChoice(key, f"{spec.title} for {info.title}", name, info.channels, info.image_size,
                       tuple(info.class_names), mean, std, trained=False)


def _uploaded_checkpoint() -> Path | None:
    uploaded = st.file_uploader("…or upload a checkpoint", type=["safetensors", "pt", "pth"], key="graph_upload",
                                help="A CNN Explorer checkpoint. Files holding pickled Python objects are refused, "
                                     "never unpickled.")
    if uploaded is None:
        return None
    payload = uploaded.getvalue()
    # One folder per content, the file keeps its name (messages then name the file the student chose).
    folder = cache_dir() / "uploaded_checkpoints" / hashlib.sha256(payload).hexdigest()[:16]
    folder.mkdir(parents=True, exist_ok=True)
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(uploaded.name).name).lstrip(".") or "checkpoint.safetensors"
    path = folder / name
    if not path.is_file():
        path.write_bytes(payload)
    return path


def choose_checkpoint() -> ModelChoice | None:
    cards = {card["path"]: card for card in list_checkpoints()}
    left, right = st.columns(2)
    with left:
        if cards:
            def label(path: str) -> str:
                card = cards[path]
                accuracy = ((card.get("metrics") or {}).get("test") or {}).get("accuracy")
                where = "shipped" if card.get("shipped") else "trained here"
                return (f"{card['name']} · {card.get('model')} on {card.get('dataset')} · {where}"
                        + (f" · test accuracy {100 * accuracy:.1f} %" if isinstance(accuracy, float) else ""))

            chosen = st.selectbox("Checkpoint", list(cards), format_func=label, key="graph_checkpoint")
        else:
            chosen = None
            st.info("No checkpoint yet: train one in the Training Studio, or upload one.")
    with right:
        uploaded = _uploaded_checkpoint()
    path = uploaded or (Path(chosen) if chosen else None)
    if path is None:
        return None
    try:
        stamp = path.stat().st_mtime_ns
        card = _held_model(("checkpoint", str(path), stamp)).card
    except (CnnError, OSError) as exc:
        show_error(exc if isinstance(exc, CnnError) else f"Cannot read {path.name}: {exc}")
        return None
    norm = card["normalization"]
    st.caption(f"`{path.name}`: {card['model']} trained on {card.get('dataset_title', card['dataset'])}, "
               f"{int(card['channels'])}×{int(card['image_size'])}×{int(card['image_size'])} input.")
    return ModelChoice(("checkpoint", str(path), stamp), f"{card['model']} ({path.stem})", card["dataset"],
                       int(card["channels"]), int(card["image_size"]), tuple(map(str, card["class_names"])),
                       tuple(norm["mean"]), tuple(norm["std"]), trained=True)


# ------------------------------------------------------------------------------------------ showing
def show_summary(choice: ModelChoice) -> None:
    st.subheader(":material/table: Layers")
    summary = _summary(choice.key, (1, choice.channels, choice.image_size, choice.image_size))
    cols = st.columns(4)
    cols[0].metric("Parameters", f"{summary.total_parameters:,}")
    cols[1].metric("Trainable", f"{summary.trainable_parameters:,}")
    cols[2].metric("Frozen", f"{summary.frozen_parameters:,}")
    cols[3].metric("Model size", f"{summary.size_mb:.2f} MB",
                   help="Weights plus buffers (e.g. BatchNorm's running statistics), as 32-bit floats.")
    st.markdown(f"In: one image of **{' × '.join(map(str, summary.input_shape[1:]))}** (channels × height × "
                f"width); out: **{summary.output_shape[-1] if summary.output_shape else '?'}** class scores.")
    table = pd.DataFrame([{"layer": row.name, "type": row.kind, "output shape": row.output_shape,
                           "parameters": row.parameters, "weights": row.trainable} for row in summary.rows])
    st.dataframe(table, hide_index=True, width="stretch", height=min(36 * (len(table) + 1) + 4, 520),
                 key="graph_summary_table",
                 column_config={"parameters": st.column_config.NumberColumn(format="localized"),
                                "output shape": st.column_config.TextColumn(help="batch × channels × height × width")})
    st.caption("Output shapes are batch × channels × height × width, measured on one image by forward hooks. "
               "A layer used twice (such as one pooling layer) has a row per call; its weights count once.")


def show_graph(choice: ModelChoice) -> None:
    st.subheader(":material/account_tree: Autograd graph")
    st.markdown("What PyTorch records during the forward pass so it can compute gradients: blue boxes are weights "
                "(named after the layer), gray boxes are operations, the green box is the output. Read from top "
                "(weights and input) to bottom (the class scores).")
    try:
        svg, png = _graph_files(choice.key, (1, choice.channels, choice.image_size, choice.image_size))
    except CnnError as exc:
        show_error(exc)
        return
    stem = "".join(c if c.isalnum() or c in "-_" else "_" for c in choice.title)[:60]
    buttons = st.container(horizontal=True)
    buttons.download_button("SVG", svg, file_name=f"{stem}.svg", mime="image/svg+xml", icon=":material/download:",
                            on_click="ignore", key="graph_download_svg")
    buttons.download_button("PNG", png, file_name=f"{stem}.png", mime="image/png", icon=":material/download:",
                            on_click="ignore", key="graph_download_png")
    st.iframe(_graph_html(graph.svg_for_page(svg)), height=GRAPH_FRAME_PX, alt="Autograd graph of the model")
    st.caption("Zoom with the buttons or Ctrl + mouse wheel; scroll inside the frame. The SVG download opens in any "
               "browser.")


def _graph_html(svg: str) -> str:
    """The graph in a small page of its own (an iframe): zoom buttons, Ctrl + wheel zoom and scrolling, no rerun."""
    return GRAPH_PAGE.replace("%SVG%", svg)


GRAPH_PAGE = """<!doctype html><html><head><meta charset="utf-8"><style>
body { margin: 0; font-family: "Source Sans Pro", sans-serif; background: #fff; }
.bar { position: sticky; top: 0; display: flex; gap: 6px; align-items: center; padding: 6px 8px;
       background: #f8fafc; border-bottom: 1px solid #e2e8f0; font-size: 13px; color: #475569; z-index: 1; }
.bar button { border: 1px solid #cbd5e1; background: #fff; border-radius: 6px; padding: 2px 10px; cursor: pointer;
              font-size: 14px; }
.frame { overflow: auto; height: calc(100vh - 40px); }
#level { min-width: 44px; text-align: right; }
</style></head><body>
<div class="bar"><button id="zoom-out" title="Zoom out">−</button><button id="zoom-in" title="Zoom in">+</button>
<button id="zoom-fit" title="Fit the width">Fit</button><button id="zoom-one" title="Actual size">100 %</button>
<span id="level"></span><span>· Ctrl + wheel zooms, scroll to move</span></div>
<div class="frame" id="frame">%SVG%</div>
<script>
const svg = document.querySelector("#frame svg"), frame = document.getElementById("frame");
const box = svg.viewBox.baseVal, level = document.getElementById("level");
let zoom = 1;
function apply(z) {
  zoom = Math.min(4, Math.max(0.05, z));
  svg.setAttribute("width", box.width * zoom * 4 / 3);   // Graphviz sizes are points: 4/3 px each
  svg.setAttribute("height", box.height * zoom * 4 / 3);
  level.textContent = Math.round(zoom * 100) + " %";
}
function fit() { apply(Math.min(1.5, (frame.clientWidth - 16) / (box.width * 4 / 3))); }
document.getElementById("zoom-in").onclick = () => apply(zoom * 1.25);
document.getElementById("zoom-out").onclick = () => apply(zoom / 1.25);
document.getElementById("zoom-fit").onclick = fit;
document.getElementById("zoom-one").onclick = () => apply(1);
frame.addEventListener("wheel", (e) => { if (e.ctrlKey) { e.preventDefault(); apply(zoom * (e.deltaY < 0 ? 1.1 : 1 / 1.1)); } },
                       { passive: false });
fit();
</script></body></html>"""


def show_feature_maps(choice: ModelChoice) -> None:
    st.subheader(":material/layers: Feature maps")
    if not _available(choice.dataset):
        st.info(f"No sample image: the data set `{choice.dataset}` is not on this computer. The home page says how "
                "to get it.")
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
            picture, label, grids, probs = _feature_maps(choice, int(index))
        except CnnError as exc:
            show_error(exc)
            return
        scale = max(1, 112 // max(picture.shape[:2]))
        st.image(picture.repeat(scale, axis=0).repeat(scale, axis=1), width="stretch", output_format="PNG")
        if 0 <= label < len(choice.class_names):
            st.caption(f"True class: **{choice.class_names[label]}**")
        top = int(np.argmax(probs))
        if choice.trained:
            st.caption(f"The model says **{choice.class_names[top]}** ({100 * probs[top]:.0f} %).")
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
source = st.segmented_control("Look at", ["registry", "checkpoint"], default="registry", required=True,
                              key="graph_source",
                              format_func={"registry": "A registry model", "checkpoint": "A trained checkpoint"}.get)
model_choice = choose_registry_model() if source == "registry" else choose_checkpoint()
if model_choice is not None:
    try:
        _held_model(model_choice.key)
    except CnnError as exc:
        show_error(exc)
        st.stop()
    show_summary(model_choice)
    show_graph(model_choice)
    show_feature_maps(model_choice)
