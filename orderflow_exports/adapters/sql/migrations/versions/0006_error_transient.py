"""``erp_export.error_transient``: whether a failure may pass if tried again, as a column.

Until now it was only the ``" (transient)"`` / ``" (permanent)"`` end of ``error_message``
(which is cut at 4,000 characters). The upgrade copies it from there for the rows that have it,
and from the code for codes that fix it (ERP_REJECTED, SUPERSEDED, AUTH, ...); it stays NULL
where neither says (older ARCHIVE/IO/INTERRUPTED failures without a suffix).

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

# Codes whose transience does not depend on the cause (see domain.errors.ErrorCode).
TRANSIENT_CODES = ("CONNECTION", "TIMEOUT")
PERMANENT_CODES = (
    "AUTH",
    "HOST_KEY",
    "PERMISSION",
    "DISK_FULL",
    "NAME_EXISTS",
    "SIZE_MISMATCH",
    "CONFIG",
    "VALIDATION",
    "SUPERSEDED",
    "ERP_REJECTED",
    "ACK_TIMEOUT",
)


def upgrade() -> None:
    with op.batch_alter_table("erp_export") as batch:
        batch.add_column(sa.Column("error_transient", sa.Boolean(), nullable=True))
    erp_export = sa.table(
        "erp_export",
        sa.column("status", sa.String),
        sa.column("error_code", sa.String),
        sa.column("error_message", sa.Text),
        sa.column("error_transient", sa.Boolean),
    )
    failed = erp_export.c.status == "FAILED"
    for suffix, value in ((" (transient)", True), (" (permanent)", False)):
        op.execute(
            erp_export.update()
            .where(failed, erp_export.c.error_message.like(f"%{suffix}"))
            .values(error_transient=value)
        )
    for codes, value in ((TRANSIENT_CODES, True), (PERMANENT_CODES, False)):
        op.execute(
            erp_export.update()
            .where(
                failed,
                erp_export.c.error_transient.is_(None),
                erp_export.c.error_code.in_(codes),
            )
            .values(error_transient=value)
        )


def downgrade() -> None:
    with op.batch_alter_table("erp_export") as batch:
        batch.drop_column("error_transient")
