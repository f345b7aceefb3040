"""The ``ExportRequests`` contract: ``SqlExportRequests`` on SQLite and PostgreSQL, and its fake.

What the sensor and the runs rely on: every write is a compare-and-set on the record's revision
(a request planned on a record that changed since loses), a run's outcomes are recorded in order,
a draft whose re-drives are used up is marked as needing a person instead of being requested.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine

from orderflow_exports.adapters.sql.export_requests import SqlExportRequests
from orderflow_exports.domain.export_requests import (
    MAX_REDRIVES,
    RequestOutcome,
    RequestReason,
)
from orderflow_exports.domain.naming import DraftRef
from orderflow_exports.domain.ports import ExportRequests
from orderflow_exports_tests.fakes.requests import FakeExportRequests

NOW = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)
REF = DraftRef("acme", "D-1")


@pytest.fixture
def requests(database: Engine | None) -> ExportRequests:
    return FakeExportRequests() if database is None else SqlExportRequests(database)


def test_a_first_request_creates_the_record(requests: ExportRequests) -> None:
    assert requests.get(REF) is None
    draft_updated = NOW - timedelta(days=1)
    assert requests.record_requests([(REF, None, RequestReason.NEW, draft_updated)], at=NOW) == [
        REF
    ]
    record = requests.get(REF)
    assert record is not None and record.ref == REF
    assert (record.request_count, record.redrive_count, record.revision) == (1, 0, 1)
    assert record.last_requested_at == NOW and record.draft_updated_at == draft_updated
    assert record.last_outcome is None and record.last_reason == "requested (new)"
    assert record.next_due_at == NOW + timedelta(hours=1)
    assert record.needs_person_since is None


def test_a_stale_request_loses_its_compare_and_set(requests: ExportRequests) -> None:
    assert requests.record_requests([(REF, None, RequestReason.NEW, NOW)], at=NOW) == [REF]
    seen = requests.get(REF)
    assert seen is not None
    # A run reports meanwhile: the sensor's view of the record is now old.
    reported = requests.record_outcome(REF, RequestOutcome.TRANSIENT, "refused", at=NOW)
    assert reported.revision == 2 and reported.next_due_at == NOW + timedelta(minutes=1)
    assert requests.get(REF) == reported
    assert requests.record_requests([(REF, seen, RequestReason.REDRIVE, NOW)], at=NOW) == []
    assert requests.record_requests([(REF, None, RequestReason.NEW, NOW)], at=NOW) == []
    assert requests.get(REF) == reported
    assert requests.record_requests([(REF, reported, RequestReason.REDRIVE, NOW)], at=NOW) == [REF]
    redriven = requests.get(REF)
    assert redriven is not None
    assert (redriven.request_count, redriven.redrive_count, redriven.revision) == (2, 1, 3)


def test_only_the_winning_requests_are_returned(requests: ExportRequests) -> None:
    known, fresh, stale = DraftRef("acme", "D-1"), DraftRef("acme", "D-2"), DraftRef("acme", "D-3")
    requests.record_requests(
        [(known, None, RequestReason.NEW, NOW), (stale, None, RequestReason.NEW, NOW)], at=NOW
    )
    known_record, stale_record = requests.get(known), requests.get(stale)
    requests.record_outcome(stale, RequestOutcome.TRANSIENT, "x", at=NOW)
    later = NOW + timedelta(hours=2)
    won = requests.record_requests(
        [
            (known, known_record, RequestReason.REDRIVE, NOW),
            (fresh, None, RequestReason.NEW, NOW),
            (stale, stale_record, RequestReason.REDRIVE, NOW),
        ],
        at=later,
    )
    assert sorted(won) == [known, fresh]


def test_a_run_s_outcomes_are_recorded_together_and_in_order(requests: ExportRequests) -> None:
    known, fresh = DraftRef("acme", "D-1"), DraftRef("acme", "D-2")
    requests.record_requests([(known, None, RequestReason.NEW, NOW)], at=NOW)
    sent, refused = requests.record_outcomes(
        [(known, RequestOutcome.SENT, "sent"), (fresh, RequestOutcome.REFUSED, "no lines")], at=NOW
    )
    assert requests.get(known) == sent and sent.request_count == 1 and sent.revision == 2
    assert sent.last_requested_at == NOW and sent.next_due_at is None
    assert requests.get(fresh) == refused and refused.request_count == 0
    assert refused.last_requested_at is None and refused.last_reason == "no lines"
    # The same draft twice (two tries of one step): the later one last.
    later = NOW + timedelta(seconds=5)
    first, second = requests.record_outcomes(
        [(fresh, RequestOutcome.TRANSIENT, "refused"), (fresh, RequestOutcome.SENT, "sent")],
        at=later,
    )
    assert first.revision == 2 and second.revision == 3
    assert requests.get(fresh) == second and second.last_outcome is RequestOutcome.SENT


def test_a_permanent_outcome_needs_a_person(requests: ExportRequests) -> None:
    record = requests.record_outcome(REF, RequestOutcome.PERMANENT, "host key", at=NOW)
    assert record.needs_person_since == NOW and record.next_due_at is None
    assert requests.needing_person() == [record]


def test_a_redrive_past_the_cap_is_not_requested_but_needs_a_person(
    requests: ExportRequests,
) -> None:
    requests.record_requests([(REF, None, RequestReason.NEW, NOW)], at=NOW)
    for n in range(MAX_REDRIVES):
        current = requests.get(REF)
        at = NOW + timedelta(hours=n + 1)
        assert requests.record_requests([(REF, current, RequestReason.REDRIVE, NOW)], at=at) == [
            REF
        ]
    used_up = requests.get(REF)
    assert used_up is not None and used_up.redrive_count == MAX_REDRIVES
    changed = NOW + timedelta(days=2)
    at = NOW + timedelta(days=3)
    assert requests.record_requests([(REF, used_up, RequestReason.REDRIVE, changed)], at=at) == []
    given_up = requests.get(REF)
    assert given_up is not None
    assert given_up.needs_person_since == at and given_up.next_due_at is None
    assert given_up.request_count == used_up.request_count  # not requested
    assert given_up.last_requested_at == used_up.last_requested_at
    assert given_up.draft_updated_at == changed  # the draft as it was given up on
    assert given_up.revision == used_up.revision + 1


def test_needing_person_is_oldest_first_by_org_and_limited(requests: ExportRequests) -> None:
    refs = [DraftRef("globex", "G-1"), DraftRef("acme", "D-2"), DraftRef("acme", "D-1")]
    for n, ref in enumerate(refs):
        requests.record_outcome(ref, RequestOutcome.PERMANENT, "x", at=NOW + timedelta(minutes=n))
    same_time = DraftRef("acme", "D-0")
    requests.record_outcome(same_time, RequestOutcome.PERMANENT, "x", at=NOW)
    requests.record_outcome(DraftRef("acme", "ok"), RequestOutcome.SENT, "sent", at=NOW)
    assert [r.ref for r in requests.needing_person()] == [same_time, *refs]
    assert [r.ref for r in requests.needing_person(org_id="acme")] == [same_time, *refs[1:]]
    assert [r.ref for r in requests.needing_person(limit=2)] == [same_time, refs[0]]
