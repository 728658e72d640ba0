"""The key image is a delivery of its own (channel `key_image`), `waiting` for its saliency map.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD_CHANNELS = "channel IN ('dicom', 'hl7', 'fhir', 'webhook')"
NEW_CHANNELS = "channel IN ('dicom', 'key_image', 'hl7', 'fhir', 'webhook')"
OLD_STATUSES = "status IN ('pending', 'delivered', 'failed')"
NEW_STATUSES = "status IN ('pending', 'waiting', 'delivered', 'failed')"


def _constraints(channels: str, statuses: str) -> None:
    with op.batch_alter_table("deliveries") as batch:
        batch.drop_constraint(op.f("ck_deliveries_channel_known"), type_="check")
        batch.drop_constraint(op.f("ck_deliveries_status_known"), type_="check")
        batch.create_check_constraint(op.f("ck_deliveries_channel_known"), channels)
        batch.create_check_constraint(op.f("ck_deliveries_status_known"), statuses)


def upgrade() -> None:
    _constraints(NEW_CHANNELS, NEW_STATUSES)


def downgrade() -> None:
    # rows the old schema cannot hold: a key image is no channel there, and nothing waits
    op.execute("DELETE FROM deliveries WHERE channel = 'key_image'")
    op.execute("UPDATE deliveries SET status = 'pending' WHERE status = 'waiting'")
    _constraints(OLD_CHANNELS, OLD_STATUSES)
