"""The device path on CUDA: training with mixed precision, prediction, explanations, transfer learning and
ONNX export of what a GPU trained. Marked `gpu`: they skip without a CUDA device (see conftest.py), and
`benchmarks/gpu_check.sh` runs them on one (`pytest -m gpu`)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from cnn_core import data
from cnn_core.inference import explain
from cnn_core.inference.predict import predict_tensor
from cnn_core.models.checkpoints import load_checkpoint
from cnn_core.training import EpochEvent, TrainConfig, run_training

pytestmark = pytest.mark.gpu

ROOT = Path(__file__).resolve().parents[1]
#: CUDA runs under bfloat16/float16 autocast: probabilities agree with the CPU's to about this much.
AUTOCAST_TOLERANCE = 0.05


def _train(tmp_path: Path, **options) -> Path:
    out = tmp_path / f"{options['dataset']}-{options['model'].replace(':', '_')}.safetensors"
    epochs: list[EpochEvent] = []
    end = run_training(TrainConfig(device="cuda", out=str(out), **options),
                       on_event=lambda e: epochs.append(e) if isinstance(e, EpochEvent) else None)  # fmt: skip
    assert end.card.training["device"].startswith("GPU")
    assert epochs and all(math.isfinite(e.train_loss) for e in epochs)
    return out


def _cpu_and_cuda(path: Path, split: str = "test"):
    cpu, cuda = load_checkpoint(path), load_checkpoint(path, device="cuda")
    images = data.load_split(cpu.card.dataset, split, image_size=cpu.card.image_size).images
    return cpu, cuda, images


def test_mixed_precision_training_and_prediction_on_cuda(tiny_data_dir, tmp_path):
    path = _train(tmp_path, dataset="mnist", model="fastnet", epochs=2, batch_size=32)
    cpu, cuda, images = _cpu_and_cuda(path)
    on_cpu, on_cuda = predict_tensor(cpu, images), predict_tensor(cuda, images)
    assert on_cuda.device.type == "cpu" and on_cuda.dtype == torch.float32
    assert (on_cpu - on_cuda).abs().max() < AUTOCAST_TOLERANCE
    assert (on_cpu.argmax(1) == on_cuda.argmax(1)).float().mean() > 0.95


def test_explanations_on_cuda(tiny_data_dir, tmp_path):
    path = _train(tmp_path, dataset="pathmnist", model="resnet_small", epochs=1, batch_size=16)
    _, cuda, images = _cpu_and_cuda(path)
    model_input = explain.prepare_pixels(images[0].numpy(), cuda.card)
    prediction = explain.predict_input(cuda, model_input)
    x = model_input.tensor.to("cuda")
    cam = explain.grad_cam(cuda.model, x, prediction.index)
    saliency = explain.gradient_saliency(cuda.model, x, prediction.index)
    for heat in (cam, saliency):
        assert heat.values.shape == (28, 28) and np.isfinite(heat.values).all()
    result = explain.mc_dropout(cuda.model, x, passes=10)
    assert result.passes == 10 and abs(float(result.mean.sum()) - 1) < 1e-3


def test_transfer_learning_on_cuda(tiny_data_dir, tmp_path):
    path = _train(tmp_path, dataset="scans", model="transfer:efficientnet_lite0", epochs=2, batch_size=8,
                  image_size=32, model_args={"input_size": 32, "mode": "finetune"})  # fmt: skip
    cpu, cuda, images = _cpu_and_cuda(path)
    assert cuda.card.weights == "partial"
    assert (predict_tensor(cpu, images) - predict_tensor(cuda, images)).abs().max() < AUTOCAST_TOLERANCE


def test_onnx_export_of_a_model_trained_on_cuda(tiny_data_dir, tmp_path):
    onnxruntime = pytest.importorskip("onnxruntime")
    from cnn_core.inference.export import export_onnx_bytes

    path = _train(tmp_path, dataset="mnist", model="fastnet", epochs=1, batch_size=32)
    _, cuda, images = _cpu_and_cuda(path)
    exported = export_onnx_bytes(cuda)  # the model comes back to the CPU for the exporter
    session = onnxruntime.InferenceSession(exported.model_bytes, providers=["CPUExecutionProvider"])
    probs = session.run(None, {"images": images.numpy()})[0]
    reference = predict_tensor(load_checkpoint(path), images).numpy()
    assert np.abs(probs - reference).max() < 1e-4 and (probs.argmax(1) == reference.argmax(1)).all()


@pytest.mark.realdata
def test_the_shipped_mnist_model_on_cuda_matches_its_card():
    path = ROOT / "models" / "mnist_fastnet.safetensors"
    if not data.is_available("mnist"):
        pytest.skip("MNIST is not under CNN_DATA_DIR")
    cuda = load_checkpoint(path, device="cuda")
    test = data.load_split("mnist", "test")
    accuracy = (predict_tensor(cuda, test.images).argmax(1) == test.labels).float().mean().item()
    assert accuracy == pytest.approx(cuda.card.test_accuracy, abs=0.003)
