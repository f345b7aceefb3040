"""Retention: a daily schedule removes the dynamic partitions of settled drafts.

The rule is :mod:`orderflow_exports.application.retention`; this module only runs it in a job
and deletes the partitions it names. ``erp_export`` keeps every row. The age comes from
``ORDERFLOW_RETENTION_DAYS`` (read when the schedule ticks; default 30, ``0`` turns retention
off) or from the job's config when it is launched by hand.
"""

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import dagster as dg
from pydantic import Field

from orderflow_exports.adapters.dagster_partitions import DagsterExportPartitions
from orderflow_exports.application.retention import remove_settled, restore
from orderflow_exports.defs.partitions import APPROVED_DRAFTS_PARTITIONS_NAME
from orderflow_exports.defs.resources import DatabaseResource

RETENTION_DAYS_ENV = "ORDERFLOW_RETENTION_DAYS"
DEFAULT_RETENTION_DAYS = 30


class RetentionConfig(dg.Config):
    """How old a settled draft must be before its partition is removed."""

    max_age_days: int = Field(
        default=DEFAULT_RETENTION_DAYS,
        ge=1,
        description="A draft whose latest export was ACKED at least this many days ago, with "
        "no PENDING/SENT attempt, loses its dynamic partition (erp_export keeps its rows).",
    )


def remove_settled_partitions(
    instance: dg.DagsterInstance,
    database: DatabaseResource,
    now: datetime,
    max_age: timedelta,
    log: dg.DagsterLogManager | None = None,
) -> list[str]:
    """Delete the partitions the retention rule allows at ``now``; returns the removed keys."""
    partitions = DagsterExportPartitions(instance, APPROVED_DRAFTS_PARTITIONS_NAME)
    return remove_settled(database.ledger(), partitions, now, max_age, log=log)


def restore_partitions(instance: dg.DagsterInstance, keys: Sequence[str]) -> list[str]:
    """Give removed drafts their partitions back (before a forced re-send by hand, e.g. with
    ``dagster job execute`` and a partition tag, which refuses an unknown partition)."""
    return restore(DagsterExportPartitions(instance, APPROVED_DRAFTS_PARTITIONS_NAME), keys)


@dg.op(
    description="Removes the dynamic partitions of settled drafts (latest export ACKED longer "
    "ago than max_age_days, nothing PENDING/SENT). Never an active or failed draft."
)
def remove_settled_partitions_op(
    context: dg.OpExecutionContext, config: RetentionConfig, database: DatabaseResource
) -> dg.Output[int]:
    removed = remove_settled_partitions(
        context.instance,
        database,
        datetime.now(UTC),
        timedelta(days=config.max_age_days),
        context.log,
    )
    return dg.Output(
        len(removed),
        metadata={"removed": len(removed), "max_age_days": config.max_age_days},
    )


@dg.job(description="Removes the dynamic partitions of drafts settled long ago (retention).")
def retention_job() -> None:
    remove_settled_partitions_op()


def retention_days() -> int | None:
    """``ORDERFLOW_RETENTION_DAYS`` now (None: retention off); a bad value raises."""
    raw = dg.EnvVar(RETENTION_DAYS_ENV).get_value()
    if raw is None or raw.strip() == "":
        return DEFAULT_RETENTION_DAYS
    days = int(raw)
    if days < 0:
        raise ValueError(f"{RETENTION_DAYS_ENV} must be 0 (off) or a number of days, not {raw}")
    return days or None


@dg.schedule(
    cron_schedule="15 3 * * *",
    job=retention_job,
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Daily at 03:15 UTC: removes the partitions of drafts settled for longer than "
    f"{RETENTION_DAYS_ENV} days (default {DEFAULT_RETENTION_DAYS}; 0 turns it off).",
)
def retention_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest | dg.SkipReason:
    days = retention_days()
    if days is None:
        return dg.SkipReason(f"retention is off ({RETENTION_DAYS_ENV}=0)")
    return dg.RunRequest(
        run_config={"ops": {"remove_settled_partitions_op": {"config": {"max_age_days": days}}}},
        tags={"orderflow/retention_days": str(days)},
    )


retention_schedules = [retention_schedule]
retention_jobs = [retention_job]
