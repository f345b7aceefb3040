"""Whether a Dagster run may still be working on an export (for PENDING reconciliation)."""

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


class DagsterRunLiveness:
    """The ``RunLiveness`` port over the Dagster instance's run storage."""

    def __init__(self, instance: dg.DagsterInstance) -> None:
        self._instance = instance

    def is_active(self, run_id: str) -> bool:
        run = self._instance.get_run_by_id(run_id)
        return run is not None and run.status in _ACTIVE
