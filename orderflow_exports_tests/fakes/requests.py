"""``FakeExportRequests``: the ``ExportRequests`` port in memory, compare-and-set on revision."""

from __future__ import annotations

import builtins
import threading
from dataclasses import asdict, fields, replace
from datetime import UTC, datetime

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


def _in_utc(record: ExportRequest) -> ExportRequest:
    """The record as the database gives it back: every timestamp in UTC."""
    changes = {
        f.name: getattr(record, f.name).astimezone(UTC)
        for f in fields(record)
        if isinstance(getattr(record, f.name), datetime)
    }
    return replace(record, **changes)


class FakeExportRequests:
    """``ExportRequests`` over a dict of records, with ``SqlExportRequests``' write rules.

    Every write checks the record's ``revision`` as it was read and bumps it: a request planned
    on a record that changed since loses and is left out; the pure rules of
    ``domain.export_requests`` decide what each request and outcome writes.
    """

    def __init__(self) -> None:
        self._rows: dict[DraftRef, ExportRequest] = {}
        self._lock = threading.Lock()

    def get(self, ref: DraftRef) -> ExportRequest | None:
        with self._lock:
            return self._rows.get(ref)

    def record_requests(
        self,
        planned: builtins.list[tuple[DraftRef, ExportRequest | None, RequestReason, datetime]],
        *,
        at: datetime,
    ) -> builtins.list[DraftRef]:
        updated: builtins.list[DraftRef] = []
        inserted: builtins.list[DraftRef] = []
        with self._lock:
            for ref, previous, reason, draft_updated_at in planned:
                change = on_request(previous, reason, at)
                if previous is not None and gives_up(previous, reason):
                    # Marked as needing a person, and not requested.
                    self._write(ref, previous, change, draft_updated_at=draft_updated_at)
                    continue
                if self._write(
                    ref,
                    previous,
                    change,
                    requested=True,
                    last_requested_at=at,
                    draft_updated_at=draft_updated_at,
                ):
                    (inserted if previous is None else updated).append(ref)
        # The SQL adapter inserts first requests in one statement after the updates.
        return updated + inserted

    def record_outcome(
        self, ref: DraftRef, outcome: RequestOutcome, reason: str, *, at: datetime
    ) -> ExportRequest:
        [record] = self.record_outcomes([(ref, outcome, reason)], at=at)
        return record

    def record_outcomes(
        self, outcomes: builtins.list[tuple[DraftRef, RequestOutcome, str]], *, at: datetime
    ) -> builtins.list[ExportRequest]:
        written: builtins.list[ExportRequest] = []
        with self._lock:
            for ref, outcome, reason in outcomes:
                previous = self._rows.get(ref)
                assert self._write(ref, previous, on_outcome(previous, outcome, reason, at))
                written.append(self._rows[ref])
        return written

    def _write(
        self,
        ref: DraftRef,
        previous: ExportRequest | None,
        change: RequestUpdate,
        *,
        requested: bool = False,
        **columns: datetime | None,
    ) -> bool:
        current = self._rows.get(ref)
        if previous is None:
            if current is not None:
                return False  # inserted meanwhile by another writer
            record = ExportRequest(
                org_id=ref.org_id,
                draft_order_id=ref.draft_order_id,
                request_count=1 if requested else 0,
                last_requested_at=columns.get("last_requested_at"),
                draft_updated_at=columns.get("draft_updated_at"),
                revision=1,
                **asdict(change),
            )
        else:
            if current is None or current.revision != previous.revision:
                return False
            record = replace(
                current,
                revision=current.revision + 1,
                request_count=current.request_count + (1 if requested else 0),
                **asdict(change),
                **columns,  # type: ignore[arg-type]
            )
        self._rows[ref] = _in_utc(record)
        return True

    def needing_person(
        self, *, org_id: str | None = None, limit: int = 100
    ) -> builtins.list[ExportRequest]:
        with self._lock:
            found = [
                r
                for r in self._rows.values()
                if r.needs_person_since is not None and (org_id is None or r.org_id == org_id)
            ]
        found.sort(key=lambda r: (r.needs_person_since, r.org_id, r.draft_order_id))
        return found[:limit]
