"""STOW-RS in through the web app's own route (TestClient on a real SQLite and PostgreSQL
ledger): a small CT study of pydicom-made instances stored and held in its study, a bad
instance refused with its reason while the others are stored, tokens and roles checked."""

from __future__ import annotations

import io

import pytest
import sqlalchemy as sa

from gateway.outbox.dicomweb import multipart_related
from ledger import accounts
from ledger.statements import scans, studies
from tests.gateway.intake.test_receiver import ct_instance, other_instance
from web.passwords import generate_token, token_digest

STUDY_UID = "1.2.826.0.1.3680043.10.90"
CANNOT_UNDERSTAND, CONTRADICTS_STUDY = 0xC210, 0xC240


def bearer(engine, role: str = "operator") -> dict[str, str]:  # noqa: ANN001
    token = generate_token()
    accounts.add_token(engine, f"pacs-{role}-{token[:8]}", role, token_digest(token))
    return {"Authorization": f"Bearer {token}"}


def part10(dataset) -> bytes:  # noqa: ANN001
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def stow(client, parts: list[bytes], headers: dict[str, str]):  # noqa: ANN001, ANN201
    content_type, body = multipart_related(parts)
    return client.post(
        "/dicom-web/studies",
        content=body,
        headers={**headers, "Content-Type": content_type, "Accept": "application/dicom+json"},
    )


def sequence(answer: dict, tag: str) -> list[dict]:
    return (answer.get(tag) or {}).get("Value") or []


def uid_of(item: dict) -> str:
    return item["00081155"]["Value"][0]


def test_a_study_is_stored_and_held_in_its_study(client, engine) -> None:  # noqa: ANN001
    slices = [ct_instance(STUDY_UID, number, 200, size=128) for number in range(3)]
    response = stow(client, [part10(item) for item in slices], bearer(engine))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/dicom+json")
    stored = sequence(response.json(), "00081199")
    assert sorted(uid_of(item) for item in stored) == sorted(s.SOPInstanceUID for s in slices)
    assert "00081198" not in response.json()
    with engine.connect() as connection:
        assert connection.scalar(sa.select(sa.func.count()).select_from(scans)) == 3
        row = connection.execute(sa.select(studies.c.study_uid, studies.c.status)).one()
    assert tuple(row) == (STUDY_UID, "receiving")  # held until idle, as over C-STORE

    again = stow(client, [part10(slices[0])], bearer(engine, "admin"))  # a repeat: success
    assert again.status_code == 200 and len(sequence(again.json(), "00081199")) == 1
    with engine.connect() as connection:
        assert connection.scalar(sa.select(sa.func.count()).select_from(scans)) == 3


def test_a_bad_instance_gets_its_reason_while_the_others_are_stored(client, engine) -> None:  # noqa: ANN001
    from pydicom.uid import XRayRadiationDoseSRStorage

    good = [ct_instance(STUDY_UID, number, 50, size=128) for number in range(2)]
    no_pixels = ct_instance(STUDY_UID, 7, 50, size=128)
    del no_pixels.PixelData
    other_patient = ct_instance(STUDY_UID, 8, 50, size=128)
    other_patient.PatientID = "SOMEONE-ELSE"
    dose = other_instance(XRayRadiationDoseSRStorage, STUDY_UID, "SR")  # success, unread
    parts = [part10(item) for item in (good[0], no_pixels, good[1], dose)]
    headers = bearer(engine)
    first = stow(client, [*parts, b"not a DICOM file"], headers)
    assert first.status_code == 202, first.text
    stored = {uid_of(item) for item in sequence(first.json(), "00081199")}
    assert stored == {good[0].SOPInstanceUID, good[1].SOPInstanceUID, dose.SOPInstanceUID}
    failed = sequence(first.json(), "00081198")
    reasons = {item.get("00081155", {}).get("Value", [""])[0]: item["00081197"]["Value"][0]
               for item in failed}  # fmt: skip
    assert reasons == {no_pixels.SOPInstanceUID: CANNOT_UNDERSTAND, "": CANNOT_UNDERSTAND}

    second = stow(client, [part10(other_patient)], headers)  # contradicts its study
    assert second.status_code == 409, second.text
    (item,) = sequence(second.json(), "00081198")
    assert item["00081197"]["Value"] == [CONTRADICTS_STUDY]
    with engine.connect() as connection:
        assert connection.scalar(sa.select(sa.func.count()).select_from(scans)) == 2


def test_an_instance_over_the_cap_is_refused_unread(client, engine, monkeypatch) -> None:  # noqa: ANN001
    client.app.state.settings = client.app.state.settings.model_copy(
        update={"max_file_bytes": 20_000}
    )
    small = ct_instance(STUDY_UID, 1, 50, size=64)  # 8 KiB of pixels
    large = ct_instance(STUDY_UID, 2, 50, size=128)  # 32 KiB of pixels
    response = stow(client, [part10(small), part10(large)], bearer(engine))
    assert response.status_code == 202, response.text
    assert [uid_of(item) for item in sequence(response.json(), "00081199")] == [
        small.SOPInstanceUID
    ]
    assert sequence(response.json(), "00081198")[0]["00081197"]["Value"] == [CANNOT_UNDERSTAND]


def test_a_body_over_its_cap_ends_with_413(client, engine) -> None:  # noqa: ANN001
    client.app.state.settings = client.app.state.settings.model_copy(
        update={"dicomweb_max_request_bytes": 4096}
    )
    response = stow(client, [part10(ct_instance(STUDY_UID, 1, 50, size=64))], bearer(engine))
    assert response.status_code == 413 and "cap" in response.json()["detail"]
    with engine.connect() as connection:
        assert connection.scalar(sa.select(sa.func.count()).select_from(scans)) == 0


@pytest.mark.parametrize(
    ("content_type", "status"),
    [("application/dicom", 415), ('multipart/related; type="image/jpeg"; boundary=x', 415),
     ('multipart/related; type="application/dicom"', 400)],
)  # fmt: skip
def test_a_body_that_is_not_stow_rs_is_refused(client, engine, content_type, status) -> None:  # noqa: ANN001
    headers = {**bearer(engine), "Content-Type": content_type}
    response = client.post("/dicom-web/studies", content=b"--x\r\n\r\n--x--", headers=headers)
    assert response.status_code == status, response.text


def test_without_a_token_or_a_storing_role_nothing_is_stored(client, engine) -> None:  # noqa: ANN001
    parts = [part10(ct_instance(STUDY_UID, 1, 50, size=64))]
    assert stow(client, parts, {}).status_code == 401
    assert stow(client, parts, {"Authorization": "Bearer wrong"}).status_code == 401
    assert stow(client, parts, bearer(engine, "clinician")).status_code == 403
    from tests.web.conftest import log_in

    log_in(client, "oscar")  # an operator's browser session: not a machine account
    assert stow(client, parts, {}).status_code == 401
    with engine.connect() as connection:
        assert connection.scalar(sa.select(sa.func.count()).select_from(scans)) == 0
