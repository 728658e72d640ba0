"""The DICOM receiver in-process: a real pynetdicom sender, a real SQLite ledger.

Each test starts the receiver on a free localhost port and asserts the statuses a sender
gets; where a held study is closed, the idle-study closer runs with an injected clock and
publisher (no broker, no sleeps; the closer alone: tests/gateway/intake/test_study_closer.py).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from datetime import timedelta

import numpy as np
import pytest
import sqlalchemy as sa

from gateway.intake.receiver import (
    CANNOT_UNDERSTAND,
    CONTRADICTS_STUDY,
    CT,
    OUT_OF_RESOURCES,
    SUCCESS,
    VERIFICATION,
    Receiver,
    StoreContext,
    start_receiver,
)
from gateway.intake.study_closer import StudyCloser
from ledger.database import engine_for, upgrade_schema
from ledger.statements import scan_pixels, scans, studies
from schemas.settings import Settings
from schemas.tables import utcnow
from tests.fixtures_model import brightness_scans
from tests.gateway.intake.conftest import Published

EXPLICIT_LE, IMPLICIT_LE = "1.2.840.10008.1.2.1", "1.2.840.10008.1.2"
RLE, JPEG_LS = "1.2.840.10008.1.2.5", "1.2.840.10008.1.2.4.80"
STORED_MAX = 4080  # stored values 0..4080 (12 bits), windowed onto 0..255 as stored / 16


def ct_instance(
    study_uid: str, number: int, mean: int, size: int = 512, seed: int | None = None
) -> object:
    """A 16-bit CT slice (size x size) whose canonical scan has about this mean brightness:
    the brightness model's test scan, enlarged, stored in HU with a window onto 0..255."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import generate_uid

    scan = brightness_scans([mean], seed=number if seed is None else seed)[0]
    stored = np.kron(scan.astype(np.uint16) * 16, np.ones((size // 64, size // 64), np.uint16))
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CT
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = EXPLICIT_LE
    dataset = Dataset()
    dataset.file_meta = meta
    dataset.SOPClassUID, dataset.SOPInstanceUID = CT, meta.MediaStorageSOPInstanceUID
    dataset.StudyInstanceUID, dataset.SeriesInstanceUID = study_uid, f"{study_uid}.1"
    dataset.Modality, dataset.InstanceNumber = "CT", number
    dataset.AccessionNumber, dataset.PatientID = f"ACC{study_uid[-6:]}", "PAT-TEST"
    dataset.ImagePositionPatient = [0, 0, float(number)]
    dataset.Rows = dataset.Columns = size
    dataset.SamplesPerPixel, dataset.PhotometricInterpretation = 1, "MONOCHROME2"
    dataset.BitsAllocated, dataset.BitsStored, dataset.HighBit = 16, 12, 11
    dataset.PixelRepresentation = 0
    dataset.RescaleSlope, dataset.RescaleIntercept = 1, -1024
    dataset.WindowCenter, dataset.WindowWidth = -1024 + 0.5 + STORED_MAX / 2, STORED_MAX + 1
    dataset.PixelData = stored.tobytes()
    return dataset


def send(
    port: int,
    datasets: Sequence[object],
    calling: str = "SENDER",
    syntaxes: Sequence[str] = (EXPLICIT_LE,),
) -> list[int]:
    """C-STORE each data set on one association; the statuses the receiver answered."""
    from pynetdicom import AE

    ae = AE(ae_title=calling)
    ae.add_requested_context(CT, list(syntaxes))
    association = ae.associate("127.0.0.1", port, ae_title="TRIAGE")
    assert association.is_established
    try:
        return [int(association.send_c_store(dataset).Status) for dataset in datasets]
    finally:
        association.release()


@pytest.fixture
def receiver(settings: Settings) -> Iterator[Receiver]:
    idle = StudyCloser(settings, interval=3600)  # the tests close studies themselves
    running = start_receiver(settings, host="127.0.0.1", port=0, closer=idle)
    yield running
    running.stop(grace=5)


def _rows(settings: Settings, table: sa.Table) -> list[sa.Row]:
    with engine_for(settings.resolved_database_url).begin() as connection:
        return connection.execute(sa.select(table)).all()


def test_echo_succeeds(receiver: Receiver) -> None:
    from pynetdicom import AE

    ae = AE(ae_title="SENDER")
    ae.add_requested_context(VERIFICATION)
    association = ae.associate("127.0.0.1", receiver.port, ae_title="TRIAGE")
    assert association.is_established
    assert association.send_c_echo().Status == SUCCESS
    association.release()


def test_a_study_is_held_until_idle_then_published(receiver: Receiver, settings: Settings) -> None:
    slices = [ct_instance("1.2.826.0.1.77.1", number, 200, size=128) for number in (1, 2, 3)]
    assert send(receiver.port, slices) == [SUCCESS] * 3
    (study,) = _rows(settings, studies)
    assert study.status == "receiving"
    assert sorted(row.status for row in _rows(settings, scans)) == ["held"] * 3

    published = Published()
    closer = StudyCloser(settings, publish=published)
    assert closer.close_once() == 0  # not idle yet
    closer.clock = lambda: utcnow() + timedelta(seconds=settings.study_idle_seconds + 1)
    assert closer.close_once() == 1
    assert len(published.calls) == 1 and len(published.calls[0][0]) == 3
    assert {row.status for row in _rows(settings, scans)} == {"queued"}
    assert all(row.published_at is not None for row in _rows(settings, scans))


def test_a_repeated_instance_is_success_and_adds_nothing(
    receiver: Receiver, settings: Settings
) -> None:
    instance = ct_instance("1.2.826.0.1.77.2", 1, 60, size=64)
    assert send(receiver.port, [instance]) == [SUCCESS]
    assert send(receiver.port, [instance]) == [SUCCESS]
    assert len(_rows(settings, scans)) == 1


def test_compressed_instance_is_received_in_the_senders_syntax(
    receiver: Receiver, settings: Settings
) -> None:
    from pynetdicom import AE

    instance = ct_instance("1.2.826.0.1.77.3", 1, 200, size=128)
    instance.compress(RLE)
    ae = AE(ae_title="SENDER")
    ae.add_requested_context(CT, [RLE, EXPLICIT_LE])  # what the sender holds, first
    association = ae.associate("127.0.0.1", receiver.port, ae_title="TRIAGE")
    accepted = [context.transfer_syntax[0] for context in association.accepted_contexts]
    assert accepted == [RLE]
    assert association.send_c_store(instance).Status == SUCCESS
    association.release()
    (row,) = _rows(settings, scans)
    with engine_for(settings.resolved_database_url).begin() as connection:
        pixels = connection.execute(sa.select(scan_pixels.c.pixels)).scalar_one()
    assert abs(np.frombuffer(pixels, np.uint8).mean() - 200) < 4


def test_uncompressed_proposed_first_is_taken(receiver: Receiver) -> None:
    from pynetdicom import AE

    ae = AE(ae_title="SENDER")
    ae.add_requested_context(CT, [IMPLICIT_LE, JPEG_LS, EXPLICIT_LE])
    association = ae.associate("127.0.0.1", receiver.port, ae_title="TRIAGE")
    assert [c.transfer_syntax[0] for c in association.accepted_contexts] == [IMPLICIT_LE]
    association.release()


def test_an_unusable_instance_cannot_be_understood(receiver: Receiver, settings: Settings) -> None:
    instance = ct_instance("1.2.826.0.1.77.4", 1, 100, size=64)
    del instance.PixelData
    assert send(receiver.port, [instance]) == [CANNOT_UNDERSTAND]
    assert _rows(settings, scans) == []


def test_ledger_unavailable_is_out_of_resources(settings: Settings) -> None:
    unreachable = settings.model_copy(
        update={"database_url": "postgresql+psycopg://triage:secret@127.0.0.1:1/none"}
    )
    waits: list[float] = []
    context = StoreContext(unreachable, sleep=waits.append)
    running = start_receiver(
        unreachable, host="127.0.0.1", port=0, closer=StudyCloser(unreachable, interval=3600),
        context=context,
    )  # fmt: skip
    try:
        assert send(running.port, [ct_instance("1.2.826.0.1.77.5", 1, 100, size=64)]) == [
            OUT_OF_RESOURCES
        ]
    finally:
        running.stop(grace=5)
    assert len(waits) == context.attempts - 1


def test_unknown_calling_ae_is_refused(settings: Settings) -> None:
    from pynetdicom import AE

    guarded = settings.model_copy(update={"dicom_allowed_aes": ["PACS1"]})
    running = start_receiver(
        guarded, host="127.0.0.1", port=0, closer=StudyCloser(guarded, interval=3600)
    )
    try:
        for calling, established in (("OTHER", False), ("PACS1", True)):
            ae = AE(ae_title=calling)
            ae.add_requested_context(VERIFICATION)
            association = ae.associate("127.0.0.1", running.port, ae_title="TRIAGE")
            assert association.is_established is established
            if established:
                association.release()
    finally:
        running.stop(grace=5)


def test_stop_lets_an_open_association_finish(settings: Settings) -> None:
    from pynetdicom import AE

    running = start_receiver(
        settings, host="127.0.0.1", port=0, closer=StudyCloser(settings, interval=3600)
    )
    ae = AE(ae_title="SENDER")
    ae.add_requested_context(CT, [EXPLICIT_LE])
    association = ae.associate("127.0.0.1", running.port, ae_title="TRIAGE")
    stopped: list[int] = []
    stopper = threading.Thread(target=lambda: stopped.append(running.stop(grace=20)))
    stopper.start()
    instance = ct_instance("1.2.826.0.1.77.6", 1, 100, size=64)
    assert association.send_c_store(instance).Status == SUCCESS
    association.release()
    stopper.join(timeout=30)
    assert stopped == [0]
    refused = AE(ae_title="SENDER")
    refused.add_requested_context(VERIFICATION)
    assert not refused.associate("127.0.0.1", running.port, ae_title="TRIAGE").is_established


def test_associations_over_the_limit_are_refused(settings: Settings) -> None:
    from pynetdicom import AE

    limited = settings.model_copy(update={"dicom_max_associations": 1})
    running = start_receiver(
        limited, host="127.0.0.1", port=0, closer=StudyCloser(limited, interval=3600)
    )
    ae = AE(ae_title="SENDER")
    ae.add_requested_context(VERIFICATION)
    try:
        first = ae.associate("127.0.0.1", running.port, ae_title="TRIAGE")
        assert first.is_established
        assert not ae.associate("127.0.0.1", running.port, ae_title="TRIAGE").is_established
        first.release()
    finally:
        running.stop(grace=5)


def test_an_instance_of_another_patient_is_refused_with_the_reason(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pynetdicom import AE

    monkeypatch.setenv("TRIAGE_DATABASE_URL", database_url)
    settings = Settings()
    upgrade_schema(engine_for(settings.resolved_database_url))
    running = start_receiver(
        settings, host="127.0.0.1", port=0, closer=StudyCloser(settings, interval=3600)
    )
    slices = [ct_instance("1.2.826.0.1.77.9", n, 60, size=64) for n in (1, 2, 3)]
    for dataset, patient in zip(slices, ("PAT-A", "PAT-B", "PAT-C"), strict=True):
        dataset.PatientID = patient
    ae = AE(ae_title="SENDER")
    ae.add_requested_context(CT, [EXPLICIT_LE])
    try:
        association = ae.associate("127.0.0.1", running.port, ae_title="TRIAGE")
        responses = [association.send_c_store(dataset) for dataset in slices]
        association.release()
    finally:
        running.stop(grace=5)
    assert [int(response.Status) for response in responses] == [
        SUCCESS,
        CONTRADICTS_STUDY,
        CONTRADICTS_STUDY,
    ]
    assert "PatientID contradicts" in responses[1].ErrorComment
    assert "PAT-B" not in responses[1].ErrorComment
    (study,) = _rows(settings, studies)
    assert study.patient_id == "PAT-A" and study.contradicting == 2
    assert [row.patient_id for row in _rows(settings, scans)] == ["PAT-A"]


def other_instance(sop_class: str, study_uid: str, modality: str) -> object:
    """A non-image object of a study (a dose report, a presentation state): header only."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = sop_class, generate_uid()
    meta.TransferSyntaxUID = EXPLICIT_LE
    dataset = Dataset()
    dataset.file_meta = meta
    dataset.SOPClassUID, dataset.SOPInstanceUID = sop_class, meta.MediaStorageSOPInstanceUID
    dataset.StudyInstanceUID, dataset.SeriesInstanceUID = study_uid, generate_uid()
    dataset.Modality, dataset.PatientID = modality, "PAT-TEST"
    return dataset


def test_a_whole_study_as_a_pacs_forwards_it_is_accepted_and_only_its_images_triaged(
    settings: Settings,
) -> None:
    """A CT slice with a dose SR, a presentation state, another SR, and our own SR and key
    image coming back: every one answered success; one slice in the ledger, the rest
    counted as ignored."""
    from pydicom.uid import (
        ComprehensiveSRStorage,
        GrayscaleSoftcopyPresentationStateStorage,
        XRayRadiationDoseSRStorage,
    )
    from pynetdicom import AE

    from gateway.outbox.dicom_sr import build_sr
    from gateway.outbox.key_image import build_key_image, key_image_reference
    from tests.gateway.outbox.conftest import make_report

    study_uid = "1.2.826.0.1.77.30"
    report = make_report(study_uid=study_uid, patient_id="PAT-TEST", accession=None)
    ours = [build_sr(report, "TRIAGE", key_image_reference(report))]
    ours.append(build_key_image(report, "TRIAGE"))
    others = [
        other_instance(XRayRadiationDoseSRStorage, study_uid, "SR"),
        other_instance(GrayscaleSoftcopyPresentationStateStorage, study_uid, "PR"),
        other_instance(ComprehensiveSRStorage, study_uid, "SR"),
    ]
    datasets = [ct_instance(study_uid, 1, 200, size=64), *others, *ours]
    context = StoreContext(settings)
    running = start_receiver(
        settings, host="127.0.0.1", port=0, closer=StudyCloser(settings, interval=3600),
        context=context,
    )  # fmt: skip
    try:
        ae = AE(ae_title="SENDER")
        for sop_class in sorted({str(dataset.SOPClassUID) for dataset in datasets}):
            ae.add_requested_context(sop_class, [EXPLICIT_LE])
        association = ae.associate("127.0.0.1", running.port, ae_title="TRIAGE")
        assert len(association.accepted_contexts) == len(ae.requested_contexts)
        statuses = [int(association.send_c_store(dataset).Status) for dataset in datasets]
        association.release()
    finally:
        running.stop(grace=5)
    assert statuses == [SUCCESS] * len(datasets)
    (scan,) = _rows(settings, scans)
    assert scan.modality == "CT"
    assert context.ignored == {"not a class we triage": 4, "our own object": 1}
