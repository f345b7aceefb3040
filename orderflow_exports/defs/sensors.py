"""``approved_drafts_sensor``: approvals, re-approvals and due re-drives become (batched) runs.

A tick is :func:`orderflow_exports.application.approvals_tick.run_approvals_tick`: which drafts
it requests (the rule of :mod:`orderflow_exports.domain.export_requests`), recording each request
in ``erp_export_request`` before the run is asked for, and which runs cover them; the run records
how it ended. This module builds the adapters, logs the tick's lines, keeps its cursor and maps
its runs to Dagster's run requests and dynamic partition requests.
"""

from datetime import UTC, datetime

import dagster as dg

from orderflow_exports.adapters.dagster_partitions import DagsterKnownPartitions
from orderflow_exports.adapters.sql.export_requests import SqlExportRequests
from orderflow_exports.application.approvals_tick import TickLimits, run_approvals_tick
from orderflow_exports.application.planning import PlannedRun
from orderflow_exports.defs.jobs import export_drafts_job
from orderflow_exports.defs.partitions import (
    APPROVED_DRAFTS_PARTITIONS_NAME,
    approved_drafts_partitions,
)
from orderflow_exports.defs.resources import DatabaseResource
from orderflow_exports.domain.endpoints import DROPZONE_HOST_TAG

MAX_DRAFTS_PER_TICK = 1000
_PAGE_SIZE = 2000
_MAX_SCANNED_PER_TICK = 50_000  # keeps a tick far inside the 60 s evaluation timeout


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
    tick = run_approvals_tick(
        database.drafts(),
        database.connector_configs(),
        SqlExportRequests(database.engine),
        lambda keys: DagsterKnownPartitions(
            context.instance, APPROVED_DRAFTS_PARTITIONS_NAME, keys
        ),
        cursor=context.cursor,
        now=now,
        limits=TickLimits(
            max_requests=MAX_DRAFTS_PER_TICK,
            page_size=_PAGE_SIZE,
            max_scanned=_MAX_SCANNED_PER_TICK,
        ),
    )
    for line in tick.lines:
        (context.log.warning if line.level == "warning" else context.log.info)(line.text)
    if tick.next_cursor is not None or context.cursor is not None:
        context.update_cursor(tick.next_cursor)
    if tick.skip is not None:
        return dg.SkipReason(tick.skip)
    return dg.SensorResult(
        run_requests=[_run_request(run) for run in tick.runs],
        dynamic_partitions_requests=(
            [approved_drafts_partitions.build_add_request(tick.new_partition_keys)]
            if tick.new_partition_keys
            else []
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
