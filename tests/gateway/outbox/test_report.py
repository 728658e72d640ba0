"""StudyReport's checks and the identifiers derived from a decision."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from gateway.outbox.report import (
    DeliveryError,
    derived_uid,
    dicom_study_uid,
    hl7_message_id,
)
from tests.gateway.outbox.conftest import make_report


def test_derived_identifiers_are_stable_and_per_decision() -> None:
    report = make_report()
    assert derived_uid(report, "sr") == derived_uid(make_report(), "sr")
    assert derived_uid(report, "sr") != derived_uid(replace(report, decision=2), "sr")
    assert derived_uid(report, "s", per_decision=False) == derived_uid(
        replace(report, decision=2), "s", per_decision=False
    )
    assert derived_uid(report, "sr").startswith("2.25.") and len(derived_uid(report, "sr")) <= 64
    assert len(hl7_message_id(report)) == 20 and hl7_message_id(report) == hl7_message_id(report)


def test_study_uid_of_our_own_studies() -> None:
    assert dicom_study_uid(make_report()) == "1.2.826.0.1.3680043.8.498.1001"
    ours = dicom_study_uid(make_report(study_uid="triage:abc"))
    assert ours.startswith("2.25.") and ours == dicom_study_uid(make_report(study_uid="triage:x"))


def test_checks_and_utc() -> None:
    local = datetime(2026, 12, 1, 13, 30, tzinfo=timezone(timedelta(hours=1)))
    assert make_report(decided_at=local).decided_at.utcoffset() == timedelta(0)
    assert make_report().class_name == "urgent"
    assert make_report(predicted=1, urgent=True).headline == "urgent"
    for bad in (
        {"predicted": 3},
        {"p2": 1.5},
        {"decision": 0},
        {"slices": 0},
        {"decided_at": datetime(2026, 12, 1)},
        {"key_image": np.zeros((32, 32), np.uint8)},
        {"saliency": np.full((64, 64), np.nan)},
    ):
        with pytest.raises(ValueError):
            make_report(**bad)


def test_delivery_error_is_short() -> None:
    error = DeliveryError("x\n" * 500, retryable=True)
    assert len(error.reason) <= 200 and "\n" not in str(error) and error.retryable
