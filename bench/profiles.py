"""Server settings a benchmark column runs under: production (as docker-compose runs them) or fast.

Switched at run time on the benchmark's own servers, so both columns share one Redis, one
PostgreSQL cluster and one machine state:

- PostgreSQL: `fsync` and `synchronous_commit` through `ALTER SYSTEM` and a reload (both take
  effect without a restart); production is PostgreSQL's own default, which compose keeps.
- Redis: `appendonly` and `appendfsync` through `CONFIG SET`; production is compose's
  `--appendonly yes` with Redis's default `appendfsync everysec`.
- SQLite is the same in both: WAL with `synchronous=NORMAL`, what the ledger always sets.
"""

from __future__ import annotations

from dataclasses import dataclass

import redis
import sqlalchemy as sa

from testkit.services import wait_until


@dataclass(frozen=True)
class ServerProfile:
    """One column of the benchmark: a name and the settings it gives each server."""

    name: str
    postgres: dict[str, str]
    redis: dict[str, str]


PRODUCTION = ServerProfile(
    "production",
    postgres={"fsync": "on", "synchronous_commit": "on"},
    redis={"appendonly": "yes", "appendfsync": "everysec"},
)
FAST = ServerProfile(
    "fast",
    postgres={"fsync": "off", "synchronous_commit": "on"},
    redis={"appendonly": "no", "appendfsync": "everysec"},
)
PROFILES = (PRODUCTION, FAST)
SQLITE_SETTINGS = {"journal_mode": "wal", "synchronous": "NORMAL"}


def apply_profile(profile: ServerProfile, postgres_admin_url: str, redis_url: str) -> dict:
    """Give both servers `profile`'s settings; returns the settings each now reports."""
    return {
        "postgresql": _apply_postgres(profile.postgres, postgres_admin_url),
        "redis": _apply_redis(profile.redis, redis_url),
        "sqlite": dict(SQLITE_SETTINGS),
    }


def _apply_postgres(wanted: dict[str, str], admin_url: str) -> dict[str, str]:
    engine = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    with engine.connect() as connection:
        for name, value in wanted.items():
            connection.execute(sa.text(f"ALTER SYSTEM SET {name} = '{value}'"))
        connection.execute(sa.text("SELECT pg_reload_conf()"))

    def reported() -> dict[str, str] | None:
        with engine.connect() as connection:  # a new session sees the reloaded file
            now = {name: connection.execute(sa.text(f"SHOW {name}")).scalar() for name in wanted}
        return now if now == wanted else None

    try:
        return wait_until(reported, what=f"PostgreSQL settings {wanted}", timeout=10)
    except TimeoutError:
        raise RuntimeError(
            f"PostgreSQL did not take {wanted} after ALTER SYSTEM and a reload (a setting given "
            "on the server's command line wins): start the benchmark's own cluster"
        ) from None
    finally:
        engine.dispose()


def _apply_redis(wanted: dict[str, str], url: str) -> dict[str, str]:
    client = redis.Redis.from_url(url)
    for name, value in wanted.items():
        client.config_set(name, value)
    # turning the AOF on starts a rewrite in the background: let it finish before timing
    wait_until(
        lambda: not client.info("persistence").get("aof_rewrite_in_progress"),
        what="Redis AOF rewrite",
        timeout=30,
    )
    return {name: client.config_get(name)[name] for name in wanted}
