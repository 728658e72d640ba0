"""A key image for the PACS: the most suspicious slice, upscaled, with the saliency blended in
colour and a burned-in "AI triage: <class>, not a diagnosis" banner.

A DICOM Secondary Capture (highdicom `SCImage`, RGB, 8 bit) in the study of the report, in a
series of our own (one series per study, one instance per decision), with UIDs derived from
our study id and decision, so a resend is the same instance. BurnedInAnnotation is YES: the
banner is part of the pixels, so it shows on any viewer. PatientOrientation is left empty
(type 2): a 64x64 canonical slice has lost its orientation. The patient and study modules
are the study's as received, copied exactly with their character set
(`gateway.outbox.patient`); Manufacturer "triage" marks the image as ours, so the receiver
never takes it for a slice when a PACS forwards the study again.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from pydicom import Dataset
from pydicom.uid import SecondaryCaptureImageStorage

from gateway.outbox.patient import patient_and_study
from gateway.outbox.report import (
    KeyImageReference,
    StudyReport,
    derived_uid,
    dicom_study_uid,
)
from imaging.identity import OUR_MANUFACTURER
from imaging.patient_modules import copy_modules

SIZE = 256
BANNER = 30  # pixel rows of the banner at the top
SERIES_NUMBER = 9902
MANUFACTURER = OUR_MANUFACTURER  # marks the image as ours: never a slice when it comes back
ALPHA = 0.6  # opacity of the overlay where saliency is 1


def key_image_series_uid(report: StudyReport) -> str:
    return derived_uid(report, "key-image-series", per_decision=False)


def key_image_sop_uid(report: StudyReport) -> str:
    return derived_uid(report, "key-image")


def key_image_reference(report: StudyReport) -> KeyImageReference:
    """The key image's identity, derived as `build_key_image` derives it (no pixels needed)."""
    return KeyImageReference(
        key_image_series_uid(report), key_image_sop_uid(report), SecondaryCaptureImageStorage
    )


def banner_text(report: StudyReport) -> str:
    return f"AI triage: {report.headline}, not a diagnosis"


def _heat_colours(heat: np.ndarray) -> np.ndarray:
    """Saliency [0, 1] -> RGB in [0, 1] along a dark red -> red -> yellow ramp."""
    red = np.clip(0.5 + 1.5 * heat, 0, 1)
    green = np.clip(2.0 * heat - 0.8, 0, 1)
    blue = np.zeros_like(heat)
    return np.stack([red, green, blue], axis=-1)


def render_key_image(report: StudyReport) -> np.ndarray:
    """The key image's pixels: RGB uint8 (256, 256, 3)."""
    if report.key_image is None:
        raise ValueError("the report holds no key image")
    gray = Image.fromarray(report.key_image, mode="L").resize((SIZE, SIZE), Image.BILINEAR)
    base = np.asarray(gray, dtype=np.float64)[..., None].repeat(3, axis=-1) / 255.0
    if report.saliency is not None:
        heat_image = Image.fromarray(report.saliency.astype(np.float32), mode="F")
        heat = np.clip(np.asarray(heat_image.resize((SIZE, SIZE), Image.BILINEAR)), 0, 1)
        weight = (ALPHA * heat)[..., None]
        # the colour keeps the slice's shading, so the anatomy stays readable under it
        tint = _heat_colours(heat) * (0.35 + 0.65 * base)
        base = base * (1 - weight) + tint * weight
    image = Image.fromarray(np.rint(base * 255).astype(np.uint8), mode="RGB")
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 0, SIZE - 1, BANNER - 1), fill=(0, 0, 0))
    fonts = (ImageFont.load_default(size=12), ImageFont.load_default(size=11))
    colour = (255, 80, 80) if report.urgent else (255, 255, 255)
    detail = f"P(urgent) {report.p2:.3f}  model {report.model_version}"
    lines = ((1, banner_text(report), colour), (16, detail, (200, 200, 200)))
    for (row, text, fill), font in zip(lines, fonts, strict=True):
        while len(text) > 8 and draw.textlength(text, font=font) > SIZE - 8:
            text = text[:-1]  # a long model version is cut, never wrapped over the slice
        draw.text((4, row), text, fill=fill, font=font)
    return np.asarray(image, dtype=np.uint8)


def build_key_image(report: StudyReport, our_ae_title: str) -> Dataset:
    """The key image as a Secondary Capture dataset in the report's study (see module doc)."""
    import highdicom as hd

    pixels = render_key_image(report)
    moment = report.decided_at
    image = hd.sc.SCImage(
        pixel_array=pixels,
        photometric_interpretation=hd.PhotometricInterpretationValues.RGB,
        bits_allocated=8,
        coordinate_system=hd.CoordinateSystemNames.PATIENT,
        study_instance_uid=dicom_study_uid(report),
        series_instance_uid=key_image_series_uid(report),
        series_number=SERIES_NUMBER,
        sop_instance_uid=key_image_sop_uid(report),
        instance_number=report.decision,
        manufacturer=MANUFACTURER,
        patient_id=report.patient_id or "",
        accession_number=report.accession or "",
        patient_orientation=("L", "P"),  # required by highdicom for PATIENT; emptied below
    )
    image.PatientOrientation = ""  # type 2: unknown for a canonical 64x64 slice
    copy_modules(patient_and_study(report), image)  # exactly as received, character set too
    image.SOPClassUID = SecondaryCaptureImageStorage
    image.BurnedInAnnotation = "YES"
    image.ImageType = ["DERIVED", "SECONDARY"]
    image.SeriesDescription = "AI triage key image (not a diagnosis)"
    image.ImageComments = banner_text(report)
    image.DerivationDescription = "most suspicious slice with occlusion saliency overlay"
    image.StationName = our_ae_title[:16]
    image.ContentDate = image.SeriesDate = moment.strftime("%Y%m%d")
    image.ContentTime = image.SeriesTime = moment.strftime("%H%M%S")
    image.InstanceCreationDate = moment.strftime("%Y%m%d")
    image.InstanceCreationTime = moment.strftime("%H%M%S")
    image.TimezoneOffsetFromUTC = "+0000"
    for equipment in image.get("ContributingEquipmentSequence", []):
        equipment.ContributionDateTime = moment.strftime("%Y%m%d%H%M%S")  # not "now"
    if report.has_dicom_top_slice:
        source = Dataset()
        source.ReferencedSOPClassUID = report.top_sop_class_uid
        source.ReferencedSOPInstanceUID = report.top_sop_uid
        image.SourceImageSequence = [source]
    image.file_meta.SourceApplicationEntityTitle = our_ae_title[:16]
    return image
