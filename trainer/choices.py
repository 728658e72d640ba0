"""The choices a published model carries, made by one policy on held-out (out-of-fold) scores:
the class weights of the predicted class, the urgent threshold and the study rule.

Urgent threshold: the highest threshold whose urgent recall still reaches the target at the
low end (5th percentile) of resamples of the urgent patients a fresh set of about
UNSEEN_PATIENTS patients would hold: slices of one patient look alike, so a patient the model
finds hard is one draw, not thirty. No fixed ceiling: a ceiling would be a choice made
elsewhere. Study rule: study P(urgent) = mean of its top-k slice P(urgent); per k the highest
threshold whose study recall reaches the target in STUDY_CONFIDENCE of resamples of the urgent
studies, and the k with the best study precision there.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from schemas.model_card import URGENT_CLASS, StudyRule, predicted_classes
from trainer.networks import NUM_CLASSES

UNSEEN_PATIENTS = 50  # the size of the fresh set of new patients the ranges speak for
INTERVAL = 0.90
RESAMPLES = 2000
BOOTSTRAP_LIMIT = 1000  # candidate thresholds and resampled units, to bound time and memory
STUDY_TOP_K = (1, 2, 3, 5)
STUDY_CONFIDENCE = 0.9
# P(class 1) is weighed by the value of this grid with the best held-out macro F1 (the
# smallest on ties): class 1 is the smallest class and plain argmax under-calls it
NON_URGENT_WEIGHTS = tuple(round(1 + step / 10, 1) for step in range(11))  # 1.0 .. 2.0


@dataclass
class Choices:
    """What the published model's card carries, chosen on held-out scores only."""

    class_weights: list[float]
    threshold: float
    study_rule: StudyRule | None


def make_choices(
    labels: np.ndarray,
    probabilities: np.ndarray,
    groups: np.ndarray,
    studies: np.ndarray | None,
    target_recall: float,
) -> Choices:
    """Class weights, urgent threshold and study rule for these held-out scores."""
    return Choices(
        choose_class_weights(labels, probabilities),
        urgent_threshold(labels, probabilities[:, URGENT_CLASS], groups, target_recall),
        choose_study_rule(labels, probabilities, studies, target_recall),
    )


def macro_f1(labels: np.ndarray, predicted: np.ndarray) -> float:
    from sklearn.metrics import f1_score

    return float(f1_score(labels, predicted, labels=list(range(NUM_CLASSES)), average="macro"))


def choose_class_weights(
    labels: np.ndarray, probabilities: np.ndarray, grid: tuple[float, ...] = NON_URGENT_WEIGHTS
) -> list[float]:
    """Class weights [1, w, 1], w from `grid`: the best held-out macro F1, smallest on ties."""
    scores = [macro_f1(labels, predicted_classes(probabilities, [1.0, w, 1.0])) for w in grid]
    best = max(scores)
    weight = next(w for w, score in zip(grid, scores, strict=True) if score >= best - 1e-12)
    return [1.0, float(weight), 1.0]


def urgent_threshold(
    labels: np.ndarray, p2: np.ndarray, groups: np.ndarray, target_recall: float
) -> float:
    """The policy's threshold: recall >= target at the low end of resamples of the urgent
    patients a fresh set of ~UNSEEN_PATIENTS patients would hold."""
    labels = np.asarray(labels)
    urgent_groups = len(np.unique(np.asarray(groups)[labels == URGENT_CLASS]))
    draw = round(UNSEEN_PATIENTS * urgent_groups / max(len(np.unique(groups)), 1))
    return assured_threshold(
        labels, p2, target_recall, groups, 1 - (1 - INTERVAL) / 2, draw=max(draw, 1)
    )


def assured_threshold(
    labels: np.ndarray,
    scores: np.ndarray,
    target_recall: float,
    units: np.ndarray | None = None,
    confidence: float = 0.95,
    draw: int | None = None,
) -> float:
    """The highest threshold on `scores` whose recall of class 2 reaches `target_recall` in
    `confidence` of bootstrap resamples of the urgent `units` (each scan its own when None;
    `draw` units per resample, default as many as there are). Seeded, reproducible."""
    if not 0 < target_recall <= 1:
        raise ValueError(f"target recall must be in (0, 1], got {target_recall}")
    urgent = np.asarray(labels) == URGENT_CLASS
    scores = np.asarray(scores, dtype=float)[urgent]
    if len(scores) == 0:
        raise ValueError("no class-2 scans in the held-out scans: cannot pick a threshold")
    rng = np.random.default_rng(0)
    candidates = np.unique(scores)  # at most BOOTSTRAP_LIMIT, always with the lowest score
    if len(candidates) > BOOTSTRAP_LIMIT:
        candidates = np.unique(np.quantile(scores, np.linspace(0, 1, BOOTSTRAP_LIMIT)))
    candidates = candidates[::-1]  # descending: the first that qualifies is the highest
    unit = np.arange(len(scores)) if units is None else np.asarray(units)[urgent]
    _, unit = np.unique(unit, return_inverse=True)
    if unit.max() >= BOOTSTRAP_LIMIT:  # many units: resample random bundles of them
        unit = rng.permutation(unit.max() + 1)[unit] % BOOTSTRAP_LIMIT
    first = len(candidates) - np.searchsorted(candidates[::-1], scores, side="right")
    hits = np.zeros((unit.max() + 1, len(candidates) + 1))
    np.add.at(hits, (unit, first), 1)
    hits = np.cumsum(hits, axis=1)[:, :-1]  # hits[u, j]: unit u's scans scoring >= cand. j
    sizes = np.bincount(unit).astype(float)
    count = len(sizes) if draw is None else max(1, int(draw))
    draws = rng.multinomial(count, np.full(len(sizes), 1 / len(sizes)), size=RESAMPLES)
    recall = (draws @ hits) / (draws @ sizes)[:, None]
    assured = np.quantile(recall, 1 - confidence, axis=0) >= target_recall - 1e-9
    return float(candidates[np.argmax(assured)])  # the lowest always qualifies


def study_labels_and_scores(
    labels: np.ndarray, p2: np.ndarray, studies: np.ndarray, top_k: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per study: its name, its label (majority of its slices, ties to the more serious) and
    its P(urgent) by the top-k rule."""
    names, inverse = np.unique(studies, return_inverse=True)
    study_label = np.zeros(len(names), dtype=int)
    score = np.zeros(len(names))
    for index in range(len(names)):
        members = inverse == index
        votes = np.bincount(np.asarray(labels)[members], minlength=NUM_CLASSES)
        study_label[index] = len(votes) - 1 - np.argmax(votes[::-1])
        score[index] = np.sort(p2[members])[::-1][:top_k].mean()
    return names, study_label, score


def choose_study_rule(
    labels: np.ndarray, probabilities: np.ndarray, studies: np.ndarray | None, target_recall: float
) -> StudyRule | None:
    """The study rule for held-out scores grouped by study (None without studies)."""
    if studies is None:
        return None
    best = None
    for top_k in STUDY_TOP_K:
        _, study_label, score = study_labels_and_scores(
            labels, probabilities[:, URGENT_CLASS], np.asarray(studies), top_k
        )
        urgent = study_label == URGENT_CLASS
        if not urgent.any():
            return None
        threshold = assured_threshold(study_label, score, target_recall, None, STUDY_CONFIDENCE)
        flagged = score >= threshold
        precision = (flagged & urgent).sum() / max(flagged.sum(), 1)
        if best is None or precision > best[0] + 1e-9:
            best = (precision, top_k, threshold, study_label, flagged)
    precision, top_k, threshold, study_label, flagged = best
    urgent, healthy = study_label == URGENT_CLASS, study_label == 0
    return StudyRule(
        top_k=top_k,
        threshold=float(threshold),
        description=(
            f"study P(urgent) = mean of its {top_k} highest slice P(urgent); urgent when >= "
            f"{threshold:.4f} (study recall >= {target_recall} in {STUDY_CONFIDENCE:.0%} of "
            "bootstrap resamples of the urgent out-of-fold studies)"
        ),
        metrics={
            "studies": len(study_label),
            "urgent_studies": int(urgent.sum()),
            "study_recall": float((flagged & urgent).sum() / max(urgent.sum(), 1)),
            "study_precision": float(precision),
            "healthy_studies_flagged": float(flagged[healthy].mean())
            if healthy.any()
            else math.nan,
            "basis": "out-of-fold predictions of the selected candidate",
        },
    )
