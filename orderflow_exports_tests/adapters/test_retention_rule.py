"""The retention rule on real erp_export rows (SQLite and PostgreSQL)."""

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine

from orderflow_exports.adapters.sql.ledger import SqlExportLedger
from orderflow_exports.application.retention import DEFAULT_MAX_AGE, decide, removable
from orderflow_exports.domain.naming import DraftRef
from orderflow_exports.domain.status import ExportStatus
from orderflow_exports_tests.adapters.test_sql_ledger import new_export

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
OLD = NOW - timedelta(days=40)
RECENT = NOW - timedelta(days=5)


def _acked(ledger: SqlExportLedger, ref: DraftRef, attempt: int, at: datetime, **kw: object) -> str:
    row = ledger.create_pending(new_export(attempt, ref, created_at=at), **kw)  # type: ignore[arg-type]
    assert ledger.mark_sent(row.id, at=at)
    assert ledger.mark_acked(row.id, expected=ExportStatus.SENT, erp_order_number="SO-1", at=at)
    return row.id


def _history(engine: Engine) -> dict[str, str]:
    """One draft per case; returns draft id → what the rule must say."""
    ledger = SqlExportLedger(engine)
    ref = lambda d: DraftRef("acme", d)  # noqa: E731
    _acked(ledger, ref("ACKED-OLD"), 1, OLD)
    _acked(ledger, ref("ACKED-RECENT"), 1, RECENT)
    sent = ledger.create_pending(new_export(1, ref("SENT-OLD"), created_at=OLD))
    assert ledger.mark_sent(sent.id, at=OLD)
    ledger.create_pending(new_export(1, ref("PENDING-OLD"), created_at=OLD))
    timed_out = ledger.create_pending(new_export(1, ref("FAILED-OLD"), created_at=OLD))
    assert ledger.mark_sent(timed_out.id, at=OLD)
    assert ledger.mark_failed(
        timed_out.id, expected=ExportStatus.SENT, code="ACK_TIMEOUT", message="no ack", at=OLD
    )
    # SENT, then forced again: attempt 1 FAILED (SUPERSEDED) by attempt 2, which was ACKED.
    first = ledger.create_pending(new_export(1, ref("SUPERSEDED-OLD"), created_at=OLD))
    assert ledger.mark_sent(first.id, at=OLD)
    _acked(ledger, ref("SUPERSEDED-OLD"), 2, OLD, supersede=first.id)
    # A connection failure, then a retry that was ACKED.
    failed = ledger.create_pending(new_export(1, ref("RETRIED-OLD"), created_at=OLD))
    assert ledger.mark_failed(
        failed.id, expected=ExportStatus.PENDING, code="CONNECTION", message="x", at=OLD
    )
    _acked(ledger, ref("RETRIED-OLD"), 2, OLD)
    # ACKED long ago, and a person is re-sending it now (attempt 2 PENDING).
    _acked(ledger, ref("RESENDING"), 1, OLD)
    ledger.create_pending(new_export(2, ref("RESENDING"), created_at=NOW, forced=True))
    return {
        "ACKED-OLD": "remove",
        "SUPERSEDED-OLD": "remove",
        "RETRIED-OLD": "remove",
        "ACKED-RECENT": "keep",
        "SENT-OLD": "keep",
        "PENDING-OLD": "keep",
        "FAILED-OLD": "keep",
        "RESENDING": "keep",
    }


def test_only_settled_drafts_older_than_the_age_are_removable(engine: Engine) -> None:
    expected = _history(engine)
    ledger = SqlExportLedger(engine)
    histories = []
    after = None
    while True:  # pages of 2 drafts: the paging must neither skip nor repeat one
        page = ledger.settled_histories(NOW - DEFAULT_MAX_AGE, limit=2, after=after)
        if not page:
            break
        histories.extend(page)
        after = (page[-1][0].org_id, page[-1][0].draft_order_id)
    removed = {ref.draft_order_id for ref in removable(histories, NOW, DEFAULT_MAX_AGE)}
    assert removed == {d for d, verdict in expected.items() if verdict == "remove"}
    # Every attempt comes with its draft: the rule sees the superseded first attempt too.
    by_draft = {h[0].draft_order_id: h for h in histories}
    assert sorted(a.attempt for a in by_draft["SUPERSEDED-OLD"]) == [1, 2]


def test_the_rule_itself_refuses_active_and_failed_latest_attempts(engine: Engine) -> None:
    _history(engine)
    ledger = SqlExportLedger(engine)
    for draft, word in (
        ("SENT-OLD", "active"),
        ("PENDING-OLD", "active"),
        ("FAILED-OLD", "FAILED"),
        ("ACKED-RECENT", "too recent"),
    ):
        attempts = [r for r in ledger.list(org_id="acme", limit=100) if r.draft_order_id == draft]
        decision = decide(attempts, NOW, DEFAULT_MAX_AGE)
        assert not decision.remove and word in decision.reason, (draft, decision)
    with pytest.raises(ValueError):
        removable([], NOW, timedelta(0))
