"""What an ack does to its export row, and the ack deadline.

Pure domain: :func:`decide` turns a parsed :class:`~orderflow_exports.domain.ack_files.Ack`, the
export row it names and the org whose ``ack_path`` it was found in into one
:data:`AckDecision`; the deadline functions say when a SENT export has waited too long. Nothing
here touches a database or a dropzone; ``application.acks`` carries the decisions out.

``acked_at`` is the time *we* applied the ack, not the ERP's ``received_at``: our own clock keeps
``sent_at <= acked_at``; the ERP's time is reported alongside.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from orderflow_exports.domain.ack_files import Ack, safe_text
from orderflow_exports.domain.errors import ErrorCode
from orderflow_exports.domain.records import ExportRecord
from orderflow_exports.domain.status import ExportStatus

# error_code values this module writes.
ERP_REJECTED = ErrorCode.ERP_REJECTED
ACK_TIMEOUT = ErrorCode.ACK_TIMEOUT
# error_message is free text, but a rejection of a 300k-line order may list every line: keep what a
# person reads in the UI, the full file stays in processed/.
MAX_ERROR_MESSAGE_CHARS = 4000
MAX_ERRORS_IN_MESSAGE = 20
# Statuses an ack may move a row from (an ack may overtake the SENT update).
ACKABLE = (ExportStatus.PENDING, ExportStatus.SENT)


def rejection_summary(ack: Ack) -> str:
    """The ERP's message and errors as one ``error_message``; deterministic, so a replay matches."""
    parts = [f"ERP rejected the order: {ack.message}" if ack.message else "ERP rejected the order"]
    for error in ack.errors[:MAX_ERRORS_IN_MESSAGE]:
        where = f" (line {error.line_no})" if error.line_no is not None else ""
        parts.append(f"[{error.code}]{where} {error.message}")
    if len(ack.errors) > MAX_ERRORS_IN_MESSAGE:
        parts.append(f"... and {len(ack.errors) - MAX_ERRORS_IN_MESSAGE} more errors")
    text = safe_text("\n".join(parts))
    if len(text) > MAX_ERROR_MESSAGE_CHARS:
        text = text[: MAX_ERROR_MESSAGE_CHARS - 15] + " ...(truncated)"
    return text


# --- decisions ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ApplyAck:
    """Change the row: compare-and-set from ``expected`` to ``new_status``."""

    export_id: str
    new_status: ExportStatus
    expected: tuple[ExportStatus, ...]
    erp_order_number: str | None = None
    error_code: str | None = None
    error_message: str | None = None

    @property
    def reason(self) -> str:
        if self.new_status is ExportStatus.ACKED:
            return f"ERP acknowledged export {self.export_id} as {self.erp_order_number or '-'}"
        return f"ERP rejected export {self.export_id}"


@dataclass(frozen=True)
class AlreadyApplied:
    """The row already says what the ack says (a replay or a duplicate): change nothing."""

    export_id: str
    status: ExportStatus
    reason: str


@dataclass(frozen=True)
class RejectAck:
    """The ack cannot be applied: the file goes to ``error/`` with ``reason`` beside it.

    ``code`` is a stable word for metrics and tests; ``reason`` never names another org's data,
    because the error file is readable by the ERP of the folder's org.
    """

    code: str
    reason: str
    export_id: str | None = None
    log_detail: str | None = None  # for operators' logs only, never written beside the file

    UNKNOWN_EXPORT = "UNKNOWN_EXPORT"
    OTHER_ORG = "OTHER_ORG"
    ORG_MISMATCH = "ORG_MISMATCH"
    CONFLICT = "CONFLICT"
    MALFORMED = "MALFORMED"


AckDecision = ApplyAck | AlreadyApplied | RejectAck


def decide(record: ExportRecord | None, ack: Ack, folder_org_id: str) -> AckDecision:
    """What to do with ``ack``, found in ``folder_org_id``'s ack folder, given its export row.

    ``record`` is the current row of ``ack.export_id`` (None when there is none). The caller
    carries an :class:`ApplyAck` out as a compare-and-set and, when that misses, reads the row
    again and asks again: the second answer is then a replay or a conflict.
    """
    export_id = ack.export_id
    if ack.org_id is not None and ack.org_id != folder_org_id:
        return RejectAck(
            RejectAck.ORG_MISMATCH,
            f"ack names org_id {ack.org_id!r} but was found in the ack folder of org "
            f"{folder_org_id!r}",
            export_id,
        )
    unknown = f"unknown export {export_id}: org {folder_org_id!r} has no such export"
    if record is None:
        return RejectAck(RejectAck.UNKNOWN_EXPORT, unknown, export_id)
    if record.org_id != folder_org_id:
        # The same words as an unknown export on purpose: the error file is readable by org A's
        # ERP, which must not learn that the id exists elsewhere. Operators get the owner in logs.
        return RejectAck(
            RejectAck.OTHER_ORG,
            unknown,
            export_id,
            log_detail=f"export {export_id} belongs to org {record.org_id!r}",
        )
    wanted = _target(ack)
    if record.status in ACKABLE:
        return wanted
    return _against_terminal(record, ack, wanted)


def _target(ack: Ack) -> ApplyAck:
    if ack.status == "ACKED":
        return ApplyAck(
            ack.export_id,
            ExportStatus.ACKED,
            ACKABLE,
            erp_order_number=ack.erp_order_number,
        )
    return ApplyAck(
        ack.export_id,
        ExportStatus.FAILED,
        ACKABLE,
        error_code=ERP_REJECTED,
        error_message=rejection_summary(ack),
    )


def _against_terminal(record: ExportRecord, ack: Ack, wanted: ApplyAck) -> AckDecision:
    export_id = record.id
    if record.status is ExportStatus.ACKED:
        if ack.status == "ACKED" and record.erp_order_number == ack.erp_order_number:
            return AlreadyApplied(
                export_id, record.status, f"export {export_id} is already ACKED; nothing to change"
            )
        if ack.status == "ACKED":
            detail = (
                f"ERP order number {ack.erp_order_number!r} differs from the recorded "
                f"{record.erp_order_number!r}"
            )
        else:
            detail = "the ack says FAILED"
        return RejectAck(
            RejectAck.CONFLICT,
            f"export {export_id} is already ACKED, this second ack contradicts it: {detail}",
            export_id,
        )
    # FAILED: terminal whatever the reason; only the same ERP rejection is a replay.
    if ack.status == "FAILED":
        if record.error_code == ERP_REJECTED and record.error_message == wanted.error_message:
            return AlreadyApplied(
                export_id, record.status, f"export {export_id} is already FAILED by this rejection"
            )
        if record.error_code == ERP_REJECTED:
            return RejectAck(
                RejectAck.CONFLICT,
                f"export {export_id} was already rejected by the ERP with other errors; "
                "this second rejection is not applied",
                export_id,
            )
        # We gave up first (ACK_TIMEOUT, transport error, superseded); the ERP agrees it failed.
        return AlreadyApplied(
            export_id,
            record.status,
            f"export {export_id} is already FAILED ({record.error_code}); the ERP's rejection "
            "agrees, nothing to change",
        )
    # ACKED after we marked it FAILED: the ERP may hold an order we think failed. Terminal states
    # do not move (ACKED and FAILED are final), so a person must look: error/ and a loud log line.
    return RejectAck(
        RejectAck.CONFLICT,
        f"export {export_id} is already FAILED ({record.error_code}) but the ERP acknowledged it "
        f"as order {ack.erp_order_number or '-'}: check the ERP for a duplicate before "
        "exporting this draft again",
        export_id,
    )


# --- the ack deadline --------------------------------------------------------------------------


def ack_deadline_cutoff(now: datetime, deadline_seconds: int) -> datetime:
    """SENT exports whose ``sent_at`` is before this moment have waited too long for an ack."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    if deadline_seconds <= 0:
        raise ValueError("deadline_seconds must be positive")
    return now.astimezone(UTC) - timedelta(seconds=deadline_seconds)


def is_ack_overdue(record: ExportRecord, now: datetime, deadline_seconds: int) -> bool:
    """True when ``record`` is SENT and its ack deadline has passed (→ FAILED ACK_TIMEOUT)."""
    if record.status is not ExportStatus.SENT or record.sent_at is None:
        return False
    return record.sent_at < ack_deadline_cutoff(now, deadline_seconds)


def ack_timeout_message(record: ExportRecord, deadline_seconds: int) -> str:
    """The ``error_message`` of an ACK_TIMEOUT."""
    sent = record.sent_at.isoformat() if record.sent_at else "unknown"
    return f"no ack from the ERP within {_duration(deadline_seconds)} of sending (sent at {sent})"


def _duration(seconds: int) -> str:
    if seconds % 3600 == 0:
        return f"{seconds // 3600} h"
    if seconds % 60 == 0:
        return f"{seconds // 60} min"
    return f"{seconds} s"
