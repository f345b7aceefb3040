"""Which drafts ``approved_drafts_sensor`` requests in a tick, and what a run reports back.

Pure over the ports (``DraftSource.find_export_candidates``, ``ExportRequests``); the rule for a
single draft lives in :mod:`orderflow_exports.domain.export_requests`. A tick reads at most
``max_scanned`` candidates in pages and requests at most ``limit`` drafts, grouped by dropzone
host (one run per host). A draft row that cannot be decoded is skipped with its name and the
reason; the tick goes on with the others.

Outcomes (:func:`outcome_of_error`): a refused draft → REFUSED; an org without an enabled
connector → NOT_CONFIGURED; a login that already failed in the run → NOT_ATTEMPTED (PERMANENT
when that failure was permanent); other transport errors → TRANSIENT or PERMANENT by their
classification; a draft another live run holds, or whose export row another run settled while
this one stalled (``ClaimLost``) → nothing recorded (that other run reports).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from orderflow_exports.application.export_service import Logger
from orderflow_exports.domain.drafts import refusal_reason
from orderflow_exports.domain.errors import (
    AlreadyInFlight,
    ClaimLost,
    ConnectorNotConfigured,
    DraftRefused,
    ExportError,
    InvalidIdentifier,
    NotAttempted,
    OrderflowError,
)
from orderflow_exports.domain.export_requests import (
    MAX_REDRIVES,
    RETRYABLE_OUTCOMES,
    CandidatePage,
    ExportRequest,
    RequestOutcome,
    RequestReason,
    request_reason,
)
from orderflow_exports.domain.naming import DraftRef
from orderflow_exports.domain.ports import DraftSource, ExportRequests
from orderflow_exports.domain.records import ConnectorConfig

LOCAL_HOST = "local"


@dataclass(frozen=True)
class PlannedRequest:
    """One draft to request in this tick."""

    ref: DraftRef
    host: str
    reason: RequestReason
    previous: ExportRequest | None
    draft_updated_at: datetime


@dataclass
class RequestPlan:
    """What a tick requests, and the drafts it passed over with the reason."""

    planned: list[PlannedRequest] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    def by_host(self) -> dict[str, list[PlannedRequest]]:
        grouped: dict[str, list[PlannedRequest]] = {}
        for request in self.planned:
            grouped.setdefault(request.host, []).append(request)
        return grouped


def dropzone_host(config: ConnectorConfig) -> str:
    """The host a run is grouped (and its concurrency limited) by."""
    return config.host if config.transport == "sftp" and config.host else LOCAL_HOST


def candidate_pages(
    drafts: DraftSource, now: datetime, *, page_size: int, max_scanned: int
) -> Iterator[CandidatePage]:
    """Pages of candidates at ``now``, at most ``max_scanned`` rows in all."""
    after: object | None = None
    for _ in range(max(1, max_scanned // page_size)):
        page = drafts.find_export_candidates(limit=page_size, now=now, after=after)
        yield page
        if page.cursor is None:
            return
        after = page.cursor


def plan_requests(
    pages: Iterable[CandidatePage],
    configs: Mapping[str, ConnectorConfig],
    now: datetime,
    *,
    limit: int,
) -> RequestPlan:
    """The drafts to request at ``now`` (``configs``: enabled connectors by org)."""
    plan = RequestPlan()
    for page in pages:
        plan.skipped.extend(f"{bad} (skipped)" for bad in page.unreadable)
        for candidate in page.candidates:
            if len(plan.planned) >= limit:
                return plan
            draft = candidate.draft
            try:
                ref = DraftRef(draft.org_id, draft.id)
            except InvalidIdentifier as exc:
                plan.skipped.append(f"{draft.org_id}:{draft.id}: {exc}")
                continue
            config = configs.get(ref.org_id)
            if config is None:
                plan.skipped.append(f"{ref}: org {ref.org_id} has no enabled connector")
                continue
            refused = refusal_reason(ref, draft)
            if refused is not None:
                plan.skipped.append(f"{ref}: {refused}")
                continue
            reason = request_reason(candidate, now)
            if reason is None:
                continue
            plan.planned.append(
                PlannedRequest(
                    ref=ref,
                    host=dropzone_host(config),
                    reason=reason,
                    previous=candidate.request,
                    draft_updated_at=draft.updated_at,
                )
            )
        if len(plan.planned) >= limit:
            return plan
    return plan


def outcome_of_error(exc: OrderflowError) -> RequestOutcome | None:
    """The request outcome of a failed try, None when another live run owns the draft."""
    if isinstance(exc, AlreadyInFlight | ClaimLost):
        # A late report of a run that lost its row must not overwrite what the run that took
        # over recorded (it may have sent the draft).
        return None
    if isinstance(exc, DraftRefused):
        return RequestOutcome.REFUSED
    if isinstance(exc, ConnectorNotConfigured):
        return RequestOutcome.NOT_CONFIGURED
    if isinstance(exc, NotAttempted):
        return RequestOutcome.NOT_ATTEMPTED if exc.transient else RequestOutcome.PERMANENT
    if isinstance(exc, ExportError):
        return RequestOutcome.TRANSIENT if exc.transient else RequestOutcome.PERMANENT
    return RequestOutcome.PERMANENT


def report_outcomes(
    requests: ExportRequests,
    outcomes: list[tuple[DraftRef, RequestOutcome, str]],
    *,
    at: datetime,
    log: Logger,
) -> list[ExportRequest]:
    """Record how each try ended; says so loudly when a draft now needs a person."""
    if not outcomes:
        return []
    records = requests.record_outcomes(outcomes, at=at)
    for record in records:
        if record.needs_person_since is not None:
            log.warning(
                f"{record.ref}: needs a person, no longer requested automatically: "
                f"{record.last_outcome}: {record.last_reason}"
            )
        elif record.next_due_at is not None and record.last_outcome in RETRYABLE_OUTCOMES:
            log.info(
                f"{record.ref}: {record.last_outcome}; requested again automatically from "
                f"{record.next_due_at.isoformat()} (re-drive {record.redrive_count + 1} of "
                f"{MAX_REDRIVES})"
            )
    return records
