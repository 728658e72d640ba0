"""The web edge: accounts, API tokens, the audit trail, readers' findings, who acknowledged.

Also the patient name and study date as received, for the study page.

Revision ID: 0006
Revises: 0003
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ROLES = "role IN ('clinician', 'operator', 'admin')"


def upgrade() -> None:
    with op.batch_alter_table("studies") as batch:
        batch.add_column(sa.Column("patient_name", sa.String(length=256), nullable=True))
        batch.add_column(sa.Column("study_date", sa.String(length=16), nullable=True))
    with op.batch_alter_table("urgent_cases") as batch:
        batch.add_column(sa.Column("acknowledged_by", sa.String(length=128), nullable=True))
    _accounts()
    op.create_table(
        "audit_events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("who", sa.String(length=128), nullable=False),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("study_id", sa.String(length=36), nullable=True),
        sa.Column("address", sa.String(length=64), nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_events")),
    )
    op.create_index("ix_audit_events_at", "audit_events", ["at"])
    op.create_index(op.f("ix_audit_events_study_id"), "audit_events", ["study_id"])
    op.create_table(
        "findings",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("study_id", sa.String(length=36), nullable=False),
        sa.Column("who", sa.String(length=128), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("urgent", sa.Boolean(), nullable=False),
        sa.Column("finding_class", sa.SmallInteger(), nullable=False),
        sa.Column("comment", sa.Text(), nullable=True),
        sa.CheckConstraint("finding_class IN (0, 1, 2)", name=op.f("ck_findings_class_known")),
        sa.ForeignKeyConstraint(
            ["study_id"], ["studies.id"], name=op.f("fk_findings_study_id_studies"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_findings")),
    )  # fmt: skip
    op.create_index("ix_findings_study_id_at", "findings", ["study_id", "at"])


def _accounts() -> None:
    op.create_table(
        "users",
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("password_hash", sa.String(length=256), nullable=False),
        sa.Column("disabled", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(ROLES, name=op.f("ck_users_role_known")),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_users")),
    )
    op.create_table(
        "api_tokens",
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("token_sha256", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(ROLES, name=op.f("ck_api_tokens_role_known")),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_api_tokens")),
        sa.UniqueConstraint("token_sha256", name=op.f("uq_api_tokens_token_sha256")),
    )


def downgrade() -> None:
    for table in ("findings", "audit_events", "api_tokens", "users"):
        op.drop_table(table)
    with op.batch_alter_table("urgent_cases") as batch:
        batch.drop_column("acknowledged_by")
    with op.batch_alter_table("studies") as batch:
        batch.drop_column("study_date")
        batch.drop_column("patient_name")
