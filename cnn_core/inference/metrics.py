"""Classification metrics with torchmetrics, for binary and multi-class (macro-averaged) tasks.

Medical-imaging reports give sensitivity, specificity, ROC-AUC, accuracy and Cohen's kappa; these are all here,
plus precision, F1 and the confusion matrix.
"""

from __future__ import annotations

import math
import re

import torch

# torchmetrics is imported where a metric is computed, not with this module: importing it loads torchvision and
# matplotlib too (about 300 MiB), which a web server that only shows stored metrics should not hold.

METRIC_LABELS = {
    "accuracy": "Accuracy",
    "precision": "Precision",
    "recall": "Recall (sensitivity)",
    "sensitivity": "Sensitivity",
    "specificity": "Specificity",
    "f1": "F1",
    "auroc": "ROC-AUC",
    "kappa": "Cohen's kappa",
    "balanced_accuracy": "Balanced accuracy",
}


#: Words that name the "nothing found" class of a two-class set: the other class is the positive one.
NEGATIVE_WORDS = frozenset({"no", "not", "normal", "benign", "healthy", "negative", "clean", "absent", "without",
                            "uninfected", "unaffected", "notumor", "notumour", "real", "ok", "good", "intact", "pass"})


def positive_class(class_names: list[str] | tuple[str, ...] | None) -> int:
    """Which of two classes sensitivity is about: the one that is not named like "nothing found" (BreastMNIST's
    "malignant" beside "normal, benign", a folder's "tumor" beside "no_tumor"); class 1 when the names do not
    tell (PneumoniaMNIST's "pneumonia", the brain-MRI "yes", or "cat" beside "dog"). Words are split at
    non-letters and at capitals ("NonDemented"); a word starting with "non" ("noncovid", "non-fire") is negative;
    so are "real" (beside "fake"), "ok" and "good" (beside a defect)."""
    if not class_names or len(class_names) != 2:
        return 1

    def negative(name: str) -> bool:
        words = [word.lower() for word in re.findall(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])", str(name))]
        return any(word in NEGATIVE_WORDS or word.startswith("non") for word in words)

    flags = [negative(name) for name in class_names]
    return 0 if flags == [False, True] else 1


def classification_metrics(probs: torch.Tensor, targets: torch.Tensor, num_classes: int,
                           class_names: list[str] | tuple[str, ...] | None = None) -> dict:
    """Metrics from class probabilities [N, C] (float) and integer targets [N] (int64).

    Multi-class scores are macro averages over the classes present in `targets`. For two classes,
    sensitivity and specificity are those of the positive class (`positive_class`: e.g. "yes" = tumour, as in
    the brain-MRI tumour study, or BreastMNIST's "malignant", its class 0), named in `result["positive_class"]`
    and `result["negative_class"]`; precision/recall/F1 are for that class too. The confusion matrix is a list
    of rows (true class) of columns (predicted class).

    A metric the data cannot define is None, never 0 or 1, and `result["undefined"]` says why (e.g. no
    positive image in the test split makes sensitivity 0/0; one class only makes ROC-AUC and kappa
    undefined); `class_names` name the classes in those reasons. Definitions: Sokolova & Lapalme (2009),
    "A systematic analysis of performance measures for classification tasks".
    """
    from torchmetrics.functional.classification import multiclass_accuracy, multiclass_confusion_matrix

    probs = probs.detach().float().cpu()
    targets = targets.detach().long().cpu()
    preds = probs.argmax(dim=1)
    c = num_classes
    names = [str(n) for n in class_names] if class_names else [f"class {i}" for i in range(c)]
    confusion = multiclass_confusion_matrix(preds, targets, c)
    support = confusion.sum(dim=1)
    undefined: dict[str, str] = {}
    result: dict = {
        "accuracy": _item(multiclass_accuracy(preds, targets, c, average="micro")) if targets.numel() else None,
        "kappa": _kappa(preds, targets, c, support, undefined, names),
        "auroc": _auroc(probs, targets, c, support, undefined, names),
        "n": int(targets.numel()),
        "confusion_matrix": confusion.tolist(),
    }
    if not targets.numel():
        undefined["accuracy"] = "the split holds no images"
    if c == 2:
        positive = positive_class(class_names)
        result["positive_class"], result["negative_class"] = names[positive], names[1 - positive]
        _binary_rates(result, confusion.to(torch.float64), undefined, names, positive)
    else:
        _macro_rates(result, preds, targets, c, support, undefined, names)
    result["balanced_accuracy"] = _balanced_accuracy(result, c, undefined)
    result["undefined"] = undefined
    return result


def _balanced_accuracy(result: dict, c: int, undefined: dict[str, str]) -> float | None:
    """The mean of the per-class recalls (Brodersen et al. 2010, "The balanced accuracy and its posterior
    distribution"): for two classes (sensitivity + specificity) / 2; over the classes present otherwise."""
    if c == 2:
        sens, spec = result["sensitivity"], result["specificity"]
        if sens is None or spec is None:
            undefined["balanced_accuracy"] = undefined.get("sensitivity") or undefined.get("specificity", "")
            return None
        return (sens + spec) / 2
    if result["recall"] is None:
        undefined["balanced_accuracy"] = undefined["recall"]
    return result["recall"]


def _binary_rates(result: dict, cm: torch.Tensor, undefined: dict[str, str], names: list[str], index: int) -> None:
    other = 1 - index  # the negative class; `index` is the positive one
    tn, fp, fn, tp = cm[other, other], cm[other, index], cm[index, other], cm[index, index]
    negative, positive = names[other], names[index]
    result["sensitivity"] = _ratio(tp, tp + fn, "sensitivity", f"no '{positive}' image in the split", undefined)
    result["specificity"] = _ratio(tn, tn + fp, "specificity", f"no '{negative}' image in the split", undefined)
    result["precision"] = _ratio(tp, tp + fp, "precision", f"the model predicted '{positive}' for no image",
                                 undefined)
    result["recall"] = result["sensitivity"]
    if "sensitivity" in undefined:
        undefined["recall"] = undefined["sensitivity"]
    p, r = result["precision"], result["recall"]
    if r is None:
        result["f1"] = None
        undefined["f1"] = undefined["recall"]
    elif p is None or p + r == 0:  # positives exist and none was found: F1 is truly 0
        result["f1"] = 0.0
    else:
        result["f1"] = 2 * p * r / (p + r)


def _macro_rates(result: dict, preds: torch.Tensor, targets: torch.Tensor, c: int, support: torch.Tensor,
                 undefined: dict[str, str], names: list[str]) -> None:
    """Macro averages over the classes present in `targets`: an absent class's recall is 0/0, and counting it
    as 0 (torchmetrics' default) would lower every score for a reason that is not the model's."""
    from torchmetrics.functional.classification import (multiclass_f1_score, multiclass_precision, multiclass_recall,
                                                        multiclass_specificity)

    present = support > 0
    if not present.any():
        for key in ("precision", "recall", "specificity", "f1"):
            result[key] = None
            undefined[key] = "the split holds no images"
        return
    for key, metric in (("precision", multiclass_precision), ("recall", multiclass_recall),
                        ("specificity", multiclass_specificity), ("f1", multiclass_f1_score)):
        per_class = metric(preds, targets, c, average="none")
        result[key] = _item(per_class[present].mean())
    absent = [names[i] for i in range(c) if not present[i]]
    if absent:
        result["macro_over"] = f"the {int(present.sum())} classes in the split (absent: {', '.join(absent)})"


def _kappa(preds: torch.Tensor, targets: torch.Tensor, c: int, support: torch.Tensor, undefined: dict[str, str],
           names: list[str]) -> float | None:
    """Cohen's kappa; None when chance agreement is total (one class in the split and predicted): 0/0."""
    from torchmetrics.functional.classification import multiclass_cohen_kappa

    value = float(multiclass_cohen_kappa(preds, targets, c)) if targets.numel() else math.nan
    if math.isnan(value):
        only = [names[i] for i in range(c) if support[i] > 0]
        undefined["kappa"] = (f"the split holds only '{only[0]}' images" if len(only) == 1 else "the split holds no images")
        return None
    return value


def _auroc(probs: torch.Tensor, targets: torch.Tensor, c: int, support: torch.Tensor, undefined: dict[str, str],
           names: list[str]) -> float | None:
    """ROC-AUC (one-vs-rest macro); None when a class is absent from the targets (it is undefined)."""
    if (support == 0).any():
        missing = [names[i] for i in range(c) if support[i] == 0]
        undefined["auroc"] = f"no {', '.join(repr(m) for m in missing)} image in the split"
        return None
    from torchmetrics.functional.classification import binary_auroc, multiclass_auroc

    if c == 2:
        return _item(binary_auroc(probs[:, 1], targets))
    return _item(multiclass_auroc(probs, targets, c, average="macro"))


def _item(value: torch.Tensor) -> float:
    v = float(value)
    return 0.0 if math.isnan(v) else v


def _ratio(num: torch.Tensor, den: torch.Tensor, key: str, why: str, undefined: dict[str, str]) -> float | None:
    if float(den) > 0:
        return float(num / den)
    undefined[key] = why
    return None
