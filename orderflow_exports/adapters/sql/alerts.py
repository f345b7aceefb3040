"""Alert conditions read from ``erp_export`` / ``erp_export_request``, and ``erp_alert``, the
log of alert events each channel was told of."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

from sqlalchemy import Column, Engine, Index, String, Table, func, insert, select
from sqlalchemy.exc import IntegrityError

from orderflow_exports.adapters.sql.export_requests import request_from_row
from orderflow_exports.adapters.sql.ledger import SqlExportLedger, _record
from orderflow_exports.adapters.sql.tables import (
    UtcDateTime,
    erp_export,
    erp_export_request,
    owned_metadata,
)
from orderflow_exports.domain.export_requests import ExportRequest
from orderflow_exports.domain.records import ExportRecord
from orderflow_exports.domain.status import ExportStatus

# Migrated by 0004_alerts. Kept beside its only user rather than in tables.py.
erp_alert = Table(
    "erp_alert",
    owned_metadata,
    Column("event_key", String(255), primary_key=True),
    Column("channel", String(32), primary_key=True),
    Column("kind", String(32), nullable=False),
    Column("org_id", String(64)),
    Column("sent_at", UtcDateTime(), nullable=False),
    Index("ix_erp_alert_sent_at", "sent_at"),
)


class SqlAlertConditions:
    """The ``AlertConditions`` port: the rows that call for a person, read-only."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    # Newest first everywhere: events told already stay in these results for as long as the
    # rows stay as they are, so with oldest first a backlog would hide every new event.

    def latest_failed(self, error_codes: Iterable[str], limit: int) -> list[ExportRecord]:
        """FAILED exports with one of ``error_codes`` still their draft's latest attempt."""
        return SqlExportLedger(self._engine).latest_failed(
            error_codes, limit=limit, newest_first=True
        )

    def pending_since_before(self, cutoff: datetime, limit: int) -> list[ExportRecord]:
        query = (
            select(erp_export)
            .where(
                erp_export.c.status == str(ExportStatus.PENDING),
                erp_export.c.created_at < cutoff,
            )
            .order_by(erp_export.c.created_at.desc(), erp_export.c.id)
            .limit(limit)
        )
        with self._engine.connect() as conn:
            return [_record(row._mapping) for row in conn.execute(query)]

    def needing_person(self, limit: int) -> list[ExportRequest]:
        table = erp_export_request
        query = (
            select(table)
            .where(table.c.needs_person_since.is_not(None))
            .order_by(table.c.needs_person_since.desc(), table.c.org_id, table.c.draft_order_id)
            .limit(limit)
        )
        with self._engine.connect() as conn:
            rows = conn.execute(query).all()
        return [r for r in (request_from_row(row._mapping) for row in rows) if r is not None]

    def failure_streaks(
        self, failure_codes: Iterable[str], at_least: int
    ) -> list[tuple[ExportRecord, ExportRecord, int]]:
        """Per org whose latest ``at_least`` or more attempts all FAILED with one of
        ``failure_codes``: (first attempt of the streak, latest attempt, length)."""
        codes = list(failure_codes)
        failed = (erp_export.c.status == str(ExportStatus.FAILED)) & erp_export.c.error_code.in_(
            codes
        )
        streaks: list[tuple[ExportRecord, ExportRecord, int]] = []
        with self._engine.connect() as conn:
            orgs = conn.execute(select(erp_export.c.org_id).distinct()).scalars().all()
            for org_id in orgs:
                # The streak starts after the org's latest attempt that is not such a failure.
                boundary = conn.execute(
                    select(func.max(erp_export.c.created_at)).where(
                        erp_export.c.org_id == org_id, ~failed
                    )
                ).scalar()
                in_streak = [erp_export.c.org_id == org_id, failed]
                if boundary is not None:
                    in_streak.append(erp_export.c.created_at > boundary)
                count = conn.execute(
                    select(func.count()).select_from(erp_export).where(*in_streak)
                ).scalar_one()
                if count < at_least:
                    continue
                order = (erp_export.c.created_at, erp_export.c.id)
                first = conn.execute(
                    select(erp_export).where(*in_streak).order_by(*order).limit(1)
                ).first()
                last = conn.execute(
                    select(erp_export)
                    .where(*in_streak)
                    .order_by(*(c.desc() for c in order))
                    .limit(1)
                ).first()
                if first is not None and last is not None:
                    streaks.append((_record(first._mapping), _record(last._mapping), count))
        return streaks


class SqlAlertLog:
    """The ``AlertLog`` port over ``erp_alert``: one row per (event, channel) told."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def already_sent(self, channel: str, event_keys: Sequence[str]) -> set[str]:
        found: set[str] = set()
        keys = list(dict.fromkeys(event_keys))
        with self._engine.connect() as conn:
            for start in range(0, len(keys), 500):
                chunk = keys[start : start + 500]
                found.update(
                    conn.execute(
                        select(erp_alert.c.event_key).where(
                            erp_alert.c.channel == channel, erp_alert.c.event_key.in_(chunk)
                        )
                    ).scalars()
                )
        return found

    def record_sent(
        self,
        channel: str,
        events: Sequence[tuple[str, str, str | None]],
        *,
        at: datetime,
    ) -> None:
        """Record ``(event_key, kind, org_id)`` as told on ``channel``; a key recorded already
        (a concurrent evaluation) is left as it is."""
        with self._engine.begin() as conn:
            for key, kind, org_id in events:
                try:
                    with conn.begin_nested():
                        conn.execute(
                            insert(erp_alert).values(
                                event_key=key, channel=channel, kind=kind, org_id=org_id, sent_at=at
                            )
                        )
                except IntegrityError:
                    continue
