"""How long the Dataset Gallery takes to compute a data set's gallery: first view, later views, side by side.

Targets: the first view of a data set on an empty cache <= 15 s (for PathMNIST that is decompressing the
LZMA-compressed npz into CNN_CACHE_DIR, two splits at a time, and the channel statistics from the tensors),
and every later view <= 2 s. "First" runs against a fresh, empty cache folder (a temporary folder inside
CNN_CACHE_DIR, removed afterwards). "Later" starts each repeat with empty in-process caches, so it measures
what a fresh app process does: read the cached tensors from disk, count classes in every split, channel
statistics, per-class averages, one sample grid and the thumbnails. "In memory" is the same with the
tensors already loaded (the next data set switch back).

    CNN_DATA_DIR=/work/shared/data CNN_CACHE_DIR=/tmp/cnn-bench-cache python benchmarks/bench_gallery.py [names]
"""

from __future__ import annotations

import os
import shutil
import statistics
import sys
import tempfile
import time

from cnn_core import data, gallery, settings

FIRST_TARGET_S = 15.0
TARGET_S = 2.0
REPEATS = 3
PER_CLASS = 8


def build(name: str, seed: int) -> tuple[gallery.DatasetSummary, gallery.SampleGrid]:
    """Exactly what the page computes for a data set: summary, sample grid, thumbnails, grid PNG."""
    info = data.get_dataset_info(name)
    splits = data.load_splits(name)  # two at a time, as the page's progress bar does
    summary = gallery.summarize(splits, mean_std=data.channel_stats(name))
    grid = gallery.sample_grid(splits["train"], "train", PER_CLASS, seed)
    scale = gallery.display_scale(info.image_size)
    for images in grid.images:
        for image in images:
            gallery.to_display(image, scale)
    for mean_image in summary.class_means:
        gallery.to_display(mean_image, scale)
    gallery.png_bytes(gallery.grid_picture(grid, scale=scale))  # the "Save grid as PNG" download
    return summary, grid


def measure(name: str) -> dict[str, float]:
    status = data.dataset_status(name)
    if not status.available:
        raise SystemExit(f"{name} is not available: {status.how_to_get}")
    shared_cache = os.environ.get("CNN_CACHE_DIR")
    empty_cache = tempfile.mkdtemp(prefix="bench-gallery-", dir=settings.cache_dir())
    os.environ["CNN_CACHE_DIR"] = empty_cache
    try:
        data.clear_caches()
        started = time.perf_counter()
        build(name, seed=0)  # an empty cache: decompresses and writes the tensors and statistics
        first = time.perf_counter() - started
        from_disk, in_memory = [], []
        for repeat in range(REPEATS):
            data.clear_caches()
            started = time.perf_counter()
            build(name, seed=repeat)
            from_disk.append(time.perf_counter() - started)
            started = time.perf_counter()
            build(name, seed=repeat + 100)
            in_memory.append(time.perf_counter() - started)
    finally:
        if shared_cache is None:
            os.environ.pop("CNN_CACHE_DIR", None)
        else:
            os.environ["CNN_CACHE_DIR"] = shared_cache
        data.clear_caches()
        shutil.rmtree(empty_cache, ignore_errors=True)
    return {"first": first, "disk": statistics.median(from_disk), "memory": statistics.median(in_memory)}


def main(names: list[str]) -> int:
    print(f"{'data set':<12} {'first view':>11} {'later view':>11} {'in memory':>10}   "
          f"targets: first <= {FIRST_TARGET_S:g} s (empty cache), later <= {TARGET_S:g} s")
    passed = True
    for name in names:
        result = measure(name)
        ok = result["first"] <= FIRST_TARGET_S and result["disk"] <= TARGET_S
        passed &= ok
        print(f"{name:<12} {result['first']:>10.2f}s {result['disk']:>10.2f}s {result['memory']:>9.2f}s   "
              + ("ok" if ok else "SLOW"))
    print("PASS" if passed else "FAIL")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:] or ["mnist", "pathmnist"]))
