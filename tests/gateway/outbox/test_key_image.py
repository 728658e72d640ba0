"""The key image as built, before any PACS sees it: a Secondary Capture in the report's study,
in a series of our own, the saliency blended in colour, and the same instance on a resend
(C-STORE of it to a real PACS: tests/gateway/outbox/test_cstore.py)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from gateway.outbox.key_image import banner_text, build_key_image, render_key_image
from gateway.outbox.report import StudyReport


def test_the_key_image_is_in_the_study_in_a_series_of_our_own(report: StudyReport) -> None:
    image = build_key_image(report, "TRIAGE")
    assert image.StudyInstanceUID == report.study_uid
    assert image.SeriesInstanceUID != report.top_series_uid
    assert image.PatientID == report.patient_id and image.AccessionNumber == report.accession
    assert image.PhotometricInterpretation == "RGB" and image.BurnedInAnnotation == "YES"
    assert "not a diagnosis" in banner_text(report)
    again = build_key_image(report, "TRIAGE")
    assert (again.SOPInstanceUID, again.SeriesInstanceUID) == (
        image.SOPInstanceUID,
        image.SeriesInstanceUID,
    )
    redecided = build_key_image(replace(report, decision=2), "TRIAGE")
    assert redecided.SOPInstanceUID != image.SOPInstanceUID
    assert redecided.SeriesInstanceUID == image.SeriesInstanceUID


def test_the_saliency_is_blended_in_colour_below_the_banner(report: StudyReport) -> None:
    pixels = render_key_image(report).astype(int)
    assert pixels.shape == (256, 256, 3)
    plain = render_key_image(replace(report, saliency=None)).astype(int)
    below_banner = np.s_[40:, :]
    changed = np.any(pixels[below_banner] != plain[below_banner], axis=-1)
    assert changed.mean() > 0.05  # the overlay coloured part of the slice
    assert np.abs(pixels[below_banner][..., 0] - pixels[below_banner][..., 2]).max() > 40
    grey = plain[below_banner]
    assert np.array_equal(grey[..., 0], grey[..., 2])  # without saliency: the slice in grey
