"""Transfer learning on the brain MRI folder, measured over repeated stratified splits instead of one.

The reference study trained ResNet-18 on the 253 images (202 / 25 / 26) and reported, on its 26 test images,
accuracy 92.31 %, sensitivity 90.0 %, specificity 93.75 %, ROC-AUC 1.0 and kappa 0.8375. Twenty-six
images is noise (one image is 3.8 points), so this script trains EfficientNet-Lite0 on several stratified
80/10/10 splits of the folder (each seed gives a different split, the seed's proportions; seed 0 is the
default `brain_mri` split) and prints the mean and standard deviation of the same five metrics per mode,
with timings. Target: mean accuracy >= 92.3 %.

Every run goes through the project's trainer (`cnn_core.training.train`) exactly as the CLI's
`train --data brain_mri --model transfer:efficientnet_lite0 --mode ... --monitor last` does. Frozen
activations are cached per image in CNN_CACHE_DIR, so the first split pays for the backbone's forward
passes and later splits reuse them: "wall" includes that feature extraction, "train" is the trainer's own
training time.

The folder holds 22 groups of pixel-identical images (47 files, 25 of them copies), always within one
class, so a random split puts some test images' twins in the training set. The last column is the
accuracy on the test images that have no identical copy in their split's training set.

    CNN_DATA_DIR=../shared/data python benchmarks/bench_brain_mri.py [--seeds 0 1 2 ...] [--modes frozen finetune]
        [--threads 1]

On a CPU shared with other work, `--threads 1` (or OMP_WAIT_POLICY=PASSIVE) avoids threads spinning while
they wait for each other, which made small batches ten times slower on our 2-core machine.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path

import torch

from cnn_core import data
from cnn_core.device import describe_device, pick_device
from cnn_core.models.transfer import image_digests
from cnn_core.settings import data_dir
from cnn_core.training import TrainConfig, run_training

TARGET_ACCURACY = 0.923
METRICS = ("accuracy", "sensitivity", "specificity", "auroc", "kappa")
REFERENCE_RESNET18 = {"accuracy": 0.9231, "sensitivity": 0.90, "specificity": 0.9375, "auroc": 1.0, "kappa": 0.8375}

#: The settings compared: model_args and training options per mode (the shipped checkpoint uses the best).
MODES = {
    # Features at 288 px (the files read at 288, not 224) and a head trained longer: +1.6 points over 224 px and
    # 30 epochs at lr 0.003 on 60 splits (90.8 -> 92.5 %); the head trains in about a second on a CPU.
    "frozen": {"model_args": {"mode": "frozen", "input_size": 288}, "epochs": 60, "lr": 0.01, "batch_size": 32},
    "finetune": {"model_args": {"mode": "finetune", "finetune_blocks": 2}, "epochs": 15, "lr": 0.003, "batch_size": 32},
}


def run_split(folder: Path, seed: int, mode: str, options: dict) -> dict:
    """Train on the split of `seed` and return its test metrics and timings."""
    name = f"brain_mri_split{seed}"
    data.register_image_folder(name, folder, seed=seed)
    config = TrainConfig(
        dataset=name,
        model="transfer:efficientnet_lite0",
        model_args=dict(options["model_args"]),
        epochs=options["epochs"],
        lr=options["lr"],
        batch_size=options["batch_size"],
        seed=seed,
        monitor="last",  # 25 validation images: picking the epoch by their accuracy picks noise
    )
    started = time.perf_counter()
    end = run_training(config)
    wall = time.perf_counter() - started
    metrics = end.test_metrics or {}
    size = end.card.image_size
    seen = set(image_digests(data.load_split(name, "train", image_size=size).images))
    test_digests = image_digests(data.load_split(name, "test", image_size=size).images[end.test_indices])
    unseen = torch.tensor([d not in seen for d in test_digests])
    correct = end.test_probs.argmax(1) == end.test_labels
    return {
        "seed": seed,
        "mode": mode,
        **{k: metrics.get(k) for k in METRICS},
        "n_test": metrics.get("n"),
        "accuracy_unseen": correct[unseen].float().mean().item() if unseen.any() else None,
        "n_unseen": int(unseen.sum()),
        "train_s": end.seconds,
        "wall_s": wall,
        "best_epoch": end.best_epoch,
    }


def mean_std(values: list[float]) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "n/a"
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{100 * statistics.fmean(values):.1f} ± {100 * std:.1f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=list(range(30)),
                        help="split seeds (default 0-29: with 26 test images a split, 30 splits put the standard "
                        "error of the mean near 1 point)")
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=list(MODES), help="modes to compare")
    parser.add_argument("--threads", type=int, help="CPU threads for torch (default: torch's choice)")
    parser.add_argument("--json", help="also write every run's numbers to this JSON file")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    folder = data_dir() / "brain_mri"
    if not folder.is_dir():
        print(f"No brain MRI folder at {folder}: set CNN_DATA_DIR to the folder holding brain_mri/{{yes,no}}/.")
        return 2
    device = pick_device()
    print(f"Brain MRI ({folder}), EfficientNet-Lite0 transfer, {len(args.seeds)} stratified 80/10/10 splits, "
          f"on {describe_device(device)} (torch {torch.__version__}).")
    rows = []
    for mode in args.modes:
        for seed in args.seeds:
            row = run_split(folder, seed, mode, MODES[mode])
            rows.append(row)
            unseen = "n/a" if row["accuracy_unseen"] is None else f"{100 * row['accuracy_unseen']:.1f} %"
            auroc = "n/a" if row["auroc"] is None else f"{100 * row['auroc']:.1f} %"
            print(
                f"  {mode:<9} split {seed}: accuracy {100 * row['accuracy']:.1f} %, sensitivity "
                f"{100 * row['sensitivity']:.1f} %, specificity {100 * row['specificity']:.1f} %, ROC-AUC {auroc}, "
                f"kappa {row['kappa']:.3f}; {row['n_unseen']} of {row['n_test']} test images without a twin in "
                f"train: {unseen} (train {row['train_s']:.1f} s, wall {row['wall_s']:.1f} s)",
                flush=True,
            )
    print()
    header = f"{'mode':<10}" + "".join(f"{m:>16}" for m in METRICS) + f"{'train s':>10}{'wall s':>10}{'acc. no twin':>16}"
    print(header)
    print(f"{'ResNet-18':<10}" + "".join(f"{100 * REFERENCE_RESNET18[m]:>16.1f}" for m in METRICS) + "   (one split, 26 test images)")
    best_accuracy = 0.0
    for mode in args.modes:
        chosen = [r for r in rows if r["mode"] == mode]
        line = f"{mode:<10}" + "".join(f"{mean_std([r[m] for r in chosen]):>16}" for m in METRICS)
        line += f"{statistics.fmean(r['train_s'] for r in chosen):>10.1f}{statistics.fmean(r['wall_s'] for r in chosen):>10.1f}"
        line += f"{mean_std([r['accuracy_unseen'] for r in chosen]):>16}"
        print(line)
        best_accuracy = max(best_accuracy, statistics.fmean(r["accuracy"] for r in chosen))
    print(f"(mean ± standard deviation over {len(args.seeds)} splits, in %; kappa x 100; standard error of a mean "
          f"= std / {math.sqrt(len(args.seeds)):.1f}. Timings are seconds per "
          "split on a CPU shared with other work; the first split's wall time includes computing the cached "
          "backbone features. Target: mean accuracy >= 92.3 %.)")
    if args.json:
        Path(args.json).write_text(json.dumps({"device": describe_device(device), "modes": MODES, "runs": rows}, indent=2))
    met = best_accuracy >= TARGET_ACCURACY
    print(f"Best mean accuracy {100 * best_accuracy:.1f} %: target {'met' if met else 'NOT met'}.")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
