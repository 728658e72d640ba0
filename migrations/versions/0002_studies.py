"""Studies: exams with their decision, DICOM identity of each scan, the worklist by exam.

Every scan that was already in the ledger becomes a study of its own (as it was triaged), and
its worklist row, if any, points at that study.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD_STATUSES = "status IN ('queued', 'processing', 'done', 'failed')"
NEW_STATUSES = "status IN ('held', 'queued', 'processing', 'done', 'failed')"


def upgrade() -> None:
    _create_studies()
    with op.batch_alter_table("scans") as batch:
        batch.add_column(sa.Column("study_id", sa.String(length=36), nullable=True))
        batch.add_column(sa.Column("series_uid", sa.String(length=128), nullable=True))
        batch.add_column(sa.Column("sop_uid", sa.String(length=128), nullable=True))
        batch.add_column(sa.Column("modality", sa.String(length=16), nullable=True))
        batch.add_column(sa.Column("instance_number", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("slice_position", sa.Float(), nullable=True))
        batch.create_foreign_key(
            op.f("fk_scans_study_id_studies"), "studies", ["study_id"], ["id"], ondelete="CASCADE"
        )
        batch.create_unique_constraint(op.f("uq_scans_sop_uid"), ["sop_uid"])
        batch.create_index(op.f("ix_scans_study_id"), ["study_id"])
        batch.drop_constraint(op.f("ck_scans_status_known"), type_="check")
        batch.create_check_constraint(op.f("ck_scans_status_known"), NEW_STATUSES)
    with op.batch_alter_table("urgent_cases") as batch:
        batch.add_column(sa.Column("study_id", sa.String(length=36), nullable=True))
        batch.create_foreign_key(
            op.f("fk_urgent_cases_study_id_studies"),
            "studies",
            ["study_id"],
            ["id"],
            ondelete="CASCADE",
        )
        batch.create_unique_constraint(op.f("uq_urgent_cases_study_id"), ["study_id"])
    _backfill()


def _create_studies() -> None:
    op.create_table(
        "studies",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("study_uid", sa.String(length=128), nullable=False),
        sa.Column("accession", sa.String(length=128), nullable=True),
        sa.Column("patient_id", sa.String(length=128), nullable=True),
        sa.Column("priority", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_instance_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("classified_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("p2", sa.Float(), nullable=True),
        sa.Column("urgent", sa.Boolean(), nullable=True),
        sa.Column("predicted", sa.SmallInteger(), nullable=True),
        sa.Column("top_scan_id", sa.String(length=36), nullable=True),
        sa.Column("model_version", sa.String(length=64), nullable=True),
        sa.Column("decisions", sa.Integer(), nullable=False),
        sa.CheckConstraint(
            "priority IN ('routine', 'stat')", name=op.f("ck_studies_priority_known")
        ),
        sa.CheckConstraint(
            "status IN ('receiving', 'queued', 'classified', 'failed')",
            name=op.f("ck_studies_status_known"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_studies")),
        sa.UniqueConstraint("study_uid", name=op.f("uq_studies_study_uid")),
    )
    op.create_index(op.f("ix_studies_accession"), "studies", ["accession"])
    op.create_index(op.f("ix_studies_classified_at"), "studies", ["classified_at"])
    op.create_index("ix_studies_status_last_instance_at", "studies", ["status", "last_instance_at"])


def _backfill() -> None:
    """Each existing scan becomes a study of its own, decided as the scan was."""
    op.execute(
        """
        INSERT INTO studies (id, study_uid, accession, priority, status, received_at,
            last_instance_at, closed_at, classified_at, p2, urgent, predicted, top_scan_id,
            model_version, decisions)
        SELECT s.id, 'triage:' || s.id, s.accession, s.priority,
            CASE WHEN s.status IN ('done', 'failed') THEN 'classified' ELSE 'queued' END,
            s.received_at, s.received_at, s.received_at, r.classified_at, r.p2, r.urgent,
            r.predicted, CASE WHEN r.scan_id IS NULL THEN NULL ELSE s.id END,
            r.model_version, CASE WHEN r.scan_id IS NULL THEN 0 ELSE 1 END
        FROM scans s LEFT JOIN results r ON r.scan_id = s.id
        """
    )
    op.execute("UPDATE scans SET study_id = id")
    op.execute("UPDATE urgent_cases SET study_id = scan_id")


def downgrade() -> None:
    with op.batch_alter_table("urgent_cases") as batch:
        batch.drop_constraint(op.f("uq_urgent_cases_study_id"), type_="unique")
        batch.drop_constraint(op.f("fk_urgent_cases_study_id_studies"), type_="foreignkey")
        batch.drop_column("study_id")
    op.execute("UPDATE scans SET status = 'queued' WHERE status = 'held'")
    with op.batch_alter_table("scans") as batch:
        batch.drop_constraint(op.f("ck_scans_status_known"), type_="check")
        batch.create_check_constraint(op.f("ck_scans_status_known"), OLD_STATUSES)
        batch.drop_index(op.f("ix_scans_study_id"))
        batch.drop_constraint(op.f("uq_scans_sop_uid"), type_="unique")
        batch.drop_constraint(op.f("fk_scans_study_id_studies"), type_="foreignkey")
        for column in (
            "slice_position", "instance_number", "modality", "sop_uid", "series_uid", "study_id"
        ):  # fmt: skip
            batch.drop_column(column)
    op.drop_table("studies")
