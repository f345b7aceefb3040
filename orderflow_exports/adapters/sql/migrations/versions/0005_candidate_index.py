"""Indexes that keep sensor ticks flat as history grows.

``ix_erp_export_sent_by_org`` (ours): the ack deadline reads an org's SENT exports by
``sent_at``; a partial index on SENT rows keeps that read independent of the ACKED history.

``approved_drafts_sensor`` reads only the drafts changed since its previous tick (a high-water
mark on ``updated_at`` plus a re-scanned overlap). Without an index on that column every tick
would still read the whole table. ``draft_order`` belongs to OrderFlow core: this migration only
adds the one index, named as ours, when the table lives in the same database (it does wherever
this code location reads it), and never alters a column. Where the migration's database user may
not create it, core's owners create the same index (README, "Sensor cost").

Revision ID: 0005_candidate_index
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

INDEX = "ix_orderflow_draft_order_status_updated"


SENT_INDEX = "ix_erp_export_sent_by_org"
SENT = "status = 'SENT'"


def upgrade() -> None:
    op.create_index(
        SENT_INDEX,
        "erp_export",
        ["org_id", "sent_at"],
        sqlite_where=sa.text(SENT),
        postgresql_where=sa.text(SENT),
    )
    if not sa.inspect(op.get_bind()).has_table("draft_order"):
        return  # core's tables elsewhere: their owners add the index (README)
    op.create_index(
        INDEX, "draft_order", ["status", "updated_at", "id"], unique=False, if_not_exists=True
    )


def downgrade() -> None:
    op.drop_index(SENT_INDEX, table_name="erp_export")
    if sa.inspect(op.get_bind()).has_table("draft_order"):
        op.drop_index(INDEX, table_name="draft_order", if_exists=True)
