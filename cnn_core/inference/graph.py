"""Looking inside a network: a layer-by-layer summary, its autograd graph, and its feature maps.

The summary and the feature maps come from forward hooks on one real forward pass, so the shapes are
the ones PyTorch computed, not a formula's. The graph is torchviz's `make_dot` of that pass, laid out by
Graphviz's `dot` program into SVG and PNG.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import warnings
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..errors import CnnError

GRAPHVIZ_INSTALL = (
    "Install Graphviz, which provides the `dot` program: `sudo apt-get install graphviz` (Debian/Ubuntu), "
    "`brew install graphviz` (macOS) or `conda install graphviz`, then reload the page."
)


class GraphvizError(CnnError):
    """Graphviz's `dot` is missing or failed to lay out a graph."""


@dataclass(frozen=True)
class LayerRow:
    """One call of one layer in the forward pass."""

    name: str  # qualified module name, e.g. "features.0"; "name (call 2)" when a layer is reused
    kind: str  # the module's class, e.g. "Conv2d"
    output_shape: str  # e.g. "1 × 16 × 14 × 14"
    parameters: int  # the layer's own parameters (0 on repeated calls: they are the same weights)
    trainable: str  # "trainable", "frozen", "partly frozen" or "" (no parameters)


@dataclass(frozen=True)
class ModelSummary:
    """Every leaf layer in the order the forward pass called it, plus totals."""

    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    rows: tuple[LayerRow, ...]
    total_parameters: int
    trainable_parameters: int
    parameter_bytes: int
    buffer_bytes: int  # e.g. BatchNorm running statistics: saved with the weights, not trained

    @property
    def frozen_parameters(self) -> int:
        return self.total_parameters - self.trainable_parameters

    @property
    def size_mb(self) -> float:
        """Size of the weights and buffers in memory (and, roughly, in a full checkpoint), in MB."""
        return (self.parameter_bytes + self.buffer_bytes) / 1024**2


def _shape_text(output) -> str:
    if isinstance(output, torch.Tensor):
        return " × ".join(str(n) for n in output.shape)
    if isinstance(output, (tuple, list)):
        return ", ".join(_shape_text(item) for item in output)
    if isinstance(output, dict):
        return ", ".join(f"{key}: {_shape_text(value)}" for key, value in output.items())
    return type(output).__name__


def _trainable_text(params: list[nn.Parameter]) -> str:
    if not params:
        return ""
    flags = {p.requires_grad for p in params}
    if flags == {True}:
        return "trainable"
    if flags == {False}:
        return "frozen"
    return "partly frozen"


def _as_batch(x: torch.Tensor) -> torch.Tensor:
    """[C, H, W] -> [1, C, H, W]; a batch passes unchanged."""
    if x.dim() == 3:
        return x.unsqueeze(0)
    if x.dim() != 4:
        raise CnnError(f"Expected an image tensor [C, H, W] or a batch [N, C, H, W]; got shape {tuple(x.shape)}.")
    return x


def _model_device(model: nn.Module) -> torch.device:
    for tensor in model.parameters():
        return tensor.device
    for tensor in model.buffers():
        return tensor.device
    return torch.device("cpu")


def summarize_model(model: nn.Module, x: torch.Tensor) -> ModelSummary:
    """Run `x` ([C,H,W] or [N,C,H,W], already normalized) through `model` in eval mode and tabulate its layers.

    Leaf modules (those without children) get a row per call, in call order. Parameters held directly by
    container modules, which no leaf row shows, get one extra row so the column adds up to the total.
    """
    x = _as_batch(x).to(_model_device(model))
    rows: list[LayerRow] = []
    calls: dict[str, int] = {}
    handles = []
    shown: set[int] = set()

    def hook_for(name: str, module: nn.Module):
        def hook(_module, _inputs, output):
            calls[name] = calls.get(name, 0) + 1
            own = list(module.parameters(recurse=False))
            first = calls[name] == 1
            if first:
                shown.update(id(p) for p in own)
            rows.append(LayerRow(
                name=name if first else f"{name} (call {calls[name]})",
                kind=type(module).__name__,
                output_shape=_shape_text(output),
                parameters=sum(p.numel() for p in own) if first else 0,
                trainable=_trainable_text(own),
            ))
        return hook

    for name, module in model.named_modules():
        if name and not any(True for _ in module.children()):
            handles.append(module.register_forward_hook(hook_for(name, module)))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            output = model(x)
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)

    params = list(model.parameters())
    unshown = [p for p in params if id(p) not in shown]
    if unshown:
        rows.append(LayerRow("(held by container modules)", "Parameter", "", sum(p.numel() for p in unshown),
                             _trainable_text(unshown)))
    return ModelSummary(
        input_shape=tuple(x.shape),
        output_shape=tuple(output.shape) if isinstance(output, torch.Tensor) else (),
        rows=tuple(rows),
        total_parameters=sum(p.numel() for p in params),
        trainable_parameters=sum(p.numel() for p in params if p.requires_grad),
        parameter_bytes=sum(p.numel() * p.element_size() for p in params),
        buffer_bytes=sum(b.numel() * b.element_size() for b in model.buffers()),
    )


def autograd_graph(model: nn.Module, x: torch.Tensor):
    """torchviz's `make_dot` of one forward pass (eval mode): a `graphviz.Digraph` of the backward ops.

    Blue boxes are the weights (named after the parameters), gray boxes the operations autograd
    records, green the output.
    """
    from torchviz import make_dot

    x = _as_batch(x).to(_model_device(model))
    was_training = model.training
    model.eval()
    try:
        with torch.enable_grad():
            output = model(x)
        if not isinstance(output, torch.Tensor) or output.grad_fn is None:
            raise CnnError("This model's output has no autograd history (all its weights are frozen or it returns "
                           "no tensor), so there is no graph to draw.")
        with warnings.catch_warnings():  # torchviz compares torch versions with distutils' LooseVersion
            warnings.simplefilter("ignore", DeprecationWarning)
            dot = make_dot(output, params=dict(model.named_parameters()))
    finally:
        model.train(was_training)
    dot.name = "autograd_graph"  # the SVG's <title> (Graphviz writes "%3" for a nameless graph)
    dot.graph_attr.update(rankdir="TB", fontname="Helvetica")
    dot.node_attr.update(fontname="Helvetica")
    return dot


def graphviz_available() -> bool:
    """Whether Graphviz's `dot` program is on the PATH."""
    return shutil.which("dot") is not None


def render_graph(dot, fmt: str) -> bytes:
    """Lay out a graphviz graph with `dot` as "svg" or "png" bytes; GraphvizError when `dot` is missing."""
    import graphviz

    if fmt not in ("svg", "png"):
        raise CnnError(f"Graphs are rendered as svg or png; got {fmt!r}.")
    try:
        return dot.pipe(format=fmt)
    except graphviz.ExecutableNotFound:
        raise GraphvizError(f"Graphviz's `dot` program was not found, so the graph cannot be drawn. "
                            f"{GRAPHVIZ_INSTALL}") from None
    except (graphviz.CalledProcessError, subprocess.SubprocessError, OSError) as exc:
        raise GraphvizError(f"Graphviz could not lay out the graph: {str(exc)[:300]}") from None


_SVG_ROOT = re.compile(rb"<svg\b[^>]*>", re.S)
_SVG_SIZE = re.compile(rb'\s(width|height)="([\d.]+)(pt|px)?"')


def svg_for_page(svg: bytes, zoom: float | None = 1.0) -> str:
    """Graphviz SVG ready to sit inside an HTML page: no XML prolog or comments, scaled by `zoom`.

    `zoom` 1.0 keeps Graphviz's own size (points); None fits the width of the container, height following.
    """
    match = _SVG_ROOT.search(svg)
    if match is None:
        raise CnnError("This is not an SVG image.")
    root = match.group(0)
    if zoom is None:
        scaled = _SVG_SIZE.sub(b"", root).replace(b"<svg", b'<svg style="width:100%;height:auto"', 1)
    else:
        if zoom <= 0:
            raise CnnError(f"Zoom must be positive; got {zoom}.")

        def resize(size: re.Match) -> bytes:
            value = float(size.group(2)) * zoom
            return b" %s=\"%.1f%s\"" % (size.group(1), value, size.group(3) or b"")

        scaled = _SVG_SIZE.sub(resize, root)
    body = svg[match.start():].replace(root, scaled, 1)
    body = re.sub(rb"<!--.*?-->", b"", body, flags=re.S)
    return body.decode("utf-8")


def activation_maps(
    model: nn.Module, x: torch.Tensor, layer_types: tuple[type[nn.Module], ...] = (nn.Conv2d,)
) -> list[tuple[str, torch.Tensor]]:
    """Feature maps of every layer of `layer_types` (conv layers by default) for one input, in call order.

    `x` is one normalized image [C, H, W] (or a batch of one). Returns (layer name, float tensor
    [channels, H, W] on the CPU) pairs; a layer called twice appears twice ("name (call 2)"). Outputs
    are copied inside the hook, so a later in-place ReLU does not change them.
    """
    x = _as_batch(x).to(_model_device(model))
    if x.shape[0] != 1:
        raise CnnError(f"Feature maps are shown for one image at a time; got a batch of {x.shape[0]}.")
    maps: list[tuple[str, torch.Tensor]] = []
    calls: dict[str, int] = {}
    handles = []

    def hook_for(name: str):
        def hook(_module, _inputs, output):
            if not isinstance(output, torch.Tensor) or output.dim() != 4:
                return
            calls[name] = calls.get(name, 0) + 1
            label = name if calls[name] == 1 else f"{name} (call {calls[name]})"
            maps.append((label, output[0].detach().float().cpu().clone().contiguous()))
        return hook

    for name, module in model.named_modules():
        if name and isinstance(module, layer_types):
            handles.append(module.register_forward_hook(hook_for(name)))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(x)
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    return maps


def feature_map_grid(maps: torch.Tensor, columns: int = 8, max_maps: int = 32, pad: int = 1) -> np.ndarray:
    """Tile feature maps [C, H, W] into one uint8 image, each map scaled to 0–255 on its own range.

    At most `max_maps` maps, `columns` per row, separated by `pad` white pixels. A constant map is gray.
    """
    if maps.dim() != 3:
        raise CnnError(f"Feature maps must be [channels, H, W]; got shape {tuple(maps.shape)}.")
    maps = maps[:max_maps].float()
    count, height, width = maps.shape
    columns = max(1, min(columns, count))
    rows = -(-count // columns)
    low = maps.amin(dim=(1, 2), keepdim=True)
    span = maps.amax(dim=(1, 2), keepdim=True) - low
    scaled = torch.where(span > 0, (maps - low) / span.clamp_min(1e-12), torch.full_like(maps, 0.5))
    tiles = (scaled * 255).round().to(torch.uint8).numpy()
    grid = np.full((rows * (height + pad) - pad, columns * (width + pad) - pad), 255, dtype=np.uint8)
    for index in range(count):
        r, c = divmod(index, columns)
        top, left = r * (height + pad), c * (width + pad)
        grid[top : top + height, left : left + width] = tiles[index]
    return grid
