"""Use a published model: batched probabilities, predictions CSV, evaluation report."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from imaging.canonical import to_model_input
from schemas.model_card import (
    CLASS_NAMES,
    MODEL_FILE,
    ModelCard,
    read_card,
    resolve_model_dir,
)
from trainer.data import ScanSet
from trainer.fit import configure_tensorflow, predict_proba
from trainer.report import evaluate


@dataclass
class LoadedModel:
    """A published model, its card and where it lives."""

    model: object
    card: ModelCard
    directory: Path


def load_model(path: str | Path) -> LoadedModel:
    """Load a model directory, or the CURRENT model of a model root."""
    import keras

    directory = resolve_model_dir(path)
    card = read_card(directory)
    configure_tensorflow()
    return LoadedModel(keras.saving.load_model(directory / MODEL_FILE), card, directory)


def probabilities(loaded: LoadedModel, images: np.ndarray) -> np.ndarray:
    """Softmax (N, 3) for canonical uint8 scans (N, 64, 64), in batches."""
    return predict_proba(loaded.model, to_model_input(images))


def write_predictions(loaded: LoadedModel, images: np.ndarray, out: str | Path) -> int:
    """Write index,predicted,p0,p1,p2,urgent for every image, in input order (predicted and
    urgent by the card's class weights and threshold)."""
    scores = probabilities(loaded, images)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["index", "predicted", "p0", "p1", "p2", "urgent"])
        predicted = loaded.card.predicted_classes(scores)
        flags = loaded.card.is_urgent(scores)
        for index, (row, label, urgent) in enumerate(zip(scores, predicted, flags, strict=True)):
            writer.writerow([index, int(label), *(f"{p:.6f}" for p in row), int(urgent)])
    return len(scores)


def evaluation_report(loaded: LoadedModel, scans: ScanSet, console) -> dict:  # noqa: ANN001
    """Print and return the step-5 report of `loaded` on labelled scans."""
    from rich.table import Table

    card = loaded.card
    scores = probabilities(loaded, scans.images)
    report = evaluate(scans.labels, scores, card.urgent_threshold, card.class_weights)
    table = Table(title=f"{loaded.card.version} on {scans.source} ({report['n']} scans)")
    for column in ("class", "precision", "recall", "F1", "support"):
        table.add_column(column, justify="left" if column == "class" else "right")
    for name in CLASS_NAMES:
        metrics = report["per_class"][name]
        table.add_row(
            name, *(f"{metrics[key]:.3f}" for key in ("precision", "recall", "f1")),
            str(metrics["support"]),
        )  # fmt: skip
    for average in ("macro", "weighted"):
        metrics = report[average]
        table.add_row(
            f"{average} avg", *(f"{metrics[k]:.3f}" for k in ("precision", "recall", "f1")), ""
        )
    console.print(table)
    matrix = Table(title="Confusion matrix (rows true, columns predicted)")
    matrix.add_column("")
    for name in CLASS_NAMES:
        matrix.add_column(name, justify="right")
    for name, counts in zip(CLASS_NAMES, report["confusion_matrix"], strict=True):
        matrix.add_row(name, *(str(count) for count in counts))
    console.print(matrix)
    console.print(
        f"predicted class: argmax of P x {card.class_weights}; "
        f"accuracy {report['accuracy']:.3f}; macro F1 {report['macro_f1']:.3f}; urgent flag at "
        f"P(class 2) >= {report['threshold']:.4f}: recall {report['urgent_recall']:.3f}, "
        f"precision {report['urgent_precision']:.3f}, flagged {report['flagged_share']:.1%}"
    )
    return report
