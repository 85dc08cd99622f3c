"""ONNX export of a checkpoint: the network together with the tensor maths of its card's input preparation.

The exported graph takes images at the card's size and channels, [N, C, S, S] with a dynamic batch axis N,
either as uint8 in 0–255 (the default: what `predict` feeds the network) or as float32 in 0–1, and returns
class probabilities [N, K] float32. Inside the graph: scaling to 0–1, the card's normalisation (mean, std
per channel), the network, the softmax and, when the card lists test-time augmentation views, the average
of the probabilities over those orientations, so the file gives the same numbers as `predict_tensor`.
Resizing, cropping and channel conversion of arbitrary images stay outside (they are PIL work, not tensor
maths); a JSON card beside the .onnx file says what the input must be.

The TorchScript-based exporter (`torch.onnx.export(..., dynamo=False)`) is used: it needs no `onnxscript`,
works offline and handles every model of the registry.
"""

from __future__ import annotations

import copy
import io
import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..data.augment import orient
from ..errors import CnnError
from ..settings import replaced_on_success
from ..models.card import Card
from ..models.checkpoints import LoadedCheckpoint, load_checkpoint
from .predict import card_views

#: ONNX operator set of the exported files (onnxruntime 1.14 and later run it).
OPSET = 17
INPUT_NAME = "images"
OUTPUT_NAME = "probabilities"
INPUT_DTYPES = ("uint8", "float32")


class ExportError(CnnError):
    """A checkpoint cannot be exported as asked (bad format, input type or output path)."""


class PreparedClassifier(nn.Module):
    """The network with its input preparation: images [N, C, S, S] (uint8 0–255, or float 0–1) to
    probabilities [N, K] float32, averaged over the card's test-time augmentation views."""

    def __init__(self, model: nn.Module, card: Card, input_dtype: str = "uint8"):
        super().__init__()
        if input_dtype not in INPUT_DTYPES:
            raise ExportError(f"The ONNX input type is uint8 or float32; got {input_dtype!r}.")
        self.model = model
        self.views = card_views(card)
        self.scale = 255.0 if input_dtype == "uint8" else 1.0
        norm = card.normalization
        self.register_buffer("mean", torch.tensor(norm["mean"], dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(norm["std"], dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = (images.float() / self.scale - self.mean) / self.std
        if len(self.views) == 1:
            return torch.softmax(self.model(orient(x, self.views[0])).float(), dim=1)
        seen = torch.cat([orient(x, view) for view in self.views])  # one pass over every view: [V*N, C, S, S]
        probs = torch.softmax(self.model(seen).float(), dim=1)
        return probs.reshape(len(self.views), -1, probs.shape[1]).mean(dim=0)


@dataclass(frozen=True)
class OnnxExport:
    """An exported checkpoint: the .onnx file's bytes and its input card (a dict, written as JSON)."""

    model_bytes: bytes
    card: dict


def input_card(card: Card, input_dtype: str, source: str) -> dict:
    """What a user of the .onnx file needs: input name, shape, dtype and value range, output, class names."""
    size, channels = card.image_size, card.channels
    value_range = [0, 255] if input_dtype == "uint8" else [0.0, 1.0]
    return {
        "format": "onnx",
        "opset": OPSET,
        "source_checkpoint": source,
        "model": card.model,
        "dataset": card.dataset,
        "input": {
            "name": INPUT_NAME,
            "shape": ["batch", channels, size, size],
            "dtype": input_dtype,
            "value_range": value_range,
            "layout": "NCHW: batch, channels, height, width",
            "channels": "gray" if channels == 1 else "RGB",
            "preparation_outside": f"resize the shorter side to {size} px (bicubic) and centre-crop to "
            f"{size}x{size} ({'gray' if channels == 1 else 'RGB'}), as CNN Explorer's predict does"
            + ("; digits are white on black, centred, as in MNIST" if card.is_digit_model else ""),
            "preparation_inside": {
                "scale": f"divided by {255 if input_dtype == 'uint8' else 1}",
                "normalization": card.normalization,
                "test_time_augmentation": list(card_views(card)),
            },
        },
        "output": {"name": OUTPUT_NAME, "shape": ["batch", card.n_classes], "dtype": "float32",
                   "meaning": "class probabilities (softmax; rows sum to 1)"},
        "class_names": list(card.class_names),
    }


def export_onnx_bytes(loaded: LoadedCheckpoint, input_dtype: str = "uint8") -> OnnxExport:
    """The ONNX file of a loaded checkpoint (exported from the CPU; a model on a GPU is copied, not moved) and
    its input card.

    Raises ExportError for an unknown `input_dtype`, and when the exporter fails on the model."""
    card = loaded.card
    model = loaded.model
    if any(p.device.type != "cpu" for p in model.parameters()):  # a copy: the caller's model stays where it is
        model = copy.deepcopy(model).to("cpu")
    wrapped = PreparedClassifier(model, card, input_dtype).eval()
    dtype = torch.uint8 if input_dtype == "uint8" else torch.float32
    example = torch.zeros(2, card.channels, card.image_size, card.image_size, dtype=dtype)
    buffer = io.BytesIO()
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice and tracer hints
            torch.onnx.export(
                wrapped, (example,), buffer, dynamo=False, opset_version=OPSET, input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME], dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
            )  # fmt: skip
    except Exception as exc:  # noqa: BLE001 - the exporter raises many types; the user gets one line
        raise ExportError(f"{loaded.path.name} could not be exported to ONNX: {type(exc).__name__}: "
                          f"{str(exc).splitlines()[0][:200]}") from None  # fmt: skip
    described = input_card(card, input_dtype, loaded.path.name)
    return OnnxExport(_with_card(buffer.getvalue(), described), described)


def _with_card(model_bytes: bytes, card: dict) -> bytes:
    """The ONNX file with its input card in the model's metadata (Netron shows it under "metadata")."""
    import onnx

    proto = onnx.load_model_from_string(model_bytes)
    proto.producer_name = "cnn-explorer"
    onnx.helper.set_model_props(proto, {"cnn_explorer_card": json.dumps(card),
                                        "class_names": json.dumps(card["class_names"])})
    return proto.SerializeToString()


def card_path_for_onnx(out: Path) -> Path:
    """The input card written beside an .onnx file: `model.onnx` -> `model.onnx.json`."""
    return out.with_name(out.name + ".json")


def export_checkpoint(checkpoint: str | Path, out: str | Path, fmt: str = "onnx",
                      input_dtype: str = "uint8") -> tuple[Path, Path]:
    """Export a checkpoint file to `out` (.onnx) and its input card beside it; returns both paths.

    Raises CheckpointError for a file that is not a checkpoint (loading never unpickles), ExportError for
    another format than "onnx", an `out` not ending in .onnx or a folder that cannot be written."""
    if fmt != "onnx":
        raise ExportError(f"Only the onnx format can be exported; got {fmt!r}.")
    out = Path(out)
    if out.suffix.lower() != ".onnx":
        raise ExportError(f"The output file must end in .onnx; got {out.name!r}.")
    if not out.parent.is_dir():
        raise ExportError(f"The folder {out.parent} does not exist.")
    exported = export_onnx_bytes(load_checkpoint(checkpoint), input_dtype)
    card_file = card_path_for_onnx(out)
    if folder := next((target for target in (out, card_file) if target.is_dir()), None):
        raise ExportError(f"Could not write {folder}: it is a folder.")
    writing = out
    try:  # both written before either replaces an earlier export (the model first, then its card)
        with replaced_on_success(card_file) as card_text, replaced_on_success(out) as model_file:
            model_file.write_bytes(exported.model_bytes)
            writing = card_file
            card_text.write_text(json.dumps(exported.card, indent=2) + "\n")
    except OSError as exc:
        written = exc.filename if exc.filename in (str(out), str(card_file)) else writing
        raise ExportError(f"Could not write {written}: {exc.strerror or exc}.") from None
    return out, card_file
