"""The patient and study modules kept as received: with their character set, absent elements
absent, empty ones empty; a malformed or oversized header refuses the instance by name."""

from __future__ import annotations

import io
import json

import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset

from imaging.canonical import ScanError
from imaging.patient_modules import MAX_MODULES_CHARS, copy_modules, modules_dataset, modules_json

NAME = "Müller-Łukasiewicz^Zoë"


def received(**changes: object) -> Dataset:
    """An instance header as it comes off the wire (UTF-8, read back by pydicom)."""
    dataset = Dataset()
    dataset.SpecificCharacterSet = "ISO_IR 192"
    dataset.PatientName = NAME
    dataset.PatientID = "PAT-0042"
    dataset.IssuerOfPatientID = "HOSP"
    dataset.PatientBirthDate = "19610203"
    dataset.PatientSex = "F"
    dataset.StudyDate, dataset.StudyTime, dataset.StudyID = "20261201", "101500", "S17"
    dataset.ReferringPhysicianName = ""  # type 2, empty: kept present and empty
    dataset.AccessionNumber = "ACC-77"
    dataset.StudyInstanceUID = "1.2.826.0.1.3680043.8.498.1001"
    dataset.Modality = "CT"
    for keyword, value in changes.items():
        setattr(dataset, keyword, value)
    meta = FileMetaDataset()
    meta.TransferSyntaxUID = "1.2.840.10008.1.2.1"
    dataset.file_meta = meta
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=False)
    return pydicom.dcmread(io.BytesIO(buffer.getvalue()), force=True)


def test_the_modules_are_kept_with_their_character_set() -> None:
    kept = modules_dataset(modules_json(received(), "instance-1"))
    assert kept.SpecificCharacterSet == "ISO_IR 192"
    assert str(kept.PatientName) == NAME
    assert (kept.PatientID, kept.IssuerOfPatientID) == ("PAT-0042", "HOSP")
    assert (kept.PatientBirthDate, kept.PatientSex) == ("19610203", "F")
    assert (kept.StudyDate, kept.StudyTime, kept.StudyID) == ("20261201", "101500", "S17")
    assert "ReferringPhysicianName" in kept and kept.ReferringPhysicianName == ""
    assert "PatientComments" not in kept  # absent stays absent
    assert "StudyInstanceUID" not in kept and "Modality" not in kept  # not those modules


def test_copied_modules_are_written_in_the_received_encoding() -> None:
    target = Dataset()
    target.PatientName = "placeholder"
    copy_modules(modules_dataset(modules_json(received(), "instance-1")), target)
    target.file_meta = FileMetaDataset()
    target.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.1"
    buffer = io.BytesIO()
    target.save_as(buffer, enforce_file_format=False)
    assert NAME.encode("utf-8") in buffer.getvalue()
    assert str(pydicom.dcmread(io.BytesIO(buffer.getvalue()), force=True).PatientName) == NAME


def test_an_instance_without_patient_or_study_elements_keeps_none() -> None:
    dataset = Dataset()
    dataset.Modality = "CT"
    assert modules_json(dataset, "instance-1") is None
    assert len(modules_dataset(None)) == 0


def test_oversized_modules_refuse_the_instance_naming_the_size() -> None:
    other_ids = []
    for number in range(MAX_MODULES_CHARS // 64):  # each item over 64 characters as JSON
        item = Dataset()
        item.PatientID = f"OTHER-{number:058d}"
        other_ids.append(item)
    with pytest.raises(ScanError) as refused:
        modules_json(received(OtherPatientIDsSequence=other_ids), "instance-7")
    assert "instance-7" in str(refused.value) and "over" in str(refused.value)
    assert "OTHER-" not in str(refused.value)


def test_the_json_is_dicom_json() -> None:
    document = json.loads(modules_json(received(), "instance-1"))
    assert document["00100010"] == {"vr": "PN", "Value": [{"Alphabetic": NAME}]}
    assert document["00080005"]["Value"] == ["ISO_IR 192"]
