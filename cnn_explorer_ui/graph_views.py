"""The Model Graph's caches and its autograd-graph frame: models built once and shared, the summary, the
graph drawn by Graphviz, feature maps of one test image.

View code only: the summary, the graph and the feature maps come from `cnn_core.graph`.
"""

from __future__ import annotations

import contextlib
import json
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import streamlit as st
import torch

from cnn_core import data, gallery, models
from cnn_core.inference import graph
from cnn_core.data.augment import BatchPreprocessor
from cnn_core.models import backbones
from cnn_core.models.card import Card
from cnn_core.models.checkpoints import load_checkpoint


MAPS_PER_LAYER = 32
MAP_COLUMNS = 8
MAP_MIN_PX = 56  # small feature maps are enlarged by whole pixels to about this size
SAMPLE_PX = 112  # the sample image is enlarged by whole pixels to about this size


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
    views: int = 1  # test-time views a checkpoint's predictions average (its card's `test_time_augmentation`)

    @property
    def input_shape(self) -> tuple[int, int, int, int]:
        return (1, self.channels, self.image_size, self.image_size)


def registry_choice(spec: models.ModelSpec, info: data.DatasetInfo, model_args: dict,
                    mean: tuple[float, ...], std: tuple[float, ...], random_backbone: bool = False) -> ModelChoice:
    """An untrained registry model shaped for `info`'s images and classes (a transfer model's backbone with
    random weights when `random_backbone`: its ImageNet weights are not on this machine)."""
    key = ("registry", spec.name, info.channels, len(info.class_names), info.image_size,
           json.dumps(model_args, sort_keys=True), random_backbone)
    return ModelChoice(key, f"{spec.title} for {info.title}", info.name, info.channels, info.image_size,
                       tuple(info.class_names), mean, std, trained=False)


def checkpoint_choice(path: Path) -> tuple[ModelChoice, Card]:
    """A checkpoint file (loaded once per version of the file) and its card; `CnnError` or `OSError` when it
    cannot be read or does not fit its card."""
    key = ("checkpoint", str(path), path.stat().st_mtime_ns)
    card = held_model(key).card
    mean, std = tuple(card.normalization["mean"]), tuple(card.normalization["std"])
    choice = ModelChoice(key, f"{card.model} ({path.stem})", card.dataset, card.channels, card.image_size,
                         card.class_names, mean, std, trained=True, views=max(1, len(card.test_time_augmentation)))
    return choice, card


@dataclass
class _HeldModel:
    model: torch.nn.Module
    lock: threading.Lock  # hooks are added for one pass at a time: sessions share the cached model
    card: dict | None = None  # a checkpoint's card


# ------------------------------------------------------------------------------------------ caches
@st.cache_resource(max_entries=4, show_spinner="Building the model…")
def held_model(key: tuple) -> _HeldModel:
    if key[0] == "registry":
        _, name, channels, classes, size, args_json, random_backbone = key
        torch.manual_seed(0)  # the same untrained weights on every visit
        with backbones.random_backbone_weights() if random_backbone else contextlib.nullcontext():
            model = models.build_model(name, channels, classes, size, **json.loads(args_json))
        return _HeldModel(model.eval(), threading.Lock())
    loaded = load_checkpoint(key[1])  # refuses pickles and cards that do not fit the weights
    return _HeldModel(loaded.model.eval(), threading.Lock(), loaded.card)


@st.cache_data(max_entries=8, show_spinner="Running one image through every layer…")
def model_summary(key: tuple, input_shape: tuple[int, ...]) -> graph.ModelSummary:
    held = held_model(key)
    with held.lock:
        return graph.summarize_model(held.model, torch.zeros(input_shape))


@st.cache_data(max_entries=8, show_spinner="Drawing the autograd graph with Graphviz…")
def graph_files(key: tuple, input_shape: tuple[int, ...]) -> tuple[bytes, bytes]:
    held = held_model(key)
    with held.lock:
        dot = graph.autograd_graph(held.model, torch.zeros(input_shape))
    return graph.render_graph(dot, "svg"), graph.render_graph(dot, "png")


@st.cache_data(max_entries=16, show_spinner="Computing the feature maps…")
def feature_maps(choice: ModelChoice, index: int) -> tuple[np.ndarray, int, list[tuple[str, tuple, np.ndarray]],
                                                            list[float]]:
    """(the sample image enlarged, its label, [(layer, map shape, grid image)], class probabilities)."""
    split = data.load_split(choice.dataset, "test", image_size=choice.image_size)
    image = split.images[index]
    label = int(split.labels[index].reshape(-1)[0]) if split.labels[index].numel() == 1 else -1
    x = BatchPreprocessor(list(choice.mean), list(choice.std), torch.device("cpu"))(image[None], train=False)
    held = held_model(choice.key)
    with held.lock:
        maps = graph.activation_maps(held.model, x)
        with torch.no_grad():
            probs = torch.softmax(held.model(x).float(), dim=1)[0].tolist()
    grids = []
    for name, fmap in maps:
        grid = graph.feature_map_grid(fmap, columns=MAP_COLUMNS, max_maps=MAPS_PER_LAYER)
        scale = max(1, MAP_MIN_PX // max(1, fmap.shape[-1]))
        grids.append((name, tuple(fmap.shape), gallery.repeat_pixels(grid, scale)))
    picture = gallery.to_display(image, max(1, SAMPLE_PX // max(image.shape[-2:])))
    return picture, label, grids, probs


def graph_html(svg: str) -> str:
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
<button id="zoom-fit" title="Show the whole graph">Fit</button><button id="zoom-one" title="Actual size">100 %</button>
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
// Fit the whole graph, width and height, into the frame (the output box at the bottom included).
function fit() {
  const width = frame.clientWidth - 16, height = frame.clientHeight - 16;
  if (width <= 0 || height <= 0) return false;   // not laid out yet: try again when it is
  apply(Math.min(1.5, width / (box.width * 4 / 3), height / (box.height * 4 / 3)));
  frame.scrollTo(0, 0);
  return true;
}
document.getElementById("zoom-in").onclick = () => apply(zoom * 1.25);
document.getElementById("zoom-out").onclick = () => apply(zoom / 1.25);
document.getElementById("zoom-fit").onclick = fit;
document.getElementById("zoom-one").onclick = () => apply(1);
frame.addEventListener("wheel", (e) => { if (e.ctrlKey) { e.preventDefault(); apply(zoom * (e.deltaY < 0 ? 1.1 : 1 / 1.1)); } },
                       { passive: false });
// On first draw the iframe may still have no size: fit once it has one, and again on resize until the
// student zooms by hand.
let fitted = false, touched = false;
for (const id of ["zoom-in", "zoom-out", "zoom-one"]) document.getElementById(id).addEventListener("click", () => { touched = true; });
frame.addEventListener("wheel", (e) => { if (e.ctrlKey) touched = true; });
document.getElementById("zoom-fit").addEventListener("click", () => { touched = false; });
new ResizeObserver(() => { if (!touched) fitted = fit() || fitted; }).observe(frame);
fitted = fit();
window.addEventListener("load", () => { if (!touched) fit(); });
</script></body></html>"""
