"""The CLI's default recipe on small and imbalanced sets; prints a table (run by hand).

Builds MedMNIST-format subsets of PathMNIST (the only MedMNIST set on the development machine) under a
temporary CNN_DATA_DIR, saved under the names of MedMNIST sets whose class count and channels they match, so
the CLI reads them exactly as it reads those sets; the test split is every test image of the chosen classes.
Then runs `python -m cnn_core train --data <set> --json` with no other option (what a student runs), and
optionally with extra options to compare recipes side by side in the same run.

    CNN_DATA_DIR=../shared/data .venv/bin/python benchmarks/bench_small_sets.py
    CNN_DATA_DIR=../shared/data .venv/bin/python benchmarks/bench_small_sets.py --variant "--class-weights none"
    CNN_DATA_DIR=../shared/data .venv/bin/python benchmarks/bench_small_sets.py --like-medmnist --only Breast --side 224
    CNN_DATA_DIR=../shared/data .venv/bin/python benchmarks/bench_small_sets.py --data brain_mri --seeds 5 \\
        --variant "--image-size 128"

PathMNIST classes: 0 adipose, 1 background, 2 debris, 3 lymphocytes, 4 mucus, 5 smooth muscle, 6 normal colon
mucosa, 7 cancer-associated stroma, 8 colorectal adenocarcinoma epithelium (Kather et al. 2019).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Subset:
    """`counts[i]` training images of PathMNIST class `classes[i]` (validation: one seventh as many)."""

    saved_as: str  # a MedMNIST flag with the same task, class count and channels
    label: str
    classes: tuple[int, ...]
    counts: tuple[int, ...]
    gray: bool
    #: test images per class drawn from PathMNIST training images not drawn for training (same clinic, and the
    #: training split's imbalance, as in most MedMNIST sets); None: every test image of the classes (`--test-source`)
    test_counts: tuple[int, ...] | None = None


SUBSETS = (
    Subset("breastmnist", "binary 3:1, 546 train (mucosa vs tumour, gray)", (6, 8), (410, 136), True),
    Subset("pneumoniamnist", "binary 10:1, 546 train (debris vs lymphocytes, gray)", (2, 3), (496, 50), True),
    Subset("dermamnist", "7 classes 10:1, 500 train", (0, 2, 3, 4, 5, 6, 7), (150, 15, 100, 40, 80, 60, 55), False),
    Subset("bloodmnist", "8 classes 3:1, 2,000 train", (0, 1, 2, 3, 4, 5, 6, 7), (375, 125, 375, 125, 375, 125, 375, 125),
           False),
    Subset("pneumoniamnist", "binary 3:1, 4,708 train (mucosa vs tumour, gray)", (6, 8), (3531, 1177), True),
)
#: Subsets with the class counts of MedMNIST v2 sets (train and test splits of the 28-px npz files; Yang et al.,
#: Scientific Data 2023), their test split drawn in the set's own test counts (as imbalanced as its training split,
#: except PneumoniaMNIST's, 1.7:1 against 2.9:1), from the training clinic's images: there a classifier that favours
#: the small classes loses plain accuracy, the figure MedMNIST reports (`--like-medmnist`).
LIKE_MEDMNIST = (
    Subset("breastmnist", "like BreastMNIST: 2 classes, 147 / 399 (gray)", (8, 6), (147, 399), True, (42, 114)),
    Subset("pneumoniamnist", "like PneumoniaMNIST: 2 classes, 1,214 / 3,494 (gray)", (5, 7), (1214, 3494), True,
           (234, 390)),
    Subset("retinamnist", "like RetinaMNIST: 5 classes, 1,080 train", (5, 7, 2, 6, 4), (486, 128, 206, 194, 66), False,
           (174, 46, 92, 68, 20)),
    Subset("dermamnist", "like DermaMNIST: 7 classes, 7,007 train (58:1)", (2, 3, 4, 5, 6, 7, 8),
           (228, 359, 769, 80, 779, 4693, 99), False, (66, 103, 220, 23, 223, 1341, 29)),
    Subset("bloodmnist", "like BloodMNIST: 8 classes, 11,959 train", (0, 1, 2, 3, 4, 5, 6, 7),
           (852, 2181, 1085, 2026, 849, 993, 2330, 1643), False, (244, 624, 311, 579, 243, 284, 666, 470)),
)


def build(subset: Subset, source: dict, folder: Path, test_source: str = "test", seed: int = 0, side: int = 28
          ) -> dict[str, int]:
    """Write `folder/<saved_as>.npz` and return its split sizes. Validation: one seventh of the training count
    per class, from PathMNIST's validation split. Test: `subset.test_counts` unused training images per class when
    given; else every test image of the classes, from PathMNIST's test split (`test_source` "test": another clinic,
    CRC-VAL-HE-7K, a domain shift) or its unused validation images (`test_source` "val"). With `side` above 28 the
    images are enlarged (bilinear) and saved as `<saved_as>_<side>.npz`, the name of MedMNIST's larger files: they
    hold no more detail than the 28-px images, so they show what the recipe at that size costs, not what the detail
    of a real larger set is worth."""
    rng = np.random.default_rng(seed)
    orders: dict[tuple[str, int], np.ndarray] = {}  # one seeded permutation of rows per source split and class

    def order(origin: str, label: int) -> np.ndarray:
        if (origin, label) not in orders:
            orders[origin, label] = rng.permutation(np.flatnonzero(source[f"{origin}_labels"][:, 0] == label))
        return orders[origin, label]

    arrays, sizes = {}, {}
    for split in ("train", "val", "test"):
        chosen_images, chosen_labels = [], []
        for new_label in range(len(subset.classes)):
            images, where = _draw(subset, source, split, new_label, test_source, order)
            chosen_images.append(images[where])
            chosen_labels.append(np.full(len(where), new_label))
        x = np.concatenate(chosen_images)
        if subset.gray:
            x = (x.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)).round().astype(np.uint8)
        arrays[f"{split}_images"] = _enlarged(x, side) if side != 28 else x
        arrays[f"{split}_labels"] = np.concatenate(chosen_labels)[:, None].astype(np.uint8)
        sizes[split] = len(x)
    np.savez_compressed(folder / f"{_flag(subset, side)}.npz", **arrays)
    return sizes


def _flag(subset: Subset, side: int) -> str:
    return subset.saved_as if side == 28 else f"{subset.saved_as}_{side}"


def _enlarged(images: np.ndarray, side: int) -> np.ndarray:
    """uint8 [N, 28, 28(, 3)] images enlarged to `side` (bilinear, as torch resizes)."""
    import torch

    x = torch.from_numpy(images).float()
    x = x.unsqueeze(1) if x.ndim == 3 else x.permute(0, 3, 1, 2)
    x = torch.nn.functional.interpolate(x, size=(side, side), mode="bilinear", align_corners=False)
    x = x.round().clamp(0, 255).to(torch.uint8)
    return (x[:, 0] if images.ndim == 3 else x.permute(0, 2, 3, 1)).contiguous().numpy()


def _draw(subset: Subset, source: dict, split: str, index: int, test_source: str,
          order: Callable[[str, int], np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(source images, chosen rows) of class `subset.classes[index]` for `split`. Rows come from one seeded
    permutation per source split and class (`order`), so a test drawn from unused training or validation rows
    never overlaps the rows drawn for training or validation."""
    old_label, count = subset.classes[index], subset.counts[index]
    origin = {"train": "train", "val": "val"}.get(split) or ("train" if subset.test_counts else test_source)
    rows = order(origin, old_label)
    wanted = {"train": count, "val": max(2, round(count / 7))}
    if split in wanted:
        return source[f"{origin}_images"], rows[: wanted[split]]
    if subset.test_counts:
        return source[f"{origin}_images"], rows[count : count + subset.test_counts[index]]
    if origin == "val":
        return source[f"{origin}_images"], rows[wanted["val"] :]
    return source[f"{origin}_images"], rows


def train(flag: str, data_dir: Path, cache: Path, extra: list[str]) -> dict:
    env = {**os.environ, "CNN_DATA_DIR": str(data_dir), "CNN_CACHE_DIR": str(cache)}
    command = [sys.executable, "-m", "cnn_core", "train", "--data", flag, "--json", *extra]
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed: {result.stderr.strip()[-500:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variant", action="append", default=[], help="extra CLI options to compare (repeatable)")
    parser.add_argument("--no-default", action="store_true", help="train only the variants, not the default")
    parser.add_argument("--only", help="run only the subsets whose label contains this (e.g. 'binary', '546')")
    parser.add_argument("--seeds", type=int, default=1, help="train each variant with seeds 0..N-1 and print the "
                        "mean too (runs of 500 images differ by several points from seed to seed)")
    parser.add_argument("--first-seed", type=int, default=0, help="start the seeds here (add seeds to an earlier run)")
    parser.add_argument("--like-medmnist", action="store_true", help="the subsets with MedMNIST sets' class counts, "
                        "tested on images in their own test counts (LIKE_MEDMNIST)")
    parser.add_argument("--test-source", choices=("test", "val"), default="test",
                        help="test on PathMNIST's test split (another clinic) or on its unused validation images")
    parser.add_argument("--side", type=int, default=28, help="enlarge the images to this side and save them as the "
                        "set's larger MedMNIST size (64, 128, 224): what the default recipe does at that size")
    parser.add_argument("--data", help="compare the variants on this data set of CNN_DATA_DIR instead (e.g. the "
                        "brain_mri folder: an image folder's seed also draws its split)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-small-"))
    variants = ([] if args.no_default else [""]) + args.variant
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    print(f"{'set':<52} {'variant':<36} {'acc':>6} {'bal.acc':>7} {'AUC':>6} {'kept':>7} {'train s':>7}")
    if args.data:
        _compare(args.data, args.data, Path(os.environ.get("CNN_DATA_DIR", "data")), work / "cache", variants, seeds)
        return
    source_path = Path(os.environ.get("CNN_DATA_DIR", "data")) / "medmnist" / "pathmnist.npz"
    source = dict(np.load(source_path))
    data_dir = work / "data"
    data_dir.mkdir()
    for index, subset in enumerate(LIKE_MEDMNIST if args.like_medmnist else SUBSETS):
        if args.only and args.only not in subset.label:
            continue
        sizes = build(subset, source, data_dir, args.test_source, side=args.side)
        cache = work / f"cache-{index}"  # two subsets may be saved under one MedMNIST name
        _compare(f"{subset.label} {sizes['test']} test", _flag(subset, args.side), data_dir, cache, variants, seeds)


def _compare(name: str, flag: str, data_dir: Path, cache: Path, variants: list[str], seeds: range) -> None:
    """Train `flag` with each variant and seed; print a row per run and, for several seeds, their means."""
    for variant in variants:
        rows = []
        for seed in seeds:
            seeded = shlex.split(variant) + (["--seed", str(seed)] if len(seeds) > 1 or seed else [])
            report = train(flag, data_dir, cache, seeded)
            m = report["test_metrics"]
            rows.append((100 * m["accuracy"], None if m.get("balanced_accuracy") is None else
                         100 * m["balanced_accuracy"], m["auroc"]))
            label = (variant or "default") + (f" seed {seed}" if len(seeds) > 1 or seed else "")
            print(_row(name, label, *rows[-1], f"{report['best_epoch']}/{report['epochs_run']}",
                       report["train_seconds"]), flush=True)
        if len(seeds) > 1:
            means = [None if any(r[i] is None for r in rows) else sum(r[i] for r in rows) / len(rows) for i in range(3)]
            print(_row(name, f"{variant or 'default'} MEAN of {len(seeds)}", *means, "", ""), flush=True)


def _row(name: str, variant: str, acc: float, bal: float | None, auc: float | None, epochs, seconds) -> str:
    bal_text = "" if bal is None else f"{bal:.1f}"
    auc_text = "n/a" if auc is None else f"{auc:.3f}"
    seconds_text = f"{seconds:7.1f}" if isinstance(seconds, float) else f"{seconds:>7}"
    return f"{name:<52} {variant:<36} {acc:6.1f} {bal_text:>7} {auc_text:>6} {epochs:>7} {seconds_text}"


if __name__ == "__main__":
    main()
