"""Alembic environment: the database URL comes from the settings class, never from alembic.ini.

`triage db upgrade` passes its own connection (config.attributes["connection"]); the `alembic`
command line opens one from TRIAGE_DATABASE_URL (or the SQLite default in TRIAGE_DATA_DIR).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context

from ledger.database import create_ledger_engine
from schemas.settings import get_settings
from schemas.tables import Base

MIGRATION_LOCK_ID = 20_260_303  # PostgreSQL advisory lock: concurrent upgrades wait their turn

config = context.config
target_metadata = Base.metadata


def _configure(connection: sa.Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite alters by table copy
        compare_type=True,
    )


def _run(connection: sa.Connection) -> None:
    _configure(connection)
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            connection.execute(sa.text(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK_ID})"))
        context.run_migrations()


def run_migrations_offline() -> None:
    context.configure(
        url=config.attributes.get("database_url") or get_settings().resolved_database_url,
        target_metadata=target_metadata,
        literal_binds=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = config.attributes.get("database_url") or get_settings().resolved_database_url
    engine = create_ledger_engine(url, foreign_keys=False)  # see create_ledger_engine
    try:
        with engine.connect() as connection:
            _run(connection)
            connection.commit()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
