"""ERP ack files and the status decisions they lead to.

Pure domain: the parser turns the bytes of one ack file into an :class:`Ack` or raises
:class:`AckRejected` with a reason a person can act on; :func:`decide` turns an ack, the export row
it names and the org whose ``ack_path`` it was found in into one :data:`AckDecision`. Nothing here
touches a database or a dropzone; ``application.acks`` carries the decisions out.

Decisions taken here (and why):

- A UTF-8 byte order mark is *accepted* and skipped. RFC 8259 §8.1 lets parsers ignore it,
  Windows ERPs (.NET ``Encoding.UTF8``, PowerShell 5) write it by default, and it carries no
  meaning. Refusing it would park an ack the ERP meant, so the export would later time out as
  FAILED while the ERP holds the order, inviting a duplicate. UTF-16/UTF-32 (with or without BOM)
  are refused: JSON exchanged between systems is UTF-8 (RFC 8259 §8.1).
- Unknown fields are refused (``extra="forbid"``) except ``org_id``, which the contract allows;
  an ERP that changes its format should be noticed in ``error/``, not half understood.
- ``export_id``, ``status`` and ``received_at`` are required; ``erp_order_number``, ``message`` and
  ``errors`` may be absent, meaning null / empty (an absent null loses nothing).
- Duplicate keys are refused: ``{"status": "ACKED", "status": "FAILED"}`` has no single meaning.
- ``acked_at`` is the time *we* applied the ack, not the ERP's ``received_at``: our own clock keeps
  ``sent_at <= acked_at``; the ERP's time is reported alongside.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
)

from orderflow_exports.domain.errors import ErrorCode, OrderflowError
from orderflow_exports.domain.naming import ID_PATTERN
from orderflow_exports.domain.records import ExportRecord
from orderflow_exports.domain.status import ExportStatus

ACK_STATUSES = ("ACKED", "FAILED")
DEFAULT_MAX_ACK_BYTES = 1024 * 1024
# error_code values this module writes.
ERP_REJECTED = ErrorCode.ERP_REJECTED
ACK_TIMEOUT = ErrorCode.ACK_TIMEOUT
# error_message is free text, but a rejection of a 300k-line order may list every line: keep what a
# person reads in the UI, the full file stays in processed/.
MAX_ERROR_MESSAGE_CHARS = 4000
MAX_ERRORS_IN_MESSAGE = 20
# Statuses an ack may move a row from (an ack may overtake the SENT update).
ACKABLE = (ExportStatus.PENDING, ExportStatus.SENT)

_UTF8_BOM = b"\xef\xbb\xbf"
_UTF16_32_BOMS = (b"\xff\xfe", b"\xfe\xff", b"\x00\x00\xfe\xff")
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_RFC3339 = re.compile(
    r"(?P<date>[0-9]{4}-[0-9]{2}-[0-9]{2})[Tt](?P<time>[0-9]{2}:[0-9]{2}:[0-9]{2})"
    r"(?:\.(?P<frac>[0-9]+))?(?P<tz>[Zz]|[+-][0-9]{2}:[0-9]{2})"
)
# C0 controls except tab and newline, DEL, and lone surrogates: PostgreSQL text refuses NUL and
# UTF-8 cannot encode a surrogate, so an ERP message must not carry them into a row or a file.
_UNSAFE_TEXT = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\ud800-\udfff]")


class AckRejected(OrderflowError):
    """An ack file that cannot be applied; ``reason`` says why, in words for the error file."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _export_id(value: object) -> object:
    # Canonical 8-4-4-4-12 form only (no braces, no urn:); any case, stored lower case like ours.
    if isinstance(value, str):
        if not _UUID.fullmatch(value):
            raise ValueError(f"{_short(value)} is not a UUID (expected 8-4-4-4-12 hex digits)")
        return str(uuid.UUID(value))
    return value


def _status(value: object) -> object:
    if isinstance(value, str) and value not in ACK_STATUSES:
        raise ValueError(f"unknown status {_short(value)}, expected 'ACKED' or 'FAILED'")
    return value


def _received_at(value: object) -> object:
    if not isinstance(value, str):
        return value  # strict datetime validation reports the wrong type
    match = _RFC3339.fullmatch(value)
    if match is None:
        raise ValueError(
            f"{_short(value)} is not an RFC 3339 timestamp with a time zone "
            "(e.g. 2026-11-26T10:00:00Z)"
        )
    frac = (match["frac"] or "")[:6].ljust(6, "0")  # datetime holds microseconds
    tz = "+00:00" if match["tz"] in ("Z", "z") else match["tz"]
    try:
        moment = datetime.fromisoformat(f"{match['date']}T{match['time']}.{frac}{tz}")
    except ValueError as exc:
        raise ValueError(f"{_short(value)} is not a valid date and time: {exc}") from None
    return moment.astimezone(UTC)


ExportId = Annotated[str, BeforeValidator(_export_id)]
AckStatus = Annotated[Literal["ACKED", "FAILED"], BeforeValidator(_status)]
ReceivedAt = Annotated[datetime, BeforeValidator(_received_at)]
OrgId = Annotated[str, StringConstraints(pattern=f"^{ID_PATTERN.pattern}$")]
ErpOrderNumber = Annotated[
    str, StringConstraints(min_length=1, max_length=128, pattern=r"^[^\x00-\x1f\x7f]+$")
]


class AckLineError(BaseModel):
    """One problem the ERP found, optionally tied to an order line."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    code: str
    message: str
    line_no: int | None = Field(default=None, ge=1)


class Ack(BaseModel):
    """One parsed ack file; only :func:`parse_ack` should build these from files."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    export_id: ExportId
    status: AckStatus
    erp_order_number: ErpOrderNumber | None = None
    message: str | None = None
    # JSON arrays arrive as lists; strict mode would refuse them for a tuple (immutable here).
    errors: tuple[AckLineError, ...] = Field(default=(), strict=False)
    received_at: ReceivedAt
    org_id: OrgId | None = None


def parse_ack(data: bytes, *, max_bytes: int = DEFAULT_MAX_ACK_BYTES) -> Ack:
    """Parse and validate the bytes of one ack file; raises :class:`AckRejected` and nothing else.

    ``max_bytes`` is checked here too, so a caller that read more than it meant still gets the
    same answer.
    """
    if len(data) > max_bytes:
        raise AckRejected(f"ack file is too large: {len(data)} bytes, at most {max_bytes} allowed")
    if data.startswith(_UTF16_32_BOMS) or (len(data) >= 2 and (data[0] == 0 or data[1] == 0)):
        raise AckRejected("ack file is not UTF-8 (looks like UTF-16 or UTF-32); JSON must be UTF-8")
    if data.startswith(_UTF8_BOM):
        data = data[len(_UTF8_BOM) :]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise AckRejected(
            f"ack file is not valid UTF-8: byte {exc.start} ({data[exc.start : exc.start + 1]!r})"
        ) from None
    if not text.strip():
        raise AckRejected("ack file is empty")
    try:
        raw = json.loads(text, object_pairs_hook=_no_duplicate_keys, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise AckRejected(
            f"ack file is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    except _DuplicateKey as exc:
        raise AckRejected(f"ack file has the key {exc.key} more than once") from None
    except (ValueError, RecursionError) as exc:
        # NaN/Infinity, integers over Python's digit limit, absurd nesting.
        detail = str(exc) if len(str(exc)) <= 120 else str(exc)[:117] + "..."
        raise AckRejected(f"ack file is not acceptable JSON: {detail}") from None
    if not isinstance(raw, dict):
        raise AckRejected(f"ack file must hold one JSON object, not {_json_type(raw)}")
    try:
        return Ack.model_validate(raw)
    except ValidationError as exc:
        raise AckRejected(_describe(exc)) from None


class _DuplicateKey(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _DuplicateKey(_short(key, 60))
        result[key] = value
    return result


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _describe(exc: ValidationError) -> str:
    problems = []
    for error in exc.errors(include_url=False):
        field = ".".join(str(part) for part in error["loc"]) or "ack"
        kind = error["type"]
        if kind == "missing":
            problems.append(f"{field} is missing")
        elif kind == "extra_forbidden":
            problems.append(f"{field} is not an ack field")
        elif kind in ("tuple_type", "list_type"):
            problems.append(f"{field} must be an array (got {_json_type(error.get('input'))})")
        elif kind == "model_type":
            problems.append(f"{field} must be an object (got {_json_type(error.get('input'))})")
        elif kind == "value_error":
            # Our own validators: their message already names the value.
            problems.append(f"{field}: {str(error['msg']).removeprefix('Value error, ')}")
        else:
            got = _json_type(error.get("input"))
            problems.append(f"{field}: {error['msg']} (got {got})")
    count = len(problems)
    shown = "; ".join(problems[:10]) + (f"; and {count - 10} more" if count > 10 else "")
    return f"ack is invalid ({count} problem{'s' if count != 1 else ''}): {shown}"


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return f"the string {_short(value)}"
    if isinstance(value, list | tuple):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _short(value: str, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def safe_text(value: str) -> str:
    """``value`` without characters a database row or a UTF-8 file cannot hold (NUL, surrogates)."""
    return _UNSAFE_TEXT.sub("\ufffd", value)


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


# --- ack folders: names, notes, settling -------------------------------------------------------

ACK_NAME_SUFFIX = ".json"
#: What a note beside a refused ack (readable by the ERP) may quote of anything we did not write.
MAX_NOTE_EXCERPT_CHARS = 200
#: Default settle time: an ack that does not parse is judged only once it is this old (or was
#: unchanged across two passes), so a file still being written is never parked in error/.
DEFAULT_SETTLE_SECONDS = 120.0


def is_ack_name(name: str) -> bool:
    """An ack name: ``*.json`` in any letter case, neither a dot-file nor ``*.tmp``."""
    lower = name.lower()
    return (
        not name.startswith(".")
        and not lower.endswith(".tmp")
        and lower.endswith(ACK_NAME_SUFFIX)
        and len(name) > len(ACK_NAME_SUFFIX)
    )


def is_quietly_ignored(name: str) -> bool:
    """Dot-files and ``*.tmp``: files an ERP is still writing; skipped without a word."""
    return name.startswith(".") or name.lower().endswith(".tmp")


def excerpt(text: str, limit: int = MAX_NOTE_EXCERPT_CHARS) -> str:
    """``text`` as printable ASCII of at most ``limit`` characters, everything else escaped.

    For names and reasons that may carry bytes an ERP (or someone on its server) chose: a note
    or a log line must never carry control characters, terminal escapes or more than a glimpse.
    """
    escaped = "".join(
        ch if " " <= ch <= "~" and ch != "\\" else ch.encode("unicode_escape").decode("ascii")
        for ch in text
    )
    if len(escaped) <= limit:
        return escaped
    return escaped[: max(limit - 3, 0)] + "..."


def is_settled(
    size: int | None,
    mtime: float | None,
    *,
    now: float,
    settle_seconds: float,
    previous_look: tuple[int | None, float | None] | None,
) -> bool:
    """Whether a file that does not parse is finished, so refusing it is fair.

    Settled when settling is off, when its modification time is ``settle_seconds`` old by our
    clock, or when an earlier pass saw the very same size and modification time. A file whose
    server clock runs ahead of ours still settles by the second rule.
    """
    if settle_seconds <= 0:
        return True
    if mtime is not None and now - mtime >= settle_seconds:
        return True
    return previous_look is not None and previous_look == (size, mtime)
