"""Answers for image files, as the CLI's `predict` prints them: each file prepared as the Predict page
prepares an upload (`prepare.prepare_file`), predicted in one batch, with the page's trust hint."""

from __future__ import annotations

from pathlib import Path

from ..models.checkpoints import LoadedCheckpoint
from .explain import assess_trust
from .predict import predict_inputs, prepare_files


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
    line = (f"{answer['image']}: {answer['label']} ({answer['probability']:.1%}){unsure}   ["
            + ", ".join(f"{name} {p:.1%}" for name, p in top) + "]")
    return line if answer["trustworthy"] else f"{line}\n  {answer['trust']}"
