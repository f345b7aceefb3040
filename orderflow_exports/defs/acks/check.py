"""The ``erp_ack`` asset check on ``export_json``: did the ERP take the draft's latest export?

The sensor and the job report its evaluations as acks and timeouts happen; running the check
reads the current ``erp_export`` row of each partition.
"""

# No ``from __future__ import annotations``: Dagster reads the context and resource annotations.

from typing import Any

import dagster as dg

from orderflow_exports.defs.acks.events import (
    ACK_STATE_WAITING,
    ERP_ACK_CHECK,
    EXPORT_JSON,
    ack_state,
    clean_metadata,
    state_metadata,
)
from orderflow_exports.defs.partitions import approved_drafts_partitions
from orderflow_exports.defs.resources import DatabaseResource
from orderflow_exports.domain.errors import OrderflowError
from orderflow_exports.domain.naming import DraftRef
from orderflow_exports.domain.records import ExportRecord
from orderflow_exports.domain.status import ExportStatus


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
    failed = [k for k, r in rows.items() if r is not None and r.status is ExportStatus.FAILED]
    missing = [k for k, r in rows.items() if r is None]
    waiting = [
        k for k, r in rows.items() if r is not None and ack_state(r.status) == ACK_STATE_WAITING
    ]
    passed = not failed and not missing
    severity = dg.AssetCheckSeverity.ERROR if failed else dg.AssetCheckSeverity.WARN
    if len(rows) == 1:
        [(key, record)] = rows.items()
        metadata = _check_metadata(record)
    else:
        # Counts only: per-draft states are on each partition's observations (linear storage).
        metadata = {
            "needs_action": len(failed),
            "waiting_for_ack": len(waiting),
            "acked": len(rows) - len(failed) - len(waiting) - len(missing),
            "not_exported": len(missing),
        }
    if failed:
        description = f"NEEDS ACTION: {len(failed)} export(s) FAILED: {', '.join(failed[:20])}"
    elif missing:
        description = f"{len(missing)} draft(s) not exported: {', '.join(missing[:20])}"
    elif waiting:
        description = f"{len(waiting)} export(s) waiting for the ERP's ack (not a failure)"
    else:
        description = "acknowledged by the ERP"
    return dg.AssetCheckResult(
        passed=passed, severity=severity, metadata=metadata, description=description
    )
