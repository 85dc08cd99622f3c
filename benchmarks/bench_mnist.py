"""Race seed 004's MNIST pipeline against CNN Explorer's default, in the same run; prints numbers.

Seed 004: torchvision `MNIST` + `ToTensor()` per sample through a `DataLoader`, batch 60, Adam 1e-3, the
8/16-filter CNN. CNN Explorer: `python -m cnn_core train --data mnist` (FastNet, uint8 tensors on the
device, on-device augmentation). Both are scored on the 10,000 MNIST test images after every epoch;
time-to-target counts training seconds only (evaluation excluded for both).

    CNN_DATA_DIR=../shared/data python benchmarks/bench_mnist.py [--seed-epochs 6] [--target 0.985]
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from torch.utils.data import DataLoader
from torchvision import datasets, transforms

from cnn_core import data
from cnn_core.device import pick_device
from cnn_core.models import build_model
from cnn_core.train import EndEvent, EpochEvent, StartEvent, TrainConfig, train


@torch.no_grad()
def test_accuracy(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, device) -> float:
    model.eval()
    correct = 0
    for start in range(0, len(labels), 1000):
        x = images[start : start + 1000].to(device)
        correct += (model(x).argmax(1).cpu() == labels[start : start + 1000]).sum().item()
    model.train()
    return correct / len(labels)


def race_seed_pipeline(epochs: int, target: float, device) -> dict:
    """Seed 004 as written: per-sample ToTensor through a DataLoader, batch 60, Adam 1e-3."""
    root = data.mnist_torchvision_root()
    train_set = datasets.MNIST(root=str(root), train=True, download=False, transform=transforms.ToTensor())
    test_set = datasets.MNIST(root=str(root), train=False, download=False, transform=transforms.ToTensor())
    test_x = torch.stack([test_set[i][0] for i in range(len(test_set))])
    test_y = torch.tensor(test_set.targets)
    torch.manual_seed(0)
    model = build_model("simple_cnn", 1, 10, 28).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loader = DataLoader(train_set, batch_size=60, shuffle=True)
    seconds, reached, history = 0.0, None, []
    for epoch in range(1, epochs + 1):
        start = time.perf_counter()
        for x, y in loader:
            x, y = x.to(device), y.to(device)
            loss = torch.nn.functional.cross_entropy(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        seconds += time.perf_counter() - start
        accuracy = test_accuracy(model, test_x, test_y, device)
        history.append({"epoch": epoch, "seconds": round(seconds, 1), "test_accuracy": accuracy})
        print(f"  seed 004  epoch {epoch}: {seconds:7.1f} s  test {accuracy:.2%}", flush=True)
        if reached is None and accuracy >= target:
            reached = seconds
            break
    return {"time_to_target": reached, "history": history}


def race_cnn_explorer(target: float, device) -> dict:
    """The CLI's default MNIST run, probed on the test set after every epoch."""
    test = data.load_split("mnist", "test")
    model = preprocess = None
    reached, history, end = None, [], None
    for event in train(TrainConfig(dataset="mnist", device=str(device))):
        if isinstance(event, StartEvent):
            model = event.network
        elif isinstance(event, EpochEvent):
            from cnn_core.augment import BatchPreprocessor

            mean, std = data.channel_stats("mnist")
            preprocess = preprocess or BatchPreprocessor(mean, std, device)
            accuracy = test_accuracy(model, preprocess(test.images), test.labels, device)
            history.append({"epoch": event.epoch, "seconds": round(event.seconds, 1), "test_accuracy": accuracy})
            print(f"  fastnet   epoch {event.epoch}: {event.seconds:7.1f} s  test {accuracy:.2%}", flush=True)
            if reached is None and accuracy >= target:
                reached = event.seconds
        elif isinstance(event, EndEvent):
            end = event
    return {"time_to_target": reached, "history": history, "final_test_accuracy": end.test_metrics["accuracy"],
            "train_seconds": end.seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed-epochs", type=int, default=8, help="most epochs for the seed pipeline")
    parser.add_argument("--target", type=float, default=0.985)
    parser.add_argument("--device", default=None)
    args = parser.parse_args()
    device = pick_device(args.device)
    print(f"device: {device}, torch threads: {torch.get_num_threads()}")
    print("CNN Explorer default (fastnet):")
    ours = race_cnn_explorer(args.target, device)
    print("Seed 004 pipeline:")
    seed = race_seed_pipeline(args.seed_epochs, args.target, device)
    ratio = None
    if ours["time_to_target"] and seed["time_to_target"]:
        ratio = seed["time_to_target"] / ours["time_to_target"]
    print(f"time to {args.target:.1%}: seed 004 {seed['time_to_target']} s, CNN Explorer {ours['time_to_target']} s, "
          f"ratio {ratio and round(ratio, 1)}x")
    print(f"CNN Explorer final: {ours['final_test_accuracy']:.2%} test accuracy after {ours['train_seconds']:.1f} s of training")
    print(json.dumps({"seed004": seed, "cnn_explorer": ours, "ratio": ratio}))


if __name__ == "__main__":
    main()
