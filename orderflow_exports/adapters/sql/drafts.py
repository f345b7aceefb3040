"""Reads OrderFlow core's ``draft_order`` / ``draft_order_line`` (read-only)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Connection,
    DateTime,
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
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

from orderflow_exports.adapters.sql.export_requests import request_from_row
from orderflow_exports.adapters.sql.tables import (
    draft_order,
    draft_order_line,
    erp_export,
    erp_export_request,
)
from orderflow_exports.domain.drafts import (
    APPROVED,
    DraftLine,
    DraftOrder,
    draft_from_values,
    line_from_values,
)
from orderflow_exports.domain.errors import OrderflowError
from orderflow_exports.domain.export_requests import (
    REDRIVABLE_FAILURE_CODES,
    SETTLED_OUTCOMES,
    Candidate,
    CandidatePage,
    UnreadableDraft,
)
from orderflow_exports.domain.naming import DraftRef

# What reading one bad core row can raise (an undecodable JSON or date column, a refused field);
# a database that cannot be reached raises other errors, which must not pass for a bad draft.
ROW_ERRORS = (OrderflowError, ValueError, TypeError, LookupError, RecursionError)
_BLOCKING_STATUSES = ("PENDING", "SENT", "ACKED")


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


class _RawTimestamp(TypeDecorator[Any]):
    """A timestamp as the database returns it: SQLite's stored text is never parsed."""

    impl = String
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> Any:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(String())
        return dialect.type_descriptor(DateTime(timezone=True))


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

    def find_export_candidates(
        self,
        limit: int,
        now: datetime,
        after: object | None = None,
        *,
        changed_since: datetime | None = None,
        due_only: bool = False,
    ) -> CandidatePage:
        """APPROVED drafts that may need a request now, oldest approval first, one page.

        A candidate has no PENDING, SENT or ACKED export, no export that was ever sent
        (``sent_at`` set: only a person re-sends those), and either no request record and no
        export at all, or no record and a latest export FAILED with an error that may pass, or
        a record that is due (``next_due_at <= now``) or older than the draft's last change
        after a settled outcome — a superset of what
        ``domain.export_requests.request_reason`` accepts, so the planner decides. Each draft
        is read on its own terms: one that cannot be decoded is reported in ``unreadable`` and
        the page goes on. ``after`` is the previous page's ``cursor``.

        Two narrower reads keep a tick's cost independent of history: ``changed_since`` reads
        only drafts whose ``updated_at`` is at or after it (every approval, re-approval and edit
        moves it), in ``updated_at`` order, through the index of migration 0005; ``due_only``
        reads only drafts whose request record is due (``next_due_at <= now``), through the
        record's ``next_due_at`` index. The other conditions are the same in every mode.
        """
        e, r = erp_export, erp_export_request
        same_draft = and_(
            e.c.org_id == draft_order.c.org_id, e.c.draft_order_id == draft_order.c.id
        )
        blocking = exists().where(same_draft, e.c.status.in_(_BLOCKING_STATUSES))
        any_export = exists().where(same_draft)
        ever_sent = exists().where(same_draft, e.c.sent_at.is_not(None))
        latest = erp_export.alias("latest")
        latest_failure_code = (
            select(latest.c.error_code)
            .where(
                latest.c.org_id == draft_order.c.org_id,
                latest.c.draft_order_id == draft_order.c.id,
                latest.c.status == "FAILED",
            )
            .order_by(latest.c.attempt.desc())
            .limit(1)
            .scalar_subquery()
        )
        redrivable = [str(code) for code in REDRIVABLE_FAILURE_CODES]
        approved: Any = func.coalesce(draft_order.c.approved_at, draft_order.c.updated_at)
        if changed_since is not None:
            approved = draft_order.c.updated_at
        elif due_only:
            approved = r.c.next_due_at
        # The sort key travels raw (never decoded): a garbage timestamp on SQLite must not stop
        # the paging, and the raw value compares as the column does on either database.
        raw_key = type_coerce(approved, _RawTimestamp())
        settled = [str(o) for o in SETTLED_OUTCOMES]
        query = (
            select(
                draft_order.c.org_id.label("d_org_id"),
                draft_order.c.id.label("d_id"),
                raw_key.label("sort_key"),
                any_export.label("has_exports"),
                latest_failure_code.label("latest_failure_code"),
                *(c.label(f"r_{c.name}") for c in r.c),
            )
            .select_from(
                draft_order.join(
                    r,
                    and_(
                        r.c.org_id == draft_order.c.org_id, r.c.draft_order_id == draft_order.c.id
                    ),
                    isouter=not due_only,
                )
            )
            .where(
                draft_order.c.status == APPROVED,
                ~blocking,
                ~ever_sent,
                or_(
                    and_(r.c.revision.is_(None), ~any_export),
                    and_(r.c.revision.is_(None), latest_failure_code.in_(redrivable)),
                    r.c.next_due_at <= now,
                    and_(
                        draft_order.c.updated_at > r.c.draft_updated_at,
                        or_(r.c.last_outcome.in_(settled), r.c.needs_person_since.is_not(None)),
                    ),
                ),
            )
            .order_by(approved, draft_order.c.id)
            .limit(limit)
        )
        if changed_since is not None:
            query = query.where(draft_order.c.updated_at >= changed_since)
        if due_only:
            query = query.where(r.c.next_due_at <= now)
        if after is not None:
            assert isinstance(after, tuple) and len(after) == 2, after
            moment, last_id = after
            query = query.where(
                or_(raw_key > moment, and_(raw_key == moment, draft_order.c.id > last_id))
            )
        with self._engine.connect() as conn:
            rows = [row._mapping for row in conn.execute(query)]
            drafts, unreadable = self._read_drafts(conn, [(m["d_org_id"], m["d_id"]) for m in rows])
        candidates = [
            Candidate(
                draft=drafts[(m["d_org_id"], m["d_id"])],
                request=request_from_row(m, prefix="r_"),
                has_exports=bool(m["has_exports"]),
                ever_sent=False,  # excluded by the query
                latest_failure_code=m["latest_failure_code"],
            )
            for m in rows
            if (m["d_org_id"], m["d_id"]) in drafts
        ]
        cursor = (rows[-1]["sort_key"], rows[-1]["d_id"]) if len(rows) == limit else None
        return CandidatePage(candidates=candidates, unreadable=unreadable, cursor=cursor)

    @staticmethod
    def _read_drafts(
        conn: Connection, keys: Sequence[tuple[str, str]]
    ) -> tuple[dict[tuple[str, str], DraftOrder], list[UnreadableDraft]]:
        """The drafts named by ``keys``; a bad row is reported, never stops the others."""
        drafts: dict[tuple[str, str], DraftOrder] = {}
        unreadable: list[UnreadableDraft] = []
        if not keys:
            return drafts, unreadable
        wanted = set(keys)
        query = _draft_select().where(draft_order.c.id.in_([draft_id for _, draft_id in keys]))
        try:
            rows = conn.execute(query).all()
        except ROW_ERRORS:
            # Decoding happens while fetching: one bad row spoils the whole fetch, so fetch the
            # drafts one by one to find it and keep the rest.
            rows = None
        if rows is not None:
            for row in rows:
                key = (row._mapping["org_id"], row._mapping["id"])
                if key not in wanted:
                    continue
                try:
                    drafts[key] = _draft(row)
                except ROW_ERRORS as exc:
                    unreadable.append(UnreadableDraft(*key, _describe(exc)))
            return drafts, unreadable
        for org_id, draft_id in keys:
            one = _draft_select().where(
                draft_order.c.id == draft_id, draft_order.c.org_id == org_id
            )
            try:
                found = conn.execute(one).first()
                if found is not None:
                    drafts[(org_id, draft_id)] = _draft(found)
            except ROW_ERRORS as exc:
                unreadable.append(UnreadableDraft(org_id, draft_id, _describe(exc)))
        return drafts, unreadable


def _describe(exc: BaseException) -> str:
    if isinstance(exc, OrderflowError):
        return str(exc)
    return f"unreadable row in draft_order ({type(exc).__name__}: {exc})"
