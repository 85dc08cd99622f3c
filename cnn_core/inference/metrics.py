"""Classification metrics with torchmetrics, for binary and multi-class (macro-averaged) tasks.

Medical-imaging reports give sensitivity, specificity, ROC-AUC, accuracy and Cohen's kappa; these are all here,
plus precision, F1 and the confusion matrix.
"""

from __future__ import annotations

import math

import torch
from torchmetrics.functional.classification import (
    multiclass_accuracy,
    multiclass_auroc,
    multiclass_cohen_kappa,
    multiclass_confusion_matrix,
    multiclass_f1_score,
    multiclass_precision,
    multiclass_recall,
    multiclass_specificity,
)

METRIC_LABELS = {
    "accuracy": "Accuracy",
    "precision": "Precision",
    "recall": "Recall (sensitivity)",
    "sensitivity": "Sensitivity",
    "specificity": "Specificity",
    "f1": "F1",
    "auroc": "ROC-AUC",
    "kappa": "Cohen's kappa",
}


def classification_metrics(probs: torch.Tensor, targets: torch.Tensor, num_classes: int) -> dict:
    """Metrics from class probabilities [N, C] and integer targets [N].

    Multi-class scores are macro averages. For two classes, sensitivity and specificity are those of
    class 1 (the "positive" class, e.g. "yes" = tumour) as in the brain-MRI tumour study, and precision/recall/F1 are for
    that class too. The confusion matrix is a list of rows (true class) of columns (predicted class).
    """
    probs = probs.detach().float().cpu()
    targets = targets.detach().long().cpu()
    preds = probs.argmax(dim=1)
    c = num_classes
    result: dict = {
        "accuracy": _item(multiclass_accuracy(preds, targets, c, average="micro")),
        "kappa": _item(multiclass_cohen_kappa(preds, targets, c)),
        "auroc": _auroc(probs, targets, c),
        "n": int(targets.numel()),
        "confusion_matrix": multiclass_confusion_matrix(preds, targets, c).tolist(),
    }
    if c == 2:
        cm = torch.tensor(result["confusion_matrix"], dtype=torch.float64)
        tn, fp, fn, tp = cm[0, 0], cm[0, 1], cm[1, 0], cm[1, 1]
        result["sensitivity"] = _ratio(tp, tp + fn)
        result["specificity"] = _ratio(tn, tn + fp)
        result["precision"] = _ratio(tp, tp + fp)
        result["recall"] = result["sensitivity"]
        p, r = result["precision"], result["recall"]
        result["f1"] = 0.0 if (p + r) == 0 else 2 * p * r / (p + r)
    else:
        result["precision"] = _item(multiclass_precision(preds, targets, c, average="macro"))
        result["recall"] = _item(multiclass_recall(preds, targets, c, average="macro"))
        result["specificity"] = _item(multiclass_specificity(preds, targets, c, average="macro"))
        result["f1"] = _item(multiclass_f1_score(preds, targets, c, average="macro"))
    return result


def _auroc(probs: torch.Tensor, targets: torch.Tensor, c: int) -> float | None:
    """ROC-AUC (one-vs-rest macro); None when a class is absent from the targets (it is undefined)."""
    present = torch.bincount(targets, minlength=c)
    if (present == 0).any():
        return None
    if c == 2:
        from torchmetrics.functional.classification import binary_auroc

        return _item(binary_auroc(probs[:, 1], targets))
    return _item(multiclass_auroc(probs, targets, c, average="macro"))


def _item(value: torch.Tensor) -> float:
    v = float(value)
    return 0.0 if math.isnan(v) else v


def _ratio(num: torch.Tensor, den: torch.Tensor) -> float:
    return float(num / den) if float(den) > 0 else 0.0
