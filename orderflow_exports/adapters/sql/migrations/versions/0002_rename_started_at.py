"""erp_export.rename_started_at (the final rename was issued: from then on an absent file is no
proof the ERP never got it);
byte_size as BIGINT (exports over 2 GiB).

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

from orderflow_exports.adapters.sql.tables import UtcDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("erp_export") as batch:
        batch.add_column(sa.Column("rename_started_at", UtcDateTime(), nullable=True))
        batch.alter_column(
            "byte_size", existing_type=sa.Integer(), type_=sa.BigInteger(), existing_nullable=False
        )


def downgrade() -> None:
    with op.batch_alter_table("erp_export") as batch:
        batch.alter_column(
            "byte_size", existing_type=sa.BigInteger(), type_=sa.Integer(), existing_nullable=False
        )
        batch.drop_column("rename_started_at")
