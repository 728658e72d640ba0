"""The JSON API: worklist, studies, one study, ack, findings, audit, retry; OpenAPI."""

from __future__ import annotations

from ledger import accounts
from tests.web.conftest import csrf_of, log_in
from tests.web.ledger_rows import decided_study
from web.passwords import generate_token, token_digest


def bearer(engine, name: str, role: str) -> dict[str, str]:  # noqa: ANN001
    token = generate_token()
    accounts.add_token(engine, name, role, token_digest(token))
    return {"Authorization": f"Bearer {token}"}


def test_a_token_reads_acknowledges_and_records_a_finding(client, engine) -> None:  # noqa: ANN001
    decided_study(engine, "1.2.3.6001", [0.2, 0.9])
    headers = bearer(engine, "reader-app", "clinician")
    (case,) = client.get("/api/v1/worklist", headers=headers).json()["cases"]
    assert case["study_uid"] == "1.2.3.6001" and case["p2"] == 0.9
    listing = client.get("/api/v1/studies?status=classified&page=1", headers=headers).json()
    assert listing["total"] == 1 and listing["studies"][0]["study_uid"] == "1.2.3.6001"
    assert client.post("/api/v1/studies/1.2.3.6001/ack", headers=headers).status_code == 200
    assert client.post("/api/v1/studies/nope/ack", headers=headers).status_code == 404
    body = {"urgent": True, "class": 2, "comment": "confirmed"}
    created = client.post("/api/v1/studies/1.2.3.6001/findings", headers=headers, json=body)
    assert created.status_code == 201 and created.json()["who"] == "token:reader-app"
    assert (
        client.post(
            "/api/v1/studies/1.2.3.6001/findings", headers=headers, json={**body, "class": 5}
        ).status_code
        == 422
    )
    study = client.get("/api/v1/studies/1.2.3.6001", headers=headers).json()
    assert [s["p2"] for s in study["slices"]] == [0.2, 0.9]
    assert study["worklist"]["acknowledged_by"] == "token:reader-app"
    assert study["findings"][0]["comment"] == "confirmed" and study["patient_name"] == "DOE^JANE"
    acknowledged = client.get("/api/v1/worklist?acknowledged=true", headers=headers).json()
    assert acknowledged["cases"][0]["acknowledged"] and acknowledged["total"] == 1


def test_the_worklist_api_pages_to_every_open_study_with_times_in_iso(client, engine) -> None:  # noqa: ANN001
    for number, p2 in enumerate((0.7, 0.9, 0.8)):
        decided_study(engine, f"1.2.3.610{number}", [p2])
    headers = bearer(engine, "reader-app", "clinician")
    first = client.get("/api/v1/worklist?limit=2", headers=headers).json()
    assert [case["p2"] for case in first["cases"]] == [0.9, 0.8]
    assert first["total"] == 3 and first["page"] == 1 and first["per_page"] == 2
    assert first["cases"][0]["classified_at"].startswith("20")
    assert "T" in first["cases"][0]["classified_at"]
    last = client.get(first["next"], headers=headers).json()
    assert [case["p2"] for case in last["cases"]] == [0.7] and last["next"] is None
    assert client.get("/api/v1/worklist?page=3&limit=2", headers=headers).json()["cases"] == []
    assert client.get("/api/v1/worklist?limit=0", headers=headers).status_code == 422
    assert client.get("/api/v1/worklist?page=0", headers=headers).status_code == 422


def test_audit_is_for_admins_and_holds_every_view(client, engine) -> None:  # noqa: ANN001
    decided_study(engine, "1.2.3.7001", [0.9])
    clinician = bearer(engine, "c", "clinician")
    client.get("/api/v1/studies/1.2.3.7001", headers=clinician)
    assert client.get("/api/v1/audit", headers=clinician).status_code == 403
    rows = client.get("/api/v1/audit?study=1.2.3.7001", headers=bearer(engine, "a", "admin")).json()
    assert [(row["who"], row["action"]) for row in rows] == [("token:c", "view_study_api")]


def test_a_session_calling_the_api_writes_only_with_the_csrf_header(client, engine) -> None:  # noqa: ANN001
    decided_study(engine, "1.2.3.8001", [0.9])
    log_in(client, "alice")
    assert client.post("/api/v1/studies/1.2.3.8001/ack").status_code == 403
    token = csrf_of(client, "/")
    response = client.post("/api/v1/studies/1.2.3.8001/ack", headers={"X-CSRF-Token": token})
    assert response.status_code == 200
