"""Metrics, the urgent operating point, the candidate table and the plots."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from schemas.model_card import CLASS_NAMES, URGENT_CLASS, predicted_classes

CLASSES = list(range(len(CLASS_NAMES)))
# The urgent flag's policy. Held-out scans set the threshold, but new patients can look unlike
# any held-out one: over five outer group folds of the real slices (bench/trainer_outer.py),
# thresholds set on held-out patients alone caught 88 % of the urgent slices of unseen ones.
# So a scan is flagged whenever P(class 2) reaches the ceiling, whatever the held-out data
# allows, and the held-out recall must hold in 90 % of resamples of their urgent patients.
URGENT_THRESHOLD_CEILING = 0.25
URGENT_RECALL_CONFIDENCE = 0.9
BOOTSTRAP_LIMIT = 1000  # candidate thresholds and resampled units, to bound time and memory
# The sorting rule's one tuned number: P(class 1) is weighed by the value of this grid that
# gives the best macro F1 on the held-out scans (the smallest on ties). Class 1 is the smallest
# class and plain argmax under-calls it on unseen patients; the urgent flag does not use it.
NON_URGENT_WEIGHTS = tuple(round(1 + step / 10, 1) for step in range(11))  # 1.0 .. 2.0


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


def choose_class_weights(
    labels: np.ndarray,
    probabilities: np.ndarray,
    grid: tuple[float, ...] = NON_URGENT_WEIGHTS,
) -> list[float]:
    """Class weights [1, w, 1] for the predicted class, w from `grid` (ascending): the best
    held-out macro F1, the smallest w on ties (so 1 unless weighing class 1 helps)."""
    scores = [
        evaluate(labels, probabilities, class_weights=[1.0, weight, 1.0])["macro_f1"]
        for weight in grid
    ]
    best = max(scores)
    weight = next(w for w, score in zip(grid, scores, strict=True) if score >= best - 1e-12)
    return [1.0, float(weight), 1.0]


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


def urgent_threshold(
    labels: np.ndarray,
    probabilities: np.ndarray,
    target_recall: float,
    groups: np.ndarray | None = None,
) -> float:
    """The trainer's urgent threshold for held-out softmax scores (see the policy above)."""
    return choose_urgent_threshold(
        labels,
        probabilities[:, URGENT_CLASS],
        target_recall,
        URGENT_THRESHOLD_CEILING,
        groups=groups,
        confidence=URGENT_RECALL_CONFIDENCE,
    )


def choose_urgent_threshold(
    labels: np.ndarray,
    urgent_probability: np.ndarray,
    target_recall: float,
    ceiling: float = 1.0,
    groups: np.ndarray | None = None,
    confidence: float | None = None,
    resamples: int = 2000,
    draw: int | None = None,
) -> float:
    """The highest threshold on P(class 2) whose class-2 recall reaches `target_recall`, but
    at most `ceiling` (a lower threshold only raises the recall further).

    With `confidence`, the recall must reach the target in that share of bootstrap resamples
    of the urgent patients (`groups`; each image its own when None), not just on the scans at
    hand: slices of one patient look alike, so a patient the model finds hard is one draw, not
    thirty, and the next hospital's patients are another draw (seeded, reproducible). `draw`:
    how many urgent patients each resample holds (default: as many as there are)."""
    if not 0 < target_recall <= 1:
        raise ValueError(f"target recall must be in (0, 1], got {target_recall}")
    urgent = np.asarray(labels) == URGENT_CLASS
    scores = np.asarray(urgent_probability, dtype=float)[urgent]
    if len(scores) == 0:
        raise ValueError("no class-2 scans in the held-out scans: cannot pick a threshold")
    if confidence is None:
        needed = math.ceil(target_recall * len(scores) - 1e-9)
        return min(float(np.sort(scores)[::-1][needed - 1]), ceiling)
    rng = np.random.default_rng(0)
    candidates = np.unique(scores)  # at most BOOTSTRAP_LIMIT, always with the lowest score
    if len(candidates) > BOOTSTRAP_LIMIT:
        candidates = np.unique(np.quantile(scores, np.linspace(0, 1, BOOTSTRAP_LIMIT)))
    candidates = candidates[::-1]  # descending: the first that qualifies is the highest
    patient = np.arange(len(scores)) if groups is None else np.asarray(groups)[urgent]
    _, patient = np.unique(patient, return_inverse=True)
    if patient.max() >= BOOTSTRAP_LIMIT:  # many patients: resample random bundles of them
        patient = rng.permutation(patient.max() + 1)[patient] % BOOTSTRAP_LIMIT
    # hits[p, j]: patient p's urgent scans with score >= candidates[j] (a scan counts from the
    # first candidate at or below its score onwards)
    first = len(candidates) - np.searchsorted(candidates[::-1], scores, side="right")
    hits = np.zeros((patient.max() + 1, len(candidates) + 1))
    np.add.at(hits, (patient, first), 1)
    hits = np.cumsum(hits, axis=1)[:, :-1]
    sizes = np.bincount(patient).astype(float)
    count = len(sizes) if draw is None else max(1, int(draw))
    draws = rng.multinomial(count, np.full(len(sizes), 1 / len(sizes)), size=resamples)
    recall = (draws @ hits) / (draws @ sizes)[:, None]  # (resamples, candidates)
    assured = np.quantile(recall, 1 - confidence, axis=0) >= target_recall - 1e-9
    return min(float(candidates[np.argmax(assured)]), ceiling)  # the lowest always qualifies


def select_best(validation_macro_f1: dict[str, float]) -> str:
    """The candidate with the highest validation macro F1 (first listed wins a tie)."""
    if not validation_macro_f1:
        raise ValueError("no candidates to select from")
    return max(validation_macro_f1, key=lambda name: validation_macro_f1[name])


def candidate_table(rows: list[dict], selected: str, title: str = "Candidates"):  # noqa: ANN201
    """A rich table: one row per candidate with validation and test metrics."""
    from rich.table import Table

    table = Table(title=title)
    for column in (
        "candidate", "epochs", "seconds", "val macro F1", "val acc", "val R2",
        "test macro F1", "test acc", "test R2", "test F1 (0/1/2)", "test R2@thr", "test P2@thr",
    ):  # fmt: skip
        table.add_column(column, justify="left" if column == "candidate" else "right")
    for row in rows:
        val, test = row["val"], row["test"]
        f1s = "/".join(f"{test['per_class'][name]['f1']:.2f}" for name in CLASS_NAMES)
        at_threshold = [_fmt(test.get("urgent_recall")), _fmt(test.get("urgent_precision"))]
        member = "" if row.get("competes", True) else " (member)"
        table.add_row(
            ("* " if row["name"] == selected else "  ") + row["name"] + member,
            str(row["epochs"]),
            f"{row['seconds']:.0f}",
            _fmt(val["macro_f1"]),
            _fmt(val["accuracy"]),
            _fmt(val["urgent_recall_argmax"]),
            _fmt(test["macro_f1"]),
            _fmt(test["accuracy"]),
            _fmt(test["urgent_recall_argmax"]),
            f1s,
            *at_threshold,
        )
    table.caption = (
        "* selected by validation macro F1; R2 = class-2 recall (argmax); @thr = urgent flag"
    )
    if not all(row.get("competes", True) for row in rows):
        table.caption += "; (member): trained for an ensemble, not selected alone"
    weights = {str(row["val"].get("class_weights")) for row in rows} - {"None"}
    if weights:
        table.caption += f"; predicted class: argmax of P x class weights {', '.join(weights)}"
    return table


def class_count_table(counts: dict[str, list[int]]):  # noqa: ANN201
    """A rich table of images per class for each named split/stage."""
    from rich.table import Table

    table = Table(title="Images per class")
    table.add_column("split")
    for name in CLASS_NAMES:
        table.add_column(name, justify="right")
    table.add_column("total", justify="right")
    for stage, values in counts.items():
        table.add_row(stage, *(str(v) for v in values), str(sum(values)))
    return table


def plot_history(histories: list[dict[str, list[float]]], path: Path, title: str) -> Path:
    """Training vs validation accuracy and loss per epoch (one line per ensemble member)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(10, 4))
    for metric, axis in zip(("accuracy", "loss"), axes, strict=True):
        for index, history in enumerate(histories):
            suffix = f" #{index + 1}" if len(histories) > 1 else ""
            epochs = range(1, len(history.get(metric, [])) + 1)
            axis.plot(epochs, history.get(metric, []), label=f"train{suffix}")
            axis.plot(epochs, history.get(f"val_{metric}", []), "--", label=f"validation{suffix}")
        axis.set_xlabel("epoch")
        axis.set_ylabel(metric)
        axis.legend(fontsize=7)
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)
    return path


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
