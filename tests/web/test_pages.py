"""The pages: worklist, a study with its ack and findings, studies, operations, performance."""

from __future__ import annotations

from ledger import audit, reads
from ledger.statements import deliveries
from tests.web.conftest import csrf_of, log_in
from tests.web.ledger_rows import decided_study

HOSTILE = "<script>alert(1)</script>^EVIL"


def test_the_worklist_shows_open_urgent_studies_most_urgent_first(client, engine) -> None:  # noqa: ANN001
    decided_study(engine, "1.2.3.1001", [0.6, 0.7])
    decided_study(engine, "1.2.3.1002", [0.95, 0.1])
    decided_study(engine, "1.2.3.1003", [0.1, 0.2])  # not urgent
    log_in(client, "alice")
    page = client.get("/").text
    assert page.index("1.2.3.1002") < page.index("1.2.3.1001") and "1.2.3.1003" not in page
    assert "1.2.3.1002" in client.get("/worklist/rows").text


def test_a_long_worklist_pages_most_urgent_first_to_every_study(
    client, engine, monkeypatch
) -> None:  # noqa: ANN001
    from web import pages

    monkeypatch.setattr(pages, "WORKLIST_ROWS", 2)
    for number, p2 in enumerate((0.7, 0.9, 0.8)):
        decided_study(engine, f"1.2.3.110{number}", [p2])
    log_in(client, "alice")
    rows = client.get("/worklist/rows").text
    assert "1.2.3.1101" in rows and "1.2.3.1102" in rows and "1.2.3.1100" not in rows
    assert "3 open urgent studies" in rows and "page 1 of 2" in rows
    assert 'href="/?tab=open&amp;page=2"' in rows
    second = client.get("/?tab=open&page=2").text
    assert "1.2.3.1100" in second and "1.2.3.1101" not in second
    assert 'data-rows="/worklist/rows?tab=open&amp;page=2"' in second
    assert client.get("/?page=0").status_code == 422


def test_ack_and_findings_are_stored_with_the_user_and_their_history_is_kept(
    client, engine
) -> None:  # noqa: ANN001
    decided_study(engine, "1.2.3.2001", [0.9, 0.2], patient_name=HOSTILE)
    log_in(client, "alice")
    page = client.get("/studies/1.2.3.2001").text
    assert HOSTILE not in page and "&lt;script&gt;alert(1)&lt;/script&gt;^EVIL" in page
    token = csrf_of(client, "/studies/1.2.3.2001")
    assert client.post("/studies/1.2.3.2001/ack", data={}).status_code == 403  # no CSRF token
    client.post("/studies/1.2.3.2001/ack", data={"csrf_token": token})
    finding = {"urgent": "yes", "finding_class": "2", "comment": "PE", "csrf_token": token}
    client.post("/studies/1.2.3.2001/findings", data=finding)
    client.post(
        "/studies/1.2.3.2001/findings", data={**finding, "urgent": "no", "finding_class": "1"}
    )
    page = client.get("/studies/1.2.3.2001").text
    assert "Acknowledged by <strong>alice</strong>" in page
    history = page[page.index('id="findings"') :]
    assert history.index("not urgent") < history.index("confirmed")  # the correction first
    assert 'class="superseded"' in history
    assert reads.worklist(engine) == []
    (case,) = reads.worklist(engine, acknowledged_only=True)
    assert case["acknowledged_by"] == "alice"
    actions = [row["action"] for row in audit.events(engine, study_key="1.2.3.2001")]
    # each write answers with a redirect to the study page: one more view each
    views = ["view_study", "view_study"]
    expected = [*views, "acknowledge", "view_study", "finding", "view_study", "finding", *views]
    assert actions == expected
    assert client.get("/studies/1.2.3.2001/key-image.png").content[:4] == b"\x89PNG"


def test_a_bad_finding_is_refused_with_its_reason(client, engine) -> None:  # noqa: ANN001
    decided_study(engine, "1.2.3.2101", [0.9])
    log_in(client, "alice")
    token = csrf_of(client, "/studies/1.2.3.2101")
    response = client.post(
        "/studies/1.2.3.2101/findings",
        data={"urgent": "maybe", "finding_class": "7", "csrf_token": token},
    )
    assert "choose urgent yes/no" in response.text
    assert "No findings yet" in response.text


def test_studies_are_filtered_by_status_and_class_and_paginated(client, engine) -> None:  # noqa: ANN001
    for number in range(3):
        decided_study(engine, f"1.2.3.30{number:02d}", [0.9 if number else 0.1])
    log_in(client, "alice")
    assert client.get("/studies").text.count('href="/studies/1.2.3.30') == 3
    urgent = client.get("/studies?predicted=2").text
    assert urgent.count('href="/studies/1.2.3.30') == 2 and "1.2.3.3000" not in urgent
    assert client.get("/studies?status=bogus").status_code == 400
    assert "page 1 of 1" in client.get("/studies?status=classified").text


def test_an_operator_retries_a_failed_delivery(client, engine) -> None:  # noqa: ANN001
    decided_study(engine, "1.2.3.4001", [0.9])
    study_id = reads.list_studies(engine)[0]["study_id"]
    with engine.begin() as connection:
        connection.execute(deliveries.insert().values(
            id="d-1", study_id=study_id, decision=1, channel="hl7", idempotency_key="k",
            status="failed", attempts=3, last_error="refused", created_at=reads.utcnow(),
            next_attempt_at=reads.utcnow(),
        ))  # fmt: skip
    log_in(client, "oscar")
    page = client.get("/operations").text
    assert "refused" in page and "Retry now" in page
    client.post(
        "/operations/deliveries/d-1/retry", data={"csrf_token": csrf_of(client, "/operations")}
    )
    with engine.begin() as connection:
        status = (
            connection.execute(deliveries.select().where(deliveries.c.id == "d-1")).one().status
        )
    assert status == "pending"
    assert [row["action"] for row in audit.events(engine)][-1] == "retry_delivery"


def test_the_performance_page_counts_confirmed_flags(client, engine) -> None:  # noqa: ANN001
    decided_study(engine, "1.2.3.5001", [0.9])
    decided_study(engine, "1.2.3.5002", [0.8])
    log_in(client, "alice")
    for uid, urgent in (("1.2.3.5001", "yes"), ("1.2.3.5002", "no")):
        token = csrf_of(client, f"/studies/{uid}")
        client.post(
            f"/studies/{uid}/findings",
            data={"urgent": urgent, "finding_class": "2", "csrf_token": token},
        )
    page = client.get("/performance").text
    assert '<td class="num ppv">0.50</td>' in page
