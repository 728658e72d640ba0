"""The web app on a real test ledger (SQLite and PostgreSQL), driven through its own routes."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from ledger.accounts import add_user
from ledger.database import create_ledger_engine, upgrade_schema
from schemas.settings import get_settings
from web.app import create_app
from web.passwords import hash_password

PASSWORD = "correct horse battery"
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@pytest.fixture
def engine(database_url: str, monkeypatch: pytest.MonkeyPatch):  # noqa: ANN201 - Engine
    monkeypatch.setenv("TRIAGE_DATABASE_URL", database_url)
    monkeypatch.setenv("TRIAGE_WEB_SECRET_KEY", "k" * 40)
    get_settings.cache_clear()
    engine = create_ledger_engine(database_url)
    upgrade_schema(engine)
    for name, role in (("alice", "clinician"), ("oscar", "operator"), ("ada", "admin")):
        add_user(engine, name, role, hash_password(PASSWORD))
    yield engine
    engine.dispose()


@pytest.fixture
def app(engine):  # noqa: ANN001, ANN201 - the FastAPI app
    return create_app(get_settings())


@pytest.fixture
def client(app) -> Iterator[TestClient]:  # noqa: ANN001
    with TestClient(app) as client:
        yield client


def csrf_of(client: TestClient, path: str = "/login") -> str:
    """The CSRF token a page's forms carry."""
    found = CSRF.search(client.get(path).text)
    assert found, f"no CSRF token on {path}"
    return found[1]


def log_in(client: TestClient, name: str, password: str = PASSWORD):  # noqa: ANN201 - Response
    token = csrf_of(client)
    return client.post(
        "/login",
        data={"username": name, "password": password, "csrf_token": token},
        follow_redirects=False,
    )
