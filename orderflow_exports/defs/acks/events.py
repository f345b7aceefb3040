"""Ack pass results as Dagster asset events on ``export_json`` and its ``erp_ack`` check.

Each applied (or replayed) ack and each ack timeout becomes an ``AssetObservation`` and an
``erp_ack`` ``AssetCheckEvaluation`` on the export's ``export_json`` partition, so the UI shows
per draft whether the ERP took the order. A rejected ack becomes an observation (on the draft's
partition when it names one of the org's exports, else on the asset), and an org's ack folder
becoming unreadable (or readable again) an observation on the asset, once per change.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import Enum
from typing import Any

import dagster as dg

from orderflow_exports.adapters.dagster_instance import RunlessEvent
from orderflow_exports.application.acks.memory import AckPassMemory, problem_digest
from orderflow_exports.application.acks.report import ACK_STATE_NEEDS_ACTION, ack_state
from orderflow_exports.application.acks.results import AckOutcome, AckPassSummary, AckTimeout
from orderflow_exports.domain.ack_decisions import ACK_TIMEOUT
from orderflow_exports.domain.status import ExportStatus

EXPORT_JSON = dg.AssetKey("export_json")
ERP_ACK_CHECK = "erp_ack"

AckEvent = RunlessEvent


def clean_metadata(metadata: dict[str, Any]) -> dict[str, Any]:
    """The metadata without its None values (Dagster metadata has no null), error codes as
    plain text (Dagster serializes only the enums it knows)."""
    return {k: v.value if isinstance(v, Enum) else v for k, v in metadata.items() if v is not None}


# What the draft's partition says about its latest export. Waiting is not a failure; the two
# states that need a person carry the next step.
NEXT_STEP = (
    "re-send: Materialize this partition of export_json (no force needed for a FAILED latest "
    "export); for ACK_TIMEOUT first look for the export id in the ERP's inbox"
)


def state_metadata(status: ExportStatus | None) -> dict[str, Any]:
    """The ``ack_state`` (and, when a person must act, ``next_step``) metadata entries."""
    state = ack_state(status)
    return {"ack_state": state, "next_step": NEXT_STEP if state == ACK_STATE_NEEDS_ACTION else None}


def _outcome_metadata(outcome: AckOutcome) -> dict[str, Any]:
    return clean_metadata(
        {
            **(state_metadata(outcome.status) if outcome.kind != "rejected" else {}),
            "ack_outcome": outcome.kind,
            "export_id": outcome.export_id,
            "status": str(outcome.status) if outcome.status else None,
            "erp_order_number": outcome.erp_order_number,
            "error_code": outcome.error_code,
            "error_message": outcome.error_message,
            "ack_file": outcome.file_name,
            "moved_to": outcome.moved_to,
            "erp_received_at": outcome.received_at.isoformat() if outcome.received_at else None,
            "reject_reason": outcome.reason if outcome.kind == "rejected" else None,
        }
    )


def _outcome_events(outcome: AckOutcome) -> list[AckEvent]:
    partition = outcome.partition_key
    if partition is None:
        if outcome.kind != "rejected":
            return []
        # Malformed, unknown or another org's export: no partition of this org to report on, so
        # the asset itself carries it, where the UI and `instance.fetch_observations` show it.
        return [
            dg.AssetObservation(
                asset_key=EXPORT_JSON,
                description=f"org {outcome.org_id}: ack {outcome.file_name} moved to error/: "
                f"{outcome.reason}",
                metadata=clean_metadata(
                    {
                        "org_id": outcome.org_id,
                        "ack_outcome": "rejected",
                        "reject_code": outcome.reject_code,
                        "reject_reason": outcome.reason,
                        "ack_file": outcome.file_name,
                        "moved_to": outcome.moved_to,
                    }
                ),
            )
        ]
    metadata = _outcome_metadata(outcome)
    if outcome.kind == "rejected":
        # A contradicting ack changes nothing; the observation makes it visible on the draft.
        description = f"ERP ack {outcome.file_name} not applied: {outcome.reason}"
        return [
            dg.AssetObservation(
                asset_key=EXPORT_JSON,
                description=description,
                metadata=metadata,
                partition=partition,
            )
        ]
    if outcome.kind not in ("applied", "replayed"):
        return []
    acked = outcome.status is ExportStatus.ACKED
    description = (
        f"ERP acknowledged export {outcome.export_id} as {outcome.erp_order_number or '-'}"
        if acked
        else f"NEEDS ACTION: ERP rejected export {outcome.export_id}: {outcome.error_message or ''}"
    )
    return [
        dg.AssetObservation(
            asset_key=EXPORT_JSON, description=description, metadata=metadata, partition=partition
        ),
        dg.AssetCheckEvaluation(
            asset_key=EXPORT_JSON,
            check_name=ERP_ACK_CHECK,
            passed=acked,
            metadata=metadata,
            severity=dg.AssetCheckSeverity.ERROR,
            description=description,
            partition=partition,
        ),
    ]


def _timeout_events(timeout: AckTimeout) -> list[AckEvent]:
    metadata = clean_metadata(
        {
            **state_metadata(ExportStatus.FAILED),
            "ack_outcome": "timeout",
            "export_id": timeout.export_id,
            "status": str(ExportStatus.FAILED),
            "error_code": ACK_TIMEOUT,
            "error_message": timeout.message,
            "sent_at": timeout.sent_at.isoformat() if timeout.sent_at else None,
        }
    )
    description = f"NEEDS ACTION: export {timeout.export_id}: {timeout.message}"
    return [
        dg.AssetObservation(
            asset_key=EXPORT_JSON,
            description=description,
            metadata=metadata,
            partition=timeout.partition_key,
        ),
        dg.AssetCheckEvaluation(
            asset_key=EXPORT_JSON,
            check_name=ERP_ACK_CHECK,
            passed=False,
            metadata=metadata,
            severity=dg.AssetCheckSeverity.ERROR,
            description=description,
            partition=timeout.partition_key,
        ),
    ]


def _org_problem_events(summary: AckPassSummary, previous: str | None) -> list[AckEvent]:
    """An observation when an org's ack folder stops (or starts again) being processed.

    Once per change, not on every tick: the tick's log carries the error each time.
    """
    current = problem_digest(summary)
    if summary.not_reached or current == previous:
        return []
    if current is None:
        description = f"org {summary.org_id}: ack folder readable again"
        metadata: dict[str, Any] = {"org_id": summary.org_id, "ack_outcome": "folder_ok"}
    else:
        description = f"org {summary.org_id}: ack folder not processed: {summary.failure}"
        metadata = {
            "org_id": summary.org_id,
            "ack_outcome": "folder_error",
            "error_code": str(summary.failure_code or ""),
            "error_message": summary.failure or "",
            "ack_deadline_applied": False,
        }
    return [dg.AssetObservation(asset_key=EXPORT_JSON, description=description, metadata=metadata)]


def ack_events(
    summaries: Iterable[AckPassSummary], memory: AckPassMemory | None = None
) -> list[AckEvent]:
    """The asset events of a pass, in the order things happened.

    With ``memory`` (the previous pass's), org-level problems are reported when they change.
    """
    events: list[AckEvent] = []
    for summary in summaries:
        if memory is not None:
            events.extend(_org_problem_events(summary, memory.for_org(summary.org_id).problem))
        for outcome in summary.outcomes:
            events.extend(_outcome_events(outcome))
        for timeout in summary.timeouts:
            events.extend(_timeout_events(timeout))
    return events
