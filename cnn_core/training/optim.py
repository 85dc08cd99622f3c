"""Optimizers and learning-rate schedules by name, with the options torchvision's reference script exposes."""

from __future__ import annotations

import torch


def make_optimizer(name: str, params, lr: float, weight_decay: float, momentum: float) -> torch.optim.Optimizer:
    """The optimizer by name, with the options torchvision's reference script exposes."""
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, nesterov=momentum > 0, weight_decay=weight_decay)
    return torch.optim.RMSprop(params, lr=lr, momentum=momentum, weight_decay=weight_decay)


def make_scheduler(name: str, optimizer: torch.optim.Optimizer, lr: float, total_steps: int):
    """A per-step learning-rate schedule, or None."""
    if name == "onecycle":
        if total_steps <= 4:  # too short to warm up and anneal (OneCycleLR divides by zero at 4 steps): constant rate
            return None
        max_lrs = [group["lr"] for group in optimizer.param_groups] if len(optimizer.param_groups) > 1 else lr
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=max_lrs, total_steps=total_steps, pct_start=0.25)
    if name == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps)
    return None
