"""``approved_drafts`` and ``export_json``: the export path as partitioned assets."""

import logging
from datetime import UTC, datetime
from typing import Any, NoReturn

import dagster as dg
from pydantic import Field

from orderflow_exports.adapters.dagster_instance import DagsterRunLiveness
from orderflow_exports.adapters.sql.export_requests import SqlExportRequests
from orderflow_exports.application.draft_checks import check_drafts
from orderflow_exports.application.export_batch import BatchResult, ExportBatch
from orderflow_exports.application.export_service import ExportOutcome, ExportService
from orderflow_exports.application.planning import report_outcomes_or_log
from orderflow_exports.application.publishing import ExportSettings
from orderflow_exports.defs.io_managers import reraise_store_error
from orderflow_exports.defs.partitions import EXPORT_BACKFILL_POLICY, approved_drafts_partitions
from orderflow_exports.defs.resources import (
    DatabaseResource,
    DropzoneResource,
    ExportStoreResource,
    local_folder_resolver,
)
from orderflow_exports.defs.settings import export_retry_delay
from orderflow_exports.domain.errors import ExportError, OrderflowError
from orderflow_exports.domain.export_requests import RequestOutcome
from orderflow_exports.domain.naming import DraftRef
from orderflow_exports.domain.status import ExportStatus

EXPORT_ARCHIVE_IO_MANAGER_KEY = "export_archive_io_manager"
EXPORT_JSON_KEY = dg.AssetKey("export_json")

# Dagster copies a run's output metadata onto every partition's materialization, so per-draft
# detail in a batch's output metadata costs O(N^2) to store: approved_drafts lists its drafts only
# in small batches; export_json puts each draft's detail on its own partition's materialization
# (partition-scoped asset metadata), which costs O(N).
BATCH_DETAIL_LIMIT = 50

# Every line a run logs through context.log is one event-log write (one transaction), as costly
# as a materialization. In a batch the per-draft "sent"/"already sent" lines go to this Python
# logger instead (the same facts are on each partition's materialization); warnings and errors
# still reach the run's log.
BATCH_INFO_LOGGER = logging.getLogger("orderflow_exports.export_json")

# Transient transport errors are retried by Dagster with backoff and jitter; permanent ones
# raise Failure(allow_retries=False) and fail at once.
EXPORT_RETRY_POLICY = dg.RetryPolicy(
    max_retries=3,
    delay=export_retry_delay(),
    backoff=dg.Backoff.EXPONENTIAL,
    jitter=dg.Jitter.PLUS_MINUS,
)


# Run retries (dagster.yaml) re-launch runs that failed for a reason that may pass. A run that
# failed for a permanent one (refused draft, host key, auth, permission, in flight) is tagged so
# that the daemon does not launch it again only to fail the same way (and add FAILED rows).
NO_RUN_RETRY_TAGS = {"dagster/retry_on_asset_or_op_failure": "false"}


def _fail_permanently(
    context: dg.AssetExecutionContext, description: str, metadata: dict[str, Any] | None = None
) -> NoReturn:
    context.instance.add_run_tags(context.run_id, NO_RUN_RETRY_TAGS)
    raise dg.Failure(description=description, metadata=metadata, allow_retries=False)


class _BatchLog:
    """The run's logger with per-draft info lines diverted: see ``BATCH_INFO_LOGGER``."""

    def __init__(self, run_log: Any) -> None:
        self._run_log = run_log

    def info(self, msg: str, *args: object) -> None:
        BATCH_INFO_LOGGER.info(msg, *args)

    def warning(self, msg: str, *args: object) -> None:
        self._run_log.warning(msg, *args)

    def error(self, msg: str, *args: object) -> None:
        self._run_log.error(msg, *args)


class TransientExportFailure(Exception):
    """Some exports of the run failed for reasons that may pass (connection, timeout)."""


class ExportConfig(dg.Config):
    """Run config of ``export_json``."""

    force: bool = Field(
        default=False,
        description="Send again even when the latest export is SENT or ACKED. The new "
        "erp_export row records forced=true; a SENT export it replaces becomes FAILED "
        "(SUPERSEDED).",
    )


def _report(
    context: dg.AssetExecutionContext,
    database: DatabaseResource,
    outcomes: list[tuple[DraftRef, RequestOutcome, str]],
) -> None:
    """Record in erp_export_request how each draft's try ended (what the sensor re-drives by)."""
    report_outcomes_or_log(
        SqlExportRequests(database.engine), outcomes, at=datetime.now(UTC), log=context.log
    )


def _partition_refs(context: dg.AssetExecutionContext) -> dict[str, DraftRef]:
    refs, invalid = {}, {}
    for key in context.partition_keys:
        try:
            refs[key] = DraftRef.from_partition_key(key)
        except OrderflowError as exc:
            invalid[key] = str(exc)
    if invalid:
        _fail_permanently(
            context,
            "invalid partition keys: " + "; ".join(f"{k!r}: {v}" for k, v in invalid.items()),
        )
    if not refs:
        _fail_permanently(context, "the run selects no partition")
    return refs


@dg.asset(
    partitions_def=approved_drafts_partitions,
    backfill_policy=EXPORT_BACKFILL_POLICY,
    group_name="orderflow",
    description="An approved draft order, loaded and validated for export (one partition per "
    "draft, key '<org_id>:<draft_order_id>').",
)
def approved_drafts(
    context: dg.AssetExecutionContext, database: DatabaseResource
) -> dg.MaterializeResult:
    check = check_drafts(database.drafts(), _partition_refs(context))
    refused, summary = check.refused, check.accepted
    if refused:
        _report(context, database, check.refusal_reports())
    if refused and not summary:
        _fail_permanently(
            context, check.refusal_text(), metadata={"refused": dg.MetadataValue.json(refused)}
        )
    for key, reason in refused.items():
        # In a batch one refused draft must not stop the others: export_json refuses it again
        # (no row, no file) and fails the run naming it, after sending the rest.
        context.log.error(f"{key}: refused: {reason}")
    if refused:
        return dg.MaterializeResult(
            metadata={
                "draft_count": len(summary),
                "refused_count": len(refused),
                "refused": dg.MetadataValue.json(refused),
            }
        )
    if len(summary) == 1:
        return dg.MaterializeResult(metadata=next(iter(summary.values())))
    metadata: dict[str, Any] = {"draft_count": len(summary)}
    if len(summary) <= BATCH_DETAIL_LIMIT:
        metadata["drafts"] = dg.MetadataValue.json(summary)
    return dg.MaterializeResult(metadata=metadata)


def _archive_value(location: str | None) -> Any:
    if not location:
        return None
    if "://" in location:
        return dg.MetadataValue.url(location)
    return dg.MetadataValue.path(location)


def _outcome_metadata(outcome: ExportOutcome) -> dict[str, Any]:
    record = outcome.record
    metadata = {
        "action": outcome.action,
        "export_id": record.id,
        "attempt": record.attempt,
        "status": str(record.status),
        "error_code": record.error_code,
        "forced": record.forced,
        "filename": record.filename,
        "dropzone_path": dg.MetadataValue.path(record.dropzone_path)
        if record.dropzone_path
        else None,
        "archive": _archive_value(record.storage_key),
        "content_sha256": record.content_sha256,
        "byte_size": record.byte_size,
        "line_count": record.line_count,
    }
    return {k: v for k, v in metadata.items() if v is not None}


def _failure_metadata(failure: OrderflowError) -> dict[str, Any]:
    code = str(failure.code) if isinstance(failure, ExportError) else type(failure).__name__
    return {
        "status": str(ExportStatus.FAILED),
        "error_code": code,
        "error_message": str(failure)[:500],
        "transient": isinstance(failure, ExportError) and failure.transient,
    }


def _draft_observations(
    outcomes: dict[str, ExportOutcome], failures: dict[str, OrderflowError]
) -> list[dg.AssetObservation]:
    """One observation per draft on its own partition: what this run did to that draft.

    Only for a run that fails: its step materializes nothing, so each draft's outcome (sent or
    failed) is recorded on its partition as an observation, beside the ack sensor's.
    """
    events = [
        dg.AssetObservation(
            asset_key=EXPORT_JSON_KEY,
            partition=key,
            description=f"export {o.record.id} attempt {o.record.attempt}: {o.record.status} "
            f"({o.action})",
            metadata=_outcome_metadata(o),
        )
        for key, o in outcomes.items()
    ]
    events.extend(
        dg.AssetObservation(
            asset_key=EXPORT_JSON_KEY,
            partition=key,
            description=f"export failed: {_failure_metadata(exc)['error_code']}: {exc}"[:500],
            metadata=_failure_metadata(exc),
        )
        for key, exc in failures.items()
    )
    return events


@dg.asset(
    partitions_def=approved_drafts_partitions,
    deps=[approved_drafts],
    backfill_policy=EXPORT_BACKFILL_POLICY,
    io_manager_key=EXPORT_ARCHIVE_IO_MANAGER_KEY,
    retry_policy=EXPORT_RETRY_POLICY,
    group_name="orderflow",
    description="The draft as an orderflow_export_json_v1 file in its org's dropzone, with an "
    "erp_export row per attempt; the file is archived in the export store.",
)
def export_json(
    context: dg.AssetExecutionContext,
    config: ExportConfig,
    database: DatabaseResource,
    dropzone: DropzoneResource,
    export_store: ExportStoreResource,
) -> dict[str, ExportOutcome]:
    store = export_store.store()
    service = ExportService(
        drafts=database.drafts(),
        configs=database.connector_configs(),
        ledger=database.ledger(),
        dropzones=dropzone.connector(),
        store=store,
        settings=ExportSettings(
            spool_dir=export_store.spool_path(), stale_temp_age=dropzone.stale_temp_age
        ),
        liveness=DagsterRunLiveness(context.instance),
        local_folders=local_folder_resolver(export_store, dropzone),
        log=context.log if len(context.partition_keys) == 1 else _BatchLog(context.log),
    )
    refs = _partition_refs(context)
    run = context.dagster_run
    # Only the daemon's automatic retries count as tries of this run: an operator re-executing
    # after a fix (no retry tag) gets a fresh attempt.
    automatic_retry = "dagster/retry_number" in run.tags
    earlier_tries = [r for r in (run.parent_run_id, run.root_run_id) if r and automatic_retry]
    batch = ExportBatch(
        service=service,
        store=store,
        requests=SqlExportRequests(database.engine),
        log=service.log,
        report_log=context.log,
    )
    result = batch.export_batch(
        refs, force=config.force, run_id=context.run_id, related_run_ids=earlier_tries
    )
    _to_dagster(context, result)
    return result.outcomes


def _to_dagster(context: dg.AssetExecutionContext, result: BatchResult) -> None:
    """The batch's result as Dagster sees it: events and metadata, or the step's failure."""
    outcomes = result.outcomes
    if result.failures:
        # The failing step materializes nothing: each draft's outcome is an observation.
        for event in _draft_observations(outcomes, result.failures):
            context.log_event(event)
    if result.archive_failure is not None:
        key, error = result.archive_failure
        reraise_store_error(key, "archiving failed", error)
    if result.failures:
        if result.transient:
            raise TransientExportFailure(result.failure_message())
        _fail_permanently(context, result.failure_message())
    if len(outcomes) == 1:
        context.add_output_metadata(_outcome_metadata(next(iter(outcomes.values()))))
        return
    # Counts are copied onto every partition of the run, so they stay constant in size; each
    # draft's own detail is scoped to its own partition's materialization.
    actions = result.action_counts()
    context.add_output_metadata(
        {
            "export_count": len(outcomes),
            **{f"{action}_count": count for action, count in sorted(actions.items())},
        }
    )
    for key, outcome in outcomes.items():
        context.add_asset_metadata(_outcome_metadata(outcome), partition_key=key)
    context.log.info(result.summary())
