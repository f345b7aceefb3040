"""The code location's Definitions: assets, jobs, sensors and the resources they use."""

import dagster as dg

from orderflow_exports.defs.acks import (
    ack_asset_checks,
    ack_jobs,
    ack_resources,
    ack_sensors,
)
from orderflow_exports.defs.alerts import alert_resources, alert_sensors
from orderflow_exports.defs.assets import (
    EXPORT_ARCHIVE_IO_MANAGER_KEY,
    approved_drafts,
    export_json,
)
from orderflow_exports.defs.io_managers import ExportArchiveIOManager
from orderflow_exports.defs.jobs import export_drafts_job
from orderflow_exports.defs.reconciliation import (
    reconciliation_jobs,
    reconciliation_resources,
    reconciliation_schedules,
)
from orderflow_exports.defs.resend import resend_jobs
from orderflow_exports.defs.resources import DatabaseResource, DropzoneResource, ExportStoreResource
from orderflow_exports.defs.retention import retention_jobs, retention_schedules
from orderflow_exports.defs.sensors import approved_drafts_sensor

database = DatabaseResource()
export_store = ExportStoreResource()

defs = dg.Definitions(
    assets=[approved_drafts, export_json],
    asset_checks=ack_asset_checks,
    jobs=[export_drafts_job, *ack_jobs, *retention_jobs, *reconciliation_jobs, *resend_jobs],
    schedules=[*retention_schedules, *reconciliation_schedules],
    sensors=[approved_drafts_sensor, *ack_sensors, *alert_sensors],
    resources={
        "database": database,
        "dropzone": DropzoneResource(),
        "export_store": export_store,
        **ack_resources,
        **reconciliation_resources,
        **alert_resources,
        EXPORT_ARCHIVE_IO_MANAGER_KEY: ExportArchiveIOManager(
            export_store=export_store, database=database
        ),
    },
)
