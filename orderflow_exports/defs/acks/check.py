"""The ``erp_ack`` asset check on ``export_json``: did the ERP take the draft's latest export?

The sensor and the job report its evaluations as acks and timeouts happen; running the check
reads the current ``erp_export`` row of each partition.
"""

# No ``from __future__ import annotations``: Dagster reads the context and resource annotations.

from typing import Any

import dagster as dg

from orderflow_exports.application.acks.report import ack_check_verdict
from orderflow_exports.defs.acks.events import (
    ERP_ACK_CHECK,
    EXPORT_JSON,
    clean_metadata,
    state_metadata,
)
from orderflow_exports.defs.partitions import approved_drafts_partitions
from orderflow_exports.defs.resources import DatabaseResource
from orderflow_exports.domain.errors import OrderflowError
from orderflow_exports.domain.naming import DraftRef
from orderflow_exports.domain.records import ExportRecord


def _check_metadata(record: ExportRecord | None) -> dict[str, Any]:
    if record is None:
        return {"status": "NOT_EXPORTED"}
    return clean_metadata(
        {
            **state_metadata(record.status),
            "export_id": record.id,
            "status": str(record.status),
            "erp_order_number": record.erp_order_number,
            "error_code": record.error_code,
            "error_message": record.error_message,
            "sent_at": record.sent_at.isoformat() if record.sent_at else None,
            "acked_at": record.acked_at.isoformat() if record.acked_at else None,
        }
    )


@dg.asset_check(
    asset=EXPORT_JSON,
    name=ERP_ACK_CHECK,
    partitions_def=approved_drafts_partitions,
    blocking=False,
    description="Did the ERP refuse or never answer the draft's latest export? Failed (error): "
    "the latest export is FAILED (ERP_REJECTED, ACK_TIMEOUT, a transport error): it needs a "
    "re-send. Passed: ACKED, or still waiting for the ack within the org's deadline (waiting is "
    "not a failure; the metadata says WAITING_FOR_ACK). Reported by erp_ack_sensor on every ack "
    "and timeout; running the check reads the current erp_export row.",
)
def erp_ack(
    context: dg.AssetCheckExecutionContext, database: DatabaseResource
) -> dg.AssetCheckResult:
    ledger = database.ledger()
    rows: dict[str, ExportRecord | None] = {}
    for key in context.partition_keys:
        try:
            rows[key] = ledger.latest(DraftRef.from_partition_key(key))
        except OrderflowError:
            rows[key] = None
    verdict = ack_check_verdict(rows)
    severity = dg.AssetCheckSeverity.ERROR if verdict.failed else dg.AssetCheckSeverity.WARN
    if len(rows) == 1:
        [(key, record)] = rows.items()
        metadata = _check_metadata(record)
    else:
        # Counts only: per-draft states are on each partition's observations (linear storage).
        metadata = dict(verdict.counts())
    return dg.AssetCheckResult(
        passed=verdict.passed,
        severity=severity,
        metadata=metadata,
        description=verdict.description(),
    )
