"""What a model is to the rest of the engine: a registry entry (`ModelSpec`) and the base class of every
trainable network (`Classifier`), whose methods the trainer and the checkpoint code call."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn


@dataclass(frozen=True)
class ModelSpec:
    """One registry entry: how to build it and what to tell a student about it.

    `defaults` holds the model's training defaults (epochs, batch_size, lr, optimizer, schedule), and for
    transfer models `model_args`, `model_arg_choices`, `folder_image_size`, `offline` and `monitor` hints.
    """

    name: str
    title: str
    description: str
    builder: Callable[..., "Classifier"]
    source: str
    min_image_size: int = 8
    defaults: dict = field(default_factory=dict)
    modes: tuple[str, ...] = ()  # transfer models: the `mode` model_arg's choices, default first


class Classifier(nn.Module):
    """Base class of every network in the registry: images [N, C, H, W] (float, normalized) to logits [N, K].

    Subclasses override what differs from a plain network trained end to end: a transfer model normalizes
    with ImageNet's statistics, trains its backbone at a lower learning rate, stores only the weights that
    training changed and records its backbone in the card.
    """

    #: The normalization the model needs ({"mean": [...], "std": [...]} in [0, 1]); None: the data set's own.
    input_normalization: dict | None = None
    #: Whether `checkpoint_state_dict` leaves weights out (they come from elsewhere when loading).
    stores_partial_weights: bool = False

    def param_groups(self, lr: float) -> list[dict]:
        """Optimizer parameter groups; the last group is the one whose learning rate is reported."""
        return [{"params": [p for p in self.parameters() if p.requires_grad], "lr": lr}]

    def checkpoint_state_dict(self) -> dict[str, torch.Tensor]:
        """The weights a checkpoint stores."""
        return self.state_dict()

    def card_info(self) -> dict:
        """Entries the checkpoint card records beyond the trainer's (e.g. resolved model_args, a backbone)."""
        return {}
