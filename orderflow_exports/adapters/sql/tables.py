"""SQLAlchemy table definitions.

``owned_metadata`` holds the tables this project owns and migrates with Alembic.
``core_metadata`` mirrors OrderFlow core's tables, which we only read; it exists so
the demo and tests can create them, and is never migrated by us.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Numeric,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator


class UtcDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every database (SQLite keeps no zone of its own)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class ExactDecimal(TypeDecorator[Decimal]):
    """NUMERIC where the database has it; text on SQLite, which would round through floats."""

    impl = Numeric(18, 4)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> Any:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(String(48))
        return dialect.type_descriptor(Numeric(18, 4, asdecimal=True))

    def process_bind_param(self, value: Decimal | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        return str(value) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        return None if value is None else Decimal(str(value))


owned_metadata = MetaData()
core_metadata = MetaData()

ACTIVE_STATUS_SQL = "status IN ('PENDING', 'SENT')"
SENT_STATUS_SQL = "status = 'SENT'"

erp_connector_config = Table(
    "erp_connector_config",
    owned_metadata,
    Column("org_id", String(64), primary_key=True),
    Column("connector_type", String(32), nullable=False),
    Column("enabled", Boolean, nullable=False),
    Column("transport", String(8), nullable=False),
    Column("host", Text),
    Column("port", Integer),
    Column("username", Text),
    Column("host_key", Text),
    Column("private_key_ref", Text),
    Column("password_ref", Text),
    Column("export_path", Text, nullable=False),
    Column("ack_path", Text, nullable=False),
    Column("ack_deadline_seconds", Integer, nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
)

erp_export = Table(
    "erp_export",
    owned_metadata,
    Column("id", String(36), primary_key=True),
    Column("org_id", String(64), nullable=False),
    Column("draft_order_id", String(64), nullable=False),
    Column("connector_type", String(32), nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("status", String(8), nullable=False),
    Column("filename", Text, nullable=False),
    Column("dropzone_path", Text, nullable=False),
    Column("storage_key", Text, nullable=False),
    Column("content_sha256", String(64), nullable=False),
    Column("byte_size", BigInteger, nullable=False),
    Column("line_count", Integer, nullable=False),
    Column("forced", Boolean, nullable=False),
    Column("erp_order_number", Text),
    Column("error_code", String(32)),
    Column("error_message", Text),
    # Whether the failure may pass if tried again (NULL: not known, older rows).
    Column("error_transient", Boolean),
    Column("dagster_run_id", String(64)),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("rename_started_at", UtcDateTime()),
    Column("sent_at", UtcDateTime()),
    Column("acked_at", UtcDateTime()),
    Column("updated_at", UtcDateTime(), nullable=False),
    UniqueConstraint("org_id", "draft_order_id", "attempt", name="uq_erp_export_attempt"),
    Index("ix_erp_export_org_draft", "org_id", "draft_order_id"),
    Index("ix_erp_export_org_status", "org_id", "status"),
    Index(
        "uq_erp_export_one_active_per_draft",
        "org_id",
        "draft_order_id",
        unique=True,
        sqlite_where=text(ACTIVE_STATUS_SQL),
        postgresql_where=text(ACTIVE_STATUS_SQL),
    ),
    # The ack deadline's query (SENT exports of an org by sent_at) reads only SENT rows, however
    # many ACKED ones history holds; with statistics, SQLite would otherwise scan the table.
    Index(
        "ix_erp_export_sent_by_org",
        "org_id",
        "sent_at",
        sqlite_where=text(SENT_STATUS_SQL),
        postgresql_where=text(SENT_STATUS_SQL),
    ),
)

# One row per draft the sensor requested or a run reported on: drives re-requests and re-drives
# (domain/export_requests.py has the rule). Bookkeeping only; erp_export stays the truth of exports.
erp_export_request = Table(
    "erp_export_request",
    owned_metadata,
    Column("org_id", String(64), primary_key=True),
    Column("draft_order_id", String(64), primary_key=True),
    Column("request_count", Integer, nullable=False),
    Column("redrive_count", Integer, nullable=False),
    Column("last_requested_at", UtcDateTime()),
    Column("draft_updated_at", UtcDateTime()),
    Column("last_outcome", String(16)),
    Column("last_reason", Text),
    Column("last_outcome_at", UtcDateTime()),
    Column("next_due_at", UtcDateTime()),
    Column("needs_person_since", UtcDateTime()),
    Column("revision", Integer, nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
    Index("ix_erp_export_request_needs_person", "needs_person_since"),
    Index("ix_erp_export_request_next_due", "next_due_at"),
)

# --- OrderFlow core: NOT OURS. Read-only mirror for the demo and tests. ---------------------

draft_order = Table(
    "draft_order",
    core_metadata,
    Column("id", Text, primary_key=True),
    Column("org_id", Text, nullable=False, index=True),
    Column("status", Text, nullable=False),
    Column("customer_po_number", Text),
    Column("customer_erp_number", Text, nullable=False),
    Column("customer_name", Text, nullable=False),
    Column("order_date", Date, nullable=False),
    Column("requested_delivery_date", Date),
    Column("currency", String(3), nullable=False),
    Column("ship_to", JSON, nullable=False),
    Column("notes", Text),
    Column("approved_at", UtcDateTime()),
    Column("updated_at", UtcDateTime(), nullable=False),
    # Not core's: the one index our migration 0005 adds to core's table, mirrored here so the demo
    # and tests have it too (it serves the export sensor's window on updated_at).
    Index("ix_orderflow_draft_order_status_updated", "status", "updated_at", "id"),
)

draft_order_line = Table(
    "draft_order_line",
    core_metadata,
    Column("id", Text, primary_key=True),
    Column("draft_order_id", Text, ForeignKey("draft_order.id"), nullable=False),
    Column("line_no", Integer, nullable=False),
    Column("erp_item_number", Text, nullable=False),
    Column("customer_item_number", Text),
    Column("description", Text, nullable=False),
    Column("quantity", ExactDecimal(), nullable=False),
    Column("uom", Text, nullable=False),
    Column("unit_price", ExactDecimal(), nullable=False),
    Column("requested_delivery_date", Date),
    UniqueConstraint("draft_order_id", "line_no", name="uq_draft_order_line_no"),
)
