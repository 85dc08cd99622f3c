"""Checkpoints as the pages show them: this browser's list (the shipped ones and its own, cached until a
checkpoint folder changes), picker labels, the home page's table and the caption that says what a model takes.
Cards are typed (`cnn_core.models.card.Card`): pages read their fields directly."""

from __future__ import annotations

import streamlit as st

from cnn_core import data, reports, runs, settings
from cnn_core.inference.metrics import METRIC_LABELS
from cnn_core.models.card import Card
from cnn_core.models.checkpoints import CheckpointEntry

from .session import browser_id


@st.cache_data(max_entries=256, show_spinner=False)
def _entries(owner: str, stamp: tuple) -> list[CheckpointEntry]:
    return runs.checkpoints_for(owner)


def checkpoint_entries() -> list[CheckpointEntry]:
    """The shipped checkpoints, then the ones this browser trained (nobody else's: on a shared server a student
    never sees another's), read again whenever a shipped file or this browser's recorded checkpoints change."""
    owner = browser_id()
    shipped = settings.models_dir()
    stamp = (shipped.stat().st_mtime_ns if shipped.is_dir() else 0, runs.owned_checkpoint_files(owner))
    return _entries(owner, stamp)


def dataset_title(card: Card) -> str:
    return card.dataset_title or card.dataset


entry_label = runs.checkpoint_label  # the engine's one way of naming a checkpoint


def input_caption(card: Card) -> str:
    """What the model takes: image size, colour and normalization."""
    norm = card.normalization
    return (f"Takes {card.image_size}×{card.image_size} {'gray' if card.channels == 1 else 'RGB'} images, "
            f"normalized with mean {_numbers(norm['mean'])} and std {_numbers(norm['std'])}")


def _numbers(values) -> str:
    return "(" + ", ".join(f"{float(value):.3f}" for value in values) + ")"


def entry_rows(entries: list[CheckpointEntry]) -> list[dict[str, object]]:
    """The home page's table: one row per checkpoint with its headline test metrics."""
    rows = []
    for entry in entries:
        test = reports.headline_metrics(entry.card.metrics)
        accuracy = test.pop("accuracy", None)
        rows.append({"name": entry.title, "model": entry.card.model, "data set": data.shown_name(entry.card.dataset),
                     "test accuracy": None if accuracy is None else 100 * accuracy,  # as the pickers round it
                     "other test metrics": ", ".join(f"{METRIC_LABELS.get(name, name)} {reports.metric_text(name, value)}"
                                                     for name, value in test.items()) or "—",
                     "kind": "shipped" if entry.shipped else "yours" + (" (stopped)" if entry.card.stopped_early else ""),
                     "file": entry.path.name})
    return rows
