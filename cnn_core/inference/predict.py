"""Inference with a checkpoint: its card drives preprocessing (size, channels, normalization), the
test-time augmentation views and the class names."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image

from ..data.augment import ORIENTATIONS, BatchPreprocessor
from ..data.images import fit_image, read_image
from ..models.card import Card
from ..models.checkpoints import LoadedCheckpoint, load_checkpoint
from .evaluate import predict_probs


@dataclass
class Prediction:
    """Top class and every class's probability for one image."""

    label: str
    index: int
    probability: float
    probabilities: dict[str, float]


def image_to_tensor(image: Image.Image, channels: int, size: int) -> torch.Tensor:
    """A PIL image as uint8 [1, C, size, size], prepared exactly as folder data sets are (`fit_image`)."""
    return torch.from_numpy(fit_image(image, size, channels).copy()).unsqueeze(0)


def preprocessor_for(card: Card, device: torch.device | str = "cpu") -> BatchPreprocessor:
    """The evaluation preprocessing a checkpoint was trained with."""
    norm = card.normalization
    return BatchPreprocessor(norm["mean"], norm["std"], torch.device(device))


def card_views(card: Card) -> tuple[str, ...]:
    """The orientations the checkpoint's test metrics averaged over (test-time augmentation), so predictions
    match them; ("identity",) for cards without any (older cards, digits, cached transfer features)."""
    return tuple(view for view in card.test_time_augmentation if view in ORIENTATIONS) or ("identity",)


def predict_tensor(loaded: LoadedCheckpoint, images: torch.Tensor) -> torch.Tensor:
    """Probabilities [N, C] float32 for uint8 images [N, C, H, W] already at the card's size."""
    device = next(loaded.model.parameters()).device
    pre = preprocessor_for(loaded.card, device)
    return predict_probs(loaded.model, images, lambda x: pre(x, train=False), device, views=card_views(loaded.card))


def predictions_from(probs: torch.Tensor, class_names: tuple[str, ...]) -> list[Prediction]:
    """One `Prediction` per row of probabilities [N, C]."""
    results = []
    for row in probs:
        index = int(row.argmax())
        results.append(
            Prediction(
                label=class_names[index],
                index=index,
                probability=float(row[index]),
                probabilities={name: float(p) for name, p in zip(class_names, row)},
            )
        )
    return results


def predict_images(loaded: LoadedCheckpoint, images: list[Image.Image]) -> list[Prediction]:
    """Predictions for PIL images of any size and mode."""
    card = loaded.card
    batch = torch.cat([image_to_tensor(im, card.channels, card.image_size) for im in images])
    return predictions_from(predict_tensor(loaded, batch), card.class_names)


def predict_files(checkpoint: str | Path, paths: list[str | Path]) -> list[Prediction]:
    """Load a checkpoint and predict image files (read safely through `data.images.read_image`)."""
    loaded = load_checkpoint(checkpoint)
    return predict_images(loaded, [read_image(Path(p)) for p in paths])
