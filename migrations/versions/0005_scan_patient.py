"""One study, one patient: each scan records the patient it came with; refusals are counted.

Revision ID: 0005
Revises: 0003
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("scans") as batch:
        batch.add_column(sa.Column("patient_id", sa.String(length=128), nullable=True))
        batch.add_column(sa.Column("patient_issuer", sa.String(length=64), nullable=True))
    with op.batch_alter_table("studies") as batch:
        batch.add_column(sa.Column("patient_issuer", sa.String(length=64), nullable=True))
        batch.add_column(
            sa.Column("contradicting", sa.Integer(), server_default="0", nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table("studies") as batch:
        batch.drop_column("contradicting")
        batch.drop_column("patient_issuer")
    with op.batch_alter_table("scans") as batch:
        batch.drop_column("patient_issuer")
        batch.drop_column("patient_id")
