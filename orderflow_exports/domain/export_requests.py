"""Bookkeeping of export requests (``erp_export_request``) and the re-drive rule, as pure data.

One record per draft that ``approved_drafts_sensor`` requested or a run reported on. It answers
"should this APPROVED draft, which has no PENDING/SENT/ACKED export, be requested now?":

- **never again**: any ``erp_export`` row of the draft has ``sent_at`` set → never requested
  automatically, whatever its record says: the draft reached the ERP once, which may hold it, so
  only a person re-sends it;
- **new**: no record and no ``erp_export`` row at all → request it;
- **failed before records were kept**: no record, and the latest export is FAILED with an error
  that may pass (:data:`REDRIVABLE_FAILURE_CODES`) → a re-drive, bounded like any other;
- **changed**: the draft's ``updated_at`` is later than the one seen at its last request, and
  the last outcome needed the draft or a person (REFUSED, PERMANENT, or re-drives used up) →
  request it again, with a fresh re-drive budget. A draft refused because it was no longer
  APPROVED and then approved again is this case. A draft that was SENT once is never requested
  again automatically, whatever happened to it later: the ERP may hold it;
- **re-drive**: ``next_due_at`` has passed → request it again; each re-drive counts. It is set
  after an outcome that may pass (TRANSIENT, NOT_ATTEMPTED, NOT_CONFIGURED), with a backoff of
  1, 2, 4, … minutes capped at 1 hour, and after a request whose run never reported (an hour
  later). After :data:`MAX_REDRIVES` re-drives the draft stops being requested and is marked as
  needing a person (``needs_person_since``), as is any PERMANENT outcome; this holds for
  requests no run ever reported on as well (a run killed every time it starts);
- otherwise (requested and not reported yet, refused and unchanged, permanent, needs a person)
  → not requested.

A re-drive is only a new request: the export service still refuses to send a draft whose latest
export is SENT or ACKED, so it never makes a duplicate.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from orderflow_exports.domain.drafts import DraftOrder
from orderflow_exports.domain.errors import ErrorCode
from orderflow_exports.domain.naming import DraftRef

MAX_REDRIVES = 8
FIRST_BACKOFF = timedelta(minutes=1)
MAX_BACKOFF = timedelta(hours=1)
# A request whose run never reported (the run was never launched, or died before recording
# anything) is re-driven after this long; its export service run reconciles any PENDING row.
UNREPORTED_REQUEST_AFTER = timedelta(hours=1)
_REASON_LIMIT = 2000
# Error codes of a FAILED export that trying again later can cure: connection trouble, a full or
# failing disk, a run that died and was reconciled. Used for drafts that failed before request
# records were kept, whose outcome is known only from their export row.
REDRIVABLE_FAILURE_CODES = frozenset(
    {ErrorCode.CONNECTION, ErrorCode.TIMEOUT, ErrorCode.IO, ErrorCode.INTERRUPTED}
)


class RequestOutcome(StrEnum):
    """How a requested draft's latest try ended (``erp_export_request.last_outcome``)."""

    SENT = "SENT"  # sent, or found already sent / recovered: nothing left to do
    REFUSED = "REFUSED"  # the draft cannot be exported as it is (not APPROVED, invalid data)
    NOT_CONFIGURED = "NOT_CONFIGURED"  # its org had no enabled connector when the run came
    NOT_ATTEMPTED = "NOT_ATTEMPTED"  # its dropzone login already failed transiently in the run
    TRANSIENT = "TRANSIENT"  # a failure that may pass (connection refused, timeout)
    PERMANENT = "PERMANENT"  # host key, auth, permission, configuration: a person must act


RETRYABLE_OUTCOMES = frozenset(
    {RequestOutcome.TRANSIENT, RequestOutcome.NOT_ATTEMPTED, RequestOutcome.NOT_CONFIGURED}
)
# Outcomes after which only a change of the draft (or a person) leads to a new request. SENT is
# not one of them: a draft that reached the ERP once and then failed there (rejected, or no ack
# before the deadline, when the ERP may hold the order) is re-sent only by a person, never
# because OrderFlow touched the draft.
SETTLED_OUTCOMES = frozenset({RequestOutcome.REFUSED, RequestOutcome.PERMANENT})


class RequestReason(StrEnum):
    """Why the planner requests a draft in this tick."""

    NEW = "new"
    CHANGED = "changed"
    REDRIVE = "redrive"


@dataclass(frozen=True)
class ExportRequest:
    """One row of ``erp_export_request``: what was asked for a draft, and how it ended."""

    org_id: str
    draft_order_id: str
    request_count: int
    redrive_count: int
    last_requested_at: datetime | None
    draft_updated_at: datetime | None  # the draft's updated_at when it was last requested
    last_outcome: RequestOutcome | None  # None: requested, no run has reported yet
    last_reason: str | None
    last_outcome_at: datetime | None
    next_due_at: datetime | None
    needs_person_since: datetime | None
    revision: int  # compare-and-set guard: every write checks and bumps it

    @property
    def ref(self) -> DraftRef:
        return DraftRef(self.org_id, self.draft_order_id)


@dataclass(frozen=True)
class Candidate:
    """An APPROVED draft without a PENDING/SENT/ACKED export, with its request record."""

    draft: DraftOrder
    request: ExportRequest | None
    has_exports: bool  # any erp_export row at all (FAILED ones included)
    ever_sent: bool = False  # any erp_export row with sent_at set: it reached the ERP once
    latest_failure_code: str | None = None  # error_code of the latest export, when it FAILED


@dataclass(frozen=True)
class UnreadableDraft:
    """A draft row that could not be read (bad data in OrderFlow core), and why."""

    org_id: str
    draft_order_id: str
    reason: str

    def __str__(self) -> str:
        return f"{self.org_id}:{self.draft_order_id}: {self.reason}"


@dataclass(frozen=True)
class CandidatePage:
    """One page of candidates; ``cursor`` (opaque) continues after it, None after the last."""

    candidates: list[Candidate]
    unreadable: list[UnreadableDraft]
    cursor: object | None


@dataclass(frozen=True)
class RequestUpdate:
    """The columns a request or an outcome sets (``None`` fields are written as NULL)."""

    redrive_count: int
    last_outcome: RequestOutcome | None
    last_reason: str | None
    last_outcome_at: datetime | None
    next_due_at: datetime | None
    needs_person_since: datetime | None


def backoff(redrives_so_far: int) -> timedelta:
    """Wait before re-drive number ``redrives_so_far + 1``: 1, 2, 4, … minutes, at most 1 h."""
    if redrives_so_far >= 16:  # 2**16 minutes is far past the cap; avoids a huge power
        return MAX_BACKOFF
    return min(FIRST_BACKOFF * (2**redrives_so_far), MAX_BACKOFF)


def request_reason(candidate: Candidate, now: datetime) -> RequestReason | None:
    """Why ``candidate`` is requested at ``now``, or None when it is not (module docstring)."""
    if candidate.ever_sent:
        return None
    request = candidate.request
    if request is None:
        if not candidate.has_exports:
            return RequestReason.NEW
        if candidate.latest_failure_code in REDRIVABLE_FAILURE_CODES:
            return RequestReason.REDRIVE
        return None
    changed = (
        request.draft_updated_at is not None
        and candidate.draft.updated_at > request.draft_updated_at
    )
    settled = request.last_outcome in SETTLED_OUTCOMES or request.needs_person_since is not None
    if changed and settled:
        return RequestReason.CHANGED
    if request.next_due_at is not None and request.next_due_at <= now:
        return RequestReason.REDRIVE
    return None


def on_request(
    previous: ExportRequest | None, reason: RequestReason, now: datetime
) -> RequestUpdate:
    """The record after the sensor requests the draft for ``reason``.

    When :func:`gives_up` holds, the draft is not requested: the record says it needs a person.
    """
    if previous is not None and gives_up(previous, reason):
        return RequestUpdate(
            redrive_count=previous.redrive_count,
            last_outcome=previous.last_outcome,
            last_reason=(
                f"requested {previous.request_count} times, no run reported; needs a person"
            ),
            last_outcome_at=now,
            next_due_at=None,
            needs_person_since=now,
        )
    redrives = 0
    if reason is RequestReason.REDRIVE:
        redrives = (previous.redrive_count if previous else 0) + 1
    return RequestUpdate(
        redrive_count=redrives,
        last_outcome=None,
        last_reason=f"requested ({reason})",
        last_outcome_at=None,
        next_due_at=now + UNREPORTED_REQUEST_AFTER,
        needs_person_since=None,
    )


def gives_up(previous: ExportRequest, reason: RequestReason) -> bool:
    """True when a re-drive of ``previous`` would pass the cap: a person must act instead.

    Only a request no run reported on is still due when its re-drives are used up (a reported
    outcome past the cap already set ``needs_person_since``).
    """
    return reason is RequestReason.REDRIVE and previous.redrive_count >= MAX_REDRIVES


def on_outcome(
    previous: ExportRequest | None, outcome: RequestOutcome, reason: str, now: datetime
) -> RequestUpdate:
    """The record after a run reports ``outcome``: when to re-drive, or that a person is needed."""
    redrives = previous.redrive_count if previous else 0
    reason = reason[:_REASON_LIMIT]
    next_due: datetime | None = None
    needs_person: datetime | None = None
    if outcome in RETRYABLE_OUTCOMES:
        if redrives >= MAX_REDRIVES:
            needs_person = now
            reason = f"{reason} — gave up after {redrives} re-drives; needs a person"
        else:
            next_due = now + backoff(redrives)
    elif outcome is RequestOutcome.PERMANENT:
        needs_person = now
    return RequestUpdate(
        redrive_count=redrives,
        last_outcome=outcome,
        last_reason=reason,
        last_outcome_at=now,
        next_due_at=next_due,
        needs_person_since=needs_person,
    )
