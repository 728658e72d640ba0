"""A real PACS: Orthanc (Debian's, from its own JSON configuration) as the hospital's archive.

Orthanc forwards a study (CT slices, a dose report, UTF-8 patient name) to `triage receive`
through its REST `/modalities/{id}/store`; workers decide it; triage sends its SR and key image
back by C-STORE (and, in a second run, by STOW-RS to Orthanc's DICOMweb API with basic
auth), into the original study, with the patient and study unchanged. Orthanc then
forwards the study again, now holding our SR and key image: the job succeeds, nothing new is
classified, and the study still holds one triage SR. Orthanc accepts C-STORE only from
triage's AE title and host. Real Redis, SQLite, worker processes with the brightness model.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest
import sqlalchemy as sa
from pydicom.uid import ComprehensiveSRStorage as ComprehensiveSR
from pydicom.uid import SecondaryCaptureImageStorage as SecondaryCapture

from ledger.database import engine_for
from schemas.settings import get_settings
from schemas.tables import Delivery, Scan, Study
from testkit.dcmtk import storescu
from testkit.orthanc import Modality, OrthancServer, orthanc_installed
from testkit.services import free_port
from tests.gateway.intake.test_receiver import ct_instance, other_instance
from tests.integration.conftest import Pipeline, wait_for
from tests.integration.test_dicom_receiver import URGENT, ReceiverProcess, decision_count

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

if not orthanc_installed():
    if os.environ.get("TRIAGE_TEST_REQUIRE_SERVICES") == "1":
        pytest.fail("Orthanc is required (TRIAGE_TEST_REQUIRE_SERVICES=1) but not installed")
    pytest.skip(
        "Orthanc not installed (apt-get install orthanc orthanc-dicomweb)", allow_module_level=True
    )

STUDY_UID = "1.2.826.0.1.3680043.10.70"
PATIENT = {
    "SpecificCharacterSet": "ISO_IR 192",
    "PatientName": "Øyen-Nuñez^Zoë^Ļena",
    "PatientID": "PAT-ØRTHANC-1",
    "PatientBirthDate": "19580412",
    "PatientSex": "F",
    "AccessionNumber": "ACC-7001",
    "StudyDate": "20261130",
    "StudyTime": "093000",
    "StudyID": "S7001",
    "ReferringPhysicianName": "Ōtani^Kenji",
}
SLICES = 3


def hospital_study() -> list[bytes]:
    """The study as the scanner sent it to the archive: CT slices and a dose report."""
    from pydicom.uid import XRayRadiationDoseSRStorage

    datasets = [ct_instance(STUDY_UID, number, URGENT, size=128) for number in range(SLICES)]
    datasets.append(other_instance(XRayRadiationDoseSRStorage, STUDY_UID, "SR"))
    files = []
    for dataset in datasets:
        for keyword, value in PATIENT.items():
            setattr(dataset, keyword, value)
        buffer = io.BytesIO()
        dataset.save_as(buffer, enforce_file_format=True)
        files.append(buffer.getvalue())
    return files


def _archive(
    pipeline_factory,
    tmp_path: Path,
    stow_rs: bool,  # noqa: ANN001
) -> Iterator[tuple[Pipeline, OrthancServer, ReceiverProcess]]:
    """Orthanc knowing triage (AE title, host, receiver port) as its only storing modality; the
    receiver and the routine, urgent and deliveries workers sending results back to it, by
    C-STORE, or with `stow_rs` by STOW-RS to its DICOMweb API (basic auth)."""
    receiver_port = free_port()
    orthanc = OrthancServer(
        tmp_path / "orthanc",
        {"triage": Modality("TRIAGE", "127.0.0.1", receiver_port)},
        users={"triage": "stow-pw"} if stow_rs else {},
    ).start()
    env = {"TRIAGE_STUDY_IDLE_SECONDS": "1", "TRIAGE_DICOM_ALLOWED_AES": "ORTHANC,SENDER"}
    if stow_rs:
        env["TRIAGE_DICOMWEB_DESTINATION"] = f"{orthanc.url}/dicom-web"
        env["TRIAGE_DICOMWEB_USERNAME"], env["TRIAGE_DICOMWEB_PASSWORD"] = "triage", "stow-pw"
    else:
        env["TRIAGE_DICOM_DESTINATION"] = f"ORTHANC@127.0.0.1:{orthanc.dicom_port}"
    pipeline = pipeline_factory(f"sqlite:///{tmp_path / 'ledger.db'}", batch_size=8, env=env)
    pipeline.start_worker("urgent", "urgent")
    pipeline.start_worker("stat,scans", "routine")
    pipeline.start_worker("deliveries", "deliveries")
    receiver = ReceiverProcess(pipeline, receiver_port)
    try:
        yield pipeline, orthanc, receiver
    finally:
        receiver.kill()
        orthanc.stop()


@pytest.fixture
def archive(pipeline_factory, tmp_path: Path) -> Iterator:  # noqa: ANN001
    yield from _archive(pipeline_factory, tmp_path, stow_rs=False)


@pytest.fixture
def stow_archive(pipeline_factory, tmp_path: Path) -> Iterator:  # noqa: ANN001
    yield from _archive(pipeline_factory, tmp_path, stow_rs=True)


def ours(orthanc: OrthancServer, study: str) -> list[dict]:
    """Triage's instances in the Orthanc study (its SR and key image)."""
    return [tags for tags in orthanc.study_instances(study) if tags.get("Manufacturer") == "triage"]


def test_orthanc_forwards_a_study_and_gets_its_results_back_into_it(archive) -> None:  # noqa: ANN001
    _, orthanc, receiver = archive
    uploaded = [orthanc.upload(data) for data in hospital_study()]
    study = orthanc.get(f"/instances/{uploaded[0]}/study")["ID"]
    assert len(orthanc.study_instances(study)) == SLICES + 1

    forwarded = orthanc.store_to("triage", study)
    assert forwarded.status_code == 200, forwarded.text
    engine = engine_for(get_settings().resolved_database_url)
    wait_for(lambda: _delivered(engine) == 2, "the SR and key image delivered to Orthanc", 150)
    results = ours(orthanc, study)
    assert sorted(tags["SOPClassUID"] for tags in results) == sorted(
        [ComprehensiveSR, SecondaryCapture]
    )
    for tags in results:  # inside the original study, the patient and study unchanged
        for keyword, value in PATIENT.items():
            if keyword != "SpecificCharacterSet":
                assert tags[keyword] == value, keyword
        assert tags["StudyInstanceUID"] == STUDY_UID
        stored = pydicom.dcmread(io.BytesIO(orthanc.file(tags["ID"])))
        assert stored.SpecificCharacterSet == "ISO_IR 192"  # as the study came
    with engine.connect() as connection:
        assert connection.scalar(sa.select(sa.func.count()).select_from(Scan)) == SLICES
        assert connection.scalar(sa.select(Study.urgent)) is True

    # forwarded again, now with our SR and key image in it: success, nothing new classified
    again = orthanc.store_to("triage", study)
    assert again.status_code == 200, again.text
    # each instance was answered only once committed: a slice taken as new would be in the
    # ledger now, its study re-opened (receiving) for a second decision
    assert decision_count(STUDY_UID) == 1
    with engine.connect() as connection:
        assert connection.scalar(sa.select(sa.func.count()).select_from(Scan)) == SLICES
        assert connection.scalar(sa.select(Study.status)) == "classified"
        assert connection.scalar(sa.select(sa.func.count()).select_from(Delivery)) == 2
    srs = [tags for tags in ours(orthanc, study) if tags["SOPClassUID"] == ComprehensiveSR]
    assert len(srs) == 1
    log = receiver.log_text()
    # the dose report twice, our SR once: unread; our key image once: recognised as ours
    assert log.count("ignored (not a class we triage") == 3
    assert log.count("ignored (our own object") == 1
    for keyword in ("PatientName", "PatientID", "AccessionNumber"):
        assert PATIENT[keyword] not in log and PATIENT[keyword].split("^")[0] not in log


def test_results_reach_orthanc_by_stow_rs_into_the_original_study(stow_archive) -> None:  # noqa: ANN001
    _, orthanc, _ = stow_archive
    uploaded = [orthanc.upload(data) for data in hospital_study()]
    study = orthanc.get(f"/instances/{uploaded[0]}/study")["ID"]
    forwarded = orthanc.store_to("triage", study)
    assert forwarded.status_code == 200, forwarded.text
    engine = engine_for(get_settings().resolved_database_url)
    wait_for(lambda: _delivered(engine) == 2, "the SR and key image STOW-RS'd to Orthanc", 150)
    with engine.connect() as connection:
        channels = connection.execute(sa.select(Delivery.channel, Delivery.status)).all()
    assert sorted(channels) == [("dicomweb", "delivered"), ("dicomweb_key", "delivered")]
    results = ours(orthanc, study)  # read back through Orthanc's REST API, in the study
    assert sorted(tags["SOPClassUID"] for tags in results) == sorted(
        [ComprehensiveSR, SecondaryCapture]
    )
    for tags in results:
        assert tags["StudyInstanceUID"] == STUDY_UID
        assert tags["PatientID"] == PATIENT["PatientID"]
        assert tags["PatientName"] == PATIENT["PatientName"]


def test_orthanc_accepts_c_store_only_from_triage(tmp_path: Path) -> None:
    orthanc = OrthancServer(
        tmp_path / "orthanc", {"triage": Modality("TRIAGE", "127.0.0.1", free_port())}
    ).start()
    try:
        path = tmp_path / "slice.dcm"
        path.write_bytes(hospital_study()[0])
        storescu(orthanc.dicom_port, [path], calling="OTHER", called="ORTHANC")
        assert orthanc.get("/instances") == []  # refused: not a modality Orthanc knows
        storescu(orthanc.dicom_port, [path], calling="TRIAGE", called="ORTHANC")
        assert len(orthanc.get("/instances")) == 1  # triage's AE title from triage's host
    finally:
        orthanc.stop()


def _delivered(engine) -> int:  # noqa: ANN001
    with engine.connect() as connection:
        return connection.scalar(sa.select(sa.func.count()).where(Delivery.status == "delivered"))
