"""Pick the fastest device there is (CUDA, then Apple MPS, then CPU) unless `CNN_DEVICE` says otherwise."""

from __future__ import annotations

import contextlib
import os

import torch

from .errors import ConfigError


def pick_device(override: str | None = None) -> torch.device:
    """The device to train and predict on; `override` or `CNN_DEVICE` ("cpu", "cuda", "cuda:1", "mps") wins."""
    wanted = override or os.environ.get("CNN_DEVICE") or ""
    wanted = wanted.strip().lower()
    if wanted and wanted != "auto":
        try:
            device = torch.device(wanted)
        except RuntimeError as exc:
            raise ConfigError(f"Unknown device {wanted!r}: use cpu, cuda, cuda:N or mps.") from exc
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ConfigError(f"Device {wanted!r} asked for, but PyTorch sees no CUDA GPU here.")
        if device.type == "mps" and not _mps_available():
            raise ConfigError("Device 'mps' asked for, but Apple's Metal backend is not available here.")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    if _mps_available():
        return torch.device("mps")
    return torch.device("cpu")


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend and backend.is_available())


def describe_device(device: torch.device | None = None) -> str:
    """A short label for people: "CPU (2 threads)", "GPU: NVIDIA H100 80GB HBM3", "Apple GPU (MPS)"."""
    device = device or pick_device()
    if device.type == "cuda":
        return f"GPU: {torch.cuda.get_device_name(device)}"
    if device.type == "mps":
        return "Apple GPU (MPS)"
    threads = torch.get_num_threads()
    return f"CPU ({threads} thread{'s' if threads != 1 else ''})"


def autocast(device: torch.device) -> contextlib.AbstractContextManager:
    """Mixed precision on CUDA (bfloat16 where supported, else float16); a no-op elsewhere."""
    if device.type == "cuda":
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.autocast("cuda", dtype=dtype)
    return contextlib.nullcontext()
