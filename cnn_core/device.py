"""Pick the fastest device there is (CUDA, then Apple MPS, then CPU) unless `CNN_DEVICE` says otherwise."""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

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


class CpuThreads:
    """Sizes PyTorch's CPU thread pool to the cores other processes leave free, as training goes.

    With every core busy elsewhere (a browser drawing, a second run, a class of students), a pool as large as
    the machine makes each parallel operation wait for its slowest thread: measured on 2 cores with one busy
    process beside it, the default MNIST run took 21.5 s with 2 threads and 8.2 s with 1 (7.2 s with 2 on an
    idle machine). `adjust` looks at /proc/stat (Linux; elsewhere it keeps the pool as is) at most every
    `every_s` seconds and sets the pool to the cores not used by others, between 1 and the starting size.
    `CNN_ADAPT_THREADS=0` turns it off (e.g. for bit-identical reruns).
    """

    def __init__(self, every_s: float = 1.0) -> None:
        self.max_threads = torch.get_num_threads()
        self.every_s = every_s
        self.enabled = os.environ.get("CNN_ADAPT_THREADS", "1") != "0" and Path("/proc/stat").is_file()
        self._last = self._sample() if self.enabled else None

    def adjust(self) -> int:
        """Resize the pool if `every_s` has passed since the last look; returns the pool's size."""
        if not self.enabled or self.max_threads < 2 or self._last is None:
            return torch.get_num_threads()
        if time.monotonic() - self._last[0] < self.every_s:  # cheap: most steps stop here
            return torch.get_num_threads()
        now = self._sample()
        if now is None:
            return torch.get_num_threads()
        wall = now[0] - self._last[0]
        busy_cores = (now[1] - self._last[1]) / wall  # every process, this one included
        own_cores = (now[2] - self._last[2]) / wall
        self._last = now
        others = max(0.0, busy_cores - own_cores)
        threads = max(1, min(self.max_threads, round((os.cpu_count() or 1) - others)))
        if threads != torch.get_num_threads():
            torch.set_num_threads(threads)
        return threads

    @staticmethod
    def _sample() -> tuple[float, float, float] | None:
        """(monotonic seconds, busy CPU-seconds of the machine, CPU-seconds of this process)."""
        try:
            fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
            ticks = [int(v) for v in fields]
        except (OSError, ValueError):
            return None
        idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)  # idle + iowait
        hz = os.sysconf("SC_CLK_TCK")
        times = os.times()
        return time.monotonic(), (sum(ticks[:8]) - idle) / hz, times.user + times.system


#: cgroup files that bound a container's memory: (limit, usage, statistics, the statistic of reclaimable page
#: cache) for cgroup v2, then v1.
CGROUP_MEMORY_FILES = (("memory.max", "memory.current", "memory.stat", "inactive_file"),
                       ("memory/memory.limit_in_bytes", "memory/memory.usage_in_bytes", "memory/memory.stat",
                        "total_inactive_file"))


def available_memory_bytes(cgroup_root: Path = Path("/sys/fs/cgroup")) -> int | None:
    """Bytes of memory this process can still take without swapping: psutil's available memory (free plus
    reclaimable caches, on Linux, macOS and Windows), lowered to the room left under a container's cgroup limit
    when there is one (Docker's `--memory`, a hosting service's plan). The cgroup's usage counts the page cache
    of files it read, which the kernel frees only near the limit; its inactive part is counted as free, as
    `docker stats` does. None when neither can be read."""
    try:
        import psutil

        room = int(psutil.virtual_memory().available)
    except (ImportError, OSError, RuntimeError):
        room = None
    for limit_file, usage_file, stat_file, cache_key in CGROUP_MEMORY_FILES:
        try:
            limit = (cgroup_root / limit_file).read_text().strip()
            usage = int((cgroup_root / usage_file).read_text().strip())
        except (OSError, ValueError):
            continue
        if limit.isdigit() and int(limit) < 1 << 60:  # "max" (v2) or a huge number (v1): no limit
            left = max(0, int(limit) - usage + _cgroup_statistic(cgroup_root / stat_file, cache_key))
            room = left if room is None else min(room, left)
        break
    return room


def _cgroup_statistic(path: Path, key: str) -> int:
    """One "key value" line of a cgroup's memory.stat, in bytes; 0 when it cannot be read."""
    try:
        for line in path.read_text().splitlines():
            name, _, value = line.partition(" ")
            if name == key:
                return int(value)
    except (OSError, ValueError):
        pass
    return 0
