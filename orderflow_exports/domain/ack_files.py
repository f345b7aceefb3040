"""ERP ack files: parsing one file into an :class:`Ack`, and the rules of an ack folder.

Pure domain: :func:`parse_ack` turns the bytes of one ack file into an :class:`Ack` or raises
:class:`AckRejected` with a reason a person can act on; the folder rules say which names are acks,
when a file that does not parse has settled, and how much of what the ERP wrote a note or a log
line may quote. :mod:`orderflow_exports.domain.ack_decisions` decides what an ack does to its row.

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
"""

from __future__ import annotations

import json
import re
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
)

from orderflow_exports.domain.errors import OrderflowError
from orderflow_exports.domain.naming import ID_PATTERN

ACK_STATUSES = ("ACKED", "FAILED")
DEFAULT_MAX_ACK_BYTES = 1024 * 1024

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
