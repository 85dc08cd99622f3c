"""Pickers several pages share: a data set, a registry model and its options, a checkpoint."""

from __future__ import annotations

from collections.abc import Sequence

import streamlit as st

from cnn_core import data, models
from cnn_core.models.checkpoints import CheckpointEntry
from cnn_core.training import default_model

from .cards import entry_label
from .widgets import show_error

FAMILY_WORDS = {"mnist": "digits", "medmnist": "MedMNIST", "folder": "image folder"}

MODEL_ARG_HELP = {
    "mode": "frozen: only the new head trains, on ImageNet features computed once (fast on a CPU); finetune: the "
            "backbone's last blocks train too, at a lower learning rate; full: everything trains (slow on a CPU).",
    "finetune_blocks": "How many of the backbone's last blocks train in finetune mode.",
}


# ------------------------------------------------------------------------------------------ data sets
def dataset_label(info: data.DatasetInfo, *, present: bool = True) -> str:
    """"PathMNIST (28×28) · MedMNIST · 107,180 images"; "… (not here: shape only)" for a missing one."""
    count = sum((info.n_samples or {}).values())
    label = (f"{info.title} · {FAMILY_WORDS.get(info.family, info.family)}"
             + (f" · {count:,} images" if count else ""))
    return label if present else f"{label}  (not here: shape only)"


def dataset_picker(infos: Sequence[data.DatasetInfo], *, key: str, label: str = "Data set",
                   present: set[str] | None = None, help: str | None = None) -> data.DatasetInfo:
    """A select box over `infos` (at least one); names outside `present` (when given) are marked missing."""
    by_name = {info.name: info for info in infos}
    return by_name[st.selectbox(
        label, list(by_name), key=key, help=help,
        format_func=lambda name: dataset_label(by_name[name], present=present is None or name in present))]


# ------------------------------------------------------------------------------------------ models
def model_choices(info: data.DatasetInfo, *, folder_sizes: Sequence[int] = ()) -> dict[str, models.ModelSpec]:
    """Registry models that take this data set's images; image folders can be resized to any of
    `folder_sizes` first."""
    largest = max(info.image_size, *folder_sizes) if info.family == "folder" and folder_sizes else info.image_size
    return {spec.name: spec for spec in models.list_models() if largest >= spec.min_image_size}


def model_title(spec: models.ModelSpec) -> str:
    return spec.title + ("  (needs downloaded weights)" if spec.defaults.get("offline") is False else "")


def model_picker(info: data.DatasetInfo, *, key: str, folder_sizes: Sequence[int] = ()) -> models.ModelSpec | None:
    """A registry model for `info` (the data set's default preselected), with its description; None, with a
    message, when no model takes its images."""
    choices = model_choices(info, folder_sizes=folder_sizes)
    if not choices:
        show_error(f"No model in the registry takes {info.image_size}×{info.image_size} images.")
        return None
    default = default_model(info)
    names = list(choices)
    spec = choices[st.selectbox("Model", names, index=names.index(default) if default in names else 0,
                                format_func=lambda name: model_title(choices[name]), key=key,
                                help="Every network in the model registry that fits this data set.")]
    st.caption(f"{spec.description} *Source: {spec.source}.*")
    return spec


def model_arg_picker(spec: models.ModelSpec, *, key_prefix: str) -> dict:
    """The options a registry entry offers (`model_arg_choices`, e.g. a transfer model's mode), starting
    from its defaults; models that join the registry bring their own."""
    model_args = dict(spec.defaults.get("model_args") or {})
    arg_choices = dict(spec.defaults.get("model_arg_choices") or {})
    if not arg_choices and getattr(spec, "modes", ()):
        arg_choices = {"mode": list(spec.modes)}
    if not arg_choices:
        return model_args
    cols = st.columns(max(2, len(arg_choices)))
    for col, (arg, options) in zip(cols, arg_choices.items()):
        if arg == "finetune_blocks" and model_args.get("mode") != "finetune":
            continue  # only meaningful when fine-tuning
        options = list(options)
        current = model_args.get(arg, options[0])
        model_args[arg] = col.selectbox(arg.replace("_", " ").capitalize(), options,
                                        index=options.index(current) if current in options else 0,
                                        key=f"{key_prefix}_{arg}_{spec.name}", help=MODEL_ARG_HELP.get(arg))
    return model_args


# ------------------------------------------------------------------------------------------ checkpoints
def checkpoint_picker(entries: Sequence[CheckpointEntry], *, key: str, label: str = "Checkpoint",
                      help: str | None = None) -> CheckpointEntry | None:
    """A select box over checkpoints (by file); a chosen file that is gone is forgotten; None when there are
    none."""
    by_path = {str(entry.path): entry for entry in entries}
    if not by_path:
        return None
    if key in st.session_state and st.session_state[key] not in by_path:
        del st.session_state[key]  # deleted since, or not offered for this input
    chosen = st.selectbox(label, list(by_path), format_func=lambda path: entry_label(by_path[path]), key=key,
                          help=help)
    return by_path[chosen]
