"""Failed export runs as alerts: which drafts a run was for, its first error, the next step.

The run history is a port (:class:`~orderflow_exports.domain.ports.RunFailures`); the Dagster
instance implements it in ``adapters/dagster_instance.py``. A failed run is one event
(``RUN_FAILED:<run_id>``), so the run-failure sensor and the alert sensor's look-back over the
last hours tell each channel of it once between them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

from orderflow_exports.domain.alerts import Alert, AlertKind, resend_step
from orderflow_exports.domain.ports import FailedRun, RunFailures

# The tags Dagster puts on a run of one partition, or of a range of partitions.
PARTITION_TAG = "dagster/partition"
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"
ERROR_LIMIT = 800
# The alert sensor must finish within the daemon's evaluation timeout.
MAX_RUNS_PER_LOOKBACK = 100


def run_partition_keys(tags: Mapping[str, str]) -> tuple[list[str], dict[str, str]]:
    """The drafts a run names in its tags, and the partition range of a ranged run as detail
    (a range names no draft: its keys are not in the tags)."""
    key = tags.get(PARTITION_TAG)
    if key:
        return [key], {}
    start = tags.get(RANGE_START_TAG)
    end = tags.get(RANGE_END_TAG)
    if start and end:
        return [], {"partition_range": f"{start}...{end}"}
    return [], {}


def run_failed_alert(
    *, run_id: str, job_name: str, partition_keys: Sequence[str], error: str | None
) -> Alert:
    """A failed export run; ``partition_keys`` are the run's drafts when the tags name them."""
    orgs = {key.partition(":")[0] for key in partition_keys}
    return Alert(
        kind=AlertKind.RUN_FAILED,
        title=f"run {run_id} of {job_name} failed",
        org_id=orgs.pop() if len(orgs) == 1 else None,
        drafts=tuple(partition_keys),
        error_code="RUN_FAILURE",
        error_message=error,
        next_step=f"Read the failed step of run {run_id} in the Dagster UI (Runs → {run_id}); "
        "`orderflow-exports exports attention` lists the drafts that need a person; then "
        "re-execute the run from failure in the UI, or "
        + (
            resend_step(list(partition_keys))
            if partition_keys
            else resend_step(["<org_id>:<draft_order_id>"])
        ),
        event_keys=(f"{AlertKind.RUN_FAILED}:{run_id}",),
        details={"dagster_run_id": run_id, "job": job_name},
    )


def failed_run_alert(run: FailedRun) -> Alert:
    """The alert of one failed run: its drafts from its tags, its first error cut short."""
    keys, extra = run_partition_keys(run.tags)
    alert = run_failed_alert(
        run_id=run.run_id,
        job_name=run.job_name,
        partition_keys=keys,
        error=run.error[:ERROR_LIMIT] if run.error else None,
    )
    alert.details.update(extra)
    return alert


def failed_run_alerts(
    runs: RunFailures, job_name: str, *, since: datetime, limit: int = MAX_RUNS_PER_LOOKBACK
) -> list[Alert]:
    """One alert per run of ``job_name`` that failed since ``since`` (told ones included: the
    alert log filters those per channel)."""
    return [failed_run_alert(run) for run in runs.failed_since(job_name, since, limit=limit)]
