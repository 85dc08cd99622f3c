"""The models layer: what can be trained and how it is stored.

`spec` (ModelSpec and the `Classifier` base class), `cnns` (LeNet-5, the tutorial CNN, FastNet, a small
ResNet), `backbones` and `transfer` (ImageNet backbones with a new head), `registry` (names to models),
`card` (the typed checkpoint card) and `checkpoints` (safetensors files; loading never unpickles). Imports
only from `cnn_core.data` and the base modules.
"""

from .registry import MODEL_REGISTRY, build_model, count_parameters, default_model_for, get_model_spec, list_models
from .spec import Classifier, ModelSpec

__all__ = [
    "MODEL_REGISTRY",
    "Classifier",
    "ModelSpec",
    "build_model",
    "count_parameters",
    "default_model_for",
    "get_model_spec",
    "list_models",
]
