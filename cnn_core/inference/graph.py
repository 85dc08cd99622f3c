"""Looking inside a network: a layer-by-layer summary, its autograd graph, and its feature maps.

The summary is torchinfo's (output shapes, parameters and mult-adds per layer, measured on one real forward
pass, so the shapes are the ones PyTorch computed, not a formula's); the feature maps come from forward
hooks. The graph is torchviz's `make_dot` of a forward pass, laid out by Graphviz's `dot` into SVG and PNG.
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
    mult_adds: int = 0  # multiply-accumulate operations of this call (torchinfo's count)


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
    mult_adds: int = 0  # multiply-accumulate operations of the whole forward pass (torchinfo's total)

    @property
    def frozen_parameters(self) -> int:
        return self.total_parameters - self.trainable_parameters

    @property
    def size_mb(self) -> float:
        """Size of the weights and buffers in memory (and, roughly, in a full checkpoint), in MB."""
        return (self.parameter_bytes + self.buffer_bytes) / 1024**2


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
    """Run `x` ([C,H,W] or [N,C,H,W], already normalized) through `model` in eval mode with torchinfo and
    tabulate its layers: output shape, parameters and mult-adds per call. CnnError for a bad `x` shape.

    Leaf modules (those without children) get a row per call, in call order; a layer called again is
    "name (call 2)" with no parameters of its own (they are the same weights). Parameters held directly by
    container modules, which no leaf row shows, get one extra row so the column adds up to the total.
    """
    from torchinfo import summary as torchinfo_summary

    x = _as_batch(x).to(_model_device(model))
    was_training = model.training
    try:
        stats = torchinfo_summary(model, input_data=[x], depth=1000, verbose=0, mode="eval",
                                  col_names=("output_size", "num_params", "mult_adds"))  # fmt: skip
    finally:
        model.train(was_training)
    rows, shown = _leaf_rows(model, stats.summary_list)
    params = list(model.parameters())
    unshown = [p for p in params if id(p) not in shown]
    if unshown:
        rows.append(LayerRow("(held by container modules)", "Parameter", "", sum(p.numel() for p in unshown),
                             _trainable_text(unshown)))
    top = stats.summary_list[0].output_size if stats.summary_list else []
    return ModelSummary(
        input_shape=tuple(x.shape),
        output_shape=tuple(top) if top and all(isinstance(n, int) for n in top) else (),
        rows=tuple(rows),
        total_parameters=sum(p.numel() for p in params),
        trainable_parameters=sum(p.numel() for p in params if p.requires_grad),
        parameter_bytes=sum(p.numel() * p.element_size() for p in params),
        buffer_bytes=sum(b.numel() * b.element_size() for b in model.buffers()),
        mult_adds=int(stats.total_mult_adds),
    )


def _leaf_rows(model: nn.Module, layers: list) -> tuple[list[LayerRow], set[int]]:
    """One row per call of a leaf module in torchinfo's layer list, and the ids of the parameters shown."""
    names = {id(module): name for name, module in model.named_modules()}
    rows: list[LayerRow] = []
    calls: dict[str, int] = {}
    shown: set[int] = set()
    for layer in layers:
        module = layer.module
        name = names.get(id(module), "")
        if not name or any(True for _ in module.children()):
            continue
        calls[name] = calls.get(name, 0) + 1
        own = list(module.parameters(recurse=False))
        first = calls[name] == 1
        if first:
            shown.update(id(p) for p in own)
        rows.append(LayerRow(
            name=name if first else f"{name} (call {calls[name]})",
            kind=type(module).__name__,
            output_shape=_size_text(layer.output_size),
            parameters=sum(p.numel() for p in own) if first else 0,
            trainable=_trainable_text(own),
            mult_adds=int(layer.macs),
        ))  # fmt: skip
    return rows, shown


def _size_text(size) -> str:
    """torchinfo's output size ([1, 16, 14, 14], or a list of them) as "1 × 16 × 14 × 14"."""
    if isinstance(size, (list, tuple)) and size and all(isinstance(n, int) for n in size):
        return " × ".join(str(n) for n in size)
    if isinstance(size, (list, tuple)):
        return ", ".join(_size_text(item) for item in size)
    return str(size)


#: What the gray boxes of `autograd_graph` are, for people. Each box is the backward function autograd records
#: for one operation (`type(tensor.grad_fn).__name__`: the operation, "Backward", a version number); every box
#: of the registry's models is here (tests/test_graph.py).
AUTOGRAD_BOX_MEANINGS = {
    "ConvolutionBackward0": "a convolution",
    "NativeBatchNormBackward0": "BatchNorm",
    "ReluBackward0": "the ReLU activation",
    "SigmoidBackward0": "the sigmoid activation (LeNet-5)",
    "MaxPool2DWithIndicesBackward0": "max pooling (it keeps where each maximum was, for the backward pass)",
    "AvgPool2DBackward0": "average pooling",
    "MeanBackward1": "global average pooling (the mean of each map)",
    "ViewBackward0": "the maps flattened into one vector",
    "AddmmBackward0": "a linear (fully connected) layer: a matrix multiplication (mm) plus the bias (add)",
    "TBackward0": "the linear layer's weight matrix, transposed",
    "AddBackward0": "a sum: a ResNet block's shortcut added to its output",
    "AccumulateGrad": "where a weight's gradient is summed into its .grad for the optimizer's next step; one per "
                      "blue box",
}


def autograd_box_names(output: torch.Tensor) -> set[str]:
    """The names of the boxes `autograd_graph` draws for `output`: its backward functions' type names."""
    names, seen, stack = set(), set(), [output.grad_fn]
    while stack:
        function = stack.pop()
        if function is None or function in seen:
            continue
        seen.add(function)
        names.add(type(function).__name__)
        stack.extend(next_function for next_function, _ in function.next_functions)
    return names


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


def summarize_registry_model(name: str, dataset: str, model_args: dict | None = None) -> ModelSummary:
    """The summary of an untrained registry model shaped for a data set (channels, classes, image size) on one
    blank image. CnnError for an unknown model or data set, or options the model refuses."""
    from ..data import get_dataset_info
    from ..models import build_model

    info = get_dataset_info(dataset)
    model = build_model(name, info.channels, len(info.class_names), info.image_size, **(model_args or {}))
    return summarize_model(model, torch.zeros(info.channels, info.image_size, info.image_size))


def summarize_checkpoint(path: str) -> ModelSummary:
    """The summary of a checkpoint's model at its card's input size. CheckpointError when it is not one."""
    from ..models.checkpoints import load_checkpoint

    loaded = load_checkpoint(path)
    card = loaded.card
    return summarize_model(loaded.model, torch.zeros(card.channels, card.image_size, card.image_size))


def summary_text(summary: ModelSummary) -> str:
    """The summary as a plain-text table: one line per layer call, then the totals."""
    width = max([len(row.name) for row in summary.rows] + [5])
    kinds = max([len(row.kind) for row in summary.rows] + [4])
    lines = [f"{'layer':<{width}}  {'type':<{kinds}}  {'output shape':<22} {'parameters':>12} {'mult-adds':>14}  weights"]
    for row in summary.rows:
        lines.append(f"{row.name:<{width}}  {row.kind:<{kinds}}  {row.output_shape:<22} {row.parameters:>12,} "
                     f"{row.mult_adds:>14,}  {row.trainable}")  # fmt: skip
    shape = " × ".join(map(str, summary.input_shape))
    lines += ["", f"input {shape}; parameters {summary.total_parameters:,} (trainable "
                  f"{summary.trainable_parameters:,}, frozen {summary.frozen_parameters:,}); mult-adds "
                  f"{summary.mult_adds:,}; weights and buffers {summary.size_mb:.2f} MB"]  # fmt: skip
    return "\n".join(lines)


def summary_dict(summary: ModelSummary) -> dict:
    """The summary as JSON-ready data: rows and totals."""
    from dataclasses import asdict

    return {**asdict(summary), "frozen_parameters": summary.frozen_parameters, "size_mb": summary.size_mb}
