"""Logins, sessions, CSRF, roles and API tokens, through the routes a person or system uses."""

from __future__ import annotations

from ledger import accounts, audit
from tests.web.conftest import PASSWORD, csrf_of, log_in
from web import identity
from web.passwords import generate_token, token_digest
from web.permissions import PERMISSIONS, Action, allowed


def test_nothing_but_healthz_and_login_answers_without_a_login(client) -> None:  # noqa: ANN001
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/login").status_code == 200
    for path in ("/", "/studies", "/performance", "/operations", "/audit"):
        response = client.get(path, follow_redirects=False)
        assert (response.status_code, response.headers["location"]) == (303, "/login"), path
    for path in ("/api/v1/worklist", "/api/v1/studies", "/api/v1/openapi.json", "/events/worklist"):
        assert client.get(path).status_code == 401, path


def test_a_login_sets_a_strict_httponly_session_and_failures_are_audited(client, engine) -> None:  # noqa: ANN001
    assert log_in(client, "alice", "wrong password!").status_code == 401
    response = log_in(client, "alice")
    assert response.status_code == 303
    cookie = response.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "max-age=" in cookie
    assert "alice (clinician)" in client.get("/").text
    actions = [(row["who"], row["action"]) for row in audit.events(engine)]
    assert actions == [("alice", "login_failed"), ("alice", "login")]


def test_a_session_ends_its_lifetime_after_the_login_however_busy(client, monkeypatch) -> None:  # noqa: ANN001
    log_in(client, "alice")
    lifetime = client.app.state.settings.web_session_seconds
    start = identity.now()
    monkeypatch.setattr(identity, "now", lambda: start + lifetime - 5)
    assert client.get("/", follow_redirects=False).status_code == 200  # (the cookie is re-sent)
    monkeypatch.setattr(identity, "now", lambda: start + lifetime + 5)
    assert client.get("/", follow_redirects=False).status_code == 303


def test_a_login_without_the_csrf_token_is_refused(client) -> None:  # noqa: ANN001
    client.get("/login")
    response = client.post("/login", data={"username": "alice", "password": PASSWORD})
    assert response.status_code == 403
    assert client.get("/", follow_redirects=False).status_code == 303  # not logged in


def test_failed_logins_are_throttled_per_user(client, engine) -> None:  # noqa: ANN001
    for _ in range(5):
        assert log_in(client, "oscar", "not the password").status_code == 401
    response = log_in(client, "oscar")  # the right password, too late
    assert response.status_code == 429 and "too many" in response.text
    assert [row["action"] for row in audit.events(engine)][-1] == "login_throttled"


def test_a_disabled_user_is_out_at_the_next_request(client, engine) -> None:  # noqa: ANN001
    log_in(client, "alice")
    assert client.get("/", follow_redirects=False).status_code == 200
    accounts.disable_user(engine, "alice")
    assert client.get("/", follow_redirects=False).status_code == 303
    assert log_in(client, "alice").status_code == 401


def test_a_clinician_may_not_reach_operations_and_a_post_needs_the_csrf_token(client) -> None:  # noqa: ANN001
    log_in(client, "alice")
    assert client.get("/operations").status_code == 403
    token = csrf_of(client, "/")
    assert (
        client.post("/operations/deliveries/x/retry", data={"csrf_token": token}).status_code == 403
    )
    assert client.get("/api/v1/audit").status_code == 403
    log_in(client, "oscar")
    assert client.get("/operations").status_code == 200
    assert client.post("/operations/deliveries/x/retry").status_code == 403  # no CSRF token
    assert (
        client.post(
            "/operations/deliveries/x/retry", data={"csrf_token": csrf_of(client, "/")}
        ).status_code
        == 404
    )


def test_an_api_token_is_hashed_at_rest_and_revocable(client, engine) -> None:  # noqa: ANN001
    token = generate_token()
    accounts.add_token(engine, "ris", "operator", token_digest(token))
    bearer = {"Authorization": f"Bearer {token}"}
    assert client.get("/api/v1/worklist", headers=bearer).json()["cases"] == []
    assert client.get("/api/v1/openapi.json", headers=bearer).json()["paths"]["/api/v1/worklist"]
    assert client.post("/api/v1/studies/x/ack", headers=bearer).status_code == 403  # operator
    assert (
        client.get("/api/v1/worklist", headers={"Authorization": "Bearer trg_guess"}).status_code
        == 401
    )
    accounts.revoke_token(engine, "ris")
    assert client.get("/api/v1/worklist", headers=bearer).status_code == 401


def test_the_permission_table_gives_each_role_its_actions() -> None:
    assert allowed("clinician", Action.acknowledge) and not allowed(
        "clinician", Action.retry_delivery
    )
    assert allowed("operator", Action.retry_delivery) and not allowed(
        "operator", Action.record_finding
    )
    assert PERMISSIONS["admin"] == frozenset(Action)
    assert not allowed("nobody", Action.view_worklist)
