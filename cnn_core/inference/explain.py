"""Why did the model decide? Grad-CAM, saliency, MC dropout, trust hints.

Everything here works on one input image at a time and on a model in evaluation mode. Functions that
need hooks or dropout switched on change the model only for the duration of the call and put it back
afterwards, but they are not safe to call from two threads on the *same* model object at once: give
each user session its own loaded checkpoint (the Predict page does).
"""

from __future__ import annotations

import contextlib
import functools
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import TypeVar

import numpy as np
import torch
from PIL import Image
from torch import nn

from ..data.images import tensor_to_image
from ..errors import ConfigError
from ..models.checkpoints import LoadedCheckpoint
from .ink import ink_map  # noqa: F401  (re-exported: the page and the tests know it here)
from .predict import Prediction, predict_tensor, predictions_from
from .prepare import (EMPTY_CANVAS_MESSAGE, INK_THRESHOLD, MIN_INK_PIXELS, MNIST_BOX,  # noqa: F401
                      MNIST_FRAME, EmptyDrawingError, ModelInput, center_digit, has_ink, is_digit_model, normalize,
                      prepare_drawing, prepare_file, prepare_image, prepare_input, prepare_pixels, read_input)

#: The trust hint's thresholds. Softmax confidence is a weak signal (a CNN can be confidently wrong on
#: an input unlike its training data), so these only flag the obvious cases.
MIN_TOP_PROBABILITY = 0.6
MAX_NORMALIZED_ENTROPY = 0.5
MAX_MC_STD = 0.15


@contextlib.contextmanager
def single_threaded() -> Iterator[None]:
    """Run torch on one intra-op thread inside the block, then put the calling thread's setting back.

    One 28×28 image is far too little work to share: on a busy 2-core machine, torch's 2 threads spend
    their time waiting for each other (about 150 ms per FastNet prediction against 11 ms on one thread,
    see benchmarks/bench_predict.py). With OpenMP the setting belongs to the calling thread, so training
    running in another thread keeps its threads.
    """
    previous = torch.get_num_threads()
    if previous == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


_Function = TypeVar("_Function", bound=Callable)


def _one_image_work(function: _Function) -> _Function:
    """Decorator: run `function` under `single_threaded()`."""

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        with single_threaded():
            return function(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


# --------------------------------------------------------------------------------------------------
# Predicting one prepared input (the preparation itself is `prepare`, re-exported here)


@_one_image_work
def predict_input(loaded: LoadedCheckpoint, model_input: ModelInput) -> Prediction:
    """The checkpoint's prediction for one prepared input (through `predict.predict_tensor`)."""
    return predictions_from(predict_tensor(loaded, model_input.batch), loaded.card.class_names)[0]


# --------------------------------------------------------------------------------------------------
# Grad-CAM and saliency


@dataclass(frozen=True)
class CamLayer:
    """A module whose output is a stack of feature maps that Grad-CAM can weigh."""

    name: str
    module: nn.Module
    shape: tuple[int, int, int]  # channels, height, width of its output for the given input

    @property
    def label(self) -> str:
        """For people: "features.6: a convolution's output (64 maps of 4×4)"."""
        channels, height, width = self.shape
        return f"{self.name}: {self.kind} ({channels} maps of {height}×{width})"

    @property
    def kind(self) -> str:
        """What the maps are: a convolution's own output (before the BatchNorm and activation that follow it),
        or a block's output, named after its last layer when the block runs its layers in order (Sequential)."""
        if isinstance(self.module, nn.Conv2d):
            return "a convolution's output"
        last = self.module
        while isinstance(last, nn.Sequential) and len(last):
            last = last[-1]
        return f"a block's output, after {type(last).__name__}" if last is not self.module else "a block's output"


@dataclass(frozen=True)
class Heatmap:
    """Where in the input the evidence for one class lies, scaled to [0, 1] at the input's size."""

    values: np.ndarray  # float32 [H, W]
    class_index: int
    method: str  # "grad-cam" or "saliency"
    layer: str | None = None  # Grad-CAM's layer
    peak: float = 0.0  # the largest value before scaling; 0 means no evidence at all
    skipped: tuple[str, ...] = ()  # Grad-CAM: deeper layers passed over because they showed no evidence

    @property
    def empty(self) -> bool:
        return not self.peak > 0


def _model_device(model: nn.Module) -> torch.device:
    parameter = next(model.parameters(), None)
    return parameter.device if parameter is not None else torch.device("cpu")


def _check_input(x: torch.Tensor) -> None:
    if x.ndim != 4 or x.shape[0] != 1:
        raise ConfigError(f"Expected one image as a [1, C, H, W] tensor, got shape {tuple(x.shape)}.")


def _check_class(count: int, class_index: int) -> None:
    if not 0 <= class_index < count:
        raise ConfigError(f"Class {class_index} does not exist: the model has classes 0 to {count - 1}.")


@_one_image_work
def cam_layers(model: nn.Module, x: torch.Tensor) -> list[CamLayer]:
    """Modules that contain a convolution and output feature maps larger than 1×1, in the order they finish.

    Grad-CAM's usual choice, the output of the last convolutional block, is the last entry.
    """
    return _probe(model, x)[0]


def _probe(model: nn.Module, x: torch.Tensor) -> tuple[list[CamLayer], int]:
    """(cam_layers, number of classes) from one forward pass with recording hooks."""
    _check_input(x)
    finished: list[tuple[str, nn.Module, tuple]] = []
    handles = []

    def hook_for(name: str):
        def record(module, inputs, output):
            if isinstance(output, torch.Tensor) and output.ndim == 4 and output.shape[-1] * output.shape[-2] > 1:
                finished.append((name, module, tuple(int(v) for v in output.shape[1:])))
        return record

    for name, module in model.named_modules():
        if name and any(isinstance(m, nn.Conv2d) for m in module.modules()):
            handles.append(module.register_forward_hook(hook_for(name)))
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            logits = model(x.to(_model_device(model)))
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    layers: dict[int, CamLayer] = {}
    for name, module, shape in finished:  # a module called twice keeps its last place
        layers.pop(id(module), None)
        layers[id(module)] = CamLayer(name=name, module=module, shape=shape)
    return list(layers.values()), int(logits.shape[-1])


@_one_image_work
def grad_cam(model: nn.Module, x: torch.Tensor, class_index: int, layer: str | None = None) -> Heatmap:
    """Grad-CAM (Selvaraju et al., via pytorch-grad-cam) for `class_index` at `layer`.

    Each feature map of the layer is weighted by the mean gradient of the class's score over it; the
    positive part of the weighted sum, upsampled to the input, shows where the evidence for the class is.
    With `layer=None` the layer is picked automatically: the last conv block, or, when nothing there is
    positive (it happens with a flatten + linear head: a '0' whose evidence sits all around the ring), the
    next deeper-to-shallower layer that has some; `Heatmap.skipped` names the layers passed over.
    """
    layers, n_classes = _probe(model, x)
    _check_class(n_classes, class_index)
    if not layers:
        raise ConfigError("This model has no convolution layer with feature maps larger than 1×1, so Grad-CAM "
                          "has nothing to weigh; the gradient saliency map still works.")
    if layer is not None:
        matches = [candidate for candidate in layers if candidate.name == layer]
        if not matches:
            raise ConfigError(f"No conv layer named {layer!r}; choose one of {', '.join(c.name for c in layers)}.")
        return _grad_cam_at(model, x, class_index, matches[0])
    skipped: list[str] = []
    for candidate in reversed(layers):
        heat = _grad_cam_at(model, x, class_index, candidate)
        if not heat.empty:
            return replace(heat, skipped=tuple(skipped))
        skipped.append(candidate.name)
    return _grad_cam_at(model, x, class_index, layers[-1])


def _grad_cam_at(model: nn.Module, x: torch.Tensor, class_index: int, chosen: CamLayer) -> Heatmap:
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    was_training = model.training
    cam = GradCAM(model=model, target_layers=[chosen.module])
    try:
        with torch.enable_grad():
            # An input that needs a gradient keeps the graph alive through frozen (transfer) layers too.
            source = x.detach().clone().to(_model_device(model)).requires_grad_(True)
            maps = cam(input_tensor=source, targets=[ClassifierOutputTarget(class_index)])
            recorded = cam.activations_and_grads
            if not recorded.gradients:
                raise ConfigError(f"No gradient reached layer {chosen.name!r}; Grad-CAM cannot weigh its maps.")
            activations, gradients = recorded.activations[0], recorded.gradients[0]
            weights = gradients.mean(dim=(2, 3), keepdim=True)
            raw = torch.relu((weights * activations).sum(dim=1))
            peak = float(raw.max())
    finally:
        cam.activations_and_grads.release()
        model.zero_grad(set_to_none=True)
        model.train(was_training)
    values = np.nan_to_num(np.asarray(maps[0], dtype=np.float32)) if peak > 0 else np.zeros(x.shape[-2:], np.float32)
    return Heatmap(values=np.clip(values, 0.0, 1.0), class_index=class_index, method="grad-cam",
                   layer=chosen.name, peak=peak)


@_one_image_work
def gradient_saliency(model: nn.Module, x: torch.Tensor, class_index: int) -> Heatmap:
    """Plain gradient saliency (Simonyan et al., 2013): |∂ class score / ∂ pixel|, largest over channels."""
    _check_input(x)
    was_training = model.training
    try:
        model.eval()
        with torch.enable_grad():
            source = x.detach().clone().to(_model_device(model)).requires_grad_(True)
            logits = model(source)
            _check_class(int(logits.shape[-1]), class_index)
            (gradient,) = torch.autograd.grad(logits[0, class_index], source)
    finally:
        model.train(was_training)
    magnitude = gradient.detach().abs().amax(dim=1)[0].float().cpu().numpy()
    peak = float(magnitude.max())
    values = magnitude / peak if peak > 0 else np.zeros_like(magnitude)
    return Heatmap(values=values.astype(np.float32), class_index=class_index, method="saliency", peak=peak)


def overlay(pixels: np.ndarray, heat: np.ndarray, size: int = 224, image_weight: float = 0.5) -> np.ndarray:
    """The input (uint8 [C, H, W]) with a heat map over it in the jet colours, uint8 RGB [size, size, 3].

    The input is enlarged with nearest neighbours (pixels stay visible) and the heat map bilinearly.
    """
    from pytorch_grad_cam.utils.image import show_cam_on_image

    base = tensor_to_image(np.asarray(pixels)).convert("RGB").resize((size, size), Image.Resampling.NEAREST)
    heat_image = Image.fromarray(np.clip(np.asarray(heat, dtype=np.float32), 0.0, 1.0), mode="F")
    heat_large = np.asarray(heat_image.resize((size, size), Image.Resampling.BILINEAR), dtype=np.float32)
    rgb = np.asarray(base, dtype=np.float32) / 255.0
    return show_cam_on_image(rgb, np.clip(heat_large, 0.0, 1.0), use_rgb=True, image_weight=image_weight)


# --------------------------------------------------------------------------------------------------
# Monte Carlo dropout


@dataclass(frozen=True)
class McDropoutResult:
    """Class probabilities over T stochastic passes: their mean and standard deviation per class."""

    mean: np.ndarray  # float [classes]
    std: np.ndarray  # float [classes]
    passes: int
    agreement: float  # share of passes whose top class is the mean's top class
    dropout_layers: tuple[str, ...]


def dropout_layers(model: nn.Module) -> list[str]:
    """Names of the model's dropout modules that drop anything (p > 0)."""
    return [name for name, module in model.named_modules()
            if isinstance(module, nn.modules.dropout._DropoutNd) and float(module.p) > 0]


@_one_image_work
def mc_dropout(model: nn.Module, x: torch.Tensor, passes: int = 30, seed: int = 0) -> McDropoutResult:
    """Monte Carlo dropout (Gal & Ghahramani, 2016): T passes with dropout on and BatchNorm in eval mode.

    The passes run as one batch of T copies (dropout draws a separate mask per copy; BatchNorm uses its
    running statistics, so the copies do not influence each other). Seeded, so a rerun gives the same bars.
    """
    _check_input(x)
    names = dropout_layers(model)
    if not names:
        raise ConfigError("This model has no dropout layers, so every pass would give the same answer: "
                          "Monte Carlo dropout needs a model with dropout (e.g. resnet_small).")
    if not 2 <= passes <= 1000:
        raise ConfigError(f"Use between 2 and 1000 passes, not {passes}.")
    modes = {module: module.training for module in model.modules()}
    try:
        model.eval()
        for module in model.modules():
            if isinstance(module, nn.modules.dropout._DropoutNd):
                module.train()
        device = _model_device(model)
        with torch.no_grad(), torch.random.fork_rng(devices=[] if device.type == "cpu" else None):
            torch.manual_seed(seed)
            batch = x.detach().to(device).expand(passes, *x.shape[1:])
            probabilities = torch.softmax(model(batch).float(), dim=1).cpu().numpy()
    finally:
        for module, mode in modes.items():
            module.training = mode
    mean = probabilities.mean(axis=0)
    std = probabilities.std(axis=0, ddof=1)
    agreement = float((probabilities.argmax(axis=1) == int(mean.argmax())).mean())
    return McDropoutResult(mean=mean, std=std, passes=passes, agreement=agreement, dropout_layers=tuple(names))


# --------------------------------------------------------------------------------------------------
# Trust hint


def percent(probability: float) -> str:
    """A probability as the app writes it everywhere: one decimal ("97.3%"), and never "100%" or "0%" unless
    it is exactly that ("> 99.9%", "< 0.1%"), so two places never round the same number differently."""
    value = float(probability)
    if value >= 1.0 or value <= 0.0:
        return f"{max(0.0, min(1.0, value)):.0%}"
    text = f"{100 * value:.1f}"
    return "> 99.9%" if text == "100.0" else "< 0.1%" if text == "0.0" else f"{text}%"


@dataclass(frozen=True)
class TrustAssessment:
    """Whether a prediction looks trustworthy, by simple signals of the class probabilities."""

    top_probability: float
    normalized_entropy: float  # entropy / log(classes): 0 = certain, 1 = every class equally likely
    trustworthy: bool
    reasons: tuple[str, ...]
    confident: bool = True  # the probabilities alone look sure (high top probability, low entropy)

    @property
    def message(self) -> str:
        if self.trustworthy:
            return (f"The model is confident (top probability {percent(self.top_probability)}, normalized entropy "
                    f"{self.normalized_entropy:.2f}: 0 when one class takes everything, 1 when all are equally "
                    "likely). Confidence is not proof: an input unlike the training "
                    "images can still fool it.")
        text = "Not trustworthy: " + "; ".join(self.reasons) + "."
        if self.confident:
            return text + (f" Yet the model sounds sure (top probability {percent(self.top_probability)}): softmax "
                           "confidence cannot tell that an input is unlike anything the model was trained on.")
        return text + (" The input may be unlike the images the model was trained on, or simply hard for it: "
                       "do not rely on this answer.")


def normalized_entropy(probabilities: np.ndarray) -> float:
    """Shannon entropy of a probability vector divided by its maximum, log(number of classes)."""
    p = np.clip(np.asarray(probabilities, dtype=np.float64), 0.0, 1.0)
    if p.size < 2:
        return 0.0
    p = p / p.sum() if p.sum() > 0 else np.full(p.size, 1.0 / p.size)
    nonzero = p[p > 0]
    return float(-(nonzero * np.log(nonzero)).sum() / math.log(p.size))


def assess_trust(probabilities: np.ndarray | dict[str, float], mc: McDropoutResult | None = None,
                 foreign_input: str | None = None,
                 min_top_probability: float = MIN_TOP_PROBABILITY,
                 max_entropy: float = MAX_NORMALIZED_ENTROPY, max_mc_std: float = MAX_MC_STD) -> TrustAssessment:
    """An out-of-distribution hint: low top probability, high entropy or (with MC dropout) unstable answers.

    `foreign_input` is a reason known from outside the model (e.g. "the image comes from PathMNIST, which
    the model never saw"); it makes the answer untrustworthy whatever the probabilities say.
    """
    values = np.asarray(list(probabilities.values()) if isinstance(probabilities, dict) else probabilities,
                        dtype=np.float64)
    top = float(values.max())
    entropy = normalized_entropy(values)
    reasons = [foreign_input] if foreign_input else []
    confident = True
    if top < min_top_probability:
        reasons.append(f"the top probability is only {percent(top)} (below {min_top_probability:.0%})")
        confident = False
    if entropy > max_entropy:
        reasons.append(f"the probabilities are spread out (normalized entropy {entropy:.2f}, above {max_entropy:.2f})")
        confident = False
    if mc is not None:
        top_index = int(np.argmax(mc.mean))
        spread = float(mc.std[top_index])
        if spread > max_mc_std:
            reasons.append(f"the top class's probability varies by ±{spread:.0%} across {mc.passes} dropout passes")
            confident = False
    return TrustAssessment(top_probability=top, normalized_entropy=entropy, trustworthy=not reasons,
                           reasons=tuple(reasons), confident=confident)
