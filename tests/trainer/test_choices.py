"""The one policy for the choices: class weights, urgent threshold, study rule."""

from __future__ import annotations

import numpy as np
import pytest

from trainer.choices import (
    assured_threshold,
    choose_class_weights,
    choose_study_rule,
    make_choices,
    urgent_threshold,
)


def test_threshold_with_confidence_counts_a_hard_patient_once_per_draw() -> None:
    """Nine urgent patients scored 0.9 and one scored 0.2 (ten slices each), target 0.85:
    resampled slice by slice the threshold stays at 0.9; patient by patient the hard one
    comes twice too often, so the threshold must catch it."""
    labels = np.full(100, 2)
    scores = np.array([0.9] * 90 + [0.2] * 10)
    patients = np.repeat(np.arange(10), 10)
    assert assured_threshold(labels, scores, 0.85, None, 0.9) == pytest.approx(0.9)
    assert assured_threshold(labels, scores, 0.85, patients, 0.9) == pytest.approx(0.2)


def test_the_threshold_is_the_highest_that_holds() -> None:
    rng = np.random.default_rng(0)
    labels = rng.choice(3, size=400, p=[0.5, 0.2, 0.3])
    p2 = np.clip(0.3 * (labels == 2) + rng.random(400) * 0.8, 0, 1)
    groups = np.arange(400)
    threshold = urgent_threshold(labels, p2, groups, 0.9)
    recall = (p2[labels == 2] >= threshold).mean()
    assert recall >= 0.9  # the low end must reach it, so the pooled recall does too
    assert threshold > p2[labels == 2].min()  # not simply the lowest urgent score


def test_no_ceiling_and_no_urgent_scans_refused() -> None:
    labels = np.array([0, 2, 2, 2])
    assert assured_threshold(labels, np.array([0.1, 0.9, 0.95, 0.97]), 1.0) == pytest.approx(0.9)
    with pytest.raises(ValueError, match="no class-2"):
        assured_threshold(np.array([0, 1]), np.array([0.2, 0.9]), 0.95)


def test_class_weights_raise_class_1_only_where_it_is_under_called() -> None:
    labels = np.array([0] * 6 + [1] * 4 + [2] * 4)
    probabilities = np.array(
        [[0.7, 0.25, 0.05]] * 6 + [[0.55, 0.40, 0.05]] * 4 + [[0.1, 0.1, 0.8]] * 4
    )
    assert choose_class_weights(labels, probabilities) == [1.0, pytest.approx(1.4), 1.0]
    assert choose_class_weights(labels, np.eye(3)[labels]) == [1.0, 1.0, 1.0]


def test_study_rule_flags_urgent_studies_and_reports_healthy_ones() -> None:
    rng = np.random.default_rng(3)
    studies = np.repeat(np.arange(40), 5)
    labels = np.repeat(rng.choice(3, 40, p=[0.4, 0.2, 0.4]), 5)
    p2 = np.clip(0.6 * (labels == 2) + 0.35 * rng.random(200), 0, 1)
    probabilities = np.stack([1 - p2, np.zeros(200), p2], axis=1)
    rule = choose_study_rule(labels, probabilities, studies, 0.95)
    assert rule is not None and rule.top_k in (1, 2, 3, 5)
    assert rule.metrics["study_recall"] >= 0.95
    assert 0 <= rule.metrics["healthy_studies_flagged"] < 0.5
    assert choose_study_rule(labels, probabilities, None, 0.95) is None
    choices = make_choices(labels, probabilities, studies, studies, 0.95)
    assert choices.study_rule == rule and choices.class_weights[1] >= 1.0
