"""`triage enqueue` and friends in-process, against a real Redis and the default SQLite."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
import redis
from PIL import Image
from typer.testing import CliRunner

from schemas.settings import get_settings
from testkit.services import redis_url_with_database
from tests.fixtures_model import brightness_scans
from triage.cli import app

runner = CliRunner()


@pytest.fixture
def broker(redis_server: str, monkeypatch: pytest.MonkeyPatch) -> redis.Redis:
    url = redis_url_with_database(redis_server, 15)
    monkeypatch.setenv("TRIAGE_REDIS_URL", url)
    get_settings.cache_clear()
    client = redis.Redis.from_url(url)
    client.flushdb()
    assert runner.invoke(app, ["db", "upgrade"]).exit_code == 0
    return client


def test_enqueue_records_good_scans_publishes_by_priority_and_fails_on_rejects(
    broker: redis.Redis, tmp_path: Path
) -> None:
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    for index, mean in enumerate([40, 200, 90]):
        Image.fromarray(brightness_scans([mean])[0]).save(incoming / f"ACC{index}.png")
    (incoming / "empty.png").write_bytes(b"")

    routine = runner.invoke(app, ["enqueue", str(incoming), "--accession-from-filename"])
    stat = runner.invoke(app, ["enqueue", str(incoming / "ACC1.png"), "--priority", "stat"])

    assert routine.exit_code == 1 and stat.exit_code == 0
    assert routine.stdout.count("queued    ") == 3
    assert "rejected" in routine.stdout and "empty.png" in routine.stdout
    assert "3 scans queued (routine) in 1 jobs, 1 inputs rejected" in routine.stdout
    assert (broker.llen("scans"), broker.llen("stat"), broker.llen("urgent")) == (1, 1, 0)
    message = json.loads(broker.lindex("scans", 0))
    assert message["headers"]["task"] == "worker.tasks.classify"
    assert message["content-type"] == "application/json"
    assert len(json.loads(base64.b64decode(message["body"]))[0][0]["scan_ids"]) == 3

    stat_id = stat.stdout.split()[1]
    history = runner.invoke(app, ["status", stat_id])
    assert history.exit_code == 0 and "queued" in history.stdout and "stat" in history.stdout
    assert runner.invoke(app, ["status", "nope"]).exit_code == 1
    assert json.loads(runner.invoke(app, ["results", "--json"]).stdout) == []
    assert json.loads(runner.invoke(app, ["urgent", "--json"]).stdout) == []
    assert runner.invoke(app, ["ack", stat_id]).exit_code == 1  # not an urgent case


def test_only_db_upgrade_migrates_and_other_commands_say_to_run_it(triage_env: Path) -> None:
    before = runner.invoke(app, ["results", "--json"])
    assert before.exit_code == 2
    assert "has no tables yet" in before.output and "triage db upgrade" in before.output
    upgraded = runner.invoke(app, ["db", "upgrade"])
    assert upgraded.exit_code == 0 and "at revision" in upgraded.stdout
    listed = runner.invoke(app, ["results", "--since", "1h", "--json"])
    assert listed.exit_code == 0, listed.output
    assert json.loads(listed.stdout) == []
    assert (triage_env / "triage.db").is_file()
    assert runner.invoke(app, ["results", "--since", "yesterday"]).exit_code != 0


def ct_instance(path: Path, study_uid: str, number: int, mean: int) -> Path:
    """A 16-bit CT instance of a brightness phantom, made with pydicom."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    pixels = brightness_scans([mean], seed=number)[0].astype("uint16") * 4
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = f"{study_uid}.9.{number}"
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    dataset = Dataset()
    dataset.file_meta = meta
    dataset.SOPClassUID, dataset.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
    dataset.StudyInstanceUID, dataset.SeriesInstanceUID = study_uid, generate_uid()
    dataset.AccessionNumber, dataset.PatientID, dataset.Modality = "ACC77", "PAT-1", "CT"
    dataset.InstanceNumber = number
    dataset.Rows, dataset.Columns = pixels.shape
    dataset.SamplesPerPixel, dataset.PhotometricInterpretation = 1, "MONOCHROME2"
    dataset.BitsAllocated, dataset.BitsStored, dataset.HighBit = 16, 12, 11
    dataset.PixelRepresentation = 0
    dataset.PixelData = pixels.tobytes()
    dataset.save_as(path, enforce_file_format=True)
    return path


def test_enqueue_groups_dicom_by_study_and_names_instances_received_before(
    broker: redis.Redis, tmp_path: Path
) -> None:
    exam = tmp_path / "exam"
    exam.mkdir()
    for number in range(3):
        ct_instance(exam / f"slice{number}.dcm", "1.2.826.0.1.77", number, 60 + 10 * number)
    loose = tmp_path / "loose"
    loose.mkdir()
    for index in range(2):
        Image.fromarray(brightness_scans([90])[0]).save(loose / f"x{index}.png")

    first = runner.invoke(app, ["enqueue", str(exam)])
    grouped = runner.invoke(app, ["enqueue", str(loose), "--study", "KEY-1"])
    again = runner.invoke(app, ["enqueue", str(exam / "slice1.dcm")])
    assert first.exit_code == grouped.exit_code == again.exit_code == 0, first.output
    first_ids = {line.split()[2]: line.split()[1] for line in first.stdout.splitlines()[:3]}
    (repeat,) = [line for line in again.stdout.splitlines() if "(already received)" in line]
    assert repeat.split()[1] == first_ids[str(exam / "slice1.dcm")]
    rows = json.loads(runner.invoke(app, ["studies", "--json"]).stdout)
    found = {row["study_uid"]: row for row in rows}
    assert (
        found["1.2.826.0.1.77"]["slices"] == 3 and found["1.2.826.0.1.77"]["accession"] == "ACC77"
    )
    assert found["triage:KEY-1"]["slices"] == 2
    assert all(row["status"] == "queued" and row["p2"] is None for row in rows)
    assert broker.llen("scans") == 2  # one job per call that queued something new
