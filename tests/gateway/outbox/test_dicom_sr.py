"""The SR built with highdicom: the study it belongs to, the evidence it names, the same bytes
on a resend (C-STORE to a real PACS: tests/gateway/outbox/test_cstore.py)."""

from __future__ import annotations

import time
from pathlib import Path

from pydicom.uid import UID

from gateway.outbox.dicom_sr import build_sr
from gateway.outbox.key_image import build_key_image, key_image_reference
from gateway.outbox.report import StudyReport
from tests.gateway.outbox.conftest import make_report


def test_a_study_of_our_own_gets_a_valid_study_uid() -> None:
    """Non-DICOM input: no slice identity, study uid `triage:<key>`; SR and key image share
    one valid, derived StudyInstanceUID; the SR names the key image only when given it."""
    report = make_report(
        study_uid="triage:batch-7/exam-3",
        top_series_uid=None,
        top_sop_uid=None,
        top_sop_class_uid=None,
    )
    image = build_key_image(report, "TRIAGE")
    sr = build_sr(report, "TRIAGE", key_image=key_image_reference(report))
    assert UID(sr.StudyInstanceUID).is_valid and sr.StudyInstanceUID == image.StudyInstanceUID
    evidence = sr.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0]
    assert evidence.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == image.SOPInstanceUID
    alone = build_sr(report, "TRIAGE")  # a calm study: the SR goes without a key image
    assert "CurrentRequestedProcedureEvidenceSequence" not in alone
    assert alone.StudyInstanceUID == image.StudyInstanceUID
    assert alone.SOPInstanceUID == sr.SOPInstanceUID


def test_evidence_names_what_is_sent(report: StudyReport) -> None:
    def referenced(sr) -> set[str]:  # noqa: ANN001
        return {
            sop.ReferencedSOPInstanceUID
            for study in sr.CurrentRequestedProcedureEvidenceSequence
            for series in study.ReferencedSeriesSequence
            for sop in series.ReferencedSOPSequence
        }

    image = build_key_image(report, "TRIAGE")
    named = key_image_reference(report)  # the SR names the key image before it is built
    assert (named.series_uid, named.sop_uid, named.sop_class_uid) == (
        image.SeriesInstanceUID,
        image.SOPInstanceUID,
        image.SOPClassUID,
    )
    assert referenced(build_sr(report, "TRIAGE")) == {report.top_sop_uid}
    assert referenced(build_sr(report, "TRIAGE", key_image=key_image_reference(report))) == {
        report.top_sop_uid,
        image.SOPInstanceUID,
    }


def test_sr_is_deterministic_to_the_byte(report: StudyReport, tmp_path: Path) -> None:
    first, second = tmp_path / "1.dcm", tmp_path / "2.dcm"
    build_sr(report, "TRIAGE").save_as(first, enforce_file_format=True)
    time.sleep(1.1)
    build_sr(report, "TRIAGE").save_as(second, enforce_file_format=True)
    assert first.read_bytes() == second.read_bytes()
