"""``erp_export`` through SQLAlchemy Core: inserts, compare-and-set status changes, queries."""

from __future__ import annotations

import builtins
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, insert, literal_column, select, update
from sqlalchemy.exc import IntegrityError

from orderflow_exports.adapters.sql.tables import erp_export
from orderflow_exports.domain.document import CONNECTOR_TYPE
from orderflow_exports.domain.errors import AlreadyInFlight, ErrorCode, stored_transience
from orderflow_exports.domain.naming import DraftRef
from orderflow_exports.domain.records import ExportRecord, NewExport
from orderflow_exports.domain.status import ExportStatus, require_transition

SUPERSEDED = ErrorCode.SUPERSEDED


def _statuses(expected: ExportStatus | tuple[ExportStatus, ...]) -> list[str]:
    return [str(s) for s in ((expected,) if isinstance(expected, ExportStatus) else expected)]


def _record(row: Any) -> ExportRecord:
    values = dict(row)
    values["status"] = ExportStatus(values["status"])
    return ExportRecord(**values)


class SqlExportLedger:
    """The ``ExportLedger`` port on any SQLAlchemy database (SQLite, PostgreSQL)."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def get(self, export_id: str) -> ExportRecord | None:
        with self._engine.connect() as conn:
            row = conn.execute(select(erp_export).where(erp_export.c.id == export_id)).first()
        return None if row is None else _record(row._mapping)

    def latest(self, ref: DraftRef) -> ExportRecord | None:
        query = (
            select(erp_export)
            .where(
                erp_export.c.org_id == ref.org_id,
                erp_export.c.draft_order_id == ref.draft_order_id,
            )
            .order_by(erp_export.c.attempt.desc())
            .limit(1)
        )
        with self._engine.connect() as conn:
            row = conn.execute(query).first()
        return None if row is None else _record(row._mapping)

    def create_pending(self, new: NewExport, *, supersede: str | None = None) -> ExportRecord:
        values: dict[str, Any] = {
            "id": new.id,
            "org_id": new.ref.org_id,
            "draft_order_id": new.ref.draft_order_id,
            "connector_type": CONNECTOR_TYPE,
            "attempt": new.attempt,
            "status": str(ExportStatus.PENDING),
            "filename": new.filename,
            "dropzone_path": new.dropzone_path,
            "storage_key": new.storage_key,
            "content_sha256": new.content_sha256,
            "byte_size": new.byte_size,
            "line_count": new.line_count,
            "forced": new.forced,
            "erp_order_number": None,
            "error_code": None,
            "error_message": None,
            "error_transient": None,
            "dagster_run_id": new.dagster_run_id,
            "created_at": new.created_at,
            "sent_at": None,
            "acked_at": None,
            "rename_started_at": None,
            "updated_at": new.created_at,
        }
        try:
            with self._engine.begin() as conn:
                if supersede is not None:
                    superseded = conn.execute(
                        self._transition(
                            supersede,
                            ExportStatus.SENT,
                            self._failure(
                                SUPERSEDED,
                                f"superseded by forced export {new.id}",
                                None,
                                new.created_at,
                            ),
                        )
                    ).rowcount
                    if superseded != 1:
                        raise AlreadyInFlight(
                            f"export {supersede} of {new.ref} changed while forcing a new attempt"
                        )
                conn.execute(insert(erp_export).values(**values))
        except IntegrityError as exc:
            active = self.latest(new.ref)
            detail = (
                f"export {active.id} (attempt {active.attempt}) is {active.status}"
                if active is not None
                else "another attempt was inserted concurrently"
            )
            raise AlreadyInFlight(
                f"draft {new.ref} is already in flight: {detail}; not sending it twice"
            ) from exc
        return ExportRecord(**{**values, "status": ExportStatus.PENDING})

    @staticmethod
    def _transition(
        export_id: str,
        expected: ExportStatus | tuple[ExportStatus, ...],
        values: dict[str, Any],
    ) -> Any:
        """The one compare-and-set statement of every status change: allowed by the status
        machine, and applied only while the row still has an expected status."""
        if "status" in values:
            for old in _statuses(expected):
                require_transition(ExportStatus(old), ExportStatus(values["status"]))
        return (
            update(erp_export)
            .where(erp_export.c.id == export_id, erp_export.c.status.in_(_statuses(expected)))
            .values(**values)
        )

    @staticmethod
    def _failure(code: str, message: str, transient: bool | None, at: datetime) -> dict[str, Any]:
        return {
            "status": str(ExportStatus.FAILED),
            "error_code": str(code),
            "error_message": message[:4000],
            "error_transient": stored_transience(code, transient),
            "updated_at": at,
        }

    def _compare_and_set(
        self,
        export_id: str,
        expected: ExportStatus | tuple[ExportStatus, ...],
        values: dict[str, Any],
    ) -> bool:
        with self._engine.begin() as conn:
            return conn.execute(self._transition(export_id, expected, values)).rowcount == 1

    def mark_renaming(self, export_id: str, *, at: datetime) -> bool:
        # One statement: the status and the empty rename_started_at are checked together, so of
        # a stalled run and the reconciler that fences it off exactly one gets the right.
        statement = (
            update(erp_export)
            .where(
                erp_export.c.id == export_id,
                erp_export.c.status == str(ExportStatus.PENDING),
                erp_export.c.rename_started_at.is_(None),
            )
            .values(rename_started_at=at, updated_at=at)
        )
        with self._engine.begin() as conn:
            return conn.execute(statement).rowcount == 1

    def mark_sent(self, export_id: str, *, at: datetime) -> bool:
        return self._compare_and_set(
            export_id,
            ExportStatus.PENDING,
            {"status": str(ExportStatus.SENT), "sent_at": at, "updated_at": at},
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
            export_id, expected, self._failure(code, message, transient, at)
        )

    def mark_acked(
        self,
        export_id: str,
        *,
        expected: ExportStatus | tuple[ExportStatus, ...],
        erp_order_number: str | None,
        at: datetime,
    ) -> bool:
        return self._compare_and_set(
            export_id,
            expected,
            {
                "status": str(ExportStatus.ACKED),
                "erp_order_number": erp_order_number,
                "acked_at": at,
                "updated_at": at,
            },
        )

    def list(
        self,
        *,
        org_id: str | None = None,
        status: ExportStatus | None = None,
        limit: int = 100,
    ) -> builtins.list[ExportRecord]:
        query = select(erp_export).order_by(erp_export.c.created_at.desc(), erp_export.c.id)
        if org_id is not None:
            query = query.where(erp_export.c.org_id == org_id)
        if status is not None:
            query = query.where(erp_export.c.status == str(status))
        with self._engine.connect() as conn:
            return [_record(row._mapping) for row in conn.execute(query.limit(limit))]

    def latest_failed(
        self,
        error_codes: Iterable[str],
        *,
        org_id: str | None = None,
        limit: int = 100,
        newest_first: bool = False,
    ) -> builtins.list[ExportRecord]:
        """FAILED exports with one of ``error_codes`` that are still their draft's latest
        attempt (a later attempt has taken over from the others), oldest first unless
        ``newest_first``."""
        later = erp_export.alias("later")
        newer_attempt = (
            select(later.c.id)
            .where(
                later.c.org_id == erp_export.c.org_id,
                later.c.draft_order_id == erp_export.c.draft_order_id,
                later.c.attempt > erp_export.c.attempt,
            )
            .exists()
        )
        query = (
            select(erp_export)
            .where(
                erp_export.c.status == str(ExportStatus.FAILED),
                erp_export.c.error_code.in_(list(error_codes)),
                ~newer_attempt,
            )
            .order_by(
                erp_export.c.updated_at.desc() if newest_first else erp_export.c.updated_at,
                erp_export.c.id,
            )
            .limit(limit)
        )
        if org_id is not None:
            query = query.where(erp_export.c.org_id == org_id)
        with self._engine.connect() as conn:
            return [_record(row._mapping) for row in conn.execute(query)]

    def sent_before(self, org_id: str, cutoff: datetime, limit: int) -> builtins.list[ExportRecord]:
        query = (
            select(erp_export)
            .where(
                erp_export.c.org_id == org_id,
                # A literal, not a parameter: only then may SQLite use the partial index
                # ix_erp_export_sent_by_org, whose condition is this very term.
                erp_export.c.status == literal_column(f"'{ExportStatus.SENT}'"),
                erp_export.c.sent_at < cutoff,
            )
            .order_by(erp_export.c.sent_at)
            .limit(limit)
        )
        with self._engine.connect() as conn:
            return [_record(row._mapping) for row in conn.execute(query)]

    def settled_histories(
        self, cutoff: datetime, *, limit: int, after: tuple[str, str] | None = None
    ) -> builtins.list[builtins.list[ExportRecord]]:
        """Every attempt of the drafts whose latest attempt is ACKED before ``cutoff``.

        One page of at most ``limit`` drafts in (org_id, draft_order_id) order, after ``after``;
        the retention rule (``application.retention``) decides on the full histories.
        """
        later = erp_export.alias("later")
        newest = select(later.c.id).where(
            later.c.org_id == erp_export.c.org_id,
            later.c.draft_order_id == erp_export.c.draft_order_id,
            later.c.attempt > erp_export.c.attempt,
        )
        drafts = (
            select(erp_export.c.org_id, erp_export.c.draft_order_id)
            .where(
                erp_export.c.status == str(ExportStatus.ACKED),
                erp_export.c.acked_at < cutoff,
                ~newest.exists(),
            )
            .order_by(erp_export.c.org_id, erp_export.c.draft_order_id)
            .limit(limit)
        )
        if after is not None:
            drafts = drafts.where(
                (erp_export.c.org_id > after[0])
                | ((erp_export.c.org_id == after[0]) & (erp_export.c.draft_order_id > after[1]))
            )
        with self._engine.connect() as conn:
            keys = [(row[0], row[1]) for row in conn.execute(drafts)]
            histories: dict[tuple[str, str], builtins.list[ExportRecord]] = {k: [] for k in keys}
            for org_id in {k[0] for k in keys}:
                ids = [d for o, d in keys if o == org_id]
                query = select(erp_export).where(
                    erp_export.c.org_id == org_id, erp_export.c.draft_order_id.in_(ids)
                )
                for row in conn.execute(query):
                    record = _record(row._mapping)
                    histories[(record.org_id, record.draft_order_id)].append(record)
        return [histories[k] for k in keys]
