"""One tick of ``approved_drafts_sensor``: read, plan, record the requests, cut them into runs.

Over the ports only (``DraftSource``, ``ConnectorConfigs``, ``ExportRequests``,
``KnownPartitions``): the sensor builds the adapters, calls :func:`run_approvals_tick`, logs
the lines of the result, stores its cursor and maps its runs to the orchestrator's requests.

A tick reads the due requests and the drafts changed since the previous tick's cursor
(:func:`~orderflow_exports.application.planning.tick_scan`), plans which drafts to request
(:func:`~orderflow_exports.application.planning.plan_requests`), records each request by
compare-and-set before any run is asked for, and groups what was recorded into runs
(:func:`~orderflow_exports.application.planning.plan_runs`). A request that lost its
compare-and-set was taken over by a concurrent update (another tick, or a run reporting) and is
left out; a draft whose re-drives are used up is marked as needing a person instead.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Literal

from orderflow_exports.application.planning import (
    PlannedRequest,
    PlannedRun,
    ScanCursor,
    plan_requests,
    plan_runs,
    tick_scan,
)
from orderflow_exports.domain.export_requests import MAX_REDRIVES, RequestReason, gives_up
from orderflow_exports.domain.ports import (
    ConnectorConfigs,
    DraftSource,
    ExportRequests,
    KnownPartitions,
)

LOGGED_LINES = 50  # per kind of line: a large backlog must not flood the tick's log
_SKIPS_IN_MESSAGE = 20  # the skip message is shown in the tick list: keep it short


@dataclass(frozen=True)
class TickLimits:
    """How much one tick reads and requests, and how many lines of each kind it logs."""

    max_requests: int
    page_size: int
    max_scanned: int
    logged_lines: int = LOGGED_LINES


@dataclass(frozen=True)
class TickLine:
    """A line for the tick's log, with its level."""

    level: Literal["info", "warning"]
    text: str


@dataclass
class ApprovalsTick:
    """What one tick decided: the runs to ask for (or why none), and what to log and keep.

    ``summary`` is the tick's one-line text (it ends with why the tick read what it read);
    ``skip`` is the message of a tick that asks for no run, None when ``runs`` holds some.
    ``next_cursor`` is the cursor to store (the summary first, for the tick list); None means
    the next tick reads the whole backlog again, so a stored cursor is to be cleared.
    """

    summary: str
    skip: str | None
    next_cursor: str | None
    runs: list[PlannedRun] = field(default_factory=list)
    new_partition_keys: list[str] = field(default_factory=list)
    lines: list[TickLine] = field(default_factory=list)


def run_approvals_tick(
    drafts: DraftSource,
    configs: ConnectorConfigs,
    requests: ExportRequests,
    known_partitions: Callable[[Sequence[str]], KnownPartitions],
    *,
    cursor: str | None,
    now: datetime,
    limits: TickLimits,
) -> ApprovalsTick:
    """One tick at ``now`` after the previous tick's ``cursor`` (None: read the whole backlog).

    ``known_partitions(keys)`` tells which of the planned partition keys exist already; it is
    asked only when something is planned, and before any request is recorded.
    """
    enabled = {c.org_id: c for c in configs.list(enabled_only=True)}
    orgs = frozenset(enabled)
    previous = ScanCursor.from_json(cursor)
    # Page through the backlog: drafts that stay unexported (no connector, refused, unreadable)
    # must not hide newer approvals behind a fixed window.
    scan = tick_scan(
        drafts,
        now,
        previous,
        orgs,
        page_size=limits.page_size,
        max_scanned=limits.max_scanned,
    )
    plan = plan_requests(scan.pages, enabled, now, limit=limits.max_requests)
    next_cursor = scan.next_cursor(previous, plan, orgs, now)
    lines = _limited(
        [f"not exported: {line}" for line in plan.skipped],
        "not exported: {} more drafts",
        limits.logged_lines,
    )

    def finish(summary: str) -> ApprovalsTick:
        text = f"{summary} [{scan.reason}]"
        return ApprovalsTick(
            summary=text,
            skip=None,
            next_cursor=None if next_cursor is None else next_cursor.to_json(text),
            lines=lines,
        )

    if not plan.planned:
        skipped = plan.skipped
        detail = (
            f"; skipped {len(skipped)}: " + "; ".join(skipped[:_SKIPS_IN_MESSAGE])
            if skipped
            else ""
        )
        tick = finish(plan.summary())
        tick.skip = f"no new approved drafts to export ({tick.summary}){detail}"
        return tick
    # Read before the requests are recorded: a tick that fails after recording leaves its
    # drafts to the unreported-request re-drive, an hour later.
    known = known_partitions([p.ref.partition_key for p in plan.planned])
    recorded = set(
        requests.record_requests(
            [(p.ref, p.previous, p.reason, p.draft_updated_at) for p in plan.planned], at=now
        )
    )
    given_up = [
        p for p in plan.planned if p.previous is not None and gives_up(p.previous, p.reason)
    ]
    lines.extend(
        TickLine(
            "warning",
            f"{request.ref}: needs a person, no longer requested automatically: "
            f"{MAX_REDRIVES} re-drives used up and no run reported",
        )
        for request in given_up
    )
    lost = len(plan.planned) - len(given_up) - len(recorded)
    plan = replace(plan, planned=[p for p in plan.planned if p.ref in recorded])
    again = [
        p for p in plan.planned if p.previous is not None and p.reason is not RequestReason.NEW
    ]
    lines.extend(
        _limited(
            [_requested_again(request) for request in again],
            "requested again: {} more drafts",
            limits.logged_lines,
        )
    )
    summary = plan.summary()
    if given_up:
        summary += f"; {len(given_up)} need a person (re-drives used up)"
    if lost > 0:
        summary += f"; {lost} taken over by a concurrent update"
    if not plan.planned:
        tick = finish(summary)
        if given_up:
            tick.skip = (
                f"{len(given_up)} draft(s) need a person: re-drives used up, no run reported "
                f"({tick.summary})"
            )
        else:
            tick.skip = (
                f"every planned request was taken over by a concurrent update ({tick.summary})"
            )
        return tick
    runs, new_keys = plan_runs(plan, known, now)
    tick = finish(f"{summary}; {len(runs)} run(s), {len(new_keys)} new partition(s)")
    tick.runs, tick.new_partition_keys = runs, new_keys
    tick.lines.append(TickLine("info", tick.summary))
    return tick


def _requested_again(request: PlannedRequest) -> str:
    previous = request.previous
    assert previous is not None
    number = previous.redrive_count + 1 if request.reason is RequestReason.REDRIVE else 0
    return (
        f"{request.ref}: requested again ({request.reason}, re-drive {number}); last "
        f"outcome {previous.last_outcome or 'none reported'}: {previous.last_reason}"
    )


def _limited(texts: list[str], more: str, limit: int) -> list[TickLine]:
    """The first ``limit`` of ``texts`` as info lines, then one line counting the rest."""
    lines = [TickLine("info", text) for text in texts[:limit]]
    if len(texts) > limit:
        lines.append(TickLine("info", more.format(len(texts) - limit)))
    return lines
