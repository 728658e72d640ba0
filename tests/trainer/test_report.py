from __future__ import annotations

import numpy as np
import pytest

from trainer.report import (
    choose_class_weights,
    choose_urgent_threshold,
    evaluate,
    select_best,
    urgent_flag_metrics,
)


@pytest.mark.parametrize("target", [0.5, 0.8, 0.95, 1.0])
def test_threshold_reaches_the_requested_validation_recall(target: float) -> None:
    rng = np.random.default_rng(0)
    labels = rng.choice(3, size=400, p=[0.5, 0.2, 0.3])
    urgent_probability = np.clip(0.3 * (labels == 2) + rng.random(400) * 0.8, 0, 1)
    threshold = choose_urgent_threshold(labels, urgent_probability, target)
    assert urgent_flag_metrics(labels, urgent_probability, threshold)["urgent_recall"] >= target
    # the highest such threshold: any higher one misses the target
    higher = np.min(urgent_probability[urgent_probability > threshold])
    assert urgent_flag_metrics(labels, urgent_probability, higher)["urgent_recall"] < target


def test_threshold_ceiling_only_lowers_it() -> None:
    labels = np.array([0, 1, 2, 2, 2, 2])
    urgent_probability = np.array([0.1, 0.3, 0.9, 0.95, 0.97, 0.99])
    assert choose_urgent_threshold(labels, urgent_probability, 1.0) == pytest.approx(0.9)
    capped = choose_urgent_threshold(labels, urgent_probability, 1.0, ceiling=0.5)
    assert capped == pytest.approx(0.5)
    assert choose_urgent_threshold(labels, urgent_probability, 1.0, ceiling=0.95) == 0.9


def test_threshold_needs_urgent_cases() -> None:
    with pytest.raises(ValueError, match="no class-2"):
        choose_urgent_threshold(np.array([0, 1]), np.array([0.2, 0.9]), 0.95)


def test_evaluate_reports_the_confusion_matrix_and_averages() -> None:
    labels = np.array([0, 0, 1, 2, 2, 2])
    probabilities = np.eye(3)[[0, 1, 1, 2, 2, 0]]
    report = evaluate(labels, probabilities, threshold=0.5)
    assert report["confusion_matrix"] == [[1, 1, 0], [0, 1, 0], [1, 0, 2]]
    assert report["accuracy"] == pytest.approx(4 / 6)
    assert report["per_class"]["urgent"]["recall"] == pytest.approx(2 / 3)
    assert report["per_class"]["healthy"]["precision"] == pytest.approx(0.5)
    assert report["urgent_precision"] == pytest.approx(1.0)
    expected_macro = np.mean([0.5, 2 / 3, 0.8])
    assert report["macro_f1"] == pytest.approx(expected_macro)


def test_class_weights_raise_class_1_only_where_it_is_under_called() -> None:
    """Class-1 scans scored (0.55, 0.40, 0.05) are lost to class 0 by plain argmax; a weight
    of 1.4 (the smallest that wins them without costing the healthy (0.7, 0.25, 0.05)
    scans) recovers them. Where argmax is already right, the weight stays 1."""
    labels = np.array([0] * 6 + [1] * 4 + [2] * 4)
    probabilities = np.array(
        [[0.7, 0.25, 0.05]] * 6 + [[0.55, 0.40, 0.05]] * 4 + [[0.1, 0.1, 0.8]] * 4
    )
    weights = choose_class_weights(labels, probabilities)
    assert weights == [1.0, pytest.approx(1.4), 1.0]
    plain, weighed = evaluate(labels, probabilities), evaluate(labels, probabilities, None, weights)
    assert (
        weighed["per_class"]["non-urgent"]["recall"]
        == 1.0
        > plain["per_class"]["non-urgent"]["recall"]
    )
    assert weighed["macro_f1"] == 1.0 and weighed["class_weights"] == weights
    assert choose_class_weights(labels, np.eye(3)[labels]) == [1.0, 1.0, 1.0]


def test_select_best_takes_the_highest_validation_macro_f1() -> None:
    assert select_best({"a": 0.4, "b": 0.7, "c": 0.6}) == "b"
    assert select_best({"a": 0.7, "b": 0.7}) == "a"


def test_threshold_with_confidence_counts_a_hard_patient_once_per_draw() -> None:
    """Nine urgent patients scored 0.9 and one scored 0.2 (ten slices each), target 0.85:
    the slices reach it at 0.9, and slices resampled one by one nearly always do; resampled
    patient by patient, the hard one comes twice too often, so the threshold must catch it."""
    labels = np.full(100, 2)
    scores = np.array([0.9] * 90 + [0.2] * 10)
    patients = np.repeat(np.arange(10), 10)
    assert choose_urgent_threshold(labels, scores, 0.85) == pytest.approx(0.9)
    by_slice = choose_urgent_threshold(labels, scores, 0.85, confidence=0.9)
    assert by_slice == pytest.approx(0.9)
    by_patient = choose_urgent_threshold(labels, scores, 0.85, groups=patients, confidence=0.9)
    assert by_patient == pytest.approx(0.2)
    assert choose_urgent_threshold(labels, scores, 0.85, 0.15, patients, 0.9) == 0.15  # ceiling


def test_threshold_with_confidence_stays_bounded_on_many_scans() -> None:
    """60,000 urgent scans without groups: bundled resampling, close to the plain threshold."""
    rng = np.random.default_rng(1)
    scores = rng.uniform(0, 1, 60_000)
    labels = np.full(len(scores), 2)
    plain = choose_urgent_threshold(labels, scores, 0.9)
    assured = choose_urgent_threshold(labels, scores, 0.9, confidence=0.9)
    assert plain - 0.01 < assured <= plain
