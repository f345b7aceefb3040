"""erp_alert: which alert events each notifier channel was told of (each event once).

Revision ID: 0004_alerts
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

from orderflow_exports.adapters.sql.tables import UtcDateTime

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "erp_alert",
        sa.Column("event_key", sa.String(255), primary_key=True),
        sa.Column("channel", sa.String(32), primary_key=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("org_id", sa.String(64)),
        sa.Column("sent_at", UtcDateTime(), nullable=False),
    )
    op.create_index("ix_erp_alert_sent_at", "erp_alert", ["sent_at"])


def downgrade() -> None:
    op.drop_index("ix_erp_alert_sent_at", table_name="erp_alert")
    op.drop_table("erp_alert")
