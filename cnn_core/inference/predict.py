"""Inference with a checkpoint: its card drives preprocessing (size, channels, normalization), the
test-time augmentation views and the class names."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image

from ..data.augment import ORIENTATIONS
from ..data.images import fit_image
from ..errors import CnnError
from ..models.card import Card
from ..models.checkpoints import LoadedCheckpoint, load_checkpoint
from .evaluate import predict_probs
from .prepare import ModelInput, prepare_file, prepare_input, preprocessor_for  # noqa: F401 (preprocessor_for: API)


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


def predict_inputs(loaded: LoadedCheckpoint, inputs: list[ModelInput]) -> list[Prediction]:
    """Predictions for prepared inputs (`prepare.prepare_input`), in one batch."""
    if not inputs:
        return []
    batch = torch.cat([model_input.batch for model_input in inputs])
    return predictions_from(predict_tensor(loaded, batch), loaded.card.class_names)


def predict_images(loaded: LoadedCheckpoint, images: list[Image.Image], raw: bool = False) -> list[Prediction]:
    """Predictions for PIL images of any size and mode, prepared as the card says (`prepare.prepare_input`:
    a digit checkpoint's images the MNIST way unless `raw`)."""
    return predict_inputs(loaded, [prepare_input(image, loaded.card, raw=raw) for image in images])


@dataclass
class FileResult:
    """One file through `prepare_files`: its prepared input, or why it could not be prepared."""

    path: Path
    model_input: ModelInput | None = None
    error: CnnError | None = None


def prepare_files(loaded: LoadedCheckpoint, paths: list[str | Path], raw: bool = False) -> list[FileResult]:
    """Read and prepare image files the way the Predict page prepares uploads (`prepare.prepare_file`);
    a file that cannot be read, or holds no digit, gets its error instead of stopping the others."""
    results = []
    for path in paths:
        try:
            results.append(FileResult(Path(path), prepare_file(Path(path), loaded.card, raw=raw)))
        except CnnError as exc:
            results.append(FileResult(Path(path), error=exc))
    return results


def predict_files(checkpoint: str | Path, paths: list[str | Path], raw: bool = False) -> list[Prediction]:
    """Load a checkpoint and predict image files (read safely, prepared as the card says); raises the first
    file's error, if any."""
    loaded = load_checkpoint(checkpoint)
    results = prepare_files(loaded, paths, raw=raw)
    for result in results:
        if result.error is not None:
            raise result.error
    return predict_inputs(loaded, [result.model_input for result in results])
