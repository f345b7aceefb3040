"""The request rule of domain/export_requests.py: new, changed, re-drive, needs a person."""

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from orderflow_exports.application.planning import outcome_of_error
from orderflow_exports.domain.drafts import DraftOrder
from orderflow_exports.domain.errors import AlreadyInFlight, ClaimLost, ErrorCode, ExportError
from orderflow_exports.domain.export_requests import (
    MAX_BACKOFF,
    MAX_REDRIVES,
    Candidate,
    ExportRequest,
    RequestOutcome,
    RequestReason,
    backoff,
    gives_up,
    on_outcome,
    on_request,
    request_reason,
)

T0 = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)
DRAFT = DraftOrder(
    id="D-1",
    org_id="acme",
    status="APPROVED",
    customer_po_number=None,
    customer_erp_number="C-1",
    customer_name="Acme",
    order_date=T0.date(),
    requested_delivery_date=None,
    currency="EUR",
    ship_to={},
    notes=None,
    approved_at=T0,
    updated_at=T0,
    line_count=1,
)


def _record(previous: ExportRequest | None, update: object, **extra: object) -> ExportRequest:
    values = dict(
        org_id="acme",
        draft_order_id="D-1",
        request_count=previous.request_count if previous else 0,
        last_requested_at=None,
        draft_updated_at=T0,
        revision=1,
    )
    values.update(vars(update))
    values.update(extra)
    return ExportRequest(**values)  # type: ignore[arg-type]


def test_backoff_doubles_from_one_minute_up_to_an_hour() -> None:
    assert [backoff(n) // timedelta(minutes=1) for n in range(9)] == [
        1,
        2,
        4,
        8,
        16,
        32,
        60,
        60,
        60,
    ]
    assert backoff(1000) == MAX_BACKOFF


def test_new_draft_is_requested_unless_it_already_has_exports() -> None:
    assert request_reason(Candidate(DRAFT, None, has_exports=False), T0) is RequestReason.NEW
    # Exported before requests were recorded (or by hand): a person decides, not the sensor.
    assert request_reason(Candidate(DRAFT, None, has_exports=True), T0) is None


def test_a_request_without_an_outcome_waits_an_hour_then_is_redriven() -> None:
    requested = _record(None, on_request(None, RequestReason.NEW, T0), request_count=1)
    edited = replace(DRAFT, updated_at=T0 + timedelta(minutes=5))
    assert request_reason(Candidate(edited, requested, True), T0 + timedelta(minutes=59)) is None
    assert (
        request_reason(Candidate(DRAFT, requested, True), T0 + timedelta(hours=1))
        is RequestReason.REDRIVE
    )


def test_a_draft_sent_once_is_never_requested_again_automatically() -> None:
    record = _record(None, on_outcome(None, RequestOutcome.SENT, "sent", T0))
    touched = replace(DRAFT, updated_at=T0 + timedelta(minutes=1))
    for draft in (DRAFT, touched):
        assert request_reason(Candidate(draft, record, True), T0 + timedelta(days=9)) is None


@pytest.mark.parametrize("outcome", [RequestOutcome.REFUSED, RequestOutcome.PERMANENT])
def test_a_settled_draft_is_requested_again_only_after_it_changed(outcome: RequestOutcome) -> None:
    record = _record(None, on_outcome(None, outcome, "why", T0))
    assert record.next_due_at is None
    assert request_reason(Candidate(DRAFT, record, True), T0 + timedelta(days=9)) is None
    approved_again = replace(DRAFT, updated_at=T0 + timedelta(minutes=1))
    assert request_reason(Candidate(approved_again, record, True), T0) is RequestReason.CHANGED
    assert on_request(record, RequestReason.CHANGED, T0).redrive_count == 0


@pytest.mark.parametrize(
    "outcome",
    [RequestOutcome.TRANSIENT, RequestOutcome.NOT_ATTEMPTED, RequestOutcome.NOT_CONFIGURED],
)
def test_a_retryable_outcome_is_redriven_until_the_cap(outcome: RequestOutcome) -> None:
    record: ExportRequest | None = None
    for redrive in range(MAX_REDRIVES + 1):
        change = on_outcome(record, outcome, "refused", T0)
        record = _record(record, change)
        if redrive < MAX_REDRIVES:
            assert change.next_due_at == T0 + backoff(redrive) and change.needs_person_since is None
            record = _record(record, on_request(record, RequestReason.REDRIVE, T0))
    assert record is not None and record.redrive_count == MAX_REDRIVES
    assert record.next_due_at is None and record.needs_person_since == T0
    assert "needs a person" in (record.last_reason or "")
    assert request_reason(Candidate(DRAFT, record, True), T0 + timedelta(days=9)) is None
    fixed = replace(DRAFT, updated_at=T0 + timedelta(minutes=1))
    assert request_reason(Candidate(fixed, record, True), T0) is RequestReason.CHANGED


def test_a_late_report_of_a_run_that_lost_its_claim_records_no_outcome() -> None:
    # The run that took the row over reports; the stalled one must not overwrite it.
    assert outcome_of_error(ClaimLost("run 1 lost its claim on export E-1")) is None
    assert outcome_of_error(AlreadyInFlight("acme:D-1 is PENDING")) is None
    interrupted = ExportError(ErrorCode.INTERRUPTED, "stopped", transient=False)
    assert outcome_of_error(interrupted) is RequestOutcome.PERMANENT


def test_a_draft_with_an_export_that_was_ever_sent_is_never_requested_automatically() -> None:
    touched = replace(DRAFT, updated_at=T0 + timedelta(minutes=1))
    permanent = _record(None, on_outcome(None, RequestOutcome.PERMANENT, "claim lost", T0))
    due = _record(None, on_outcome(None, RequestOutcome.TRANSIENT, "refused", T0))
    later = T0 + timedelta(days=9)
    for record in (None, permanent, due):
        for draft in (DRAFT, touched):
            sent_once = Candidate(draft, record, True, ever_sent=True, latest_failure_code="IO")
            assert request_reason(sent_once, later) is None
    # The same records without a sent export are requested: only sent_at holds them back.
    assert request_reason(Candidate(touched, permanent, True), later) is RequestReason.CHANGED
    assert request_reason(Candidate(DRAFT, due, True), later) is RequestReason.REDRIVE


def test_requests_no_run_reports_on_stop_at_the_cap_and_need_a_person() -> None:
    record = _record(None, on_request(None, RequestReason.NEW, T0), request_count=1)
    now = T0
    for _ in range(MAX_REDRIVES):
        now += timedelta(hours=1)  # the run was killed again before it reported anything
        assert request_reason(Candidate(DRAFT, record, True), now) is RequestReason.REDRIVE
        assert not gives_up(record, RequestReason.REDRIVE)
        change = on_request(record, RequestReason.REDRIVE, now)
        assert change.needs_person_since is None and change.next_due_at is not None
        record = _record(record, change, request_count=record.request_count + 1)
    assert record.redrive_count == MAX_REDRIVES and record.last_outcome is None
    now += timedelta(hours=1)
    assert request_reason(Candidate(DRAFT, record, True), now) is RequestReason.REDRIVE
    assert gives_up(record, RequestReason.REDRIVE)
    given_up = _record(record, on_request(record, RequestReason.REDRIVE, now))
    assert given_up.needs_person_since == now and given_up.next_due_at is None
    assert given_up.redrive_count == MAX_REDRIVES
    assert given_up.last_reason == (
        f"requested {MAX_REDRIVES + 1} times, no run reported; needs a person"
    )
    assert request_reason(Candidate(DRAFT, given_up, True), now + timedelta(days=9)) is None
    # Neither NEW nor CHANGED requests are capped: they start a fresh budget.
    assert not gives_up(given_up, RequestReason.CHANGED)


@pytest.mark.parametrize("code", ["CONNECTION", "TIMEOUT", "IO", "INTERRUPTED"])
def test_a_draft_failed_transiently_before_records_were_kept_is_redriven(code: str) -> None:
    failed = Candidate(DRAFT, None, True, latest_failure_code=code)
    assert request_reason(failed, T0) is RequestReason.REDRIVE
    first = _record(None, on_request(None, RequestReason.REDRIVE, T0), request_count=1)
    assert first.redrive_count == 1 and first.next_due_at == T0 + timedelta(hours=1)
    # From then on it is bounded like any re-drive.
    reported = _record(first, on_outcome(first, RequestOutcome.TRANSIENT, "refused", T0))
    assert reported.next_due_at == T0 + backoff(1)
    assert (
        request_reason(Candidate(DRAFT, None, True, ever_sent=True, latest_failure_code=code), T0)
        is None
    )


@pytest.mark.parametrize("code", ["HOST_KEY", "AUTH", "VALIDATION", "ACK_TIMEOUT", "X"])
def test_a_draft_failed_for_good_before_records_were_kept_waits_for_a_person(code: str) -> None:
    assert request_reason(Candidate(DRAFT, None, True, latest_failure_code=code), T0) is None
