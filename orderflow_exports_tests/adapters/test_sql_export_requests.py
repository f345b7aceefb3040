"""erp_export_request and the candidate query on SQLite and PostgreSQL."""

from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine

from orderflow_exports.adapters.sql.drafts import SqlDraftSource
from orderflow_exports.adapters.sql.export_requests import SqlExportRequests
from orderflow_exports.adapters.sql.ledger import SqlExportLedger
from orderflow_exports.demo import SampleDraft, insert_drafts
from orderflow_exports.domain.export_requests import RequestOutcome, RequestReason
from orderflow_exports.domain.naming import DraftRef
from orderflow_exports.domain.status import ExportStatus
from orderflow_exports_tests.adapters.test_sql_ledger import new_export

NOW = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)


def _all_candidates(drafts: SqlDraftSource, now: datetime, page: int) -> list[str]:
    keys: list[str] = []
    after: object | None = None
    while True:
        found = drafts.find_export_candidates(limit=page, now=now, after=after)
        keys.extend(f"{c.draft.org_id}:{c.draft.id}" for c in found.candidates)
        if found.cursor is None:
            return keys
        after = found.cursor


def test_candidates_page_through_every_draft_that_may_need_a_request(engine: Engine) -> None:
    base = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
    # Equal approval times across page borders: the cursor must not skip or repeat any.
    samples = [
        SampleDraft("acme", f"D-{n:02d}", approved_at=base + timedelta(minutes=n // 3))
        for n in range(10)
    ]
    insert_drafts(engine, samples)
    ledger, requests = SqlExportLedger(engine), SqlExportRequests(engine)
    drafts = SqlDraftSource(engine)
    sent = ledger.create_pending(new_export(ref=DraftRef("acme", "D-03")))
    assert ledger.mark_sent(sent.id, at=NOW)
    failed = ledger.create_pending(new_export(ref=DraftRef("acme", "D-04")))
    assert ledger.mark_failed(
        failed.id, expected=ExportStatus.PENDING, code="X", message="m", at=NOW
    )
    waiting = DraftRef("acme", "D-05")  # requested, no outcome yet: not before its hour is up
    assert requests.record_requests([(waiting, None, RequestReason.NEW, base)], at=NOW) == [waiting]
    due = DraftRef("acme", "D-06")
    requests.record_outcome(due, RequestOutcome.TRANSIENT, "refused", at=NOW)

    expected = [f"acme:D-{n:02d}" for n in range(10) if n not in (3, 4, 5, 6)]
    assert _all_candidates(drafts, NOW, page=3) == expected
    later = NOW + timedelta(hours=2)  # D-06's backoff and D-05's unreported hour have passed
    assert _all_candidates(drafts, later, page=3) == [
        f"acme:D-{n:02d}" for n in range(10) if n not in (3, 4)
    ]
    # D-04 has a FAILED export and no request record: never requested automatically.
    page = drafts.find_export_candidates(limit=100, now=later)
    by_id = {c.draft.id: c for c in page.candidates}
    assert by_id["D-06"].request is not None and by_id["D-06"].has_exports is False
    assert by_id["D-06"].request.last_outcome is RequestOutcome.TRANSIENT


def test_a_stale_request_loses_its_compare_and_set(engine: Engine) -> None:
    ref = DraftRef("acme", "D-1")
    requests = SqlExportRequests(engine)
    assert requests.record_requests([(ref, None, RequestReason.NEW, NOW)], at=NOW) == [ref]
    seen = requests.get(ref)
    assert seen is not None and seen.request_count == 1 and seen.revision == 1
    # A run reports meanwhile: the sensor's view of the record is now old.
    reported = requests.record_outcome(ref, RequestOutcome.TRANSIENT, "refused", at=NOW)
    assert reported.revision == 2 and reported.next_due_at == NOW + timedelta(minutes=1)
    assert requests.record_requests([(ref, seen, RequestReason.REDRIVE, NOW)], at=NOW) == []
    assert requests.record_requests([(ref, None, RequestReason.NEW, NOW)], at=NOW) == []
    current = requests.get(ref)
    assert current == reported
    assert requests.record_requests([(ref, current, RequestReason.REDRIVE, NOW)], at=NOW) == [ref]
    redriven = requests.get(ref)
    assert redriven is not None and redriven.request_count == 2 and redriven.redrive_count == 1


def test_a_runs_outcomes_are_recorded_together_and_in_order(engine: Engine) -> None:
    requests = SqlExportRequests(engine)
    known, fresh = DraftRef("acme", "D-1"), DraftRef("acme", "D-2")
    requests.record_requests([(known, None, RequestReason.NEW, NOW)], at=NOW)
    sent, refused = requests.record_outcomes(
        [(known, RequestOutcome.SENT, "sent"), (fresh, RequestOutcome.REFUSED, "no lines")], at=NOW
    )
    assert requests.get(known) == sent and sent.request_count == 1 and sent.revision == 2
    assert requests.get(fresh) == refused and refused.request_count == 0
    # The same draft twice (two tries of one step): one at a time, the later one last.
    later = NOW + timedelta(seconds=5)
    first, second = requests.record_outcomes(
        [(fresh, RequestOutcome.TRANSIENT, "refused"), (fresh, RequestOutcome.SENT, "sent")],
        at=later,
    )
    assert first.revision == 2 and second.revision == 3
    assert requests.get(fresh) == second and second.last_outcome is RequestOutcome.SENT
