"""Reconciliation in Dagster: ``reconcile_dropzones_job`` and its daily schedule.

Wiring only: the comparison is :class:`~orderflow_exports.application.reconciliation.Reconciler`.

How results are reported: one ``AssetObservation`` per org on ``export_json`` (unpartitioned),
with the org's counts per finding class and its findings as JSON, plus the op's output metadata
and one log line per finding. Not an asset check on ``export_json``: a check declared on that
asset without partitions runs inside every UI "Materialize" of any of its partitions (Dagster
adds an asset's checks to the run), so each materialization would connect to every org's
dropzone and, with a fix switched on, change things. Observations carry the same per-org result
without that; the op returns the ``findings`` and sends their alerts once they are on record.
"""

# No ``from __future__ import annotations``: Dagster reads the context and resource annotations.

from datetime import UTC, datetime, timedelta
from typing import Any

import dagster as dg
from pydantic import Field

from orderflow_exports.adapters.dagster_instance import DagsterRunLiveness
from orderflow_exports.adapters.dropzones import PooledDropzoneConnector
from orderflow_exports.adapters.sql.alerts import SqlAlertLog
from orderflow_exports.application.alerting import deliver, reconciliation_alerts
from orderflow_exports.application.publishing import ExportSettings, Publisher
from orderflow_exports.application.reconciliation import (
    OrgReconciliation,
    Reconciler,
    ReconcileSettings,
    finding_json,
    finding_line,
    reconciliation_totals,
)
from orderflow_exports.defs.alerts import NotifierResource
from orderflow_exports.defs.resources import (
    DatabaseResource,
    DropzoneResource,
    ExportStoreResource,
    local_folder_resolver,
)
from orderflow_exports.domain.reconciliation import Finding, ReconcileRules

EXPORT_JSON = dg.AssetKey("export_json")
RECONCILIATION_RESOURCE_KEY = "reconciliation"
RECONCILE_CRON_ENV = "ORDERFLOW_RECONCILE_CRON"
DEFAULT_RECONCILE_CRON = "30 5 * * *"
_MAX_FINDINGS_IN_METADATA = 200


class ReconciliationResource(dg.ConfigurableResource):
    """Thresholds of the reconciliation and the fixes it may make (all off by default)."""

    stale_file_after_seconds: int = Field(
        default=4 * 3600,
        ge=1,
        description="A sent file still in the dropzone longer than this is reported "
        "(the ERP is not picking files up).",
    )
    stale_temp_age_seconds: int = Field(
        default=3600,
        ge=60,
        description="Temp files of ours older than this are reported as left behind.",
    )
    pending_grace_seconds: int = Field(
        default=900,
        ge=0,
        description="A PENDING row younger than this is never reported (its run may be starting).",
    )
    unanswered_after_seconds: int = Field(
        default=3600,
        ge=1,
        description="A SENT row whose file the ERP took this long ago, with no ack waiting, "
        "is reported (before its ACK_TIMEOUT).",
    )
    max_rows_per_org: int = Field(
        default=10_000, ge=1, description="PENDING and SENT rows read per org and status."
    )
    max_ack_files_per_org: int = Field(
        default=500, ge=1, description="Ack files read per org to know which exports they answer."
    )
    remove_stale_temps: bool = Field(
        default=False,
        description="Fix: remove the temp files reported as left behind (never a temp file "
        "of a PENDING row). Off: read-only.",
    )
    settle_orphaned_pending: bool = Field(
        default=False,
        description="Fix: settle PENDING rows whose run is not active with the export's "
        "settle rule (file there → SENT, else FAILED INTERRUPTED). Off: read-only.",
    )

    def settings(self) -> ReconcileSettings:
        return ReconcileSettings(
            rules=ReconcileRules(
                stale_file_after=timedelta(seconds=self.stale_file_after_seconds),
                stale_temp_age=timedelta(seconds=self.stale_temp_age_seconds),
                pending_grace=timedelta(seconds=self.pending_grace_seconds),
                unanswered_after=timedelta(seconds=self.unanswered_after_seconds),
            ),
            max_rows_per_org=self.max_rows_per_org,
            max_ack_files_per_org=self.max_ack_files_per_org,
            remove_stale_temps=self.remove_stale_temps,
            settle_orphaned_pending=self.settle_orphaned_pending,
        )


def org_observation(result: OrgReconciliation) -> dg.AssetObservation:
    """The per-org report on ``export_json``."""
    metadata: dict[str, Any] = {
        "org_id": result.org_id,
        "reconciled": result.reconciled,
        "findings_total": len(result.findings),
        **{f"findings_{kind}": n for kind, n in result.counts().items()},
        "export_folder_entries": result.export_entries,
        "ack_files_read": result.ack_files_read,
        "ack_files_unreadable": result.ack_files_unreadable,
        "findings": dg.MetadataValue.json(
            [finding_json(f) for f in result.findings[:_MAX_FINDINGS_IN_METADATA]]
        ),
    }
    return dg.AssetObservation(
        asset_key=EXPORT_JSON,
        description=f"reconciliation: {result.describe()}",
        metadata=metadata,
    )


def run_reconciliation(
    database: DatabaseResource,
    dropzone: DropzoneResource,
    export_store: ExportStoreResource,
    reconciliation: ReconciliationResource,
    instance: dg.DagsterInstance,
    log: Any,
) -> list[OrgReconciliation]:
    """One reconciliation over every enabled org (the op's body, usable from a script)."""
    settings = reconciliation.settings()
    ledger = database.ledger()
    liveness = DagsterRunLiveness(instance)
    settle = None
    if settings.settle_orphaned_pending:
        publisher = Publisher(
            ledger=ledger,
            dropzones=dropzone.connector(),
            settings=ExportSettings(
                spool_dir=export_store.spool_path(), stale_temp_age=dropzone.stale_temp_age
            ),
            log=log,
        )
        # The one settle rule of a PENDING row, shared with the export run's own recovery.
        settle = publisher.settle_unpublished
    reconciler = Reconciler(
        ledger,
        liveness,
        settings,
        settle=settle,
        log=log,
        local_folders=local_folder_resolver(export_store, dropzone),
    )

    def connector() -> PooledDropzoneConnector:
        return PooledDropzoneConnector(sftp_settings_factory=dropzone.sftp_settings)

    return reconciler.reconcile_all(database.connector_configs().list(), connector)


@dg.op(
    description="Compare every enabled org's dropzone and ack folder with erp_export and "
    "report each mismatch per org; read-only unless a fix is switched on in the "
    "reconciliation resource. Fails (after reporting every org) when an org could not be "
    "checked."
)
def reconcile_dropzones(
    context: dg.OpExecutionContext,
    database: DatabaseResource,
    dropzone: DropzoneResource,
    export_store: ExportStoreResource,
    reconciliation: ReconciliationResource,
    notifier: NotifierResource,
) -> list[Finding]:
    results = run_reconciliation(
        database, dropzone, export_store, reconciliation, context.instance, context.log
    )
    totals = reconciliation_totals(results)
    findings = list(totals.findings)
    for result in results:
        context.log_event(org_observation(result))
    for finding in findings:
        report = context.log.error if finding.kind == "not_reconciled" else context.log.warning
        report(finding_line(finding))
    context.add_output_metadata(
        {
            "orgs": totals.orgs,
            "orgs_not_reconciled": totals.orgs_not_reconciled,
            "findings": len(findings),
            "fixed": totals.fixed,
            "per_org": dg.MetadataValue.json(totals.per_org),
        }
    )
    # Alerts come after the findings are on record (observations, log); a channel that fails
    # records nothing, so its alerts go out on the next reconciliation.
    delivery = deliver(
        reconciliation_alerts(findings),
        notifier.notifiers(context.log),
        SqlAlertLog(database.engine),
        now=datetime.now(UTC),
        max_drafts_per_alert=notifier.max_drafts_per_alert,
    )
    alerts_line = f"reconciliation alerts: {delivery.summary()}"
    (context.log.error if delivery.failures else context.log.info)(alerts_line)
    context.add_output_metadata({"alerts": alerts_line})
    if totals.incomplete_message is not None:
        raise dg.Failure(description=totals.incomplete_message)
    return findings


@dg.job(
    name="reconcile_dropzones_job",
    description="Dropzone and ack folders vs erp_export, per org (daily by "
    "reconcile_dropzones_schedule): dagster job execute -m orderflow_exports -j "
    "reconcile_dropzones_job",
    tags={"orderflow/kind": "reconciliation"},
)
def reconcile_dropzones_job() -> None:
    reconcile_dropzones()


def reconcile_cron() -> str:
    """The schedule's cron: env ORDERFLOW_RECONCILE_CRON, read when the definitions load."""
    return dg.EnvVar(RECONCILE_CRON_ENV).get_value() or DEFAULT_RECONCILE_CRON


def build_reconcile_schedule() -> dg.ScheduleDefinition:
    return dg.ScheduleDefinition(
        name="reconcile_dropzones_schedule",
        job=reconcile_dropzones_job,
        cron_schedule=reconcile_cron(),
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description=f"Runs reconcile_dropzones_job (cron from {RECONCILE_CRON_ENV}, default "
        f"'{DEFAULT_RECONCILE_CRON}' UTC).",
    )


reconciliation_jobs = [reconcile_dropzones_job]
reconciliation_schedules = [build_reconcile_schedule()]
reconciliation_resources: dict[str, Any] = {RECONCILIATION_RESOURCE_KEY: ReconciliationResource()}
