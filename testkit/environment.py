"""Pointing processes at throwaway services: a worker subprocess's TRIAGE_ environment, and
this process's own settings for the length of a block."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

from schemas.settings import Settings


def worker_environment(settings: Settings) -> dict[str, str]:
    """The environment of a worker subprocess: these settings as TRIAGE_ variables."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("TRIAGE_")}
    env.update(
        TRIAGE_DATA_DIR=str(settings.data_dir),
        TRIAGE_DATABASE_URL=settings.resolved_database_url,
        TRIAGE_REDIS_URL=str(settings.redis_url),
        TRIAGE_MODEL_DIR=str(settings.resolved_model_dir),
        TRIAGE_BATCH_SIZE=str(settings.batch_size),
        TF_CPP_MIN_LOG_LEVEL="2",
        PYTHONUNBUFFERED="1",
    )
    return env


@contextlib.contextmanager
def settings_pointed_at(names: dict[str, str]) -> Iterator[None]:
    """This process's own settings take `names` (TRIAGE_* variables) inside the block, and
    get their earlier values back afterwards.

    The Celery app computes its default broker from `get_settings()` the first time its
    configuration is read, even when a call passes explicit settings; without this, that would
    start an embedded Redis under ~/.triage.
    """
    from schemas.settings import get_settings

    before = {name: os.environ.get(name) for name in names}
    os.environ.update(names)
    get_settings.cache_clear()
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        get_settings.cache_clear()
