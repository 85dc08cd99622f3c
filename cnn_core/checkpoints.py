"""Checkpoints: safetensors weights plus a JSON card; loading never unpickles anything.

`NAME.safetensors` holds the weights and, in its metadata, the card; `NAME.json` beside it is the same
card for people to read. A `.pt`/`.pth` file is only ever opened with `torch.load(weights_only=True)`,
which refuses pickled code.
"""

from __future__ import annotations

import json
import pickle
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file
from torch import nn

from .errors import CheckpointError, CnnError
from .settings import models_dir, runs_dir

CARD_KEYS = ("model", "dataset", "class_names", "channels", "image_size", "normalization")
MAX_CHECKPOINT_BYTES = 2 * 1024**3


@dataclass
class LoadedCheckpoint:
    """A model ready for inference (eval mode, on the CPU unless asked otherwise) and its card."""

    model: nn.Module
    card: dict
    path: Path


def card_path_for(path: Path) -> Path:
    return path.with_suffix(".json")


def save_checkpoint(model: nn.Module, card: dict, path: Path) -> Path:
    """Write `path` (.safetensors) and its card `path.json`; returns the weights' path.

    A model may define `checkpoint_state_dict()` to store only part of its weights (a transfer model
    stores its head and fine-tuned layers; the frozen backbone comes from its pip package).
    """
    path = Path(path)
    if path.suffix != ".safetensors":
        path = path.with_suffix(".safetensors")
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = getattr(model, "checkpoint_state_dict", None)
    state = partial() if callable(partial) else model.state_dict()
    card = {**card, "weights": "partial" if callable(partial) else "full"}
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in state.items()}
    card_json = json.dumps(card, indent=2, default=_json_default)
    save_file(tensors, str(path), metadata={"format": "cnn-explorer", "card": card_json})
    card_path_for(path).write_text(card_json + "\n")
    path.with_suffix(".md").write_text(model_card_markdown(card, path.name))
    return path


def model_card_markdown(card: dict, filename: str) -> str:
    """A model card for people: what the checkpoint is, the command that made it, its measured metrics."""
    training = card.get("training") or {}
    test = (card.get("metrics") or {}).get("test") or {}
    lines = [
        f"# {filename}",
        "",
        f"- Model: `{card.get('model')}` {json.dumps(card.get('model_args') or {})}",
        f"- Data set: `{card.get('dataset')}` ({card.get('dataset_title', '')}), task {card.get('task')}, "
        f"{len(card.get('class_names', []))} classes, input {card.get('channels')}x{card.get('image_size')}x{card.get('image_size')}",
        f"- Trained on: {training.get('device', '?')}, {training.get('epochs_run', '?')} epochs "
        f"(best {training.get('best_epoch', '?')}), {training.get('train_seconds', '?')} s of training, "
        f"{training.get('n_train', '?')} training images",
        f"- Made by: `{card.get('command') or 'the training studio'}`",
        *([f"- Test-time augmentation: predictions average {len(views)} orientations ({', '.join(views)})"]
          if len(views := card.get("test_time_augmentation") or []) > 1 else []),
        f"- Versions: {json.dumps(card.get('versions') or {})}",
        "",
        f"## Test metrics ({test.get('n', '?')} test images)",
        "",
        "| metric | value |",
        "|---|---|",
    ]
    for key in ("accuracy", "precision", "recall", "sensitivity", "specificity", "f1", "auroc", "kappa"):
        if key in test and test[key] is not None:
            lines.append(f"| {key} | {test[key]:.4f} |")
    return "\n".join(lines) + "\n"


def _json_default(value):
    if isinstance(value, torch.Tensor):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def read_checkpoint_file(path: Path) -> tuple[dict[str, torch.Tensor], dict]:
    """(weights, card) from a file, refusing anything that is not a CNN Explorer checkpoint."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"No checkpoint at {path}.")
    if path.stat().st_size > MAX_CHECKPOINT_BYTES:
        raise CheckpointError(f"{path.name} is larger than 2 GB; that is not a CNN Explorer checkpoint.")
    with path.open("rb") as handle:
        head = handle.read(8)
    if _looks_like_safetensors(path, head):
        return _read_safetensors(path)
    return _read_torch_file(path)


def _looks_like_safetensors(path: Path, head: bytes) -> bool:
    if len(head) < 8:
        return False
    header_len = int.from_bytes(head, "little")
    return 2 <= header_len < min(path.stat().st_size, 100 * 1024**2)


def _read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict]:
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
        weights = load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
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
    except json.JSONDecodeError:
        raise CheckpointError(f"{path.name} has a damaged card.") from None


def _read_torch_file(path: Path) -> tuple[dict[str, torch.Tensor], dict]:
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise CheckpointError(
            f"Refused {path.name}: it holds pickled Python objects, which could run code when loaded. "
            "CNN Explorer only loads plain weights (safetensors, or torch files of tensors)."
        ) from None
    except Exception as exc:  # zip/pickle garbage of every kind ends here
        raise CheckpointError(f"{path.name} is not a checkpoint: {type(exc).__name__}: {str(exc)[:200]}") from None
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict) and isinstance(obj.get("card"), dict):
        return obj["state_dict"], obj["card"]
    card = _sidecar_card(path)
    if isinstance(obj, dict) and card is not None and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return obj, card
    raise CheckpointError(
        f"{path.name} is a torch file but not a CNN Explorer checkpoint (it has no card naming its model and data set)."
    )


def _sidecar_card(path: Path) -> dict | None:
    side = card_path_for(path)
    if side.is_file():
        try:
            card = json.loads(side.read_text())
        except (json.JSONDecodeError, OSError, UnicodeDecodeError):
            return None
        return card if isinstance(card, dict) else None
    return None


def validate_card(card: dict, source: str) -> None:
    missing = [k for k in CARD_KEYS if k not in card]
    if missing:
        raise CheckpointError(f"{source}'s card lacks {', '.join(missing)}; it is not a CNN Explorer checkpoint.")


def build_from_card(card: dict) -> nn.Module:
    """The untrained model a card describes."""
    from .models import build_model

    try:
        return build_model(
            card["model"],
            int(card["channels"]),
            len(card["class_names"]),
            int(card["image_size"]),
            **(card.get("model_args") or {}),
        )
    except CnnError as exc:
        raise CheckpointError(f"The checkpoint's model cannot be built: {exc}") from None


def load_checkpoint(
    path: str | Path,
    expect_dataset: str | None = None,
    expect_model: str | None = None,
    device: torch.device | str = "cpu",
) -> LoadedCheckpoint:
    """Load a checkpoint for inference; CheckpointError if it is not one or does not fit what is asked."""
    path = Path(path)
    weights, card = read_checkpoint_file(path)
    validate_card(card, path.name)
    if expect_dataset and card["dataset"] != expect_dataset:
        raise CheckpointError(
            f"{path.name} was trained on {card['dataset']!r}, not {expect_dataset!r}; "
            f"its classes are {', '.join(map(str, card['class_names'][:10]))}."
        )
    if expect_model and card["model"] != expect_model:
        raise CheckpointError(f"{path.name} holds a {card['model']!r} model, not {expect_model!r}.")
    model = build_from_card(card)
    partial = card.get("weights") == "partial"
    expected = model.state_dict()
    stored_part = getattr(model, "checkpoint_state_dict", None)
    if partial and not callable(stored_part):
        raise CheckpointError(
            f"{path.name} holds only part of a model's weights, but {card['model']!r} models are stored whole; "
            "the file is damaged or was not made by CNN Explorer."
        )
    # A partial checkpoint (a transfer model) must hold exactly what its model stores: the head and the trained
    # stages. Only the frozen backbone, which comes from the backbone's own weights, may be absent.
    stored = set(stored_part()) if partial else set(expected)
    unexpected = sorted(set(weights) - stored)
    missing = sorted(stored - set(weights))
    mismatched = [k for k in weights if k in expected and tuple(weights[k].shape) != tuple(expected[k].shape)]
    if unexpected or missing or mismatched:
        detail = (unexpected or missing or mismatched)[:3]
        raise CheckpointError(
            f"The weights in {path.name} do not fit the {card['model']!r} model its card names "
            f"(first differences: {', '.join(detail)})."
        )
    model.load_state_dict(weights, strict=not partial)
    model.to(device).eval()
    return LoadedCheckpoint(model=model, card=card, path=path)


def list_checkpoints(folders: list[Path] | None = None) -> list[dict]:
    """Cards of every checkpoint in the shipped `models/` folder, then the runs folder, by file name.

    Each card gets `path` and `name` keys; unreadable files are left out.
    """
    folders = folders if folders is not None else [models_dir(), runs_dir()]
    cards = []
    for folder in folders:
        if not Path(folder).is_dir():
            continue
        for weights in sorted(Path(folder).glob("*.safetensors")):
            card = _sidecar_card(weights)
            if card is None:
                try:
                    _, card = _read_safetensors(weights)
                except CheckpointError:
                    continue
            card = {**card, "path": str(weights), "name": weights.stem, "shipped": Path(folder) == models_dir()}
            cards.append(card)
    return cards
