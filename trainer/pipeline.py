"""The pipeline, as `triage train` runs it and as the estimate re-runs it on part of the data:
cross-fit every candidate -> the ensemble of the two best -> choices per candidate on its
out-of-fold scores -> selection by out-of-fold macro F1 -> the winner's model and choices.

It sees only the folds it is given (`covered`); the estimate scores the rest.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from schemas.model_card import URGENT_CLASS, predicted_classes
from trainer.candidates import ENSEMBLE, ENSEMBLE_SIZE, Candidate
from trainer.choices import Choices, macro_f1, make_choices
from trainer.crossfit import CrossFitted, FoldFits, cross_fit, ensemble


@dataclass
class Outcome:
    """The selected candidate, its cross-fit and choices, and every candidate's row."""

    selected: CrossFitted
    choices: Choices
    rows: list[dict]
    labels: np.ndarray  # of the covered scans, in order
    covered: np.ndarray  # mask over the FoldFits scans
    fitted: dict[str, CrossFitted] = field(default_factory=dict)  # every candidate, by name
    every_choice: dict[str, Choices] = field(default_factory=dict)  # each one's own choices


def run_pipeline(
    fits: FoldFits,
    candidates: list[Candidate],
    with_ensemble: bool,
    covered: list[int],
    groups: np.ndarray,
    studies: np.ndarray | None,
    target_recall: float,
) -> Outcome:
    """Cross-fit, choose and select on the `covered` folds of `fits` only."""
    mask = np.isin(fits.fold, covered)
    labels, groups = fits.labels[mask], np.asarray(groups)[mask]
    studies = None if studies is None else np.asarray(studies)[mask]
    fitted = [cross_fit(fits, candidate, covered) for candidate in candidates]
    scores = {f.name: macro_f1(labels, f.out_of_fold.argmax(axis=1)) for f in fitted}
    if with_ensemble:
        best = sorted(fitted, key=lambda f: -scores[f.name])[:ENSEMBLE_SIZE]
        fitted.append(ensemble(best, ENSEMBLE))
    rows, choices = [], {}
    for item in fitted:
        choices[item.name] = make_choices(labels, item.out_of_fold, groups, studies, target_recall)
        rows.append(candidate_row(item, labels, choices[item.name]))
    winner = max(rows, key=lambda row: row["macro_f1"])["name"]  # first listed wins a tie
    selected = next(item for item in fitted if item.name == winner)
    for row in rows:
        row["selected"] = row["name"] == winner
    fitted_by_name = {item.name: item for item in fitted}
    return Outcome(selected, choices[winner], rows, labels, mask, fitted_by_name, choices)


def candidate_row(item: CrossFitted, labels: np.ndarray, choices: Choices) -> dict:
    """A candidate's out-of-fold numbers with its own choices (what selection compares)."""
    from sklearn.metrics import f1_score

    probabilities = item.out_of_fold
    predicted = predicted_classes(probabilities, choices.class_weights)
    flagged = probabilities[:, URGENT_CLASS] >= choices.threshold
    urgent = labels == URGENT_CLASS
    hits = int((flagged & urgent).sum())
    return {
        "name": item.name,
        "description": item.description,
        "baseline": item.baseline,
        "seconds": round(item.seconds, 1),
        "macro_f1": round(macro_f1(labels, predicted), 4),
        "f1_per_class": [
            round(float(v), 3) for v in f1_score(labels, predicted, labels=[0, 1, 2], average=None)
        ],
        "urgent_recall": round(hits / max(int(urgent.sum()), 1), 4),
        "urgent_precision": round(hits / max(int(flagged.sum()), 1), 4),
        "threshold": round(choices.threshold, 4),
        "class_weights": choices.class_weights,
    }
