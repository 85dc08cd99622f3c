"""Race the classic tutorial MNIST pipeline against CNN Explorer's default, in the same run; prints numbers.

The tutorial pipeline: torchvision `MNIST` + `ToTensor()` per sample through a `DataLoader`, batch 60, Adam 1e-3, the
8/16-filter CNN. CNN Explorer: `python -m cnn_core train --data mnist` (FastNet, uint8 tensors on the
device, on-device augmentation). Both are scored on the 10,000 MNIST test images a few times per epoch
(`--probes-per-epoch`);
time-to-target counts training seconds only (probing and evaluation excluded for both).

    CNN_DATA_DIR=../shared/data python benchmarks/bench_mnist.py [--tutorial-epochs 6] [--target 0.985]
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
from cnn_core.training import BatchEvent, EndEvent, StartEvent, TrainConfig, train


@torch.no_grad()
def test_accuracy(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, device) -> float:
    model.eval()
    correct = 0
    for start in range(0, len(labels), 1000):
        x = images[start : start + 1000].to(device)
        correct += (model(x).argmax(1).cpu() == labels[start : start + 1000]).sum().item()
    model.train()
    return correct / len(labels)


def race_tutorial_pipeline(epochs: int, target: float, device, probes_per_epoch: int) -> dict:
    """The tutorial pipeline as usually written: per-sample ToTensor through a DataLoader, batch 60, Adam 1e-3."""
    root = data.mnist_torchvision_root()
    train_set = datasets.MNIST(root=str(root), train=True, download=False, transform=transforms.ToTensor())
    test_set = datasets.MNIST(root=str(root), train=False, download=False, transform=transforms.ToTensor())
    test_x = torch.stack([test_set[i][0] for i in range(len(test_set))])
    test_y = test_set.targets.clone()
    torch.manual_seed(0)
    model = build_model("simple_cnn", 1, 10, 28).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loader = DataLoader(train_set, batch_size=60, shuffle=True)
    probe_every = max(1, len(loader) // probes_per_epoch)
    seconds, reached, history = 0.0, None, []
    for epoch in range(1, epochs + 1):
        start = time.perf_counter()
        for batch, (x, y) in enumerate(loader, 1):
            x, y = x.to(device), y.to(device)
            loss = torch.nn.functional.cross_entropy(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if batch % probe_every == 0 or batch == len(loader):
                seconds += time.perf_counter() - start  # the probe below is not training time
                accuracy = test_accuracy(model, test_x, test_y, device)
                history.append({"epoch": round(epoch - 1 + batch / len(loader), 2), "seconds": round(seconds, 2),
                                "test_accuracy": accuracy})
                print(f"  tutorial  epoch {history[-1]['epoch']:5.2f}: {seconds:7.2f} s  test {accuracy:.2%}",
                      flush=True)
                if accuracy >= target:
                    return {"time_to_target": seconds, "history": history}
                start = time.perf_counter()
    return {"time_to_target": reached, "history": history}


def race_cnn_explorer(target: float, device, probes_per_epoch: int) -> dict:
    """The CLI's default MNIST run, probed on the test set a few times per epoch (probe time excluded)."""
    from cnn_core.data.augment import BatchPreprocessor

    test = data.load_split("mnist", "test")
    mean, std = data.channel_stats("mnist")
    preprocess = BatchPreprocessor(mean, std, device)
    test_x = preprocess(test.images)
    model, reached, history, end = None, None, [], None
    probe_seconds = 0.0  # wall time spent probing, which the trainer's clock counts while it waits for us
    probe_every = 1
    for event in train(TrainConfig(dataset="mnist", device=str(device), log_every=1)):
        if isinstance(event, StartEvent):
            model = event.network
            probe_every = max(1, event.steps_per_epoch // probes_per_epoch)
            steps_per_epoch = event.steps_per_epoch
        elif isinstance(event, BatchEvent) and (event.step % probe_every == 0 or event.step % steps_per_epoch == 0):
            probe_started = time.perf_counter()
            seconds = event.seconds - probe_seconds
            accuracy = test_accuracy(model, test_x, test.labels, device)
            history.append({"epoch": round(event.step / steps_per_epoch, 2), "seconds": round(seconds, 2),
                            "test_accuracy": accuracy})
            print(f"  fastnet   epoch {history[-1]['epoch']:5.2f}: {seconds:7.2f} s  test {accuracy:.2%}", flush=True)
            if reached is None and accuracy >= target:
                reached = seconds
            probe_seconds += time.perf_counter() - probe_started
        elif isinstance(event, EndEvent):
            end = event
    return {"time_to_target": reached, "history": history, "final_test_accuracy": end.test_metrics["accuracy"],
            "train_seconds": end.seconds - probe_seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tutorial-epochs", type=int, default=8, help="most epochs for the tutorial pipeline")
    parser.add_argument("--target", type=float, default=0.985)
    parser.add_argument("--device", default=None)
    parser.add_argument("--probes-per-epoch", type=int, default=4, help="test-set probes per epoch (both runs)")
    args = parser.parse_args()
    device = pick_device(args.device)
    print(f"device: {device}, torch threads: {torch.get_num_threads()}")
    print("CNN Explorer default (fastnet):")
    ours = race_cnn_explorer(args.target, device, args.probes_per_epoch)
    print("Tutorial pipeline (DataLoader + ToTensor, batch 60, Adam):")
    seed = race_tutorial_pipeline(args.tutorial_epochs, args.target, device, args.probes_per_epoch)
    ratio = None
    if ours["time_to_target"] and seed["time_to_target"]:
        ratio = seed["time_to_target"] / ours["time_to_target"]
    print(f"time to {args.target:.1%}: tutorial {seed['time_to_target']} s, CNN Explorer {ours['time_to_target']} s, "
          f"ratio {ratio and round(ratio, 1)}x")
    print(f"CNN Explorer final: {ours['final_test_accuracy']:.2%} test accuracy after {ours['train_seconds']:.1f} s of training")
    print(json.dumps({"tutorial": seed, "cnn_explorer": ours, "ratio": ratio}))


if __name__ == "__main__":
    main()
