"""Answers for image files, as the CLI's `predict` prints them: each file prepared as the Predict page
prepares an upload (`prepare.prepare_file`), predicted in one batch, with the page's trust hint."""

from __future__ import annotations

from pathlib import Path

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
    """A checkpoint's metrics on image files sorted into class folders named like its classes (`digits/7/*.png`),
    each file prepared as `predict` prepares it. Files that cannot be read or hold no digit are named under
    "refused" and count as wrong in "accuracy_all"; the other metrics are over the files answered."""
    import torch

    from ..data.listing import class_images, is_hidden
    from ..data.zipnames import readable_name
    from ..errors import DataError
    from .metrics import classification_metrics

    root = Path(folder)
    names = {readable_name(name).lower(): index for index, name in enumerate(loaded.card.class_names)}
    numbered = not any(name.isdigit() for name in loaded.card.class_names)  # "1" must not mean class 1 and "1"
    for index in range(len(loaded.card.class_names) if numbered else 0):  # by label number (MedMNIST: 0/, 1/)
        names.setdefault(str(index), index)
    # the files a data set would count: no __MACOSX/ or .ipynb_checkpoints/, no ._x.jpg (open-mmlab/mmpretrain#507)
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not is_hidden(p.name)) if root.is_dir() else []
    unknown = [path.name for path in folders if readable_name(path.name).lower() not in names]
    if not folders or unknown:
        classes = ", ".join(f"'{name}'" for name in loaded.card.class_names)
        raise DataError(f"{root} must hold one folder per class, named like the checkpoint's classes ({classes})"
                        + (f" or by their numbers (0 to {len(loaded.card.class_names) - 1})" if numbered else "")
                        + (f"; not {', '.join(unknown)}." if unknown else "."))
    files = [(path, names[readable_name(sub.name).lower()]) for sub in folders for path in class_images(sub)]
    results = prepare_files(loaded, [path for path, _ in files], raw=raw)
    ready = [(result.model_input, label) for result, (_, label) in zip(results, files) if result.error is None]
    if not ready:
        raise DataError(f"No image in {root} could be prepared for this checkpoint.")
    probs = predict_tensor(loaded, torch.cat([model_input.batch for model_input, _ in ready]))
    labels = torch.tensor([label for _, label in ready])
    metrics = classification_metrics(probs, labels, loaded.card.n_classes, loaded.card.class_names)
    right = int((probs.argmax(1) == labels).sum())
    refused = [str(result.path) for result in results if result.error is not None]
    return {**metrics, "files": len(files), "refused": refused, "accuracy_all": right / len(files)}
