"""Checkpoint cards as the pages show them: the one place that reads a card's fields.

`checkpoint_cards()` lists the shipped and trained checkpoints (cached until a checkpoint folder changes);
the other functions turn one card into what a page needs: a picker label, a table row, its classes, input
shape and normalization.
"""

from __future__ import annotations

import json
from pathlib import Path

import streamlit as st

from cnn_core import reports, settings
from cnn_core.checkpoints import list_checkpoints


@st.cache_data(max_entries=8, show_spinner=False)
def _cards(stamp: tuple) -> list[dict]:
    return list_checkpoints()


def checkpoint_cards() -> list[dict]:
    """Every checkpoint's card (shipped ones first), read again whenever a file is added to or removed from a
    checkpoint folder."""
    stamp = tuple((str(folder), folder.stat().st_mtime_ns if folder.is_dir() else 0)
                  for folder in (settings.models_dir(), settings.runs_dir()))
    return _cards(stamp)


def card_path(card: dict) -> str:
    return str(card["path"])


def card_name(card: dict) -> str:
    return str(card.get("name") or Path(card.get("path", "?")).stem)


def card_model(card: dict) -> str:
    return str(card.get("model", "?"))


def card_dataset(card: dict) -> str:
    return str(card.get("dataset", "?"))


def card_dataset_title(card: dict) -> str:
    return str(card.get("dataset_title") or card_dataset(card))


def card_class_names(card: dict) -> list[str]:
    return [str(name) for name in card.get("class_names", [])]


def card_input_shape(card: dict) -> tuple[int, int]:
    """(channels, image side) of the images the model takes."""
    return int(card["channels"]), int(card["image_size"])


def card_normalization(card: dict) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel (mean, std) the images are normalized with."""
    norm = card["normalization"]
    return tuple(map(float, norm["mean"])), tuple(map(float, norm["std"]))


def card_tta_views(card: dict) -> list[str]:
    """The orientations its test metrics and predictions average (test-time augmentation)."""
    return [str(view) for view in card.get("test_time_augmentation") or []]


def card_command(card: dict) -> str:
    return str(card.get("command", ""))


def card_json(card: dict) -> dict:
    """The whole card as JSON-ready data, for `st.json`."""
    return json.loads(json.dumps(card, default=str))


def card_test_accuracy(card: dict) -> float | None:
    return reports.headline_metrics(card.get("metrics")).get("accuracy")


def _where(card: dict) -> str:
    return "shipped" if card.get("shipped") else "trained here"


def card_label(card: dict) -> str:
    """How pickers name a checkpoint: "mnist_fastnet · fastnet on MNIST handwritten digits (28×28) · shipped ·
    test accuracy 99.2 %"."""
    accuracy = card_test_accuracy(card)
    return (f"{card_name(card)} · {card_model(card)} on {card_dataset_title(card)} · {_where(card)}"
            + (f" · test accuracy {accuracy:.1%}" if accuracy is not None else ""))


def card_input_caption(card: dict) -> str:
    """What the model takes: image size, colour and normalization."""
    channels, size = card_input_shape(card)
    mean, std = card_normalization(card)
    return (f"Takes {size}×{size} {'gray' if channels == 1 else 'RGB'} images, normalized with mean "
            f"{_numbers(mean)} and std {_numbers(std)}")


def _numbers(values: tuple[float, ...]) -> str:
    return "(" + ", ".join(f"{value:.3f}" for value in values) + ")"


def card_rows(cards: list[dict]) -> list[dict[str, object]]:
    """The home page's table: one row per checkpoint with its headline test metrics."""
    rows = []
    for card in cards:
        test = reports.headline_metrics(card.get("metrics"))
        accuracy = test.pop("accuracy", None)
        rows.append({"name": card_name(card), "model": card_model(card), "data set": card_dataset(card),
                     "test accuracy": accuracy,
                     "other test metrics": ", ".join(f"{name} {value:.3f}" for name, value in test.items()) or "—",
                     "kind": _where(card), "file": card_path(card)})
    return rows
