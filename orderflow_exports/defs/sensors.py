"""``approved_drafts_sensor``: approvals, re-approvals and due re-drives become (batched) runs.

Which drafts a tick requests is :func:`orderflow_exports.application.planning.plan_requests`
with the rule of :mod:`orderflow_exports.domain.export_requests`, and which runs cover them is
:func:`~orderflow_exports.application.planning.plan_runs`; each request is recorded in
``erp_export_request`` before the run is asked for, and the run records how it ended. This module
maps the plan to Dagster's run requests and dynamic partition requests.
"""

from datetime import UTC, datetime

import dagster as dg

from orderflow_exports.adapters.dagster_partitions import DagsterKnownPartitions
from orderflow_exports.adapters.sql.export_requests import SqlExportRequests
from orderflow_exports.application.planning import (
    PlannedRun,
    ScanCursor,
    plan_requests,
    plan_runs,
    tick_scan,
)
from orderflow_exports.defs.jobs import export_drafts_job
from orderflow_exports.defs.partitions import (
    APPROVED_DRAFTS_PARTITIONS_NAME,
    approved_drafts_partitions,
)
from orderflow_exports.defs.resources import DatabaseResource
from orderflow_exports.domain.endpoints import DROPZONE_HOST_TAG
from orderflow_exports.domain.export_requests import MAX_REDRIVES, RequestReason, gives_up

MAX_DRAFTS_PER_TICK = 1000
_PAGE_SIZE = 2000
_MAX_SCANNED_PER_TICK = 50_000  # keeps a tick far inside the 60 s evaluation timeout
_LOGGED_SKIPS = 50


def _run_request(run: PlannedRun) -> dg.RunRequest:
    """A planned run as Dagster's request: one partition, or a range of them."""
    keys, suffix = run.keys, run.run_key_suffix
    tags = {DROPZONE_HOST_TAG: run.host}
    if len(keys) == 1:
        return dg.RunRequest(run_key=f"export:{keys[0]}{suffix}", partition_key=keys[0], tags=tags)
    return dg.RunRequest(
        run_key=f"export:{keys[0]}..{keys[-1]}{suffix}",
        tags={
            **tags,
            "dagster/asset_partition_range_start": keys[0],
            "dagster/asset_partition_range_end": keys[-1],
        },
    )


def evaluate_approved_drafts(
    context: dg.SensorEvaluationContext, database: DatabaseResource, now: datetime
) -> dg.SensorResult | dg.SkipReason:
    """One tick of ``approved_drafts_sensor`` at ``now`` (tests pass their own time).

    The tick reads due requests and the drafts changed since the previous tick (its cursor),
    so its cost follows the new work, not the history; without a cursor it reads the whole
    backlog once. The cursor starts with a one-line summary of the tick, which the sensor's
    tick list shows beside each tick.
    """
    configs = {c.org_id: c for c in database.connector_configs().list(enabled_only=True)}
    orgs = frozenset(configs)
    cursor = ScanCursor.from_json(context.cursor)
    # Page through the backlog: drafts that stay unexported (no connector, refused, unreadable)
    # must not hide newer approvals behind a fixed window.
    scan = tick_scan(
        database.drafts(),
        now,
        cursor,
        orgs,
        page_size=_PAGE_SIZE,
        max_scanned=_MAX_SCANNED_PER_TICK,
    )
    plan = plan_requests(scan.pages, configs, now, limit=MAX_DRAFTS_PER_TICK)
    next_cursor = scan.next_cursor(cursor, plan, orgs, now)
    for line in plan.skipped[:_LOGGED_SKIPS]:
        context.log.info(f"not exported: {line}")
    if len(plan.skipped) > _LOGGED_SKIPS:
        context.log.info(f"not exported: {len(plan.skipped) - _LOGGED_SKIPS} more drafts")

    def finish(summary: str) -> str:
        text = f"{summary} [{scan.reason}]"
        if next_cursor is not None:
            context.update_cursor(next_cursor.to_json(text))
        elif context.cursor is not None:
            context.update_cursor(None)
        return text

    if not plan.planned:
        skipped = plan.skipped
        detail = f"; skipped {len(skipped)}: " + "; ".join(skipped[:20]) if skipped else ""
        return dg.SkipReason(f"no new approved drafts to export ({finish(plan.summary())}){detail}")
    # Read before the requests are recorded: a tick that fails after recording leaves its
    # drafts to the unreported-request re-drive, an hour later.
    known = DagsterKnownPartitions(
        context.instance,
        APPROVED_DRAFTS_PARTITIONS_NAME,
        [p.ref.partition_key for p in plan.planned],
    )
    recorded = set(
        SqlExportRequests(database.engine).record_requests(
            [(p.ref, p.previous, p.reason, p.draft_updated_at) for p in plan.planned], at=now
        )
    )
    given_up = [
        p for p in plan.planned if p.previous is not None and gives_up(p.previous, p.reason)
    ]
    for request in given_up:
        context.log.warning(
            f"{request.ref}: needs a person, no longer requested automatically: "
            f"{MAX_REDRIVES} re-drives used up and no run reported"
        )
    lost = len(plan.planned) - len(given_up) - len(recorded)
    plan.planned = [p for p in plan.planned if p.ref in recorded]
    again = [
        p for p in plan.planned if p.previous is not None and p.reason is not RequestReason.NEW
    ]
    for request in again[:_LOGGED_SKIPS]:
        previous = request.previous
        assert previous is not None
        number = previous.redrive_count + 1 if request.reason is RequestReason.REDRIVE else 0
        context.log.info(
            f"{request.ref}: requested again ({request.reason}, re-drive {number}); last "
            f"outcome {previous.last_outcome or 'none reported'}: {previous.last_reason}"
        )
    if len(again) > _LOGGED_SKIPS:
        context.log.info(f"requested again: {len(again) - _LOGGED_SKIPS} more drafts")
    summary = plan.summary()
    if given_up:
        summary += f"; {len(given_up)} need a person (re-drives used up)"
    if lost > 0:
        summary += f"; {lost} taken over by a concurrent update"
    if not plan.planned:
        text = finish(summary)
        if given_up:
            return dg.SkipReason(
                f"{len(given_up)} draft(s) need a person: re-drives used up, no run reported "
                f"({text})"
            )
        return dg.SkipReason(
            f"every planned request was taken over by a concurrent update ({text})"
        )
    runs, new_keys = plan_runs(plan, known, now)
    text = finish(f"{summary}; {len(runs)} run(s), {len(new_keys)} new partition(s)")
    context.log.info(text)
    return dg.SensorResult(
        run_requests=[_run_request(run) for run in runs],
        dynamic_partitions_requests=(
            [approved_drafts_partitions.build_add_request(new_keys)] if new_keys else []
        ),
    )


@dg.sensor(
    job=export_drafts_job,
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Requests APPROVED drafts of orgs with an enabled connector that have no "
    "PENDING/SENT/ACKED export: new ones, ones approved again after a refusal, and ones whose "
    "last try failed transiently once their backoff has passed (up to 8 re-drives, then they "
    "need a person). One run per dropzone host per tick.",
)
def approved_drafts_sensor(
    context: dg.SensorEvaluationContext, database: DatabaseResource
) -> dg.SensorResult | dg.SkipReason:
    return evaluate_approved_drafts(context, database, datetime.now(UTC))
