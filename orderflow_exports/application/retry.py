"""Re-sending drafts through the running deployment: what may be re-sent, launching, waiting.

A retry is a new run of ``export_drafts_job`` for the draft's partition, queued through the
deployment (:class:`~orderflow_exports.domain.ports.DeploymentRuns`), so the daemon's run
retries, the per-host concurrency limit and the UI's run history apply to it. The export service
still decides what the run does; this module only refuses what must not be sent again without a
person saying so (a SENT or ACKED latest attempt) and warns when the ERP may already hold the
order (ACK_TIMEOUT).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from orderflow_exports.domain.ack_decisions import ACK_TIMEOUT, ERP_REJECTED
from orderflow_exports.domain.endpoints import DROPZONE_HOST_TAG, host_tag
from orderflow_exports.domain.naming import DraftRef
from orderflow_exports.domain.ports import (
    ConnectorConfigs,
    DeploymentRuns,
    ExportLedger,
    LaunchedRun,
)
from orderflow_exports.domain.records import ExportRecord
from orderflow_exports.domain.status import ExportStatus

RETRIED_BY_TAG = "orderflow/retried_by"
FINISHED_STATUSES = frozenset({"SUCCESS", "FAILURE", "CANCELED"})


class RetryRefused(ValueError):
    """A draft that must not be re-sent as asked (bad input: nothing was launched)."""


class DeploymentUnavailable(RuntimeError):
    """The Dagster deployment cannot be reached or refused the request."""


@dataclass(frozen=True)
class RetryPlan:
    """One draft to re-send: its partition, the run's tags and what the operator must know."""

    ref: DraftRef
    latest: ExportRecord | None
    tags: dict[str, str]
    force: bool
    warning: str | None = None


@dataclass
class RetryLaunch:
    """A launched retry: the run id, whether the partition had to be added, and the outcome."""

    plan: RetryPlan
    run_id: str
    partition_added: bool
    final: LaunchedRun | None = None
    runs: list[str] = field(default_factory=list)  # the run, then each run-retry of it


def plan_retry(
    ref: DraftRef,
    *,
    ledger: ExportLedger,
    configs: ConnectorConfigs,
    force: bool,
    requested_by: str = "orderflow-exports",
) -> RetryPlan:
    """Check that ``ref`` may be re-sent; raises RetryRefused with one line saying why not."""
    config = configs.get(ref.org_id)
    if config is None:
        raise RetryRefused(
            f"org {ref.org_id} has no connector; set one with `orderflow-exports connectors set`"
        )
    if not config.enabled:
        raise RetryRefused(f"the connector of {ref.org_id} is disabled; a run would send nothing")
    latest = ledger.latest(ref)
    sent = latest is not None and latest.status in (ExportStatus.SENT, ExportStatus.ACKED)
    if sent and not force:
        assert latest is not None
        raise RetryRefused(
            f"{ref} attempt {latest.attempt} is {latest.status}: the ERP has the file; "
            "re-send it only with --force"
        )
    if latest is not None and latest.status is ExportStatus.PENDING and not force:
        raise RetryRefused(
            f"{ref} attempt {latest.attempt} is PENDING: a run is exporting it (or died and "
            "will be reconciled); retry once it has ended"
        )
    warning = None
    if latest is not None and latest.error_code == ACK_TIMEOUT:
        warning = (
            f"{ref} attempt {latest.attempt} timed out waiting for an ack: the ERP may already "
            f"hold this order (look for export id {latest.id} / file {latest.filename} in its "
            "inbox and in the ack folder's error/ before relying on the new file)"
        )
    tags = {DROPZONE_HOST_TAG: host_tag(config), RETRIED_BY_TAG: requested_by}
    return RetryPlan(ref=ref, latest=latest, tags=tags, force=force, warning=warning)


# Failures only a person can resolve: re-driving never re-sends them by itself.
NEEDS_ACTION_CODES = (ERP_REJECTED, ACK_TIMEOUT)


def failed_drafts(ledger: ExportLedger, *, org_id: str | None, limit: int) -> list[DraftRef]:
    """Drafts whose latest attempt is FAILED (in the order the ledger lists their failures)."""
    found: list[DraftRef] = []
    seen: set[DraftRef] = set()
    for record in ledger.list(org_id=org_id, status=ExportStatus.FAILED, limit=limit * 10):
        ref = DraftRef(record.org_id, record.draft_order_id)
        if ref in seen:
            continue
        seen.add(ref)
        # Any FAILED row of the draft stands for it: the question is what its latest is.
        latest = ledger.latest(ref)
        if latest is not None and latest.status is ExportStatus.FAILED:
            found.append(ref)
        if len(found) >= limit:
            break
    return found


def launch_retries(plans: Sequence[RetryPlan], deployment: DeploymentRuns) -> list[RetryLaunch]:
    """One queued run per plan (partition added first when missing)."""
    launches = []
    for plan in plans:
        key = plan.ref.partition_key
        added = deployment.ensure_partition(key)
        run_id = deployment.launch_export(key, tags=plan.tags, force=plan.force)
        launches.append(RetryLaunch(plan=plan, run_id=run_id, partition_added=added, runs=[run_id]))
    return launches


def wait_for_outcome(
    launch: RetryLaunch,
    deployment: DeploymentRuns,
    *,
    timeout: float,
    poll_seconds: float = 2.0,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> LaunchedRun:
    """Poll until the run, and every run-retry the daemon makes of it, has finished.

    Raises TimeoutError after ``timeout`` seconds; the runs go on in the deployment.
    """
    deadline = clock() + timeout
    run_id = launch.run_id
    while True:
        run = deployment.run(run_id)
        if run.retry_run_id is not None:
            run_id = run.retry_run_id
            launch.runs.append(run_id)
            continue
        if run.status in FINISHED_STATUSES and not (run.status == "FAILURE" and run.will_retry):
            launch.final = run
            return run
        if clock() > deadline:
            raise TimeoutError(
                f"run {run_id} is still {run.status} after {timeout:.0f} s; it goes on in the "
                f"deployment: {deployment.run_url(run_id)}"
            )
        sleep(poll_seconds)


@dataclass
class ResendSelection:
    """The drafts a bulk re-send takes: what to launch, and what was refused and why."""

    plans: list[RetryPlan] = field(default_factory=list)
    refused: dict[str, str] = field(default_factory=dict)  # partition key → reason


def select_resends(
    ledger: ExportLedger,
    configs: ConnectorConfigs,
    *,
    error_codes: Sequence[str],
    org_id: str | None,
    limit: int,
    requested_by: str,
) -> ResendSelection:
    """Drafts whose latest attempt FAILED with one of ``error_codes``, each planned as a retry.

    One ledger query finds them (SENT, ACKED and PENDING drafts are never among them); a draft
    that may not be re-sent as it is is refused with the reason instead of stopping the rest.
    """
    selection = ResendSelection()
    for record in ledger.latest_failed(error_codes, org_id=org_id, limit=limit):
        try:
            selection.plans.append(
                plan_retry(
                    record.ref,
                    ledger=ledger,
                    configs=configs,
                    force=False,
                    requested_by=requested_by,
                )
            )
        except RetryRefused as exc:
            selection.refused[record.ref.partition_key] = str(exc)
    return selection
