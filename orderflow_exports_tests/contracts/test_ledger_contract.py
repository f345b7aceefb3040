"""The ``ExportLedger`` contract: the SQL ledger on SQLite and PostgreSQL, and ``FakeLedger``.

What the use cases rely on: a PENDING row per attempt, one active row per draft, compare-and-set
status changes that succeed once (a replay changes nothing), the rename right taken once, a
forced attempt superseding a SENT one, and the order of the queries.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import Engine

from orderflow_exports.adapters.sql.ledger import SqlExportLedger
from orderflow_exports.domain.errors import AlreadyInFlight
from orderflow_exports.domain.naming import DraftRef
from orderflow_exports.domain.ports import ExportLedger
from orderflow_exports.domain.records import NewExport
from orderflow_exports.domain.status import ExportStatus
from orderflow_exports_tests.fakes.ledger import FakeLedger

NOW = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)
REF = DraftRef("acme", "D-1")


@pytest.fixture
def ledger(database: Engine | None) -> ExportLedger:
    return FakeLedger() if database is None else SqlExportLedger(database)


def new_export(attempt: int = 1, ref: DraftRef = REF, **overrides: object) -> NewExport:
    export_id = str(uuid.uuid4())
    values: dict = dict(
        id=export_id,
        ref=ref,
        attempt=attempt,
        filename=f"{ref.org_id}_{ref.draft_order_id}_{export_id}.json",
        dropzone_path=f"/dz/{ref.org_id}_{ref.draft_order_id}_{export_id}.json",
        storage_key=f"exports/{ref.org_id}/{ref.draft_order_id}/{export_id}.json",
        content_sha256="0" * 64,
        byte_size=10,
        line_count=1,
        forced=False,
        dagster_run_id="run-1",
        created_at=NOW,
    )
    values.update(overrides)
    return NewExport(**values)


def test_create_pending_returns_the_row_as_stored(ledger: ExportLedger) -> None:
    new = new_export()
    record = ledger.create_pending(new)
    assert record.status is ExportStatus.PENDING
    assert (record.id, record.attempt, record.ref) == (new.id, 1, REF)
    assert record.rename_started_at is None and record.sent_at is None
    assert record.error_code is None and not record.forced
    stored = ledger.get(new.id)
    assert stored is not None
    assert stored.status is ExportStatus.PENDING
    assert stored.filename == new.filename and stored.dagster_run_id == "run-1"
    assert stored.created_at == NOW and stored.created_at.tzinfo is not None
    assert ledger.get(str(uuid.uuid4())) is None
    assert ledger.latest(DraftRef("acme", "nobody")) is None


def test_timestamps_come_back_in_utc(ledger: ExportLedger) -> None:
    plus_two = timezone(timedelta(hours=2))
    record = ledger.create_pending(new_export(created_at=NOW.astimezone(plus_two)))
    assert ledger.mark_sent(record.id, at=(NOW + timedelta(minutes=1)).astimezone(plus_two))
    stored = ledger.get(record.id)
    assert stored is not None and stored.sent_at is not None
    assert stored.sent_at == NOW + timedelta(minutes=1)
    assert stored.sent_at.utcoffset() == timedelta(0)
    assert stored.created_at.utcoffset() == timedelta(0)


def test_one_active_row_per_draft(ledger: ExportLedger) -> None:
    first = ledger.create_pending(new_export(1))
    with pytest.raises(AlreadyInFlight, match="already in flight"):
        ledger.create_pending(new_export(2))
    assert ledger.mark_sent(first.id, at=NOW)
    with pytest.raises(AlreadyInFlight):
        ledger.create_pending(new_export(2))
    assert ledger.mark_failed(first.id, expected=ExportStatus.SENT, code="X", message="x", at=NOW)
    second = ledger.create_pending(new_export(2))
    assert ledger.latest(REF) == ledger.get(second.id)
    # Other drafts and other orgs are independent.
    ledger.create_pending(new_export(1, ref=DraftRef("acme", "D-2")))
    ledger.create_pending(new_export(1, ref=DraftRef("globex", "D-1")))


def test_an_attempt_number_is_used_once(ledger: ExportLedger) -> None:
    first = ledger.create_pending(new_export(1))
    assert ledger.mark_failed(
        first.id, expected=ExportStatus.PENDING, code="X", message="x", at=NOW
    )
    with pytest.raises(AlreadyInFlight):
        ledger.create_pending(new_export(1))
    assert [r.id for r in ledger.list(org_id="acme")] == [first.id]


def test_latest_is_the_highest_attempt(ledger: ExportLedger) -> None:
    ids = []
    for attempt in (1, 2, 3):
        record = ledger.create_pending(
            new_export(attempt, created_at=NOW + timedelta(minutes=attempt))
        )
        ids.append(record.id)
        if attempt < 3:
            assert ledger.mark_failed(
                record.id, expected=ExportStatus.PENDING, code="X", message="x", at=NOW
            )
    latest = ledger.latest(REF)
    assert latest is not None and latest.id == ids[-1] and latest.attempt == 3


@pytest.mark.parametrize(
    "move",
    ["sent", "failed", "acked_pending", "acked_sent"],
)
def test_a_transition_succeeds_once_and_its_replay_changes_nothing(
    ledger: ExportLedger, move: str
) -> None:
    record = ledger.create_pending(new_export())
    later = NOW + timedelta(hours=1)

    def apply(at: datetime) -> bool:
        if move == "sent":
            return ledger.mark_sent(record.id, at=at)
        if move == "failed":
            return ledger.mark_failed(
                record.id, expected=ExportStatus.PENDING, code="IO", message=str(at), at=at
            )
        if move == "acked_pending":
            return ledger.mark_acked(
                record.id, expected=ExportStatus.PENDING, erp_order_number=str(at.hour), at=at
            )
        return ledger.mark_acked(
            record.id, expected=ExportStatus.SENT, erp_order_number=str(at.hour), at=at
        )

    if move == "acked_sent":
        assert ledger.mark_sent(record.id, at=NOW)
    assert apply(NOW)
    first = ledger.get(record.id)
    assert apply(later) is False
    assert ledger.get(record.id) == first


def test_a_stale_compare_and_set_changes_nothing(ledger: ExportLedger) -> None:
    record = ledger.create_pending(new_export())
    assert ledger.mark_sent(record.id, at=NOW)
    assert ledger.mark_failed(
        record.id, expected=ExportStatus.SENT, code="ERP_REJECTED", message="no", at=NOW
    )
    # A late ack for a FAILED export finds nothing to change.
    assert not ledger.mark_acked(
        record.id, expected=(ExportStatus.PENDING, ExportStatus.SENT), erp_order_number="X", at=NOW
    )
    assert not ledger.mark_sent(record.id, at=NOW)
    stored = ledger.get(record.id)
    assert stored is not None and stored.status is ExportStatus.FAILED
    assert stored.error_code == "ERP_REJECTED" and stored.error_message == "no"
    assert stored.erp_order_number is None and stored.sent_at == NOW
    assert not ledger.mark_sent(str(uuid.uuid4()), at=NOW)  # no such row


def test_every_field_of_a_transition_is_written(ledger: ExportLedger) -> None:
    record = ledger.create_pending(new_export())
    assert ledger.mark_sent(record.id, at=NOW + timedelta(seconds=1))
    assert ledger.mark_acked(
        record.id, expected=ExportStatus.SENT, erp_order_number="SO-1", at=NOW + timedelta(hours=1)
    )
    stored = ledger.get(record.id)
    assert stored is not None
    assert stored.status is ExportStatus.ACKED and stored.erp_order_number == "SO-1"
    assert stored.sent_at == NOW + timedelta(seconds=1)
    assert stored.acked_at == stored.updated_at == NOW + timedelta(hours=1)

    failed = ledger.create_pending(new_export(ref=DraftRef("acme", "D-2")))
    assert ledger.mark_failed(
        failed.id, expected=ExportStatus.PENDING, code="IO", message="m" * 5000, at=NOW
    )
    row = ledger.get(failed.id)
    assert row is not None and row.error_code == "IO"
    assert row.error_message == "m" * 4000  # cut to the column's size
    assert row.updated_at == NOW


@pytest.mark.parametrize(
    ("code", "given", "stored"),
    [
        ("TIMEOUT", None, True),  # the code decides
        ("CONNECTION", None, True),
        ("HOST_KEY", None, False),
        ("AUTH", None, False),
        ("ERP_REJECTED", None, False),
        ("IO", True, True),  # the cause decides: the raiser's word is kept
        ("ARCHIVE", False, False),
        ("IO", None, None),  # not said and not fixed by the code: unknown
        ("SOMETHING_NEW", None, None),
    ],
)
def test_a_failure_stores_whether_it_may_pass(
    ledger: ExportLedger, code: str, given: bool | None, stored: bool | None
) -> None:
    record = ledger.create_pending(new_export())
    assert ledger.mark_failed(
        record.id, expected=ExportStatus.PENDING, code=code, message="m", at=NOW, transient=given
    )
    row = ledger.get(record.id)
    assert row is not None and row.error_code == code and row.error_transient is stored


def test_a_move_the_status_machine_forbids_raises_and_changes_nothing(
    ledger: ExportLedger,
) -> None:
    record = ledger.create_pending(new_export())
    with pytest.raises(ValueError, match="from ACKED to FAILED"):
        ledger.mark_failed(record.id, expected=ExportStatus.ACKED, code="X", message="x", at=NOW)
    with pytest.raises(ValueError, match="from FAILED to ACKED"):
        ledger.mark_acked(record.id, expected=ExportStatus.FAILED, erp_order_number=None, at=NOW)
    stored = ledger.get(record.id)
    assert stored is not None and stored.status is ExportStatus.PENDING


def test_the_rename_right_is_taken_once_and_only_on_a_pending_row(ledger: ExportLedger) -> None:
    record = ledger.create_pending(new_export())
    assert ledger.mark_renaming(record.id, at=NOW)
    assert not ledger.mark_renaming(record.id, at=NOW + timedelta(seconds=1))
    row = ledger.get(record.id)
    assert row is not None and row.rename_started_at == NOW and row.status is ExportStatus.PENDING
    assert ledger.mark_sent(record.id, at=NOW)  # the right does not change the status

    failed = ledger.create_pending(new_export(ref=DraftRef("acme", "D-2")))
    assert ledger.mark_failed(
        failed.id, expected=ExportStatus.PENDING, code="INTERRUPTED", message="x", at=NOW
    )
    assert not ledger.mark_renaming(failed.id, at=NOW)
    after = ledger.get(failed.id)
    assert after is not None and after.rename_started_at is None
    assert not ledger.mark_renaming(str(uuid.uuid4()), at=NOW)


def test_a_forced_attempt_supersedes_the_sent_export(ledger: ExportLedger) -> None:
    first = ledger.create_pending(new_export(1))
    assert ledger.mark_sent(first.id, at=NOW)
    forced = ledger.create_pending(
        new_export(2, forced=True, created_at=NOW + timedelta(minutes=5)), supersede=first.id
    )
    assert forced.forced and forced.status is ExportStatus.PENDING
    old = ledger.get(first.id)
    assert old is not None and old.status is ExportStatus.FAILED
    assert old.error_code == "SUPERSEDED" and forced.id in (old.error_message or "")
    assert old.error_transient is False
    assert old.updated_at == NOW + timedelta(minutes=5)
    latest = ledger.latest(REF)
    assert latest is not None and latest.id == forced.id


def test_superseding_a_row_that_is_no_longer_sent_is_refused(ledger: ExportLedger) -> None:
    first = ledger.create_pending(new_export(1))
    assert ledger.mark_sent(first.id, at=NOW)
    assert ledger.mark_acked(first.id, expected=ExportStatus.SENT, erp_order_number="S", at=NOW)
    with pytest.raises(AlreadyInFlight, match="changed while forcing"):
        ledger.create_pending(new_export(2, forced=True), supersede=first.id)
    stored = ledger.get(first.id)
    assert stored is not None and stored.status is ExportStatus.ACKED
    assert [r.id for r in ledger.list(org_id="acme")] == [first.id]


def test_a_refused_insert_leaves_the_superseded_row_as_it_was(ledger: ExportLedger) -> None:
    first = ledger.create_pending(new_export(1))
    assert ledger.mark_sent(first.id, at=NOW)
    with pytest.raises(AlreadyInFlight):
        # Attempt 1 is taken: the insert fails, and the supersede goes back with it.
        ledger.create_pending(new_export(1, forced=True), supersede=first.id)
    stored = ledger.get(first.id)
    assert stored is not None and stored.status is ExportStatus.SENT and stored.error_code is None


def test_list_is_newest_first_and_filters(ledger: ExportLedger) -> None:
    rows = {}
    for n, (org, draft) in enumerate([("acme", "A"), ("acme", "B"), ("globex", "G")]):
        record = ledger.create_pending(
            new_export(ref=DraftRef(org, draft), created_at=NOW + timedelta(minutes=n))
        )
        rows[draft] = record.id
    assert ledger.mark_sent(rows["A"], at=NOW)
    assert [r.id for r in ledger.list()] == [rows["G"], rows["B"], rows["A"]]
    assert [r.id for r in ledger.list(org_id="acme")] == [rows["B"], rows["A"]]
    assert [r.id for r in ledger.list(status=ExportStatus.SENT)] == [rows["A"]]
    assert [r.id for r in ledger.list(org_id="acme", status=ExportStatus.PENDING)] == [rows["B"]]
    assert [r.id for r in ledger.list(limit=1)] == [rows["G"]]
    assert ledger.list(org_id="nobody") == []


def test_rows_created_at_the_same_moment_are_listed_by_id(ledger: ExportLedger) -> None:
    ids = [ledger.create_pending(new_export(ref=DraftRef("acme", f"D-{n}"))).id for n in range(4)]
    assert [r.id for r in ledger.list(org_id="acme")] == sorted(ids)


def test_sent_before_lists_the_org_s_old_sent_rows_oldest_first(ledger: ExportLedger) -> None:
    def sent(draft: str, at: datetime, org: str = "acme") -> str:
        record = ledger.create_pending(new_export(ref=DraftRef(org, draft)))
        assert ledger.mark_sent(record.id, at=at)
        return record.id

    two_days = sent("A", NOW - timedelta(days=2))
    three_days = sent("B", NOW - timedelta(days=3))
    sent("C", NOW)  # too recent
    sent("G", NOW - timedelta(days=5), org="globex")  # another org
    acked = sent("D", NOW - timedelta(days=4))
    assert ledger.mark_acked(acked, expected=ExportStatus.SENT, erp_order_number=None, at=NOW)
    ledger.create_pending(new_export(ref=DraftRef("acme", "E")))  # PENDING, never sent

    cutoff = NOW - timedelta(days=1)
    assert [r.id for r in ledger.sent_before("acme", cutoff, 10)] == [three_days, two_days]
    assert [r.id for r in ledger.sent_before("acme", cutoff, 1)] == [three_days]
    assert ledger.sent_before("acme", NOW - timedelta(days=3), 10) == []  # strictly before


@pytest.fixture
def ledger_with_queries(database: Engine | None) -> SqlExportLedger | FakeLedger:
    """The ledger with the query the resend and alert paths use beyond the port."""
    return FakeLedger() if database is None else SqlExportLedger(database)


def test_latest_failed_lists_only_failures_still_latest_per_draft(
    ledger_with_queries: SqlExportLedger | FakeLedger,
) -> None:
    ledger = ledger_with_queries

    def failed(ref: DraftRef, attempt: int, code: str, at: datetime) -> str:
        record = ledger.create_pending(new_export(attempt, ref, created_at=at))
        assert ledger.mark_failed(
            record.id, expected=ExportStatus.PENDING, code=code, message=code, at=at
        )
        return record.id

    retried = failed(REF, 1, "ACK_TIMEOUT", NOW)  # a later attempt took over: not listed
    ledger.create_pending(new_export(2, REF, created_at=NOW + timedelta(minutes=1)))
    rejected = failed(DraftRef("acme", "D-2"), 1, "ERP_REJECTED", NOW + timedelta(minutes=3))
    timed_out = failed(DraftRef("acme", "D-3"), 1, "ACK_TIMEOUT", NOW + timedelta(minutes=2))
    failed(DraftRef("acme", "D-4"), 1, "CONNECTION", NOW)  # not one of the codes asked for
    other_org = failed(DraftRef("globex", "G-1"), 1, "ACK_TIMEOUT", NOW + timedelta(minutes=4))

    codes = ("ACK_TIMEOUT", "ERP_REJECTED")
    listed = [r.id for r in ledger.latest_failed(codes)]
    assert listed == [timed_out, rejected, other_org]  # oldest change first
    assert retried not in listed
    assert [r.id for r in ledger.latest_failed(codes, newest_first=True)] == listed[::-1]
    assert [r.id for r in ledger.latest_failed(codes, org_id="globex")] == [other_org]
    assert [r.id for r in ledger.latest_failed(codes, limit=1)] == [timed_out]


def test_settled_histories_pages_drafts_whose_latest_attempt_was_acked_before_the_cutoff(
    ledger: ExportLedger,
) -> None:
    def attempt(draft: str, n: int, acked_at: datetime | None, org: str = "acme") -> str:
        record = ledger.create_pending(new_export(n, ref=DraftRef(org, draft)))
        assert ledger.mark_sent(record.id, at=NOW)
        if acked_at is None:
            assert ledger.mark_failed(
                record.id, expected=ExportStatus.SENT, code="ERP_REJECTED", message="m", at=NOW
            )
        else:
            assert ledger.mark_acked(
                record.id, expected=ExportStatus.SENT, erp_order_number=None, at=acked_at
            )
        return record.id

    early, late = NOW - timedelta(days=40), NOW + timedelta(days=1)
    first = attempt("D-1", 1, None)  # rejected, then re-sent and acked long ago
    second = attempt("D-1", 2, early)
    attempt("D-2", 1, late)  # acked after the cutoff
    attempt("D-3", 1, None)  # latest attempt FAILED
    third = attempt("D-4", 1, early)
    fourth = attempt("G-1", 1, early, org="globex")
    cutoff = NOW - timedelta(days=30)
    page = ledger.settled_histories(cutoff, limit=2)
    assert [[r.id for r in sorted(h, key=lambda r: r.attempt)] for h in page] == [
        [first, second],
        [third],
    ]
    rest = ledger.settled_histories(cutoff, limit=2, after=("acme", "D-4"))
    assert [[r.id for r in h] for h in rest] == [[fourth]]
    assert ledger.settled_histories(cutoff, limit=2, after=("globex", "G-1")) == []
