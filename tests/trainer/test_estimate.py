"""Both validation designs re-run the pipeline and score scans it never saw."""

from __future__ import annotations

import numpy as np
import pytest

from tests.trainer.fakes import intensity_scans, no_balancing, prior, reader
from trainer import estimate as E
from trainer.crossfit import FoldFits, fold_of_scans


def test_later_patients_are_the_latest_of_each_class() -> None:
    labels = np.array([0] * 10 + [2] * 10)
    groups = np.arange(20)
    numbers = np.array(list(range(10, 0, -1)) + list(range(100, 110)))
    later = E.later_patients(labels, groups, numbers)
    assert later.sum() == 6  # 30 % of each class's 10 patients
    assert set(numbers[later & (labels == 0)]) == {8, 9, 10}
    assert set(numbers[later & (labels == 2)]) == {107, 108, 109}


@pytest.fixture()
def fits(monkeypatch) -> FoldFits:  # noqa: ANN001
    no_balancing(monkeypatch)
    labels = np.repeat([0, 1, 2, 2, 0, 1, 2, 0], 4)
    groups = np.repeat(np.arange(16), 2)
    return FoldFits(intensity_scans(labels), labels, fold_of_scans(labels, groups, 3, 0))


def test_nested_scores_every_scan_with_a_pipeline_that_never_saw_it(fits) -> None:  # noqa: ANN001
    seen: list[set] = []
    groups = np.repeat(np.arange(16), 2)
    scored = E.nested(fits, [prior(seen), reader()], False, groups, groups, 0.95)
    assert scored.winners == ["reader"] * 3 and len(scored.labels) == len(fits.labels)
    summary = E.summarise(scored)
    assert summary["macro_f1"]["low"] == summary["macro_f1"]["estimate"] == 1.0
    assert summary["study_urgent_flagged"]["estimate"] > 0.5  # thresholds sit at the lowest seen
    assert summary["study_healthy_flagged"]["estimate"] == 0.0


def test_temporal_trains_on_earlier_patients_only(fits) -> None:  # noqa: ANN001
    seen: list[set] = []
    groups = np.repeat(np.arange(16), 2)
    numbers = np.arange(len(fits.labels))
    scored = E.temporal(fits, [prior(seen)], False, groups, None, 0.95, numbers)
    later = set(np.flatnonzero(E.later_patients(fits.labels, groups, numbers)).tolist())
    assert seen and all(not s & later for s in seen)
    assert len(scored.labels) == len(later)


def _design(name: str, f1_low: float, recall_low: float) -> dict:
    r = lambda low: {"estimate": low + 0.05, "low": low, "high": low + 0.1}  # noqa: E731
    return {"design": name, "macro_f1": r(f1_low), "urgent_recall": r(recall_low),
            "urgent_precision": r(0.8), "study_urgent_flagged": r(0.96),
            "study_healthy_flagged": r(0.1)}  # fmt: skip


def test_the_card_states_the_pessimistic_design_and_warns_on_misses() -> None:
    unseen = E.expected_unseen(
        [_design("nested", 0.72, 0.96), _design("temporal", 0.55, 0.90)], "b"
    )
    assert unseen.design == "temporal" and unseen.macro_f1.low == 0.55
    assert unseen.meets_target is False
    assert [w.split(":")[0] for w in unseen.warnings] == ["macro f1", "urgent recall"]
    assert set(unseen.designs) == {"nested", "temporal"}
    mixed = E.expected_unseen(  # each target from the design worse on it
        [_design("nested", 0.55, 0.96), _design("temporal", 0.72, 0.90)], "b"
    )
    assert mixed.macro_f1.low == 0.55 and mixed.urgent_recall.low == 0.90
    assert "macro_f1 from nested" in mixed.basis and "urgent_recall from temporal" in mixed.basis
    fine = E.expected_unseen([_design("nested", 0.72, 0.96)], "b")
    assert fine.warnings == [] and fine.meets_target


def test_every_candidate_is_scored_on_the_held_out_scans(fits) -> None:  # noqa: ANN001
    groups = np.repeat(np.arange(16), 2)
    summary = E.summarise(E.nested(fits, [prior(), reader()], True, groups, None, 0.95))
    rows = {row["name"]: row for row in summary["held_out_candidates"]}
    assert set(rows) == {"prior", "reader", "ensemble_best"}
    assert rows["reader"]["macro_f1"] == 1.0 > rows["prior"]["macro_f1"]
