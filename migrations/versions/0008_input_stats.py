"""Each result keeps what the model saw, for drift without labels: the scan's mean intensity
and contrast (imaging.statistics); results recorded before this revision have none.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("results") as batch:
        batch.add_column(sa.Column("mean_intensity", sa.Float(), nullable=True))
        batch.add_column(sa.Column("contrast", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("results") as batch:
        batch.drop_column("contrast")
        batch.drop_column("mean_intensity")
