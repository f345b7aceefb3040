"""erp_export_request and the candidate query on SQLite and PostgreSQL."""

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, text

from orderflow_exports.adapters.sql.drafts import SqlDraftSource
from orderflow_exports.adapters.sql.export_requests import SqlExportRequests
from orderflow_exports.adapters.sql.ledger import SqlExportLedger
from orderflow_exports.demo import SampleDraft, insert_drafts
from orderflow_exports.domain.errors import DraftRefused
from orderflow_exports.domain.export_requests import (
    MAX_REDRIVES,
    RequestOutcome,
    RequestReason,
    request_reason,
)
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


def _fail(ledger: SqlExportLedger, ref: DraftRef, attempt: int, code: str, *, sent: bool) -> None:
    record = ledger.create_pending(new_export(attempt=attempt, ref=ref))
    expected = ExportStatus.PENDING
    if sent:
        assert ledger.mark_sent(record.id, at=NOW)
        expected = ExportStatus.SENT
    assert ledger.mark_failed(record.id, expected=expected, code=code, message="m", at=NOW)


def test_a_draft_whose_export_was_ever_sent_is_never_a_candidate(engine: Engine) -> None:
    insert_drafts(engine, [SampleDraft("acme", "D-1"), SampleDraft("acme", "D-2")])
    ledger, requests = SqlExportLedger(engine), SqlExportRequests(engine)
    drafts = SqlDraftSource(engine)
    sent_once, never_sent = DraftRef("acme", "D-1"), DraftRef("acme", "D-2")
    # Both records say "needs a person" and both drafts changed since: a CHANGED request, unless
    # an export of the draft reached the ERP (attempt 1 sent, then FAILED by ACK_TIMEOUT).
    for ref in (sent_once, never_sent):
        requests.record_requests([(ref, None, RequestReason.NEW, NOW - timedelta(days=9))], at=NOW)
        requests.record_outcome(ref, RequestOutcome.PERMANENT, "host key", at=NOW)
    _fail(ledger, sent_once, 1, "ACK_TIMEOUT", sent=True)
    _fail(ledger, never_sent, 1, "HOST_KEY", sent=False)
    assert _all_candidates(drafts, NOW + timedelta(days=1), page=10) == ["acme:D-2"]
    # A due re-drive of a draft sent once is not a candidate either.
    requests.record_outcome(sent_once, RequestOutcome.TRANSIENT, "refused", at=NOW)
    assert _all_candidates(drafts, NOW + timedelta(days=1), page=10) == ["acme:D-2"]


def test_drafts_failed_transiently_before_records_were_kept_are_candidates(
    engine: Engine,
) -> None:
    insert_drafts(engine, [SampleDraft("acme", f"D-{n}") for n in range(1, 6)])
    ledger, drafts = SqlExportLedger(engine), SqlDraftSource(engine)
    _fail(ledger, DraftRef("acme", "D-1"), 1, "CONNECTION", sent=False)
    _fail(ledger, DraftRef("acme", "D-2"), 1, "HOST_KEY", sent=False)
    _fail(ledger, DraftRef("acme", "D-3"), 1, "TIMEOUT", sent=True)  # reached the ERP once
    # The latest attempt decides: a permanent failure after a transient one, and back.
    _fail(ledger, DraftRef("acme", "D-4"), 1, "CONNECTION", sent=False)
    _fail(ledger, DraftRef("acme", "D-4"), 2, "AUTH", sent=False)
    _fail(ledger, DraftRef("acme", "D-5"), 1, "AUTH", sent=False)
    _fail(ledger, DraftRef("acme", "D-5"), 2, "INTERRUPTED", sent=False)
    page = drafts.find_export_candidates(limit=100, now=NOW)
    found = {c.draft.id: c for c in page.candidates}
    assert sorted(found) == ["D-1", "D-5"]
    assert found["D-1"].latest_failure_code == "CONNECTION" and found["D-1"].request is None
    assert found["D-5"].latest_failure_code == "INTERRUPTED"
    assert request_reason(found["D-1"], NOW) is RequestReason.REDRIVE


def test_an_unreported_request_past_the_cap_needs_a_person_instead(engine: Engine) -> None:
    insert_drafts(engine, [SampleDraft("acme", "D-1")])
    ref = DraftRef("acme", "D-1")
    requests, drafts = SqlExportRequests(engine), SqlDraftSource(engine)
    assert requests.record_requests([(ref, None, RequestReason.NEW, NOW)], at=NOW) == [ref]
    now = NOW
    for _ in range(MAX_REDRIVES):  # every run is killed before it reports anything
        now += timedelta(hours=1)
        [candidate] = drafts.find_export_candidates(limit=10, now=now).candidates
        assert request_reason(candidate, now) is RequestReason.REDRIVE
        assert requests.record_requests(
            [(ref, candidate.request, RequestReason.REDRIVE, candidate.draft.updated_at)], at=now
        ) == [ref]
    now += timedelta(hours=1)
    [candidate] = drafts.find_export_candidates(limit=10, now=now).candidates
    assert request_reason(candidate, now) is RequestReason.REDRIVE
    assert (
        requests.record_requests(
            [(ref, candidate.request, RequestReason.REDRIVE, candidate.draft.updated_at)], at=now
        )
        == []
    )
    record = requests.get(ref)
    assert record is not None and record.needs_person_since == now and record.next_due_at is None
    assert record.request_count == MAX_REDRIVES + 1 and record.redrive_count == MAX_REDRIVES
    assert record.last_reason == (
        f"requested {MAX_REDRIVES + 1} times, no run reported; needs a person"
    )
    assert requests.needing_person() == [record]
    assert drafts.find_export_candidates(limit=10, now=now + timedelta(days=9)).candidates == []


def _deep_ship_to(engine: Engine) -> str:
    """ship_to nested deeper than a recursive parser can follow, as each database stores it."""
    if engine.dialect.name == "sqlite":
        return "[" * 100_000  # SQLite stores any text
    depth = 5_000  # PostgreSQL's json type accepts (balanced) nesting this deep
    return '{"name": "Lager", "deep": ' + "[" * depth + "]" * depth + "}"


def test_a_deeply_nested_ship_to_refuses_only_its_draft(engine: Engine) -> None:
    insert_drafts(engine, [SampleDraft("acme", "D-1"), SampleDraft("acme", "DEEP")])
    placeholder = "CAST(:v AS json)" if engine.dialect.name == "postgresql" else ":v"
    with engine.begin() as conn:
        conn.execute(
            text(f"UPDATE draft_order SET ship_to = {placeholder} WHERE id = 'DEEP'"),
            {"v": _deep_ship_to(engine)},
        )
    drafts = SqlDraftSource(engine)
    page = drafts.find_export_candidates(limit=10, now=NOW)
    assert [c.draft.id for c in page.candidates] == ["D-1"]
    [unreadable] = page.unreadable
    assert (unreadable.org_id, unreadable.draft_order_id) == ("acme", "DEEP")
    assert unreadable.reason.startswith("draft acme:DEEP: ship_to ")
    assert unreadable.reason.endswith(" is nested too deeply to read")
    with pytest.raises(DraftRefused, match=r"^draft acme:DEEP: ship_to .* nested too deeply"):
        drafts.get_draft(DraftRef("acme", "DEEP"))
