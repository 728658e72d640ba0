"""Database engines and schema migrations for the ledger.

One engine per URL and process. SQLite is shared by the CLI and several worker processes, so
it runs in WAL mode with `synchronous=FULL` (a commit is on disk before it returns, so an
acknowledged instance survives a power loss), waits for locks instead of failing, and starts
every transaction with `BEGIN IMMEDIATE` (a deferred transaction that later writes can fail at once with "database is
locked" under WAL). Migrations are Alembic's, found next to this package, so
`triage db upgrade` works from any directory.

Only `triage db upgrade` (and the compose `migrate` service, the demo) apply migrations:
`upgrade_schema`. Every other command checks the schema version once per process
(`require_schema`) and says what to run when it is behind.
"""

from __future__ import annotations

import logging
from functools import lru_cache
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Engine, make_url

log = logging.getLogger(__name__)
_checked: set[str] = set()  # engine URLs whose schema this process found at head
SQLITE_BUSY_TIMEOUT_MS = 30_000
POSTGRES_CONNECT_ARGS = {  # libpq: give up on a silent server instead of waiting for the kernel
    "connect_timeout": 10,
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 3,
    "tcp_user_timeout": 30_000,
}
SQLITE_CHECKPOINT_PAGES = 16_384  # 64 MiB of WAL between automatic checkpoints (default 1,000)


def create_ledger_engine(url: str, foreign_keys: bool = True) -> Engine:
    """A new engine for `url`; SQLite tuned for several processes (parent dir created).

    Bound parameters (pixels, accessions) are kept out of error messages and logs. Migrations
    run with SQLite's foreign keys off (`foreign_keys=False`): Alembic alters a SQLite table by
    copying it, and dropping the old copy would cascade-delete every row that refers to it.
    """
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(
            url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}, hide_parameters=True
        )
        _tune_sqlite(engine, foreign_keys)
        return engine
    if parsed.get_backend_name() == "postgresql":
        # a host that drops packets fails in seconds instead of hanging on the kernel defaults
        return sa.create_engine(
            url, pool_pre_ping=True, hide_parameters=True, connect_args=POSTGRES_CONNECT_ARGS
        )
    raise ValueError(
        f"unsupported database {parsed.get_backend_name()!r}: use sqlite or postgresql"
    )


@lru_cache(maxsize=8)
def engine_for(url: str) -> Engine:
    """The process's engine for `url` (created on first use, after any fork)."""
    return create_ledger_engine(url)


def _tune_sqlite(engine: Engine, foreign_keys: bool) -> None:
    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record) -> None:  # noqa: ANN001 - DB-API connection
        dbapi_connection.isolation_level = None  # SQLAlchemy's begin hook below issues BEGIN
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute(f"PRAGMA foreign_keys={'ON' if foreign_keys else 'OFF'}")
        cursor.execute(
            "PRAGMA synchronous=FULL"
        )  # WAL + NORMAL can lose the last commits on power loss
        # each job rewrites every claimed scan row a few times: checkpoint less often
        cursor.execute(f"PRAGMA wal_autocheckpoint={SQLITE_CHECKPOINT_PAGES}")
        cursor.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(connection) -> None:  # noqa: ANN001 - sqlalchemy Connection
        connection.exec_driver_sql("BEGIN IMMEDIATE")


# -- migrations ----------------------------------------------------------------------------


def migrations_dir() -> Path:
    """`migrations/`, the sibling of this package (in the repository and when installed)."""
    return Path(__file__).resolve().parent.parent / "migrations"


def alembic_config(url: str):  # noqa: ANN201 - alembic.config.Config (imported lazily)
    """An Alembic config for `url` that needs no alembic.ini (works from any directory)."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    config.attributes["database_url"] = url
    return config


def current_revisions(engine: Engine) -> set[str]:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as connection:
        return set(MigrationContext.configure(connection).get_current_heads())


def head_revisions() -> set[str]:
    from alembic.script import ScriptDirectory

    return set(ScriptDirectory(str(migrations_dir())).get_heads())


def migrate(engine: Engine, revision: str = "head", downgrade: bool = False) -> None:
    """Upgrade (or downgrade) the schema to `revision` in one transaction."""
    from alembic import command

    _checked.discard(str(engine.url))
    url = engine.url.render_as_string(hide_password=False)
    config = alembic_config(url)
    migrating = create_ledger_engine(url, foreign_keys=False)
    try:
        with migrating.begin() as connection:
            config.attributes["connection"] = connection
            if downgrade:
                command.downgrade(config, revision)
            else:
                command.upgrade(config, revision)
    finally:
        migrating.dispose()


class SchemaOutdatedError(RuntimeError):
    """The ledger's schema is not at this code's head revision; run `triage db upgrade`."""


def upgrade_schema(engine: Engine) -> bool:
    """Apply pending migrations (a fresh database gets the whole schema). True if it did."""
    if current_revisions(engine) == head_revisions():
        _checked.add(str(engine.url))
        return False
    log.info("database %s: applying migrations", engine.url.render_as_string(hide_password=True))
    migrate(engine)
    _checked.add(str(engine.url))
    return True


def require_schema(engine: Engine) -> None:
    """Raise SchemaOutdatedError unless the schema is at head (checked once per process)."""
    if str(engine.url) in _checked:
        return
    current, head = current_revisions(engine), head_revisions()
    if current != head:
        where = engine.url.render_as_string(hide_password=True)
        state = "has no tables yet" if not current else f"is at {', '.join(sorted(current))}"
        raise SchemaOutdatedError(
            f"the ledger at {where} {state}, this code needs {', '.join(sorted(head))}; "
            "run `triage db upgrade` first"
        )
    _checked.add(str(engine.url))
