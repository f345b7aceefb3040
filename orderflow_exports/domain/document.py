"""The ``orderflow_export_json_v1`` document and its streaming writer.

The Pydantic models define the document and its published JSON Schema. The writer produces the
exact bytes of a document line by line, so a 300k-line export never lives in memory as a whole:
the header and every line are validated models, serialised in contract key order.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_UP, Context, Decimal, Inexact, InvalidOperation
from typing import Annotated, BinaryIO, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from orderflow_exports.domain.drafts import DraftLine, DraftOrder, show_value
from orderflow_exports.domain.errors import DraftRefused
from orderflow_exports.domain.naming import ID_PATTERN

SCHEMA_VERSION = "orderflow_export_json_v1"
CONNECTOR_TYPE = "DROPZONE_JSON_V1"

_DECIMAL_CONTEXT = Context(prec=60, rounding=ROUND_HALF_UP)
_SCALE_4 = Decimal("0.0001")
_SCALE_2 = Decimal("0.01")

Quantity4 = Annotated[str, StringConstraints(pattern=r"^(0|[1-9][0-9]*)\.[0-9]{4}$")]
Money2 = Annotated[str, StringConstraints(pattern=r"^(0|[1-9][0-9]*)\.[0-9]{2}$")]
IsoDate = Annotated[str, StringConstraints(pattern=r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")]
UtcTimestamp = Annotated[
    str, StringConstraints(pattern=r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z$")
]
Identifier = Annotated[str, StringConstraints(pattern=f"^{ID_PATTERN.pattern}$")]
CurrencyCode = Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]
CountryCode = Annotated[str, StringConstraints(pattern=r"^[A-Z]{2}$")]
Uuid = Annotated[
    str,
    StringConstraints(pattern=r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"),
]
NonEmpty = Annotated[str, StringConstraints(min_length=1)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class ExportInfo(_Strict):
    """Which export attempt produced this document."""

    export_id: Uuid
    attempt: int = Field(ge=1)
    created_at: UtcTimestamp
    connector: Literal["DROPZONE_JSON_V1"] = "DROPZONE_JSON_V1"


class Customer(_Strict):
    """The ordering customer as the ERP knows it."""

    erp_customer_number: NonEmpty
    name: NonEmpty


class ShipTo(_Strict):
    """Delivery address."""

    name: NonEmpty
    street: NonEmpty
    postal_code: NonEmpty
    city: NonEmpty
    country: CountryCode


class OrderInfo(_Strict):
    """The order header."""

    draft_order_id: Identifier
    customer_po_number: str | None
    customer: Customer
    order_date: IsoDate
    requested_delivery_date: IsoDate | None
    currency: CurrencyCode
    ship_to: ShipTo
    notes: str | None
    approved_at: UtcTimestamp | None


class ExportLine(_Strict):
    """One order line; decimals are strings in plain notation."""

    line_no: int = Field(ge=1)
    erp_item_number: NonEmpty
    customer_item_number: str | None
    description: NonEmpty
    quantity: Quantity4
    uom: NonEmpty
    unit_price: Quantity4
    line_total: Money2
    requested_delivery_date: IsoDate | None


class Totals(_Strict):
    """Sums over the lines."""

    line_count: int = Field(ge=1)
    net_amount: Money2
    currency: CurrencyCode


class ExportDocument(_Strict):
    """The whole ``orderflow_export_json_v1`` document."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        strict=True,
        title="orderflow_export_json_v1",
        json_schema_extra={
            "$id": "https://orderflow.example/schemas/orderflow_export_json_v1.json"
        },
    )

    schema_version: Literal["orderflow_export_json_v1"] = "orderflow_export_json_v1"
    export: ExportInfo
    org_id: Identifier
    order: OrderInfo
    lines: list[ExportLine] = Field(min_length=1)
    totals: Totals


def json_schema_text() -> str:
    """The published JSON Schema of the document, as checked into ``schemas/``."""
    schema = ExportDocument.model_json_schema(mode="serialization")
    schema = {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"


def fixed(value: Decimal, places: int) -> str:
    """``value`` rounded half-up to ``places`` decimals, in plain notation (no exponent)."""
    if places == 4:
        return _fixed(value, _SCALE_4)
    if places == 2:
        return _fixed(value, _SCALE_2)
    rounded = value.quantize(Decimal(1).scaleb(-places), context=_DECIMAL_CONTEXT)
    return format(rounded.copy_abs() if rounded.is_zero() else rounded, "f")


def _fixed(value: Decimal, scale: Decimal) -> str:
    # Three times per line, so: the context is passed, not entered (``localcontext`` costs more
    # than the rounding), and str() replaces format(..., "f"): after quantize() to 2 or 4 places
    # the exponent is -2 or -4, which str() never writes in scientific notation.
    rounded = value.quantize(scale, context=_DECIMAL_CONTEXT)
    if rounded.is_zero():
        rounded = rounded.copy_abs()  # "-0.00" → "0.00"; exact, like abs() of a zero
    return str(rounded)


def rfc3339_utc(moment: datetime) -> str:
    if moment.tzinfo is None:
        raise DraftRefused(f"timestamp {moment.isoformat()} has no time zone")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def iso_date(value: date | None) -> str | None:
    return None if value is None else value.isoformat()


@dataclass(frozen=True)
class ExportHeader:
    """Everything of a document except its lines and totals."""

    export: ExportInfo
    org_id: str
    order: OrderInfo


@dataclass(frozen=True)
class DocumentStats:
    """What the writer measured while writing a document."""

    sha256: str
    byte_size: int
    line_count: int
    net_amount: str


def _describe(exc: ValidationError, prefix: str = "") -> str:
    """A validation error as "field value: what is wrong", one clause per wrong field."""
    parts = []
    for error in exc.errors(include_url=False):
        where = ".".join(str(part) for part in (prefix, *error["loc"]) if part != "")
        if error["type"] == "missing":
            parts.append(f"{where} is missing")
        else:
            parts.append(f"{where} {show_value(error['input'])}: {error['msg']}")
    return "; ".join(parts)


def _ship_to(value: object) -> ShipTo:
    if not isinstance(value, Mapping):
        raise ValueError(f"ship_to {show_value(value)} is not a JSON object")
    try:
        return ShipTo(**value)
    except ValidationError as exc:
        raise ValueError(_describe(exc, "ship_to")) from exc


def _customer(draft: DraftOrder) -> Customer:
    try:
        return Customer(erp_customer_number=draft.customer_erp_number, name=draft.customer_name)
    except ValidationError as exc:
        raise ValueError(_describe(exc, "customer")) from exc


def build_header(
    draft: DraftOrder, *, export_id: str, attempt: int, created_at: datetime
) -> ExportHeader:
    """Validate the draft header into the document header; refuses invalid data clearly.

    The :class:`DraftRefused` names the draft and each wrong field with its value.
    """
    label = f"draft {draft.org_id}:{draft.id}"
    try:
        return ExportHeader(
            export=ExportInfo(
                export_id=export_id, attempt=attempt, created_at=rfc3339_utc(created_at)
            ),
            org_id=draft.org_id,
            order=OrderInfo(
                draft_order_id=draft.id,
                customer_po_number=draft.customer_po_number,
                customer=_customer(draft),
                order_date=draft.order_date.isoformat(),
                requested_delivery_date=iso_date(draft.requested_delivery_date),
                currency=draft.currency,
                ship_to=_ship_to(draft.ship_to),
                notes=draft.notes,
                approved_at=None if draft.approved_at is None else rfc3339_utc(draft.approved_at),
            ),
        )
    except ValidationError as exc:  # before ValueError: it is one
        raise DraftRefused(f"{label}: {_describe(exc)}") from exc
    except (ValueError, TypeError, AttributeError, DraftRefused) as exc:
        raise DraftRefused(f"{label}: {exc}") from exc


# Validating a dict with the model's validator builds the same ExportLine as ExportLine(**values)
# without the keyword-argument round trip; this runs once per line (300k times for 100 MB).
_validate_line = ExportLine.__pydantic_validator__.validate_python


# numeric(18,4), the source columns: 14 digits before the point and 4 after it. Quantizing in this
# context refuses, in one step, a value outside it (InvalidOperation: more than 18 digits) and a
# value with more than 4 decimals (Inexact), instead of rounding either. Within it a quantity ×
# unit_price has at most 36 digits, which the 60-digit context multiplies exactly.
_AMOUNT_CONTEXT = Context(prec=18, rounding=ROUND_HALF_UP, traps=[InvalidOperation, Inexact])
_AMOUNT_LIMIT = Decimal("1E+14")


def _amount_text(value: Decimal) -> str:
    """``value`` with exactly 4 decimals; raises ArithmeticError if that would round it.

    Rounding what a customer ordered, or a price, would silently change the order and make the
    line total disagree with the numbers printed beside it. (A NaN passes through here and is
    refused by the comparisons in ``build_line``.)
    """
    rounded = value.quantize(_SCALE_4, context=_AMOUNT_CONTEXT)
    if rounded.is_zero():
        rounded = rounded.copy_abs()  # "-0.0000" → "0.0000"
    return str(rounded)


def _amount_problem(line: DraftLine) -> str | None:
    """What is wrong with the line's quantity or unit price as numeric(18,4), if anything."""
    for field_name, value in (("quantity", line.quantity), ("unit_price", line.unit_price)):
        if not isinstance(value, Decimal) or not value.is_finite():
            return f"{field_name} {show_value(value)} is not a finite decimal number"
        if not -_AMOUNT_LIMIT < value < _AMOUNT_LIMIT:
            return (
                f"{field_name} {value} is out of range (at most 14 digits before the decimal point)"
            )
        if value != value.quantize(_SCALE_4, context=_DECIMAL_CONTEXT):
            return f"{field_name} {value} has more than 4 decimals"
    return None


def build_line(line: DraftLine) -> tuple[ExportLine, Decimal]:
    """Validate one draft line into a document line; returns it with its rounded total.

    Quantity and unit price are printed exactly as given (at most 4 decimals, else the line is
    refused), so ``line_total`` always equals quantity × unit_price as printed, rounded half-up.
    """
    try:
        quantity = _amount_text(line.quantity)
        unit_price = _amount_text(line.unit_price)
        if not line.quantity > 0:
            raise ValueError(f"quantity must be > 0, got {quantity}")
        if line.unit_price < 0:
            raise ValueError(f"unit_price must be >= 0, got {unit_price}")
        total = _DECIMAL_CONTEXT.multiply(line.quantity, line.unit_price).quantize(
            _SCALE_2, context=_DECIMAL_CONTEXT
        )
        delivery = line.requested_delivery_date
        exported = _validate_line(
            {
                "line_no": line.line_no,
                "erp_item_number": line.erp_item_number,
                "customer_item_number": line.customer_item_number,
                "description": line.description,
                "quantity": quantity,
                "uom": line.uom,
                "unit_price": unit_price,
                "line_total": _fixed(total, _SCALE_2),
                "requested_delivery_date": None if delivery is None else delivery.isoformat(),
            }
        )
    except ValidationError as exc:  # before ValueError: it is one
        raise DraftRefused(f"line {line.line_no}: {_describe(exc)}") from exc
    except (ArithmeticError, AttributeError, TypeError) as exc:  # decimal signals are these
        raise DraftRefused(f"line {line.line_no}: {_amount_problem(line) or exc}") from exc
    except ValueError as exc:
        raise DraftRefused(f"line {line.line_no}: {exc}") from exc
    return exported, total


class _CountingHasher:
    """Wraps a binary stream: counts and hashes every byte written through it."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self._sha = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> None:
        self._stream.write(data)
        self._sha.update(data)
        self.size += len(data)

    @property
    def hexdigest(self) -> str:
        return self._sha.hexdigest()


def _dump(model: BaseModel) -> bytes:
    # The model's serializer gives UTF-8 bytes directly; model_dump_json() would decode them to a
    # str only for us to encode it again. Same arguments (all defaults), so the same bytes.
    return model.__pydantic_serializer__.to_json(model)


# Lines are joined and written (and hashed) this many at a time: one write per line cost more than
# the line's serialisation, and a chunk of ~1,000 lines is only a few hundred KB.
_WRITE_BATCH = 1000


def write_document(
    stream: BinaryIO, header: ExportHeader, lines: Iterable[DraftLine]
) -> DocumentStats:
    """Write one document to ``stream`` line by line; the only way documents are produced.

    Lines must come in ``line_no`` order 1..n. The output is compact JSON with one order line per
    text line, UTF-8 without BOM, ending in a newline.
    """
    out = _CountingHasher(stream)
    out.write(b'{"schema_version":"' + SCHEMA_VERSION.encode() + b'","export":')
    out.write(_dump(header.export))
    out.write(b',"org_id":' + json.dumps(header.org_id).encode() + b',"order":')
    out.write(_dump(header.order))
    out.write(b',"lines":[')
    net = Decimal(0)
    count = 0
    pending: list[bytes] = []
    label = f"draft {header.org_id}:{header.order.draft_order_id}"
    for line in lines:
        if line.line_no != count + 1:
            raise DraftRefused(
                f"{label}: line numbers must run 1..n without gaps; "
                f"expected {count + 1}, got {line.line_no}"
            )
        try:
            exported, total = build_line(line)
        except DraftRefused as exc:
            raise DraftRefused(f"{label}: {exc}") from exc
        pending.append(b"\n" if count == 0 else b",\n")
        pending.append(_dump(exported))
        net = _DECIMAL_CONTEXT.add(net, total)
        count += 1
        if len(pending) >= 2 * _WRITE_BATCH:
            out.write(b"".join(pending))
            pending.clear()
    if pending:
        out.write(b"".join(pending))
    if count == 0:
        raise DraftRefused(f"{label} has no lines")
    totals = Totals(line_count=count, net_amount=fixed(net, 2), currency=header.order.currency)
    out.write(b'\n],"totals":')
    out.write(_dump(totals))
    out.write(b"}\n")
    return DocumentStats(
        sha256=out.hexdigest, byte_size=out.size, line_count=count, net_amount=totals.net_amount
    )


def parse_document(data: bytes) -> ExportDocument:
    """Parse and validate a complete document (used by checks and tests, never on the hot path)."""
    return ExportDocument.model_validate_json(data, strict=False)
