"""Evaluation: class probabilities for uint8 images, with test-time augmentation, and their loss/accuracy.

Training validates with these functions every epoch, and prediction and the test pass use the same ones,
so the numbers a card reports are the numbers `evaluate` and `predict` reproduce.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..data.augment import orient
from ..device import autocast


#: Pixels (per channel) of one inference batch: 512 images up to 64 x 64, fewer of larger ones (25 at 288 x 288),
#: so that memory stays flat. 506 brain-MRI scans at 288 px in one batch of a transfer model took 11.6 GB.
INFERENCE_BATCH_PIXELS = 512 * 64 * 64


def inference_batch_size(images: torch.Tensor, largest: int = 512) -> int:
    """Images per inference batch for uint8 images [N, C, H, W] (`INFERENCE_BATCH_PIXELS`), 1 to `largest`."""
    return max(1, min(largest, INFERENCE_BATCH_PIXELS // max(1, images.shape[-1] * images.shape[-2])))


@torch.no_grad()
def predict_probs(
    model: nn.Module,
    images: torch.Tensor,
    preprocess: Callable[[torch.Tensor], torch.Tensor],
    device: torch.device,
    batch_size: int | None = None,
    views: tuple[str, ...] = ("identity",),
) -> torch.Tensor:
    """Class probabilities [N, C] float32 (on the CPU) for uint8 images [N, C, H, W], in eval mode, averaged
    over `views` (orientations, `data.augment.ORIENTATIONS`: test-time augmentation), in batches of
    `batch_size` images (None: `inference_batch_size`)."""
    model.eval()
    batch_size = batch_size or inference_batch_size(images)
    out = []
    for start in range(0, images.shape[0], batch_size):
        x = preprocess(images[start : start + batch_size].to(device))
        probs = 0
        for view in views:
            seen = x if view == "identity" else orient(x, view).contiguous(memory_format=torch.channels_last)
            with autocast(device):
                logits = model(seen)
            probs = probs + torch.softmax(logits.float(), dim=1)
        out.append((probs / len(views)).cpu())
    if not out:
        return torch.empty(0, 0)
    return torch.cat(out)


def loss_and_accuracy(probs: torch.Tensor, labels: torch.Tensor) -> tuple[float, float]:
    """(mean negative log-likelihood, accuracy in [0, 1]) of probabilities [N, C] against labels [N];
    (nan, nan) for no images."""
    if probs.numel() == 0:
        return float("nan"), float("nan")
    labels = labels.cpu()
    loss = F.nll_loss(torch.log(probs.clamp_min(1e-12)), labels).item()
    accuracy = (probs.argmax(1) == labels).float().mean().item()
    return loss, accuracy

