"""``erp_export_request`` through SQLAlchemy Core; every write is a compare-and-set on revision."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, insert, select, update
from sqlalchemy.exc import IntegrityError

from orderflow_exports.adapters.sql.tables import erp_export_request
from orderflow_exports.domain.export_requests import (
    ExportRequest,
    RequestOutcome,
    RequestReason,
    RequestUpdate,
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
        writer won the compare-and-set) is left out, and the next tick plans it again.
        """
        recorded: list[DraftRef] = []
        with self._engine.begin() as conn:
            for ref, previous, reason, draft_updated_at in planned:
                values = {
                    **_values(on_request(previous, reason, at)),
                    "last_requested_at": at,
                    "draft_updated_at": draft_updated_at,
                    "updated_at": at,
                }
                if self._write(conn, ref, previous, values, requested=True):
                    recorded.append(ref)
        return recorded

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
        written: list[ExportRequest] = []
        with self._engine.begin() as conn:
            for ref, outcome, reason in outcomes:
                written.append(self._record_one(conn, ref, outcome, reason, at))
        return written

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
                return ExportRequest(
                    org_id=ref.org_id,
                    draft_order_id=ref.draft_order_id,
                    request_count=previous.request_count if previous else 0,
                    last_requested_at=previous.last_requested_at if previous else None,
                    draft_updated_at=previous.draft_updated_at if previous else None,
                    revision=previous.revision + 1 if previous else 1,
                    **asdict(change),
                )
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
                            org_id=ref.org_id,
                            draft_order_id=ref.draft_order_id,
                            request_count=1 if requested else 0,
                            revision=1,
                            **values,
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
