"""Checkpoints: safetensors weights plus a JSON card (`card.Card`); loading never unpickles anything.

`NAME.safetensors` holds the weights and, in its metadata, the card; `NAME.json` beside it is the same
card for people to read. A `.pt`/`.pth` file is only ever opened with `torch.load(weights_only=True)`,
which refuses pickled code.
"""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import zipfile
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file

from ..errors import CheckpointError, CnnError
from ..settings import models_dir, replaced_on_success, runs_dir
from .card import Card, model_card_markdown
from .registry import build_model
from .spec import Classifier

MAX_CHECKPOINT_BYTES = 2 * 1024**3


@dataclass
class LoadedCheckpoint:
    """A model ready for inference (eval mode, on the CPU unless asked otherwise) and its card."""

    model: Classifier
    card: Card
    path: Path


@dataclass(frozen=True)
class CheckpointEntry:
    """A checkpoint found on disk, for pickers: its card, file, name (the file's stem), whether it ships
    with the app (`models/`) or was trained here, and the number of the owner's run that made it (None: not a
    recorded run of the owner's)."""

    card: Card
    path: Path
    name: str
    shipped: bool
    run_number: int | None = None

    @property
    def title(self) -> str:
        """How the pages name it: "run #3" (as the studio numbers the owner's runs), else the file's stem."""
        return f"run #{self.run_number}" if self.run_number is not None else self.name


def card_path_for(path: Path) -> Path:
    return path.with_suffix(".json")


def checkpoint_files(path: Path) -> tuple[Path, Path, Path]:
    """The three files `save_checkpoint` writes for `path`: weights (.safetensors), card (.json), model card (.md)."""
    weights = Path(path) if Path(path).suffix == ".safetensors" else Path(path).with_suffix(".safetensors")
    return weights, card_path_for(weights), weights.with_suffix(".md")


def check_checkpoint_target(path: Path) -> None:
    """CheckpointError now, before any training, when the checkpoint's files could not be written at `path`
    (a folder that cannot be made, a name too long for the file system, no write permission): found at the
    end, the trained weights would be lost."""
    for target in checkpoint_files(path):
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            if target.exists():
                if target.is_dir() or not os.access(target, os.W_OK):
                    raise PermissionError(f"cannot overwrite {target}")
                continue
            with open(target, "xb"):
                pass
            target.unlink()
        except OSError as exc:
            raise CheckpointError(f"The checkpoint cannot be saved as {target} ({exc.strerror or exc}): choose another "
                                  "--out path.") from None


def save_checkpoint(model: Classifier, card: Card, path: Path) -> Path:
    """Write `path` (.safetensors), its card `path.json` and a model card `path.md`; returns the weights' path.

    The weights are `model.checkpoint_state_dict()`: a transfer model stores its head and fine-tuned layers
    only (the frozen backbone comes from its pip package or the torch hub cache).
    """
    path, card_path, model_card_path = checkpoint_files(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    card = replace(card, weights="partial" if model.stores_partial_weights else "full")
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in model.checkpoint_state_dict().items()}
    card_json = card.to_json()
    # written in full before any replaces the earlier files (the weights first, then their cards): a full disk
    # while a run overwrites its --out must not destroy the earlier checkpoint
    try:
        with (replaced_on_success(model_card_path) as markdown, replaced_on_success(card_path) as card_file,
              replaced_on_success(path) as weights):
            save_file(tensors, str(weights), metadata={"format": "cnn-explorer", "card": card_json})
            card_file.write_text(card_json + "\n")
            markdown.write_text(model_card_markdown(card, path.name))
    except OSError as exc:
        raise CheckpointError(f"The checkpoint could not be saved as {path} ({exc.strerror or exc}); "
                              "an earlier file there is kept.") from None
    return path


def read_checkpoint_file(path: Path) -> tuple[dict[str, torch.Tensor], dict]:
    """(weights, card) from a file, refusing anything that is not a CNN Explorer checkpoint."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"No checkpoint at {path}.")
    if path.stat().st_size > MAX_CHECKPOINT_BYTES:
        raise CheckpointError(f"{path.name} is larger than 2 GB; that is not a CNN Explorer checkpoint.")
    with path.open("rb") as handle:
        head = handle.read(HEAD_BYTES)
    not_weights = what_else_it_is(path, head)
    if not_weights:
        raise CheckpointError(not_weights)
    if _looks_like_safetensors(path, head):
        return _read_safetensors(path)
    return _read_torch_file(path)


HEAD_BYTES = 1024
GIT_LFS_POINTER = b"version https://git-lfs.github.com/spec/"
ZIP_MAGIC = b"PK\x03\x04"  # torch.save's format since PyTorch 1.6


def what_else_it_is(path: Path, head: bytes) -> str | None:
    """Why a file is not a checkpoint, told by its first bytes (`head`), or None when it may be one.

    The usual wrong files: an empty or cut-off download, a web page saved under the checkpoint's name (a
    failed download), a Git LFS pointer (a clone without `git lfs pull`), the JSON card passed instead of
    the weights beside it, any other text file.
    """
    name = path.name
    if not head:
        return f"{name} is empty (0 bytes): the download or copy did not finish. Fetch the checkpoint again."
    if head.startswith(GIT_LFS_POINTER):
        return (f"{name} is a Git LFS pointer (a small text file standing for the real weights), not a checkpoint: "
                "run `git lfs pull` in the repository it came from, then use the file again.")
    image = next((kind for magic, kind in IMAGE_MAGIC.items() if head.startswith(magic)), None)
    if image or (head[:4] == b"RIFF" and head[8:12] == b"WEBP") or head[4:12] in (b"ftypheic", b"ftypheix", b"ftypmif1"):
        return (f"{name} is an image ({image or 'WebP or HEIC'}), not a checkpoint: pass it as the picture to "
                "classify, and a .safetensors file that CNN Explorer saved as the checkpoint.")
    if _is_onnx(head):
        return (f"{name} is an ONNX export (for onnxruntime and other runtimes), not a checkpoint: pass the "
                ".safetensors file it was exported from.")
    zip_kind = _zip_kind(path) if head.startswith(ZIP_MAGIC) else None
    if zip_kind in PROGRAM_ZIPS:
        return (f"{name} is {PROGRAM_ZIPS[zip_kind]}: a whole program, not a checkpoint of weights. CNN Explorer "
                "loads the .safetensors checkpoints it saves, with a card naming the model (train one with "
                "`python -m cnn_core train` or in the Training Studio).")
    if zip_kind == "other":
        return (f"{name} is a zip archive, not a checkpoint (a zip of image folders is a data set: upload it in the "
                "Training Studio). Pass the .safetensors file that CNN Explorer saved.")
    if b"\x00" in head or head.startswith(ZIP_MAGIC) or head[:1] == b"\x80":  # binary: safetensors, zip, pickle
        return None
    try:
        text = head.decode("utf-8").lstrip("\ufeff \t\r\n").lower()
    except UnicodeDecodeError:
        return None  # binary after all (e.g. a safetensors header longer than the bytes read)
    if text.startswith(("<!doctype html", "<html", "<head", "<?xml")) or "<html" in text:
        return (f"{name} is a web page, not a checkpoint: the download probably failed (a login or error page was "
                "saved instead). Download the checkpoint again, from the file's direct link.")
    if text.startswith("{"):
        card = _card_in(path)
        if card is not None:
            beside = path.with_suffix(".safetensors")
            return (f"{name} is a checkpoint's card (its description), not its weights: pass the .safetensors file "
                    f"beside it{f' ({beside.name})' if beside.is_file() else ''}.")
        return f"{name} is a JSON file, not a checkpoint: pass the .safetensors file that CNN Explorer saved."
    return f"{name} is a text file, not a checkpoint: pass the .safetensors file that CNN Explorer saved."


IMAGE_MAGIC = {b"\x89PNG\r\n\x1a\n": "PNG", b"\xff\xd8\xff": "JPEG", b"GIF87a": "GIF", b"GIF89a": "GIF",
               b"BM": "BMP", b"II*\x00": "TIFF", b"MM\x00*": "TIFF"}  # fmt: skip


#: Zips that PyTorch writes for whole programs, as `_zip_kind` names them, and how a message calls them.
PROGRAM_ZIPS = {"torchscript": "a TorchScript model (saved with torch.jit.save or torch.jit.trace)",
                "exported": "a torch.export program (saved with torch.export.save)"}


def _zip_kind(path: Path) -> str:
    """What a zip holds, told by its member names: "torch" (`torch.save`'s format: one folder holding data.pkl and
    a version record; also a damaged zip, which the torch reader explains), "torchscript" (that folder also holds
    code/ and constants.pkl), "exported" (torch.export's archive_format record) or "other"."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError, ValueError):
        return "torch"
    if any(name.endswith("/archive_format") or name == "archive_format" for name in names):
        return "exported"
    if any(name.endswith("/constants.pkl") or "/code/__torch__/" in name for name in names):
        return "torchscript"
    return "torch" if any(name.endswith("/data.pkl") for name in names) else "other"


def _is_onnx(head: bytes) -> bool:
    """An ONNX model: a protobuf that opens with ir_version (tag 0x08, a small varint) and then the producer's
    name or version, the domain or the graph (tags 0x12, 0x1A, 0x22, 0x28, 0x32, 0x3A), as every exporter
    writes it; a safetensors header (8 bytes of length, then "{") is not one."""
    return (len(head) > 9 and head[0] == 0x08 and 1 <= head[1] <= 20 and head[2] in (0x12, 0x1A, 0x22, 0x28, 0x32, 0x3A)
            and head[8:9] != b"{")


def _card_in(path: Path) -> dict | None:
    """The file's JSON content when it reads as a CNN Explorer card (it names a model and class names)."""
    try:
        content = json.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, ValueError, RecursionError):  # RecursionError: JSON nested thousands deep
        return None
    return content if isinstance(content, dict) and {"model", "class_names"} <= content.keys() else None


def _looks_like_safetensors(path: Path, head: bytes) -> bool:
    """A safetensors file starts with its JSON header's length (8 bytes, little-endian), then the header."""
    if len(head) < 9:
        return False
    header_len = int.from_bytes(head[:8], "little")
    if head[8:9] == b"{" and header_len >= path.stat().st_size - 8:
        raise CheckpointError(f"{path.name} is cut off ({path.stat().st_size:,} bytes, shorter than its own header "
                              "says): the download or copy did not finish. Fetch the checkpoint again.")
    return 2 <= header_len < min(path.stat().st_size, 100 * 1024**2)


def _read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict]:
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
        weights = load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        if "incomplete" in str(exc).lower() or "not fully covered" in str(exc).lower():
            raise CheckpointError(f"{path.name} is cut off or damaged ({exc}): the download or copy did not finish. "
                                  "Fetch the checkpoint again.") from None
        raise CheckpointError(f"{path.name} is not a readable checkpoint ({exc}).") from None
    if metadata.get("format") != "cnn-explorer" or "card" not in metadata:
        card = _sidecar_card(path)
        if card is None:
            raise CheckpointError(
                f"{path.name} holds weights but no CNN Explorer card, so nothing says which model and data set "
                "they belong to. Train with CNN Explorer (`python -m cnn_core train ...`) to get a checkpoint."
            )
        return weights, card
    try:
        return weights, json.loads(metadata["card"])
    except (ValueError, RecursionError):  # not JSON, or JSON nested thousands deep
        raise CheckpointError(f"{path.name} has a damaged card.") from None


def _read_torch_file(path: Path) -> tuple[dict[str, torch.Tensor], dict]:
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        if not _is_pickle(path):  # random bytes named .pt: "invalid load key", not a pickle at all
            raise CheckpointError(f"{path.name} is not a checkpoint: it is neither a safetensors file nor a torch "
                                  "file (nor one that was cut off).") from None
        whole_model = _pickles_a_module(path)
        raise CheckpointError(
            f"Refused {path.name}: it holds "
            + ("a whole pickled model (saved with torch.save(model))" if whole_model else "pickled Python objects")
            + ", which could run code when loaded. CNN Explorer only loads plain weights (safetensors, or torch "
            "files of tensors)."
        ) from None
    except Exception as exc:  # zip/pickle garbage of every kind ends here
        if _truncated_zip(path, exc):
            raise CheckpointError(f"{path.name} is a torch file that is cut off or damaged (its zip directory is "
                                  "missing): the download or copy did not finish. Fetch it again.") from None
        raise CheckpointError(f"{path.name} is not a checkpoint: {type(exc).__name__}: {str(exc)[:200]}") from None
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict) and isinstance(obj.get("card"), dict):
        return obj["state_dict"], obj["card"]
    card = _sidecar_card(path)
    if isinstance(obj, dict) and card is not None and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return obj, card
    raise CheckpointError(
        f"{path.name} is a torch file but not a CNN Explorer checkpoint (it has no card naming its model and data set)."
    )


def _pickles_a_module(path: Path) -> bool:
    """Whether a torch file's pickle holds an nn.Module (`torch.save(model)`), read as bytes, never unpickled:
    every pickled module carries its attribute names `_parameters` and `_modules`."""
    try:
        with zipfile.ZipFile(path) as archive:
            name = next(n for n in archive.namelist() if n.endswith("/data.pkl"))
            data = archive.read(name)
    except (zipfile.BadZipFile, StopIteration, OSError, ValueError):
        with path.open("rb") as handle:  # the legacy format before PyTorch 1.6: the pickle comes first
            data = handle.read(1024**2)
    return b"_parameters" in data and b"_modules" in data


def _is_pickle(path: Path) -> bool:
    """Whether a file is a torch file's zip with a pickle inside, or starts as a pickle does (protocol 2-5's
    PROTO opcode, 0x80, then the protocol number: what `torch.save` wrote before PyTorch 1.6)."""
    with path.open("rb") as handle:
        head = handle.read(4)
    if head == ZIP_MAGIC:
        with contextlib.suppress(zipfile.BadZipFile, OSError, ValueError), zipfile.ZipFile(path) as archive:
            return any(name.endswith(".pkl") for name in archive.namelist())
        return False
    return len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5


def _truncated_zip(path: Path, exc: Exception) -> bool:
    with path.open("rb") as handle:
        return handle.read(4) == ZIP_MAGIC and "central directory" in str(exc)


def _sidecar_card(path: Path) -> dict | None:
    side = card_path_for(path)
    if side.is_file():
        try:
            card = json.loads(side.read_text())
        except (ValueError, OSError, RecursionError):
            return None
        return card if isinstance(card, dict) else None
    return None


def build_from_card(card: Card) -> Classifier:
    """The untrained model a card describes; CheckpointError when it cannot be built."""
    try:
        return build_model(card.model, card.channels, card.n_classes, card.image_size, **card.model_args)
    except CnnError as exc:
        raise CheckpointError(f"The checkpoint's model cannot be built: {exc}") from None


def _refuse_unusable_weights(path: Path, weights: dict) -> None:
    """CheckpointError for weights that are not tensors, not floating point (int or bool weights load into a
    float model silently, and answer nonsense), or not finite (NaN: a run that diverged, or a damaged file)."""
    for key, value in weights.items():
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(f"{path.name} is damaged: its entry {key!r} is not a tensor of weights.")
        if key.endswith("num_batches_tracked"):  # BatchNorm's counter: an integer by design
            continue
        if not value.is_floating_point():
            raise CheckpointError(f"{path.name} is damaged: its weights {key!r} are {value.dtype}, not floating point.")
        if not bool(torch.isfinite(value).all()):
            raise CheckpointError(f"{path.name} holds weights that are not finite numbers (NaN or infinity in "
                                  f"{key!r}): the run that saved it diverged, or the file is damaged.")


def load_checkpoint(
    path: str | Path,
    expect_dataset: str | None = None,
    expect_model: str | None = None,
    device: torch.device | str = "cpu",
) -> LoadedCheckpoint:
    """Load a checkpoint for inference; CheckpointError if it is not one or does not fit what is asked."""
    path = Path(path)
    weights, raw_card = read_checkpoint_file(path)
    card = Card.from_dict(raw_card, path.name)
    if expect_dataset and card.dataset != expect_dataset:
        raise CheckpointError(
            f"{path.name} was trained on {card.dataset!r}, not {expect_dataset!r}; "
            f"its classes are {', '.join(card.class_names[:10])}."
        )
    if expect_model and card.model != expect_model:
        raise CheckpointError(f"{path.name} holds a {card.model!r} model, not {expect_model!r}.")
    model = build_from_card(card)
    partial = card.weights == "partial"
    expected = model.state_dict()
    if partial and not model.stores_partial_weights:
        raise CheckpointError(
            f"{path.name} holds only part of a model's weights, but {card.model!r} models are stored whole; "
            "the file is damaged or was not made by CNN Explorer."
        )
    # A partial checkpoint (a transfer model) must hold exactly what its model stores: the head and the trained
    # stages. Only the frozen backbone, which comes from the backbone's own weights, may be absent.
    _refuse_unusable_weights(path, weights)
    stored = set(model.checkpoint_state_dict()) if partial else set(expected)
    unexpected = sorted(set(weights) - stored)
    missing = sorted(stored - set(weights))
    mismatched = [k for k in weights if k in expected and tuple(weights[k].shape) != tuple(expected[k].shape)]
    if unexpected or missing or mismatched:
        detail = (unexpected or missing or mismatched)[:3]
        raise CheckpointError(
            f"The weights in {path.name} do not fit the {card.model!r} model its card names "
            f"(first differences: {', '.join(detail)})."
        )
    model.load_state_dict(weights, strict=not partial)
    model.to(device).eval()
    return LoadedCheckpoint(model=model, card=card, path=path)


def checkpoint_entry(weights: Path, shipped: bool = False) -> CheckpointEntry | None:
    """The entry of one checkpoint file for pickers, or None when its card cannot be read."""
    raw = _sidecar_card(weights)
    try:
        if raw is None:
            _, raw = _read_safetensors(weights)
        card = Card.from_dict(raw, weights.name)
    except CheckpointError:
        return None
    return CheckpointEntry(card=card, path=weights, name=weights.stem, shipped=shipped)


def list_checkpoints(folders: list[Path] | None = None) -> list[CheckpointEntry]:
    """Every checkpoint in the given folders (default: the shipped `models/`, then the runs folder), by file
    name; files whose card cannot be read are left out."""
    folders = folders if folders is not None else [models_dir(), runs_dir()]
    entries = []
    for folder in folders:
        if Path(folder).is_dir():
            for weights in sorted(Path(folder).glob("*.safetensors")):
                entry = checkpoint_entry(weights, shipped=Path(folder) == models_dir())
                if entry is not None:
                    entries.append(entry)
    return entries
