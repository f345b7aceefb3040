"""The Dagster instance as a port: run liveness, and run-less asset check evaluations.

Two things read the instance's storage directly:

- :class:`DagsterRunLiveness`: whether a run may still be working (the ``RunLiveness`` port).
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

import dagster as dg

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
