"""Metrics equal values computed by hand on small examples."""

import pytest
import torch

from cnn_core.inference.metrics import classification_metrics


def test_binary_metrics_match_hand_computation():
    # targets: 4 negatives, 3 positives; predictions: TN=3, FP=1, FN=1, TP=2
    targets = torch.tensor([0, 0, 0, 0, 1, 1, 1])
    p1 = torch.tensor([0.1, 0.2, 0.3, 0.7, 0.4, 0.8, 0.9])
    probs = torch.stack([1 - p1, p1], dim=1)
    m = classification_metrics(probs, targets, 2)
    assert m["confusion_matrix"] == [[3, 1], [1, 2]]
    assert m["accuracy"] == pytest.approx(5 / 7)
    assert m["sensitivity"] == pytest.approx(2 / 3)
    assert m["specificity"] == pytest.approx(3 / 4)
    assert m["precision"] == pytest.approx(2 / 3)
    assert m["f1"] == pytest.approx(2 / 3)
    # ROC-AUC: fraction of (pos, neg) pairs ranked correctly: positives 0.4, 0.8, 0.9 vs negatives .1 .2 .3 .7
    assert m["auroc"] == pytest.approx((3 + 4 + 4) / 12)
    # Cohen's kappa: po = 5/7, pe = (4/7*4/7) + (3/7*3/7) = 25/49
    po, pe = 5 / 7, 25 / 49
    assert m["kappa"] == pytest.approx((po - pe) / (1 - pe))


def test_the_positive_class_is_the_finding_not_always_class_1():
    # BreastMNIST's class 0 is "malignant", class 1 "normal, benign": a model that calls everything benign had
    # "sensitivity 1.0, specificity 0.0", with the sensitivity measured on the benign class.
    from cnn_core.inference.metrics import positive_class
    from cnn_core.models.card import metric_label

    targets = torch.tensor([0] * 10 + [1] * 30)
    probs = torch.tensor([[0.2, 0.8]] * 40)  # always "normal, benign"
    m = classification_metrics(probs, targets, 2, ("malignant", "normal, benign"))
    assert m["positive_class"] == "malignant" and m["negative_class"] == "normal, benign"
    assert m["sensitivity"] == 0.0 and m["specificity"] == 1.0 and m["recall"] == 0.0
    assert m["undefined"]["precision"] == "the model predicted 'malignant' for no image"
    assert metric_label("sensitivity", m) == "sensitivity (malignant)"
    assert metric_label("specificity", m) == "specificity (normal, benign)" and metric_label("auroc", m) == "auroc"
    for names, positive in ((("normal", "pneumonia"), 1), (("no", "yes"), 1), (("NORMAL", "PNEUMONIA"), 1),
                            (("tumor", "no_tumor"), 0), (("glioma", "notumor"), 0), (("Parasitized", "Uninfected"), 0),
                            (("benign", "malignant"), 1), (("cat", "dog"), 1), (("Non-Demented", "Demented"), 1),
                            (("Demented", "NonDemented"), 0), (("CT_COVID", "CT_NonCOVID"), 0), (("FAKE", "REAL"), 0),
                            (("def_front", "ok_front"), 0), (("Defective", "Good"), 0), (("fire", "non_fire"), 0),
                            (("No_DR", "DR"), 1), (("no", "yes"), 1), (("hot_dog", "not_hot_dog"), 0)):
        assert positive_class(names) == positive, names
    assert classification_metrics(probs, targets, 2, ("cat", "dog"))["sensitivity"] == 1.0  # class 1, as before


def test_multiclass_macro_metrics():
    targets = torch.tensor([0, 0, 1, 1, 2, 2])
    preds = torch.tensor([0, 1, 1, 1, 2, 0])
    probs = torch.nn.functional.one_hot(preds, 3).float() * 0.8 + 0.2 / 3
    m = classification_metrics(probs, targets, 3)
    assert m["accuracy"] == pytest.approx(4 / 6)
    # per-class recall: 1/2, 2/2, 1/2 -> macro 2/3; precision: 1/2, 2/3, 1/1 -> macro 13/18
    assert m["recall"] == pytest.approx(2 / 3)
    assert m["precision"] == pytest.approx(13 / 18)
    assert m["confusion_matrix"] == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    assert 0 <= m["auroc"] <= 1


def test_auroc_is_none_when_a_class_is_absent():
    targets = torch.tensor([0, 0, 0])
    probs = torch.tensor([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7]])
    m = classification_metrics(probs, targets, 2)
    assert m["auroc"] is None
    assert m["accuracy"] == pytest.approx(2 / 3)


def test_balanced_accuracy_is_the_mean_recall_and_undefined_metrics_say_why():
    # 8 negatives (7 right), 2 positives (1 right): accuracy 0.8 flatters; balanced (7/8 + 1/2) / 2
    targets = torch.tensor([0] * 8 + [1] * 2)
    preds = torch.tensor([0] * 7 + [1] + [1, 0])
    m = classification_metrics(torch.nn.functional.one_hot(preds, 2).float(), targets, 2, ["normal", "tumour"])
    assert m["accuracy"] == pytest.approx(0.8) and m["balanced_accuracy"] == pytest.approx((7 / 8 + 1 / 2) / 2)
    only_normal = classification_metrics(torch.tensor([[0.9, 0.1]] * 4), torch.zeros(4, dtype=torch.long), 2,
                                         ["normal", "tumour"])
    assert only_normal["accuracy"] == 1.0  # defined, but says nothing about tumours:
    for key in ("sensitivity", "recall", "f1", "auroc", "balanced_accuracy", "kappa"):
        assert only_normal[key] is None, key
    assert only_normal["undefined"]["sensitivity"] == "no 'tumour' image in the split"
    assert only_normal["undefined"]["kappa"] == "the split holds only 'normal' images"
    assert only_normal["undefined"]["precision"] == "the model predicted 'tumour' for no image"
    # multi-class: an absent class does not drag the macro scores down
    multi = classification_metrics(torch.nn.functional.one_hot(torch.tensor([0, 1, 1, 0]), 3).float(),
                                   torch.tensor([0, 1, 1, 0]), 3, ["a", "b", "c"])
    assert multi["recall"] == 1.0 and multi["balanced_accuracy"] == 1.0 and "absent: c" in multi["macro_over"]


def test_inference_batches_shrink_with_the_image_size():
    # 506 brain-MRI scans at 288 px went through a transfer model in one batch of up to 512: 11.6 GB of memory
    import torch

    from cnn_core.inference.evaluate import inference_batch_size, predict_probs

    sizes = {side: inference_batch_size(torch.zeros(1, 3, side, side, dtype=torch.uint8)) for side in (28, 64, 128, 288)}
    assert sizes == {28: 512, 64: 512, 128: 128, 288: 25}
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 288 * 288, 4))
    images = torch.randint(0, 255, (30, 3, 288, 288), dtype=torch.uint8)
    whole = predict_probs(model, images, lambda x: x.float() / 255, torch.device("cpu"), batch_size=30)
    assert torch.allclose(predict_probs(model, images, lambda x: x.float() / 255, torch.device("cpu")), whole, atol=1e-6)
