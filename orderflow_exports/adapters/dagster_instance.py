"""The Dagster instance as a port: run liveness, failed runs, run-less check evaluations.

Three things read the instance's storage directly:

- :class:`DagsterRunLiveness`: whether a run may still be working (the ``RunLiveness`` port).
- :class:`DagsterRunFailures`: failed runs of a job and the first error each logged (the
  ``RunFailures`` port the failed-run alerts read).
- :func:`once_per_partition`: Dagster 1.13 stores a run-less partitioned check evaluation under
  run_id '' in ``asset_check_executions``, whose unique index (asset_key, check_name, run_id,
  partition) lets each partition hold only one. A second one makes
  ``report_runless_asset_event`` raise in the daemon and fails the sensor tick. To know whether
  a partition already holds one, the check's execution history is read for that partition. The
  public API has no partition filter for it (``DagsterInstance`` offers only the latest record
  of a check, across partitions; ``dagster`` exports no ``PartitionKeyFilter``), so the filter is
  imported from ``dagster._core.event_api``: written for the pinned Dagster version, and kept
  here so an upgrade has one place to look.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import dagster as dg

from orderflow_exports.domain.ports import FailedRun

_ACTIVE = {
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
    dg.DagsterRunStatus.MANAGED,
}

#: An asset event a sensor may return for the daemon to report without a run.
RunlessEvent = dg.AssetObservation | dg.AssetCheckEvaluation


class DagsterRunLiveness:
    """The ``RunLiveness`` port over the Dagster instance's run storage."""

    def __init__(self, instance: dg.DagsterInstance) -> None:
        self._instance = instance

    def is_active(self, run_id: str) -> bool:
        run = self._instance.get_run_by_id(run_id)
        return run is not None and run.status in _ACTIVE


class DagsterRunFailures:
    """The ``RunFailures`` port over the Dagster instance's run storage and event logs."""

    def __init__(self, instance: dg.DagsterInstance) -> None:
        self._instance = instance

    def failed_since(self, job_name: str, since: datetime, *, limit: int) -> list[FailedRun]:
        records = self._instance.get_run_records(
            dg.RunsFilter(
                job_name=job_name,
                statuses=[dg.DagsterRunStatus.FAILURE],
                updated_after=since,
            ),
            limit=limit,
        )
        return [self.failed_run(record.dagster_run) for record in records]

    def failed_run(self, run: dg.DagsterRun) -> FailedRun:
        """One failed run (e.g. the run a run-failure sensor was called for) as a value."""
        return FailedRun(
            run_id=run.run_id,
            job_name=run.job_name,
            tags=dict(run.tags),
            error=self.first_error(run.run_id),
        )

    def first_error(self, run_id: str) -> str | None:
        """The first failed step's error, else the root cause of the run's failure event."""
        for entry in self._instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_FAILURE):
            event = entry.dagster_event
            if event is not None and event.step_failure_data.error is not None:
                error = event.step_failure_data.error
                return f"step {event.step_key}: {error.message.strip()}"
        for entry in self._instance.all_logs(run_id, of_type=dg.DagsterEventType.RUN_FAILURE):
            event = entry.dagster_event
            if event is None:
                continue
            cause: Any = getattr(event.event_specific_data, "error", None)
            # A resource that failed to start (e.g. an unmigrated database) is only in the
            # run's failure event; its root cause is the useful part.
            while cause is not None and cause.cause is not None:
                cause = cause.cause
            text = cause.message.strip() if cause is not None else event.message
            if text:
                return str(text)
        return None


def once_per_partition(
    instance: dg.DagsterInstance, events: list[RunlessEvent]
) -> list[RunlessEvent]:
    """Drop check evaluations Dagster could not store run-less; observations are always kept.

    Per check and partition, only the newest evaluation of ``events`` is kept, and none when
    the partition already holds a run-less evaluation of that check (see the module docstring).
    """
    latest: dict[tuple[dg.AssetCheckKey, str], int] = {}
    for index, event in enumerate(events):
        if isinstance(event, dg.AssetCheckEvaluation) and event.partition is not None:
            # The newest state wins within one batch of events.
            latest[(event.asset_check_key, event.partition)] = index
    kept: list[RunlessEvent] = []
    for index, event in enumerate(events):
        if (
            isinstance(event, dg.AssetCheckEvaluation)
            and event.partition is not None
            and (
                latest[(event.asset_check_key, event.partition)] != index
                or has_runless_evaluation(instance, event.asset_check_key, event.partition)
            )
        ):
            continue
        kept.append(event)
    return kept


def has_runless_evaluation(
    instance: dg.DagsterInstance, check_key: dg.AssetCheckKey, partition: str
) -> bool:
    """Whether the partition already holds a run-less evaluation of the check."""
    # The one private import: no public API filters a check's history by partition.
    from dagster._core.event_api import PartitionKeyFilter

    history = instance.event_log_storage.get_asset_check_execution_history(
        check_key, limit=1000, partition_filter=PartitionKeyFilter(key=partition)
    )
    return any(not record.run_id for record in history)
