"""erp_export and erp_connector_config, the tables this project owns.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

from orderflow_exports.adapters.sql.tables import UtcDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

ACTIVE = sa.text("status IN ('PENDING', 'SENT')")


def upgrade() -> None:
    op.create_table(
        "erp_connector_config",
        sa.Column("org_id", sa.String(64), primary_key=True),
        sa.Column("connector_type", sa.String(32), nullable=False),
        sa.Column("enabled", sa.Boolean, nullable=False),
        sa.Column("transport", sa.String(8), nullable=False),
        sa.Column("host", sa.Text),
        sa.Column("port", sa.Integer),
        sa.Column("username", sa.Text),
        sa.Column("host_key", sa.Text),
        sa.Column("private_key_ref", sa.Text),
        sa.Column("password_ref", sa.Text),
        sa.Column("export_path", sa.Text, nullable=False),
        sa.Column("ack_path", sa.Text, nullable=False),
        sa.Column("ack_deadline_seconds", sa.Integer, nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
    )
    op.create_table(
        "erp_export",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("org_id", sa.String(64), nullable=False),
        sa.Column("draft_order_id", sa.String(64), nullable=False),
        sa.Column("connector_type", sa.String(32), nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("status", sa.String(8), nullable=False),
        sa.Column("filename", sa.Text, nullable=False),
        sa.Column("dropzone_path", sa.Text, nullable=False),
        sa.Column("storage_key", sa.Text, nullable=False),
        sa.Column("content_sha256", sa.String(64), nullable=False),
        sa.Column("byte_size", sa.Integer, nullable=False),
        sa.Column("line_count", sa.Integer, nullable=False),
        sa.Column("forced", sa.Boolean, nullable=False),
        sa.Column("erp_order_number", sa.Text),
        sa.Column("error_code", sa.String(32)),
        sa.Column("error_message", sa.Text),
        sa.Column("dagster_run_id", sa.String(64)),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("sent_at", UtcDateTime()),
        sa.Column("acked_at", UtcDateTime()),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
        sa.UniqueConstraint("org_id", "draft_order_id", "attempt", name="uq_erp_export_attempt"),
        sa.CheckConstraint(
            "status IN ('PENDING', 'SENT', 'ACKED', 'FAILED')", name="ck_erp_export_status"
        ),
    )
    op.create_index("ix_erp_export_org_draft", "erp_export", ["org_id", "draft_order_id"])
    op.create_index("ix_erp_export_org_status", "erp_export", ["org_id", "status"])
    op.create_index(
        "uq_erp_export_one_active_per_draft",
        "erp_export",
        ["org_id", "draft_order_id"],
        unique=True,
        sqlite_where=ACTIVE,
        postgresql_where=ACTIVE,
    )


def downgrade() -> None:
    op.drop_table("erp_export")
    op.drop_table("erp_connector_config")
