"""The SR and key image by STOW-RS: channels `dicomweb` and `dicomweb_key` (which waits for
its saliency map as `key_image` does).

Revision ID: 0011
Revises: 0009
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0011"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD_CHANNELS = "channel IN ('dicom', 'key_image', 'hl7', 'fhir', 'webhook')"
NEW_CHANNELS = (
    "channel IN ('dicom', 'key_image', 'dicomweb', 'dicomweb_key', 'hl7', 'fhir', 'webhook')"
)


def _channels(channels: str) -> None:
    with op.batch_alter_table("deliveries") as batch:
        batch.drop_constraint(op.f("ck_deliveries_channel_known"), type_="check")
        batch.create_check_constraint(op.f("ck_deliveries_channel_known"), channels)


def upgrade() -> None:
    _channels(NEW_CHANNELS)


def downgrade() -> None:
    # rows the old schema cannot hold: STOW-RS is no channel there
    op.execute("DELETE FROM deliveries WHERE channel IN ('dicomweb', 'dicomweb_key')")
    _channels(OLD_CHANNELS)
