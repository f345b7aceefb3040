"""``FakeLedger``: the ``ExportLedger`` port in memory, with the SQL ledger's compare-and-set."""

from __future__ import annotations

import builtins
import threading
from collections.abc import Iterable
from dataclasses import replace
from datetime import UTC, datetime

from orderflow_exports.domain.document import CONNECTOR_TYPE
from orderflow_exports.domain.errors import AlreadyInFlight, ErrorCode, stored_transience
from orderflow_exports.domain.naming import DraftRef
from orderflow_exports.domain.records import ExportRecord, NewExport
from orderflow_exports.domain.status import ExportStatus, require_transition

SUPERSEDED = ErrorCode.SUPERSEDED
# The SQL ledger cuts error messages to what its column is meant to hold.
_MESSAGE_LIMIT = 4000


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError("naive datetime given to a UTC column")
    return moment.astimezone(UTC)


def _statuses(expected: ExportStatus | tuple[ExportStatus, ...]) -> tuple[ExportStatus, ...]:
    return (expected,) if isinstance(expected, ExportStatus) else tuple(expected)


class FakeLedger:
    """``ExportLedger`` over a dict of rows.

    Every status change is a compare-and-set on the current status, checked against the status
    machine first, exactly as ``SqlExportLedger`` does; the constraints of ``erp_export`` (one
    PENDING/SENT row per draft, one row per attempt number) raise ``AlreadyInFlight``. Timestamps
    are kept in UTC, as the database gives them back. One lock makes every call atomic, so the
    fake is safe to share between threads.
    """

    def __init__(self) -> None:
        self._rows: dict[str, ExportRecord] = {}
        self._lock = threading.Lock()

    # --- reading ----------------------------------------------------------------------------

    def get(self, export_id: str) -> ExportRecord | None:
        with self._lock:
            return self._rows.get(export_id)

    def latest(self, ref: DraftRef) -> ExportRecord | None:
        with self._lock:
            rows = self._of(ref)
        return max(rows, key=lambda r: r.attempt) if rows else None

    def rows(self) -> builtins.list[ExportRecord]:
        """Every row, in insertion order (for assertions)."""
        with self._lock:
            return builtins.list(self._rows.values())

    def _of(self, ref: DraftRef) -> builtins.list[ExportRecord]:
        return [
            r
            for r in self._rows.values()
            if r.org_id == ref.org_id and r.draft_order_id == ref.draft_order_id
        ]

    # --- writing ----------------------------------------------------------------------------

    def create_pending(self, new: NewExport, *, supersede: str | None = None) -> ExportRecord:
        created_at = _utc(new.created_at)
        record = ExportRecord(
            id=new.id,
            org_id=new.ref.org_id,
            draft_order_id=new.ref.draft_order_id,
            connector_type=CONNECTOR_TYPE,
            attempt=new.attempt,
            status=ExportStatus.PENDING,
            filename=new.filename,
            dropzone_path=new.dropzone_path,
            storage_key=new.storage_key,
            content_sha256=new.content_sha256,
            byte_size=new.byte_size,
            line_count=new.line_count,
            forced=new.forced,
            erp_order_number=None,
            error_code=None,
            error_message=None,
            dagster_run_id=new.dagster_run_id,
            created_at=created_at,
            sent_at=None,
            acked_at=None,
            updated_at=created_at,
            rename_started_at=None,
        )
        with self._lock:
            # Checked in full before anything changes: the SQL ledger does both in one
            # transaction, so a refused insert leaves the superseded row as it was.
            superseded: ExportRecord | None = None
            if supersede is not None:
                old = self._rows.get(supersede)
                if old is None or old.status is not ExportStatus.SENT:
                    raise AlreadyInFlight(
                        f"export {supersede} of {new.ref} changed while forcing a new attempt"
                    )
                require_transition(old.status, ExportStatus.FAILED)
                superseded = replace(
                    old,
                    status=ExportStatus.FAILED,
                    error_code=str(SUPERSEDED),
                    error_message=f"superseded by forced export {new.id}",
                    error_transient=False,
                    updated_at=created_at,
                )
            others = [r for r in self._of(new.ref) if superseded is None or r.id != superseded.id]
            active = [r for r in others if r.status.is_active]
            clash = (
                new.id in self._rows
                or bool(active)
                or any(r.attempt == new.attempt for r in others)
                or (superseded is not None and superseded.attempt == new.attempt)
            )
            if clash:
                latest = max(self._of(new.ref), key=lambda r: r.attempt, default=None)
                detail = (
                    f"export {latest.id} (attempt {latest.attempt}) is {latest.status}"
                    if latest is not None
                    else "another attempt was inserted concurrently"
                )
                raise AlreadyInFlight(
                    f"draft {new.ref} is already in flight: {detail}; not sending it twice"
                )
            if superseded is not None:
                self._rows[superseded.id] = superseded
            self._rows[record.id] = record
        return record

    def _compare_and_set(
        self,
        export_id: str,
        expected: ExportStatus | tuple[ExportStatus, ...],
        new_status: ExportStatus,
        **values: object,
    ) -> bool:
        statuses = _statuses(expected)
        for old in statuses:  # the domain's status machine decides which moves exist
            require_transition(old, new_status)
        with self._lock:
            row = self._rows.get(export_id)
            if row is None or row.status not in statuses:
                return False
            self._rows[export_id] = replace(row, status=new_status, **values)  # type: ignore[arg-type]
            return True

    def mark_renaming(self, export_id: str, *, at: datetime) -> bool:
        when = _utc(at)
        with self._lock:
            row = self._rows.get(export_id)
            if row is None or row.status is not ExportStatus.PENDING:
                return False
            if row.rename_started_at is not None:
                return False
            self._rows[export_id] = replace(row, rename_started_at=when, updated_at=when)
            return True

    def mark_sent(self, export_id: str, *, at: datetime) -> bool:
        when = _utc(at)
        return self._compare_and_set(
            export_id, ExportStatus.PENDING, ExportStatus.SENT, sent_at=when, updated_at=when
        )

    def mark_failed(
        self,
        export_id: str,
        *,
        expected: ExportStatus | tuple[ExportStatus, ...],
        code: str,
        message: str,
        at: datetime,
        transient: bool | None = None,
    ) -> bool:
        return self._compare_and_set(
            export_id,
            expected,
            ExportStatus.FAILED,
            error_code=str(code),
            error_message=message[:_MESSAGE_LIMIT],
            error_transient=stored_transience(code, transient),
            updated_at=_utc(at),
        )

    def mark_acked(
        self,
        export_id: str,
        *,
        expected: ExportStatus | tuple[ExportStatus, ...],
        erp_order_number: str | None,
        at: datetime,
    ) -> bool:
        when = _utc(at)
        return self._compare_and_set(
            export_id,
            expected,
            ExportStatus.ACKED,
            erp_order_number=erp_order_number,
            acked_at=when,
            updated_at=when,
        )

    # --- queries ----------------------------------------------------------------------------

    def list(
        self,
        *,
        org_id: str | None = None,
        status: ExportStatus | None = None,
        limit: int = 100,
    ) -> builtins.list[ExportRecord]:
        with self._lock:
            rows = [
                r
                for r in self._rows.values()
                if (org_id is None or r.org_id == org_id) and (status is None or r.status is status)
            ]
        # Newest first, ties by id: the SQL ledger's ORDER BY created_at DESC, id.
        rows.sort(key=lambda r: r.id)
        rows.sort(key=lambda r: r.created_at, reverse=True)
        return rows[:limit]

    def latest_failed(
        self,
        error_codes: Iterable[str],
        *,
        org_id: str | None = None,
        limit: int = 100,
        newest_first: bool = False,
    ) -> builtins.list[ExportRecord]:
        """FAILED exports with one of ``error_codes`` still their draft's latest attempt."""
        codes = set(error_codes)
        with self._lock:
            rows = builtins.list(self._rows.values())
        latest: dict[tuple[str, str], ExportRecord] = {}
        for row in rows:
            key = (row.org_id, row.draft_order_id)
            if key not in latest or row.attempt > latest[key].attempt:
                latest[key] = row
        found = [
            r
            for r in latest.values()
            if r.status is ExportStatus.FAILED
            and r.error_code in codes
            and (org_id is None or r.org_id == org_id)
        ]
        found.sort(key=lambda r: r.id)
        found.sort(key=lambda r: r.updated_at, reverse=newest_first)
        return found[:limit]

    def sent_before(self, org_id: str, cutoff: datetime, limit: int) -> builtins.list[ExportRecord]:
        bound = _utc(cutoff)
        with self._lock:
            rows = [
                r
                for r in self._rows.values()
                if r.org_id == org_id
                and r.status is ExportStatus.SENT
                and r.sent_at is not None
                and r.sent_at < bound
            ]
        rows.sort(key=lambda r: r.sent_at or bound)
        return rows[:limit]

    def settled_histories(
        self, cutoff: datetime, *, limit: int, after: tuple[str, str] | None = None
    ) -> builtins.list[builtins.list[ExportRecord]]:
        """Every attempt of the drafts whose latest attempt is ACKED before ``cutoff``."""
        bound = _utc(cutoff)
        with self._lock:
            rows = builtins.list(self._rows.values())
        by_draft: dict[tuple[str, str], builtins.list[ExportRecord]] = {}
        for row in rows:
            by_draft.setdefault((row.org_id, row.draft_order_id), []).append(row)
        keys = sorted(
            key
            for key, attempts in by_draft.items()
            if (latest := max(attempts, key=lambda r: r.attempt)).status is ExportStatus.ACKED
            and latest.acked_at is not None
            and latest.acked_at < bound
            and (after is None or key > after)
        )[:limit]
        return [sorted(by_draft[key], key=lambda r: r.attempt) for key in keys]
