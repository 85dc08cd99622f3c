"""How long the Predict page takes to answer for a drawn digit: MNIST-style preprocessing plus the forward pass.

Target: <= 50 ms per prediction on a CPU. The input is what the canvas sends: a 280x280 RGBA PNG of
white strokes on black (three digits drawn with Pillow). Measured per prediction, after a warm-up:

- predict: PNG already decoded -> `explain.prepare_drawing` (ink map, crop, scale to 20 px, centre by
  mass, normalize) -> `explain.predict_input` (forward pass, softmax). This is the target's figure.
- with PNG decode: the same plus decoding the canvas's PNG, as `CanvasResult.image_data` does.
- why: Grad-CAM (automatic layer) and gradient saliency for the predicted class, which the page also
  computes on every stroke (reported, no target).

    python benchmarks/bench_predict.py [checkpoint.safetensors]      # default: models/mnist_fastnet.safetensors

`explain` runs this one-image work on a single torch thread (see `explain.single_threaded`); the
figures include that. Wall-clock times depend on what else the machine runs, so the process CPU time
per prediction is printed too, and the load average.
"""

from __future__ import annotations

import io
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from cnn_core.inference import explain
from cnn_core.models.checkpoints import load_checkpoint
from cnn_core.device import describe_device
from cnn_core.settings import models_dir

TARGET_MS = 50.0
REPEATS = 60  # per digit
WARMUP = 5


def canvas_png(digit: str) -> bytes:
    """A 280x280 RGBA PNG like the one streamlit-drawable-canvas returns for a drawn digit."""
    image = Image.new("RGBA", (280, 280), (0, 0, 0, 255))
    draw = ImageDraw.Draw(image)
    if digit == "1":
        draw.line([(140, 40), (140, 240)], fill="white", width=20)
    elif digit == "7":
        draw.line([(70, 50), (210, 50), (120, 240)], fill="white", width=20, joint="curve")
    else:
        draw.ellipse([80, 40, 200, 240], outline="white", width=20)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def timed(action, repeats: int) -> list[tuple[float, float]]:
    """(wall ms, process CPU ms) per call."""
    for _ in range(WARMUP):
        action()
    times = []
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        action()
        times.append(((time.perf_counter() - wall) * 1000, (time.process_time() - cpu) * 1000))
    return times


def describe(times: list[tuple[float, float]]) -> str:
    walls = sorted(wall for wall, _ in times)
    p95 = walls[min(len(walls) - 1, int(round(0.95 * (len(walls) - 1))))]
    cpu = statistics.median(cpu for _, cpu in times)
    return f"median {statistics.median(walls):7.2f} ms   p95 {p95:7.2f} ms   CPU time {cpu:6.2f} ms"


def main(argv: list[str]) -> int:
    path = Path(argv[0]) if argv else models_dir() / "mnist_fastnet.safetensors"
    if not path.is_file():
        print(f"No checkpoint at {path}: train one with `python -m cnn_core train --data mnist --out {path}`.")
        return 2
    loaded = load_checkpoint(path, expect_dataset="mnist")
    load = " ".join(f"{value:.1f}" for value in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    print(f"{path.name} ({loaded.card.model}) on {describe_device(torch.device('cpu'))}, "
          f"load average {load}")
    pngs = {digit: canvas_png(digit) for digit in "170"}
    arrays = {digit: np.asarray(Image.open(io.BytesIO(png))) for digit, png in pngs.items()}

    def predict(digit: str):
        return explain.predict_input(loaded, explain.prepare_drawing(arrays[digit], loaded.card))

    def predict_png(digit: str):
        array = np.asarray(Image.open(io.BytesIO(pngs[digit])))
        return explain.predict_input(loaded, explain.prepare_drawing(array, loaded.card))

    def why(digit: str):
        model_input = explain.prepare_drawing(arrays[digit], loaded.card)
        index = explain.predict_input(loaded, model_input).index
        explain.grad_cam(loaded.model, model_input.tensor, index)
        explain.gradient_saliency(loaded.model, model_input.tensor, index)

    plain, decoded, explained = [], [], []
    for digit in pngs:
        print(f"digit {digit}: predicted {predict(digit).label}")
        plain += timed(lambda: predict(digit), REPEATS)
        decoded += timed(lambda: predict_png(digit), REPEATS)
        explained += timed(lambda: why(digit), REPEATS // 4)
    median = statistics.median(wall for wall, _ in plain)
    print(f"predict (preprocess + forward):   {describe(plain)}   target <= {TARGET_MS:.0f} ms")
    print(f"  with the canvas PNG decode:     {describe(decoded)}")
    print(f"  Grad-CAM + saliency on top:     {describe(explained)}")
    passed = median <= TARGET_MS
    print("PASS" if passed else "FAIL", f"(median {median:.2f} ms per prediction)")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
