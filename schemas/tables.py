"""SQLAlchemy tables: the database is the ledger of every scan, Redis only carries ids.

scans         one row per received scan: priority, status, attempts (the hot, small row)
scan_pixels   each scan's 4 KB of pixels, written once at intake (status updates never touch it)
results       one row per classified scan (upserted: re-delivery never duplicates)
urgent_cases  the clinicians' worklist: one row per class-2 scan, acknowledged or not
models        every model version a worker has served
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from schemas.messages import Priority

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

STATUSES = ("queued", "processing", "done", "failed")


def _one_of(column: str, values: tuple[str, ...] | type[Priority]) -> str:
    """SQL for a check constraint: `column` holds one of `values`."""
    return f"{column} IN ({', '.join(repr(str(value)) for value in values)})"


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(moment: datetime | None) -> datetime | None:
    """A timestamp read back from the ledger, in UTC (SQLite hands them back naive)."""
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Scan(Base):
    __tablename__ = "scans"
    __table_args__ = (
        CheckConstraint(_one_of("priority", Priority), name="priority_known"),
        CheckConstraint(_one_of("status", STATUSES), name="status_known"),
        Index("ix_scans_status_received_at", "status", "received_at"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    accession: Mapped[str | None] = mapped_column(String(128), index=True)
    source: Mapped[str | None] = mapped_column(Text)  # file (and index in a stack) it came from
    priority: Mapped[str] = mapped_column(String(16), default=Priority.routine.value)
    status: Mapped[str] = mapped_column(String(16), default="queued")
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    published_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)


class ScanPixels(Base):
    __tablename__ = "scan_pixels"

    scan_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("scans.id", ondelete="CASCADE"), primary_key=True
    )
    pixels: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)


class Result(Base):
    __tablename__ = "results"

    scan_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("scans.id", ondelete="CASCADE"), primary_key=True
    )
    predicted: Mapped[int] = mapped_column(SmallInteger)
    p0: Mapped[float] = mapped_column(Float)
    p1: Mapped[float] = mapped_column(Float)
    p2: Mapped[float] = mapped_column(Float)
    urgent: Mapped[bool] = mapped_column(Boolean)
    model_version: Mapped[str] = mapped_column(String(64), index=True)
    classified_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, index=True
    )


class UrgentCase(Base):
    __tablename__ = "urgent_cases"

    scan_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("scans.id", ondelete="CASCADE"), primary_key=True
    )
    p2: Mapped[float] = mapped_column(Float)
    model_version: Mapped[str] = mapped_column(String(64))
    classified_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    escalated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    acknowledged_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), index=True)
    # when the clinician was paged (log line, plus the webhook if one is set); the reconciler
    # pages again any case still without it, so a crash between worklist and page loses nothing
    notified_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class ModelVersion(Base):
    __tablename__ = "models"

    version: Mapped[str] = mapped_column(String(64), primary_key=True)
    path: Mapped[str] = mapped_column(Text)
    urgent_threshold: Mapped[float] = mapped_column(Float)
    registered_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    card: Mapped[dict] = mapped_column(JSON, default=dict)
