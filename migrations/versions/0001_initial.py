"""Initial ledger schema: scans, scan_pixels, results, urgent_cases, models.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "models",
        sa.Column("version", sa.String(length=64), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("urgent_threshold", sa.Float(), nullable=False),
        sa.Column("registered_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("card", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("version", name=op.f("pk_models")),
    )
    op.create_table(
        "scans",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("accession", sa.String(length=128), nullable=True),
        sa.Column("source", sa.Text(), nullable=True),
        sa.Column("priority", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.CheckConstraint("priority IN ('routine', 'stat')", name=op.f("ck_scans_priority_known")),
        sa.CheckConstraint(
            "status IN ('queued', 'processing', 'done', 'failed')",
            name=op.f("ck_scans_status_known"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_scans")),
    )
    op.create_index(op.f("ix_scans_accession"), "scans", ["accession"])
    op.create_index("ix_scans_status_received_at", "scans", ["status", "received_at"])
    op.create_table(
        "scan_pixels",
        sa.Column("scan_id", sa.String(length=36), nullable=False),
        sa.Column("pixels", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["scan_id"], ["scans.id"], name=op.f("fk_scan_pixels_scan_id_scans"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("scan_id", name=op.f("pk_scan_pixels")),
    )
    op.create_table(
        "results",
        sa.Column("scan_id", sa.String(length=36), nullable=False),
        sa.Column("predicted", sa.SmallInteger(), nullable=False),
        sa.Column("p0", sa.Float(), nullable=False),
        sa.Column("p1", sa.Float(), nullable=False),
        sa.Column("p2", sa.Float(), nullable=False),
        sa.Column("urgent", sa.Boolean(), nullable=False),
        sa.Column("model_version", sa.String(length=64), nullable=False),
        sa.Column("classified_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["scan_id"], ["scans.id"], name=op.f("fk_results_scan_id_scans"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("scan_id", name=op.f("pk_results")),
    )
    op.create_index(op.f("ix_results_classified_at"), "results", ["classified_at"])
    op.create_index(op.f("ix_results_model_version"), "results", ["model_version"])
    op.create_table(
        "urgent_cases",
        sa.Column("scan_id", sa.String(length=36), nullable=False),
        sa.Column("p2", sa.Float(), nullable=False),
        sa.Column("model_version", sa.String(length=64), nullable=False),
        sa.Column("classified_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("escalated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("acknowledged_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("notified_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["scan_id"],
            ["scans.id"],
            name=op.f("fk_urgent_cases_scan_id_scans"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("scan_id", name=op.f("pk_urgent_cases")),
    )
    op.create_index(op.f("ix_urgent_cases_acknowledged_at"), "urgent_cases", ["acknowledged_at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_urgent_cases_acknowledged_at"), table_name="urgent_cases")
    op.drop_table("urgent_cases")
    op.drop_index(op.f("ix_results_model_version"), table_name="results")
    op.drop_index(op.f("ix_results_classified_at"), table_name="results")
    op.drop_table("results")
    op.drop_table("scan_pixels")
    op.drop_index("ix_scans_status_received_at", table_name="scans")
    op.drop_index(op.f("ix_scans_accession"), table_name="scans")
    op.drop_table("scans")
    op.drop_table("models")
