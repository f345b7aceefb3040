"""erp_export_request: what the sensor requested per draft and how it ended (re-drive with
backoff, "needs a person").

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

from orderflow_exports.adapters.sql.tables import UtcDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "erp_export_request",
        sa.Column("org_id", sa.String(64), primary_key=True),
        sa.Column("draft_order_id", sa.String(64), primary_key=True),
        sa.Column("request_count", sa.Integer, nullable=False),
        sa.Column("redrive_count", sa.Integer, nullable=False),
        sa.Column("last_requested_at", UtcDateTime()),
        sa.Column("draft_updated_at", UtcDateTime()),
        sa.Column("last_outcome", sa.String(16)),
        sa.Column("last_reason", sa.Text),
        sa.Column("last_outcome_at", UtcDateTime()),
        sa.Column("next_due_at", UtcDateTime()),
        sa.Column("needs_person_since", UtcDateTime()),
        sa.Column("revision", sa.Integer, nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
    )
    op.create_index(
        "ix_erp_export_request_needs_person", "erp_export_request", ["needs_person_since"]
    )
    op.create_index("ix_erp_export_request_next_due", "erp_export_request", ["next_due_at"])


def downgrade() -> None:
    op.drop_index("ix_erp_export_request_next_due", table_name="erp_export_request")
    op.drop_index("ix_erp_export_request_needs_person", table_name="erp_export_request")
    op.drop_table("erp_export_request")
