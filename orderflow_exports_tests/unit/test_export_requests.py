"""The request rule of domain/export_requests.py: new, changed, re-drive, needs a person."""

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from orderflow_exports.domain.drafts import DraftOrder
from orderflow_exports.domain.export_requests import (
    MAX_BACKOFF,
    MAX_REDRIVES,
    Candidate,
    ExportRequest,
    RequestOutcome,
    RequestReason,
    backoff,
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
