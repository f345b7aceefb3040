"""Reads OrderFlow core's ``draft_order`` / ``draft_order_line`` (read-only)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Engine,
    Select,
    String,
    Text,
    and_,
    cast,
    exists,
    func,
    or_,
    select,
    type_coerce,
)

from orderflow_exports.adapters.sql.tables import draft_order, draft_order_line, erp_export
from orderflow_exports.domain.drafts import (
    APPROVED,
    DraftLine,
    DraftOrder,
    draft_from_values,
    line_from_values,
)
from orderflow_exports.domain.naming import DraftRef


def _raw(column: Any) -> Any:
    """The column's value as the driver delivers it, without SQLAlchemy's decoding.

    SQLite stores anything in any column, and decoding a date, a timestamp or a decimal at
    fetch time raises on the first bad value, before anyone can say which draft holds it. The
    domain parsers take the raw value instead; PostgreSQL still delivers date, datetime and
    Decimal objects, which they accept as well.
    """
    return type_coerce(column, String).label(column.name)


# ship_to as its JSON text on every database: PostgreSQL's driver would decode it, and a JSON
# string would then be indistinguishable from text that is not JSON at all.
_DRAFT_COLUMNS = (
    draft_order.c.id,
    draft_order.c.org_id,
    draft_order.c.status,
    draft_order.c.customer_po_number,
    draft_order.c.customer_erp_number,
    draft_order.c.customer_name,
    _raw(draft_order.c.order_date),
    _raw(draft_order.c.requested_delivery_date),
    draft_order.c.currency,
    cast(draft_order.c.ship_to, Text).label("ship_to"),
    draft_order.c.notes,
    _raw(draft_order.c.approved_at),
    _raw(draft_order.c.updated_at),
)

# In LINE_FIELDS order: rows go to line_from_values as they are, without a mapping per row.
_LINE_COLUMNS = (
    draft_order_line.c.line_no,
    draft_order_line.c.erp_item_number,
    draft_order_line.c.customer_item_number,
    draft_order_line.c.description,
    _raw(draft_order_line.c.quantity),
    draft_order_line.c.uom,
    _raw(draft_order_line.c.unit_price),
    _raw(draft_order_line.c.requested_delivery_date),
)


def _line_count():  # type: ignore[no-untyped-def]
    return (
        select(func.count())
        .where(draft_order_line.c.draft_order_id == draft_order.c.id)
        .scalar_subquery()
        .label("line_count")
    )


def _draft_select() -> Select[Any]:
    """Every draft header column, raw (see ``_raw``), plus its line count."""
    return select(*_DRAFT_COLUMNS, _line_count())


def _draft(row: Any) -> DraftOrder:
    """A row of ``_draft_select()`` as a DraftOrder; raises DraftRefused naming the bad values."""
    return draft_from_values(row._mapping)


class SqlDraftSource:
    """The ``DraftSource`` port on OrderFlow core's tables; lines are streamed in chunks."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def get_draft(self, ref: DraftRef) -> DraftOrder | None:
        query = _draft_select().where(
            draft_order.c.id == ref.draft_order_id, draft_order.c.org_id == ref.org_id
        )
        with self._engine.connect() as conn:
            row = conn.execute(query).first()
        return None if row is None else _draft(row)

    def iter_lines(self, ref: DraftRef, chunk_size: int = 1000) -> Iterator[DraftLine]:
        query = (
            select(*_LINE_COLUMNS)
            .where(draft_order_line.c.draft_order_id == ref.draft_order_id)
            .order_by(draft_order_line.c.line_no)
        )
        # yield_per streams through a server-side cursor on PostgreSQL: memory stays flat.
        with self._engine.connect() as conn:
            result = conn.execution_options(yield_per=chunk_size).execute(query)
            draft = str(ref)
            for row in result:
                yield line_from_values(row, draft)

    def find_unexported_approved(
        self,
        limit: int,
        org_ids: list[str] | None = None,
        after: tuple[datetime, str] | None = None,
    ) -> list[DraftOrder]:
        has_export = exists().where(
            and_(
                erp_export.c.org_id == draft_order.c.org_id,
                erp_export.c.draft_order_id == draft_order.c.id,
            )
        )
        # approved_at is set with APPROVED (CONTRACT §1); updated_at stands in if it is missing.
        approved = func.coalesce(draft_order.c.approved_at, draft_order.c.updated_at)
        query = (
            _draft_select()
            .where(draft_order.c.status == APPROVED, ~has_export)
            .order_by(approved, draft_order.c.id)
            .limit(limit)
        )
        if org_ids is not None:
            query = query.where(draft_order.c.org_id.in_(org_ids))
        if after is not None:
            moment, draft_id = after
            query = query.where(
                or_(approved > moment, and_(approved == moment, draft_order.c.id > draft_id))
            )
        with self._engine.connect() as conn:
            return [_draft(row) for row in conn.execute(query)]
