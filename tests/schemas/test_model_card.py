"""The model card's sorting rule: class weights, their defaults and their limits."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from schemas.model_card import ModelCard

CARD = {"version": "v1", "created_at": "2026-01-01T00:00:00Z", "urgent_threshold": 0.3}


def test_a_card_without_class_weights_sorts_by_plain_argmax() -> None:
    """Cards published before class weights existed load unchanged and mean argmax."""
    card = ModelCard.model_validate_json(json.dumps(CARD))
    probabilities = np.array([[0.5, 0.4, 0.1], [0.2, 0.3, 0.5]])
    assert card.class_weights == [1.0, 1.0, 1.0]
    assert card.predicted_classes(probabilities).tolist() == [0, 2]


def test_class_weights_change_the_predicted_class_only() -> None:
    plain = ModelCard(**CARD)
    weighed = ModelCard(**CARD, class_weights=[1.0, 1.5, 1.0])
    probabilities = np.array(
        [[0.5, 0.4, 0.1], [0.6, 0.3, 0.1], [0.25, 0.2, 0.55], [0.35, 0.35, 0.3], [0.45, 0.3, 0.25]]
    )
    assert plain.predicted_classes(probabilities).tolist() == [0, 0, 2, 0, 0]
    assert weighed.predicted_classes(probabilities).tolist() == [1, 0, 2, 1, 0]
    # the urgent flag is the threshold's alone: the same with and without weights, and it
    # flags scans whose predicted class is not 2
    flags = [False, False, True, True, False]
    assert plain.is_urgent(probabilities).tolist() == flags
    assert weighed.is_urgent(probabilities).tolist() == flags


def test_the_urgent_flag_follows_the_cards_threshold() -> None:
    probabilities = np.array([[0.7, 0.1, 0.2], [0.6, 0.1, 0.3], [0.2, 0.1, 0.7]])
    assert ModelCard(**CARD).is_urgent(probabilities).tolist() == [False, True, True]
    lower = ModelCard(**{**CARD, "urgent_threshold": 0.2})
    assert lower.is_urgent(probabilities).tolist() == [True, True, True]


@pytest.mark.parametrize("weights", [[1.0, 0.0, 1.0], [1.0, -2.0, 1.0], [1.0, 1.0], [1, "inf", 1]])
def test_class_weights_must_be_three_positive_finite_numbers(weights: list) -> None:
    with pytest.raises(ValidationError, match="class_weights"):
        ModelCard(**CARD, class_weights=weights)


def test_a_study_without_a_rule_is_its_most_suspicious_slice_against_the_slice_threshold() -> None:
    card = ModelCard(**CARD)  # threshold 0.3, no study rule (an older card)
    slices = np.array([[0.8, 0.1, 0.1], [0.5, 0.1, 0.4], [0.2, 0.7, 0.1]])
    decision = card.decide_study(slices)
    assert (decision.p2, decision.urgent, decision.top_slice, decision.predicted) == (
        0.4,
        True,
        1,
        2,
    )
    calm = card.decide_study(slices[[0, 2]])
    assert not calm.urgent and calm.predicted == 1 and calm.top_slice == 0  # tie: the more serious


def test_a_study_rule_averages_the_top_k_slices_and_votes_the_class() -> None:
    from schemas.model_card import StudyRule

    card = ModelCard(**CARD, study_rule=StudyRule(top_k=2, threshold=0.3))
    slices = np.array([[0.8, 0.1, 0.1], [0.5, 0.1, 0.4], [0.2, 0.7, 0.1], [0.1, 0.8, 0.1]])
    decision = card.decide_study(slices)
    assert decision.p2 == pytest.approx(0.25) and not decision.urgent
    assert decision.predicted == 1  # two non-urgent slices, one healthy: ties go up
    with pytest.raises(ValueError, match="softmax rows"):
        card.decide_study(np.zeros((0, 3)))


@settings(max_examples=60, deadline=None)
@given(
    rows=st.lists(
        st.tuples(*[st.floats(0.001, 1.0)] * 3).map(lambda t: [v / sum(t) for v in t]),
        min_size=1,
        max_size=20,
    ),
    top_k=st.integers(1, 5),
    threshold=st.floats(0.0, 1.0),
    with_rule=st.booleans(),
    weights=st.tuples(*[st.floats(0.2, 5.0)] * 3),
)
def test_one_slice_studies_decided_at_once_match_decide_study(
    rows: list, top_k: int, threshold: float, with_rule: bool, weights: tuple
) -> None:
    from schemas.model_card import StudyRule

    rule = StudyRule(top_k=top_k, threshold=threshold) if with_rule else None
    card = ModelCard(**CARD, study_rule=rule, class_weights=list(weights))
    probabilities = np.array(rows)
    at_once = card.decide_one_slice_studies(probabilities)
    one_by_one = [card.decide_study(probabilities[[i]]) for i in range(len(rows))]
    assert [d.model_dump() for d in at_once] == [d.model_dump() for d in one_by_one]
