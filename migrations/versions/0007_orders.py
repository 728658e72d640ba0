"""The RIS's orders as received over HL7 (ORM^O01, OMI^O23): accession, priority, status.

Revision ID: 0007
Revises: 0003
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "orders",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("message_control_id", sa.String(length=199), nullable=False),
        sa.Column("order_number", sa.Integer(), nullable=False),
        sa.Column("message_type", sa.String(length=16), nullable=False),
        sa.Column("order_control", sa.String(length=2), nullable=False),
        sa.Column("accession", sa.String(length=128), nullable=False),
        sa.Column("placer_order_number", sa.String(length=128), nullable=True),
        sa.Column("filler_order_number", sa.String(length=128), nullable=True),
        sa.Column("patient_id", sa.String(length=128), nullable=True),
        sa.Column("requested_procedure", sa.String(length=250), nullable=True),
        sa.Column("priority_code", sa.String(length=16), nullable=True),
        sa.Column("priority", sa.String(length=16), nullable=False),
        sa.Column("cancel_reason", sa.Text(), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "priority IN ('routine', 'stat')", name=op.f("ck_orders_priority_known")
        ),
        sa.CheckConstraint(
            "order_control IN ('NW', 'XO', 'CA', 'OC')",
            name=op.f("ck_orders_order_control_known"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_orders")),
        sa.UniqueConstraint(
            "message_control_id",
            "order_number",
            name=op.f("uq_orders_message_control_id_order_number"),
        ),
    )
    op.create_index("ix_orders_accession_id", "orders", ["accession", "id"])


def downgrade() -> None:
    op.drop_table("orders")
