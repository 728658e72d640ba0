"""Fixtures shared by every test: an isolated TRIAGE_ environment and real servers."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from ledger.database import create_ledger_engine, upgrade_schema
from schemas.settings import get_settings
from testkit.services import PostgresServer, RedisServer, create_database, postgres_bin_dir
from tests.fixtures_model import model_root, published_model_root  # noqa: F401 - fixtures

REQUIRE_SERVICES = os.environ.get("TRIAGE_TEST_REQUIRE_SERVICES") == "1"


@pytest.fixture(autouse=True)
def triage_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Every test gets its own data directory and no inherited TRIAGE_ settings."""
    for name in list(os.environ):
        if (
            name.startswith("TRIAGE_")
            and not name.startswith("TRIAGE_TEST_")
            and name != "TRIAGE_REAL_DATA"
        ):
            monkeypatch.delenv(name)
    data_dir = tmp_path / "triage-data"
    monkeypatch.setenv("TRIAGE_DATA_DIR", str(data_dir))
    get_settings.cache_clear()
    yield data_dir
    get_settings.cache_clear()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of a real Redis: CI's (TRIAGE_TEST_REDIS_URL) or one started for this session."""
    if os.environ.get("TRIAGE_TEST_REDIS_URL"):
        yield os.environ["TRIAGE_TEST_REDIS_URL"]
        return
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server.url
    server.stop()


@pytest.fixture(scope="session")
def postgres_admin_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of a real PostgreSQL: CI's (TRIAGE_TEST_POSTGRES_URL) or a throwaway cluster."""
    if os.environ.get("TRIAGE_TEST_POSTGRES_URL"):
        yield os.environ["TRIAGE_TEST_POSTGRES_URL"]
        return
    if postgres_bin_dir() is None:
        if REQUIRE_SERVICES:
            pytest.fail("PostgreSQL is required (TRIAGE_TEST_REQUIRE_SERVICES=1) but not installed")
        pytest.skip("PostgreSQL binaries not installed (apt-get install postgresql)")
    # pytest's temp dirs are private to root; the postgres user needs its own readable parent
    parent = Path(tempfile.mkdtemp(prefix="triage-pg-"))
    parent.chmod(0o755)
    server = PostgresServer(parent / "cluster").start()
    yield server.url
    server.stop(mode="immediate")
    shutil.rmtree(parent, ignore_errors=True)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, triage_env: Path) -> str:
    """A fresh, empty database: a SQLite file, then a new PostgreSQL database."""
    if request.param == "sqlite":
        triage_env.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{triage_env / 'test.db'}"
    return create_database(request.getfixturevalue("postgres_admin_url"))


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    """The ledger on `database_url`, migrated to the newest schema; disposed afterwards."""
    engine = create_ledger_engine(database_url)
    upgrade_schema(engine)
    yield engine
    engine.dispose()
