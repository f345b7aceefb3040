"""The ack deadline (error_code ACK_TIMEOUT): SENT exports left unanswered too long become FAILED.

Run only after an org's ack folder was read and every waiting ack in it handled: an ack still in
the folder may be the answer to an export that looks overdue.
"""

from __future__ import annotations

from datetime import datetime

from orderflow_exports.application.acks.results import AckTimeout
from orderflow_exports.domain.ack_decisions import (
    ACK_TIMEOUT,
    ack_deadline_cutoff,
    ack_timeout_message,
)
from orderflow_exports.domain.ports import ExportLedger, Logger
from orderflow_exports.domain.records import ConnectorConfig
from orderflow_exports.domain.status import ExportStatus


def expire_overdue(
    ledger: ExportLedger, config: ConnectorConfig, *, now: datetime, limit: int, log: Logger
) -> list[AckTimeout]:
    """SENT exports of the org older than its ack deadline become FAILED (ACK_TIMEOUT).

    At most ``limit`` per call; the rest are expired by the next passes.
    """
    cutoff = ack_deadline_cutoff(now, config.ack_deadline_seconds)
    expired = []
    overdue = ledger.sent_before(config.org_id, cutoff, limit)
    for record in overdue:
        message = ack_timeout_message(record, config.ack_deadline_seconds)
        # Compare-and-set on SENT: an ack applied meanwhile wins and this changes nothing.
        if ledger.mark_failed(
            record.id, expected=ExportStatus.SENT, code=ACK_TIMEOUT, message=message, at=now
        ):
            log.warning("export %s of %s: %s", record.id, record.ref.partition_key, message)
            expired.append(
                AckTimeout(config.org_id, record.id, record.draft_order_id, record.sent_at, message)
            )
    return expired
