"""One way to prepare an image for a checkpoint, chosen from its card, for the CLI, the Predict page and the API.

`prepare_input` is the single entry point: a digit checkpoint (MNIST family) gets a handwritten digit
prepared the MNIST way (LeCun et al.: find the ink, crop to it, scale into a 20×20 box keeping the aspect
ratio, centre by the centre of mass in 28×28, white on black); every other checkpoint gets its data set's
preparation (channels, shorter side to the card's size, centre crop: `data.images.fit_image`). `raw=True`
skips the digit preparation (`predict --raw`, the page's toggle). `prepare_file` reads a file or an
upload's bytes first, keeping transparency, so the page and the CLI hand the model identical tensors.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..data.augment import BatchPreprocessor
from ..data.images import FRAMES_KEY, ImageSource, fit_image, read_image, tensor_to_image
from ..errors import ConfigError, ImageError
from ..models.card import Card
from ..models.transfer import is_transfer_model
from .ink import digits_side_by_side, ink_map

#: MNIST's recipe (LeCun et al.): the digit's bounding box is scaled to fit 20x20, then placed in a
#: 28x28 frame so that its centre of mass sits in the middle.
MNIST_FRAME = 28
MNIST_BOX = 20

#: Ink at or above this strength (0-1) counts for the bounding box and the "is anything drawn" check;
#: fainter pixels (antialiasing) are dropped.
INK_THRESHOLD = 0.2
#: Fewer ink pixels than this is a stray click, not a digit.
MIN_INK_PIXELS = 4

EMPTY_CANVAS_MESSAGE = ("The canvas is empty: draw a digit first (hold the mouse button down and drag, or draw with "
                        "a finger).")


class EmptyDrawingError(ImageError):
    """The drawing (or image) holds no ink to classify."""


@dataclass(frozen=True)
class ModelInput:
    """One image ready for a checkpoint: what the model sees, and how it got there."""

    pixels: np.ndarray  # uint8 [C, S, S] at the card's size and channels, before normalization
    tensor: torch.Tensor  # float [1, C, S, S], normalized with the card's mean and std
    notes: tuple[str, ...] = ()  # what was done to the image on the way, for people
    unlike_training: str | None = None  # why the input looks unlike the training images (for the trust hint)

    @property
    def batch(self) -> torch.Tensor:
        """The pixels as a uint8 batch of one, [1, C, S, S]."""
        return torch.from_numpy(np.ascontiguousarray(self.pixels)).unsqueeze(0)


def preprocessor_for(card: Card, device: torch.device | str = "cpu") -> BatchPreprocessor:
    """The evaluation preprocessing a checkpoint was trained with."""
    norm = card.normalization
    return BatchPreprocessor(norm["mean"], norm["std"], torch.device(device))


def is_digit_model(card: Card) -> bool:
    """Whether a checkpoint was trained on MNIST-style digits (white ink on black, centred by mass)."""
    return card.is_digit_model


def has_ink(ink: np.ndarray) -> bool:
    """Whether an ink map holds at least a few clearly inked pixels."""
    return int(np.count_nonzero(ink >= INK_THRESHOLD)) >= MIN_INK_PIXELS


BLOB_MESSAGE = ("Only a dot or a filled blob was found, not the strokes of a digit: a digit is written as lines, "
                "several times longer than the pen is wide.")
#: A blob: about as wide as tall (`BLOB_ASPECT`) and convex (`BLOB_SOLIDITY` of its convex hull is ink). No MNIST
#: test digit is (their highest solidity is 0.88, among those at least 0.6 as wide as tall); a disc is 0.96.
BLOB_ASPECT = 0.6
BLOB_SOLIDITY = 0.92


def is_blob(mask: np.ndarray) -> bool:
    """Whether the ink (a bool mask cropped to it) is a dot or a filled blob rather than strokes: a tap on the
    canvas, enlarged to a digit's size, would otherwise be read as a confident 0."""
    from scipy.spatial import ConvexHull, QhullError

    height, width = mask.shape
    if min(height, width) < BLOB_ASPECT * max(height, width) or mask.sum() < 3:
        return False
    ys, xs = np.nonzero(mask)
    corners = np.concatenate([np.stack([ys + dy, xs + dx], axis=1) for dy in (0, 1) for dx in (0, 1)])
    try:
        hull = ConvexHull(corners).volume  # in 2-D, the area (each pixel as its four corners)
    except QhullError:
        return False
    return float(mask.sum()) >= BLOB_SOLIDITY * hull


def center_digit(ink: np.ndarray, frame: int = MNIST_FRAME, box: int = MNIST_BOX,
                 empty_message: str = EMPTY_CANVAS_MESSAGE) -> np.ndarray:
    """MNIST's preprocessing of an ink map: uint8 [frame, frame], white digit on black.

    Crop to the ink's bounding box, scale so the longer side is `box` pixels (keeping the aspect
    ratio, antialiased), then place it so that its centre of mass is the centre of the frame.
    """
    if box < 1 or box > frame:
        raise ConfigError(f"The digit box ({box} px) must fit in the frame ({frame} px).")
    if not has_ink(ink):
        raise EmptyDrawingError(empty_message)
    ink = np.where(ink >= INK_THRESHOLD / 2, ink, 0.0)
    rows = np.flatnonzero((ink >= INK_THRESHOLD).any(axis=1))
    cols = np.flatnonzero((ink >= INK_THRESHOLD).any(axis=0))
    crop = ink[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    if is_blob(crop >= INK_THRESHOLD):
        raise EmptyDrawingError(BLOB_MESSAGE)
    height, width = crop.shape
    scale = box / max(height, width)
    new_width, new_height = max(1, round(width * scale)), max(1, round(height * scale))
    small_image = Image.fromarray(np.rint(crop * 255).astype(np.uint8), mode="L")
    small_image = small_image.resize((new_width, new_height), Image.Resampling.LANCZOS)
    small = np.asarray(small_image, dtype=np.float32)
    total = float(small.sum())
    if total <= 0:  # a hairline that antialiasing erased: fall back to the geometric centre
        centre_y, centre_x = (new_height - 1) / 2, (new_width - 1) / 2
    else:
        centre_y = float((small.sum(axis=1) * np.arange(new_height)).sum() / total)
        centre_x = float((small.sum(axis=0) * np.arange(new_width)).sum() / total)
    middle = frame / 2  # MNIST: the centre of mass sits at (14, 14) in 0-based pixel indices
    top = int(np.clip(round(middle - centre_y), 0, frame - new_height))
    left = int(np.clip(round(middle - centre_x), 0, frame - new_width))
    out = np.zeros((frame, frame), dtype=np.uint8)
    out[top : top + new_height, left : left + new_width] = np.clip(np.rint(small), 0, 255).astype(np.uint8)
    return out


def normalize(pixels: np.ndarray, card: Card) -> torch.Tensor:
    """uint8 [C, S, S] to the float [1, C, S, S] the checkpoint was trained on (its card's mean/std)."""
    batch = torch.from_numpy(np.ascontiguousarray(pixels)).unsqueeze(0)
    return preprocessor_for(card)(batch, train=False).contiguous()


def _card_shape(card: Card) -> tuple[int, int]:
    channels, size = card.channels, card.image_size
    if channels not in (1, 3):
        raise ConfigError(f"The checkpoint expects {channels}-channel images; only 1 (gray) or 3 (RGB) work here.")
    return channels, size


def prepare_drawing(image: Image.Image | np.ndarray, card: Card,
                    empty_message: str = EMPTY_CANVAS_MESSAGE) -> ModelInput:
    """A drawing (or a photo of a handwritten digit) prepared the way MNIST's digits were.

    The ink is found by `ink.ink_map` (any colours, transparency, shadows, ruled paper, specks); the frame is
    the card's image size and the digit box keeps MNIST's 20/28 proportion; the result is normalized with
    the card's statistics. Raises `EmptyDrawingError` when there is no ink.
    """
    channels, size = _card_shape(card)
    box = max(1, round(size * MNIST_BOX / MNIST_FRAME))
    ink = ink_map(image)
    digit = center_digit(ink, frame=size, box=box, empty_message=empty_message)
    pixels = np.repeat(digit[None], channels, axis=0)
    notes = (f"cropped to the ink, scaled to fit {box}×{box} and centred by its centre of mass in "
             f"{size}×{size}, white on black like MNIST",) + _frames_note(image)
    several = digits_side_by_side(ink)
    unlike = (f"the picture seems to hold {several} digits side by side, and the model reads one digit: crop the "
              "picture to the digit you mean" if several > 1 else None)
    return ModelInput(pixels=pixels, tensor=normalize(pixels, card), notes=notes, unlike_training=unlike)


def prepare_image(image: Image.Image, card: Card) -> ModelInput:
    """An uploaded image prepared as the checkpoint's data set was: channels, size (centre crop), normalization."""
    channels, size = _card_shape(card)
    pixels = fit_image(image, size, channels).copy()
    notes = []
    if image.mode in ("RGB", "RGBA") and channels == 1:
        notes.append("colour turned into gray (the model takes 1 channel)")
    elif image.mode == "L" and channels == 3:
        notes.append("gray copied into 3 channels (the model takes RGB)")
    width, height = image.size
    if (width, height) != (size, size):
        crop = " and centre-cropped to a square" if width != height else ""
        notes.append(f"scaled from {width}×{height}{crop} to {size}×{size}")
    return ModelInput(pixels=pixels, tensor=normalize(pixels, card), notes=tuple(notes) + _frames_note(image))


def _frames_note(image: Image.Image) -> tuple[str, ...]:
    """Said when the file held several frames (an animated GIF, a multi-page TIFF): only its first was read."""
    frames = image.info.get(FRAMES_KEY, 1) if isinstance(image, Image.Image) else 1
    return (f"read from the first of its {frames} frames (the file is an animation or holds several pages)",) \
        if frames > 1 else ()


def prepare_pixels(pixels: np.ndarray, card: Card) -> ModelInput:
    """A data-set sample (uint8 [C, H, W]) for the checkpoint; converted only when its shape differs."""
    channels, size = _card_shape(card)
    array = np.asarray(pixels)
    if array.shape == (channels, size, size) and array.dtype == np.uint8:
        return ModelInput(pixels=array.copy(), tensor=normalize(array, card))
    converted = prepare_image(tensor_to_image(array), card)
    return ModelInput(pixels=converted.pixels, tensor=converted.tensor, notes=converted.notes)


def no_digit_message(name: str | None) -> str:
    what = f"'{Path(name).name}'" if name else "the image"
    return (f"No digit found in {what}: there is no ink on it (one flat colour, or blank paper). Give a picture "
            "of a digit, or turn off the handwritten-digit preparation (the Predict page's \"Treat it as a "
            "handwritten digit\" switch; `predict --raw` on the command line).")


#: The brightest median edge (0-255) of an image given to a digit model as it is (`raw`) that still looks like
#: MNIST's, whose digits sit on black: a photo of green leaves, read as gray, was "8, 100 %, confident".
MNIST_BORDER_LEVEL = 40


def prepare_input(image: Image.Image | np.ndarray, card: Card, *, raw: bool = False, name: str | None = None,
                  empty_message: str | None = None) -> ModelInput:
    """THE preparation of one image for a checkpoint, chosen from its card (see the module's docstring).

    A digit checkpoint prepares a handwritten digit the MNIST way unless `raw`; `EmptyDrawingError` (naming
    `name`) when the image holds no ink at all. Anything else is prepared like the card's data set.
    """
    if card.is_digit_model and not raw:
        return prepare_drawing(image, card, empty_message=empty_message or no_digit_message(name))
    if isinstance(image, np.ndarray):
        array = image if image.dtype == np.uint8 else np.clip(np.rint(image * 255), 0, 255).astype(np.uint8)
        image = Image.fromarray(array)
    model_input = prepare_image(image, card)
    reasons = [reason for reason in (_enlarged_much(image, card), _gray_for_colour(model_input.pixels, card),
                                     _not_on_black(model_input.pixels, card)) if reason]
    return replace(model_input, unlike_training="; ".join(reasons)) if reasons else model_input


#: An upload enlarged more than this many times to the model's input holds too little detail to judge (1×1 px
#: to a 288-px model was "no, > 99.9 %, confident").
MAX_ENLARGEMENT = 4
#: Training images whose channel means (the card's normalization) differ by more than this are colour images:
#: PathMNIST's R, G, B means are 0.74, 0.53, 0.71 (an MNIST digit given to it was "debris, 90 %, confident").
COLOUR_MEAN_SPREAD = 0.05


def _enlarged_much(image: Image.Image, card: Card) -> str | None:
    _, size = _card_shape(card)
    factor = size / max(1, *image.size)
    return (f"the picture is only {image.size[0]}×{image.size[1]} pixels, enlarged about {factor:.0f} times to the "
            f"model's {size}×{size}, so it holds too little detail to judge" if factor > MAX_ENLARGEMENT else None)


def _gray_for_colour(pixels: np.ndarray, card: Card) -> str | None:
    """A gray picture for a model trained on colour images (not a transfer model: its normalization is
    ImageNet's, whatever its data)."""
    means = [float(m) for m in card.normalization.get("mean", [])]
    if len(means) != 3 or is_transfer_model(card.model) or max(means) - min(means) <= COLOUR_MEAN_SPREAD:
        return None
    if not (np.array_equal(pixels[0], pixels[1]) and np.array_equal(pixels[1], pixels[2])):
        return None
    shown = ", ".join(f"{channel} {mean:.2f}" for channel, mean in zip("RGB", means))
    return (f"the picture is gray, and the model was trained on colour images (the mean of their red, green and "
            f"blue differ: {shown})")


def _not_on_black(pixels: np.ndarray, card: Card) -> str | None:
    """A picture given to a digit model as it is (`raw`) whose edges are not black as MNIST's are (its digits
    are centred in a 20-px box of a 28-px frame)."""
    if not card.is_digit_model:
        return None
    level = float(np.median(np.concatenate([pixels[0, 0], pixels[0, -1], pixels[0, :, 0], pixels[0, :, -1]])))
    if level <= MNIST_BORDER_LEVEL:
        return None
    looks = "dark on a light background" if level > 127 else "on a gray or textured background, not black"
    if pixels.max() == pixels.min():
        looks = "one flat colour, with nothing drawn on it"
    return (f"the image is {looks}, unlike the white-on-black digits the model was trained on (with the page's "
            "digit option on, or without --raw, it would be prepared the MNIST way)")


def read_input(source: ImageSource, name: str | None = None) -> Image.Image:
    """An image file or an upload's bytes, decoded safely (`data.images.read_image`), transparency kept."""
    return read_image(source, name=name, keep_alpha=True)


def prepare_file(source: ImageSource, card: Card, *, raw: bool = False, name: str | None = None) -> ModelInput:
    """Read and prepare one file (a path, or an upload's bytes with its `name`): what the CLI and page both call."""
    label = name if name is not None else (str(source) if isinstance(source, (str, Path)) else None)
    return prepare_input(read_input(source, name=name), card, raw=raw, name=label)
