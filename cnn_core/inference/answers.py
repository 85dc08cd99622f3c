"""Answers for image files, as the CLI's `predict` prints them: each file prepared as the Predict page
prepares an upload (`prepare.prepare_file`), predicted in one batch, with the page's trust hint."""

from __future__ import annotations

import re
from pathlib import Path

from ..errors import DataError
from ..models.checkpoints import LoadedCheckpoint
from .explain import assess_trust, percent
from .predict import predict_inputs, predict_tensor, prepare_files


def answer_files(loaded: LoadedCheckpoint, paths: list[str | Path], raw: bool = False) -> list[dict]:
    """One dict per file, in order: {"image", "label", "probability", "probabilities", "trustworthy", "trust",
    "prepared"} (`trust` is the page's trust hint, `prepared` what was done to the image), or {"image", "error"}
    when the file cannot be read or holds no digit."""
    results = prepare_files(loaded, paths, raw=raw)
    ready = [result for result in results if result.error is None]
    predictions = iter(predict_inputs(loaded, [result.model_input for result in ready]))
    answers = []
    for path, result in zip(paths, results):
        if result.error is not None:
            answers.append({"image": str(path), "error": str(result.error)})
            continue
        pred = next(predictions)
        trust = assess_trust(pred.probabilities, foreign_input=result.model_input.unlike_training)
        answers.append({"image": str(path), "label": pred.label, "probability": pred.probability,
                        "probabilities": pred.probabilities, "trustworthy": trust.trustworthy,
                        "trust": trust.message, "prepared": list(result.model_input.notes)})
    return answers


def answer_line(answer: dict) -> str:
    """An answer for people: the class, its probability and the runners-up; the trust hint on the next line
    when the answer is not to be trusted."""
    if "error" in answer:
        return f"{answer['image']}: error: {answer['error']}"
    top = sorted(answer["probabilities"].items(), key=lambda kv: -kv[1])[:3]
    unsure = "" if answer["trustworthy"] else "  (unsure)"
    line = (f"{answer['image']}: {answer['label']} ({percent(answer['probability'])}){unsure}   ["
            + ", ".join(f"{name} {percent(p)}" for name, p in top) + "]")
    return line if answer["trustworthy"] else f"{line}\n  {answer['trust']}"


def evaluate_files(loaded: LoadedCheckpoint, folder: str | Path, raw: bool = False) -> dict:
    """A checkpoint's metrics on labelled image files, each prepared as `predict` prepares it: in class folders
    named like its classes or by their numbers (`digits/7/*.png`), or in no class folder with their classes in a
    label table or their file names, as a training folder may be (`data.listing.named_layout`: `labels.csv`,
    `cat.0.jpg`). Files that cannot be read or hold no digit are named under "refused" and count as wrong in
    "accuracy_all"; the other metrics are over the files answered; images with no class are counted under
    "unlabelled". DataError for a folder with none of these layouts or with classes the checkpoint lacks."""
    import torch

    from .metrics import classification_metrics

    root = Path(folder)
    files, unlabelled = _labelled_files(loaded, root)
    results = prepare_files(loaded, [path for path, _ in files], raw=raw)
    ready = [(result.model_input, label) for result, (_, label) in zip(results, files) if result.error is None]
    if not ready:
        raise DataError(f"No image in {root} could be prepared for this checkpoint.")
    probs = predict_tensor(loaded, torch.cat([model_input.batch for model_input, _ in ready]))
    labels = torch.tensor([label for _, label in ready])
    metrics = classification_metrics(probs, labels, loaded.card.n_classes, loaded.card.class_names)
    right = int((probs.argmax(1) == labels).sum())
    refused = [str(result.path) for result in results if result.error is not None]
    reasons = [str(result.error) for result in results if result.error is not None]
    return {**metrics, "files": len(files), "refused": refused, "refused_reasons": reasons,
            "accuracy_all": right / len(files), "unlabelled": unlabelled}


def files_note(metrics: dict) -> str:
    """What `evaluate_files` refused and left out, after the number of images it answered."""
    from ..reports import metric_text

    note = f"; {len(metrics['refused'])} refused, accuracy with them {metric_text('accuracy', metrics['accuracy_all'], 2)}"
    return note + (f"; {metrics['unlabelled']} without a class left out" if metrics.get("unlabelled") else "")


def refused_lines(metrics: dict, shown: int = 5) -> list[str]:
    """The first `shown` files `evaluate_files` refused, each with why, and how many more, for people."""
    refused = [f"refused {path}: {why}" for path, why in zip(metrics["refused"], metrics["refused_reasons"])]
    more = [f"... and {len(refused) - shown} more refused (--json names them all)"] if len(refused) > shown else []
    return refused[:shown] + more


def _class_key(name: str) -> str:
    """A class or folder name as compared: NFC, case, and spaces, underscores and hyphens alike (a folder
    `smooth_muscle/` for PathMNIST's class "smooth muscle")."""
    from ..data.zipnames import readable_name

    return re.sub(r"[\s_-]+", " ", readable_name(name)).strip().casefold()


def _labelled_files(loaded: LoadedCheckpoint, root: Path) -> tuple[list[tuple[Path, int]], int]:
    """(image file, class index of the checkpoint) for every labelled image under `root`, and how many images
    had no class (named layouts only)."""
    from ..data.layout import Classes, labels_from_names
    from ..data.listing import (class_dirs, class_images, has_image, image_files, listed_by_name, named_layout,
                                wrapped_root)

    class_names = loaded.card.class_names
    names = {_class_key(name): index for index, name in enumerate(class_names)}
    numbered = not any(name.isdigit() for name in class_names)  # "1" must not mean class 1 and "1"
    for index in range(len(class_names) if numbered else 0):  # by label number (MedMNIST: 0/, 1/)
        names.setdefault(str(index), index)
    if not root.is_dir():
        raise DataError(f"{root} is not a folder (evaluate --images takes a folder of labelled images).")
    try:
        root = wrapped_root(root)  # pets/pets/{cat,dog}, as training reads it
        # the files a data set would count: no __MACOSX/ or .ipynb_checkpoints/, no ._x.jpg (open-mmlab/mmpretrain#507)
        top = [child for child in class_dirs(root) if has_image(child)]
        named = named_layout(root, top)
        if named is None and not top:  # a few images named by class (cat.1.jpg): read against the known classes
            loose = [path.name for path, _ in image_files(root, recursive=False)]
            named = Classes({"": labels_from_names(loose, class_names)}, "the file names") if loose else None
        if named:
            listed, unlabelled = listed_by_name(root, named.labels)
            groups = [(name, [path for path, _ in entries]) for _, name, entries in listed]
        else:
            groups, unlabelled = [(sub.name, class_images(sub)) for sub in top], []
    except OSError as exc:
        raise DataError(f"{root} cannot be read ({exc.strerror or exc}).") from exc
    unknown = sorted({name for name, _ in groups if _class_key(name) not in names})
    if not groups or unknown:
        known = ", ".join(f"'{name}'" for name in class_names)
        raise DataError(f"{root} must hold one folder per class, named like the checkpoint's classes ({known})"
                        + (f" or by their numbers (0 to {len(class_names) - 1})" if numbered else "")
                        + ", or images whose label table or file names give those classes"
                        + (f"; {', '.join(unknown[:8])} {'is' if len(unknown) == 1 else 'are'} none of them."
                           if unknown else "."))
    files = [(path, names[_class_key(name)]) for name, paths in groups for path in paths]
    return files, sum(count for _, count in unlabelled)
