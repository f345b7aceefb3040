"""Which drafts ``approved_drafts_sensor`` requests in a tick, and what a run reports back.

Pure over the ports (``DraftSource.find_export_candidates``, ``ExportRequests``,
``KnownPartitions``); the rule for a single draft lives in
:mod:`orderflow_exports.domain.export_requests`. A tick reads at most ``max_scanned`` candidates
in pages and requests at most ``limit`` drafts, grouped by dropzone host: one run per host, cut
into contiguous ranges of partitions (:func:`plan_runs`). A draft row that cannot be decoded is
skipped with its name and the reason; the tick goes on with the others.

Outcomes (:func:`outcome_of_error`): a refused draft → REFUSED; an org without an enabled
connector → NOT_CONFIGURED; a login that already failed in the run → NOT_ATTEMPTED (PERMANENT
when that failure was permanent); other transport errors → TRANSIENT or PERMANENT by their
classification; a draft another live run holds, or whose export row another run settled while
this one stalled (``ClaimLost``) → nothing recorded (that other run reports).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from orderflow_exports.domain.drafts import refusal_reason
from orderflow_exports.domain.endpoints import host_tag
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
from orderflow_exports.domain.ports import DraftSource, ExportRequests, KnownPartitions, Logger
from orderflow_exports.domain.records import ConnectorConfig


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
    capped: bool = False  # the tick's request limit was reached: more may be waiting
    skip_kinds: dict[str, int] = field(default_factory=dict)

    def skip(self, line: str, kind: str) -> None:
        self.skipped.append(line)
        self.skip_kinds[kind] = self.skip_kinds.get(kind, 0) + 1

    def summary(self) -> str:
        """One line for the tick list: how many drafts were requested, for which reason, and
        how many were passed over, by cause."""
        reasons = {str(r): 0 for r in RequestReason}
        for request in self.planned:
            reasons[str(request.reason)] += 1
        text = (
            f"requested {len(self.planned)} (new {reasons['new']}, re-driven "
            f"{reasons['redrive']}, changed {reasons['changed']})"
        )
        if self.capped:
            text += ", cap reached: more next tick"
        if self.skipped:
            kinds = ", ".join(f"{k} {n}" for k, n in sorted(self.skip_kinds.items()))
            text += f"; skipped {len(self.skipped)} ({kinds})"
        return text

    def by_host(self) -> dict[str, list[PlannedRequest]]:
        grouped: dict[str, list[PlannedRequest]] = {}
        for request in self.planned:
            grouped.setdefault(request.host, []).append(request)
        return grouped


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


# How far before the previous tick a window starts again: a draft whose change commits late
# (a long transaction in core) or is stamped by a clock behind ours is still read, as long as
# it lands within this. Drafts read twice are deduplicated by their request record.
WINDOW_OVERLAP = timedelta(minutes=15)


@dataclass(frozen=True)
class ScanCursor:
    """What the previous tick read: every change before ``since`` (less the overlap) was seen
    with the connectors of ``orgs`` enabled."""

    since: datetime
    orgs: frozenset[str]

    def to_json(self, summary: str = "") -> str:
        # The summary comes first: the sensor's tick list shows the start of each cursor.
        return json.dumps(
            {
                "tick": summary,
                "v": 1,
                "since": self.since.astimezone(UTC).isoformat(),
                "orgs": sorted(self.orgs),
            }
        )

    @classmethod
    def from_json(cls, text: str | None) -> ScanCursor | None:
        """The cursor in ``text``; None (read everything once) when absent or unreadable."""
        if not text:
            return None
        try:
            data = json.loads(text)
            since = datetime.fromisoformat(data["since"])
            orgs = frozenset(str(o) for o in data["orgs"])
        except (ValueError, KeyError, TypeError):
            return None
        if data.get("v") != 1 or since.tzinfo is None:
            return None
        return cls(since=since, orgs=orgs)


@dataclass
class TickScan:
    """The pages one tick reads, and the cursor it leaves once planning is done."""

    pages: Iterator[CandidatePage]
    window_start: datetime | None  # None: the whole backlog is read (no usable cursor)
    reason: str  # why this kind of read, for the tick's message
    exhausted: bool = False  # every page was read (no page budget or request cap hit)

    def next_cursor(
        self, previous: ScanCursor | None, plan: RequestPlan, orgs: frozenset[str], now: datetime
    ) -> ScanCursor | None:
        """Where the next tick starts: ``now`` once everything up to it was read; otherwise the
        same start again (drafts requested meanwhile are no longer candidates)."""
        if self.exhausted and not plan.capped:
            return ScanCursor(since=now, orgs=orgs)
        return previous if self.window_start is not None else None


def tick_scan(
    drafts: DraftSource,
    now: datetime,
    cursor: ScanCursor | None,
    orgs: frozenset[str],
    *,
    page_size: int,
    max_scanned: int,
) -> TickScan:
    """The reads of one tick: due requests, then drafts changed since the cursor's window.

    Without a cursor, or when a connector was enabled since (its org's older drafts were
    passed over while it had none), the whole backlog is read once, as before any cursor.
    """
    if cursor is None:
        return _whole_backlog(drafts, now, page_size, max_scanned, "first read of the backlog")
    new_orgs = orgs - cursor.orgs
    if new_orgs:
        names = ", ".join(sorted(new_orgs)[:5])
        return _whole_backlog(
            drafts, now, page_size, max_scanned, f"connector newly enabled ({names})"
        )
    start = min(cursor.since, now) - WINDOW_OVERLAP
    scan = TickScan(pages=iter(()), window_start=start, reason=f"changes since {start:%H:%M:%S}")

    def pages() -> Iterator[CandidatePage]:
        budget = max(1, max_scanned // page_size)
        for kwargs in ({"due_only": True}, {"changed_since": start}):
            after: object | None = None
            while True:
                if budget == 0:
                    return
                budget -= 1
                page = drafts.find_export_candidates(
                    limit=page_size, now=now, after=after, **kwargs
                )
                yield page
                if page.cursor is None:
                    break
                after = page.cursor
        scan.exhausted = True

    scan.pages = pages()
    return scan


def _whole_backlog(
    drafts: DraftSource, now: datetime, page_size: int, max_scanned: int, reason: str
) -> TickScan:
    scan = TickScan(pages=iter(()), window_start=None, reason=reason)

    def pages() -> Iterator[CandidatePage]:
        for page in candidate_pages(drafts, now, page_size=page_size, max_scanned=max_scanned):
            yield page
            if page.cursor is None:
                scan.exhausted = True

    scan.pages = pages()
    return scan


def plan_requests(
    pages: Iterable[CandidatePage],
    configs: Mapping[str, ConnectorConfig],
    now: datetime,
    *,
    limit: int,
) -> RequestPlan:
    """The drafts to request at ``now`` (``configs``: enabled connectors by org)."""
    plan = RequestPlan()
    seen: set[tuple[str, str]] = set()
    for page in pages:
        for bad in page.unreadable:
            if (bad.org_id, bad.draft_order_id) not in seen:
                seen.add((bad.org_id, bad.draft_order_id))
                plan.skip(f"{bad} (skipped)", "unreadable row")
        for candidate in page.candidates:
            if len(plan.planned) >= limit:
                plan.capped = True
                return plan
            draft = candidate.draft
            # A draft that is due and changed comes in two reads of the same tick.
            if (draft.org_id, draft.id) in seen:
                continue
            seen.add((draft.org_id, draft.id))
            try:
                ref = DraftRef(draft.org_id, draft.id)
            except InvalidIdentifier as exc:
                plan.skip(f"{draft.org_id}:{draft.id}: {exc}", "invalid id")
                continue
            config = configs.get(ref.org_id)
            if config is None:
                plan.skip(f"{ref}: org {ref.org_id} has no enabled connector", "no connector")
                continue
            refused = refusal_reason(ref, draft)
            if refused is not None:
                plan.skip(f"{ref}: {refused}", "refused")
                continue
            reason = request_reason(candidate, now)
            if reason is None:
                continue
            plan.planned.append(
                PlannedRequest(
                    ref=ref,
                    host=host_tag(config),
                    reason=reason,
                    previous=candidate.request,
                    draft_updated_at=draft.updated_at,
                )
            )
        if len(plan.planned) >= limit:
            plan.capped = True
            return plan
    return plan


@dataclass(frozen=True)
class PlannedRun:
    """One run to ask for: partitions of one host that a single range can cover."""

    keys: list[str]  # in partition order: the range runs from the first to the last
    host: str
    # Empty when every key is requested for the first time; otherwise the tick's time, so that
    # a draft requested again gets a run key of its own.
    run_key_suffix: str


def contiguous(keys: list[str], adjacent: Callable[[str, str], bool]) -> list[list[str]]:
    """``keys`` (sorted by partition position) cut where another partition lies between two."""
    segments: list[list[str]] = []
    for key in keys:
        if segments and adjacent(segments[-1][-1], key):
            segments[-1].append(key)
        else:
            segments.append([key])
    return segments


def plan_runs(
    plan: RequestPlan, known: KnownPartitions, now: datetime
) -> tuple[list[PlannedRun], list[str]]:
    """One run per host for new partitions; one per contiguous stretch of known ones.

    A run covers a range of partitions, so a range may only hold partitions that are requested:
    partitions added in one request are contiguous; known ones are cut where another partition
    lies between them. A draft requested again needs a run key of its own (the daemon never
    launches a run key twice), hence the tick's time in it. Returns the runs and the keys of the
    partitions to add.
    """
    again_suffix = f"@{now.astimezone(UTC):%Y%m%dT%H%M%S.%fZ}"
    runs: list[PlannedRun] = []
    new_keys: list[str] = []
    for host, requests in plan.by_host().items():
        fresh: list[PlannedRequest] = [r for r in requests if r.ref.partition_key not in known]
        if fresh:
            keys = [r.ref.partition_key for r in fresh]
            first_time = all(r.reason is RequestReason.NEW for r in fresh)
            runs.append(PlannedRun(keys, host, "" if first_time else again_suffix))
            new_keys.extend(keys)
        known_keys = sorted(
            (r.ref.partition_key for r in requests if r.ref.partition_key in known),
            key=known.position,
        )
        for segment in contiguous(known_keys, known.adjacent):
            runs.append(PlannedRun(segment, host, again_suffix))
    return runs, new_keys


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


def report_outcomes_or_log(
    requests: ExportRequests,
    outcomes: list[tuple[DraftRef, RequestOutcome, str]],
    *,
    at: datetime,
    log: Logger,
) -> None:
    """:func:`report_outcomes`, with a failure to write them logged instead of raised.

    Bookkeeping only: when it cannot be written, the export result stands and the sensor
    re-drives the draft once its unreported request is old enough.
    """
    try:
        report_outcomes(requests, outcomes, at=at, log=log)
    except Exception as exc:  # the run's real work is done; only the bookkeeping is lost
        log.error(
            f"could not record the outcome of {len(outcomes)} draft(s) in erp_export_request: "
            f"{type(exc).__name__}: {exc}"
        )
