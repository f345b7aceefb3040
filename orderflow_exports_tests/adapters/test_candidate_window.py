"""The export sensor's narrow reads (changed since / due only) on SQLite and PostgreSQL."""

from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, text

from orderflow_exports.adapters.sql.drafts import SqlDraftSource
from orderflow_exports.adapters.sql.export_requests import SqlExportRequests
from orderflow_exports.adapters.sql.ledger import SqlExportLedger
from orderflow_exports.demo import SampleDraft, insert_drafts
from orderflow_exports.domain.export_requests import RequestOutcome
from orderflow_exports.domain.naming import DraftRef
from orderflow_exports_tests.adapters.test_sql_ledger import new_export

NOW = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)


def _read(drafts: SqlDraftSource, page: int, **kwargs: object) -> list[str]:
    keys: list[str] = []
    after: object | None = None
    while True:
        found = drafts.find_export_candidates(limit=page, now=NOW, after=after, **kwargs)  # type: ignore[arg-type]
        keys.extend(f"{c.draft.org_id}:{c.draft.id}" for c in found.candidates)
        if found.cursor is None:
            return keys
        after = found.cursor


def test_changed_since_reads_only_later_changes_in_order_across_equal_times(
    engine: Engine,
) -> None:
    old = NOW - timedelta(days=40)
    since = NOW - timedelta(minutes=10)
    # Equal change times across page borders: the read must not skip or repeat any.
    recent = [
        SampleDraft("acme", f"R-{n:02d}", approved_at=since + timedelta(minutes=n // 4))
        for n in range(9)
    ]
    insert_drafts(engine, [SampleDraft("acme", f"OLD-{n}", approved_at=old) for n in range(5)])
    insert_drafts(engine, recent)
    ledger = SqlExportLedger(engine)
    sent = ledger.create_pending(new_export(ref=DraftRef("acme", "R-02")))
    assert ledger.mark_sent(sent.id, at=NOW)

    got = _read(SqlDraftSource(engine), 2, changed_since=since)
    assert got == [f"acme:R-{n:02d}" for n in range(9) if n != 2]
    # The whole-backlog read still sees the old ones (no cursor yet).
    assert len(_read(SqlDraftSource(engine), 4)) == 13


def test_due_only_reads_due_requests_whatever_the_change_time(engine: Engine) -> None:
    old = NOW - timedelta(days=40)
    insert_drafts(engine, [SampleDraft("acme", f"D-{n}", approved_at=old) for n in range(4)])
    requests = SqlExportRequests(engine)
    for n in (1, 3):
        requests.record_outcome(
            DraftRef("acme", f"D-{n}"),
            RequestOutcome.TRANSIENT,
            "refused",
            at=NOW - timedelta(hours=2),
        )
    requests.record_outcome(
        DraftRef("acme", "D-2"), RequestOutcome.TRANSIENT, "refused", at=NOW
    )  # backoff not passed yet
    assert _read(SqlDraftSource(engine), 1, due_only=True) == ["acme:D-1", "acme:D-3"]
    assert _read(SqlDraftSource(engine), 10, changed_since=NOW - timedelta(days=1)) == []


def test_the_window_query_is_served_by_the_index(engine: Engine) -> None:
    insert_drafts(
        engine,
        [SampleDraft("acme", f"D-{n}", approved_at=NOW - timedelta(days=n)) for n in range(30)],
    )
    since = (NOW - timedelta(hours=1)).replace(tzinfo=None)
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            plan = conn.execute(
                text(
                    "EXPLAIN QUERY PLAN SELECT id FROM draft_order WHERE status = 'APPROVED' "
                    "AND updated_at >= :since ORDER BY updated_at, id"
                ),
                {"since": str(since)},
            ).all()
            detail = " ".join(str(row[-1]) for row in plan)
        else:
            conn.execute(text("ANALYZE draft_order"))
            conn.execute(text("SET enable_seqscan = off"))  # a 30-row table would be seq-scanned
            plan = conn.execute(
                text(
                    "EXPLAIN SELECT id FROM draft_order WHERE status = 'APPROVED' "
                    "AND updated_at >= :since ORDER BY updated_at, id"
                ),
                {"since": since.replace(tzinfo=UTC)},
            ).all()
            detail = " ".join(str(row[0]) for row in plan)
    assert "ix_orderflow_draft_order_status_updated" in detail, detail
