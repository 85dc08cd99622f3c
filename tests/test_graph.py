"""Model summary, autograd graph and feature maps of registry models, on real forward passes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from cnn_core.cli import main
from cnn_core.errors import CnnError
from cnn_core.inference.graph import (
    GraphvizError,
    activation_maps,
    autograd_graph,
    feature_map_grid,
    graphviz_available,
    render_graph,
    svg_for_page,
    summarize_model,
)
from cnn_core.models import build_model, count_parameters

needs_dot = pytest.mark.skipif(not graphviz_available(), reason="Graphviz's dot is not installed")


def test_summary_of_simple_cnn_has_shapes_parameters_and_totals():
    model = build_model("simple_cnn", 1, 10, 28)
    summary = summarize_model(model, torch.randn(1, 28, 28))
    rows = {row.name: row for row in summary.rows}
    # conv1: 8 filters of 1x3x3 plus 8 biases; pooling keeps the channels and halves the side.
    assert rows["conv1"].kind == "Conv2d" and rows["conv1"].output_shape == "1 × 8 × 28 × 28"
    assert rows["conv1"].parameters == 8 * 9 + 8 and rows["conv1"].trainable == "trainable"
    assert rows["conv2"].output_shape == "1 × 16 × 14 × 14" and rows["conv2"].parameters == 16 * 8 * 9 + 16
    assert rows["fc1"].output_shape == "1 × 10" and rows["fc1"].parameters == 16 * 7 * 7 * 10 + 10
    # The one pooling layer is called twice: two rows, in call order, no parameters.
    assert [row.name for row in summary.rows] == ["conv1", "pool", "conv2", "pool (call 2)", "fc1"]
    assert rows["pool (call 2)"].output_shape == "1 × 16 × 7 × 7" and rows["pool"].trainable == ""
    total, trainable = count_parameters(model)
    assert summary.total_parameters == total == trainable == sum(row.parameters for row in summary.rows)
    assert summary.frozen_parameters == 0
    assert summary.input_shape == (1, 1, 28, 28) and summary.output_shape == (1, 10)
    assert summary.size_mb == pytest.approx(total * 4 / 1024**2)
    # Mult-adds (torchinfo's count): each weight and bias once per output position; pooling has none.
    assert rows["conv1"].mult_adds == (8 * 9 + 8) * 28 * 28
    assert rows["conv2"].mult_adds == (16 * 8 * 9 + 16) * 14 * 14
    assert rows["fc1"].mult_adds == 16 * 7 * 7 * 10 + 10 and rows["pool"].mult_adds == 0
    assert summary.mult_adds == sum(row.mult_adds for row in summary.rows)


def test_summary_counts_buffers_and_frozen_layers():
    model = build_model("fastnet", 3, 9, 28)
    for p in model.features.parameters():
        p.requires_grad_(False)
    model.train()
    summary = summarize_model(model, torch.randn(2, 3, 28, 28))
    assert model.training  # the summary's eval-mode pass puts the mode back
    kinds = [row.kind for row in summary.rows]
    assert kinds[:3] == ["Conv2d", "BatchNorm2d", "ReLU"] and kinds[-1] == "Linear"
    frozen = sum(p.numel() for p in model.features.parameters())
    assert summary.frozen_parameters == frozen and summary.trainable_parameters == summary.total_parameters - frozen
    assert {row.trainable for row in summary.rows if row.kind == "Conv2d"} == {"frozen"}
    assert [row.trainable for row in summary.rows if row.kind == "Linear"] == ["trainable"]
    assert summary.buffer_bytes > 0  # BatchNorm's running mean and variance
    assert summary.rows[-1].output_shape == "2 × 9"


def test_parameters_held_by_a_container_get_their_own_row():
    class Scaled(nn.Module):
        def __init__(self):
            super().__init__()
            self.scale = nn.Parameter(torch.ones(1))
            self.linear = nn.Linear(4, 2)

        def forward(self, x):
            return self.linear(x.flatten(1)) * self.scale

    summary = summarize_model(Scaled(), torch.randn(1, 1, 2, 2))
    assert summary.rows[-1].name == "(held by container modules)" and summary.rows[-1].parameters == 1
    assert sum(row.parameters for row in summary.rows) == summary.total_parameters == 11


def test_activation_maps_give_every_conv_layer_in_call_order():
    model = build_model("resnet_small", 3, 9, 28)
    maps = activation_maps(model, torch.randn(3, 28, 28))
    convs = [name for name, module in model.named_modules() if isinstance(module, nn.Conv2d)]
    assert sorted(name for name, _ in maps) == sorted(convs)
    shapes = dict((name, tuple(t.shape)) for name, t in maps)
    assert shapes["features.0"] == (32, 28, 28)
    assert all(t.dim() == 3 and t.dtype == torch.float32 for _, t in maps)
    # Exactly what the layer computed: compare the stem with a direct call.
    model.eval()
    x = torch.randn(3, 28, 28)
    with torch.no_grad():
        expected = model.features[0](x.unsqueeze(0))[0]
    assert torch.allclose(dict(activation_maps(model, x))["features.0"], expected, atol=1e-6)


def test_activation_maps_are_copied_before_an_in_place_relu():
    model = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(inplace=True))
    with torch.no_grad():
        model[0].weight.fill_(-1.0)
        model[0].bias.zero_()
    ((name, fmap),) = activation_maps(model, torch.ones(1, 5, 5))
    assert name == "0" and (fmap < 0).all()  # the ReLU after the hook did not zero the copy


def test_activation_maps_refuse_a_batch_and_name_reused_layers():
    model = build_model("simple_cnn", 1, 10, 28)
    with pytest.raises(CnnError, match="one image at a time"):
        activation_maps(model, torch.randn(2, 1, 28, 28))
    pooled = activation_maps(model, torch.randn(1, 28, 28), layer_types=(nn.MaxPool2d,))
    assert [name for name, _ in pooled] == ["pool", "pool (call 2)"]
    assert tuple(pooled[1][1].shape) == (16, 7, 7)


def test_feature_map_grid_tiles_and_scales_each_map():
    maps = torch.stack([torch.zeros(4, 4), torch.arange(16.0).view(4, 4), torch.full((4, 4), 7.0)])
    grid = feature_map_grid(maps, columns=2, pad=1)
    assert grid.shape == (9, 9) and grid.dtype.name == "uint8"
    assert (grid[:4, :4] == 128).all()  # a constant map is mid-gray
    assert grid[0, 5] == 0 and grid[3, 8] == 255  # the ramp spans 0..255
    assert (grid[4, :] == 255).all() and (grid[5:, 5:] == 255).all()  # padding and the empty cell
    with pytest.raises(CnnError):
        feature_map_grid(torch.zeros(4, 4))


@needs_dot
def test_autograd_graph_renders_svg_and_png_with_parameter_names():
    model = build_model("simple_cnn", 1, 10, 28)
    dot = autograd_graph(model, torch.randn(1, 28, 28))
    assert "conv1.weight" in dot.source and "ConvolutionBackward" in dot.source
    svg = render_graph(dot, "svg")
    assert svg.lstrip().startswith(b"<?xml") and b"<svg" in svg and b"conv1.weight" in svg
    png = render_graph(dot, "png")
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(CnnError, match="svg or png"):
        render_graph(dot, "gif")


def test_every_box_of_the_registry_models_graphs_is_explained():
    from cnn_core.inference.graph import AUTOGRAD_BOX_MEANINGS, autograd_box_names
    from cnn_core.models.registry import list_models

    seen = set()
    for spec in list_models():
        if spec.name.startswith("transfer:"):  # a frozen backbone: the graph is a linear head, as below
            continue
        model = build_model(spec.name, 3, 5, 28).eval()
        names = autograd_box_names(model(torch.zeros(1, 3, 28, 28)))
        assert names <= set(AUTOGRAD_BOX_MEANINGS), (spec.name, names - set(AUTOGRAD_BOX_MEANINGS))
        seen |= names
    assert {"ConvolutionBackward0", "AccumulateGrad", "AddBackward0", "SigmoidBackward0"} <= seen


def test_a_missing_dot_program_gives_the_install_command(monkeypatch, tmp_path):
    model = build_model("lenet", 1, 10, 28)
    dot = autograd_graph(model, torch.randn(1, 28, 28))
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty folder: no `dot` anywhere
    assert not graphviz_available()
    with pytest.raises(GraphvizError, match="sudo apt-get install graphviz.*brew install graphviz"):
        render_graph(dot, "svg")


def test_a_model_without_autograd_history_is_explained():
    model = build_model("simple_cnn", 1, 10, 28)
    for p in model.parameters():
        p.requires_grad_(False)
    with pytest.raises(CnnError, match="no autograd history"):
        autograd_graph(model, torch.randn(1, 28, 28))


def test_svg_for_page_drops_the_prolog_and_scales():
    svg = (b'<?xml version="1.0"?>\n<!DOCTYPE svg>\n<!-- Generated by graphviz -->\n'
           b'<svg width="200pt" height="100pt" viewBox="0 0 200 100"><g><!-- node --><text>conv1</text></g></svg>\n')
    half = svg_for_page(svg, 0.5)
    assert half.startswith('<svg width="100.0pt" height="50.0pt" viewBox="0 0 200 100">')
    assert "<!--" not in half and "<?xml" not in half and "<text>conv1</text>" in half
    fit = svg_for_page(svg, None)
    assert fit.startswith('<svg style="width:100%;height:auto" viewBox="0 0 200 100">')
    with pytest.raises(CnnError):
        svg_for_page(b"<html></html>")
    with pytest.raises(CnnError):
        svg_for_page(svg, 0)


def test_cli_summary_of_a_registry_model_and_of_a_checkpoint(tiny_data_dir, capsys):
    """`python -m cnn_core summary`, torchinfo's table: a line per layer call with parameters and mult-adds, then the totals."""
    assert main(["summary", "--model", "simple_cnn", "--data", "mnist"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["layer", "type", "output", "shape", "parameters", "mult-adds", "weights"]
    assert lines[1].split()[:2] == ["conv1", "Conv2d"] and "62,720" in lines[1]
    assert "parameters 9,098 (trainable 9,098, frozen 0); mult-adds 299,498" in lines[-1]
    shipped = Path(__file__).resolve().parents[1] / "models" / "mnist_fastnet.safetensors"
    assert main(["summary", "--checkpoint", str(shipped), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["input_shape"] == [1, 1, 28, 28] and summary["output_shape"] == [1, 10]
    assert summary["mult_adds"] == sum(row["mult_adds"] for row in summary["rows"]) > 0
    assert summary["total_parameters"] == sum(row["parameters"] for row in summary["rows"])
