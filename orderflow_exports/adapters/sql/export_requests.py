"""``erp_export_request`` through SQLAlchemy Core; every write is a compare-and-set on revision."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, bindparam, insert, select, update
from sqlalchemy.exc import IntegrityError

from orderflow_exports.adapters.sql.tables import erp_export_request
from orderflow_exports.domain.export_requests import (
    ExportRequest,
    RequestOutcome,
    RequestReason,
    RequestUpdate,
    gives_up,
    on_outcome,
    on_request,
)
from orderflow_exports.domain.naming import DraftRef

REQUEST_COLUMNS = tuple(
    c for c in erp_export_request.c if c.name not in ("org_id", "draft_order_id", "updated_at")
)
# A concurrent writer (a run reporting while the sensor requests) makes a compare-and-set lose;
# the outcome is then computed again from what that writer left.
_OUTCOME_CAS_TRIES = 5
_READ_CHUNK = 500
_OUTCOME_COLUMNS = (*RequestUpdate.__dataclass_fields__, "updated_at")


def request_from_row(row: Mapping[Any, Any], prefix: str = "") -> ExportRequest | None:
    """The record in ``row`` (columns named ``{prefix}{column}``), None when the row has none."""
    if row.get(f"{prefix}revision") is None:
        return None
    values = {
        name: row[f"{prefix}{name}"]
        for name in ExportRequest.__dataclass_fields__
        if name not in ("org_id", "draft_order_id")
    }
    outcome = values["last_outcome"]
    values["last_outcome"] = None if outcome is None else RequestOutcome(outcome)
    return ExportRequest(
        org_id=row[f"{prefix}org_id"], draft_order_id=row[f"{prefix}draft_order_id"], **values
    )


def _values(change: RequestUpdate) -> dict[str, Any]:
    values = asdict(change)
    outcome = values["last_outcome"]
    values["last_outcome"] = None if outcome is None else str(outcome)
    return values


def _new_row(ref: DraftRef, values: dict[str, Any], *, requested: bool) -> dict[str, Any]:
    return {
        "org_id": ref.org_id,
        "draft_order_id": ref.draft_order_id,
        "request_count": 1 if requested else 0,
        "revision": 1,
        **values,
    }


def _written(ref: DraftRef, before: ExportRequest | None, change: RequestUpdate) -> ExportRequest:
    """The record after ``change`` was written over ``before`` (no need to read it back)."""
    return ExportRequest(
        org_id=ref.org_id,
        draft_order_id=ref.draft_order_id,
        request_count=before.request_count if before else 0,
        last_requested_at=before.last_requested_at if before else None,
        draft_updated_at=before.draft_updated_at if before else None,
        revision=before.revision + 1 if before else 1,
        **asdict(change),
    )


def _pk(ref: DraftRef) -> Any:
    return (erp_export_request.c.org_id == ref.org_id) & (
        erp_export_request.c.draft_order_id == ref.draft_order_id
    )


class SqlExportRequests:
    """Reads and writes ``erp_export_request`` (SQLite, PostgreSQL)."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def get(self, ref: DraftRef) -> ExportRequest | None:
        with self._engine.connect() as conn:
            return self._get(conn, ref)

    @staticmethod
    def _get(conn: Connection, ref: DraftRef) -> ExportRequest | None:
        row = conn.execute(select(erp_export_request).where(_pk(ref))).first()
        return None if row is None else request_from_row(row._mapping)

    def record_requests(
        self,
        planned: Sequence[tuple[DraftRef, ExportRequest | None, RequestReason, datetime]],
        *,
        at: datetime,
    ) -> list[DraftRef]:
        """Record that each ``(ref, record seen, reason, draft updated_at)`` is requested now.

        Returns the refs recorded; a draft whose record changed since it was read (another
        writer won the compare-and-set) is left out, and the next tick plans it again. A draft
        whose re-drives are used up (``gives_up``) is marked as needing a person instead and
        left out as well: it is not requested.
        """
        recorded: list[DraftRef] = []
        fresh: list[tuple[DraftRef, dict[str, Any]]] = []
        with self._engine.begin() as conn:
            for ref, previous, reason, draft_updated_at in planned:
                if previous is not None and gives_up(previous, reason):
                    # The draft as it is now is the one given up on: only a later change of it
                    # counts as a reason to try again.
                    values = {
                        **_values(on_request(previous, reason, at)),
                        "draft_updated_at": draft_updated_at,
                        "updated_at": at,
                    }
                    self._write(conn, ref, previous, values, requested=False)
                    continue
                values = {
                    **_values(on_request(previous, reason, at)),
                    "last_requested_at": at,
                    "draft_updated_at": draft_updated_at,
                    "updated_at": at,
                }
                if previous is None:
                    fresh.append((ref, values))
                elif self._write(conn, ref, previous, values, requested=True):
                    recorded.append(ref)
            recorded.extend(self._insert_requested(conn, fresh))
        return recorded

    def _insert_requested(
        self, conn: Connection, fresh: list[tuple[DraftRef, dict[str, Any]]]
    ) -> list[DraftRef]:
        """Insert first requests in one statement; one by one only when one of them collides."""
        if not fresh:
            return []
        rows = [_new_row(ref, values, requested=True) for ref, values in fresh]
        try:
            with conn.begin_nested():
                conn.execute(insert(erp_export_request), rows)
        except IntegrityError:
            return [
                ref for ref, values in fresh if self._write(conn, ref, None, values, requested=True)
            ]
        return [ref for ref, _ in fresh]

    def record_outcome(
        self, ref: DraftRef, outcome: RequestOutcome, reason: str, *, at: datetime
    ) -> ExportRequest:
        """Record how the latest try of ``ref`` ended; returns the record as written."""
        [record] = self.record_outcomes([(ref, outcome, reason)], at=at)
        return record

    def record_outcomes(
        self, outcomes: Sequence[tuple[DraftRef, RequestOutcome, str]], *, at: datetime
    ) -> list[ExportRequest]:
        """Record several outcomes in one transaction; returns the records as written."""
        with self._engine.begin() as conn:
            at_once = self._record_at_once(conn, outcomes, at)
            if at_once is not None:
                return at_once
            return [self._record_one(conn, ref, outcome, r, at) for ref, outcome, r in outcomes]

    def _record_at_once(
        self,
        conn: Connection,
        outcomes: Sequence[tuple[DraftRef, RequestOutcome, str]],
        at: datetime,
    ) -> list[ExportRequest] | None:
        """A whole run's outcomes in a few statements; None when a compare-and-set lost (or the
        database cannot count an executemany), and nothing of it is kept."""
        refs = [ref for ref, _, _ in outcomes]
        if len(set(refs)) != len(refs) or not conn.dialect.supports_sane_multi_rowcount:
            return None
        previous = self._get_many(conn, refs)
        written: list[ExportRequest] = []
        inserts: list[dict[str, Any]] = []
        updates: list[dict[str, Any]] = []
        for ref, outcome, reason in outcomes:
            before = previous.get(ref)
            change = on_outcome(before, outcome, reason, at)
            values = {**_values(change), "updated_at": at}
            if before is None:
                inserts.append(_new_row(ref, values, requested=False))
            else:
                updates.append(
                    {"k_org": ref.org_id, "k_draft": ref.draft_order_id, "k_rev": before.revision}
                    | {f"v_{name}": value for name, value in values.items()}
                )
            written.append(_written(ref, before, change))
        table = erp_export_request
        savepoint = conn.begin_nested()
        try:
            if updates:
                changed = conn.execute(
                    update(table)
                    .where(
                        table.c.org_id == bindparam("k_org"),
                        table.c.draft_order_id == bindparam("k_draft"),
                        table.c.revision == bindparam("k_rev"),
                    )
                    .values(
                        revision=table.c.revision + 1,
                        **{name: bindparam(f"v_{name}") for name in _OUTCOME_COLUMNS},
                    ),
                    updates,
                )
                if changed.rowcount != len(updates):
                    savepoint.rollback()
                    return None
            if inserts:
                conn.execute(insert(table), inserts)
        except IntegrityError:
            savepoint.rollback()
            return None
        savepoint.commit()
        return written

    def _get_many(
        self, conn: Connection, refs: Sequence[DraftRef]
    ) -> dict[DraftRef, ExportRequest]:
        found: dict[DraftRef, ExportRequest] = {}
        wanted = set(refs)
        table = erp_export_request
        for start in range(0, len(refs), _READ_CHUNK):
            chunk = refs[start : start + _READ_CHUNK]
            query = select(table).where(
                table.c.org_id.in_({r.org_id for r in chunk}),
                table.c.draft_order_id.in_({r.draft_order_id for r in chunk}),
            )
            for row in conn.execute(query):
                record = request_from_row(row._mapping)
                if record is not None and record.ref in wanted:
                    found[record.ref] = record
        return found

    def _record_one(
        self,
        conn: Connection,
        ref: DraftRef,
        outcome: RequestOutcome,
        reason: str,
        at: datetime,
    ) -> ExportRequest:
        for _ in range(_OUTCOME_CAS_TRIES):
            previous = self._get(conn, ref)
            change = on_outcome(previous, outcome, reason, at)
            if self._write(
                conn, ref, previous, {**_values(change), "updated_at": at}, requested=False
            ):
                return _written(ref, previous, change)
        raise RuntimeError(
            f"could not record the outcome {outcome} of draft {ref}: its erp_export_request "
            f"row kept changing ({_OUTCOME_CAS_TRIES} tries)"
        )

    @staticmethod
    def _write(
        conn: Connection,
        ref: DraftRef,
        previous: ExportRequest | None,
        values: dict[str, Any],
        *,
        requested: bool,
    ) -> bool:
        if previous is None:
            try:
                with conn.begin_nested():
                    conn.execute(
                        insert(erp_export_request).values(
                            _new_row(ref, values, requested=requested)
                        )
                    )
            except IntegrityError:
                return False  # inserted meanwhile by another writer
            return True
        table = erp_export_request
        changed = conn.execute(
            update(table)
            .where(_pk(ref), table.c.revision == previous.revision)
            .values(
                revision=table.c.revision + 1,
                request_count=table.c.request_count + (1 if requested else 0),
                **values,
            )
        )
        return changed.rowcount == 1

    def needing_person(self, *, org_id: str | None = None, limit: int = 100) -> list[ExportRequest]:
        """Drafts that are no longer requested automatically (a person must act), oldest first."""
        table = erp_export_request
        query = (
            select(table)
            .where(table.c.needs_person_since.is_not(None))
            .order_by(table.c.needs_person_since, table.c.org_id, table.c.draft_order_id)
            .limit(limit)
        )
        if org_id is not None:
            query = query.where(table.c.org_id == org_id)
        with self._engine.connect() as conn:
            rows = conn.execute(query).all()
        return [r for r in (request_from_row(row._mapping) for row in rows) if r is not None]
