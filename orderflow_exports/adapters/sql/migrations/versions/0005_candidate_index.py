"""Index serving the export sensor's window query on OrderFlow core's ``draft_order``.

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

revision = "0005_candidate_index"
down_revision = "0003"
branch_labels = None
depends_on = None

INDEX = "ix_orderflow_draft_order_status_updated"


def upgrade() -> None:
    if not sa.inspect(op.get_bind()).has_table("draft_order"):
        return  # core's tables elsewhere: their owners add the index (README)
    op.create_index(
        INDEX, "draft_order", ["status", "updated_at", "id"], unique=False, if_not_exists=True
    )


def downgrade() -> None:
    if sa.inspect(op.get_bind()).has_table("draft_order"):
        op.drop_index(INDEX, table_name="draft_order", if_exists=True)
