"""Draft orders as read from OrderFlow core's tables: plain records, validated for export.

``draft_from_values`` and ``line_from_values`` turn the raw column values of one row into these
records. They accept what each database delivers for the same column: PostgreSQL gives ``date``,
``datetime``, ``Decimal`` and ``dict`` objects; SQLite gives text (and ints or floats for numbers
in numeric columns), and stores anything in any column. A value that is not what the contract
says refuses the draft with a message naming the draft, the line, the field and the value;
decimals are taken exactly as written, never through a binary float.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from orderflow_exports.domain.errors import DraftRefused, InvalidIdentifier
from orderflow_exports.domain.naming import DraftRef

APPROVED = "APPROVED"


@dataclass(frozen=True)
class DraftOrder:
    """The header of one draft order, as stored in ``draft_order``."""

    id: str
    org_id: str
    status: str
    customer_po_number: str | None
    customer_erp_number: str
    customer_name: str
    order_date: date
    requested_delivery_date: date | None
    currency: str
    ship_to: Mapping[str, Any]
    notes: str | None
    approved_at: datetime | None
    updated_at: datetime
    line_count: int = field(default=0)

    @property
    def ref(self) -> DraftRef:
        return DraftRef(self.org_id, self.id)


@dataclass(frozen=True)
class DraftLine:
    """One line of a draft order, as stored in ``draft_order_line``."""

    line_no: int
    erp_item_number: str
    customer_item_number: str | None
    description: str
    quantity: Decimal
    uom: str
    unit_price: Decimal
    requested_delivery_date: date | None


def refusal_reason(ref: DraftRef, draft: DraftOrder | None) -> str | None:
    """Why ``draft`` cannot be exported, or None when it can (header-level checks)."""
    if draft is None:
        return f"draft {ref} does not exist"
    if draft.org_id != ref.org_id:
        return f"draft {draft.id} belongs to another org, not to {ref.org_id}"
    try:
        DraftRef(draft.org_id, draft.id)
    except InvalidIdentifier as exc:
        return str(exc)
    if draft.status != APPROVED:
        return f"draft {ref} is {draft.status}, only APPROVED drafts are exported"
    if draft.line_count < 1:
        return f"draft {ref} has no lines"
    return None


def ensure_exportable(ref: DraftRef, draft: DraftOrder | None) -> DraftOrder:
    """Return the draft if it may be exported, else raise :class:`DraftRefused` with the reason."""
    reason = refusal_reason(ref, draft)
    if reason is not None:
        raise DraftRefused(reason)
    assert draft is not None
    return draft


# --- parsing raw column values ------------------------------------------------------------------

SHIP_TO_KEYS = ("name", "street", "postal_code", "city", "country")
_DECIMAL_TEXT = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_TIMESTAMP_TEXT = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[ T][0-9]{2}:[0-9]{2}(?::[0-9]{2}(?:\.[0-9]{1,6})?)?"
    r"(?:Z|[+-][0-9]{2}:?[0-9]{2})?"
)
_is_decimal_text = _DECIMAL_TEXT.fullmatch
_DECIMAL_CHARS = "0123456789.+-eE"
_CURRENCY = re.compile(r"[A-Z]{3}")
_SHOWN_CHARS = 80


class _BadValue(Exception):
    """One field's value is not what the contract says (internal to the parsers)."""

    def __init__(self, field_name: str, value: Any, reason: str) -> None:
        if value is None:  # NULL where a value is required: there is nothing to quote
            super().__init__(f"{field_name} is missing")
        else:
            super().__init__(f"{field_name} {show_value(value)} {reason}")


def show_value(value: Any) -> str:
    """A value as an error message quotes it: text in quotes, numbers plain, long ones cut."""
    if isinstance(value, str | bytes):
        shown = repr(value)
    elif isinstance(value, Decimal | float | int | date):
        shown = str(value)
    else:
        shown = repr(value)
    return shown if len(shown) <= _SHOWN_CHARS else shown[: _SHOWN_CHARS - 3] + "..."


def _text(field_name: str, value: Any, *, required: bool) -> str | None:
    if type(value) is str:
        return value
    if value is None:
        if required:
            raise _BadValue(field_name, value, "is missing")
        return None
    raise _BadValue(field_name, value, f"is not text ({type(value).__name__})")


def _date(field_name: str, value: Any) -> date | None:
    if value is None:
        return None
    if type(value) is date:
        return value
    # fromisoformat alone would also take week dates and YYYYMMDD.
    if type(value) is str and len(value) == 10 and value[4] == "-" and value[7] == "-":
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass
    raise _BadValue(field_name, value, "is not a date (YYYY-MM-DD)")


def _timestamp(field_name: str, value: Any) -> datetime | None:
    """A UTC timestamp; one without a zone is UTC, as every writer of these tables stores it."""
    if value is None:
        return None
    if not isinstance(value, datetime):
        if type(value) is not str or not _TIMESTAMP_TEXT.fullmatch(value):
            raise _BadValue(field_name, value, "is not a timestamp (YYYY-MM-DD HH:MM:SS)")
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            raise _BadValue(field_name, value, "is not a timestamp (YYYY-MM-DD HH:MM:SS)") from None
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def _decimal(field_name: str, value: Any) -> Decimal:
    """``value`` as the exact decimal it was written as.

    Text must be a plain decimal number (an exponent is allowed, as SQLite writes REALs as text
    with one); a float is taken by its shortest repr, the digits it was written with.
    """
    kind = type(value)
    if kind is Decimal:
        if value.is_finite():
            return value
    elif kind is str:
        if _is_decimal_text(value):
            try:
                return Decimal(value)
            except InvalidOperation:
                pass
    elif kind is int:
        return Decimal(value)
    elif kind is float:
        if math.isfinite(value):
            return Decimal(repr(value))
    elif value is None:
        raise _BadValue(field_name, value, "is missing")
    raise _BadValue(field_name, value, "is not a finite decimal number")


def _ship_to(value: Any) -> dict[str, Any]:
    if isinstance(value, str | bytes):
        try:
            decoded = json.loads(value)
        except ValueError:
            raise _BadValue("ship_to", value, "is not JSON") from None
        except RecursionError:
            raise _BadValue("ship_to", value, "is nested too deeply to read") from None
        if not isinstance(decoded, dict):
            raise _BadValue("ship_to", value, "is not a JSON object")
        value = decoded
    elif not isinstance(value, Mapping):
        raise _BadValue("ship_to", value, "is not a JSON object")
    missing = [key for key in SHIP_TO_KEYS if key not in value]
    if missing:
        raise _BadValue("ship_to", dict(value), f"lacks {', '.join(missing)}")
    return dict(value)


def _currency(value: Any) -> str:
    if type(value) is str and _CURRENCY.fullmatch(value):
        return value
    raise _BadValue("currency", value, "is not a 3-letter ISO 4217 code (e.g. EUR)")


def _line_count(value: Any) -> int:
    if type(value) is int and value >= 0:
        return value
    raise _BadValue("line_count", value, "is not a count")


def draft_label(values: Mapping[str, Any]) -> str:
    """``draft <org_id>:<id>`` for messages about a row, whatever its ids hold."""
    return f"draft {values.get('org_id')}:{values.get('id')}"


def draft_from_values(values: Mapping[str, Any]) -> DraftOrder:
    """One ``draft_order`` row (plus ``line_count``) as a :class:`DraftOrder`.

    Raises :class:`DraftRefused` naming the draft and every field whose value is not what the
    contract says (e.g. "draft acme:D-1: order_date 'garbage' is not a date (YYYY-MM-DD)").
    """
    problems: list[str] = []
    parsed: dict[str, Any] = {}

    def take(name: str, parse: Callable[[], Any]) -> None:
        try:
            parsed[name] = parse()
        except _BadValue as exc:
            problems.append(str(exc))

    def get(name: str, *, required: bool) -> Any:
        value = values.get(name)
        if value is None and required:
            raise _BadValue(name, value, "is missing")
        return value

    for name in ("id", "org_id", "status", "customer_erp_number", "customer_name"):
        take(name, lambda n=name: _text(n, values.get(n), required=True))  # type: ignore[misc]
    for name in ("customer_po_number", "notes"):
        take(name, lambda n=name: _text(n, values.get(n), required=False))  # type: ignore[misc]
    take("order_date", lambda: _date("order_date", get("order_date", required=True)))
    take(
        "requested_delivery_date",
        lambda: _date("requested_delivery_date", values.get("requested_delivery_date")),
    )
    take("currency", lambda: _currency(values.get("currency")))
    take("ship_to", lambda: _ship_to(get("ship_to", required=True)))
    take("approved_at", lambda: _timestamp("approved_at", values.get("approved_at")))
    take("updated_at", lambda: _timestamp("updated_at", get("updated_at", required=True)))
    take("line_count", lambda: _line_count(values.get("line_count", 0)))
    if problems:
        raise DraftRefused(f"{draft_label(values)}: {'; '.join(problems)}")
    return DraftOrder(**parsed)


# The order of the values ``line_from_values`` takes: DraftLine's fields.
LINE_FIELDS = (
    "line_no",
    "erp_item_number",
    "customer_item_number",
    "description",
    "quantity",
    "uom",
    "unit_price",
    "requested_delivery_date",
)


def line_from_values(values: Sequence[Any], draft: str) -> DraftLine:
    """One ``draft_order_line`` row, its values in ``LINE_FIELDS`` order, as a DraftLine.

    ``draft`` is ``org_id:id``, for the message: raises :class:`DraftRefused` naming the draft,
    the line, the field and the value (e.g. "draft acme:D-1: line 3: quantity 'abc' is not a
    finite decimal number").
    """
    (
        line_no,
        erp_item_number,
        customer_item_number,
        description,
        quantity,
        uom,
        unit_price,
        requested_delivery_date,
    ) = values
    try:
        try:
            if type(line_no) is not int or line_no < 1:
                raise _BadValue("line_no", line_no, "is not a positive integer")
            # This runs once per line (300k times for 100 MB): the usual types are checked inline,
            # and the checks that name the field run only when a value is not of them.
            if not (
                type(erp_item_number) is str
                and type(description) is str
                and type(uom) is str
                and (customer_item_number is None or type(customer_item_number) is str)
            ):
                _text("erp_item_number", erp_item_number, required=True)
                _text("customer_item_number", customer_item_number, required=False)
                _text("description", description, required=True)
                _text("uom", uom, required=True)
            # Text holding only these characters is either a plain decimal or something Decimal()
            # refuses (InvalidOperation, explained below); no spaces, "_", NaN or Infinity get past.
            if type(quantity) is str and not quantity.strip(_DECIMAL_CHARS):
                quantity = Decimal(quantity)
            elif type(quantity) is not Decimal or not quantity.is_finite():
                quantity = _decimal("quantity", quantity)
            if type(unit_price) is str and not unit_price.strip(_DECIMAL_CHARS):
                unit_price = Decimal(unit_price)
            elif type(unit_price) is not Decimal or not unit_price.is_finite():
                unit_price = _decimal("unit_price", unit_price)
            if requested_delivery_date is not None and type(requested_delivery_date) is not date:
                requested_delivery_date = _date("requested_delivery_date", requested_delivery_date)
            return DraftLine(
                line_no,
                erp_item_number,
                customer_item_number,
                description,
                quantity,
                uom,
                unit_price,
                requested_delivery_date,
            )
        except InvalidOperation:
            # Decimal() refused a text: the checking parser says which field and why.
            _decimal("quantity", quantity)
            _decimal("unit_price", unit_price)
            raise _BadValue("quantity", quantity, "or unit_price is not a decimal number") from None
    except _BadValue as exc:
        where = f"line {line_no}" if type(line_no) is int and line_no >= 1 else "a line"
        raise DraftRefused(f"draft {draft}: {where}: {exc}") from None
