"""Metrics of the predicted class and the urgent flag, the candidate table, the confusion plot."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from schemas.model_card import CLASS_NAMES, URGENT_CLASS, predicted_classes

CLASSES = list(range(len(CLASS_NAMES)))


def evaluate(
    labels: np.ndarray,
    probabilities: np.ndarray,
    threshold: float | None = None,
    class_weights: list[float] | None = None,
) -> dict:
    """Confusion matrix, per-class precision/recall/F1, macro/weighted averages, accuracy, of
    the predicted class (argmax of P, times `class_weights` when given).

    With a threshold, also the urgent flag's recall and precision (flag: P(class 2) >= it).
    """
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    labels = np.asarray(labels)
    predicted = predicted_classes(probabilities, class_weights)
    precision, recall, f1, support = precision_recall_fscore_support(
        labels, predicted, labels=CLASSES, zero_division=0
    )
    report = {
        "n": int(len(labels)),
        "accuracy": float((predicted == labels).mean()) if len(labels) else 0.0,
        "confusion_matrix": confusion_matrix(labels, predicted, labels=CLASSES).tolist(),
        "per_class": {
            name: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i, name in enumerate(CLASS_NAMES)
        },
    }
    for average in ("macro", "weighted"):
        p, r, f, _ = precision_recall_fscore_support(
            labels, predicted, labels=CLASSES, average=average, zero_division=0
        )
        report[average] = {"precision": float(p), "recall": float(r), "f1": float(f)}
    report["macro_f1"] = report["macro"]["f1"]
    report["urgent_recall_argmax"] = float(recall[URGENT_CLASS])
    if class_weights is not None:
        report["class_weights"] = [float(weight) for weight in class_weights]
    if threshold is not None:
        report.update(urgent_flag_metrics(labels, probabilities[:, URGENT_CLASS], threshold))
    return report


def urgent_flag_metrics(
    labels: np.ndarray, urgent_probability: np.ndarray, threshold: float
) -> dict:
    """Recall, precision and flagged share of the rule P(class 2) >= threshold."""
    flagged = urgent_probability >= threshold
    urgent = np.asarray(labels) == URGENT_CLASS
    hits = int((flagged & urgent).sum())
    return {
        "threshold": float(threshold),
        "urgent_recall": hits / int(urgent.sum()) if urgent.any() else float("nan"),
        "urgent_precision": hits / int(flagged.sum()) if flagged.any() else float("nan"),
        "flagged_share": float(flagged.mean()) if len(flagged) else 0.0,
    }


def candidate_table(rows: list[dict], title: str = "Candidates"):  # noqa: ANN201
    """A rich table: one row per candidate, out-of-fold numbers at its own choices."""
    from rich.table import Table

    table = Table(title=title)
    for column in (
        "candidate", "seconds", "macro F1", "F1 (0/1/2)", "urgent recall", "urgent precision",
        "threshold",
    ):  # fmt: skip
        table.add_column(column, justify="left" if column == "candidate" else "right")
    for row in rows:
        table.add_row(
            ("* " if row.get("selected") else "  ") + row["name"],
            f"{row['seconds']:.0f}",
            _fmt(row["macro_f1"]),
            "/".join(f"{value:.2f}" for value in row["f1_per_class"]),
            _fmt(row["urgent_recall"]),
            _fmt(row["urgent_precision"]),
            f"{row['threshold']:.4f}",
        )
    table.caption = "* selected by out-of-fold macro F1; urgent flag at each candidate's threshold"
    return table


def plot_confusion(matrix: list[list[int]], path: Path, title: str) -> Path:
    """A confusion-matrix heat map with counts."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    values = np.asarray(matrix)
    figure, axis = plt.subplots(figsize=(4.5, 4))
    axis.imshow(values, cmap="Blues")
    for (row, column), count in np.ndenumerate(values):
        color = "white" if count > values.max() / 2 else "black"
        axis.text(column, row, str(count), ha="center", va="center", color=color)
    axis.set_xticks(CLASSES, CLASS_NAMES)
    axis.set_yticks(CLASSES, CLASS_NAMES)
    axis.set_xlabel("predicted")
    axis.set_ylabel("true")
    axis.set_title(title)
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)
    return path


def _fmt(value: float | None) -> str:
    return (
        "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.3f}"
    )
