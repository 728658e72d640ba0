"""SQLAlchemy tables: the database is the ledger of every scan, Redis only carries ids.

studies       one row per exam (DICOM StudyInstanceUID, or a study of our own for other input):
              identity, status, and the study decision once every slice is classified
scans         one row per received scan (a slice of a study): priority, status, attempts (the
              hot, small row), and its DICOM identity when it came as DICOM
scan_pixels   each scan's 4 KB of pixels, written once at intake (status updates never touch it)
results       one row per classified scan (upserted: re-delivery never duplicates)
urgent_cases  the clinicians' worklist: one row per urgent study (keyed by its most suspicious
              slice), acknowledged or not
models        every model version a worker has served
deliveries    the outbox: one row per outward message about a study decision (DICOM SR and,
              on a row of its own, the key image to the PACS, HL7 ORU to the RIS, FHIR, the
              webhook), written with the decision
orders        the RIS's orders as received over HL7 (ORM^O01, OMI^O23): one row per order of
              each message; an accession's latest row is its order's state now
users         the web page's built-in accounts (argon2id hashes) and their role
api_tokens    tokens for systems calling the JSON API (SHA-256 of the token only) and their role
audit_events  who did or saw what, when, from where: written with the action, never changed
findings      what a reader found on a study; a correction is a new row (the history is kept)
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
    UniqueConstraint,
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

STATUSES = ("held", "queued", "processing", "done", "failed")  # held: its study is receiving
CHANNELS = ("dicom", "key_image", "dicomweb", "dicomweb_key", "hl7", "fhir", "webhook")
# waiting: a key image whose saliency map is not stored yet (the reconciler has it rendered)
DELIVERY_STATUSES = ("pending", "waiting", "delivered", "failed")
ROLES = ("clinician", "operator", "admin")
STUDY_STATUSES = ("receiving", "queued", "classified", "failed")  # failed: no slice usable
ORDER_CONTROLS = ("NW", "XO", "CA", "OC")  # new, changed, cancelled (by placer / by filler)
ORDER_PRIORITY_CODES = ("S", "A", "R")  # HL7 table 0027: stat, ASAP, routine


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


class Study(Base):
    """An exam: the slices that share a StudyInstanceUID (or a study key of our own)."""

    __tablename__ = "studies"
    __table_args__ = (
        CheckConstraint(_one_of("priority", Priority), name="priority_known"),
        CheckConstraint(_one_of("status", STUDY_STATUSES), name="status_known"),
        Index("ix_studies_status_last_instance_at", "status", "last_instance_at"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    # DICOM StudyInstanceUID, or `triage:<key>` for a study we made (never shown in logs)
    study_uid: Mapped[str] = mapped_column(String(128), unique=True)
    accession: Mapped[str | None] = mapped_column(String(128), index=True)
    patient_id: Mapped[str | None] = mapped_column(String(128))
    patient_issuer: Mapped[str | None] = mapped_column(String(64))  # IssuerOfPatientID
    patient_name: Mapped[str | None] = mapped_column(String(256))  # as received (never escaped)
    study_date: Mapped[str | None] = mapped_column(String(16))  # DICOM DA as received
    # the patient and study modules of its first instance as received, DICOM JSON with their
    # character set (imaging/patient_modules.py): copied into every object we send back
    patient_modules: Mapped[str | None] = mapped_column(Text)
    priority: Mapped[str] = mapped_column(String(16), default=Priority.routine.value)
    status: Mapped[str] = mapped_column(String(16), default="receiving")
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    last_instance_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    closed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    classified_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), index=True)
    # the study decision (null until every slice is classified)
    p2: Mapped[float | None] = mapped_column(Float)
    urgent: Mapped[bool | None] = mapped_column(Boolean)
    predicted: Mapped[int | None] = mapped_column(SmallInteger)
    top_scan_id: Mapped[str | None] = mapped_column(String(36))
    model_version: Mapped[str | None] = mapped_column(String(64))
    decisions: Mapped[int] = mapped_column(Integer, default=0)  # > 1: re-opened and decided again
    # instances refused because their patient or accession contradicted this study's
    contradicting: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # where the model looked on the most suspicious slice (64x64 uint8, urgent studies only;
    # written by the routine worker after the decision, for the key image)
    saliency: Mapped[bytes | None] = mapped_column(LargeBinary)


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
    study_id: Mapped[str | None] = mapped_column(
        String(36), ForeignKey("studies.id", ondelete="CASCADE"), index=True
    )
    # DICOM identity of the instance (ledger only: never in logs, messages or errors)
    series_uid: Mapped[str | None] = mapped_column(String(128))
    sop_uid: Mapped[str | None] = mapped_column(String(128), unique=True)
    modality: Mapped[str | None] = mapped_column(String(16))
    patient_id: Mapped[str | None] = mapped_column(String(128))  # the patient it came with
    patient_issuer: Mapped[str | None] = mapped_column(String(64))
    instance_number: Mapped[int | None] = mapped_column(Integer)
    slice_position: Mapped[float | None] = mapped_column(Float)


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
    # what the model saw, for drift without labels (imaging.statistics); None before 0008
    mean_intensity: Mapped[float | None] = mapped_column(Float)
    contrast: Mapped[float | None] = mapped_column(Float)


class UrgentCase(Base):
    __tablename__ = "urgent_cases"

    # the study's most suspicious slice when it was put on the list
    scan_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("scans.id", ondelete="CASCADE"), primary_key=True
    )
    study_id: Mapped[str | None] = mapped_column(
        String(36), ForeignKey("studies.id", ondelete="CASCADE"), unique=True
    )
    p2: Mapped[float] = mapped_column(Float)
    model_version: Mapped[str] = mapped_column(String(64))
    classified_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    escalated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    acknowledged_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), index=True)
    acknowledged_by: Mapped[str | None] = mapped_column(String(128))  # the user, by name
    # when the clinician was paged (the urgent worker's log line; the webhook is an outbox
    # delivery of its own); the reconciler pages again any case still without it, so a crash
    # between worklist and page loses nothing
    notified_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class ModelVersion(Base):
    __tablename__ = "models"

    version: Mapped[str] = mapped_column(String(64), primary_key=True)
    path: Mapped[str] = mapped_column(Text)
    urgent_threshold: Mapped[float] = mapped_column(Float)
    registered_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    card: Mapped[dict] = mapped_column(JSON, default=dict)


class Delivery(Base):
    """One outward message about one decision of a study, sent until delivered."""

    __tablename__ = "deliveries"
    __table_args__ = (
        CheckConstraint(_one_of("channel", CHANNELS), name="channel_known"),
        CheckConstraint(_one_of("status", DELIVERY_STATUSES), name="status_known"),
        UniqueConstraint("study_id", "channel", "decision"),
        Index("ix_deliveries_status_next_attempt_at", "status", "next_attempt_at"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    study_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("studies.id", ondelete="CASCADE"), index=True
    )
    decision: Mapped[int] = mapped_column(Integer)  # the study's decision number it reports
    channel: Mapped[str] = mapped_column(String(16))
    # what the receiver is idempotent on (SR SOPInstanceUID, HL7 MSH-10, FHIR identifier)
    idempotency_key: Mapped[str] = mapped_column(String(128))
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Order(Base):
    """One order of one HL7 order message, as the RIS sent it (ORC, OBR, TQ1).

    The accession is what a study's DICOM AccessionNumber matches; `priority` is the lane its
    slices take (the RIS's `priority_code` mapped, see `ledger.orders.lane_of`). The latest row of an
    accession (highest `id`) is its order's state; a cancelled one stops its study."""

    __tablename__ = "orders"
    __table_args__ = (
        CheckConstraint(_one_of("priority", Priority), name="priority_known"),
        CheckConstraint(_one_of("order_control", ORDER_CONTROLS), name="order_control_known"),
        UniqueConstraint("message_control_id", "order_number"),
        Index("ix_orders_accession_id", "accession", "id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    # MSH-10 of the message and the order's place in it (1 for the first ORC): a message sent
    # again has the same pair, and adds nothing
    message_control_id: Mapped[str] = mapped_column(String(199))
    order_number: Mapped[int] = mapped_column(Integer, default=1)
    message_type: Mapped[str] = mapped_column(String(16))  # ORM^O01 or OMI^O23
    order_control: Mapped[str] = mapped_column(String(2))  # ORC-1
    accession: Mapped[str] = mapped_column(String(128))
    placer_order_number: Mapped[str | None] = mapped_column(String(128))  # ORC-2 / OBR-2
    filler_order_number: Mapped[str | None] = mapped_column(String(128))  # ORC-3 / OBR-3
    patient_id: Mapped[str | None] = mapped_column(String(128))  # PID-3, first identifier
    requested_procedure: Mapped[str | None] = mapped_column(String(250))  # OBR-4 as received
    priority_code: Mapped[str | None] = mapped_column(String(16))  # TQ1-9 / ORC-7.6 / OBR-27.6
    priority: Mapped[str] = mapped_column(String(16), default=Priority.routine.value)
    cancel_reason: Mapped[str | None] = mapped_column(Text)  # ORC-16, or "order cancelled"
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class User(Base):
    """A built-in account of the web page; the password only as an argon2id hash."""

    __tablename__ = "users"
    __table_args__ = (CheckConstraint(_one_of("role", ROLES), name="role_known"),)

    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    role: Mapped[str] = mapped_column(String(16))
    password_hash: Mapped[str] = mapped_column(String(256))
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ApiToken(Base):
    """A token a system sends as `Authorization: Bearer`; stored as its SHA-256 only."""

    __tablename__ = "api_tokens"
    __table_args__ = (CheckConstraint(_one_of("role", ROLES), name="role_known"),)

    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    role: Mapped[str] = mapped_column(String(16))
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class AuditEvent(Base):
    """One thing a person or system did or saw; inserted with the action, never updated."""

    __tablename__ = "audit_events"
    __table_args__ = (Index("ix_audit_events_at", "at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    who: Mapped[str] = mapped_column(String(128))  # user or token name; the name tried if failed
    action: Mapped[str] = mapped_column(String(32))
    study_id: Mapped[str | None] = mapped_column(String(36), index=True)  # no foreign key: kept
    address: Mapped[str | None] = mapped_column(String(64))
    detail: Mapped[str | None] = mapped_column(Text)


class Finding(Base):
    """What a reader found on a study; a later row for the same study supersedes it."""

    __tablename__ = "findings"
    __table_args__ = (
        CheckConstraint("finding_class IN (0, 1, 2)", name="class_known"),
        Index("ix_findings_study_id_at", "study_id", "at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    study_id: Mapped[str] = mapped_column(String(36), ForeignKey("studies.id", ondelete="CASCADE"))
    who: Mapped[str] = mapped_column(String(128))
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    urgent: Mapped[bool] = mapped_column(Boolean)
    finding_class: Mapped[int] = mapped_column(SmallInteger)
    comment: Mapped[str | None] = mapped_column(Text)
